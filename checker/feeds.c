/* feeds: what the engine takes in: source lists, judges, the config.
 *
 * Local lists are read at once, downloads go to the fetcher's thread and
 * come back as commands; judges are looked up and probed the same way
 * (their lookups on threads of resolve.h's); a reload swaps in
 * a new config, carrying each source's state over by name. Runs on the
 * engine thread; checking itself is scan.c's.
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
#include "log.h"
#include "session.h"

/* One read of a source's list. Its old proxies are let go only once the
 * read has found a proxy, so a read that finds none leaves them as they
 * were (see read_kept). */
struct list_read {
	struct engine *e;
	bool cleared; /* the source's old proxies were let go */
};

static void clear_source_bit(struct engine *e, size_t src)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	while ((pe = pool_next(e->pool, &it, pe)))
		pool_src_del(pe, src);
}

static int source_line(void *arg, size_t src, const struct proxy_addr *a)
{
	struct list_read *lr = arg;
	struct pool_entry *pe;
	bool created;

	if (!lr->cleared) {
		clear_source_bit(lr->e, src);
		lr->cleared = true;
	}
	pe = pool_get(lr->e->pool, a, &created);
	if (!pe)
		return -ENOMEM;
	if (pool_src_has(pe, src))
		return 1;
	return pool_src_add(pe, src);
}

static bool source_lists_any(struct engine *e, size_t src)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	while ((pe = pool_next(e->pool, &it, pe)))
		if (pool_src_has(pe, src))
			return true;
	return false;
}

/* A read that found no proxy while the source listed some is taken for a
 * list caught being rewritten (or a download gone wrong), not for a list
 * emptied on purpose: the last good list and its figures stay, and the
 * read counts as failed. True when that happened. */
static bool read_kept(struct engine *e, size_t i, const struct list_read *lr,
		      const struct src_state *before)
{
	struct src_state *st = &e->feeds.sources[i];

	if (lr->cleared || !source_lists_any(e, i))
		return false;
	st->proxies = before->proxies;
	st->invalid = before->invalid;
	st->scraped = before->scraped;
	st->last_read = before->last_read;
	src_failed(st, "the list has no proxy in it; the last good list is kept", st->http_status);
	log_warn("source %s: read found no proxy; keeping its last list (replace lists by "
		 "rename, not in place)", e->cfg->sources[i].name);
	return true;
}

/* Drops the proxies that no source nor control/add lists any more. */
static void prune_unlisted(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	while ((pe = pool_next(e->pool, &it, pe))) {
		if (pool_src_any(pe) || pe->manual || pe->removed)
			continue;
		sched_del(&e->sched, pe);
		pool_unlink(e->pool, pe);
		if (e->store)
			store_delete(e->store, pe->uri);
		eng_release_entry(pe);
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
		/* A running scan takes it in, so its end means this one too. */
		if (!eng_scan_join(e, pe))
			queue_push(&e->recheck, pe);
	}
}

/* What a source's read gave, at debug. */
static void log_source_read(const struct engine *e, size_t i, const char *how)
{
	const struct src_state *st = &e->feeds.sources[i];

	log_debug("source %s: read %s: %u proxies, %u invalid, %u scraped%s%s",
		  e->cfg->sources[i].name, how, st->proxies, st->invalid, st->scraped,
		  st->error[0] ? "; " : "", st->error);
}

static void read_local(struct engine *e, size_t i)
{
	FILE *f = src_open(&e->feeds.sources[i], &e->cfg->sources[i]);
	struct list_read lr = { .e = e };
	struct src_state before = e->feeds.sources[i];

	if (!f)
		return;
	src_read(&e->feeds.sources[i], &e->cfg->sources[i], f, i, source_line, &lr);
	read_kept(e, i, &lr, &before);
	log_source_read(e, i, e->cfg->sources[i].path);
}

static void fetch_done_cb(void *arg, struct fetch_result *res);

