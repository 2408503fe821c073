/* scan: scans, checks and what their results mean.
 *
 * Entries wait in queues (retries due, control/add, re-checks due, the
 * scan) and start as checks under the adaptive concurrency limit; each
 * outcome is retried, held, or applied to the entry and scheduled by the
 * re-check policy. Runs on the engine thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "echo.h"
#include "log.h"
#include "snapshot.h"

int eng_scan_add_waiter(struct engine *e, struct waiter *w)
{
	size_t need = e->scan.nwaiters + 1;

	if (need > e->scan.capwaiters) {
		size_t cap = e->scan.capwaiters ? e->scan.capwaiters * 2 : 8;
		struct waiter **ws = realloc(e->scan.waiters, cap * sizeof(*ws));
		uint64_t *gs = ws ? realloc(e->scan.waiter_gen, cap * sizeof(*gs)) : NULL;

		if (ws)
			e->scan.waiters = ws;
		if (!gs)
			return -ENOMEM;
		e->scan.waiter_gen = gs;
		e->scan.capwaiters = cap;
	}
	e->scan.waiters[e->scan.nwaiters] = w;
	e->scan.waiter_gen[e->scan.nwaiters++] = e->scan.gen + 1;
	return 0;
}

void eng_scan_free(struct engine *e)
{
	free(e->scan.waiters);
	free(e->scan.waiter_gen);
	e->scan.waiters = NULL;
	e->scan.waiter_gen = NULL;
	e->scan.nwaiters = e->scan.capwaiters = 0;
}

void eng_finish_waiters(struct engine *e, uint64_t gen, int rc)
{
	size_t kept = 0;

	for (size_t i = 0; i < e->scan.nwaiters; i++) {
		struct waiter *w = e->scan.waiters[i];

		if (e->scan.waiter_gen[i] > gen && rc == 0) {
			e->scan.waiters[kept] = w;
			e->scan.waiter_gen[kept++] = e->scan.waiter_gen[i];
			continue;
		}
		eng_wake(w, rc);
	}
	e->scan.nwaiters = kept;
}

/* A scan starts only on judges known to answer: when their last probe is
 * not fresh, checking waits for a new one, so a judge that died since
 * cannot turn a whole scan dead. */
static void confirm_judges(struct engine *e)
{
	int64_t now = eng_wall_s();
	bool stale = false;

	if (e->once || !e->feeds.judges->probe)
		return;
	for (size_t i = 0; i < e->feeds.judges->n; i++)
		stale = stale || now - e->feeds.judges->v[i].last_probe > JUDGE_FRESH_S;
	if (!stale)
		return;
	e->paused = true;
	eng_probe_judges(e, true);
}

void eng_scan_forget(struct engine *e, struct pool_entry *pe)
{
	if (e->scan.running && pe->scan == (uint32_t)e->scan.gen && e->scan.total) {
		e->scan.total--;
		pe->scan = 0;
	}
}

void eng_scan_start(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	eng_refresh_sources(e, true);
	confirm_judges(e);
	e->scan.gen++;
	e->scan.running = true;
	e->scan.pending = false;
	e->scan.checked = 0;
	e->scan_alive = 0;
	e->scan.total = 0;
	e->scan.started = eng_wall_s();
	e->scan.started_ms = eng_now_ms();
	while ((pe = pool_next(e->pool, &it, pe))) {
		if (pe->removed || pe->dropped)
			continue;
		/* One already queued or in flight (control/add, a re-check, a
		 * retry) counts too when its result comes: a scan's end means
		 * every proxy known at its start has a result from after it. */
		if (pe->queued || pe->chk) {
			pe->scan = (uint32_t)e->scan.gen;
			e->scan.total++;
			continue;
		}
		pe->scan = (uint32_t)e->scan.gen;
		pe->tries = 0;
		queue_push(&e->ready, pe);
		e->scan.total++;
	}
	log_debug("scan %llu started: %u proxies", (unsigned long long)e->scan.gen, e->scan.total);
	eng_mark_dirty(e);
	eng_dispatch(e);
}

static bool sources_busy(const struct engine *e)
{
	for (size_t i = 0; i < e->cfg->nsources; i++)
		if (e->feeds.sources[i].busy)
			return true;
	return false;
}

