/* test_engine: the engine's queues, its thread's signal mask, its limit.
 *
 * The queues are tried on pool entries made here by hand (only the queue
 * fields matter): pushing never allocates, so it goes on while every
 * allocation fails (this file stands in for malloc, except under ASan and
 * TSan, which have their own); FIFO order holds; an entry is never queued twice;
 * and the retry queue hands out the entry due first, not the one pushed
 * first, when later tries wait longer. Then a real engine is started and
 * every thread besides the main one must block the signals the daemon
 * handles, so that they reach the main thread's handlers. Last, the
 * concurrency limit's latency and loop-lag rules, fed samples by hand.
 * And control/bad (engine_bad) from another thread, with this one running
 * the engine's loop: all or nothing, live proxies out of the published
 * snapshot when it returns and first in line for their re-check.
 * Last, the gateway's reports (engine_report): eject_after failures in a
 * row eject a live proxy the same way, a success in between starts the
 * count again.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "engine_int.h"
#include "gw_stats.h"
#include "log.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALLOC_FAILS_TESTED 0
#else
#define ALLOC_FAILS_TESTED 1

/* While set, every allocation fails. */
static bool alloc_fail;

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
	return alloc_fail ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	return alloc_fail ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	return alloc_fail ? NULL : __libc_realloc(p, n);
}
#endif

#define NENT 20000

static void test_fifo_without_memory(void)
{
	struct pool_entry *ent = calloc(NENT, sizeof(*ent));
	struct queue q = { 0 };
	size_t popped = 0;
	bool in_order = true;
	struct pool_entry *pe;

	if (!ent) {
		CHECK(ent != NULL);
		return;
	}
#if ALLOC_FAILS_TESTED
	alloc_fail = true;
#endif
	for (size_t i = 0; i < NENT; i++)
		queue_push(&q, &ent[i]);
	queue_push(&q, &ent[7]); /* already queued: stays where it is */
#if ALLOC_FAILS_TESTED
	alloc_fail = false;
#endif
	CHECK_INT(q.len, NENT);
	while ((pe = queue_pop(&q))) {
		in_order = in_order && pe == &ent[popped] && !pe->queued;
		popped++;
	}
	CHECK_INT(popped, NENT);
	CHECK(in_order);
	CHECK(q.head == NULL && q.tail == NULL && q.len == 0);
	/* Emptied, it takes entries again. */
	queue_push(&q, &ent[3]);
	CHECK(queue_pop(&q) == &ent[3]);
	CHECK(queue_pop(&q) == NULL);
	free(ent);
}

/* Backoff grows per try: an entry on its second try, pushed first, must
 * not hold back one on its first try that is due earlier. */
static void test_retry_due_order(void)
{
	struct pool_entry a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	struct retry_queue r = { 0 };

	retry_push(&r, &a, 2, 1000 + 500); /* failed at 1000, second try: waits 500 */
	retry_push(&r, &b, 1, 1010 + 250); /* failed at 1010, first try: waits 250 */
	retry_push(&r, &c, 1, 1020 + 250);
	retry_push(&r, &d, 20, 1030 + 60000); /* beyond the last level: still kept */
	CHECK_INT(r.len, 4);
	CHECK(retry_pop_due(&r, 1200) == NULL);
	CHECK(retry_pop_due(&r, 1260) == &b);
	CHECK(retry_pop_due(&r, 1260) == NULL);
	CHECK(retry_pop_due(&r, 1600) == &c);
	CHECK(retry_pop_due(&r, 1600) == &a);
	CHECK(retry_pop_due(&r, 1600) == NULL);
	CHECK(retry_pop_due(&r, 61030) == &d);
	CHECK_INT(r.len, 0);
	CHECK(!a.queued && !b.queued && !c.queued && !d.queued);
}

/* Signals blocked by thread tid, from /proc (SigBlk). */
static unsigned long long sig_blocked(const char *tid)
{
	char path[320], line[256];
	unsigned long long mask = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			break;
	fclose(f);
	return mask;
}

