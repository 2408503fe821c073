/* engine: the thread that owns the pool; see engine.h.
 *
 * One libevent loop does everything that changes the pool: reading the
 * sources, scanning (a queue of entries fed to the checker under an adaptive
 * concurrency limit), applying results, queueing them to the store and
 * publishing snapshots. Other threads reach it only through the command
 * queue. It does not render files (fs/) nor write to disk itself (store).
 */
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fetch.h"
#include "judge_answer.h"
#include "judges.h"
#include "log.h"
#include "pool.h"
#include "schedule.h"
#include "snapshot.h"
#include "sources.h"
#include "store.h"

#define TICK_MS 100
#define RETRY_BASE_MS 250
#define FD_RESERVE 128      /* fds kept for FUSE, SQLite, sources, logs */
#define MIN_CONCURRENCY 8
#define DISPATCH_BATCH 512  /* checks started per loop turn */
#define HOLD_AFTER_FAILS 64 /* live proxies failing in a row that put the judges in doubt */
#define CONTROL_SOURCE "@control"

/* A FUSE thread waiting for a rescan to be published. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
};

enum cmd_kind { CMD_RESCAN, CMD_ADD, CMD_REMOVE, CMD_FETCHED, CMD_PROBED, CMD_RELOAD };

/* A judge set replaced by a reload; checks started under it may still point
 * into it, so it is kept until the engine ends. */
struct retired {
	struct retired *next;
	struct judge_set *judges;
};

struct cmd {
	struct cmd *next;
	enum cmd_kind kind;
	struct waiter *waiter;   /* CMD_RESCAN with wait */
	struct proxy_addr *list; /* CMD_ADD / CMD_REMOVE, owned */
	size_t n;
	struct fetch_result *res; /* CMD_FETCHED / CMD_PROBED, owned */
	size_t idx;               /* the source or judge it is for */
	uint64_t gen;             /* the config generation it was asked under */
};

/* What a download in flight is for; freed by its callback. */
struct fetch_ctx {
	struct engine *e;
	enum cmd_kind kind;
	size_t idx;
	uint64_t gen;
};

/* A FIFO of entries, growable ring. */
struct queue {
	struct pool_entry **items;
	uint64_t *due;           /* monotonic ms when ready; NULL for plain queues */
	size_t head, len, cap;
};

struct engine {
	const struct cfg *cfg;
	struct cfg *cfg_owned;   /* cfg when a reload made it (else the caller owns cfg) */
	uint64_t cfg_gen;        /* bumped when the config is replaced */
	struct retired *retired;
	struct store *store;
	struct pool *pool;
	struct judge_set *judges;   /* heap: checks in flight point into it */
	struct fetcher *fetcher; /* downloads: remote sources, judge probes */
	struct chk_opts opts;
	bool paused;             /* no judge answers: checking waits */
	uint32_t alive_fail_run; /* live proxies failed in a row, no success between */
	uint64_t held_total;     /* results not applied while the judges were in doubt */

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
	struct queue retry;      /* due-time ordered (same backoff per try) */
	struct queue recheck;    /* due by the re-check policy; after urgent, before a scan */
	struct sched sched;      /* every checked proxy's next re-check */
	uint64_t epoch_ms;       /* the engine clock's zero (monotonic) */

	struct src_state *sources; /* one per cfg source */

	/* Scanning. */
	uint64_t scan_gen;       /* scans started */
	bool scan_running;
	bool rescan_pending;
	uint32_t scan_checked, scan_total;
	int64_t scan_started, scan_finished;
	double last_scan_seconds;
	uint64_t scan_started_ms;
	uint64_t next_scan_ms;
	struct waiter **waiters; /* finished when the scan they wait for ends */
	uint64_t *waiter_gen;
	size_t nwaiters, capwaiters;

	/* Concurrency. */
	uint32_t in_flight, in_flight_max;
	uint32_t limit, limit_max;
	uint64_t last_local_err_ms;
	uint64_t checks_total[CHK_RESULT_COUNT];
	uint64_t local_requeues, retries_total;

	/* One-shot mode (engine_run_once): no publishing, no rescans. */
	const struct engine_once_ops *once;
	void *once_arg;
	uint32_t scan_alive;
	int once_rc;             /* why a one-shot run stopped early, 0 if it did not */

	/* Publishing. */
	bool dirty;
	uint64_t last_publish_ms;
	uint64_t generation;
	int64_t started;
};

static void dispatch(struct engine *e);
static int cmd_send(struct engine *e, struct cmd *c);
static bool all_probed(const struct judge_set *js);
static uint32_t fd_room(void);
static void wake(struct waiter *w, int rc);
static int reload_config(struct engine *e);

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_s(void)
{
	return (int64_t)time(NULL);
}

/* --- queues --- */

static int queue_push(struct queue *q, struct pool_entry *e, uint64_t due, bool timed)
{
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 256;
		struct pool_entry **items = malloc(ncap * sizeof(*items));
		uint64_t *dues = timed ? malloc(ncap * sizeof(*dues)) : NULL;

		if (!items || (timed && !dues)) {
			free(items);
			free(dues);
			return -ENOMEM;
		}
		for (size_t i = 0; i < q->len; i++) {
			items[i] = q->items[(q->head + i) % q->cap];
			if (timed)
				dues[i] = q->due[(q->head + i) % q->cap];
		}
		free(q->items);
		free(q->due);
		q->items = items;
		q->due = dues;
		q->head = 0;
		q->cap = ncap;
	}
	q->items[(q->head + q->len) % q->cap] = e;
	if (timed)
		q->due[(q->head + q->len) % q->cap] = due;
	q->len++;
	e->queued = true;
	return 0;
}

static struct pool_entry *queue_peek(const struct queue *q, uint64_t *due)
{
	if (!q->len)
		return NULL;
	if (due)
		*due = q->due ? q->due[q->head] : 0;
	return q->items[q->head];
}

static struct pool_entry *queue_pop(struct queue *q)
{
	struct pool_entry *e;

	if (!q->len)
		return NULL;
	e = q->items[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	e->queued = false;
	return e;
}

/* Frees an unlinked entry once nothing refers to it any more. */
static void entry_release(struct pool_entry *e)
{
	if (e->unlinked && !e->queued && !e->chk)
		pool_entry_free(e);
}

/* Empties q, freeing the unlinked entries only it still held. */
static void queue_drain(struct queue *q)
{
	struct pool_entry *e;

	while ((e = queue_pop(q)))
		entry_release(e);
	free(q->items);
	free(q->due);
	memset(q, 0, sizeof(*q));
}

/* --- store --- */

static void sources_join(const struct engine *e, const struct pool_entry *pe, char *buf,
			 size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < e->cfg->nsources && i < 64; i++) {
		if (!(pe->sources >> i & 1))
			continue;
		len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "%s%s",
					len ? "," : "", e->cfg->sources[i].name);
	}
	if (pe->manual)
		len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "%s%s",
					len ? "," : "", CONTROL_SOURCE);
	if (len >= size)
		buf[size - 1] = '\0';
}

