/* gw_upstream: reaching the client's target through one live upstream.
 *
 * Picks an upstream from the published snapshot (the policy, the filter of
 * the config and the user name, the session table for a session key),
 * never one this connection tried already, and reaches the target through
 * it without blocking: connect, then HTTP CONNECT (with the proxy's
 * credentials as Proxy-Authorization), SOCKS5 (RFC 1929 when the proxy has
 * credentials) or SOCKS4, with the project's one builder and parser of
 * each (src/socks.h, src/http_answer.h). Target names go to the upstream
 * as names (CONNECT host, SOCKS5 domain); SOCKS4 upstreams, which take
 * only IPv4 addresses, are left out for other targets, so no target is ever
 * resolved here (an upstream listed by host name is: evdns on the loop). Each upstream's outcome is reported (gw_report): failed
 * when it could not be reached, broke its protocol, refused its
 * credentials or timed out; nothing when it refused only the target (the
 * target may be down); ok when the tunnel is up. A failure before anything
 * was said to the client moves on to another upstream, up to retries more.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_int.h"
#include "http_proxy.h"
#include "log.h"

#define TUNNEL_PROTOS ((1u << PROXY_HTTPS) | (1u << PROXY_SOCKS4) | (1u << PROXY_SOCKS5))

/* --- the choice --- */

static bool tried(const struct gw_conn *c, const char *uri)
{
	for (int i = 0; i < c->hs->ntried; i++)
		if (strcmp(c->hs->tried[i], uri) == 0)
			return true;
	return false;
}

/* Is c's request an absolute-form one (GET http://...), which an HTTP
 * proxy can forward without a tunnel? */
static bool absolute_form(const struct gw_conn *c)
{
	return c->hs->head || c->hs->absolute;
}

/* c's filter narrowed to the upstreams that can carry its connection:
 * HTTP proxies that CONNECT, SOCKS5, SOCKS4 for an IPv4 target only, and
 * for an absolute-form request the HTTP proxies proven to forward it.
 * Asking for http means HTTP proxies either way. The fallback, when none
 * of those is left: the HTTP proxies only proven to forward, asked to
 * CONNECT (unproven; one that refuses is not blamed). */
static void tunnel_filter(const struct gw_conn *c, struct pick_filter *f, bool fallback)
{
	uint32_t can = TUNNEL_PROTOS;

	*f = c->hs->filter;
	if (c->hs->target.family != AF_INET)
		can &= ~(1u << PROXY_SOCKS4);
	if (absolute_form(c))
		can |= 1u << PROXY_HTTP;
	if (fallback)
		can = absolute_form(c) ? 0 : 1u << PROXY_HTTP;
	if (f->protos & (1u << PROXY_HTTP))
		f->protos |= 1u << PROXY_HTTPS;
	if (f->protos & (1u << PROXY_HTTPS))
		f->protos |= 1u << PROXY_HTTP;
	f->protos = f->protos ? f->protos & can : can;
	if (!f->protos)
		f->none = true;
}

/* Can live proxy i of s carry c's connection? */
static bool can_carry(const struct gw_conn *c, const struct snapshot *s, uint32_t i)
{
	struct pick_filter f;

	tunnel_filter(c, &f, false);
	return !f.none && pick_match(s, &f, i);
}

/* --- upstreams that worked lately --- */

static void good_drop(struct gateway *g, const char *uri)
{
	for (int i = 0; i < GW_GOOD_KEEP && g->good[i].uri; i++) {
		if (strcmp(g->good[i].uri, uri) != 0)
			continue;
		free(g->good[i].uri);
		memmove(&g->good[i], &g->good[i + 1], (GW_GOOD_KEEP - 1 - i) * sizeof(g->good[0]));
		g->good[GW_GOOD_KEEP - 1].uri = NULL;
		return;
	}
}

