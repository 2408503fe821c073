/* engine: the thread that owns the pool; see engine.h.
 *
 * One libevent loop does everything that changes the pool; this file holds
 * its life cycle, the command queue other threads talk through, and the
 * tick that drives the rest (scan.c, feeds.c, publish.c). It does not
 * render files (fs/) nor write to disk itself (store).
 */
#include "engine.h"
#include "thread.h"

#include <event2/thread.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "echo.h"
#include "geo.h"
#include "gw_stats.h"
#include "log.h"

void eng_waiter_put(struct waiter *w)
{
	if (atomic_fetch_sub(&w->refs, 1) != 1)
		return;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void eng_wake(struct waiter *w, int rc)
{
	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	eng_waiter_put(w);
}

/* The tick coming late means the loop is behind. Its lateness adds up in
 * lag_ms, so a check that timed out can tell how much of its time was our
 * delay; a loop that stays far behind (LAG_SUSTAINED late ticks within
 * LAG_WINDOW_MS) also gets fewer checks at once. One late turn, as when a
 * scan starts thousands of checks, is not overload. */
void eng_watch_lag(struct engine *e, uint64_t t)
{
	uint64_t late = e->last_tick_ms && t > e->last_tick_ms + TICK_MS
				? t - e->last_tick_ms - TICK_MS
				: 0;

	e->last_tick_ms = t;
	e->lag_ms += late;
	if (late <= LAG_MIN_MS || late <= (uint64_t)e->cfg->timeout_ms / 10)
		return;
	log_debug("event loop %llu ms late", (unsigned long long)late);
	if (t - e->lag_window_ms > LAG_WINDOW_MS) {
		e->lag_window_ms = t;
		e->lag_late_ticks = 0;
	}
	if (++e->lag_late_ticks < LAG_SUSTAINED)
		return;
	e->lag_late_ticks = 0;
	eng_lower_limit(e, SNAP_LIMIT_LOOP_LAG);
}

/* The store fails or recovers on its own thread: health must follow even
 * when the pool does not change. */
static void watch_store(struct engine *e)
{
	struct store_status ss;

	if (!e->store)
		return;
	store_get_status(e->store, &ss);
	if (ss.errors_total != e->store_errors_seen || (ss.error[0] != '\0') != e->store_failing) {
		e->store_errors_seen = ss.errors_total;
		e->store_failing = ss.error[0] != '\0';
		eng_mark_dirty(e);
	}
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	uint64_t t = eng_now_ms();

	eng_watch_lag(e, t);
	watch_store(e);
	eng_recover_limit(e);
	eng_settle_doubt(e);
	eng_take_due(e);
	eng_probe_judges(e, false);
	eng_geo_poll(e, false);
	if (!e->once)
		eng_refresh_sources(e, false);
	if (!e->once && !e->scan.running && (e->scan.pending || t >= e->scan.next_ms))
		eng_scan_start(e);
	eng_dispatch(e);
	if (e->pub.dirty && t - e->pub.last_publish_ms >= (uint64_t)e->cfg->publish_ms)
		eng_publish(e);
	eng_scan_maybe_finish(e);
}

/* --- commands --- */

static void cmd_free(struct cmd *c)
{
	free(c->list);
	free(c->why);
	if (c->res)
		fetch_result_free(c->res);
	free(c);
}

static void do_add(struct engine *e, const struct proxy_addr *list, size_t n)
{
	size_t added = 0, known = 0, readmitted = 0;

	for (size_t i = 0; i < n; i++) {
		bool created;
		struct pool_entry *pe = pool_get(e->pool, &list[i], &created);

		if (!pe)
			continue;
		added += created;
		known += !created;
		pe->manual = true;
		pe->dropped = false;
		if (pe->removed) {
			readmitted++;
			pe->removed = false;
			if (e->store)
				store_unmark_removed(e->store, pe->uri);
		}
		eng_store_entry(e, pe);
		if (!pe->queued && !pe->chk) {
			pe->tries = 0;
			pe->scan = 0;
			queue_push(&e->urgent, pe);
		}
	}
	log_debug("control/add: %zu line%s: %zu added, %zu already in the pool (%zu let back in "
		  "after a remove), %zu not taken (out of memory); each is checked first",
		  n, n == 1 ? "" : "s", added, known, readmitted, n - added - known);
	eng_mark_dirty(e);
	eng_dispatch(e);
}

/* Takes pe out of the live set and keeps it out, in the store too. */
static void remove_entry(struct engine *e, struct pool_entry *pe)
{
	pe->removed = true;
	pe->manual = false;
	pe->ejected = SNAP_EJECT_NONE;
	sched_del(&e->sched, pe);
	pe->state = POOL_UNKNOWN;
	pe->folders = 0;
	if (pe->chk) {
		eng_check_cancel(pe);
		e->in_flight--;
		eng_scan_forget(e, pe);
	}
	if (e->store)
		store_mark_removed(e->store, pe->uri);
}

/* Writes a URI's scheme, host and port without its credentials to buf;
 * false when it has none (or they do not fit). Credentials are printed
 * percent-encoded, so the host starts after the only '@'. */
static bool uri_without_creds(const char *uri, char *buf, size_t size)
{
	const char *sep = strstr(uri, "://"), *at = sep ? strchr(sep + 3, '@') : NULL;

	if (!at)
		return false;
	return (size_t)snprintf(buf, size, "%.*s%s", (int)(sep + 3 - uri), uri, at + 1) < size;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A line without credentials also removes every credential variant of
 * its scheme, host and port the pool holds: one pass over the pool for
 * the whole write. matched[k] says whether bare[k] (sorted) took any. */
static size_t remove_variants(struct engine *e, char **bare, size_t nbare, bool *matched)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;
	char key[PROXY_URI_MAX];
	size_t took = 0;

	if (!nbare)
		return 0;
	qsort(bare, nbare, sizeof(*bare), cmp_str);
	while ((pe = pool_next(e->pool, &it, pe))) {
		const char *k = key;
		char **hit;

		if (!pe->user[0] || pe->removed || !uri_without_creds(pe->uri, key, sizeof(key)))
			continue;
		hit = bsearch(&k, bare, nbare, sizeof(*bare), cmp_str);
		if (!hit)
			continue;
		/* Its user, never its password: logs travel further. */
		log_info("remove %s: also its variant with user %s", *hit, pe->user);
		remove_entry(e, pe);
		matched[hit - bare] = true;
		took++;
	}
	return took;
}

/* Whether the line whose key is key removed some credential variant. */
static bool took_variants(char **bare, size_t nbare, const bool *matched, const char *key)
{
	char **hit = bsearch(&key, bare, nbare, sizeof(*bare), cmp_str);

	return hit && matched[hit - bare];
}

/* The key of a's twin (see pool.h) for a plain http:// line, else NULL. */
static char *twin_key(const struct proxy_addr *a)
{
	struct proxy_addr t = *a;
	char key[PROXY_URI_MAX];

	if (a->proto != PROXY_HTTP || a->tunnel)
		return NULL;
	t.tunnel = true;
	return proxy_format_key(&t, key, sizeof(key)) < 0 ? NULL : strdup(key);
}

/* Each line is kept out (persisted) even when the pool never had it, since
 * a source may list it later; that case is logged, as a likely typo. A
 * plain http:// line also removes the same proxy listed https://, which
 * prints the same. */
static void do_remove(struct engine *e, const struct proxy_addr *list, size_t n)
{
	char **bare = calloc(2 * n + 1, sizeof(*bare)); /* keys without credentials, owned */
	bool *matched = calloc(2 * n + 1, sizeof(*matched));
	bool *known = calloc(n + 1, sizeof(*known));
	size_t nbare = 0, removed = 0, variants = 0, unknown = 0;

	if (!bare || !matched || !known)
		log_warn("remove: out of memory; only the exact lines are removed");
	for (size_t i = 0; i < n; i++) {
		bool created;
		struct pool_entry *pe = pool_get(e->pool, &list[i], &created), *twin;
		char *tk = twin_key(&list[i]);

		if (!pe) {
			free(tk);
			continue;
		}
		remove_entry(e, pe);
		removed++;
		twin = tk ? pool_find(e->pool, tk) : NULL;
		if (twin)
			remove_entry(e, twin);
		if (known)
			known[i] = !created || twin;
		if (bare && !pe->user[0]) {
			char *k = strdup(pe->uri);

			if (k)
				bare[nbare++] = k;
			if (tk)
				bare[nbare++] = tk;
			tk = NULL;
		}
		free(tk);
	}
	if (bare && matched)
		variants = remove_variants(e, bare, nbare, matched);
	for (size_t i = 0; known && i < n; i++) {
		char key[PROXY_URI_MAX];
		char *tk;
		bool took;

		if (known[i] || proxy_format_key(&list[i], key, sizeof(key)) < 0)
			continue;
		tk = twin_key(&list[i]);
		took = bare && matched &&
		       (took_variants(bare, nbare, matched, key) ||
			(tk && took_variants(bare, nbare, matched, tk)));
		free(tk);
		if (took)
			continue;
		log_info("remove %s: not in the pool; kept out should a source list it", key);
		unknown++;
	}
	log_debug("control/remove: %zu line%s: %zu removed (%zu not in the pool, kept out), "
		  "%zu credential variants removed with them",
		  n, n == 1 ? "" : "s", removed - unknown, unknown, variants);
	for (size_t i = 0; bare && i < nbare; i++)
		free(bare[i]);
	free(bare);
	free(matched);
	free(known);
	eng_mark_dirty(e);
	eng_publish(e); /* a removed proxy must not be handed out a moment longer */
	eng_dispatch(e);
	eng_scan_maybe_finish(e);
}

/* The entries line a names: its own and, for a plain http:// line, the
 * same proxy listed https:// (both print http://). Neither when removed.
 * Returns how many it found (0 to 2) in out. */
static int bad_entries(struct engine *e, const struct proxy_addr *a, struct pool_entry *out[2])
{
	char key[PROXY_URI_MAX];
	char *tk = twin_key(a);
	struct pool_entry *pe;
	int n = 0;

	if (proxy_format_key(a, key, sizeof(key)) >= 0) {
		pe = pool_find(e->pool, key);
		if (pe && !pe->removed)
			out[n++] = pe;
	}
	pe = tk ? pool_find(e->pool, tk) : NULL;
	if (pe && !pe->removed)
		out[n++] = pe;
	free(tk);
	return n;
}

/* Takes a live pe out of the live set until its re-check, queued ahead
 * of the scheduled ones (one in flight or queued already keeps its turn:
 * that check decides). false when pe was not live. */
static bool eject_entry(struct engine *e, struct pool_entry *pe, enum snap_eject_by by)
{
	if (pe->state != POOL_ALIVE || pe->dropped)
		return false;
	pe->state = POOL_UNKNOWN;
	pe->folders = 0;
	pe->ejected = (uint8_t)by;
	if (!pe->queued && !pe->chk) {
		sched_del(&e->sched, pe);
		pe->tries = 0;
		queue_push(&e->urgent, pe);
	}
	return true;
}

/* A line without credentials that names no entry itself names every
 * credential variant of its scheme, host and port (and of its https://
 * twin), which hide_credentials prints alike: one pass over the pool.
 * Returns how many are tracked; with eject, takes the live ones out and
 * says in *took whether any was. */
static size_t bad_variants(struct engine *e, const struct proxy_addr *a, bool eject, bool *took)
{
	char key[PROXY_URI_MAX], bare[PROXY_URI_MAX];
	char *tk;
	struct pool_iter it;
	struct pool_entry *pe = NULL;
	size_t n = 0;

	if (a->user[0] || proxy_format_key(a, key, sizeof(key)) < 0)
		return 0;
	tk = twin_key(a);
	while ((pe = pool_next(e->pool, &it, pe))) {
		if (!pe->user[0] || pe->removed || !uri_without_creds(pe->uri, bare, sizeof(bare)))
			continue;
		if (strcmp(bare, key) != 0 && (!tk || strcmp(bare, tk) != 0))
			continue;
		n++;
		if (eject && eject_entry(e, pe, SNAP_EJECT_CONTROL))
			*took = true;
	}
	free(tk);
	return n;
}

/* Keeps uri's ejection among the last SNAP_EJECTED_KEEP (stat.json);
 * out of memory, it is only counted. */
static void remember_ejection(struct engine *e, const char *uri, enum snap_eject_by by,
			      const char *why)
{
	struct eng_ejection *x = &e->ejected[e->ejected_next];

	free(x->uri);
	free(x->why);
	x->uri = strdup(uri);
	x->why = strdup(why);
	if (!x->uri || !x->why) {
		free(x->uri);
		free(x->why);
		x->uri = x->why = NULL;
		return;
	}
	x->at = eng_wall_s();
	x->by = (uint8_t)by;
	e->ejected_next = (e->ejected_next + 1) % SNAP_EJECTED_KEEP;
}

/* control/bad: all or nothing, so every line is looked up before any is
 * applied; the snapshot without them is published before w is woken. */
static void do_bad(struct engine *e, const struct proxy_addr *list, size_t n, struct waiter *w)
{
	struct pool_entry *pe[2];
	size_t ejected = 0;
	char uri[PROXY_URI_MAX];

	for (size_t i = 0; i < n; i++) {
		if (bad_entries(e, &list[i], pe) || bad_variants(e, &list[i], false, NULL))
			continue;
		w->at = i;
		eng_wake(w, -ENOENT);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int k = bad_entries(e, &list[i], pe);
		bool took = false;

		for (int j = 0; j < k; j++)
			took |= eject_entry(e, pe[j], SNAP_EJECT_CONTROL);
		if (!k)
			bad_variants(e, &list[i], true, &took);
		if (!took)
			continue;
		if (proxy_format_uri(&list[i], uri, sizeof(uri)) >= 0) {
			log_info("bad %s: reported through control/bad, out until its re-check", uri);
			remember_ejection(e, uri, SNAP_EJECT_CONTROL, "reported through control/bad");
		}
		ejected++;
	}
	e->ejections[SNAP_EJECT_CONTROL] += ejected;
	log_debug("control/bad: %zu line%s: %zu live proxies taken out, each re-checked first", n,
		  n == 1 ? "" : "s", ejected);
	eng_mark_dirty(e);
	eng_publish(e); /* the writer returns once they are no longer handed out */
	eng_wake(w, 0);
	eng_dispatch(e);
}

/* The gateway's word on one upstream (engine_report): a success clears
 * its failures in a row; the eject_after-th failure in a row takes it out
 * of the live set as control/bad does, pending the re-check that alone
 * brings it back. Both entries of a plain http:// upstream count (the
 * same server, listed http:// and https://). */
static void do_report(struct engine *e, const struct proxy_addr *a, bool ok, const char *why)
{
	struct pool_entry *pe[2];
	int k = bad_entries(e, a, pe);
	bool took = false;
	char uri[PROXY_URI_MAX];

	for (int j = 0; j < k; j++) {
		if (ok) {
			pe[j]->gw_fails = 0;
			continue;
		}
		if (pe[j]->gw_fails < UINT8_MAX)
			pe[j]->gw_fails++;
		if (!e->gw_eject_after || pe[j]->gw_fails < e->gw_eject_after)
			continue;
		if (eject_entry(e, pe[j], SNAP_EJECT_GATEWAY)) {
			pe[j]->gw_fails = 0;
			took = true;
		}
	}
	/* One ejection for one proxy, even listed both http:// and https://;
	 * named as the gateway named it (the snapshot's URI). */
	if (!took)
		return;
	if (proxy_format_uri(a, uri, sizeof(uri)) >= 0) {
		remember_ejection(e, uri, SNAP_EJECT_GATEWAY, why);
		log_info("bad %s: %u failures through the gateway in a row (the last: %s), out "
			 "until its re-check",
			 uri, e->gw_eject_after, why);
	}
	e->ejections[SNAP_EJECT_GATEWAY]++;
	eng_mark_dirty(e);
	eng_publish(e); /* no longer handed out, to the gateway or anyone */
	eng_dispatch(e);
}

bool eng_judges_unreachable(const struct engine *e)
{
	return judges_all_probed(e->feeds.judges) && !judges_any_healthy(e->feeds.judges);
}

static void do_rescan(struct engine *e, struct waiter *w)
{
	log_debug("control/reload: %s: %s", w ? "sync" : "rescan",
		  e->scan.running ? "a scan runs; another follows it" : "a scan starts");
	if (w && eng_judges_unreachable(e)) {
		/* It runs when a judge answers again; nobody waits for that. */
		eng_wake(w, -EHOSTUNREACH);
		w = NULL;
	}
	/* It waits for the pending scan, or the one requested below. */
	if (w && eng_scan_add_waiter(e, w) < 0)
		eng_wake(w, -ENOMEM);
	eng_geo_poll(e, true); /* a replaced [geo] file shows in this rescan's snapshot */
	eng_scan_request(e);
	eng_scan_maybe_finish(e); /* an empty pool finishes at once */
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
			eng_apply_fetched(e, c->idx, c->gen, c->res);
			break;
		case CMD_PROBED:
			eng_apply_probe(e, c->idx, c->gen, c->res);
			break;
		case CMD_RESOLVED:
			eng_apply_lookup(e, c->idx, c->gen, &c->rsv);
			break;
		case CMD_BAD:
			do_bad(e, c->list, c->n, c->waiter);
			c->waiter = NULL;
			break;
		case CMD_REPORT:
			do_report(e, &c->list[0], c->ok, c->why ? c->why : "");
			break;
		case CMD_RELOAD:
			log_debug("control/reload: reload: re-reading the config and the sources");
			eng_wake(c->waiter, eng_reload_config(e));
			c->waiter = NULL;
			break;
		}
		cmd_free(c);
	}
}

