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
#include "judge_answer.h"
#include "log.h"

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

void eng_store_entry(struct engine *e, const struct pool_entry *pe)
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
	if (e->paused && e->judges->n && !judges_all_probed(e->judges))
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
	st->concurrency_fd_max = e->limit_max;
	st->concurrency_why = e->limit_why;
	memcpy(st->concurrency_lowered, e->limit_lowered, sizeof(st->concurrency_lowered));
	st->latency_ratio = e->lat_ratio;
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

void eng_publish(struct engine *e)
{
	struct snap_builder *b;
	struct snap_stats st = { 0 };
	struct store_status ss;
	struct pool_iter it;
	struct pool_entry *pe = NULL;
	struct snapshot *s;
	char health[512];
	uint32_t alive_by_src[64] = { 0 };

	if (e->once)
		return; /* proxyfs check shows no tree */
	b = snap_builder_new();
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
	e->alive_published = st.alive;
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
	e->last_publish_ms = eng_now_ms();
	return;
out_nomem:
	log_warn("publish: out of memory; the previous snapshot stays");
}
