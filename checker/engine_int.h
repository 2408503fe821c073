/* engine_int: the engine's state, shared by the files that make it up.
 *
 * engine.c (life cycle, commands, the tick), scan.c (scans, checks and
 * results), feeds.c (sources, judges, config reloads), publish.c
 * (snapshots and the store) and queue.c all work on one struct engine, on
 * the engine thread only. Nothing outside the engine includes this.
 *
 * State with one owner sits in a sub-struct named for it: scan (struct
 * eng_scan, scan.c), lim (struct eng_limits, the limit code in scan.c),
 * feeds (struct eng_feeds, feeds.c) and pub (struct eng_publish,
 * publish.c). Other files read the fields each one's comment lists and
 * change them only through its owner's functions (eng_scan_request,
 * eng_limit_set_max, eng_mark_dirty, ...).
 */
#ifndef PROXYFS_ENGINE_INT_H
#define PROXYFS_ENGINE_INT_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "config.h"
#include "engine.h"
#include "fetch.h"
#include "judge_set.h"
#include "pool.h"
#include "schedule.h"
#include "snapshot.h"
#include "sources.h"
#include "store.h"

#define TICK_MS 100
#define WAIT_POLL_MS 50     /* how often a waiting caller asks whether to give up */
#define LAG_MIN_MS 200      /* the tick this late means the loop is behind */
/* The loop behind in LAG_SUSTAINED ticks within LAG_WINDOW_MS is overloaded:
 * a single late turn (a scan's start, a publish) is not. */
#define LAG_SUSTAINED 3
#define LAG_WINDOW_MS 2000
#define LAG_RETRIES 2       /* extra tries of a timeout our lateness may have caused */
#define JUDGE_FRESH_S 5     /* a judge probed longer ago is probed again before a scan */
#define RETRY_BASE_MS 250
#define FD_RESERVE 128      /* fds kept for FUSE, SQLite, sources, logs */
#define MIN_CONCURRENCY 8
/* The latency rule: a proxy's check that succeeds in LAT_TOLERANCE times
 * its usual latency (never less than the timeout / LAT_FLOOR_DIV) means the
 * checker, not the proxy, is slow. Judged on the median of LAT_MIN_SAMPLES
 * checks at least (a few answers late from a dropped SYN are not
 * overload); the limit moves at most once a LAT_STEP_MS, and grows again
 * only while checks take less than LAT_RELAXED times their usual. */
#define LAT_TOLERANCE 2.0
#define LAT_RELAXED 1.3
#define LAT_FLOOR_DIV 20
#define LAT_MIN_SAMPLES 16
#define LAT_WINDOW_MAX 512 /* samples a window keeps: its median is the ratio */
#define LAT_STEP_MS 1000
/* For LAT_SETTLE_MS after a cut the limit grows by a LIMIT_SETTLE_DIV-th
 * of its maximum a tick (additive increase), so it settles just below what
 * was too much instead of swinging back to it; later by an eighth again. */
#define LAT_SETTLE_MS 60000
#define LIMIT_SETTLE_DIV 2000
/* A pool's best window of checks without history, this much worse, is
 * forgotten a window at a time (the mix may change). */
#define LAT_BASE_FORGET 64
#define DISPATCH_BATCH 4096 /* checks started a loop turn besides refills */
/* Live proxies failing in a row that put the judges in doubt, at most:
 * fewer in a smaller pool (see hold_failure). */
#define HOLD_AFTER_FAILS 64
#define CONTROL_SOURCE "@control"
#define GEO_POLL_MS 5000 /* how often the [geo] files are looked at for a replacement */

/* A caller waiting for a command's end (a rescan published, a reload
 * applied). Two references: the caller's and the engine's; each side drops
 * its own (eng_wake for the engine), so a caller that stops waiting early
 * (interrupted, shutting down) leaves nothing dangling. */
struct waiter {
	pthread_mutex_t lock;	/* guards done, rc and at */
	pthread_cond_t cond;
	bool done;
	int rc;
	size_t at;		/* CMD_BAD: the line of the list an error is about */
	atomic_int refs;
};

enum cmd_kind { CMD_RESCAN, CMD_ADD, CMD_REMOVE, CMD_FETCHED, CMD_PROBED, CMD_RELOAD,
		CMD_RESOLVED, CMD_BAD, CMD_REPORT };