/* A one-shot run also waits for its downloads and for its judges. */
static bool scan_busy(const struct engine *e)
{
	/* Every proxy the scan took has its result: re-checks and control/add
	 * going on beside it do not keep it running. */
	if (e->scan.checked < e->scan.total)
		return true;
	return e->once && sources_busy(e);
}

/* The first scan's end is news (the pool is warm); later ones are said at
 * debug, so info stays quiet at rest. The counts are the published ones. */
static void log_scan_end(const struct engine *e)
{
	struct snapshot *s = e->once ? NULL : snap_current();

	log_msg(e->scan.gen == 1 ? LOG_LVL_INFO : LOG_LVL_DEBUG,
		"scan %llu finished: %u checked in %.1f s: %u alive, %u dead, %u unknown",
		(unsigned long long)e->scan.gen, e->scan.checked, e->scan.last_seconds,
		s ? s->stats.alive : 0, s ? s->stats.dead : 0, s ? s->stats.unknown : 0);
	if (s)
		snap_unref(s);
}

void eng_scan_request(struct engine *e)
{
	if (e->scan.running)
		e->scan.pending = true;
	else
		eng_scan_start(e);
}

bool eng_scan_join(struct engine *e, struct pool_entry *pe)
{
	if (!e->scan.running)
		return false;
	pe->scan = (uint32_t)e->scan.gen;
	queue_push(&e->ready, pe);
	e->scan.total++;
	return true;
}

void eng_scan_maybe_finish(struct engine *e)
{
	if (!e->scan.running || scan_busy(e))
		return;
	e->scan.running = false;
	e->scan.finished = eng_wall_s();
	e->scan.last_seconds = (double)(eng_now_ms() - e->scan.started_ms) / 1000.0;
	e->scan.next_ms = eng_now_ms() + (uint64_t)e->cfg->interval_s * 1000;
	eng_publish(e);
	log_scan_end(e);
	eng_finish_waiters(e, e->scan.gen, 0);
	if (e->once)
		event_base_loopbreak(e->base);
	else if (e->scan.pending)
		eng_scan_start(e);
}

static uint32_t clock_s(const struct engine *e)
{
	return (uint32_t)((eng_now_ms() - e->epoch_ms) / 1000);
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
	} else if (pe->state == POOL_UNKNOWN) {
		wait = (uint64_t)c->retry_min_s; /* our network failed it: try again soon */
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
void eng_take_due(struct engine *e)
{
	struct pool_entry *pe;
	uint32_t now = clock_s(e);

	while ((pe = sched_pop_due(&e->sched, now))) {
		if (pe->queued || pe->chk || pe->removed || pe->dropped || pe->unlinked)
			continue;
		pe->tries = 0;
		queue_push(&e->recheck, pe);
	}
}

/* j: the judge the check went through (NULL when it could not start). */
static void result_apply(struct engine *e, struct pool_entry *pe, const struct judge *j,
			 const struct chk_outcome *o)
{
	pe->doubted = false;
	pe->ejected = SNAP_EJECT_NONE; /* a result ends what a report did */
	pe->gw_fails = 0;              /* ... and starts the gateway's count afresh */
	pe->last_checked = eng_wall_s();
	pe->last = (struct snap_result){
	    .result = (uint8_t)(o->result + 1),
	    .stage = o->stage,
	    .why = o->why,
	    .socks_reply = o->socks_reply,
	    .status = o->status,
	    .err = o->err > 0 && o->err <= UINT16_MAX ? (uint16_t)o->err : 0,
	};
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
		/* An HTTP proxy that tunnelled to the judge (CONNECT), TLS
		 * and all when the judge is https, is what lists call an
		 * HTTPS proxy. */
		if (pe->proto == PROXY_HTTP && (pe->tunnel || (j && j->chk.tls)))
			pe->folders |= 1u << PROXY_HTTPS;
	} else if (o->result == CHK_UNREACHABLE) {
		/* Our host has no route there: nothing is known of the proxy. */
		pe->state = POOL_UNKNOWN;
		pe->folders = 0;
	} else {
		pe->state = POOL_DEAD;
		pe->failures++;
		if (pe->fails_in_row++ == 0 || !pe->dead_since)
			pe->dead_since = pe->last_checked;
		pe->folders = 0;
	}
	schedule_next(e, pe);
	if ((uint32_t)e->scan.gen == pe->scan && e->scan.running) {
		e->scan.checked++;
		e->scan_alive += o->result == CHK_OK;
		pe->scan = 0; /* counted once, whatever re-checks follow */
	}
	if (e->once) {
		char uri[PROXY_URI_MAX];
		char ip[INET6_ADDRSTRLEN];
		struct engine_result r = {
			.uri = pool_entry_uri(pe, uri), .proto = (enum proxy_proto)pe->proto,
			.alive = o->result == CHK_OK, .latency_ms = o->latency_ms,
			.result = chk_result_name(o->result), .err = o->err,
			.http_status = o->status, .exit_ip = "",
			.anonymity = o->result == CHK_OK ? pe->anonymity : SNAP_ANON_UNKNOWN,
		};

		if (r.alive && pe->exit_family &&
		    inet_ntop(pe->exit_family, pe->exit_addr, ip, sizeof(ip)))
			r.exit_ip = ip;
		e->once->result(e->once_arg, &r);
	}
	eng_store_entry(e, pe);
	eng_mark_dirty(e);
}