static const char *exit_ip(const struct pool_entry *pe, char *buf, size_t size);

static void store_entry(struct engine *e, const struct pool_entry *pe)
{
	char sources[1024], ip[INET6_ADDRSTRLEN];
	struct store_rec r = {
		.uri = pe->uri, .proto = pe->proto, .folders = pe->folders,
		.state = pe->dropped ? STORE_DROPPED
			 : pe->state == POOL_ALIVE ? STORE_ALIVE
			 : pe->state == POOL_DEAD ? STORE_DEAD : STORE_UNKNOWN,
		.latency_ms = pe->latency_ms, .last_checked = pe->last_checked,
		.successes = pe->successes, .failures = pe->failures,
		.fails_in_row = pe->fails_in_row, .sources = sources,
		.exit_ip = exit_ip(pe, ip, sizeof(ip)),
		.anonymity = pe->anonymity,
	};

	if (!e->store)
		return;
	sources_join(e, pe, sources, sizeof(sources));
	store_put(e->store, &r);
}

/* --- publishing --- */

static const char *health_text(const struct engine *e, const struct snap_stats *st,
			       const struct store_status *ss, char *buf, size_t size)
{
	if (e->paused && e->judges->n && !all_probed(e->judges))
		snprintf(buf, size, "degraded: waiting for the judges' first answer");
	else if (e->paused && e->judges->n && !judges_any_healthy(e->judges))
		snprintf(buf, size, "degraded: no judge reachable (%s: %s)", e->judges->v[0].url,
			 e->judges->v[0].error);
	else if (e->paused)
		snprintf(buf, size, "degraded: results held while the judges are probed");
	else if (ss->error[0])
		snprintf(buf, size, "degraded: store: %s", ss->error);
	else if (st->total == 0)
		snprintf(buf, size, "degraded: no proxies (the sources list none)");
	else if (st->alive == 0 && e->scan_gen == 0)
		snprintf(buf, size, "degraded: no live proxies yet (first scan not started)");
	else if (st->alive == 0 && st->unknown == st->total)
		snprintf(buf, size, "degraded: no live proxies yet (first scan running)");
	else if (st->alive == 0)
		snprintf(buf, size, "degraded: no live proxies (%u checked, all dead)", st->dead);
	else
		snprintf(buf, size, "ok");
	return buf;
}

static void fill_stats(struct engine *e, struct snap_stats *st, struct store_status *ss)
{
	st->generation = ++e->generation;
	clock_gettime(CLOCK_REALTIME, &st->built);
	st->started = e->started;
	st->scan_running = e->scan_running;
	st->scan_generation = e->scan_gen;
	st->scan_checked = e->scan_checked;
	st->scan_total = e->scan_total;
	st->scan_started = e->scan_started;
	st->scan_finished = e->scan_finished;
	st->last_scan_seconds = e->last_scan_seconds;
	st->in_flight = e->in_flight;
	st->in_flight_max = e->in_flight_max;
	st->concurrency = e->limit;
	st->concurrency_conf = (uint32_t)e->cfg->concurrency;
	for (int i = 0; i < CHK_RESULT_COUNT && i < SNAP_RESULT_CLASSES; i++)
		st->checks_total[i] = e->checks_total[i];
	st->local_requeues_total = e->local_requeues;
	st->paused = e->paused;
	st->held_total = e->held_total;
	st->retries_total = e->retries_total;
	st->snapshots_total = e->generation;
	memset(ss, 0, sizeof(*ss));
	if (e->store)
		store_get_status(e->store, ss);
	st->store_writes_total = ss->writes_total;
	st->store_errors_total = ss->errors_total;
	st->store_error = ss->error;
}

static const char *exit_ip(const struct pool_entry *pe, char *buf, size_t size)
{
	if (!pe->exit_family || !inet_ntop(pe->exit_family, pe->exit_addr, buf, (socklen_t)size))
		return "";
	return buf;
}

static int add_live(struct engine *e, struct snap_builder *b, const struct pool_entry *pe)
{
	char sources[1024], ip[INET6_ADDRSTRLEN];
	struct snap_proxy p = {
		.uri = pe->uri, .host = pe->host, .exit_ip = exit_ip(pe, ip, sizeof(ip)),
		.sources = sources,
		.port = pe->port, .proto = pe->proto, .folders = pe->folders,
		.anonymity = pe->anonymity, .latency_ms = pe->latency_ms,
		.last_checked = pe->last_checked,
	};

	sources_join(e, pe, sources, sizeof(sources));
	return snap_builder_add(b, &p);
}

static void publish(struct engine *e)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st = { 0 };
	struct store_status ss;
	struct pool_iter it;
	struct pool_entry *pe = NULL;
	struct snapshot *s;
	char health[512];

	uint32_t alive_by_src[64] = { 0 };

	if (!b)
		goto out_nomem;
	while ((pe = pool_next(e->pool, &it, pe))) {
		if (pe->removed) {
			st.removed++;
			continue;
		}
		if (pe->dropped) {
			st.dropped++;
			continue;
		}
		st.total++;
		if (pe->state == POOL_ALIVE) {
			st.alive++;
			for (int f = 0; f < PROXY_PROTO_COUNT; f++)
				st.alive_by_folder[f] += pe->folders >> f & 1;
			add_live(e, b, pe);
			for (int i = 0; i < 64; i++)
				alive_by_src[i] += (uint32_t)(pe->sources >> i & 1);
		} else if (pe->state == POOL_DEAD) {
			st.dead++;
		} else {
			st.unknown++;
		}
	}
	for (size_t i = 0; i < e->cfg->nsources; i++)
		src_snapshot(&e->sources[i], &e->cfg->sources[i], i < 64 ? alive_by_src[i] : 0, b);
	for (size_t i = 0; i < e->judges->n; i++) {
		const struct judge *j = &e->judges->v[i];
		struct snap_judge sj = {
			.url = j->url, .healthy = j->healthy, .last_probe = j->last_probe,
			.error = j->error, .our_addr = j->our_addr, .checks = j->checks, .ok = j->ok,
		};

		snap_builder_add_judge(b, &sj);
	}
	fill_stats(e, &st, &ss);
	st.health = health_text(e, &st, &ss, health, sizeof(health));
	snap_builder_set_stats(b, &st);
	s = snap_builder_finish(b);
	if (!s)
		goto out_nomem;
	snap_publish(s);
	e->dirty = false;
	e->last_publish_ms = now_ms();
	return;
out_nomem:
	log_warn("publish: out of memory; the previous snapshot stays");
}

/* --- sources --- */

static int source_line(void *arg, size_t src, const struct proxy_addr *a)
{
	struct engine *e = arg;
	struct pool_entry *pe;
	bool created;
	uint64_t bit = src < 64 ? 1ULL << src : 0;

	pe = pool_get(e->pool, a, &created);
	if (!pe)
		return -ENOMEM;
	if (pe->sources & bit)
		return 1;
	pe->sources |= bit;
	return 0;
}

static void clear_source_bit(struct engine *e, size_t src)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	while ((pe = pool_next(e->pool, &it, pe)))
		pe->sources &= ~(src < 64 ? 1ULL << src : 0);
}

