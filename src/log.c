/* log: leveled messages; see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

/* Both are set at start and on reload; atomics so any thread may read. */
static atomic_int log_threshold = LOG_LVL_INFO;
static atomic_bool log_to_syslog;

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

void log_use_syslog(bool on)
{
	if (on)
		openlog("proxyfs", LOG_PID, LOG_DAEMON);
	atomic_store(&log_to_syslog, on);
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
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(stderr, "%s proxyfs %s: %s\n", stamp, level_names[lvl], line);
	}
}