static const char *const limit_why_name[SNAP_LIMIT_WHY_COUNT] = {
	[SNAP_LIMIT_LOCAL_ERROR] = "local resource shortage",
	[SNAP_LIMIT_LOOP_LAG] = "event loop late",
};

/* Lowers the limit to nl (MIN_CONCURRENCY at least), saying why. */
static void set_lower_limit(struct engine *e, uint32_t nl, enum snap_limit_why why)
{
	if (nl < MIN_CONCURRENCY)
		nl = MIN_CONCURRENCY;
	e->lim.last_local_err_ms = eng_now_ms();
	if (nl >= e->lim.limit)
		return;
	/* The first cut from the full limit is said at info (warn for a
	 * shortage of ours); the cuts and recovery steps after it at debug. */
	if (why == SNAP_LIMIT_LATENCY)
		log_msg(e->lim.limit >= e->lim.limit_max ? LOG_LVL_INFO : LOG_LVL_DEBUG,
			"checks take %.1f times their proxies' usual latency: concurrency %u -> %u",
			e->lim.lat_ratio, e->lim.limit, nl);
	else
		log_msg(e->lim.limit >= e->lim.limit_max ? LOG_LVL_WARN : LOG_LVL_DEBUG,
			"%s: concurrency %u -> %u", limit_why_name[why], e->lim.limit, nl);
	e->lim.limit = nl;
	e->lim.limit_why = why;
	e->lim.limit_lowered[why]++;
	e->lim.limit_cut_ms = e->lim.last_local_err_ms;
}

void eng_lower_limit(struct engine *e, enum snap_limit_why why)
{
	set_lower_limit(e, e->in_flight - e->in_flight / 4, why);
}

void eng_limit_set_max(struct engine *e, uint32_t max)
{
	e->lim.limit_max = max;
	if (e->lim.limit > max || e->lim.limit == 0)
		e->lim.limit = max;
}

static void check_done(void *arg, const struct chk_outcome *o);
static void dispatch_some(struct engine *e, int n);

static bool retryable(enum chk_result r)
{
	return r == CHK_TIMEOUT || r == CHK_RESET;
}

/* A check that cannot even start for the proxy's own reason (a protocol
 * field too long) fails at once. */
static bool fail_unstarted(struct engine *e, struct pool_entry *pe, enum chk_result r, int err)
{
	struct chk_outcome o = { .result = r, .err = err };

	e->checks_total[r]++;
	result_apply(e, pe, NULL, &o);
	return true;
}

/* Proxies given by name are resolved by their checks, through one resolver
 * made when the first of them comes: /etc/resolv.conf's servers, and
 * /etc/hosts. Without it they fail as unreachable. */
static void need_dns(struct engine *e)
{
	if (e->opts.dns || e->dns_failed)
		return;
	e->opts.dns = evdns_base_new(e->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!e->opts.dns) {
		e->dns_failed = true;
		log_warn("cannot set up a DNS resolver: proxies given by name count as unreachable");
	}
}