int eng_cmd_send(struct engine *e, struct cmd *c)
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

static struct waiter *waiter_new(void)
{
	struct waiter *w = calloc(1, sizeof(*w));
	pthread_condattr_t attr;

	if (!w)
		return NULL;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	atomic_init(&w->refs, 2);
	return w;
}

/* Waits for w's result, asking stop every WAIT_POLL_MS whether to give up
 * first; *at (may be NULL) gets w's at. Drops the caller's reference
 * either way. */
static int waiter_wait(struct waiter *w, engine_stop_fn stop, void *arg, size_t *at)
{
	struct timespec until;
	int rc = 0;

	pthread_mutex_lock(&w->lock);
	while (!w->done && rc == 0) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += WAIT_POLL_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cond, &w->lock, &until);
		if (!w->done && stop)
			rc = stop(arg);
	}
	if (w->done)
		rc = w->rc;
	if (at)
		*at = w->at;
	pthread_mutex_unlock(&w->lock);
	eng_waiter_put(w);
	return rc;
}

/* Sends a command of kind and, when wait, blocks until the engine gives
 * the command's result or stop says to give up. */
static int send_and_wait(struct engine *e, enum cmd_kind kind, bool wait, engine_stop_fn stop,
			 void *arg)
{
	struct cmd *c = calloc(1, sizeof(*c));
	struct waiter *w = NULL;
	int rc;

	if (!c)
		return -ENOMEM;
	if (wait) {
		w = waiter_new();
		if (!w) {
			free(c);
			return -ENOMEM;
		}
	}
	c->kind = kind;
	c->waiter = w;
	rc = eng_cmd_send(e, c);
	if (rc < 0) {
		if (w) { /* the engine never had it: both references are ours */
			eng_waiter_put(w);
			eng_waiter_put(w);
		}
		return rc;
	}
	return w ? waiter_wait(w, stop, arg, NULL) : 0;
}