static void test_threads_block_signals(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE };
	struct cfg c;
	struct engine *e;
	char err[256], self[32];
	struct dirent *de;
	DIR *d;
	int others = 0;

	cfg_init(&c);
	/* Nothing listens there, and it is not probed: checking does not wait. */
	CHECK_INT(cfg_add_judge(&c, "http://127.0.0.1:9/"), 0);
	c.probe_judges = 0;
	CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);
	e = engine_new(&c, NULL);
	CHECK(e != NULL);
	if (!e)
		goto out;
	CHECK_INT(engine_start(e), 0);
	/* A rescan it answered: its thread runs its loop, past the moment
	 * pthread_create keeps a new thread's signals blocked. */
	CHECK_INT(engine_rescan(e, true, NULL, NULL), 0);
	snprintf(self, sizeof(self), "%d", (int)getpid());
	d = opendir("/proc/self/task");
	CHECK(d != NULL);
	while (d && (de = readdir(d))) {
		unsigned long long mask;

		if (de->d_name[0] == '.' || strcmp(de->d_name, self) == 0)
			continue;
		others++;
		mask = sig_blocked(de->d_name);
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			if (!(mask >> (sigs[i] - 1) & 1)) {
				fprintf(stderr, "thread %s does not block signal %d (SigBlk %llx)\n",
					de->d_name, sigs[i], mask);
				CHECK(mask >> (sigs[i] - 1) & 1);
			}
	}
	if (d)
		closedir(d);
	CHECK(others >= 2); /* the engine's and the fetcher's */
	engine_free(e);
out:
	cfg_free(&c);
}

/* An engine with no judge to probe, the limit at 1000 and a 3 s timeout
 * (so latencies under the 150 ms floor are no congestion). */
static struct engine *limit_engine(struct cfg *c)
{
	char err[256];

	cfg_init(c);
	CHECK_INT(cfg_add_judge(c, "http://127.0.0.1:9/"), 0);
	c->probe_judges = 0;
	c->timeout_ms = 3000;
	c->concurrency = 1000;
	CHECK_INT(cfg_validate(c, err, sizeof(err)), 0);
	return engine_new(c, NULL);
}

/* One window of n samples of latency_ms for pe, then a tick. */
static void latency_window_of(struct engine *e, struct pool_entry *pe, uint32_t latency_ms)
{
	for (int i = 0; i < LAT_MIN_SAMPLES; i++)
		eng_latency_sample(e, pe, latency_ms);
	eng_recover_limit(e);
}

/* The limit follows the latency of checks that succeed against their
 * proxies' usual: it falls when they take several times longer, and grows
 * back once they are quick again. */
static void test_latency_limit(void)
{
	struct cfg c;
	struct engine *e = limit_engine(&c);
	struct pool_entry pe = { 0 };
	uint32_t before;

	CHECK(e != NULL);
	if (!e)
		goto out;
	CHECK_INT(e->lim.limit, 1000);
	e->in_flight = 800;

	/* A few answers a second late (a SYN dropped and sent again) among
	 * checks at their usual are not overload: the median counts. */
	pe.state = POOL_ALIVE;
	pe.latency_ms = 200;
	for (int i = 0; i < LAT_MIN_SAMPLES; i++)
		eng_latency_sample(e, &pe, i % 4 ? 200 : 1200);
	eng_recover_limit(e);
	CHECK_INT(e->lim.limit, 1000);
	CHECK_INT(e->lim.limit_lowered[SNAP_LIMIT_LATENCY], 0);

	/* Usually 200 ms, now 1000 ms: five times as long. */
	latency_window_of(e, &pe, 1000);
	CHECK(e->lim.limit < 800);
	CHECK(e->lim.limit >= 400); /* at most halved in one step */
	CHECK_INT(e->lim.limit_why, SNAP_LIMIT_LATENCY);
	CHECK_INT(e->lim.limit_lowered[SNAP_LIMIT_LATENCY], 1);
	CHECK(e->lim.lat_ratio > 4.9 && e->lim.lat_ratio < 5.1);

	/* Twice a quick proxy's 5 ms is not congestion: the floor is a
	 * twentieth of the timeout. */
	before = e->lim.limit;
	e->lim.last_local_err_ms = 0;
	pe.latency_ms = 5;
	latency_window_of(e, &pe, 140);
	CHECK(e->lim.limit > before);
	CHECK_INT(e->lim.limit_why, SNAP_LIMIT_RECOVERING);

	/* Checks near their usual again: back to the configured limit, once
	 * the cut is long enough ago. */
	e->lim.limit_cut_ms = 0;
	pe.latency_ms = 200;
	for (int i = 0; i < 100 && e->lim.limit < 1000; i++)
		latency_window_of(e, &pe, 210);
	CHECK_INT(e->lim.limit, 1000);
	CHECK_INT(e->lim.limit_why, SNAP_LIMIT_CONFIGURED);
	e->in_flight = 0;
	engine_free(e);
out:
	cfg_free(&c);
}