/* Starts one check; false when our side could not (the entry is requeued). */
static bool start_check(struct engine *e, struct pool_entry *pe)
{
	struct chk_target t = {
		.proto = (enum proxy_proto)pe->proto, .tunnel = pe->tunnel,
		.remote_dns = pe->remote_dns, .user = pe->user, .pass = pe->pass,
	};

	struct judge *j;

	j = e->paused ? NULL : judges_pick(e->feeds.judges);
	if (!j) {
		queue_push(&e->urgent, pe);
		return false; /* no judge answers: wait for one */
	}
	if (pe->have_addr) {
		memcpy(&t.addr, &pe->addr, sizeof(pe->addr));
		t.addrlen = pe->addr.sa.sa_family == AF_INET6 ? sizeof(pe->addr.in6)
							       : sizeof(pe->addr.in);
	} else {
		t.host = pe->host; /* t.addr stays AF_UNSPEC: the check resolves it */
		t.port = pe->port;
		need_dns(e);
	}
	pe->chk = chk_start(e->base, &t, &j->chk, &e->opts, check_done, pe);
	if (!pe->chk) {
		int err = errno;

		if (!chk_errno_is_local(err))
			return fail_unstarted(e, pe, CHK_PROTO_ERR, err);
		e->local_requeues++;
		eng_lower_limit(e, SNAP_LIMIT_LOCAL_ERROR);
		queue_push(&e->urgent, pe);
		return false;
	}
	/* The check reads its judge until it ends, whatever a reload does. */
	judges_ref(j->set);
	pe->judge = j;
	pe->tries++;
	pe->lag_mark = (uint32_t)e->lag_ms;
	if (e->once)
		e->last_start_ms = eng_now_ms();
	e->in_flight++;
	if (e->in_flight > e->in_flight_max)
		e->in_flight_max = e->in_flight;
	return true;
}

/* What the echo of judge j says about a live proxy's anonymity and exit. */
static void learn_anonymity(const struct judge *j, struct pool_entry *pe,
			    const struct chk_outcome *o)
{
	const struct judge_set *js = j->set;
	uint8_t was_family = pe->exit_family, was[16];
	struct ja_result r;

	memcpy(was, pe->exit_addr, sizeof(was));
	pe->exit_family = 0;
	pe->anonymity = SNAP_ANON_UNKNOWN;
	if (o->body && ja_parse(o->body, o->body_len, js->our, js->nour, &r) == 0) {
		pe->anonymity = (uint8_t)r.anon;
		if (inet_pton(AF_INET, r.exit_ip, pe->exit_addr) == 1)
			pe->exit_family = AF_INET;
		else if (inet_pton(AF_INET6, r.exit_ip, pe->exit_addr) == 1)
			pe->exit_family = AF_INET6;
	}
	/* Another exit (or none now): its country is looked up again. */
	if (pe->exit_family != was_family ||
	    (pe->exit_family &&
	     memcmp(was, pe->exit_addr, pe->exit_family == AF_INET ? 4 : 16) != 0))
		pe->geo_gen = 0;
}

/* How many live proxies failing in a row put the judges in doubt: most of
 * what was alive when the run began, HOLD_AFTER_FAILS at most. */
static uint32_t hold_threshold(const struct engine *e)
{
	uint32_t most = e->alive_at_run / 2 + 1;

	return most < HOLD_AFTER_FAILS ? most : HOLD_AFTER_FAILS;
}

/* The judges are asked before the run's failures count: checking pauses
 * until a probe says whether one answers (see eng_apply_probe). Without
 * probes there is nobody to ask, and the run counts as it is. */
static void doubt_judges(struct engine *e)
{
	if (!e->cfg->probe_judges) {
		e->alive_fail_run = 0;
		return;
	}
	log_warn("%u of %u live proxies failed in a row: holding results, probing the judges",
		 e->alive_fail_run, e->alive_at_run);
	e->paused = true;
	e->pause_said = true;
	eng_probe_judges(e, true);
}

