/* gateway: the listener, its thread and loop, and its limits.
 *
 * Accepts client connections (refusing those over max_connections or over
 * per_client from one address), keeps each one's deadline (the handshake
 * timeout until the tunnel is up, then the idle timeout) and frees it.
 * What a connection says and where it goes is gw_client.c, gw_upstream.c
 * and gw_relay.c.
 */
#include <errno.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "thread.h"
#include "gw_int.h"
#include "listen.h"
#include "log.h"


/* --- per-client counts --- */

static unsigned cc_hash(const uint8_t *a, size_t n)
{
	unsigned h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ a[i]) * 16777619u;
	return h % GW_PER_CLIENT_BUCKETS;
}

/* The count of sa's address, made if new; NULL when out of memory. */
static struct gw_client_count *cc_get(struct gateway *g, const struct sockaddr *sa)
{
	uint8_t addr[16] = {0};
	struct gw_client_count *cc;
	unsigned h;

	if (sa->sa_family == AF_INET6)
		memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	else if (sa->sa_family == AF_INET)
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	h = cc_hash(addr, sizeof(addr));
	for (cc = g->per_client_tab[h]; cc; cc = cc->next)
		if (cc->family == sa->sa_family && memcmp(cc->addr, addr, 16) == 0)
			return cc;
	cc = calloc(1, sizeof(*cc));
	if (!cc)
		return NULL;
	memcpy(cc->addr, addr, 16);
	cc->family = (uint8_t)sa->sa_family;
	cc->next = g->per_client_tab[h];
	g->per_client_tab[h] = cc;
	return cc;
}

static void cc_put(struct gateway *g, struct gw_client_count *cc)
{
	struct gw_client_count **pp;

	if (!cc || --cc->n)
		return;
	for (pp = &g->per_client_tab[cc_hash(cc->addr, 16)]; *pp; pp = &(*pp)->next) {
		if (*pp == cc) {
			*pp = cc->next;
			free(cc);
			return;
		}
	}
}

/* --- connections --- */

void gw_conn_outcome(struct gw_conn *c, enum gw_outcome o)
{
	if (c->outcome_said)
		return;
	c->outcome_said = true;
	gw_stats_outcome(o);
}

void gw_conn_hs_free(struct gw_conn *c)
{
	struct gw_hs *hs = c->hs;

	if (!hs)
		return;
	if (hs->dns)
		/* Its callback comes at once, and leaves c alone. */
		evdns_getaddrinfo_cancel(hs->dns);
	if (hs->head)
		evbuffer_free(hs->head);
	for (int i = 0; i < hs->ntried; i++)
		free(hs->tried[i]);
	free(hs);
	c->hs = NULL;
}

void gw_conn_free(struct gw_conn *c)
{
	struct gateway *g = c->gw;

	/* A connection that ends before it said how: the client went away
	 * or timed out before its tunnel was up. */
	gw_conn_outcome(c, GW_OUT_CLIENT_ERROR);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->timer)
		event_free(c->timer);
	/* Before the bufferevents close the sockets they watch. */
	for (int i = 0; i < 2; i++)
		if (c->pump[i])
			event_free(c->pump[i]);
	if (c->client)
		bufferevent_free(c->client);
	if (c->up)
		bufferevent_free(c->up);
	gw_conn_hs_free(c);
	gw_replay_free(c);
	cc_put(g, c->cc);
	g->nconns--;
	gw_stats_connection(-1);
	free(c);
}

static void close_when_flushed_cb(struct bufferevent *bev, void *arg)
{
	gw_conn_free(arg);
}

static void close_event_cb(struct bufferevent *bev, short what, void *arg)
{
	gw_conn_free(arg);
}

void gw_conn_close_after_flush(struct gw_conn *c)
{
	c->state = GW_ST_CLOSING;
	if (c->up) {
		bufferevent_free(c->up);
		c->up = NULL;
	}
	if (evbuffer_get_length(bufferevent_get_output(c->client)) == 0) {
		gw_conn_free(c);
		return;
	}
	bufferevent_disable(c->client, EV_READ);
	bufferevent_setcb(c->client, NULL, close_when_flushed_cb, close_event_cb, c);
}