static void fetch_remote(struct engine *e, size_t i)
{
	struct src_state *st = &e->feeds.sources[i];
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
	*ctx = (struct fetch_ctx){ .e = e, .kind = CMD_FETCHED, .idx = i, .gen = e->feeds.cfg_gen };
	st->busy = true;
	st->last_try = eng_wall_s();
	if (fetcher_submit(e->fetcher, &req, fetch_done_cb, ctx) < 0) {
		st->busy = false;
		free(ctx);
	}
}

/* Refreshes the sources that are due (all when force): local lists are
 * read now, downloads are started and applied when they come back. */
void eng_refresh_sources(struct engine *e, bool force)
{
	uint64_t t = eng_now_ms();
	bool read = false;

	for (size_t i = 0; i < e->cfg->nsources; i++) {
		struct src_state *st = &e->feeds.sources[i];

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
		eng_mark_dirty(e);
	}
}

/* A download came back (engine thread): a new list replaces the source's
 * old one; a failure or an unchanged list keeps it. */
void eng_apply_fetched(struct engine *e, size_t i, uint64_t gen, struct fetch_result *r)
{
	struct src_state *st;
	bool kept;

	if (gen != e->feeds.cfg_gen || i >= e->cfg->nsources)
		return;
	st = &e->feeds.sources[i];
	st->busy = false;
	st->fetches_total++;
	st->http_status = r->http_status;
	kept = r->err != 0;
	if (r->err) {
		/* Said at warn when it starts failing (or fails otherwise), not
		 * again at every refresh while it stays down. */
		bool news = strcmp(st->error, r->error) != 0;

		src_failed(st, r->error, r->http_status);
		log_msg(news ? LOG_LVL_WARN : LOG_LVL_DEBUG, "source %s: %s%s",
			e->cfg->sources[i].name, r->error, news ? "" : " (still)");
	} else if (r->not_modified) {
		if (st->error[0])
			log_info("source %s: read again", e->cfg->sources[i].name);
		st->error[0] = '\0';
		st->last_read = eng_wall_s();
		log_debug("source %s: fetched %s: HTTP %ld, not modified: %u proxies kept",
			  e->cfg->sources[i].name, e->cfg->sources[i].url, r->http_status,
			  st->proxies);
	} else {
		struct list_read lr = { .e = e };
		struct src_state before = *st;

		src_read_text(st, &e->cfg->sources[i], r->data, r->len, i, source_line, &lr);
		/* A list kept over an empty one keeps its validators too, so
		 * the next download is a full one, not a 304 for the empty. */
		kept = read_kept(e, i, &lr, &before);
		if (before.error[0] && !st->error[0])
			log_info("source %s: read again", e->cfg->sources[i].name);
		log_debug("source %s: fetched %s: HTTP %ld, %zu bytes", e->cfg->sources[i].name,
			  e->cfg->sources[i].url, r->http_status, r->len);
		log_source_read(e, i, e->cfg->sources[i].url);
		prune_unlisted(e);
		queue_unchecked(e);
	}
	if (!kept) {
		free(st->etag);
		free(st->last_modified);
		st->etag = r->etag;
		st->last_modified = r->last_modified;
		r->etag = r->last_modified = NULL;
	}
	eng_mark_dirty(e);
	eng_dispatch(e);
}

/* --- judges --- */

/* A lookup's tag: the judge set's id and the judge's index in it. */
static uint64_t lookup_tag(uint64_t set_id, size_t i)
{
	return set_id * JUDGES_MAX + i;
}

/* On a lookup's thread: hand the result to the engine's. */
void eng_lookup_done_cb(void *owner, uint64_t tag, const struct resolve_result *r)
{
	struct cmd *c = calloc(1, sizeof(*c));

	if (!c)
		return; /* out of memory: this answer is lost, as a probe's would be */
	c->kind = CMD_RESOLVED;
	c->idx = (size_t)(tag % JUDGES_MAX);
	c->gen = tag / JUDGES_MAX;
	c->rsv = *r;
	eng_cmd_send(owner, c);
}