static const struct engine_once_ops once_ops = { 0 };

/* A pool without history (a daemon's first scan) is judged against its own
 * early checks: quick ones, slow proxies among them, keep the limit; the
 * same proxies answering many times slower lower it, except in proxyfs
 * check. The soak's first scan
 * held live proxies' timeouts because nothing could act before. */
static void test_latency_no_history(void)
{
	struct cfg c;
	struct engine *e = limit_engine(&c);
	struct pool_entry pe = { 0 };

	CHECK(e != NULL);
	if (!e)
		goto out;
	e->in_flight = 1000;
	pe.state = POOL_UNKNOWN;
	for (int i = 0; i < 4; i++) {
		for (int k = 0; k < LAT_MIN_SAMPLES; k++)
			eng_latency_sample(e, &pe, k % 5 ? 2 : 300); /* a fifth slow */
		eng_recover_limit(e);
	}
	CHECK_INT(e->lim.limit, 1000);
	CHECK(e->lim.lat_base > 70 && e->lim.lat_base < 80);
	latency_window_of(e, &pe, 1500);
	CHECK(e->lim.limit < 1000);
	CHECK(e->lim.limit >= 500);
	CHECK_INT(e->lim.limit_why, SNAP_LIMIT_LATENCY);

	/* proxyfs check (one-shot) keeps the limit asked for. */
	e->lim.limit = 1000;
	e->lim.last_local_err_ms = 0;
	e->once = &once_ops;
	latency_window_of(e, &pe, 1500);
	CHECK_INT(e->lim.limit, 1000);
	e->once = NULL;
	e->in_flight = 0;
	engine_free(e);
out:
	cfg_free(&c);
}

/* After a cut the limit grows back by a small step a tick, not in
 * proportion to itself: six seconds of quick checks leave it well below
 * what was too much, where before it was back at the maximum and cut
 * again, swinging between ~1,000 and ~19,000 in the soak. */
static void test_limit_settles(void)
{
	struct cfg c;
	struct engine *e = limit_engine(&c);
	struct pool_entry pe = { .state = POOL_ALIVE, .latency_ms = 200 };
	uint32_t cut;
	FILE *logf;
	int saved;

	CHECK(e != NULL);
	if (!e)
		goto out;
	/* Every change of the limit is logged with why (debug): the log goes
	 * to a file for the while. */
	log_set_level(LOG_LVL_DEBUG);
	saved = dup(STDERR_FILENO);
	logf = tmpfile();
	if (logf)
		dup2(fileno(logf), STDERR_FILENO);
	e->in_flight = 1000;
	latency_window_of(e, &pe, 1000);
	cut = e->lim.limit;
	CHECK(cut <= 600);
	e->lim.last_local_err_ms = 0; /* as if a second went by */
	for (int i = 0; i < 60; i++)
		latency_window_of(e, &pe, 200);
	CHECK(e->lim.limit > cut);
	CHECK(e->lim.limit <= cut + 60 * (e->lim.limit_max / LIMIT_SETTLE_DIV + 1));
	CHECK_INT(e->lim.limit_why, SNAP_LIMIT_RECOVERING);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	log_set_level(LOG_LVL_INFO);
	CHECK(logf != NULL);
	if (logf) {
		char text[8192] = "";
		size_t n;

		rewind(logf);
		n = fread(text, 1, sizeof(text) - 1, logf);
		text[n] = '\0';
		fclose(logf);
		CHECK(strstr(text, "usual latency: concurrency 1000 -> ") != NULL);
		CHECK(strstr(text, "recovering, no cut") != NULL);
	}
	e->in_flight = 0;
	engine_free(e);
out:
	cfg_free(&c);
}