int engine_rescan(struct engine *e, bool wait, engine_stop_fn stop, void *arg)
{
	return send_and_wait(e, CMD_RESCAN, wait, stop, arg);
}

int engine_reload(struct engine *e, engine_stop_fn stop, void *arg)
{
	return send_and_wait(e, CMD_RELOAD, true, stop, arg);
}

/* A command of kind carrying a copy of list; NULL when out of memory. */
static struct cmd *list_cmd(enum cmd_kind kind, const struct proxy_addr *list, size_t n)
{
	struct cmd *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->kind = kind;
	c->n = n;
	if (n) {
		c->list = malloc(n * sizeof(*list));
		if (!c->list) {
			free(c);
			return NULL;
		}
		memcpy(c->list, list, n * sizeof(*list));
	}
	return c;
}

static int send_list(struct engine *e, enum cmd_kind kind, const struct proxy_addr *list,
		     size_t n)
{
	struct cmd *c = list_cmd(kind, list, n);

	return c ? eng_cmd_send(e, c) : -ENOMEM;
}

int engine_add(struct engine *e, const struct proxy_addr *list, size_t n)
{
	return send_list(e, CMD_ADD, list, n);
}

int engine_remove(struct engine *e, const struct proxy_addr *list, size_t n)
{
	return send_list(e, CMD_REMOVE, list, n);
}