/* c's upstream carried its connection: the newest of the good ones. */
static void good_add(struct gateway *g, const struct gw_conn *c, const char *uri)
{
	char *copy;

	if (g->good[0].uri && strcmp(g->good[0].uri, uri) == 0) {
		g->good[0].gen = c->hs->up_gen;
		g->good[0].index = c->hs->up_index;
		return;
	}
	good_drop(g, uri);
	copy = strdup(uri);
	if (!copy)
		return;
	free(g->good[GW_GOOD_KEEP - 1].uri);
	memmove(&g->good[1], &g->good[0], (GW_GOOD_KEEP - 1) * sizeof(g->good[0]));
	g->good[0] = (struct gw_good){.uri = copy, .gen = c->hs->up_gen, .index = c->hs->up_index};
}

void gw_upstream_good_free(struct gateway *g)
{
	for (int i = 0; i < GW_GOOD_KEEP; i++) {
		free(g->good[i].uri);
		g->good[i].uri = NULL;
	}
}

/* Where uri is in s->live now: the index it had if s is the snapshot it
 * was seen in, else looked up (a scan of the live set). */
static int64_t live_index(const struct snapshot *s, const struct gw_good *gd)
{
	if (gd->gen == s->stats.generation) {
		if (gd->index < s->nlive && strcmp(s->live[gd->index].uri, gd->uri) == 0)
			return gd->index;
		return -1;
	}
	for (uint32_t k = 0; k < s->nlive; k++)
		if (strcmp(s->live[k].uri, gd->uri) == 0)
			return k;
	return -1;
}

/* For a retry: the upstream that worked most lately, still live in s, able
 * to carry c's tunnel under its filter, and not tried; else -1. At most
 * GW_GOOD_SCANS of them are looked up in a snapshot newer than theirs. */
#define GW_GOOD_SCANS 2
static int64_t choose_good(const struct gw_conn *c, const struct snapshot *s)
{
	const struct gateway *g = c->gw;
	int scans = 0;

	for (int i = 0; i < GW_GOOD_KEEP && g->good[i].uri; i++) {
		int64_t k;

		if (tried(c, g->good[i].uri))
			continue;
		if (g->good[i].gen != s->stats.generation && scans++ >= GW_GOOD_SCANS)
			break;
		k = live_index(s, &g->good[i]);
		if (k >= 0 && can_carry(c, s, (uint32_t)k))
			return k;
	}
	return -1;
}

/* By the policy, an upstream f matches that c has not tried, or -1. */
static int64_t choose_in(struct gw_conn *c, const struct snapshot *s, const struct pick_filter *f)
{
	uint32_t idx[GW_TRIES_MAX + 2], n, want = (uint32_t)c->hs->ntried + 2, best = UINT32_MAX;

	if (c->gw->policy == GW_POLICY_ROUND_ROBIN) {
		for (int k = 0; k <= c->hs->ntried; k++) {
			if (pick_next(s, f, 1, idx) == 0)
				return -1;
			if (!tried(c, s->live[idx[0]].uri))
				return idx[0];
		}
		return -1;
	}
	if (want > GW_TRIES_MAX + 2)
		want = GW_TRIES_MAX + 2;
	n = pick_random(s, f, want, idx);
	for (uint32_t k = 0; k < n; k++) {
		if (tried(c, s->live[idx[k]].uri))
			continue;
		if (c->gw->policy != GW_POLICY_FASTEST)
			return idx[k];
		/* fastest: the better of two random ones, so the fastest
		 * gets more of the load but not all of it. */
		if (best == UINT32_MAX) {
			best = idx[k];
			continue;
		}
		if (s->live[idx[k]].latency_ms < s->live[best].latency_ms)
			best = idx[k];
		break;
	}
	return best == UINT32_MAX ? -1 : (int64_t)best;
}

