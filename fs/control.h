/* control: what a write to control/add, control/remove, control/bad or
 * control/reload means, for every front (the FUSE files, the HTTP front's
 * POST).
 *
 * A front hands in the whole text of one write unit (an open of the file
 * until its close; one POST body) and gets back 0 or -errno with, on
 * EINVAL, a one-line reason. add, remove and bad take proxy lines (the
 * syntax of sources): any bad line fails the whole text and nothing of it
 * is applied; for bad, so does a line naming a proxy the pool does not
 * track (a typo must not pass for a report). reload takes one word, white space around it ignored: "sync"
 * waits until the rescan it queues is published, "reload" re-reads the
 * config file first (EINVAL if it does not parse), anything else queues a
 * rescan. Knows nothing of FUSE or HTTP; acts only through struct
 * fs_control.
 */
#ifndef PROXYFS_CONTROL_H
#define PROXYFS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy.h"

/* Most bytes one control write unit may carry (1 MiB). */
#define CONTROL_MAX (1024 * 1024)

/* Asked about every 50 ms by a control call that waits: 0 to go on
 * waiting, or a negative errno that ends the wait with that error. */
typedef int (*fs_stop_fn)(void *arg);

/* What the control files act on (in proxyfs: the engine, wired by main).
 * Each call returns 0 or -errno, as engine.h tells for its namesake. Must
 * outlive every front. */
struct fs_control {
	void *arg; /* handed to every call */
	int (*add)(void *arg, const struct proxy_addr *list, size_t n);
	int (*remove)(void *arg, const struct proxy_addr *list, size_t n);
	int (*rescan)(void *arg, bool wait, fs_stop_fn stop, void *stop_arg);
	int (*reload)(void *arg, fs_stop_fn stop, void *stop_arg);
	/* -ENOENT with *at the index of the first proxy not tracked. */
	int (*bad)(void *arg, const struct proxy_addr *list, size_t n, size_t *at, fs_stop_fn stop,
		   void *stop_arg);
};

enum control_kind { CONTROL_RELOAD, CONTROL_ADD, CONTROL_REMOVE, CONTROL_BAD };

/* Checks len bytes of proxy lines (add, remove, bad) without applying them: 0,
 * or -EINVAL with why (e.g. "line 3: not a proxy: ...") in why[0..size). */
int control_check(const char *text, size_t len, char *why, size_t why_size);

/* Applies one whole write unit of kind: 0 or -errno (-EINVAL with why set
 * as control_check, or for bad "not in the pool: URI"; -EMSGSIZE over
 * CONTROL_MAX). A wait (reload "sync" or "reload"; bad until the snapshot
 * without its proxies is published) asks stop(stop_arg) every 50 ms
 * whether to give up. */
int control_apply(const struct fs_control *ctl, enum control_kind kind, const char *text,
		  size_t len, fs_stop_fn stop, void *stop_arg, char *why, size_t why_size);

#endif