/* One late turn of the loop (a scan starting thousands of checks) leaves
 * the limit alone; the loop staying late lowers it. */
static void test_lag_sustained(void)
{
	struct cfg c;
	struct engine *e = limit_engine(&c);
	uint64_t t = 1000000;

	CHECK(e != NULL);
	if (!e)
		goto out;
	e->in_flight = 1000;
	e->last_tick_ms = 0;
	eng_watch_lag(e, t);
	t += TICK_MS + 900; /* one turn 900 ms late */
	eng_watch_lag(e, t);
	for (int i = 0; i < 30; i++) {
		t += TICK_MS;
		eng_watch_lag(e, t);
	}
	CHECK_INT(e->lim.limit, 1000);
	CHECK_INT(e->lim.limit_lowered[SNAP_LIMIT_LOOP_LAG], 0);
	for (int i = 0; i < LAG_SUSTAINED; i++) {
		t += TICK_MS + 400;
		eng_watch_lag(e, t);
	}
	CHECK(e->lim.limit < 1000);
	CHECK_INT(e->lim.limit_why, SNAP_LIMIT_LOOP_LAG);
	CHECK_INT(e->lim.limit_lowered[SNAP_LIMIT_LOOP_LAG], 1);
	e->in_flight = 0;
	engine_free(e);
out:
	cfg_free(&c);
}

/* A tracked proxy, made by hand in e's pool, in state (alive: checked ok). */
static struct pool_entry *bad_entry(struct engine *e, const char *line, enum pool_state state)
{
	struct proxy_addr a;
	struct pool_entry *pe;
	bool created;