/* The index into s->live of the upstream to try next, or -1. */
static int64_t choose(struct gw_conn *c, const struct snapshot *s)
{
	struct pick_filter f;
	int64_t k;

	/* The session's proxy, as the tree's session/KEY gives it, while it
	 * can carry this tunnel and was not tried; else a session of the
	 * tunnel filter, so the key still sticks. */
	if (c->hs->opts.session_len) {
		const char *key = c->hs->opts.session;
		size_t len = c->hs->opts.session_len;
		uint32_t i;

		if (session_pick(s, &c->hs->filter, key, len, &i) == 0 && can_carry(c, s, i) &&
		    !tried(c, s->live[i].uri))
			return i;
		tunnel_filter(c, &f, false);
		if (!f.none && session_pick(s, &f, key, len, &i) == 0 && !tried(c, s->live[i].uri))
			return i;
	}
	/* A retry: what worked a moment ago before the unknown. */
	if (c->hs->ntried > 0) {
		k = choose_good(c, s);
		if (k >= 0)
			return k;
	}
	tunnel_filter(c, &f, false);
	k = f.none ? -1 : choose_in(c, s, &f);
	if (k >= 0)
		return k;
	tunnel_filter(c, &f, true);
	return f.none ? -1 : choose_in(c, s, &f);
}

/* --- failures --- */

static void attempt(struct gw_conn *c);

static const char *cur_uri(const struct gw_conn *c)
{
	return c->hs->ntried ? c->hs->tried[c->hs->ntried - 1] : "";
}

/* The current upstream failed: reported (blame) or not, then the next. */
static void up_failed(struct gw_conn *c, bool blame, int err, const char *why)
{
	/* What the client may read says why, never which upstream (its URI
	 * may hold credentials); the log names it. */
	snprintf(c->hs->why, sizeof(c->hs->why), "%s", why);
	c->hs->up_err = err;
	/* Named without its credentials: logs travel further than the pool. */
	log_debug("gateway: upstream %s://%s%s%s:%u: %s",
		  proxy_scheme_name(c->hs->upa.proto, c->hs->upa.remote_dns),
		  c->hs->upa.ipv6 ? "[" : "", c->hs->upa.host, c->hs->upa.ipv6 ? "]" : "",
		  c->hs->upa.port, why);
	if (blame) {
		good_drop(c->gw, cur_uri(c));
		if (c->gw->report.report)
			c->gw->report.report(c->gw->report.arg, cur_uri(c), false, why);
	}
	if (c->up) {
		bufferevent_free(c->up);
		c->up = NULL;
	}
	attempt(c);
}

/* --- the handshake --- */

static void up_send(struct gw_conn *c, const void *p, int n)
{
	if (n < 0) {
		up_failed(c, false, EINVAL, "cannot say the target in its protocol");
		return;
	}
	bufferevent_write(c->up, p, (size_t)n);
}

/* The upstream's credentials as a Proxy-Authorization line, when it has
 * some (src/http_proxy.h: as the checker writes it). */
static void add_proxy_auth(const struct gw_conn *c, struct evbuffer *out)
{
	const char *u = c->hs->upa.user, *p = c->hs->upa.pass;
	size_t n = http_proxy_auth_size(u, p);
	struct evbuffer_iovec v;

	if (n && evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) == 1) {
		v.iov_len = http_proxy_auth_write(v.iov_base, u, p);
		evbuffer_commit_space(out, &v, 1);
	}
}

/* The CONNECT to the client's target, as the checker's (src/http_proxy.h). */
static void send_http_connect(struct gw_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->up);
	const char *h = c->hs->target.host, *u = c->hs->upa.user, *p = c->hs->upa.pass;
	struct evbuffer_iovec v;

	if (evbuffer_reserve_space(out, (ev_ssize_t)http_connect_size(h, u, p), &v, 1) == 1) {
		v.iov_len = http_connect_write(v.iov_base, h, c->hs->target.port, u, p);
		evbuffer_commit_space(out, &v, 1);
	}
	chk_answer_init(&c->hs->ans, NULL, 0, NULL, 0, true);
	c->hs->up_step = GW_UP_HTTP;
}