/* A failure may be the judges' or our network's, not the proxy's. While no
 * judge answers, it is held: the proxy keeps its state and is checked again
 * once one does. A live proxy's failure is held back too, parked in doubt,
 * until its run of live proxies failing in a row is settled: a success
 * means the judges work, and each parked proxy gets one more check that
 * counts; a run that covers most of what was alive, whatever the pool's
 * size, has the judges probed before anything of it is applied. A proxy
 * already dead keeps its state whatever the judges', so its failure counts
 * (holding it would only check it again). */
static bool hold_failure(struct engine *e, struct pool_entry *pe)
{
	if (e->once || pe->state == POOL_DEAD)
		return false; /* a dead proxy failing again loses nothing */
	if (!e->paused && (pe->state != POOL_ALIVE || pe->doubted))
		return false;
	e->held_total++;
	pe->tries = 0;
	if (e->paused) {
		queue_push(&e->urgent, pe);
		return true;
	}
	if (e->alive_fail_run++ == 0) {
		e->alive_at_run = e->alive_published;
		e->run_started_ms = eng_now_ms();
	}
	pe->doubted = true;
	queue_push(&e->doubt, pe);
	if (e->alive_fail_run >= hold_threshold(e))
		doubt_judges(e);
	return true;
}

/* Nothing else in flight or waiting can end the run with a success, or
 * no success came for a whole check timeout. */
static bool run_unsettled(const struct engine *e)
{
	if (!e->in_flight && !e->urgent.len && !e->ready.len && !e->recheck.len && !e->retry.len)
		return true;
	return eng_now_ms() - e->run_started_ms > (uint64_t)e->cfg->timeout_ms;
}

void eng_settle_doubt(struct engine *e)
{
	struct pool_entry *pe;

	if (!e->doubt.len || e->paused)
		return;
	if (e->alive_fail_run && run_unsettled(e)) {
		doubt_judges(e);
		if (e->paused)
			return;
	}
	if (e->alive_fail_run)
		return;
	/* Settled (a success, or a probe that found a judge answering): each
	 * parked proxy is checked once more, and that result counts. */
	while ((pe = queue_pop(&e->doubt)))
		queue_push(&e->urgent, pe);
}

/* We are overloaded: checks that succeed take LAT_TOLERANCE times their
 * usual, or the limit was cut within the last timeout. */
static bool overloaded(const struct engine *e)
{
	return e->lim.lat_ratio > LAT_TOLERANCE ||
	       (e->lim.limit_cut_ms &&
		eng_now_ms() - e->lim.limit_cut_ms < (uint64_t)e->cfg->timeout_ms);
}

/* A proxy that timed out while it had less than half the timeout for its
 * last turn spent the rest waiting on us: when the loop also ran late by a
 * tenth of the timeout during the check, the timeout may be ours and the
 * check is tried again (a few times at most, then it counts). A proxy
 * silent for half the timeout or more had its chance whatever our delays,
 * unless it was alive and we are overloaded: then its silence is more
 * likely ours than its own, and holding it would only put the judges in
 * doubt and check it again anyway. */
static bool timeout_is_ours(struct engine *e, const struct pool_entry *pe,
			    const struct chk_outcome *o)
{
	uint32_t half = (uint32_t)e->cfg->timeout_ms / 2;

	if (pe->tries > (uint8_t)e->cfg->retries + LAG_RETRIES)
		return false;
	if (pe->state == POOL_ALIVE && !pe->doubted && overloaded(e))
		return true;
	return o->idle_ms < half &&
	       (uint32_t)e->lag_ms - pe->lag_mark > (uint32_t)e->cfg->timeout_ms / 10;
}

void eng_check_cancel(struct pool_entry *pe)
{
	chk_cancel(pe->chk);
	pe->chk = NULL;
	judges_unref(pe->judge->set);
	pe->judge = NULL;
}

