/* notify: systemd's readiness protocol, without libsystemd.
 *
 * The protocol is a few lines (a datagram to a unix socket), so proxyfs
 * speaks it itself rather than link libsystemd for one call: no new
 * dependency, and nothing changes where systemd is absent. Only what
 * Type=notify needs is sent: READY=1 once mounted with the warm pool
 * published, STATUS= with the pool's summary whenever a new snapshot is
 * published, STOPPING=1 when the daemon starts to unmount.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "snapshot.h"

/* Set by notify_init before any thread starts, closed by notify_fini after
 * they all ended; read-only in between (sendto on it is thread-safe). */
static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addrlen;

/* The status thread's life: status_stop and status_running are guarded by
 * status_lock; status_cond wakes the thread to stop. */
static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t status_cond;
static bool status_stop;
static bool status_running;
static pthread_t status_thread;

int notify_init(void)
{
	const char *env = getenv("NOTIFY_SOCKET");
	size_t len;
	int rc;

	if (!env || !*env)
		return 0;
	len = strlen(env);
	/* systemd also names vsock: addresses; only unix sockets are spoken. */
	if ((env[0] != '/' && env[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		log_warn("NOTIFY_SOCKET=%s: not a unix socket path; not notifying", env);
		rc = -EAFNOSUPPORT;
		goto out_unset;
	}
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, env, len);
	if (env[0] == '@')
		notify_addr.sun_path[0] = '\0'; /* abstract: no trailing NUL counted */
	notify_addrlen =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (env[0] == '@' ? 0 : 1));
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd < 0) {
		rc = -errno;
		log_warn("NOTIFY_SOCKET: socket: %s; not notifying", strerror(-rc));
		goto out_unset;
	}
	rc = 0;
out_unset:
	/* Programs the daemon starts (fusermount3) are not the service. */
	unsetenv("NOTIFY_SOCKET");
	return rc;
}

int notify_send(const char *msg)
{
	if (notify_fd < 0)
		return 0;
	if (sendto(notify_fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
		   notify_addrlen) < 0) {
		int rc = -errno;

		log_warn("NOTIFY_SOCKET: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

void notify_status_text(const struct snapshot *s, char *buf, size_t len)
{
	const struct snap_stats *st = &s->stats;
	int n;

	n = snprintf(buf, len, "%u alive of %u (%u dead, %u unknown, %u removed)", st->alive,
		     st->total, st->dead, st->unknown, st->removed);
	if (n > 0 && (size_t)n < len && st->scan_running)
		n += snprintf(buf + n, len - (size_t)n, "; scan %u/%u", st->scan_checked,
			      st->scan_total);
	if (n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "; %s", st->health ? st->health : "ok");
}

/* Sends "prefix" + STATUS= of the current snapshot; returns its generation. */
static uint64_t send_status(const char *prefix)
{
	struct snapshot *s = snap_current();
	char text[256], msg[320];
	uint64_t gen = s->stats.generation;

	notify_status_text(s, text, sizeof(text));
	snap_unref(s);
	snprintf(msg, sizeof(msg), "%sSTATUS=%s", prefix, text);
	notify_send(msg);
	return gen;
}

/* Once a second: a new snapshot gets a new STATUS=. Comparing the
 * generation keeps a quiet pool silent. */
static void *status_main(void *arg)
{
	uint64_t last = (uint64_t)(uintptr_t)arg;
	struct timespec until;

	pthread_mutex_lock(&status_lock);
	while (!status_stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&status_cond, &status_lock, &until);
		if (status_stop)
			break;
		pthread_mutex_unlock(&status_lock);
		{
			struct snapshot *s = snap_current();
			uint64_t gen = s->stats.generation;

			snap_unref(s);
			if (gen != last)
				last = send_status("");
		}
		pthread_mutex_lock(&status_lock);
	}
	pthread_mutex_unlock(&status_lock);
	return NULL;
}

int notify_ready(void)
{
	pthread_condattr_t ca;
	uint64_t gen;
	int rc;

	if (notify_fd < 0)
		return 0;
	gen = send_status("READY=1\n");
	log_debug("told the service manager: ready");
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&status_cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&status_thread, NULL, status_main, (void *)(uintptr_t)gen);
	if (rc) {
		log_warn("status thread: %s; STATUS= stays as it is", strerror(rc));
		pthread_cond_destroy(&status_cond);
		return -rc;
	}
	status_running = true;
	return 0;
}

void notify_stopping(void)
{
	if (notify_fd < 0)
		return;
	notify_send("STOPPING=1");
	if (!status_running)
		return;
	pthread_mutex_lock(&status_lock);
	status_stop = true;
	pthread_cond_signal(&status_cond);
	pthread_mutex_unlock(&status_lock);
	pthread_join(status_thread, NULL);
	pthread_cond_destroy(&status_cond);
	status_running = false;
}

void notify_fini(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}
