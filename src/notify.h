/* notify: tells a service manager how the daemon is doing (sd_notify).
 *
 * Speaks systemd's notification protocol itself: one datagram of
 * "KEY=value" lines to the unix socket named by $NOTIFY_SOCKET (a leading
 * '@' names the abstract namespace). Without that variable every call does
 * nothing, so the daemon runs the same under any other supervisor. This
 * file knows nothing of the mount; it reads the published snapshot for the
 * one-line STATUS= summary.
 */
#ifndef PROXYFS_NOTIFY_H
#define PROXYFS_NOTIFY_H

#include <stddef.h>

struct snapshot;

/* Reads and unsets $NOTIFY_SOCKET and opens the socket. 0 when there is
 * none to tell; -errno when it is set but unusable (the daemon goes on). */
int notify_init(void);
/* Sends one message ("READY=1", "STOPPING=1", ...); 0 or -errno. Safe from
 * any thread. */
int notify_send(const char *msg);
/* The pool's one-line summary, as STATUS= carries it. */
void notify_status_text(const struct snapshot *s, char *buf, size_t len);
/* READY=1 with the current status, then a STATUS= each time a new snapshot
 * is published (looked at once a second, from a thread of its own). */
int notify_ready(void);
/* STOPPING=1, and the status thread ends. */
void notify_stopping(void);
/* Closes the socket (after notify_stopping). */
void notify_fini(void);

#endif
