/* http: the HTTP front, the tree served over HTTP (libevent's evhttp).
 *
 * Serves every path of the tree (tree.h) from the published snapshot, the
 * same bytes as the mount, with the query filters of http_query.h on the
 * lists and picks, the aliases other pools' users expect (/get-proxy,
 * /stat, /reload), and POST on the control paths (control.h). Its own
 * threads, each with its own event loop, all accepting on the listening
 * sockets; control writes run on one worker thread of its own, so a
 * waiting "sync" never stalls a loop. Reads only published snapshots;
 * knows nothing of the engine (struct fs_control is its only way to act).
 *
 * Safe to expose: a token for control (and, private, for everything), a
 * token bucket per client address, limits on headers, body, connections
 * and time. Counts what it serves in http_stats.h; logs no request at info.
 */
#ifndef PROXYFS_HTTP_H
#define PROXYFS_HTTP_H

#include <stddef.h>

#include "config.h"
#include "control.h"

struct http_front;

/* Binds every listen address of conf and starts serving; snap_system_init()
 * done and libevent's threading on (evthread_use_pthreads). ctl must
 * outlive the front. NULL with why in err (e.g. "[http] listen
 * 127.0.0.1:80: Permission denied"). */
struct http_front *http_front_start(const struct cfg_http *conf, const struct fs_control *ctl,
				    char *err, size_t errlen);

/* Stops serving: waiting control requests end, loops exit, threads are
 * joined, sockets closed, and every snapshot reference the front held is
 * dropped. NULL is ignored. */
void http_front_stop(struct http_front *h);

#endif