/* Drops the proxies that no source nor control/add lists any more. */
static void prune_unlisted(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	while ((pe = pool_next(e->pool, &it, pe))) {
		if (pe->sources || pe->manual || pe->removed)
			continue;
		sched_del(&e->sched, pe);
		pool_unlink(e->pool, pe);
		if (e->store)
			store_delete(e->store, pe->uri);
		entry_release(pe);
	}
}

/* Queues the proxies never checked yet (just listed by a source), unless a
 * scan is about to take them. */
static void queue_unchecked(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	while ((pe = pool_next(e->pool, &it, pe))) {
		if (pe->last_checked || pe->queued || pe->chk || pe->removed || pe->dropped)
			continue;
		pe->tries = 0;
		if (!e->scan_running) {
			queue_push(&e->recheck, pe, 0, false);
			continue;
		}
		/* A running scan takes it in, so its end means this one too. */
		pe->scan = (uint32_t)e->scan_gen;
		if (queue_push(&e->ready, pe, 0, false) == 0)
			e->scan_total++;
	}
}

static void read_local(struct engine *e, size_t i)
{
	FILE *f = src_open(&e->sources[i], &e->cfg->sources[i]);

	if (!f)
		return;
	clear_source_bit(e, i);
	src_read(&e->sources[i], &e->cfg->sources[i], f, i, source_line, e);
}

static void fetch_done_cb(void *arg, struct fetch_result *res);

static void fetch_remote(struct engine *e, size_t i)
{
	struct src_state *st = &e->sources[i];
	struct fetch_ctx *ctx;
	struct fetch_req req = {
		.url = e->cfg->sources[i].url, .etag = st->etag,
		.last_modified = st->last_modified, .ca_file = e->cfg->ca_file,
	};

	if (st->busy || !e->fetcher)
		return;
	ctx = malloc(sizeof(*ctx));
	if (!ctx)
		return;
	*ctx = (struct fetch_ctx){ .e = e, .kind = CMD_FETCHED, .idx = i, .gen = e->cfg_gen };
	st->busy = true;
	st->last_try = wall_s();
	if (fetcher_submit(e->fetcher, &req, fetch_done_cb, ctx) < 0) {
		st->busy = false;
		free(ctx);
	}
}

/* Refreshes the sources that are due (all when force): local lists are
 * read now, downloads are started and applied when they come back. */
static void refresh_sources(struct engine *e, bool force)
{
	uint64_t t = now_ms();
	bool read = false;

	for (size_t i = 0; i < e->cfg->nsources; i++) {
		struct src_state *st = &e->sources[i];

		if (!force && t < st->next_ms)
			continue;
		st->next_ms = t + (uint64_t)e->cfg->sources[i].interval_s * 1000;
		if (src_is_remote(&e->cfg->sources[i])) {
			fetch_remote(e, i);
		} else {
			read_local(e, i);
			read = true;
		}
	}
	if (read) {
		prune_unlisted(e);
		e->dirty = true;
	}
}

/* A download came back (engine thread): a new list replaces the source's
 * old one; a failure or an unchanged list keeps it. */
static void apply_fetched(struct engine *e, size_t i, uint64_t gen, struct fetch_result *r)
{
	struct src_state *st;

	if (gen != e->cfg_gen || i >= e->cfg->nsources)
		return;
	st = &e->sources[i];
	st->busy = false;
	st->fetches_total++;
	st->http_status = r->http_status;
	if (r->err) {
		src_failed(st, r->error, r->http_status);
		log_warn("source %s: %s", e->cfg->sources[i].name, r->error);
	} else if (r->not_modified) {
		st->error[0] = '\0';
		st->last_read = wall_s();
	} else {
		clear_source_bit(e, i);
		src_read_text(st, &e->cfg->sources[i], r->data, r->len, i, source_line, e);
		prune_unlisted(e);
		queue_unchecked(e);
	}
	if (!r->err) {
		free(st->etag);
		free(st->last_modified);
		st->etag = r->etag;
		st->last_modified = r->last_modified;
		r->etag = r->last_modified = NULL;
	}
	e->dirty = true;
	dispatch(e);
}

/* --- judges --- */

static void probe_judges(struct engine *e, bool force)
{
	int64_t now = wall_s();

	if (!e->fetcher)
		return;
	for (size_t i = 0; i < e->judges->n; i++) {
		struct judge *j = &e->judges->v[i];
		struct fetch_ctx *ctx;
		struct fetch_req req;

		if (j->probing || (!force && now < j->next_probe))
			continue;
		ctx = malloc(sizeof(*ctx));
		if (!ctx)
			return;
		*ctx = (struct fetch_ctx){ .e = e, .kind = CMD_PROBED, .idx = i, .gen = e->cfg_gen };
		judges_probe_req(j, e->cfg, &req);
		j->probing = true;
		if (fetcher_submit(e->fetcher, &req, fetch_done_cb, ctx) < 0) {
			j->probing = false;
			free(ctx);
		}
	}
}

static bool all_probed(const struct judge_set *js)
{
	for (size_t i = 0; i < js->n; i++)
		if (!js->v[i].last_probe)
			return false;
	return true;
}

static void apply_probe(struct engine *e, size_t i, uint64_t gen, struct fetch_result *r)
{
	if (gen != e->cfg_gen || i >= e->judges->n)
		return;
	if (judges_probe_done(e->judges, &e->judges->v[i], r, wall_s(), e->cfg->judge_probe_s))
		e->dirty = true;
	if (e->once && !judges_any_healthy(e->judges) && all_probed(e->judges)) {
		log_err("no judge answers directly (%s: %s); nothing was checked",
			e->judges->v[0].url, e->judges->v[0].error);
		e->once_rc = -EHOSTUNREACH;
		event_base_loopbreak(e->base);
		return;
	}
	if (e->paused && judges_any_healthy(e->judges)) {
		log_info("a judge answers: checking resumes");
		e->paused = false;
		e->alive_fail_run = 0;
		e->dirty = true;
	} else if (!e->paused && !judges_any_healthy(e->judges)) {
		log_warn("no judge answers: checking pauses, proxies keep their state");
		e->paused = true;
		e->dirty = true;
	}
	dispatch(e);
}

/* On the fetcher's thread: hand the result to the engine's. */
static void fetch_done_cb(void *arg, struct fetch_result *res)
{
	struct fetch_ctx *ctx = arg;
	struct cmd *c = calloc(1, sizeof(*c));

	if (!c) {
		fetch_result_free(res);
		free(ctx);
		return;
	}
	c->kind = ctx->kind;
	c->idx = ctx->idx;
	c->gen = ctx->gen;
	c->res = res;
	cmd_send(ctx->e, c);
	free(ctx);
}

/* --- scanning and checks --- */


