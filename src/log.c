/* log: leveled messages; see log.h.
 *
 * A line goes to syslog, or is written with one write() to log_fd (stderr,
 * the log_file, or the stderr the daemon had before it went to the
 * background), so lines from threads never interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_SYSLOG_SOCKET "/dev/log"

/* Set at start and on reload; atomics so any thread may read. */
static atomic_int log_threshold = LOG_LVL_INFO;
static atomic_bool log_to_syslog;
/* Where lines go when not to syslog; set at start, before other threads. */
static atomic_int log_fd = STDERR_FILENO;
static atomic_bool log_file_open; /* log_fd is the log_file: it stays so */
/* The log_file's path; written once by log_open_file, before other threads. */
static char log_path[PATH_MAX];

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(name, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -EINVAL;
}

void log_set_level(enum log_level lvl)
{
	atomic_store(&log_threshold, (int)lvl);
}

int log_open_file(const char *path)
{
	int fd;

	if (strlen(path) >= sizeof(log_path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return -errno;
	strcpy(log_path, path);
	atomic_store(&log_fd, fd);
	atomic_store(&log_file_open, true);
	return 0;
}

void log_reopen(void)
{
	int fd;

	if (!atomic_load(&log_file_open))
		return;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		log_err("log_file %s: cannot open it again: %s; writing on in the old one",
			log_path, strerror(errno));
		return;
	}
	/* dup3 swaps the file under the same descriptor: a thread writing
	 * a line meanwhile writes it whole to one file or the other. */
	if (dup3(fd, atomic_load(&log_fd), O_CLOEXEC) < 0)
		log_err("log_file %s: cannot switch to it: %s", log_path, strerror(errno));
	close(fd);
}

static bool syslog_socket_exists(void)
{
	struct stat st;

	return stat(LOG_SYSLOG_SOCKET, &st) == 0 && S_ISSOCK(st.st_mode);
}

void log_use_syslog(bool on)
{
	int fd;

	if (!on) {
		atomic_store(&log_to_syslog, false);
		return;
	}
	if (atomic_load(&log_file_open))
		return;
	if (syslog_socket_exists()) {
		openlog("proxyfs", LOG_PID, LOG_DAEMON);
		atomic_store(&log_to_syslog, true);
		return;
	}
	/* No syslog to take the lines: keep the stderr the daemon was started
	 * with (a supervisor's pipe, the journal, a terminal) before the caller
	 * points stderr at /dev/null. */
	fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (fd >= 0)
		atomic_store(&log_fd, fd);
	log_warn("no syslog socket (%s): logging to the stderr proxyfs was started with; set "
		 "[proxyfs] log_file to log to a file",
		 LOG_SYSLOG_SOCKET);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[1024];
	va_list ap;

	if ((int)lvl > atomic_load(&log_threshold))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (atomic_load(&log_to_syslog)) {
		syslog(prio[lvl], "%s", line);
	} else {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		char out[sizeof(line) + 64];
		int n;

		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		n = snprintf(out, sizeof(out), "%s proxyfs %s: %s\n", stamp, level_names[lvl],
			     line);
		if (n > (int)sizeof(out) - 1)
			n = (int)sizeof(out) - 1;
		if (write(atomic_load(&log_fd), out, (size_t)n) < 0) {
			/* nowhere left to say it */
		}
	}
}
