/* publish: snapshots of the pool, and its records for the store.
 *
 * Builds the immutable snapshot FUSE readers see (live proxies, figures,
 * health) and hands each changed proxy to the store's queue. Runs on the
 * engine thread; decides nothing about checking.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "echo.h"
#include "geo.h"
#include "log.h"

/* Whether source i (or control/add, i = SIZE_MAX) lists pe or its twin. */
static bool listed_by(const struct pool_entry *pe, const struct pool_entry *twin, size_t i)
{
	if (i == SIZE_MAX)
		return pe->manual || (twin && twin->manual);
	return pool_src_has(pe, i) || (twin && pool_src_has(twin, i));
}

/* The next source at or after from listing pe or its twin, or SIZE_MAX. */
static size_t next_src(const struct pool_entry *pe, const struct pool_entry *twin, size_t from)
{
	size_t a = pool_src_next(pe, from), b = twin ? pool_src_next(twin, from) : SIZE_MAX;

	return a < b ? a : b;
}

/* The names of the sources that list pe (or its twin, when shown as one),
 * joined with ','; "" when none, or when out of memory (the caller's
 * buffer is reused from call to call). */
static const char *sources_join(const struct engine *e, const struct pool_entry *pe,
				const struct pool_entry *twin, struct sbuf *buf)
{
	sbuf_reset(buf);
	for (size_t i = next_src(pe, twin, 0); i < e->cfg->nsources; i = next_src(pe, twin, i + 1)) {
		if (buf->len)
			sbuf_addc(buf, ',');
		sbuf_adds(buf, e->cfg->sources[i].name);
	}
	if (listed_by(pe, twin, SIZE_MAX)) {
		if (buf->len)
			sbuf_addc(buf, ',');
		sbuf_adds(buf, CONTROL_SOURCE);
	}
	return sbuf_cstr(buf);
}

static const char *exit_ip(const struct pool_entry *pe, char *buf, size_t size);

void eng_store_entry(struct engine *e, const struct pool_entry *pe)
{
	char ip[INET6_ADDRSTRLEN];
	struct sbuf sources;
	struct store_rec r = {
		.uri = pe->uri, .proto = pe->proto, .folders = pe->folders,
		.state = pe->dropped ? STORE_DROPPED
			 : pe->state == POOL_ALIVE ? STORE_ALIVE
			 : pe->state == POOL_DEAD ? STORE_DEAD : STORE_UNKNOWN,
		.latency_ms = pe->latency_ms, .last_checked = pe->last_checked,
		.successes = pe->successes, .failures = pe->failures,
		.fails_in_row = pe->fails_in_row,
		.exit_ip = exit_ip(pe, ip, sizeof(ip)),
		.anonymity = pe->anonymity,
	};

	if (!e->store)
		return;
	sbuf_init(&sources);
	r.sources = sources_join(e, pe, NULL, &sources);
	store_put(e->store, &r);
	sbuf_free(&sources);
}

/* --- publishing --- */

