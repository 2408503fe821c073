/* engine: the thread that owns the pool.
 *
 * One libevent loop: reads sources, schedules checks, applies their results,
 * publishes snapshots and hands results to the store. Nothing else touches
 * the pool; other threads talk to it through the engine_* calls below, which
 * queue a command and wake the loop.
 *
 * checker/ holds the engine and the checks it runs. The engine: engine.c
 * (loop, life cycle, commands), scan.c (scans, checks and what their
 * results mean), feeds.c (source lists, judges, the config taken in),
 * publish.c (snapshots, records for the store), queue.c, schedule.h,
 * pool.h, judge_set.h (the healthy-judge rotation), resolve.h;
 * engine_int.h is their shared state. One check: check.h (check.c, one file per protocol, check_tls.c,
 * check_dns.c), judge.c (the URL a check fetches), src/http_answer.h, src/socks.h
 * (the SOCKS messages, shared with the gateway), echo.h (what a judge
 * answers). Uses src/, never fs/.
 */
#ifndef PROXYFS_ENGINE_H
#define PROXYFS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "check.h"
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

/* Gives the engine the [geo] databases (src/geo.h), which it owns from
 * then on: lookups, reloads and freeing are the engine's. Before
 * engine_start only; republishes the pool with its countries. */
struct geo;
void engine_set_geo(struct engine *e, struct geo *g);

/* --- one-shot checking (proxyfs check) --- */

struct engine_result {
	const char *uri;
	enum proxy_proto proto;   /* the URI's protocol */
	bool alive;
	uint32_t latency_ms;      /* when alive */
	const char *result;       /* chk_result_name() of the final outcome */
	int err;                  /* errno behind a refused/reset/local error, else 0 */
	uint16_t http_status;     /* the judge's answer's status through the proxy, 0 if none */
	uint8_t anonymity;        /* enum snap_anon, when alive */
	const char *exit_ip;      /* the address the judge saw, "" when not known */
};

/* What became of one source of a one-shot run. */
struct engine_source {
	const char *url;          /* as given: a path or an http(s) URL */
	uint32_t proxies;         /* distinct proxies read from it */
	uint32_t invalid;         /* lines with no proxy in them */
	const char *const *sample; /* the first invalid lines, nsample of them */
	int nsample;
	long http_status;         /* of its download, 0 for files */
	const char *error;        /* "" when it was read */
};

struct engine_progress {
	uint32_t checked, total, alive;
	uint32_t in_flight, in_flight_max;
	uint32_t limit;           /* the adaptive concurrency limit now */
	uint32_t limit_max;       /* what the open-file limit leaves of limit_conf */
	uint32_t limit_conf;      /* what the config asked for */
	uint64_t local_requeues, retries;
	uint64_t by_result[CHK_RESULT_COUNT]; /* final outcomes, indexed by enum chk_result */
	double elapsed_s;
	uint32_t waiting;         /* proxies not started yet, retries due later included */
	double tail_s;            /* at most how long the checks in flight and the retries
				   * waiting may still take; 0 when none */
};

struct engine_once_ops {
	void (*result)(void *arg, const struct engine_result *r);
	void (*progress)(void *arg, const struct engine_progress *p); /* may be NULL */
	/* At the end of the run, once per source in config order; may be NULL. */
	void (*source)(void *arg, const struct engine_source *s);
	int progress_ms;
};

/* Checks every proxy of the sources once, in the caller's thread, calling
 * ops->result for each final outcome, and returns when all are done with
 * the final figures in *out. The engine must come from engine_new() with
 * no store and must not have been started. 0 or -errno. */
int engine_run_once(struct engine *e, const struct engine_once_ops *ops, void *arg,
		    struct engine_progress *out);

/* --- from any thread --- */

/* Asked about every 50 ms by a caller waiting on the engine: 0 to go on
 * waiting, or a negative errno that ends the wait with that error (the
 * command itself still runs). */
typedef int (*engine_stop_fn)(void *arg);

/* Queues a rescan of every proxy. When wait is true, returns only when that
 * rescan has finished and its snapshot is published, or when stop (may be
 * NULL) says to give up. 0 or -errno: -ESHUTDOWN if the engine is
 * stopping, -EHOSTUNREACH at once (the rescan still queued) when no judge
 * answers, so that no scan could run, or when that happens while waiting. */
int engine_rescan(struct engine *e, bool wait, engine_stop_fn stop, void *arg);

/* Re-reads the config file: sources, judges and check settings change
 * without a remount, then a rescan starts. Returns when applied (or when
 * stop says to give up): 0, or -EINVAL when the file does not parse
 * (logged; the running config stays). */
int engine_reload(struct engine *e, engine_stop_fn stop, void *arg);

/* Adds proxies (already validated) to the pool, lifts any removal of them,
 * and checks them at once. Takes the array by copy. 0 or -errno. */
int engine_add(struct engine *e, const struct proxy_addr *list, size_t n);

/* Drops proxies from the pool and keeps them out, persisted. 0 or -errno. */
int engine_remove(struct engine *e, const struct proxy_addr *list, size_t n);

/* A report that these proxies failed a user (control/bad): each live one
 * leaves the live set at once and is queued for a re-check ahead of the
 * scheduled ones, whose result alone brings it back. Nothing is persisted
 * and the proxy stays tracked. An http:// line also names the same proxy
 * listed https://; a line without credentials that names no proxy itself
 * names its variants with credentials (hide_credentials prints them
 * alike); a tracked proxy that is not live is left as it is. All
 * or nothing: -ENOENT, with *at the index of the first line naming no
 * proxy the pool tracks (removed ones included), when one does, and then
 * nothing is applied. Otherwise returns once a snapshot without them is
 * published (or stop says to give up): 0 or -errno. */
int engine_bad(struct engine *e, const struct proxy_addr *list, size_t n, size_t *at,
	       engine_stop_fn stop, void *arg);

/* The gateway's word on an upstream it used (uri as the snapshot gives
 * it): ok when it carried a connection, else why it failed (a few words).
 * Does not wait. On the engine thread, [gateway] eject_after failures in a
 * row (counted per proxy, cleared by a success there or by any check
 * result; not persisted) eject a live proxy as engine_bad does: out of
 * the live set at once, re-checked at once, shown in stat.json's
 * ejections by "gateway" with why; only that check brings it back. A
 * proxy the pool no longer tracks is ignored. 0, -EINVAL for a uri that
 * is not a proxy line, -ENOMEM, or -ESHUTDOWN. */
int engine_report(struct engine *e, const char *uri, bool ok, const char *why);

/* Async-signal-safe: asks the engine to re-read its sources (SIGHUP). */
void engine_signal_reload(struct engine *e);

#endif
