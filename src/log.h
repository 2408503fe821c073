/* log: leveled messages to stderr or the log_file, or to syslog once
 * daemonized (stderr kept when there is no syslog socket).
 *
 * Safe from any thread. Never called on the filesystem read path (counters
 * are used there instead).
 */
#ifndef PROXYFS_LOG_H
#define PROXYFS_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Returns 0 and sets *out, or -EINVAL for a name other than
 * error, warn(ing), info, debug. */
int log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level lvl);
/* Appends every line to path from now on, in the background too (it is
 * created 0640 if missing). 0 or -errno. */
int log_open_file(const char *path);
/* Opens the log_file's path again (after logrotate moved it away) and
 * writes there from now on; without a log_file, or when it cannot be
 * opened (said in the old one), nothing changes. */
void log_reopen(void);
/* on: the daemon is going to the background (its stderr to /dev/null):
 * lines go to syslog, or stay with the log file if one is open, or, with
 * no syslog socket, to a copy of the stderr it had (said once, at warn). */
void log_use_syslog(bool on);
__attribute__((format(printf, 2, 3))) void log_msg(enum log_level lvl, const char *fmt, ...);

#define log_err(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