static void check_done(void *arg, const struct chk_outcome *o)
{
	struct pool_entry *pe = arg;
	struct judge *j = pe->judge; /* maybe of a set a reload replaced since */
	struct engine *e = j->set->owner;
	bool ours; /* the outcome says nothing of the proxy nor the judge */

	pe->chk = NULL;
	pe->judge = NULL;
	e->in_flight--;
	if (pe->unlinked || pe->removed) {
		eng_scan_forget(e, pe);
		eng_release_entry(pe);
		goto out;
	}
	ours = o->result == CHK_LOCAL_ERR || o->result == CHK_UNREACHABLE;
	if (!ours)
		j->checks++;
	/* A timeout our own delays caused says nothing of the proxy, nor of
	 * the judges: it does not count in a run of live proxies failing. */
	if (o->result == CHK_TIMEOUT && timeout_is_ours(e, pe, o)) {
		e->local_requeues++;
		queue_push(&e->urgent, pe);
		goto out;
	}
	if (o->result == CHK_OK) {
		j->ok++;
		e->alive_fail_run = 0;
		eng_latency_sample(e, pe, o->latency_ms);
		learn_anonymity(j, pe, o);
	} else if (!ours && hold_failure(e, pe)) {
		goto out;
	}
	if (o->result == CHK_LOCAL_ERR) {
		e->local_requeues++;
		eng_lower_limit(e, SNAP_LIMIT_LOCAL_ERROR);
		pe->tries--;
		queue_push(&e->urgent, pe);
		goto out;
	}
	if (retryable(o->result) && pe->tries <= (uint8_t)e->cfg->retries) {
		uint64_t delay = (uint64_t)RETRY_BASE_MS << (pe->tries - 1);

		e->retries_total++;
		retry_push(&e->retry, pe, pe->tries, eng_now_ms() + delay);
		goto out;
	}
	e->checks_total[o->result]++;
	result_apply(e, pe, j, o);
out:
	judges_unref(j->set);
	/* One start for the slot this check leaves: a turn that ends
	 * thousands of checks must not start a batch for each of them. */
	dispatch_some(e, 1);
	eng_scan_maybe_finish(e);
}

/* The next entry to check: retries that are due, then control/add, then
 * re-checks and the scan taking turns, so that neither starves the other
 * when more is due than the checker can do (a scan that never ended kept
 * `echo sync > control/reload` waiting for ever). */
static struct pool_entry *pop_next(struct engine *e)
{
	struct pool_entry *pe = retry_pop_due(&e->retry, eng_now_ms());

	if (pe)
		return pe;
	if (e->urgent.len)
		return queue_pop(&e->urgent);
	if (e->recheck.len && (!e->ready.len || (e->turn++ & 1)))
		return queue_pop(&e->recheck);
	return queue_pop(&e->ready);
}

static struct pool_entry *next_entry(struct engine *e)
{
	struct pool_entry *pe;

	for (;;) {
		pe = pop_next(e);
		if (!pe)
			return NULL;
		if (!pe->unlinked && !pe->removed && !pe->dropped && !pe->chk)
			return pe;
		if (!pe->chk)
			eng_scan_forget(e, pe);
		eng_release_entry(pe);
	}
}

/* Starts up to n checks under the limit. Starting one costs a socket()
 * and a connect(), so starting thousands in one go would keep the loop from
 * reading answers that are already there (and make it late by the time it
 * takes): when more could start, the rest follows from dispatch_ev as a
 * timer due at once. Timers come due only after the loop has polled, so
 * the answers that came meanwhile are served first; made active directly,
 * it would run again in the same turn, before any polling. */
static void dispatch_some(struct engine *e, int n)
{
	static const struct timeval now = {0, 0};

	while (e->in_flight < e->lim.limit) {
		struct pool_entry *pe;

		if (n-- == 0) {
			event_add(e->dispatch_ev, &now);
			return;
		}
		pe = next_entry(e);
		if (!pe)
			break;
		if (!start_check(e, pe))
			break; /* our side is short of something: wait for the tick */
	}
}

void eng_dispatch(struct engine *e)
{
	dispatch_some(e, DISPATCH_BATCH);
}

void eng_dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;

	eng_dispatch(e);
	eng_scan_maybe_finish(e);
}

/* A proxy with a history is compared with its own usual latency; one
 * without (a daemon's first scan) with the best window of such proxies the
 * pool has seen, a baseline learnt from the scan's own early checks,
 * before load builds up. proxyfs check, a batch with no results to hold,
 * runs at the limit asked for: cutting it there only made the run slower
 * (21 s instead of 14 s for the bench's 100,000). */