struct cmd {
	struct cmd *next;
	enum cmd_kind kind;
	struct waiter *waiter;   /* CMD_RESCAN with wait, CMD_RELOAD, CMD_BAD */
	struct proxy_addr *list; /* CMD_ADD / CMD_REMOVE / CMD_BAD, owned */
	size_t n;
	struct fetch_result *res; /* CMD_FETCHED / CMD_PROBED, owned */
	struct resolve_result rsv; /* CMD_RESOLVED */
	size_t idx;               /* the source or judge it is for */
	uint64_t gen;             /* the config generation it was asked under; for a
				   * judge, the id of the judge set it was for */
	bool ok;                  /* CMD_REPORT: the upstream worked (list[0] names it) */
	char *why;                /* CMD_REPORT: the failure's words, owned */
};

/* What a download in flight is for; freed by its callback. */
struct fetch_ctx {
	struct engine *e;
	enum cmd_kind kind;
	size_t idx;
	uint64_t gen;            /* as in struct cmd */
};

/* A FIFO of entries, linked through their qnext: pushing cannot fail. */
struct queue {
	struct pool_entry *head, *tail;
	size_t len;
};

/* Checks waiting out their backoff: one FIFO per try (the last one takes
 * every later try), the earliest due head first. */
#define RETRY_LEVELS 12
struct retry_queue {
	struct queue by_try[RETRY_LEVELS];
	size_t len;
};

/* Sources, judges and the config they come from. Written only by feeds.c
 * (eng_feeds_init, the reload, eng_feeds_free); other files may read
 * sources, judges and cfg_gen. */
struct eng_feeds {
	struct src_state *sources; /* one per cfg source */
	struct judge_set *judges;  /* the current set, one reference (checks hold theirs) */
	uint64_t judges_ids;       /* the last judge set id given */
	struct cfg *cfg_owned;     /* cfg when a reload made it (else the caller owns cfg) */
	uint64_t cfg_gen;          /* bumped when the config is replaced */
};

/* Scanning. Written only by scan.c (eng_scan_start, eng_scan_request,
 * eng_scan_join, eng_scan_add_waiter, ...); other files may read gen,
 * running, pending, checked, total, started, finished, last_seconds,
 * started_ms and next_ms. */
struct eng_scan {
	uint64_t gen;            /* scans started */
	bool running;
	bool pending;            /* another scan follows the running one */
	uint32_t checked, total;
	int64_t started, finished; /* wall clock */
	double last_seconds;     /* how long the last finished scan took */
	uint64_t started_ms;
	uint64_t next_ms;        /* when the next scan is due (monotonic) */
	struct waiter **waiters; /* finished when the scan they wait for ends */
	uint64_t *waiter_gen;
	size_t nwaiters, capwaiters;
};

/* The concurrency limit and the latency rule that moves it. Written only by
 * the limit code in scan.c (eng_lower_limit, eng_recover_limit,
 * eng_latency_sample, eng_limit_set_max); other files may read limit,
 * limit_max, limit_why, limit_lowered and lat_ratio. */
struct eng_limits {
	uint32_t limit, limit_max;
	uint64_t last_local_err_ms; /* when the limit was last lowered */
	enum snap_limit_why limit_why; /* why it is where it is */
	uint64_t limit_lowered[SNAP_LIMIT_WHY_COUNT]; /* times lowered, by why */
	float lat_win[LAT_WINDOW_MAX]; /* latency ratios of the checks since lat_since ... */
	uint32_t lat_n;          /* ... and how many (the last LAT_WINDOW_MAX kept) */
	uint64_t lat_since;
	double lat_ratio;        /* the last full window's median ratio; 0 = none lately */
	double lat_base;         /* proxies without history: the best window's mean ms ... */
	double nh_sum;           /* ... and the latencies (ms) of theirs since lat_since */
	uint32_t nh_n;
	uint64_t limit_cut_ms;   /* when a cut last lowered the limit, 0 = never */
};

/* Publishing. Written only by publish.c (eng_publish, eng_mark_dirty);
 * other files may read dirty and last_publish_ms. */
struct eng_publish {
	bool dirty;              /* the pool changed since the last snapshot */
	uint64_t last_publish_ms;
	uint64_t generation;     /* snapshots published */
};