/* The deadline: before the relay, the handshake's (the connection ends);
 * in the relay, idle checks (gw_relay.c keeps c->last). */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gw_conn *c = arg;
	struct gateway *g = c->gw;
	struct timeval now, idle, left;

	if (c->state != GW_ST_RELAY) {
		log_debug("gateway: handshake timeout");
		if (c->state == GW_ST_UPSTREAM) {
			/* The upstream in hand is not to blame for the
			 * whole time; the client learns that it timed out. */
			c->hs->up_err = ETIMEDOUT;
			snprintf(c->hs->why, sizeof(c->hs->why), "handshake timeout");
			gw_conn_outcome(c, GW_OUT_UPSTREAM_FAILED);
			gw_client_failed(c);
			return;
		}
		gw_conn_free(c);
		return;
	}
	event_base_gettimeofday_cached(g->base, &now);
	timersub(&now, &c->last, &idle);
	if (!timercmp(&idle, &g->idle_timeout, <)) {
		log_debug("gateway: idle timeout");
		gw_conn_free(c);
		return;
	}
	timersub(&g->idle_timeout, &idle, &left);
	evtimer_add(c->timer, &left);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	/* Before the relay: the client left or broke; nothing to tell it. */
	gw_conn_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct gateway *g = arg;
	struct gw_client_count *cc;
	struct gw_conn *c;

	if (g->nconns >= g->max_connections) {
		log_debug("gateway: over max_connections (%u), refused", g->max_connections);
		goto refuse;
	}
	cc = cc_get(g, sa);
	if (!cc)
		goto refuse;
	if (cc->n >= g->per_client) {
		log_debug("gateway: over per_client (%u), refused", g->per_client);
		cc->n++;
		cc_put(g, cc);
		goto refuse;
	}
	c = calloc(1, sizeof(*c));
	if (c && !(c->hs = calloc(1, sizeof(*c->hs)))) {
		free(c);
		c = NULL;
	}
	if (!c) {
		cc->n++;
		cc_put(g, cc);
		goto refuse;
	}
	cc->n++;
	c->cc = cc;
	c->gw = g;
	c->next = g->conns;
	if (g->conns)
		g->conns->prev = c;
	g->conns = c;
	g->nconns++;
	gw_stats_connection(1);
	c->client = bufferevent_socket_new(g->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(g->base, timer_cb, c);
	if (!c->client || !c->timer) {
		if (!c->client)
			close(fd);
		gw_conn_free(c);
		return;
	}
	/* A head larger than any request we take is read no further. */
	bufferevent_setwatermark(c->client, EV_READ, 0, GW_HTTP_HEAD_MAX + 1);
	bufferevent_setcb(c->client, gw_client_read_cb, NULL, client_event_cb, c);
	bufferevent_enable(c->client, EV_READ);
	evtimer_add(c->timer, &g->handshake_timeout);
	return;
refuse:
	gw_stats_outcome(GW_OUT_REFUSED_LIMIT);
	close(fd);
}

/* Out of file descriptors (or the like): stop accepting for a moment
 * instead of spinning on the error; the kernel's backlog holds them. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct gateway *g = arg;
	struct timeval pause = {0, 100000};

	log_debug("gateway: accept: %s", strerror(errno));
	for (size_t i = 0; i < g->nlisteners; i++)
		evconnlistener_disable(g->listeners[i]);
	evtimer_add(g->resume, &pause);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *g = arg;

	for (size_t i = 0; i < g->nlisteners; i++)
		evconnlistener_enable(g->listeners[i]);
}

/* --- start and stop --- */