/* Sends judge i its direct probe; one that cannot go is due again. */
static void judge_probe(struct engine *e, size_t i)
{
	struct judge *j = &e->feeds.judges->v[i];
	struct fetch_ctx *ctx = malloc(sizeof(*ctx));
	struct fetch_req req;

	if (ctx) {
		*ctx = (struct fetch_ctx){ .e = e, .kind = CMD_PROBED, .idx = i,
					   .gen = e->feeds.judges->id };
		judges_probe_req(j, e->cfg, &req);
		if (fetcher_submit(e->fetcher, &req, fetch_done_cb, ctx) == 0)
			return;
	}
	free(ctx);
	j->probing = false;
}

/* Looks judge i's host up off the loop; one that cannot is due again in a
 * second (no thread to be had now). */
static void judge_lookup(struct engine *e, size_t i)
{
	struct judge *j = &e->feeds.judges->v[i];
	int rc = e->resolver ? resolver_lookup(e->resolver, j->chk.host,
					       lookup_tag(e->feeds.judges->id, i))
			     : -ENOMEM;

	if (rc == 0)
		return;
	log_debug("cannot look up judge host %s now: %s", j->chk.host, strerror(-rc));
	j->probing = false;
	j->next_probe = eng_wall_s() + 1;
}

/* What judge i needs once due, or once its host is looked up. */
static void judge_step(struct engine *e, size_t i, bool looked_up)
{
	struct judge *j = &e->feeds.judges->v[i];

	switch (judges_next_step(j, looked_up)) {
	case JUDGE_LOOKUP:
		judge_lookup(e, i);
		break;
	case JUDGE_PROBE:
		judge_probe(e, i);
		break;
	case JUDGE_READY:
		if (judges_unprobed_ok(j, eng_wall_s(), e->cfg->judge_probe_s))
			eng_mark_dirty(e);
		break;
	}
}

/* Checking pauses while no judge is usable and resumes once one is that
 * is not being confirmed again. A one-shot run that no judge can serve
 * ends there: false then. */
static bool judges_settle(struct engine *e)
{
	const struct judge_set *js = e->feeds.judges;
	bool ready = false, busy = false;

	for (size_t i = 0; i < js->n; i++) {
		ready = ready || (js->v[i].healthy && !js->v[i].probing);
		busy = busy || js->v[i].probing;
	}
	if (e->once && !ready && !busy && judges_all_probed(js)) {
		log_err("%s (%s: %s); nothing was checked",
			js->probe ? "no judge answers directly" : "no judge can be used",
			js->v[0].url, js->v[0].error);
		e->once_rc = -EHOSTUNREACH;
		event_base_loopbreak(e->base);
		return false;
	}
	if (e->paused && ready) {
		/* A pause nobody was told of (the start, the judges confirmed
		 * before a scan) ends at debug. */
		log_msg(e->pause_said ? LOG_LVL_INFO : LOG_LVL_DEBUG,
			"a judge answers: checking %s", e->pause_said ? "resumes" : "goes on");
		e->pause_said = false;
		e->paused = false;
		e->alive_fail_run = 0;
		eng_mark_dirty(e);
	} else if (!e->paused && !judges_any_healthy(js)) {
		log_warn("no judge answers: checking pauses, proxies keep their state");
		e->paused = true;
		e->pause_said = true;
		eng_mark_dirty(e);
	}
	if (eng_judges_unreachable(e)) /* a scan waited for cannot end: say so */
		eng_finish_waiters(e, UINT64_MAX, -EHOSTUNREACH);
	return true;
}

/* Looks up and probes the judges that are due (all when force): with
 * probing off, only the hosts given by name are looked up again. */
void eng_probe_judges(struct engine *e, bool force)
{
	int64_t now = eng_wall_s();

	if (!e->fetcher)
		return; /* not started: no thread before the daemon forks */
	for (size_t i = 0; i < e->feeds.judges->n; i++)
		if (judges_probe_due(&e->feeds.judges->v[i], now, force))
			judge_step(e, i, false);
	judges_settle(e);
}