	CHECK_INT(proxy_parse_line(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_OK);
	pe = pool_get(e->pool, &a, &created);
	CHECK(pe != NULL);
	if (!pe)
		return NULL;
	pe->state = (uint8_t)state;
	pe->folders = state == POOL_ALIVE ? (uint8_t)(1u << pe->proto) : 0;
	pe->last.result = (uint8_t)((state == POOL_ALIVE ? CHK_OK : CHK_REFUSED) + 1);
	pe->latency_ms = 10;
	return pe;
}

struct bad_call {
	struct engine *e;
	struct proxy_addr list[4];
	size_t n, at;
	int rc;
	atomic_bool done; /* set by the calling thread once engine_bad returned */
};

static void *bad_thread(void *arg)
{
	struct bad_call *b = arg;

	b->rc = engine_bad(b->e, b->list, b->n, &b->at, NULL, NULL);
	atomic_store(&b->done, true);
	return NULL;
}

/* Calls engine_bad on lines from another thread while this one runs e's
 * loop (as the engine thread would) until it returns; its result. */
static int bad_call(struct engine *e, const char *const *lines, size_t n, size_t *at)
{
	struct bad_call b = { .e = e, .n = n, .at = SIZE_MAX };
	pthread_t t;

	for (size_t i = 0; i < n; i++)
		CHECK_INT(proxy_parse_line(lines[i], strlen(lines[i]), PROXY_HTTP, &b.list[i]),
			  PROXY_LINE_OK);
	atomic_init(&b.done, false);
	if (pthread_create(&t, NULL, bad_thread, &b) != 0) {
		CHECK(!"pthread_create");
		return -EAGAIN;
	}
	/* Bounded: a command never answered fails the test, not hangs it. */
	for (int i = 0; i < 100000 && !atomic_load(&b.done); i++) {
		event_base_loop(e->base, EVLOOP_NONBLOCK);
		usleep(100);
	}
	CHECK(atomic_load(&b.done));
	pthread_join(t, NULL);
	*at = b.at;
	return b.rc;
}

static const struct snap_proxy *snap_find(const struct snapshot *s, const char *uri)
{
	for (uint32_t i = 0; i < s->nall; i++)
		if (strcmp(s->all[i].uri, uri) == 0)
			return &s->all[i];
	return NULL;
}

/* control/bad: a line naming no tracked proxy fails the whole write and
 * nothing changes; otherwise each named live proxy is out of the snapshot
 * published when the call returns, shown as waiting for its re-check,
 * queued first for it, and counted; a dead one is left as it is; a plain
 * http:// line names the proxy listed https:// too, a line without
 * credentials the variants with; removed is untracked. */
static void test_bad(void)
{
	static const char *const typo[] = { "http://127.0.0.1:8001", "http://127.0.0.1:8999" };
	static const char *const good[] = { "http://127.0.0.1:8001", "socks4://127.0.0.1:8003",
					    "http://127.0.0.1:8004" };
	static const char *const removed[] = { "socks5://127.0.0.1:8002" };
	static const char *const bare[] = { "socks5://127.0.0.1:8005" };
	struct cfg c;
	struct engine *e = limit_engine(&c);
	struct pool_entry *a, *b, *d, *t, *v;
	const struct snap_proxy *r;
	struct snapshot *s;
	size_t at;

	CHECK(e != NULL);
	if (!e)
		goto out;
	/* No tick (it would start a scan) and no check may start: what is
	 * queued stays where do_bad put it. */
	event_del(e->tick_ev);
	e->lim.limit = 0;
	a = bad_entry(e, "http://127.0.0.1:8001", POOL_ALIVE);
	b = bad_entry(e, "socks5://127.0.0.1:8002", POOL_ALIVE);
	d = bad_entry(e, "socks4://127.0.0.1:8003", POOL_DEAD);
	t = bad_entry(e, "https://127.0.0.1:8004", POOL_ALIVE); /* only as a tunnel */
	v = bad_entry(e, "socks5://u:p@127.0.0.1:8005", POOL_ALIVE); /* only with credentials */
	if (!a || !b || !d || !t || !v)
		goto out_free;
	eng_publish(e);
	s = snap_current();
	CHECK_INT(s->nlive, 4);
	snap_unref(s);

	CHECK_INT(bad_call(e, typo, 2, &at), -ENOENT);
	CHECK_INT(at, 1);
	CHECK_INT(a->state, POOL_ALIVE);
	CHECK(!a->queued);
	s = snap_current();
	CHECK_INT(s->nlive, 4);
	snap_unref(s);

	CHECK_INT(bad_call(e, good, 3, &at), 0);
	s = snap_current(); /* published before the call returned */
	CHECK_INT(s->nlive, 2);
	CHECK_INT(s->stats.ejections_total[SNAP_EJECT_CONTROL], 2);
	r = snap_find(s, "http://127.0.0.1:8001");
	CHECK(r && r->state == SNAP_UNKNOWN && r->ejected == SNAP_EJECT_CONTROL);
	r = snap_find(s, "http://127.0.0.1:8004"); /* printed http:// */
	CHECK(r && r->state == SNAP_UNKNOWN && r->ejected == SNAP_EJECT_CONTROL);
	r = snap_find(s, "socks4://127.0.0.1:8003");
	CHECK(r && r->state == SNAP_DEAD && r->ejected == SNAP_EJECT_NONE);
	snap_unref(s);
	/* First in line for a check, ahead of the scan and the re-checks. */
	CHECK(e->urgent.head == a && a->qnext == t && e->urgent.len == 2);
	CHECK(!d->queued);
	CHECK_INT(e->ejections[SNAP_EJECT_CONTROL], 2);

	/* A line without credentials names the variants it prints like under
	 * hide_credentials, when it names no proxy itself. */
	CHECK_INT(bad_call(e, bare, 1, &at), 0);
	CHECK_INT(v->state, POOL_UNKNOWN);
	CHECK_INT(v->ejected, SNAP_EJECT_CONTROL);
	s = snap_current();
	CHECK_INT(s->nlive, 1);
	CHECK_STR(s->nlive ? s->live[0].uri : "", "socks5://127.0.0.1:8002");
	CHECK_INT(s->stats.ejections_total[SNAP_EJECT_CONTROL], 3);
	/* The last ones with why, newest first, as the lines named them. */
	CHECK_INT(s->stats.nejected, 3);
	CHECK_STR(s->stats.ejected[0].uri, "socks5://127.0.0.1:8005");
	CHECK_STR(s->stats.ejected[1].uri, "http://127.0.0.1:8004");
	CHECK_STR(s->stats.ejected[2].uri, "http://127.0.0.1:8001");
	CHECK_INT(s->stats.ejected[0].by, SNAP_EJECT_CONTROL);
	CHECK_STR(s->stats.ejected[0].why, "reported through control/bad");
	snap_unref(s);

	b->removed = true;
	CHECK_INT(bad_call(e, removed, 1, &at), -ENOENT);
	CHECK_INT(at, 0);
out_free:
	engine_free(e);
out:
	cfg_free(&c);
}

/* Sends the gateway's reports on uri, then runs e's loop once, as the
 * engine thread would: the commands are applied when it returns. */
static void report(struct engine *e, const char *uri, int times, bool ok, const char *why)
{
	for (int i = 0; i < times; i++)
		CHECK_INT(engine_report(e, uri, ok, why), 0);
	event_base_loop(e->base, EVLOOP_NONBLOCK);
}

/* engine_report: a user's request alone never ejects (fewer than
 * eject_after failures in a row, or a success between them, leave the
 * proxy live); the eject_after-th in a row takes it out of the snapshot
 * at once, first in line for its re-check, counted and shown with why by
 * "gateway"; a dead proxy, an untracked one and eject_after 0 eject
 * nothing. */
static void test_report(void)
{
	struct cfg c;
	struct engine *e = limit_engine(&c);
	struct pool_entry *a, *b, *d, *f, *t;
	const struct snap_proxy *r;
	struct snapshot *s;

	CHECK(e != NULL);
	if (!e)
		goto out;
	CHECK_INT(e->gw_eject_after, 3); /* [gateway] eject_after's default */
	event_del(e->tick_ev);
	e->lim.limit = 0;
	a = bad_entry(e, "http://127.0.0.1:8101", POOL_ALIVE);
	b = bad_entry(e, "socks5://u:p@127.0.0.1:8102", POOL_ALIVE);
	d = bad_entry(e, "socks4://127.0.0.1:8103", POOL_DEAD);
	f = bad_entry(e, "socks5://127.0.0.1:8104", POOL_ALIVE);
	if (!a || !b || !d || !f)
		goto out_free;
	eng_publish(e);

	/* Two failures, a success, two more: never three in a row. */
	report(e, "http://127.0.0.1:8101", 2, false, "connect refused");
	CHECK_INT(a->gw_fails, 2);
	report(e, "http://127.0.0.1:8101", 1, true, NULL);
	CHECK_INT(a->gw_fails, 0);
	report(e, "http://127.0.0.1:8101", 2, false, "connect refused");
	CHECK_INT(a->state, POOL_ALIVE);
	CHECK(!a->queued);
	s = snap_current();
	CHECK_INT(s->nlive, 3);
	CHECK_INT(s->stats.ejections_total[SNAP_EJECT_GATEWAY], 0);
	snap_unref(s);

	/* The third in a row. */
	report(e, "http://127.0.0.1:8101", 1, false, "handshake: 502 from the proxy");
	CHECK_INT(a->state, POOL_UNKNOWN);
	CHECK_INT(a->ejected, SNAP_EJECT_GATEWAY);
	CHECK(e->urgent.head == a);
	CHECK_INT(e->ejections[SNAP_EJECT_GATEWAY], 1);
	s = snap_current(); /* published by the report */
	CHECK_INT(s->nlive, 2);
	CHECK_INT(s->stats.ejections_total[SNAP_EJECT_GATEWAY], 1);
	CHECK_INT(s->stats.ejections_total[SNAP_EJECT_CONTROL], 0);
	r = snap_find(s, "http://127.0.0.1:8101");
	CHECK(r && r->state == SNAP_UNKNOWN && r->ejected == SNAP_EJECT_GATEWAY);
	CHECK_INT(s->stats.nejected, 1);
	CHECK_STR(s->stats.ejected[0].uri, "http://127.0.0.1:8101");
	CHECK_INT(s->stats.ejected[0].by, SNAP_EJECT_GATEWAY);
	CHECK_STR(s->stats.ejected[0].why, "handshake: 502 from the proxy");
	snap_unref(s);
	/* More failures of an ejected proxy (a stale pick) eject nothing more. */
	report(e, "http://127.0.0.1:8101", 5, false, "connect refused");
	CHECK_INT(e->ejections[SNAP_EJECT_GATEWAY], 1);

	/* Named with its credentials, as the snapshot gives it. */
	report(e, "socks5://u:p@127.0.0.1:8102", 3, false, "SOCKS5 auth refused");
	CHECK_INT(b->ejected, SNAP_EJECT_GATEWAY);
	/* A proxy listed only https:// (a tunnel) is named http:// in the
	 * snapshot, and so by the gateway. */
	t = bad_entry(e, "https://127.0.0.1:8105", POOL_ALIVE);
	CHECK(t != NULL);
	report(e, "http://127.0.0.1:8105", 3, false, "CONNECT refused our credentials (407)");
	CHECK(t && t->ejected == SNAP_EJECT_GATEWAY);
	/* A dead one stays as it is; an untracked one is ignored. */
	report(e, "socks4://127.0.0.1:8103", 5, false, "connect refused");
	CHECK_INT(d->state, POOL_DEAD);
	CHECK_INT(d->ejected, SNAP_EJECT_NONE);
	report(e, "http://127.0.0.1:8999", 5, false, "connect refused");
	CHECK_INT(engine_report(e, "not a proxy", false, "x"), -EINVAL);
	CHECK_INT(e->ejections[SNAP_EJECT_GATEWAY], 3);

	/* eject_after = 0: the gateway never ejects. */
	e->gw_eject_after = 0;
	report(e, "socks5://127.0.0.1:8104", 10, false, "connect refused");
	CHECK_INT(f->state, POOL_ALIVE);
	s = snap_current();
	CHECK_INT(s->nlive, 1);
	CHECK_INT(s->stats.ejections_total[SNAP_EJECT_GATEWAY], 3);
	snap_unref(s);
out_free:
	engine_free(e);
out:
	cfg_free(&c);
}

/* The gateway's share of open files (gw_fd_share: 2 a connection, at most
 * half of what the daemon can spare) is left out of the checks' budget,
 * exactly: a max_connections beyond it costs the checks no more, one
 * within it costs them its 2 files a connection. */
static void test_gateway_share(void)
{
	struct cfg c;
	struct engine *e;
	char err[256];
	uint32_t room0;

	cfg_init(&c);
	CHECK_INT(cfg_add_judge(&c, "http://127.0.0.1:9/"), 0);
	c.probe_judges = 0;
	c.concurrency = 1000000;
	e = engine_new(&c, NULL);
	CHECK(e != NULL);
	if (!e)
		goto out;
	room0 = e->lim.limit_max; /* every file the checks may have, without a gateway */
	CHECK_INT(e->fd_gateway, 0);
	engine_free(e);

	CHECK_INT(cfg_add_gateway_listen(&c, "127.0.0.1:1", err, sizeof(err)), 0);
	c.gateway.max_connections = 1000000;
	e = engine_new(&c, NULL);
	CHECK(e != NULL);
	if (!e)
		goto out;
	CHECK(gw_fd_share(1000000) < 1000000);
	CHECK_INT(e->fd_gateway, 2 * gw_fd_share(1000000) + 9);
	CHECK(e->lim.limit_max >= room0 / 2);
	CHECK_INT(e->lim.limit_max + e->fd_gateway, room0);
	engine_free(e);

	c.gateway.max_connections = 100;
	e = engine_new(&c, NULL);
	CHECK(e != NULL);
	if (!e)
		goto out;
	CHECK_INT(e->lim.limit_max, room0 - 2 * 100 - 9);
	engine_free(e);
out:
	cfg_free(&c);
}

int main(void)
{
	test_fifo_without_memory();
	test_retry_due_order();
	test_threads_block_signals();
	test_latency_limit();
	test_latency_no_history();
	test_limit_settles();
	test_lag_sustained();
	test_bad();
	test_report();
	test_gateway_share();
	return test_exit_code();
}
