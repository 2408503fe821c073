/* feeds: what the engine takes in: source lists, judges, the config.
 *
 * Local lists are read at once, downloads go to the fetcher's thread and
 * come back as commands; judges are probed the same way; a reload swaps in
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
#include "judge_answer.h"
#include "log.h"

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
		if (!e->scan_running) {
			queue_push(&e->recheck, pe);
			continue;
		}
		/* A running scan takes it in, so its end means this one too. */
		pe->scan = (uint32_t)e->scan_gen;
		queue_push(&e->ready, pe);
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
void eng_apply_fetched(struct engine *e, size_t i, uint64_t gen, struct fetch_result *r)
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
		st->last_read = eng_wall_s();
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
	eng_dispatch(e);
}

/* --- judges --- */

void eng_probe_judges(struct engine *e, bool force)
{
	int64_t now = eng_wall_s();

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

void eng_apply_probe(struct engine *e, size_t i, uint64_t gen, struct fetch_result *r)
{
	if (gen != e->cfg_gen || i >= e->judges->n)
		return;
	if (judges_probe_done(e->judges, &e->judges->v[i], r, eng_wall_s(), e->cfg->judge_probe_s))
		e->dirty = true;
	if (e->once && !judges_any_healthy(e->judges) && judges_all_probed(e->judges)) {
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
	uint32_t room = eng_fd_room();

	e->opts.connect_timeout_ms = c->connect_timeout_ms;
	e->opts.timeout_ms = c->timeout_ms;
	e->limit_max = (uint32_t)c->concurrency < room ? (uint32_t)c->concurrency : room;
	if (e->limit > e->limit_max || e->limit == 0)
		e->limit = e->limit_max;
	log_set_level(c->log_level);
}

/* Re-reads the config file; a file that does not parse (or whose judges do
 * not resolve) is refused and the running config stays. 0 or -EINVAL. */
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
	eng_probe_judges(e, true);
	log_info("config %s reloaded: %zu sources, %zu judges", nc->file, nc->nsources,
		 nc->njudges);
	nc = NULL;
out_rescan:
	if (e->scan_running)
		e->rescan_pending = true;
	else
		eng_scan_start(e);
	eng_publish(e); /* the new tree (sources, judges) shows at once */
out_free:
	if (nc) {
		cfg_free(nc);
		free(nc);
	}
	return rc;
}