static const char *health_text(const struct engine *e, const struct snap_stats *st,
			       const struct store_status *ss, char *buf, size_t size)
{
	if (e->paused && e->feeds.judges->n && !judges_all_probed(e->feeds.judges))
		snprintf(buf, size, "degraded: waiting for the judges' first answer");
	else if (e->paused && e->feeds.judges->n && !judges_any_healthy(e->feeds.judges))
		snprintf(buf, size, "degraded: no judge reachable (%s: %s)",
			 e->feeds.judges->v[0].url, e->feeds.judges->v[0].error);
	else if (e->paused)
		snprintf(buf, size, "degraded: results held while the judges are probed");
	else if (ss->error[0])
		snprintf(buf, size, "degraded: store: %s", ss->error);
	else if (st->geo[SNAP_GEO_COUNTRY_DB].error[0])
		snprintf(buf, size, "degraded: geo: %s: %s", st->geo[SNAP_GEO_COUNTRY_DB].path,
			 st->geo[SNAP_GEO_COUNTRY_DB].error);
	else if (st->geo[SNAP_GEO_ASN_DB].error[0])
		snprintf(buf, size, "degraded: geo: %s: %s", st->geo[SNAP_GEO_ASN_DB].path,
			 st->geo[SNAP_GEO_ASN_DB].error);
	else if (st->total == 0)
		snprintf(buf, size, "degraded: no proxies (the sources list none)");
	else if (st->alive == 0 && e->scan.gen == 0)
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
	st->generation = ++e->pub.generation;
	clock_gettime(CLOCK_REALTIME, &st->built);
	st->started = e->started;
	st->scan_running = e->scan.running;
	st->scan_generation = e->scan.gen;
	st->scan_checked = e->scan.checked;
	st->scan_total = e->scan.total;
	st->scan_started = e->scan.started;
	st->scan_finished = e->scan.finished;
	st->last_scan_seconds = e->scan.last_seconds;
	st->in_flight = e->in_flight;
	st->in_flight_max = e->in_flight_max;
	st->concurrency = e->lim.limit;
	st->concurrency_conf = (uint32_t)e->cfg->concurrency;
	st->concurrency_fd_max = e->lim.limit_max;
	st->concurrency_why = e->lim.limit_why;
	memcpy(st->concurrency_lowered, e->lim.limit_lowered, sizeof(st->concurrency_lowered));
	st->latency_ratio = e->lim.lat_ratio;
	for (int i = 0; i < CHK_RESULT_COUNT && i < SNAP_RESULT_CLASSES; i++)
		st->checks_total[i] = e->checks_total[i];
	st->local_requeues_total = e->local_requeues;
	st->paused = e->paused;
	st->held_total = e->held_total;
	st->retries_total = e->retries_total;
	memcpy(st->ejections_total, e->ejections, sizeof(st->ejections_total));
	for (uint32_t k = 1; k <= SNAP_EJECTED_KEEP; k++) { /* newest first */
		const struct eng_ejection *x =
			&e->ejected[(e->ejected_next + SNAP_EJECTED_KEEP - k) % SNAP_EJECTED_KEEP];

		if (!x->uri)
			break;
		st->ejected[st->nejected++] = (struct snap_ejection){
			.uri = x->uri, .why = x->why, .at = x->at, .by = x->by,
		};
	}
	st->snapshots_total = e->pub.generation;
	memset(ss, 0, sizeof(*ss));
	if (e->store)
		store_get_status(e->store, ss);
	st->store_writes_total = ss->writes_total;
	st->store_errors_total = ss->errors_total;
	st->store_error = ss->error;
	for (int k = 0; k < 2; k++) {
		struct geo_db_status gs = { .type = "", .error = "" };

		if (e->geo)
			geo_status(e->geo, k == SNAP_GEO_COUNTRY_DB ? GEO_COUNTRY : GEO_ASN, &gs);
		st->geo[k] = (struct snap_geo_db){
			.path = gs.path, .type = gs.type, .error = gs.error,
			.build_epoch = gs.build_epoch,
		};
	}
	st->geo_lookups_total = e->geo ? geo_lookups(e->geo) : 0;
}

static const char *exit_ip(const struct pool_entry *pe, char *buf, size_t size)
{
	if (!pe->exit_family || !inet_ntop(pe->exit_family, pe->exit_addr, buf, (socklen_t)size))
		return "";
	return buf;
}

/* One proxy as the tree shows it: an entry, or an HTTP proxy listed both
 * http:// and https:// (two entries, see pool.h) as one. Its plain HTTP
 * folder and grade come from forwarding, its https/ folder and grade from
 * the tunnel; it is in an anonymity folder only as the worst of the ways
 * that work, so "elite" never leaks a header through either. */
struct shown {
	const struct pool_entry *pe;   /* the entry (the http:// one of twins) */
	const struct pool_entry *twin; /* its https:// twin shown with it, or NULL */
	const struct pool_entry *lead; /* whose latency, exit and times are shown */
	uint8_t state, folders, anonymity;
	bool anon_split;
	uint8_t anon_http, anon_https;
};

/* The twin shown with pe: pe http://, its https:// twin in the pool and
 * neither removed nor dropped. */