int engine_bad(struct engine *e, const struct proxy_addr *list, size_t n, size_t *at,
	       engine_stop_fn stop, void *arg)
{
	struct cmd *c = list_cmd(CMD_BAD, list, n);
	struct waiter *w = c ? waiter_new() : NULL;
	int rc;

	if (!w) {
		if (c)
			cmd_free(c);
		return -ENOMEM;
	}
	c->waiter = w;
	rc = eng_cmd_send(e, c);
	if (rc < 0) { /* the engine never had it: both references are ours */
		eng_waiter_put(w);
		eng_waiter_put(w);
		return rc;
	}
	return waiter_wait(w, stop, arg, at);
}

int engine_report(struct engine *e, const char *uri, bool ok, const char *why)
{
	struct proxy_addr a;
	struct cmd *c;

	if (proxy_parse_line(uri, strlen(uri), PROXY_HTTP, &a) != PROXY_LINE_OK)
		return -EINVAL;
	c = list_cmd(CMD_REPORT, &a, 1);
	if (!c)
		return -ENOMEM;
	c->ok = ok;
	if (!ok) {
		c->why = strdup(why && *why ? why : "failed");
		if (!c->why) {
			cmd_free(c);
			return -ENOMEM;
		}
	}
	return eng_cmd_send(e, c);
}