struct engine {
	const struct cfg *cfg;   /* set by engine_new, replaced by a reload (feeds.c) */
	struct store *store;
	struct pool *pool;
	struct eng_feeds feeds;
	struct resolver *resolver; /* looks judge hosts up off the loop */
	struct fetcher *fetcher; /* downloads: remote sources, judge probes */
	struct chk_opts opts;     /* opts.dns: made when a proxy given by name comes */
	bool dns_failed;          /* ... and could not be: not tried again */
	bool paused;             /* no judge answers: checking waits */
	bool pause_said;         /* ... and that was logged (warn): its end is said at info */
	uint32_t alive_fail_run; /* live proxies failed in a row, no success between */
	uint32_t alive_at_run;   /* live proxies when that run began */
	uint64_t run_started_ms; /* when it began */
	uint32_t alive_published; /* live proxies in the last snapshot */
	struct queue doubt;      /* that run's proxies: their failures wait until it is settled */
	uint64_t held_total;     /* results not applied while the judges were in doubt */
	uint32_t fd_http;        /* fds the HTTP front may hold (set at start: [http] is read once) */
	uint32_t fd_gateway;     /* ... and the gateway ([gateway] too) */
	uint32_t gw_eject_after; /* [gateway] eject_after as started (0: never) */
	struct geo *geo;         /* [geo] databases, owned; NULL = none (proxyfs check) */
	uint64_t geo_polled_ms;  /* when their files were last looked at */

	pthread_t thread;
	bool running;
	struct event_base *base;
	struct event *cmd_ev;    /* made active by other threads */
	struct event *tick_ev;   /* dispatch, retries, concurrency recovery */
	struct event *dispatch_ev; /* more checks to start, after pending I/O */
	struct event *sig_ev;    /* reads sig_pipe */
	int sig_pipe[2];

	/* Guards cmds and stopping; everything else is the engine thread's. */
	pthread_mutex_t cmd_lock;
	struct cmd *cmds, **cmds_tail;
	bool stopping;

	struct queue urgent;     /* control/add: checked first */
	struct queue ready;      /* the scan */
	struct retry_queue retry; /* due-time ordered */
	struct queue recheck;    /* due by the re-check policy; after urgent, turn about
				  * with the scan */
	uint32_t turn;           /* which of recheck and ready goes next */
	struct sched sched;      /* every checked proxy's next re-check */
	uint64_t epoch_ms;       /* the engine clock's zero (monotonic) */

	struct eng_scan scan;

	/* Concurrency. */
	uint32_t in_flight, in_flight_max;
	struct eng_limits lim;
	uint64_t lag_window_ms;  /* when the window of late ticks began ... */
	uint32_t lag_late_ticks; /* ... and how many were late in it */
	uint64_t last_tick_ms;   /* when the tick last ran, to see the loop run late */
	uint64_t lag_ms;         /* the tick's lateness, added up: the loop's own delay */
	uint64_t store_errors_seen; /* the store's figures last published, */
	bool store_failing;         /* so a change there publishes too */
	uint64_t checks_total[CHK_RESULT_COUNT];
	uint64_t local_requeues, retries_total;
	uint64_t ejections[SNAP_EJECT_BY_COUNT]; /* live proxies ejected, by who */
	struct eng_ejection {
		char *uri, *why; /* owned; NULL while the slot is unused */
		int64_t at;
		uint8_t by;
	} ejected[SNAP_EJECTED_KEEP]; /* the last ejections, a ring ... */
	uint32_t ejected_next;        /* ... whose next slot this is */

	/* One-shot mode (engine_run_once): no publishing, no rescans. */
	const struct engine_once_ops *once;
	void *once_arg;
	uint32_t scan_alive;
	int once_rc;             /* why a one-shot run stopped early, 0 if it did not */
	uint64_t last_start_ms;  /* when the newest check started (one-shot: its ETA) */

	struct eng_publish pub;
	int64_t started;         /* wall clock, set once at engine_new */
};

static inline uint64_t eng_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int64_t eng_wall_s(void)
{
	return (int64_t)time(NULL);
}

/* queue.c: FIFOs of pool entries, linked through the entries. An entry is
 * in one queue at most: pushing one already queued leaves it where it is. */
void queue_push(struct queue *q, struct pool_entry *e);
struct pool_entry *queue_pop(struct queue *q);
/* Empties q, freeing the unlinked entries only it still held. */
void queue_drain(struct queue *q);
/* e's try number try (from 1) failed; it is due again at due (monotonic ms). */
void retry_push(struct retry_queue *r, struct pool_entry *e, unsigned int try, uint64_t due);
/* The retry due earliest if it is due by now, else NULL. */
struct pool_entry *retry_pop_due(struct retry_queue *r, uint64_t now);
/* When the retry due last is due; 0 when none waits. */
uint64_t retry_last_due(const struct retry_queue *r);
void retry_drain(struct retry_queue *r);
/* Frees an unlinked entry once no queue nor check refers to it. */
void eng_release_entry(struct pool_entry *e);