static void finish_waiters(struct engine *e, uint64_t gen, int rc)
{
	size_t kept = 0;

	for (size_t i = 0; i < e->nwaiters; i++) {
		struct waiter *w = e->waiters[i];

		if (e->waiter_gen[i] > gen && rc == 0) {
			e->waiters[kept] = w;
			e->waiter_gen[kept++] = e->waiter_gen[i];
			continue;
		}
		pthread_mutex_lock(&w->lock);
		w->done = true;
		w->rc = rc;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
	e->nwaiters = kept;
}

static void scan_start(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	refresh_sources(e, true);
	e->scan_gen++;
	e->scan_running = true;
	e->rescan_pending = false;
	e->scan_checked = 0;
	e->scan_alive = 0;
	e->scan_total = 0;
	e->scan_started = wall_s();
	e->scan_started_ms = now_ms();
	while ((pe = pool_next(e->pool, &it, pe))) {
		if (pe->removed || pe->dropped || pe->queued || pe->chk)
			continue;
		pe->scan = (uint32_t)e->scan_gen;
		pe->tries = 0;
		if (queue_push(&e->ready, pe, 0, false) == 0)
			e->scan_total++;
	}
	log_info("scan %llu started: %u proxies", (unsigned long long)e->scan_gen,
		 e->scan_total);
	e->dirty = true;
	dispatch(e);
}

static bool sources_busy(const struct engine *e)
{
	for (size_t i = 0; i < e->cfg->nsources; i++)
		if (e->sources[i].busy)
			return true;
	return false;
}

/* A one-shot run also waits for its downloads and for its judges. */
static bool scan_busy(const struct engine *e)
{
	if (e->ready.len || e->retry.len || e->urgent.len || e->in_flight)
		return true;
	return e->once && sources_busy(e);
}

static void scan_maybe_finish(struct engine *e)
{
	if (!e->scan_running || scan_busy(e))
		return;
	e->scan_running = false;
	e->scan_finished = wall_s();
	e->last_scan_seconds = (double)(now_ms() - e->scan_started_ms) / 1000.0;
	e->next_scan_ms = now_ms() + (uint64_t)e->cfg->interval_s * 1000;
	log_info("scan %llu finished: %u checked in %.1f s", (unsigned long long)e->scan_gen,
		 e->scan_checked, e->last_scan_seconds);
	publish(e);
	finish_waiters(e, e->scan_gen, 0);
	if (e->once)
		event_base_loopbreak(e->base);
	else if (e->rescan_pending)
		scan_start(e);
}

static uint32_t clock_s(const struct engine *e)
{
	return (uint32_t)((now_ms() - e->epoch_ms) / 1000);
}

/* The re-check policy: a live proxy again after recheck_s; a failed one
 * after retry_min_s, doubling per failure in a row up to retry_max_s; one
 * failed max_fails times in a row and dead for over dead_ttl_s is dropped
 * (kept, and remembered as dropped, but no longer checked or counted). */
static void schedule_next(struct engine *e, struct pool_entry *pe)
{
	const struct cfg *c = e->cfg;
	uint64_t wait;

	if (e->once)
		return;
	if (pe->state == POOL_ALIVE) {
		wait = (uint64_t)c->recheck_s;
	} else if (pe->fails_in_row >= (uint32_t)c->max_fails &&
		   pe->last_checked - pe->dead_since >= c->dead_ttl_s) {
		pe->dropped = true;
		sched_del(&e->sched, pe);
		return;
	} else {
		unsigned shift = pe->fails_in_row > 20 ? 20 : pe->fails_in_row - 1;

		wait = (uint64_t)c->retry_min_s << shift;
		if (wait > (uint64_t)c->retry_max_s)
			wait = (uint64_t)c->retry_max_s;
	}
	sched_put(&e->sched, pe, clock_s(e) + (uint32_t)wait);
}

/* Moves the proxies whose re-check is due into the recheck queue. */
static void take_due(struct engine *e)
{
	struct pool_entry *pe;
	uint32_t now = clock_s(e);

	while ((pe = sched_pop_due(&e->sched, now))) {
		if (pe->queued || pe->chk || pe->removed || pe->dropped || pe->unlinked)
			continue;
		pe->tries = 0;
		queue_push(&e->recheck, pe, 0, false);
	}
}

static void result_apply(struct engine *e, struct pool_entry *pe, const struct chk_outcome *o)
{
	pe->last_checked = wall_s();
	if (o->result == CHK_OK) {
		/* An average over the last checks, not one lucky one. */
		pe->latency_ms = pe->state == POOL_ALIVE
					 ? (pe->latency_ms * 2 + o->latency_ms + 2) / 3
					 : o->latency_ms;
		pe->state = POOL_ALIVE;
		pe->successes++;
		pe->fails_in_row = 0;
		pe->dead_since = 0;
		pe->folders = (uint8_t)(1u << pe->proto);
		if (pe->proto == PROXY_HTTP && pe->tunnel)
			pe->folders |= 1u << PROXY_HTTPS;
	} else {
		pe->state = POOL_DEAD;
		pe->failures++;
		if (pe->fails_in_row++ == 0 || !pe->dead_since)
			pe->dead_since = pe->last_checked;
		pe->folders = 0;
	}
	schedule_next(e, pe);
	if ((uint32_t)e->scan_gen == pe->scan && e->scan_running) {
		e->scan_checked++;
		e->scan_alive += o->result == CHK_OK;
	}
	if (e->once) {
		struct engine_result r = {
			.uri = pe->uri, .proto = (enum proxy_proto)pe->proto,
			.alive = o->result == CHK_OK, .latency_ms = o->latency_ms,
			.result = chk_result_name(o->result),
		};

		e->once->result(e->once_arg, &r);
	}
	store_entry(e, pe);
	e->dirty = true;
}

static void lower_limit(struct engine *e)
{
	uint32_t nl = e->in_flight - e->in_flight / 4;

	if (nl < MIN_CONCURRENCY)
		nl = MIN_CONCURRENCY;
	if (nl < e->limit) {
		log_warn("local resource shortage: concurrency %u -> %u", e->limit, nl);
		e->limit = nl;
	}
	e->last_local_err_ms = now_ms();
}

static void check_done(void *arg, const struct chk_outcome *o);

static bool retryable(enum chk_result r)
{
	return r == CHK_TIMEOUT || r == CHK_RESET;
}

/* A check that cannot even start for the proxy's own reason (a host name
 * we do not resolve yet, a protocol field too long) fails at once. */
static bool fail_unstarted(struct engine *e, struct pool_entry *pe, enum chk_result r, int err)
{
	struct chk_outcome o = { .result = r, .err = err };

	e->checks_total[r]++;
	result_apply(e, pe, &o);
	return true;
}

/* Starts one check; false when our side could not (the entry is requeued). */
static bool start_check(struct engine *e, struct pool_entry *pe)
{
	struct chk_target t = {
		.proto = (enum proxy_proto)pe->proto, .tunnel = pe->tunnel,
		.remote_dns = pe->remote_dns, .user = pe->user, .pass = pe->pass,
	};

	struct judge *j;

	if (!pe->have_addr)
		return fail_unstarted(e, pe, CHK_REFUSED, EHOSTUNREACH);
	j = e->paused ? NULL : judges_pick(e->judges);
	if (!j) {
		queue_push(&e->urgent, pe, 0, false);
		return false; /* no judge answers: wait for one */
	}
	memcpy(&t.addr, &pe->addr, sizeof(pe->addr));
	t.addrlen = pe->addr.sa.sa_family == AF_INET6 ? sizeof(pe->addr.in6)
						       : sizeof(pe->addr.in);
	pe->judge = (uint8_t)(j - e->judges->v);
	pe->chk = chk_start(e->base, &t, &j->chk, &e->opts, check_done, pe);
	if (!pe->chk) {
		int err = errno;

		if (!chk_errno_is_local(err))
			return fail_unstarted(e, pe, CHK_PROTO_ERR, err);
		e->local_requeues++;
		lower_limit(e);
		queue_push(&e->urgent, pe, 0, false);
		return false;
	}
	pe->tries++;
	e->in_flight++;
	if (e->in_flight > e->in_flight_max)
		e->in_flight_max = e->in_flight;
	return true;
}

static struct engine *the_engine; /* for check_done: one engine per process */

/* What the judge's echo says about a live proxy's anonymity and exit. */
static void learn_anonymity(struct engine *e, struct pool_entry *pe, const struct chk_outcome *o)
{
	struct ja_result r;

	pe->exit_family = 0;
	pe->anonymity = SNAP_ANON_UNKNOWN;
	if (!o->body || ja_parse(o->body, o->body_len, e->judges->our, e->judges->nour, &r) < 0)
		return;
	pe->anonymity = (uint8_t)r.anon;
	if (inet_pton(AF_INET, r.exit_ip, pe->exit_addr) == 1)
		pe->exit_family = AF_INET;
	else if (inet_pton(AF_INET6, r.exit_ip, pe->exit_addr) == 1)
		pe->exit_family = AF_INET6;
}

/* A failure may be the judges' or our network's, not the proxy's: while no
 * judge answers, or when many live proxies fail in a row, the result is
 * held (the proxy keeps its state and is checked again) and the judges are
 * probed at once. */
static bool hold_failure(struct engine *e, struct pool_entry *pe)
{
	if (e->once)
		return false;
	if (!e->paused && pe->state == POOL_ALIVE && ++e->alive_fail_run >= HOLD_AFTER_FAILS) {
		log_warn("%u live proxies failed in a row: holding results, probing the judges",
			 e->alive_fail_run);
		e->paused = true;
		e->alive_fail_run = 0;
		probe_judges(e, true);
	}
	if (!e->paused)
		return false;
	e->held_total++;
	pe->tries = 0;
	queue_push(&e->urgent, pe, 0, false);
	return true;
}

static void check_done(void *arg, const struct chk_outcome *o)
{
	struct engine *e = the_engine;
	struct pool_entry *pe = arg;
	struct judge *j = &e->judges->v[pe->judge];

	pe->chk = NULL;
	e->in_flight--;
	if (pe->unlinked || pe->removed) {
		entry_release(pe);
		goto out;
	}
	if (o->result != CHK_LOCAL_ERR)
		j->checks++;
	if (o->result == CHK_OK) {
		j->ok++;
		e->alive_fail_run = 0;
		learn_anonymity(e, pe, o);
	} else if (o->result != CHK_LOCAL_ERR && hold_failure(e, pe)) {
		goto out;
	}
	if (o->result == CHK_LOCAL_ERR) {
		e->local_requeues++;
		lower_limit(e);
		pe->tries--;
		queue_push(&e->urgent, pe, 0, false);
		goto out;
	}
	if (retryable(o->result) && pe->tries <= (uint8_t)e->cfg->retries) {
		uint64_t delay = (uint64_t)RETRY_BASE_MS << (pe->tries - 1);

		e->retries_total++;
		if (queue_push(&e->retry, pe, now_ms() + delay, true) == 0)
			goto out;
	}
	e->checks_total[o->result]++;
	result_apply(e, pe, o);
out:
	dispatch(e);
	scan_maybe_finish(e);
}

static struct pool_entry *next_entry(struct engine *e)
{
	struct pool_entry *pe;
	uint64_t due;

	for (;;) {
		pe = queue_peek(&e->retry, &due);
		if (pe && due <= now_ms())
			pe = queue_pop(&e->retry);
		else if (e->urgent.len)
			pe = queue_pop(&e->urgent);
		else if (e->recheck.len)
			pe = queue_pop(&e->recheck);
		else
			pe = queue_pop(&e->ready);
		if (!pe)
			return NULL;
		if (!pe->unlinked && !pe->removed && !pe->dropped && !pe->chk)
			return pe;
		entry_release(pe);
	}
}

/* Starts checks up to the limit, DISPATCH_BATCH at a time: starting one
 * costs a socket() and a connect(), so starting thousands in one go would
 * keep the loop from reading answers that are already there. The rest
 * follows from dispatch_ev, which runs after pending I/O. */
static void dispatch(struct engine *e)
{
	int started = 0;

	while (e->in_flight < e->limit) {
		struct pool_entry *pe;

		if (started == DISPATCH_BATCH) {
			event_active(e->dispatch_ev, EV_TIMEOUT, 0);
			return;
		}
		pe = next_entry(e);
		if (!pe)
			break;
		if (!start_check(e, pe))
			break; /* our side is short of something: wait for the tick */
		started++;
	}
}

static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;

	dispatch(e);
	scan_maybe_finish(e);
}