static int listen_on(struct gateway *g, const char *addr, char *err, size_t errlen)
{
	struct evconnlistener *l;
	int fd = listen_open(addr, "[gateway]", err, errlen);

	if (fd < 0)
		return fd;
	l = evconnlistener_new(g->base, accept_cb, g, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!l) {
		close(fd);
		snprintf(err, errlen, "[gateway] listen %s: out of memory", addr);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	g->listeners[g->nlisteners++] = l;
	return 0;
}

/* The config's filter, its source names the gateway's own. */
static int copy_filter(struct gateway *g, const struct pick_filter *f)
{
	g->filter = *f;
	g->sources = calloc(PICK_SOURCES_MAX, sizeof(*g->sources));
	if (!g->sources)
		return -ENOMEM;
	for (uint32_t i = 0; i < f->nsources && i < PICK_SOURCES_MAX; i++) {
		g->sources[i] = strdup(f->sources[i]);
		if (!g->sources[i])
			return -ENOMEM;
		g->filter.sources[i] = g->sources[i];
	}
	return 0;
}

static void *thread_main(void *arg)
{
	struct gateway *g = arg;

	event_base_dispatch(g->base);
	return NULL;
}

struct gateway *gw_start(const struct gw_conf *conf, const struct gw_report *report, char *err,
			 size_t errlen)
{
	struct gateway *g = calloc(1, sizeof(*g));
	int rc;

	if (!g || evthread_use_pthreads() < 0) {
		snprintf(err, errlen, "[gateway]: %s",
			 g ? "libevent has no thread support" : "out of memory");
		free(g);
		return NULL;
	}
	g->report = *report;
	g->policy = conf->policy;
	if (copy_filter(g, &conf->filter) < 0) {
		snprintf(err, errlen, "[gateway]: out of memory");
		goto out_stop;
	}
	g->auth = gw_auth_new(conf->users, conf->nusers, err, errlen);
	if (!g->auth)
		goto out_stop;
	g->auth_required = conf->nusers > 0;
	g->retries = conf->retries < 0 ? 0 : conf->retries;
	if (g->retries > GW_TRIES_MAX - 1)
		g->retries = GW_TRIES_MAX - 1;
	g->max_connections =
	    gw_fd_share(conf->max_connections > 0 ? (uint32_t)conf->max_connections : 1);
	if ((int)g->max_connections < conf->max_connections)
		log_warn("[gateway] max_connections %d clamped to %u: the gateway takes at most "
			 "half the open files the daemon can spare, 2 a connection",
			 conf->max_connections, g->max_connections);
	g->per_client = conf->per_client > 0 ? (uint32_t)conf->per_client : g->max_connections;
	g->handshake_timeout.tv_sec =
	    conf->handshake_timeout_s > 0 ? conf->handshake_timeout_s : 10;
	g->idle_timeout.tv_sec = conf->idle_timeout_s > 0 ? conf->idle_timeout_s : 300;
	g->base = event_base_new();
	g->resume = g->base ? evtimer_new(g->base, resume_cb, g) : NULL;
	g->listeners = calloc(conf->nlisten ? conf->nlisten : 1, sizeof(*g->listeners));
	if (!g->resume || !g->listeners) {
		snprintf(err, errlen, "[gateway]: out of memory");
		goto out_stop;
	}
	for (size_t i = 0; i < conf->nlisten; i++)
		if (listen_on(g, conf->listen[i], err, errlen) < 0)
			goto out_stop;
	rc = thread_start(&g->tid, NULL, thread_main, g);
	if (rc) {
		snprintf(err, errlen, "[gateway]: cannot start its thread: %s", strerror(rc));
		goto out_stop;
	}
	g->running = true;
	gw_stats_set_enabled(true, g->max_connections);
	for (size_t i = 0; i < conf->nlisten; i++)
		log_info("gateway: listening on %s", conf->listen[i]);
	return g;
out_stop:
	gw_stop(g);
	return NULL;
}

void gw_stop(struct gateway *g)
{
	if (!g)
		return;
	if (g->running) {
		event_base_loopexit(g->base, NULL);
		pthread_join(g->tid, NULL);
	}
	while (g->conns)
		gw_conn_free(g->conns);
	for (size_t i = 0; i < g->nlisteners; i++)
		evconnlistener_free(g->listeners[i]);
	for (size_t i = 0; i < GW_PER_CLIENT_BUCKETS; i++) {
		while (g->per_client_tab[i]) {
			struct gw_client_count *cc = g->per_client_tab[i];

			g->per_client_tab[i] = cc->next;
			free(cc);
		}
	}
	if (g->dns)
		evdns_base_free(g->dns, 0);
	if (g->resume)
		event_free(g->resume);
	if (g->base)
		event_base_free(g->base);
	if (g->running)
		gw_stats_set_enabled(false, 0);
	gw_upstream_good_free(g);
	gw_auth_free(g->auth);
	for (size_t i = 0; g->sources && i < PICK_SOURCES_MAX; i++)
		free(g->sources[i]);
	free(g->sources);
	free(g->listeners);
	free(g);
}