void engine_signal_reload(struct engine *e)
{
	char c = 'r';
	ssize_t n = write(e->sig_pipe[1], &c, 1);

	(void)n; /* a full pipe already holds a request */
}

static void sig_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	log_reopen(); /* a rotated log_file: continue in a new one */
	log_info("SIGHUP: re-reading the config and the sources");
	eng_reload_config(e);
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
		for (size_t i = 0; i < e->cfg->nsources; i++)
			if (strlen(e->cfg->sources[i].name) == n &&
			    strncmp(p, e->cfg->sources[i].name, n) == 0 &&
			    pool_src_add(pe, i) < 0)
				log_warn("store: out of memory loading %s's sources", pe->uri);
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

uint32_t eng_fd_room(const struct engine *e)
{
	struct rlimit rl;
	uint64_t reserve = FD_RESERVE + e->fd_http + e->fd_gateway;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024 > reserve + MIN_CONCURRENCY ? (uint32_t)(1024 - reserve) : MIN_CONCURRENCY;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
		return 1000000;
	if (rl.rlim_cur <= reserve + MIN_CONCURRENCY)
		return MIN_CONCURRENCY;
	return (uint32_t)(rl.rlim_cur - reserve);
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
	e->dispatch_ev = event_new(e->base, -1, 0, eng_dispatch_cb, e);
	if (!e->cmd_ev || !e->tick_ev || !e->sig_ev || !e->dispatch_ev)
		return -ENOMEM;
	/* Of 3 levels every event gets the middle one by default. Starting
	 * more checks stays there: it comes after the I/O of its turn by
	 * being a timer (see dispatch_some), and one level lower it would
	 * wait for a turn without any I/O, which a busy loop seldom has. */
	if (event_add(e->tick_ev, &tick) < 0 || event_add(e->sig_ev, NULL) < 0)
		return -EIO;
	return 0;
}