static void send_socks5_request(struct gw_conn *c)
{
	uint8_t msg[CHK_SOCKS_MSG_MAX];
	struct sockaddr_storage ss = {0};
	const struct sockaddr *sa = NULL;

	if (c->hs->target.family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, c->hs->target.ip, 4);
		sa = (struct sockaddr *)a;
	} else if (c->hs->target.family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, c->hs->target.ip, 16);
		sa = (struct sockaddr *)a;
	}
	chk_socks_reply_init(&c->hs->sr, CHK_SOCKS5_REPLY);
	c->hs->up_step = GW_UP_S5_REPLY;
	up_send(c, msg,
		chk_socks5_request(msg, sizeof(msg), sa, sa ? NULL : c->hs->target.host,
				   c->hs->target.port));
}

static void tunnel_up(struct gw_conn *c);

static void connected(struct gw_conn *c)
{
	uint8_t msg[CHK_SOCKS_MSG_MAX];

	switch (c->hs->upa.proto) {
	case PROXY_SOCKS5:
		chk_socks_reply_init(&c->hs->sr, c->hs->upa.user[0] ? CHK_SOCKS5_METHOD_AUTH
								    : CHK_SOCKS5_METHOD);
		c->hs->up_step = GW_UP_S5_METHOD;
		up_send(c, msg, chk_socks5_greeting(msg, sizeof(msg), c->hs->upa.user[0] != '\0'));
		break;
	case PROXY_SOCKS4:
		chk_socks_reply_init(&c->hs->sr, CHK_SOCKS4_REPLY);
		c->hs->up_step = GW_UP_S4_REPLY;
		up_send(c, msg,
			chk_socks4_request(msg, sizeof(msg), c->hs->target.ip, NULL,
					   c->hs->target.port,
					   c->hs->upa.user[0] ? c->hs->upa.user : NULL));
		break;
	default:
		if (c->hs->forward)
			tunnel_up(c);
		else
			send_http_connect(c);
		break;
	}
}

/* Keeps what a tunnel made again needs (gw_replay) out of c's handshake
 * state, taking over its list of upstreams tried; false when out of memory
 * (the tunnel then simply cannot be made again). */
static bool replay_keep(struct gw_conn *c)
{
	struct gw_hs *hs = c->hs;
	struct gw_replay *r = c->replay;
	size_t names = 0;
	char *p;

	if (!r && !(r = c->replay = calloc(1, sizeof(*r))))
		return false;
	if (!r->host) {
		r->host = strdup(hs->target.host);
		r->port = hs->target.port;
		r->family = (uint8_t)hs->target.family;
		memcpy(r->ip, hs->target.ip, sizeof(r->ip));
		r->filter = hs->filter;
		r->absolute = absolute_form(c);
		for (uint32_t i = 0; i < r->filter.nsources; i++)
			names += strlen(r->filter.sources[i]) + 1;
		r->names = names ? malloc(names) : NULL;
		p = r->names;
		for (uint32_t i = 0; p && i < r->filter.nsources; i++) {
			size_t n = strlen(r->filter.sources[i]) + 1;

			memcpy(p, r->filter.sources[i], n);
			r->filter.sources[i] = p;
			p += n;
		}
		if (hs->opts.session_len)
			r->session = strndup(hs->opts.session, hs->opts.session_len);
		if (!r->host || (names && !r->names) || (hs->opts.session_len && !r->session))
			return false;
	}
	free(r->tried);
	r->tried = malloc((size_t)hs->ntried * sizeof(*r->tried));
	if (!r->tried)
		return false;
	memcpy(r->tried, hs->tried, (size_t)hs->ntried * sizeof(*r->tried));
	r->ntried = hs->ntried;
	hs->ntried = 0;
	return true;
}