/* publish.c: snapshots and the store. */
void eng_publish(struct engine *e);
/* Something a snapshot shows changed: the next tick publishes it. */
void eng_mark_dirty(struct engine *e);
void eng_store_entry(struct engine *e, const struct pool_entry *pe);

/* feeds.c: sources, judges and the config. */
/* The judge set and source states for e->cfg: 0 or -errno (said in the log). */
int eng_feeds_init(struct engine *e);
/* Frees them, and the config a reload made; last, as others read e->cfg. */
void eng_feeds_free(struct engine *e);
void eng_refresh_sources(struct engine *e, bool force);
void eng_apply_fetched(struct engine *e, size_t i, uint64_t gen, struct fetch_result *r);
void eng_probe_judges(struct engine *e, bool force);
void eng_apply_probe(struct engine *e, size_t i, uint64_t set_id, struct fetch_result *r);
void eng_apply_lookup(struct engine *e, size_t i, uint64_t set_id, const struct resolve_result *r);
/* The resolver's callback (owner: the engine), on a lookup's thread. */
void eng_lookup_done_cb(void *owner, uint64_t tag, const struct resolve_result *r);
int eng_reload_config(struct engine *e);

/* geo_pool.c: each entry's country and network. */
/* Looks pe up when its address or the databases changed since it last was. */
void eng_geo_sync(struct engine *e, struct pool_entry *pe);
/* Looks at the database files (every GEO_POLL_MS from the tick, or at once
 * when force): a replaced one is loaded and every entry looked up again. */
void eng_geo_poll(struct engine *e, bool force);
/* A reloaded config's [geo], before it is taken: 0, or -EINVAL with why
 * ("PATH: why") in err when a file it names cannot be read. */
int eng_geo_check(struct engine *e, const struct cfg *nc, char *err, size_t errlen);
/* ... and once taken (before e->cfg is replaced by nc): files it changes
 * are opened, the others looked at again. */
void eng_geo_apply(struct engine *e, const struct cfg *nc);

/* scan.c: scans, checks and their results. */
void eng_scan_start(struct engine *e);
/* A scan is asked for: it starts now, or after the running one. */
void eng_scan_request(struct engine *e);
/* pe, never checked yet, joins the running scan: false if none runs. */
bool eng_scan_join(struct engine *e, struct pool_entry *pe);
/* w is finished when the scan after those started so far ends; 0 or
 * -ENOMEM (w is left to the caller). */
int eng_scan_add_waiter(struct engine *e, struct waiter *w);
/* Frees what the scan state holds, at the engine's end. */
void eng_scan_free(struct engine *e);
void eng_scan_maybe_finish(struct engine *e);
/* An entry of the running scan will get no result (removed, gone). */
void eng_scan_forget(struct engine *e, struct pool_entry *pe);
void eng_dispatch(struct engine *e);
/* Stops pe's check without its result, and lets go of its judge. */
void eng_check_cancel(struct pool_entry *pe);
void eng_dispatch_cb(evutil_socket_t fd, short what, void *arg);
void eng_take_due(struct engine *e);
/* Once a tick: the latency rule, and the limit's recovery. */
void eng_recover_limit(struct engine *e);
/* A proxy's check succeeded in latency_ms: a sample for the latency rule. */
void eng_latency_sample(struct engine *e, const struct pool_entry *pe, uint32_t latency_ms);
/* Settles the run of live proxies failing in a row, when it can be. */
void eng_settle_doubt(struct engine *e);
/* Our side is short of something (fds, ports, CPU): fewer checks at once. */
void eng_lower_limit(struct engine *e, enum snap_limit_why why);
/* The configured (or fd-clamped) limit is now max: the limit is kept if
 * below it (a cut stays), else brought down to it; an unset limit starts
 * at max. */
void eng_limit_set_max(struct engine *e, uint32_t max);
void eng_finish_waiters(struct engine *e, uint64_t gen, int rc);

/* engine.c */
/* Once a tick, at t: how late the loop runs; a loop that stays behind
 * gets fewer checks at once. */
void eng_watch_lag(struct engine *e, uint64_t t);
int eng_cmd_send(struct engine *e, struct cmd *c);
/* Gives w its result and drops the engine's reference. */
void eng_wake(struct waiter *w, int rc);
void eng_waiter_put(struct waiter *w);
/* Raises the soft fd limit to the hard one and returns how many checks it
 * leaves room for, after FD_RESERVE and the HTTP front's and the gateway's
 * connections. */
uint32_t eng_fd_room(const struct engine *e);
/* Every judge has been asked and none answers: no scan can run. */
bool eng_judges_unreachable(const struct engine *e);

#endif