static void recover_limit(struct engine *e)
{
	uint64_t t = now_ms();

	if (e->limit >= e->limit_max || t - e->last_local_err_ms < 1000)
		return;
	e->limit += e->limit / 8 + 1;
	if (e->limit > e->limit_max)
		e->limit = e->limit_max;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	uint64_t t = now_ms();

	recover_limit(e);
	take_due(e);
	probe_judges(e, false);
	if (!e->once)
		refresh_sources(e, false);
	if (!e->once && !e->scan_running && (e->rescan_pending || t >= e->next_scan_ms))
		scan_start(e);
	dispatch(e);
	if (e->dirty && t - e->last_publish_ms >= (uint64_t)e->cfg->publish_ms)
		publish(e);
	scan_maybe_finish(e);
}

/* --- commands --- */

static void cmd_free(struct cmd *c)
{
	free(c->list);
	if (c->res)
		fetch_result_free(c->res);
	free(c);
}

static void do_add(struct engine *e, const struct proxy_addr *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool created;
		struct pool_entry *pe = pool_get(e->pool, &list[i], &created);

		if (!pe)
			continue;
		pe->manual = true;
		pe->dropped = false;
		if (pe->removed) {
			pe->removed = false;
			if (e->store)
				store_unmark_removed(e->store, pe->uri);
		}
		store_entry(e, pe);
		if (!pe->queued && !pe->chk) {
			pe->tries = 0;
			pe->scan = 0;
			queue_push(&e->urgent, pe, 0, false);
		}
	}
	e->dirty = true;
	dispatch(e);
}