void eng_latency_sample(struct engine *e, const struct pool_entry *pe, uint32_t latency_ms)
{
	double usual = pe->state == POOL_ALIVE ? pe->latency_ms : 0;
	double floor = (double)e->cfg->timeout_ms / LAT_FLOOR_DIV;

	if (!usual && e->once)
		return;
	if (!e->lim.lat_n)
		e->lim.lat_since = eng_now_ms();
	if (!usual) {
		usual = e->lim.lat_base;
		e->lim.nh_sum += latency_ms;
		e->lim.nh_n++;
	}
	if (usual < floor)
		usual = floor;
	e->lim.lat_win[e->lim.lat_n++ % LAT_WINDOW_MAX] = (float)(latency_ms / usual);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

/* The median of the n samples of v (sorted in place). */
static double window_median(float *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_float);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* Closes the latency window when it has enough samples (or forgets the
 * last ratio when none came for a while); true when a new ratio is in. */
static bool latency_window(struct engine *e, uint64_t t)
{
	if (e->lim.nh_n >= LAT_MIN_SAMPLES) {
		double mean = e->lim.nh_sum / e->lim.nh_n;

		if (!e->lim.lat_base || mean < e->lim.lat_base)
			e->lim.lat_base = mean;
		else
			e->lim.lat_base += (mean - e->lim.lat_base) / LAT_BASE_FORGET;
		e->lim.nh_sum = 0;
		e->lim.nh_n = 0;
	}
	if (e->lim.lat_n >= LAT_MIN_SAMPLES) {
		uint32_t n = e->lim.lat_n < LAT_WINDOW_MAX ? e->lim.lat_n : LAT_WINDOW_MAX;

		e->lim.lat_ratio = window_median(e->lim.lat_win, n);
		e->lim.lat_n = 0;
		e->lim.lat_since = t;
		return true;
	}
	if (t - e->lim.lat_since > 10 * LAT_STEP_MS)
		e->lim.lat_ratio = 0; /* too few checks lately to tell */
	return false;
}

/* The limit follows the latency of checks that succeed against the pool's
 * own history, besides the local errors and the loop's lag: overload shows
 * first as live proxies answering slowly, then as their timeouts (counted
 * against them, or holding the judges in doubt), so when checks take
 * LAT_TOLERANCE times their usual the limit falls in proportion; it grows
 * back only once they are near their usual again. A daemon's first scan
 * is judged against its own early checks (see eng_latency_sample). */
void eng_recover_limit(struct engine *e)
{
	uint64_t t = eng_now_ms();
	bool fresh = latency_window(e, t);
	uint32_t was = e->lim.limit;

	if (fresh && e->lim.lat_ratio > LAT_TOLERANCE &&
	    t - e->lim.last_local_err_ms >= LAT_STEP_MS) {
		uint32_t base = e->in_flight < e->lim.limit ? e->in_flight : e->lim.limit;
		double f = LAT_TOLERANCE / e->lim.lat_ratio;

		f = f < 0.5 ? 0.5 : f > 0.9 ? 0.9 : f;
		set_lower_limit(e, (uint32_t)(base * f), SNAP_LIMIT_LATENCY);
		return;
	}
	if (e->lim.limit >= e->lim.limit_max || t - e->lim.last_local_err_ms < LAT_STEP_MS ||
	    e->lim.lat_ratio > LAT_RELAXED)
		return;
	/* Back to a limit that was too much only slowly, so the limit
	 * settles below it instead of swinging back and forth. */
	if (e->lim.limit_cut_ms && t - e->lim.limit_cut_ms < LAT_SETTLE_MS)
		e->lim.limit += e->lim.limit_max / LIMIT_SETTLE_DIV + 1;
	else
		e->lim.limit += e->lim.limit / 8 + 1;
	e->lim.limit_why = SNAP_LIMIT_RECOVERING;
	if (e->lim.limit >= e->lim.limit_max) {
		e->lim.limit = e->lim.limit_max;
		e->lim.limit_why = SNAP_LIMIT_CONFIGURED;
	}
	log_debug("concurrency %u -> %u: %s for %.1f s, latency ratio %.1f", was, e->lim.limit,
		  e->lim.limit_why == SNAP_LIMIT_CONFIGURED ? "back to the configured limit, no cut"
							: "recovering, no cut",
		  (double)(t - e->lim.last_local_err_ms) / 1000.0, e->lim.lat_ratio);
}