static struct pool_entry *shown_twin(const struct engine *e, const struct pool_entry *pe)
{
	struct pool_entry *t = pool_twin(e->pool, pe);

	return t && !t->removed && !t->dropped && !pe->removed && !pe->dropped ? t : NULL;
}

static void shown_of(const struct pool_entry *pe, const struct pool_entry *twin,
		     struct shown *sh)
{
	bool plain_ok = pe->state == POOL_ALIVE, tunnel_ok = twin && twin->state == POOL_ALIVE;

	*sh = (struct shown){
		.pe = pe, .twin = twin, .lead = pe, .state = pe->state, .folders = pe->folders,
		.anonymity = pe->anonymity,
	};
	if (!twin)
		return;
	if (plain_ok || tunnel_ok)
		sh->state = POOL_ALIVE;
	else if (pe->state == POOL_UNKNOWN || twin->state == POOL_UNKNOWN)
		sh->state = POOL_UNKNOWN;
	else
		sh->state = POOL_DEAD;
	sh->folders = (uint8_t)((plain_ok ? pe->folders : 0) |
				(tunnel_ok ? 1u << PROXY_HTTPS : 0));
	if (!plain_ok && tunnel_ok) {
		sh->lead = twin;
		sh->anonymity = twin->anonymity;
	} else if (plain_ok && tunnel_ok) {
		/* enum snap_anon runs from unknown to elite: the lower is worse */
		sh->anonymity = pe->anonymity < twin->anonymity ? pe->anonymity : twin->anonymity;
		sh->anon_split = pe->anonymity != twin->anonymity;
		sh->anon_http = pe->anonymity;
		sh->anon_https = twin->anonymity;
	}
}

/* When pe is due again, in unix seconds (see snap_proxy.next_check);
 * clock0 is the wall time of the engine clock's zero. */
static int64_t next_check(const struct pool_entry *pe, int64_t clock0)
{
	if (pe->removed || pe->dropped)
		return 0;
	if (pe->heap_idx)
		return clock0 + pe->due;
	return pe->queued || pe->chk ? eng_wall_s() : 0;
}

/* The state a tracked proxy shows. */
static uint8_t shown_state(const struct pool_entry *pe, const struct shown *sh)
{
	if (pe->removed)
		return SNAP_REMOVED;
	if (pe->dropped)
		return SNAP_DROPPED;
	if (sh->state == POOL_ALIVE)
		return SNAP_ALIVE;
	return sh->state == POOL_DEAD ? SNAP_DEAD : SNAP_UNKNOWN;
}

/* Who ejected a proxy shown as sh that waits for its re-check, if anyone. */
static uint8_t ejected_by(const struct shown *sh)
{
	if (sh->pe->ejected)
		return sh->pe->ejected;
	return sh->twin ? sh->twin->ejected : SNAP_EJECT_NONE;
}

/* One record of the tree: a live proxy, or any other tracked one (all.json,
 * dead.txt, removed.txt, lookup/). A removed or dropped entry shows its
 * key (https:// for a tunnel), as control/add would take it back. */
static int add_record(struct engine *e, struct snap_builder *b, const struct shown *sh,
		      struct sbuf *sources, int64_t clock0)
{
	const struct pool_entry *pe = sh->lead;
	char ip[INET6_ADDRSTRLEN], uri[PROXY_URI_MAX];
	uint8_t state = shown_state(sh->pe, sh);
	struct snap_proxy p;