static void do_remove(struct engine *e, const struct proxy_addr *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool created;
		struct pool_entry *pe = pool_get(e->pool, &list[i], &created);

		if (!pe)
			continue;
		pe->removed = true;
		pe->manual = false;
		sched_del(&e->sched, pe);
		pe->state = POOL_UNKNOWN;
		pe->folders = 0;
		if (pe->chk) {
			chk_cancel(pe->chk);
			pe->chk = NULL;
			e->in_flight--;
		}
		if (e->store)
			store_mark_removed(e->store, pe->uri);
	}
	e->dirty = true;
	publish(e); /* a removed proxy must not be handed out a moment longer */
	dispatch(e);
	scan_maybe_finish(e);
}

static void do_rescan(struct engine *e, struct waiter *w)
{
	uint64_t target = e->scan_gen + 1; /* the pending scan, or the one started below */

	if (e->scan_running)
		e->rescan_pending = true;
	if (w) {
		size_t need = e->nwaiters + 1;

		if (need > e->capwaiters) {
			size_t cap = e->capwaiters ? e->capwaiters * 2 : 8;
			struct waiter **ws = realloc(e->waiters, cap * sizeof(*ws));
			uint64_t *gs = ws ? realloc(e->waiter_gen, cap * sizeof(*gs)) : NULL;

			if (ws)
				e->waiters = ws;
			if (!gs) {
				pthread_mutex_lock(&w->lock);
				w->done = true;
				w->rc = -ENOMEM;
				pthread_cond_signal(&w->cond);
				pthread_mutex_unlock(&w->lock);
				w = NULL;
			} else {
				e->waiter_gen = gs;
				e->capwaiters = cap;
			}
		}
		if (w) {
			e->waiters[e->nwaiters] = w;
			e->waiter_gen[e->nwaiters++] = target;
		}
	}
	if (!e->scan_running)
		scan_start(e);
	scan_maybe_finish(e); /* an empty pool finishes at once */
}

static void cmd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct cmd *list, *c;

	pthread_mutex_lock(&e->cmd_lock);
	list = e->cmds;
	e->cmds = NULL;
	e->cmds_tail = &e->cmds;
	pthread_mutex_unlock(&e->cmd_lock);
	while ((c = list)) {
		list = c->next;
		switch (c->kind) {
		case CMD_RESCAN:
			do_rescan(e, c->waiter);
			break;
		case CMD_ADD:
			do_add(e, c->list, c->n);
			break;
		case CMD_REMOVE:
			do_remove(e, c->list, c->n);
			break;
		case CMD_FETCHED:
			apply_fetched(e, c->idx, c->gen, c->res);
			break;
		case CMD_PROBED:
			apply_probe(e, c->idx, c->gen, c->res);
			break;
		case CMD_RELOAD:
			wake(c->waiter, reload_config(e));
			c->waiter = NULL;
			break;
		}
		cmd_free(c);
	}
}

static int cmd_send(struct engine *e, struct cmd *c)
{
	pthread_mutex_lock(&e->cmd_lock);
	if (e->stopping) {
		pthread_mutex_unlock(&e->cmd_lock);
		cmd_free(c);
		return -ESHUTDOWN;
	}
	*e->cmds_tail = c;
	e->cmds_tail = &c->next;
	pthread_mutex_unlock(&e->cmd_lock);
	event_active(e->cmd_ev, EV_READ, 0);
	return 0;
}

int engine_rescan(struct engine *e, bool wait)
{
	struct cmd *c = calloc(1, sizeof(*c));
	struct waiter w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	int rc;

	if (!c)
		return -ENOMEM;
	c->kind = CMD_RESCAN;
	c->waiter = wait ? &w : NULL;
	rc = cmd_send(e, c);
	if (rc < 0 || !wait)
		return rc;
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	rc = w.rc;
	pthread_mutex_unlock(&w.lock);
	return rc;
}

static int send_list(struct engine *e, enum cmd_kind kind, const struct proxy_addr *list,
		     size_t n)
{
	struct cmd *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->kind = kind;
	c->n = n;
	if (n) {
		c->list = malloc(n * sizeof(*list));
		if (!c->list) {
			free(c);
			return -ENOMEM;
		}
		memcpy(c->list, list, n * sizeof(*list));
	}
	return cmd_send(e, c);
}

int engine_reload(struct engine *e)
{
	struct cmd *c = calloc(1, sizeof(*c));
	struct waiter w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	int rc;

	if (!c)
		return -ENOMEM;
	c->kind = CMD_RELOAD;
	c->waiter = &w;
	rc = cmd_send(e, c);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	rc = w.rc;
	pthread_mutex_unlock(&w.lock);
	return rc;
}

int engine_add(struct engine *e, const struct proxy_addr *list, size_t n)
{
	return send_list(e, CMD_ADD, list, n);
}

int engine_remove(struct engine *e, const struct proxy_addr *list, size_t n)
{
	return send_list(e, CMD_REMOVE, list, n);
}

void engine_signal_reload(struct engine *e)
{
	char c = 'r';
	ssize_t n = write(e->sig_pipe[1], &c, 1);

	(void)n; /* a full pipe already holds a request */
}

static void wake(struct waiter *w, int rc)
{
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Carries each source's state over to the new config by name (a changed
 * url starts afresh), and renumbers the pool's source bits to match. */
static struct src_state *carry_sources(struct engine *e, const struct cfg *nc)
{
	struct src_state *ns = calloc(nc->nsources ? nc->nsources : 1, sizeof(*ns));
	int map[64];
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	if (!ns)
		return NULL;
	for (size_t o = 0; o < 64; o++)
		map[o] = -1;
	for (size_t i = 0; i < nc->nsources; i++) {
		for (size_t o = 0; o < e->cfg->nsources; o++) {
			if (strcmp(nc->sources[i].name, e->cfg->sources[o].name) != 0)
				continue;
			if (o < 64 && i < 64)
				map[o] = (int)i;
			if (strcmp(nc->sources[i].url, e->cfg->sources[o].url) == 0 &&
			    nc->sources[i].interval_s == e->cfg->sources[o].interval_s) {
				ns[i] = e->sources[o];
				memset(&e->sources[o], 0, sizeof(e->sources[o]));
				ns[i].busy = false; /* its answer is for the old config */
			}
		}
	}
	while ((pe = pool_next(e->pool, &it, pe))) {
		uint64_t bits = 0;

		for (size_t o = 0; o < 64; o++)
			if ((pe->sources >> o & 1) && map[o] >= 0)
				bits |= 1ULL << map[o];
		pe->sources = bits;
	}
	return ns;
}

static bool same_judges(const struct cfg *a, const struct cfg *b)
{
	if (a->njudges != b->njudges || strcmp(a->expect, b->expect) != 0 ||
	    (a->ca_file == NULL) != (b->ca_file == NULL) ||
	    (a->ca_file && strcmp(a->ca_file, b->ca_file) != 0) ||
	    a->probe_judges != b->probe_judges)
		return false;
	for (size_t i = 0; i < a->njudges; i++)
		if (strcmp(a->judges[i], b->judges[i]) != 0)
			return false;
	return true;
}

