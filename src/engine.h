/* engine: the thread that owns the pool.
 *
 * One libevent loop: reads sources, schedules checks, applies their results,
 * publishes snapshots and hands results to the store. Nothing else touches
 * the pool; other threads talk to it through the engine_* calls below, which
 * queue a command and wake the loop.
 */
#ifndef PROXYFS_ENGINE_H
#define PROXYFS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "proxy.h"

struct engine;
struct store;

/* Takes over nothing: cfg and store must outlive the engine. Loads the pool
 * the store remembers and publishes it at once (before any check). Returns
 * NULL with a logged reason on failure. */
struct engine *engine_new(const struct cfg *cfg, struct store *store);
/* Starts the engine's thread; 0 or -errno. */
int engine_start(struct engine *e);
/* Stops the thread (checks in flight are abandoned, results so far are
 * already queued to the store) and frees everything. */
void engine_free(struct engine *e);

/* --- from any thread --- */

/* Queues a rescan of every proxy. When wait is true, returns only when that
 * rescan has finished and its snapshot is published. 0 or -errno (-ESHUTDOWN
 * if the engine is stopping). */
int engine_rescan(struct engine *e, bool wait);

/* Adds proxies (already validated) to the pool, lifts any removal of them,
 * and checks them at once. Takes the array by copy. 0 or -errno. */
int engine_add(struct engine *e, const struct proxy_addr *list, size_t n);

/* Drops proxies from the pool and keeps them out, persisted. 0 or -errno. */
int engine_remove(struct engine *e, const struct proxy_addr *list, size_t n);

/* Async-signal-safe: asks the engine to re-read its sources (SIGHUP). */
void engine_signal_reload(struct engine *e);

#endif