void eng_apply_lookup(struct engine *e, size_t i, uint64_t set_id, const struct resolve_result *r)
{
	struct judge *j;

	if (set_id != e->feeds.judges->id || i >= e->feeds.judges->n)
		return;
	j = &e->feeds.judges->v[i];
	if (judges_lookup_done(j, r, eng_wall_s(), e->cfg->judge_probe_s) == 0)
		judge_step(e, i, true);
	eng_mark_dirty(e); /* health, and the judge's last_probe and error, changed */
	if (judges_settle(e))
		eng_dispatch(e);
}

void eng_apply_probe(struct engine *e, size_t i, uint64_t set_id, struct fetch_result *r)
{
	if (set_id != e->feeds.judges->id || i >= e->feeds.judges->n)
		return;
	judges_probe_done(e->feeds.judges, &e->feeds.judges->v[i], r, eng_wall_s(),
			  e->cfg->judge_probe_s);
	eng_mark_dirty(e);
	if (judges_settle(e))
		eng_dispatch(e);
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
	eng_cmd_send(ctx->e, c);
	free(ctx);
}


/* Carries each source's state over to the new config by name (a changed
 * url starts afresh), and renumbers the pool's source bits to match. */
static struct src_state *carry_sources(struct engine *e, const struct cfg *nc)
{
	struct src_state *ns = calloc(nc->nsources ? nc->nsources : 1, sizeof(*ns));
	long *map = calloc(e->cfg->nsources ? e->cfg->nsources : 1, sizeof(*map));
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	if (!ns || !map)
		goto out_nomem;
	for (size_t o = 0; o < e->cfg->nsources; o++)
		map[o] = -1;
	for (size_t i = 0; i < nc->nsources; i++) {
		for (size_t o = 0; o < e->cfg->nsources; o++) {
			if (strcmp(nc->sources[i].name, e->cfg->sources[o].name) != 0)
				continue;
			map[o] = (long)i;
			if (strcmp(nc->sources[i].url, e->cfg->sources[o].url) == 0 &&
			    nc->sources[i].interval_s == e->cfg->sources[o].interval_s &&
			    nc->sources[i].proto == e->cfg->sources[o].proto &&
			    nc->sources[i].remote_dns == e->cfg->sources[o].remote_dns) {
				ns[i] = e->feeds.sources[o];
				memset(&e->feeds.sources[o], 0, sizeof(e->feeds.sources[o]));
				ns[i].busy = false; /* its answer is for the old config */
			}
		}
	}
	/* An entry short of memory keeps its first 64 sources; the next
	 * read of the others lists it again. */
	while ((pe = pool_next(e->pool, &it, pe)))
		if (pool_src_remap(pe, map, e->cfg->nsources) < 0)
			log_warn("reload: out of memory renumbering %s's sources", pe->uri);
	free(map);
	return ns;
out_nomem:
	free(ns);
	free(map);
	return NULL;
}

static bool same_judges(const struct cfg *a, const struct cfg *b)
{
	if (a->njudges != b->njudges || strcmp(a->expect, b->expect) != 0 ||
	    (a->ca_file == NULL) != (b->ca_file == NULL) ||
	    (a->ca_file && strcmp(a->ca_file, b->ca_file) != 0) ||
	    a->probe_judges != b->probe_judges || a->require_echo != b->require_echo)
		return false;
	for (size_t i = 0; i < a->njudges; i++)
		if (strcmp(a->judges[i], b->judges[i]) != 0)
			return false;
	return true;
}

/* Puts a new judge set in place; the old one goes when the last check
 * through it ends. Checking waits until a new judge is usable. */
static int swap_judges(struct engine *e, const struct cfg *nc, char *err, size_t errlen)
{
	struct judge_set *js = judges_new(nc, nc->probe_judges, err, errlen);

	if (!js)
		return -EINVAL;
	js->id = ++e->feeds.judges_ids;
	js->owner = e;
	judges_unref(e->feeds.judges);
	e->feeds.judges = js;
	e->paused = !judges_any_healthy(js);
	return 0;
}