struct engine *engine_new(const struct cfg *cfg, struct store *store)
{
	struct engine *e = calloc(1, sizeof(*e));
	uint32_t room;

	if (!e)
		return NULL;
	e->sig_pipe[0] = e->sig_pipe[1] = -1;
	e->cfg = cfg;
	e->store = store;
	e->started = eng_wall_s();
	e->epoch_ms = eng_now_ms();
	pthread_mutex_init(&e->cmd_lock, NULL);
	e->cmds_tail = &e->cmds;
	if (evthread_use_pthreads() < 0) {
		log_err("libevent: no thread support");
		goto out_free;
	}
	if (eng_feeds_init(e) < 0)
		goto out_free;
	e->paused = !judges_any_healthy(e->feeds.judges); /* until a judge answers */
	e->resolver = resolver_new(eng_lookup_done_cb, e);
	if (!e->resolver)
		goto out_free;
	e->opts.connect_timeout_ms = cfg->connect_timeout_ms;
	e->opts.timeout_ms = cfg->timeout_ms;
	e->pool = pool_new();
	if (!e->pool || make_events(e) < 0) {
		log_err("engine: cannot set up its event loop");
		goto out_free;
	}
	/* One fd per HTTP connection, and each loop's listening sockets and
	 * its own. */
	if (cfg->http.nlisten)
		e->fd_http = (uint32_t)cfg->http.max_connections +
			     (uint32_t)cfg->http.threads * (uint32_t)(cfg->http.nlisten + 4) + 8;
	/* Two fds per gateway connection (the client's, the upstream's) and
	 * its listening sockets: the checks never take the gateway's share. */
	if (cfg->gateway.nlisten)
		e->fd_gateway = 2 * gw_fd_share((uint32_t)cfg->gateway.max_connections) +
				(uint32_t)cfg->gateway.nlisten + 8;
	e->gw_eject_after = (uint32_t)cfg->gateway.eject_after;
	room = eng_fd_room(e);
	if ((uint32_t)cfg->concurrency > room)
		log_warn("concurrency %d clamped to %u by the open-file limit", cfg->concurrency,
			 room);
	eng_limit_set_max(e, (uint32_t)cfg->concurrency < room ? (uint32_t)cfg->concurrency : room);
	if (store && (store_load(store, load_rec, e) < 0 ||
		      store_load_removed(store, load_removed, e) < 0))
		log_warn("store: could not load the last known pool");
	eng_publish(e);
	return e;
out_free:
	engine_free(e);
	return NULL;
}