/* Puts a new judge set in place; the old one is retired, not freed. */
static int swap_judges(struct engine *e, const struct cfg *nc, char *err, size_t errlen)
{
	struct judge_set *js = calloc(1, sizeof(*js));
	struct retired *r = calloc(1, sizeof(*r));
	int rc = -ENOMEM;

	if (!js || !r)
		goto out_free;
	rc = judges_init(js, nc, nc->probe_judges, err, errlen);
	if (rc < 0)
		goto out_free;
	r->judges = e->judges;
	r->next = e->retired;
	e->retired = r;
	e->judges = js;
	e->paused = nc->probe_judges;
	return 0;
out_free:
	free(js);
	free(r);
	return rc;
}

static void apply_limits(struct engine *e, const struct cfg *c)
{
	uint32_t room = fd_room();

	e->opts.connect_timeout_ms = c->connect_timeout_ms;
	e->opts.timeout_ms = c->timeout_ms;
	e->limit_max = (uint32_t)c->concurrency < room ? (uint32_t)c->concurrency : room;
	if (e->limit > e->limit_max || e->limit == 0)
		e->limit = e->limit_max;
	log_set_level(c->log_level);
}

/* Re-reads the config file; a file that does not parse (or whose judges do
 * not resolve) is refused and the running config stays. 0 or -EINVAL. */
static int reload_config(struct engine *e)
{
	struct cfg *nc = calloc(1, sizeof(*nc));
	struct src_state *ns;
	char err[512];
	int rc = -ENOMEM;

	if (!nc)
		return rc;
	cfg_init(nc);
	if (!e->cfg->file) {
		rc = 0; /* no file: nothing to re-read but the sources */
		goto out_rescan;
	}
	rc = cfg_load(e->cfg->file, nc, err, sizeof(err));
	if (rc == 0)
		rc = cfg_validate(nc, err, sizeof(err));
	if (rc == 0 && !same_judges(e->cfg, nc))
		rc = swap_judges(e, nc, err, sizeof(err));
	if (rc < 0) {
		log_err("reload refused, the running config stays: %s", err);
		rc = -EINVAL;
		goto out_free;
	}
	ns = carry_sources(e, nc);
	if (!ns) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < e->cfg->nsources; i++)
		src_state_clear(&e->sources[i]);
	free(e->sources);
	e->sources = ns;
	apply_limits(e, nc);
	if (e->cfg_owned) {
		cfg_free(e->cfg_owned);
		free(e->cfg_owned);
	}
	e->cfg = e->cfg_owned = nc;
	e->cfg_gen++;
	prune_unlisted(e);
	probe_judges(e, true);
	log_info("config %s reloaded: %zu sources, %zu judges", nc->file, nc->nsources,
		 nc->njudges);
	nc = NULL;
out_rescan:
	if (e->scan_running)
		e->rescan_pending = true;
	else
		scan_start(e);
	publish(e); /* the new tree (sources, judges) shows at once */
out_free:
	if (nc) {
		cfg_free(nc);
		free(nc);
	}
	return rc;
}

static void sig_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	log_info("SIGHUP: re-reading the config and the sources");
	reload_config(e);
}

/* --- life cycle --- */

static void load_rec(void *arg, const struct store_rec *r)
{
	struct engine *e = arg;
	struct proxy_addr a;
	struct pool_entry *pe;
	bool created;

	if (proxy_parse_line(r->uri, strlen(r->uri), PROXY_HTTP, &a) != PROXY_LINE_OK)
		return;
	pe = pool_get(e->pool, &a, &created);
	if (!pe)
		return;
	pe->state = r->state == STORE_ALIVE ? POOL_ALIVE
		    : r->state == STORE_DEAD ? POOL_DEAD : POOL_UNKNOWN;
	pe->folders = (uint8_t)r->folders;
	if (pe->folders >> PROXY_HTTPS & 1)
		pe->tunnel = true;
	pe->latency_ms = r->latency_ms;
	pe->last_checked = r->last_checked;
	pe->successes = r->successes;
	pe->failures = r->failures;
	pe->fails_in_row = r->fails_in_row;
	pe->dropped = r->state == STORE_DROPPED;
	if (pe->dropped)
		pe->state = POOL_DEAD;
	pe->anonymity = (uint8_t)r->anonymity;
	if (r->exit_ip && inet_pton(AF_INET, r->exit_ip, pe->exit_addr) == 1)
		pe->exit_family = AF_INET;
	else if (r->exit_ip && inet_pton(AF_INET6, r->exit_ip, pe->exit_addr) == 1)
		pe->exit_family = AF_INET6;
	pe->manual = false;
	for (const char *p = r->sources; p && *p;) {
		size_t n = strcspn(p, ",");

		if (n == strlen(CONTROL_SOURCE) && strncmp(p, CONTROL_SOURCE, n) == 0)
			pe->manual = true;
		for (size_t i = 0; i < e->cfg->nsources && i < 64; i++)
			if (strlen(e->cfg->sources[i].name) == n &&
			    strncmp(p, e->cfg->sources[i].name, n) == 0)
				pe->sources |= 1ULL << i;
		p += n + (p[n] == ',');
	}
}

static void load_removed(void *arg, const char *uri)
{
	struct engine *e = arg;
	struct proxy_addr a;
	struct pool_entry *pe;
	bool created;

	if (proxy_parse_line(uri, strlen(uri), PROXY_HTTP, &a) != PROXY_LINE_OK)
		return;
	pe = pool_get(e->pool, &a, &created);
	if (pe) {
		pe->removed = true;
		pe->state = POOL_UNKNOWN;
		pe->folders = 0;
	}
}

/* Raises the soft fd limit to the hard one and returns how many checks the
 * limit leaves room for. */
static uint32_t fd_room(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024 - FD_RESERVE;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
		return 1000000;
	if (rl.rlim_cur <= FD_RESERVE + MIN_CONCURRENCY)
		return MIN_CONCURRENCY;
	return (uint32_t)(rl.rlim_cur - FD_RESERVE);
}