void gw_replay_free(struct gw_conn *c)
{
	struct gw_replay *r = c->replay;

	if (!r)
		return;
	for (int i = 0; i < r->ntried; i++)
		free(r->tried[i]);
	free(r->tried);
	free(r->host);
	free(r->names);
	free(r->session);
	if (r->sent)
		evbuffer_free(r->sent);
	free(r);
	c->replay = NULL;
}

/* What the client sent first (head: an absolute-form request rewritten to
 * origin form, or the bytes kept for a replay) to the upstream, left in
 * head. Through a tunnel as it is; to an HTTP proxy that forwards, with
 * the request line in absolute form again and the upstream's own
 * credentials. */
static void send_head(struct gw_conn *c, struct evbuffer *head)
{
	struct evbuffer *out = bufferevent_get_output(c->up);
	size_t n = evbuffer_get_length(head);
	const char *p = (const char *)evbuffer_pullup(head, (ssize_t)n);
	const char *sp = memchr(p, ' ', n), *eol = memmem(p, n, "\r\n", 2);
	const struct gw_target *t = &c->hs->target;
	bool v6 = t->family == AF_INET6;

	if (!c->hs->forward || !sp || !eol || sp > eol || sp[1] != '/') {
		evbuffer_add(out, p, n);
		return;
	}
	evbuffer_add(out, p, (size_t)(sp - p) + 1);
	evbuffer_add_printf(out, "http://%s%s%s:%u", v6 ? "[" : "", t->host, v6 ? "]" : "",
			    t->port);
	evbuffer_add(out, sp + 1, (size_t)(eol - sp - 1) + 2);
	add_proxy_auth(c, out);
	evbuffer_add(out, eol + 2, n - (size_t)(eol + 2 - p));
}

/* The tunnel is up: the upstream worked, the client is told (once: not
 * when the tunnel is made again), the relay takes over. */
static void tunnel_up(struct gw_conn *c)
{
	struct timespec now;
	int64_t us;
	bool again = c->hs->again, keep = true;

	if (c->gw->report.report)
		c->gw->report.report(c->gw->report.arg, cur_uri(c), true, "");
	good_add(c->gw, c, cur_uri(c));
	bufferevent_set_timeouts(c->up, NULL, NULL);
	if (!again) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		us = (int64_t)(now.tv_sec - c->hs->t0.tv_sec) * 1000000 +
		     (now.tv_nsec - c->hs->t0.tv_nsec) / 1000;
		gw_stats_handshake(us > 0 ? (uint64_t)us : 0);
		gw_conn_outcome(c, GW_OUT_OK);
		gw_client_granted(c);
	}
	if (c->hs->head) {
		/* Also kept: it is the first thing a tunnel made again sends. */
		keep = (c->replay = calloc(1, sizeof(*c->replay))) &&
		       (c->replay->sent = evbuffer_new()) &&
		       evbuffer_add(c->replay->sent, evbuffer_pullup(c->hs->head, -1),
				    evbuffer_get_length(c->hs->head)) == 0 &&
		       gw_replay_allowed(c->replay->sent);
		send_head(c, c->hs->head);
	} else if (again && c->replay->sent) {
		send_head(c, c->replay->sent);
	}
	/* Without memory for it the tunnel just is not made again. */
	if (!keep || !replay_keep(c))
		gw_replay_free(c);
	gw_conn_hs_free(c);
	gw_relay_start(c);
}