/* At most how long the checks in flight, and a retry waiting for its turn,
 * may still take: the newest check's whole timeout from its start, a
 * retry's from when it is due. What is still queued besides is the rate's
 * to estimate. */
static uint64_t tail_ms(const struct engine *e)
{
	uint64_t now = eng_now_ms(), end = 0, due = retry_last_due(&e->retry);
	uint64_t timeout = (uint64_t)e->cfg->timeout_ms;

	if (e->in_flight)
		end = e->last_start_ms + timeout;
	if (due && due + timeout > end)
		end = (due > now ? due : now) + timeout;
	return end > now ? end - now : 0;
}

static void progress_fill(const struct engine *e, struct engine_progress *p)
{
	memset(p, 0, sizeof(*p));
	p->checked = e->scan.checked;
	p->total = e->scan.total;
	p->alive = e->scan_alive;
	p->in_flight = e->in_flight;
	p->in_flight_max = e->in_flight_max;
	p->limit = e->lim.limit;
	p->limit_max = e->lim.limit_max;
	p->limit_conf = (uint32_t)e->cfg->concurrency;
	p->local_requeues = e->local_requeues;
	p->retries = e->retries_total;
	for (int i = 0; i < CHK_RESULT_COUNT; i++)
		p->by_result[i] = e->checks_total[i];
	p->elapsed_s = (double)(eng_now_ms() - e->scan.started_ms) / 1000.0;
	p->waiting = (uint32_t)(e->ready.len + e->urgent.len + e->retry.len);
	p->tail_s = tail_ms(e) / 1000.0;
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct engine_progress p;

	progress_fill(e, &p);
	e->once->progress(e->once_arg, &p);
}