static int make_events(struct engine *e)
{
	struct timeval tick = { 0, TICK_MS * 1000 };

	e->base = event_base_new();
	if (!e->base || event_base_priority_init(e->base, 3) < 0)
		return -ENOMEM;
	if (pipe2(e->sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	e->cmd_ev = event_new(e->base, -1, 0, cmd_cb, e);
	e->tick_ev = event_new(e->base, -1, EV_PERSIST, tick_cb, e);
	e->sig_ev = event_new(e->base, e->sig_pipe[0], EV_READ | EV_PERSIST, sig_cb, e);
	e->dispatch_ev = event_new(e->base, -1, 0, dispatch_cb, e);
	if (!e->cmd_ev || !e->tick_ev || !e->sig_ev || !e->dispatch_ev)
		return -ENOMEM;
	/* Of 3 levels every event gets the middle one by default; starting
	 * more checks waits below the checks' own I/O. */
	event_priority_set(e->dispatch_ev, 2);
	if (event_add(e->tick_ev, &tick) < 0 || event_add(e->sig_ev, NULL) < 0)
		return -EIO;
	return 0;
}

struct engine *engine_new(const struct cfg *cfg, struct store *store)
{
	struct engine *e = calloc(1, sizeof(*e));
	char err[256];
	uint32_t room;
	int rc;

	if (!e)
		return NULL;
	e->sig_pipe[0] = e->sig_pipe[1] = -1;
	e->cfg = cfg;
	e->store = store;
	e->started = wall_s();
	e->epoch_ms = now_ms();
	pthread_mutex_init(&e->cmd_lock, NULL);
	e->cmds_tail = &e->cmds;
	if (evthread_use_pthreads() < 0) {
		log_err("libevent: no thread support");
		goto out_free;
	}
	e->judges = calloc(1, sizeof(*e->judges));
	if (!e->judges)
		goto out_free;
	rc = judges_init(e->judges, cfg, cfg->probe_judges, err, sizeof(err));
	if (rc < 0) {
		log_err("judge: %s", err);
		goto out_free;
	}
	e->paused = cfg->probe_judges; /* until a judge has answered */
	e->opts.connect_timeout_ms = cfg->connect_timeout_ms;
	e->opts.timeout_ms = cfg->timeout_ms;
	e->pool = pool_new();
	e->sources = calloc(cfg->nsources ? cfg->nsources : 1, sizeof(*e->sources));
	if (!e->pool || !e->sources || make_events(e) < 0) {
		log_err("engine: cannot set up its event loop");
		goto out_free;
	}
	room = fd_room();
	e->limit_max = (uint32_t)cfg->concurrency;
	if (e->limit_max > room) {
		log_warn("concurrency %d clamped to %u by the open-file limit", cfg->concurrency,
			 room);
		e->limit_max = room;
	}
	e->limit = e->limit_max;
	if (store && (store_load(store, load_rec, e) < 0 ||
		      store_load_removed(store, load_removed, e) < 0))
		log_warn("store: could not load the last known pool");
	the_engine = e;
	publish(e);
	return e;
out_free:
	engine_free(e);
	return NULL;
}

static void progress_fill(const struct engine *e, struct engine_progress *p)
{
	memset(p, 0, sizeof(*p));
	p->checked = e->scan_checked;
	p->total = e->scan_total;
	p->alive = e->scan_alive;
	p->in_flight = e->in_flight;
	p->in_flight_max = e->in_flight_max;
	p->limit = e->limit;
	p->limit_max = e->limit_max;
	p->limit_conf = (uint32_t)e->cfg->concurrency;
	p->local_requeues = e->local_requeues;
	p->retries = e->retries_total;
	for (int i = 0; i < CHK_RESULT_COUNT && i < 12; i++)
		p->by_result[i] = e->checks_total[i];
	p->elapsed_s = (double)(now_ms() - e->scan_started_ms) / 1000.0;
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct engine_progress p;

	progress_fill(e, &p);
	e->once->progress(e->once_arg, &p);
}

int engine_run_once(struct engine *e, const struct engine_once_ops *ops, void *arg,
		    struct engine_progress *out)
{
	struct event *prog = NULL;
	int rc = 0;

	if (e->running || e->store)
		return -EINVAL;
	e->once = ops;
	e->once_arg = arg;
	e->fetcher = fetcher_new();
	if (!e->fetcher) {
		rc = -ENOMEM;
		goto out;
	}
	probe_judges(e, true);
	if (ops->progress && ops->progress_ms > 0) {
		struct timeval tv = { ops->progress_ms / 1000, (ops->progress_ms % 1000) * 1000 };

		prog = event_new(e->base, -1, EV_PERSIST, progress_cb, e);
		if (!prog || event_add(prog, &tv) < 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
	scan_start(e);
	scan_maybe_finish(e);
	if (e->scan_running && event_base_dispatch(e->base) < 0)
		rc = -EIO;
	if (e->once_rc)
		rc = e->once_rc;
	progress_fill(e, out);
out:
	if (prog)
		event_free(prog);
	e->once = NULL;
	return rc;
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;

	scan_start(e);
	event_base_dispatch(e->base);
	return NULL;
}

int engine_start(struct engine *e)
{
	int rc;

	/* The daemon may have forked since engine_new: renew the backend,
	 * and start the fetcher's thread only now. */
	if (event_reinit(e->base) < 0)
		return -EIO;
	e->fetcher = fetcher_new();
	if (!e->fetcher)
		return -ENOMEM;
	probe_judges(e, true);
	rc = pthread_create(&e->thread, NULL, engine_main, e);

	if (rc)
		return -rc;
	e->running = true;
	return 0;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void engine_stop(struct engine *e)
{
	struct cmd *c;

	pthread_mutex_lock(&e->cmd_lock);
	e->stopping = true;
	c = e->cmds;
	e->cmds = NULL;
	pthread_mutex_unlock(&e->cmd_lock);
	while (c) {
		struct cmd *next = c->next;

		if (c->waiter) {
			pthread_mutex_lock(&c->waiter->lock);
			c->waiter->done = true;
			c->waiter->rc = -ESHUTDOWN;
			pthread_cond_signal(&c->waiter->cond);
			pthread_mutex_unlock(&c->waiter->lock);
		}
		cmd_free(c);
		c = next;
	}
	if (e->running) {
		event_base_once(e->base, -1, EV_TIMEOUT, stop_cb, e->base, NULL);
		pthread_join(e->thread, NULL);
		e->running = false;
	}
	finish_waiters(e, UINT64_MAX, -ESHUTDOWN);
}

void engine_free(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	if (!e)
		return;
	engine_stop(e);
	fetcher_free(e->fetcher); /* its last callbacks find the engine stopping */
	if (e->pool) {
		while ((pe = pool_next(e->pool, &it, pe))) {
			if (pe->chk)
				chk_cancel(pe->chk);
			pe->chk = NULL;
		}
	}
	queue_drain(&e->urgent);
	queue_drain(&e->ready);
	queue_drain(&e->retry);
	queue_drain(&e->recheck);
	sched_free(&e->sched);
	pool_free(e->pool);
	for (size_t i = 0; e->sources && i < e->cfg->nsources; i++)
		src_state_clear(&e->sources[i]);
	free(e->sources);
	free(e->waiters);
	free(e->waiter_gen);
	if (e->cmd_ev)
		event_free(e->cmd_ev);
	if (e->tick_ev)
		event_free(e->tick_ev);
	if (e->sig_ev)
		event_free(e->sig_ev);
	if (e->dispatch_ev)
		event_free(e->dispatch_ev);
	if (e->base)
		event_base_free(e->base);
	if (e->sig_pipe[0] >= 0)
		close(e->sig_pipe[0]);
	if (e->sig_pipe[1] >= 0)
		close(e->sig_pipe[1]);
	if (e->judges)
		judges_free(e->judges);
	free(e->judges);
	while (e->retired) {
		struct retired *r = e->retired;

		e->retired = r->next;
		judges_free(r->judges);
		free(r->judges);
		free(r);
	}
	if (e->cfg_owned) {
		cfg_free(e->cfg_owned);
		free(e->cfg_owned);
	}
	pthread_mutex_destroy(&e->cmd_lock);
	if (the_engine == e)
		the_engine = NULL;
	free(e);
}