void gw_upstream_again(struct gw_conn *c)
{
	struct gw_replay *r = c->replay;
	struct gw_hs *hs = calloc(1, sizeof(*hs));
	int keep = GW_TRIES_MAX - 1 - c->gw->retries, skip;

	gw_stats_replay();
	r->agains++;
	/* The old upstream's read event goes with its socket; the client's
	 * waits (what it sends meanwhile stays in its socket). */
	event_free(c->pump[1]);
	c->pump[1] = NULL;
	event_del(c->pump[0]);
	bufferevent_free(c->up);
	c->up = NULL;
	c->up_eof = c->up_shut = false;
	if (!hs) {
		gw_conn_free(c);
		return;
	}
	c->hs = hs;
	c->state = GW_ST_UPSTREAM;
	hs->again = true;
	hs->absolute = r->absolute;
	snprintf(hs->target.host, sizeof(hs->target.host), "%s", r->host);
	hs->target.port = r->port;
	hs->target.family = r->family;
	memcpy(hs->target.ip, r->ip, sizeof(r->ip));
	hs->filter = r->filter;
	if (r->session) {
		hs->opts.session_len = strlen(r->session);
		memcpy(hs->opts.session, r->session, hs->opts.session_len + 1);
	}
	/* The upstreams tried are not tried again; when there were more
	 * than leave room for this round, the oldest are forgotten. */
	skip = r->ntried > keep ? r->ntried - keep : 0;
	for (int i = 0; i < r->ntried; i++) {
		if (i < skip)
			free(r->tried[i]);
		else
			hs->tried[hs->ntried++] = r->tried[i];
	}
	r->ntried = 0;
	hs->first_try = hs->ntried;
	snprintf(hs->why, sizeof(hs->why), "closed before answering");
	clock_gettime(CLOCK_MONOTONIC, &hs->t0);
	bufferevent_setcb(c->client, NULL, NULL, NULL, c);
	evtimer_add(c->timer, &c->gw->handshake_timeout);
	attempt(c);
}

/* A SOCKS reply is whole: what it means for the step it answered. */
static void socks_done(struct gw_conn *c)
{
	uint8_t msg[CHK_SOCKS_MSG_MAX];

	if (c->hs->sr.result == CHK_PROTO_ERR) {
		up_failed(c, true, EPROTO, "broke the SOCKS protocol");
		return;
	}
	switch (c->hs->up_step) {
	case GW_UP_S5_METHOD:
		if (c->hs->sr.result != CHK_OK) {
			up_failed(c, true, EACCES, "refused our SOCKS5 methods");
		} else if (c->hs->sr.code == 2) {
			chk_socks_reply_init(&c->hs->sr, CHK_SOCKS5_AUTH);
			c->hs->up_step = GW_UP_S5_AUTH;
			up_send(
			    c, msg,
			    chk_socks5_auth(msg, sizeof(msg), c->hs->upa.user, c->hs->upa.pass));
		} else {
			send_socks5_request(c);
		}
		return;
	case GW_UP_S5_AUTH:
		if (c->hs->sr.result != CHK_OK)
			up_failed(c, true, EACCES, "refused our credentials");
		else
			send_socks5_request(c);
		return;
	default:
		break;
	}
	if (c->hs->sr.result == CHK_OK) {
		tunnel_up(c);
		return;
	}
	/* Refused the target only: the target's fault as far as we know. */
	if (c->hs->up_step == GW_UP_S5_REPLY)
		c->hs->up_socks_code = c->hs->sr.code;
	up_failed(c, false, ECONNREFUSED, "could not reach the target");
}

static void http_done(struct gw_conn *c)
{
	char why[64];

	if (c->hs->ans.result != CHK_OK) {
		up_failed(c, true, EPROTO, "gave no valid CONNECT reply");
		return;
	}
	if (c->hs->ans.status >= 200 && c->hs->ans.status <= 299) {
		tunnel_up(c);
		return;
	}
	if (c->hs->ans.status == 407) {
		up_failed(c, true, EACCES, "CONNECT refused our credentials (407)");
		return;
	}
	snprintf(why, sizeof(why), "CONNECT answered %u", c->hs->ans.status);
	up_failed(c, false, ECONNREFUSED, why);
}

/* Feeds the reply being waited for. Once it is whole, c is handed on
 * (relay, next upstream, or closed and freed): nothing more here. */