static void report_sources(const struct engine *e, const struct engine_once_ops *ops, void *arg)
{
	for (size_t i = 0; ops->source && i < e->cfg->nsources; i++) {
		const struct src_state *st = &e->feeds.sources[i];
		struct engine_source s = {
			.url = e->cfg->sources[i].url, .proxies = st->proxies,
			.invalid = st->invalid, .sample = (const char *const *)st->sample,
			.http_status = st->http_status, .error = st->error,
		};

		while (s.nsample < SNAP_SAMPLE_INVALID && st->sample[s.nsample])
			s.nsample++;
		ops->source(arg, &s);
	}
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
	eng_probe_judges(e, true);
	if (ops->progress && ops->progress_ms > 0) {
		struct timeval tv = { ops->progress_ms / 1000, (ops->progress_ms % 1000) * 1000 };

		prog = event_new(e->base, -1, EV_PERSIST, progress_cb, e);
		if (!prog || event_add(prog, &tv) < 0) {
			rc = -ENOMEM;
			goto out;
		}
	}
	eng_scan_start(e);
	eng_scan_maybe_finish(e);
	if (e->scan.running && event_base_dispatch(e->base) < 0)
		rc = -EIO;
	if (e->once_rc)
		rc = e->once_rc;
	progress_fill(e, out);
	report_sources(e, ops, arg);
out:
	if (prog)
		event_free(prog);
	e->once = NULL;
	return rc;
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;

	eng_scan_start(e);
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
	eng_probe_judges(e, true);
	rc = thread_start(&e->thread, NULL, engine_main, e);
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

		if (c->waiter)
			eng_wake(c->waiter, -ESHUTDOWN);
		cmd_free(c);
		c = next;
	}
	if (e->running) {
		event_base_once(e->base, -1, EV_TIMEOUT, stop_cb, e->base, NULL);
		pthread_join(e->thread, NULL);
		e->running = false;
	}
	eng_finish_waiters(e, UINT64_MAX, -ESHUTDOWN);
}

/* Names being resolved for the checks just cancelled get their last
 * callbacks from the loop: one turn, with nothing else left to run, lets
 * them free what they hold before the resolver goes. */
static void free_dns(struct engine *e)
{
	struct event *evs[] = {e->cmd_ev, e->tick_ev, e->sig_ev, e->dispatch_ev};

	if (!e->opts.dns)
		return;
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_del(evs[i]);
	event_base_loop(e->base, EVLOOP_NONBLOCK);
	evdns_base_free(e->opts.dns, 0);
	e->opts.dns = NULL;
}

void engine_free(struct engine *e)
{
	struct pool_iter it;
	struct pool_entry *pe = NULL;

	if (!e)
		return;
	engine_stop(e);
	fetcher_free(e->fetcher); /* its last callbacks find the engine stopping */
	resolver_free(e->resolver); /* no lookup reports to the engine from here on */
	if (e->pool) {
		while ((pe = pool_next(e->pool, &it, pe)))
			if (pe->chk)
				eng_check_cancel(pe);
	}
	free_dns(e);
	queue_drain(&e->urgent);
	queue_drain(&e->ready);
	retry_drain(&e->retry);
	queue_drain(&e->doubt);
	queue_drain(&e->recheck);
	sched_free(&e->sched);
	pool_free(e->pool);
	eng_scan_free(e);
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
	eng_feeds_free(e);
	geo_free(e->geo);
	for (size_t i = 0; i < SNAP_EJECTED_KEEP; i++) {
		free(e->ejected[i].uri);
		free(e->ejected[i].why);
	}
	pthread_mutex_destroy(&e->cmd_lock);
	free(e);
}