	/* Twins failed both ways: the one checked last says why. */
	if (state != SNAP_ALIVE && sh->twin && sh->twin->last_checked > pe->last_checked)
		pe = sh->twin;
	p = (struct snap_proxy){
	    .uri = pe->removed || pe->dropped ? pe->uri : pool_entry_uri(pe, uri),
	    .host = pe->host,
	    .exit_ip = exit_ip(pe, ip, sizeof(ip)),
	    .sources = sources_join(e, sh->pe, sh->twin, sources),
	    .port = pe->port,
	    .proto = pe->proto,
	    .folders = sh->folders,
	    .anonymity = sh->anonymity,
	    .anon_split = sh->anon_split,
	    .anon_http = sh->anon_http,
	    .anon_https = sh->anon_https,
	    .latency_ms = pe->latency_ms,
	    .last_checked = pe->last_checked,
	    .state = state,
	    .last = pe->last,
	    .ejected = state == SNAP_UNKNOWN ? ejected_by(sh) : SNAP_EJECT_NONE,
	    .fails_in_row = pe->fails_in_row,
	    .next_check = next_check(pe, clock0),
	    .country = { pe->country[0], pe->country[1], '\0' },
	    .geo_from = pe->geo_from,
	    .asn = pe->asn,
	    .as_org = e->geo ? geo_org(e->geo, pe->as_org) : "",
	};
	return snap_builder_add(b, &p);
}

void eng_mark_dirty(struct engine *e)
{
	e->pub.dirty = true;
}

void eng_publish(struct engine *e)
{
	struct snap_builder *b;
	struct snap_stats st = { 0 };
	struct store_status ss;
	struct pool_iter it;
	struct pool_entry *pe = NULL, *twin;
	struct shown sh;
	struct snapshot *s;
	char health[512];
	uint32_t *alive_by_src;
	struct sbuf sources;
	int64_t clock0 = eng_wall_s() - (int64_t)((eng_now_ms() - e->epoch_ms) / 1000);

	if (e->once)
		return; /* proxyfs check shows no tree */
	sbuf_init(&sources);
	alive_by_src = calloc(e->cfg->nsources ? e->cfg->nsources : 1, sizeof(*alive_by_src));
	b = alive_by_src ? snap_builder_new() : NULL;
	if (b && snap_builder_reserve(b, (uint32_t)pool_count(e->pool)) < 0) {
		snap_builder_free(b);
		b = NULL;
	}
	if (!b)
		goto out_nomem;
	while ((pe = pool_next(e->pool, &it, pe))) {
		twin = shown_twin(e, pe);
		if (twin && pe->tunnel)
			continue; /* shown with its http:// twin */
		eng_geo_sync(e, pe);
		if (twin)
			eng_geo_sync(e, twin);
		shown_of(pe, twin, &sh);
		add_record(e, b, &sh, &sources, clock0);
		if (pe->removed) {
			st.removed++;
			continue;
		}
		if (pe->dropped) {
			st.dropped++;
			continue;
		}
		st.total++;
		if (sh.state == POOL_ALIVE) {
			st.alive++;
			for (int f = 0; f < PROXY_PROTO_COUNT; f++)
				st.alive_by_folder[f] += sh.folders >> f & 1;
			for (size_t i = next_src(pe, twin, 0); i < e->cfg->nsources;
			     i = next_src(pe, twin, i + 1))
				alive_by_src[i]++;
		} else if (sh.state == POOL_DEAD) {
			st.dead++;
		} else {
			st.unknown++;
		}
	}
	e->alive_published = st.alive;
	for (size_t i = 0; i < e->cfg->nsources; i++)
		src_snapshot(&e->feeds.sources[i], &e->cfg->sources[i], alive_by_src[i], b);
	for (size_t i = 0; i < e->feeds.judges->n; i++) {
		const struct judge *j = &e->feeds.judges->v[i];
		struct snap_judge sj = {
			.url = j->url, .healthy = j->healthy, .last_probe = j->last_probe,
			.error = j->error, .our_addr = j->our_addr, .checks = j->checks, .ok = j->ok,
		};

		snap_builder_add_judge(b, &sj);
	}
	fill_stats(e, &st, &ss);
	st.hide_credentials = e->cfg->hide_credentials;
	st.health = health_text(e, &st, &ss, health, sizeof(health));
	snap_builder_set_stats(b, &st);
	s = snap_builder_finish(b);
	if (!s)
		goto out_nomem;
	snap_publish(s);
	e->pub.dirty = false;
	e->pub.last_publish_ms = eng_now_ms();
	goto out_free;
out_nomem:
	log_warn("publish: out of memory; the previous snapshot stays");
out_free:
	free(alive_by_src);
	sbuf_free(&sources);
}