static void up_read_cb(struct bufferevent *bev, void *arg)
{
	struct gw_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n, used;

	while ((n = evbuffer_get_length(in)) > 0) {
		const uint8_t *p = evbuffer_pullup(in, n < 4096 ? (ssize_t)n : 4096);

		if (n > 4096)
			n = 4096;
		if (c->hs->up_step == GW_UP_HTTP) {
			used = chk_answer_feed(&c->hs->ans, p, n);
			evbuffer_drain(in, used);
			if (c->hs->ans.done) {
				http_done(c);
				return;
			}
		} else {
			used = chk_socks_reply_feed(&c->hs->sr, p, n);
			evbuffer_drain(in, used);
			if (c->hs->sr.done) {
				socks_done(c);
				return;
			}
		}
		if (used == 0)
			return;
	}
}

/* Has the upstream been asked for the client's target (the CONNECT or
 * SOCKS request is out, its reply awaited)? From then on a silence or a
 * close may be the target's doing (a host that never answers, a port that
 * drops the connection): the attempt fails and another upstream is tried,
 * but the upstream is not reported, so no user's target can eject a
 * working proxy. Its re-check tells whether it really is dead. */
static bool target_asked(const struct gw_conn *c)
{
	switch (c->hs->up_step) {
	case GW_UP_HTTP:
	case GW_UP_S5_REPLY:
	case GW_UP_S4_REPLY:
		return true;
	default:
		return false;
	}
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct gw_conn *c = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (what & BEV_EVENT_CONNECTED) {
		connected(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		up_failed(c, !target_asked(c), ETIMEDOUT, "timed out");
	else if (what & BEV_EVENT_EOF)
		up_failed(c, !target_asked(c), ECONNRESET, "closed during the handshake");
	else
		up_failed(c, !target_asked(c), err ? err : ECONNRESET,
			  strerror(err ? err : ECONNRESET));
}

/* --- attempts --- */

/* Takes the next upstream for c into c->hs->upa (host "" when its URI does
 * not parse); false when there is none left to try. */
static bool next_upstream(struct gw_conn *c)
{
	struct snapshot *s = snap_current();
	int64_t i = choose(c, s);
	bool ok = false;

	if (i >= 0 && (c->hs->tried[c->hs->ntried] = strdup(s->live[i].uri))) {
		const char *uri = c->hs->tried[c->hs->ntried++];

		ok = true;
		c->hs->up_gen = s->stats.generation;
		c->hs->up_index = (uint32_t)i;
		if (proxy_parse_line(uri, strlen(uri), PROXY_HTTP, &c->hs->upa) != PROXY_LINE_OK) {
			snprintf(c->hs->why, sizeof(c->hs->why), "an upstream not a proxy URI");
			c->hs->upa.host[0] = '\0';
		}
		/* An HTTP proxy proven to forward takes an absolute-form
		 * request as it is: no tunnel, one round trip less. */
		c->hs->forward = absolute_form(c) && c->hs->upa.proto == PROXY_HTTP &&
				 (s->live[i].folders & (1u << PROXY_HTTP));
	}
	snap_unref(s);
	return ok;
}

/* Reaches upstream address sa for c: the connect, with the upstream's
 * share of the handshake time. */
static void up_connect(struct gw_conn *c, const struct sockaddr *sa, socklen_t len)
{
	struct gateway *g = c->gw;
	struct timeval each;

	c->hs->up_socks_code = 0;
	c->up = bufferevent_socket_new(g->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->up) {
		up_failed(c, false, ENOMEM, "out of memory");
		return;
	}
	/* Each upstream gets its share of the handshake time, so a silent
	 * one leaves time for the next. */
	each.tv_sec = g->handshake_timeout.tv_sec / (g->retries + 1);
	each.tv_usec = 0;
	if (each.tv_sec < 1)
		each.tv_sec = 1;
	bufferevent_set_timeouts(c->up, &each, &each);
	bufferevent_setcb(c->up, up_read_cb, NULL, up_event_cb, c);
	bufferevent_enable(c->up, EV_READ);
	c->hs->up_step = GW_UP_CONNECT;
	if (bufferevent_socket_connect(c->up, sa, (int)len) < 0) {
		int err = EVUTIL_SOCKET_ERROR();

		/* Our side's shortage (no fds, no ports) is not the proxy's. */
		up_failed(c, err == ECONNREFUSED, err ? err : EIO, strerror(err ? err : EIO));
	}
}

/* The address of an upstream given by name: its first IPv4 address (any
 * protocol reaches it), else its first IPv6 one. A name that does not
 * resolve here is not the upstream's fault (the checker reached it): the
 * next upstream is tried, nothing reported. */
static void up_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	const struct evutil_addrinfo *ai, *v6 = NULL, *v4 = NULL;
	struct gw_conn *c = arg;
	struct sockaddr_storage ss;

	if (result == EVUTIL_EAI_CANCEL)
		goto out; /* c is being freed */
	c->hs->dns = NULL;
	for (ai = result == 0 ? res : NULL; ai && !v4; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			v4 = ai;
		else if (ai->ai_family == AF_INET6 && !v6)
			v6 = ai;
	}
	ai = v4 ? v4 : v6;
	if (!ai || ai->ai_addrlen > sizeof(ss)) {
		up_failed(c, false, EHOSTUNREACH, "its name did not resolve here");
		goto out;
	}
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(c->hs->upa.port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->hs->upa.port);
	up_connect(c, (struct sockaddr *)&ss, (socklen_t)ai->ai_addrlen);
out:
	if (res)
		evutil_freeaddrinfo(res);
}

/* Looks the current upstream's name up; the connect follows. Nothing of c
 * may be touched after: the answer can come before this returns. */
static void up_resolve(struct gw_conn *c)
{
	struct gateway *g = c->gw;
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct evdns_getaddrinfo_request *req;

	if (!g->dns && !g->dns_failed) {
		/* /etc/resolv.conf's servers and /etc/hosts, as the checker. */
		g->dns = evdns_base_new(g->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
							  EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		g->dns_failed = !g->dns;
		if (!g->dns)
			log_warn("gateway: cannot set up a DNS resolver: upstreams given by name "
				 "are not used");
	}
	if (!g->dns) {
		up_failed(c, false, EHOSTUNREACH, "no resolver for its name");
		return;
	}
	req = evdns_getaddrinfo(g->dns, c->hs->upa.host, NULL, &hints, up_resolved, c);
	if (req)
		c->hs->dns = req;
}

static void attempt(struct gw_conn *c)
{
	struct gateway *g = c->gw;
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	for (;;) {
		if (c->hs->ntried - c->hs->first_try > g->retries ||
		    c->hs->ntried >= GW_TRIES_MAX) {
			gw_conn_outcome(c, GW_OUT_UPSTREAM_FAILED);
			gw_client_failed(c);
			return;
		}
		if (c->hs->ntried)
			gw_stats_retry();
		if (!next_upstream(c)) {
			if (!c->hs->ntried)
				snprintf(c->hs->why, sizeof(c->hs->why), "no live upstream");
			gw_conn_outcome(c, GW_OUT_UPSTREAM_FAILED);
			gw_client_failed(c);
			return;
		}
		if (c->hs->upa.host[0] != '\0')
			break;
	}
	if (inet_pton(AF_INET, c->hs->upa.host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(c->hs->upa.port);
		up_connect(c, (struct sockaddr *)in, sizeof(*in));
	} else if (inet_pton(AF_INET6, c->hs->upa.host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(c->hs->upa.port);
		up_connect(c, (struct sockaddr *)in6, sizeof(*in6));
	} else {
		up_resolve(c);
	}
}

void gw_upstream_start(struct gw_conn *c)
{
	attempt(c);
}