int eng_feeds_init(struct engine *e)
{
	const struct cfg *cfg = e->cfg;
	char err[256];

	e->feeds.judges = judges_new(cfg, cfg->probe_judges, err, sizeof(err));
	if (!e->feeds.judges) {
		log_err("judge: %s", err);
		return -EINVAL;
	}
	e->feeds.judges->id = ++e->feeds.judges_ids;
	e->feeds.judges->owner = e;
	e->feeds.sources = calloc(cfg->nsources ? cfg->nsources : 1, sizeof(*e->feeds.sources));
	if (!e->feeds.sources) {
		log_err("engine: out of memory");
		return -ENOMEM;
	}
	return 0;
}

void eng_feeds_free(struct engine *e)
{
	for (size_t i = 0; e->feeds.sources && i < e->cfg->nsources; i++)
		src_state_clear(&e->feeds.sources[i]);
	free(e->feeds.sources);
	e->feeds.sources = NULL;
	judges_unref(e->feeds.judges);
	e->feeds.judges = NULL;
	if (e->feeds.cfg_owned) {
		cfg_free(e->feeds.cfg_owned);
		free(e->feeds.cfg_owned);
		e->feeds.cfg_owned = NULL;
	}
}

static void apply_limits(struct engine *e, const struct cfg *c)
{
	uint32_t room = eng_fd_room(e);

	e->opts.connect_timeout_ms = c->connect_timeout_ms;
	e->opts.timeout_ms = c->timeout_ms;
	eng_limit_set_max(e, (uint32_t)c->concurrency < room ? (uint32_t)c->concurrency : room);
	log_set_level(c->log_level);
	session_configure((uint32_t)c->session_ttl_s, (uint32_t)c->sessions_max);
}

/* Re-reads the config file; a file that does not parse (or names a
 * malformed judge) is refused and the running config stays. 0 or -EINVAL.
 * Nothing here waits on the network: new judges are looked up and probed
 * off the loop. */
int eng_reload_config(struct engine *e)
{
	struct cfg *nc = calloc(1, sizeof(*nc));
	struct src_state *ns;
	char err[512];
	int rc = -ENOMEM;

	if (!nc)
		return rc;
	cfg_init(nc);
	if (!e->cfg->file) {
		rc = 0; /* no file: nothing to re-read but the sources (and [geo]'s files) */
		eng_geo_poll(e, true);
		goto out_rescan;
	}
	rc = cfg_load(e->cfg->file, nc, err, sizeof(err));
	if (rc == 0)
		rc = cfg_validate(nc, err, sizeof(err));
	if (rc == 0)
		rc = eng_geo_check(e, nc, err, sizeof(err));
	if (rc == 0 && !same_judges(e->cfg, nc))
		rc = swap_judges(e, nc, err, sizeof(err));
	if (rc < 0) {
		log_err("reload refused, the running config stays: %s", err);
		rc = -EINVAL;
		goto out_free;
	}
	if (!cfg_http_same(e->cfg, nc))
		log_warn("reload: [http] changed; it takes effect at the next start");
	if (!cfg_gateway_same(e->cfg, nc))
		log_warn("reload: [gateway] changed; it takes effect at the next start");
	ns = carry_sources(e, nc);
	if (!ns) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t i = 0; i < e->cfg->nsources; i++)
		src_state_clear(&e->feeds.sources[i]);
	free(e->feeds.sources);
	e->feeds.sources = ns;
	apply_limits(e, nc);
	eng_geo_apply(e, nc);
	if (e->feeds.cfg_owned) {
		cfg_free(e->feeds.cfg_owned);
		free(e->feeds.cfg_owned);
	}
	e->cfg = e->feeds.cfg_owned = nc;
	e->feeds.cfg_gen++;
	prune_unlisted(e);
	eng_probe_judges(e, true);
	log_info("config %s reloaded: %zu sources, %zu judges", nc->file, nc->nsources,
		 nc->njudges);
	nc = NULL;
out_rescan:
	eng_scan_request(e);
	eng_publish(e); /* the new tree (sources, judges) shows at once */
out_free:
	if (nc) {
		cfg_free(nc);
		free(nc);
	}
	return rc;
}
