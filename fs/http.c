/* http: the HTTP front's sockets, threads and connections, and the gate
 * every request passes (path, rate limit, token); see http.h.
 *
 * Each thread runs one event_base with one evhttp, all accepting on the
 * same listening sockets (each loop on a dup of its own, since evhttp
 * closes what it accepts on): whichever loop accepts a connection serves
 * it to the end. (Per-thread SO_REUSEPORT sockets measured no better with
 * wrk on two cores, and would let any process of the same user take a
 * share of the connections.) evhttp sets the header and body limits and the idle timeout;
 * what it lacks this file adds through the bufferevent it asks us for
 * (struct http_conn, told by evhttp when the connection is freed):
 * connections are counted (over max_connections: closed at once), and
 * the first bytes of each request start a deadline (slowloris: a request
 * not whole within request_timeout_s is closed).
 *
 * The gate, in order: the path (decoded; aliases), the client's token
 * bucket (429), the token (403 for control without one set, 401 without
 * the right one), the path table (404), the method (405); then the reader
 * paths (http_serve.c) or the control worker (http_control.c).
 */
#include "http.h"
#include "thread.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "http_int.h"
#include "http_query.h"
#include "listen.h"
#include "log.h"
#include "ratelimit.h"

/* Most bytes one write to a client may carry. */
#define HTTP_MAX_SINGLE_WRITE (1024 * 1024)

#define HTTP_HEADERS_MAX (16 * 1024)
#define HTTP_PATH_MAX 1024
/* Client addresses whose buckets are kept at most. */
#define HTTP_CLIENTS_MAX 65536

/* One accepted connection. Lives on its loop's thread only; freed when
 * evhttp closes the connection (conn_closed_cb). */
struct http_conn {
	struct http_thread *t;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *in_cb; /* on bev's input: a request's first bytes */
	/* Runs once at the next turn (evhttp has set the connection up by
	 * then: refuse it or arm the first deadline), then serves as the
	 * request deadline. */
	struct event *ev;
	int fd;
	bool started;
	bool refused;	 /* over max_connections: shut at its first turn */
	bool in_request; /* bytes of a request came; its deadline runs */
};

/* Connections by socket, so a request finds its connection (to stop its
 * deadline). Each entry is set and cleared by the thread serving that
 * socket; a socket number is reused only once closed, after its entry was
 * cleared, so entries never collide. Sized once at start. */
static _Atomic(struct http_conn *) *conn_by_fd;
static size_t conn_slots;

uint64_t http_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- answers --- */

void http_send(struct evhttp_request *req, int code, const char *ctype, const char *body,
	       size_t len, enum http_class c, uint64_t t0)
{
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
	char num[24];

	if (ctype && code != 304)
		evhttp_add_header(oh, "Content-Type", ctype);
	/* evhttp gives no length for HEAD, and would send the body. */
	if (head && code != 304) {
		snprintf(num, sizeof(num), "%zu", len);
		evhttp_add_header(oh, "Content-Length", num);
	} else if (len && code != 304) {
		evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	}
	http_done(req, c, code, t0); /* before: a request whose client left is freed by the send */
	evhttp_send_reply(req, code, NULL, NULL);
}

void http_done(struct evhttp_request *req, enum http_class c, int code, uint64_t t0)
{
	uint64_t us = http_now_us() - t0;

	http_stats_request(c, code, us);
	log_debug("http: %s %d %s %.3f ms", http_class_name(c), code,
		  evhttp_request_get_uri(req) ? evhttp_request_get_uri(req) : "?",
		  (double)us / 1000.0);
}

void http_send_text(struct evhttp_request *req, int code, const char *text, enum http_class c,
		    uint64_t t0)
{
	char buf[512];
	int n = *text ? snprintf(buf, sizeof(buf), "%s\n", text) : 0;

	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	http_send(req, code, "text/plain; charset=utf-8", buf, (size_t)n, c, t0);
}

/* --- connections --- */

static void conn_slot_set(struct http_conn *c)
{
	if (c->fd >= 0 && (size_t)c->fd < conn_slots)
		atomic_store(&conn_by_fd[c->fd], c);
}

static void conn_slot_clear(struct http_conn *c)
{
	struct http_conn *expected = c;

	if (c->fd >= 0 && (size_t)c->fd < conn_slots)
		atomic_compare_exchange_strong(&conn_by_fd[c->fd], &expected, NULL);
}

/* Closes the connection from our side: evhttp reads the end of the
 * stream and frees it the usual way. */
static void conn_shut(struct http_conn *c)
{
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

static void conn_arm(struct http_conn *c)
{
	c->in_request = true;
	event_add(c->ev, &c->t->front->request_timeout);
}

/* evhttp frees the connection: the last we hear of it. */
static void conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct http_conn *c = arg;

	conn_slot_clear(c);
	evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
	event_free(c->ev);
	atomic_fetch_sub(&c->t->front->conns, 1);
	http_stats_connection(-1);
	free(c);
}

/* A request's first bytes start its deadline. */
static void conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_conn *c = arg;

	if (info->n_added && c->started && !c->in_request && !c->refused)
		conn_arm(c);
}

static void conn_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	void *evcon = NULL;
	int one = 1;

	if (c->started) {
		/* The deadline: the request is not whole in time. */
		conn_shut(c);
		return;
	}
	c->started = true;
	c->fd = bufferevent_getfd(c->bev);
	/* An answer's last segment goes at once, not after the client's
	 * delayed ACK (40 ms on Linux for a list larger than one write). */
	if (c->fd >= 0)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* evhttp made its connection on our bufferevent, its callbacks' arg. */
	bufferevent_getcb(c->bev, &rcb, &wcb, &ecb, &evcon);
	if (evcon)
		evhttp_connection_set_closecb(evcon, conn_closed_cb, c);
	if (c->refused) {
		http_stats_refused();
		conn_shut(c);
		return;
	}
	conn_slot_set(c);
	conn_arm(c);
}

/* evhttp's bevcb: the bufferevent of a new connection, counted. NULL (out
 * of memory) lets evhttp make a plain one. */
static struct bufferevent *conn_new_cb(struct event_base *base, void *arg)
{
	struct http_thread *t = arg;
	struct http_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->t = t;
	c->fd = -1;
	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	/* A list goes out in one writev, not in libevent's 16 KiB steps
	 * (a loop turn each): /live.txt of 1,000 proxies is 28 KB. */
	if (c->bev)
		bufferevent_set_max_single_write(c->bev, HTTP_MAX_SINGLE_WRITE);
	c->ev = event_new(base, -1, 0, conn_ev_cb, c);
	if (c->bev)
		c->in_cb = evbuffer_add_cb(bufferevent_get_input(c->bev), conn_input_cb, c);
	if (!c->in_cb || !c->ev) {
		if (c->bev)
			bufferevent_free(c->bev);
		if (c->ev)
			event_free(c->ev);
		free(c);
		return NULL;
	}
	http_stats_connection(1);
	if ((uint32_t)atomic_fetch_add(&t->front->conns, 1) >= t->front->max_connections)
		c->refused = true;
	event_active(c->ev, EV_TIMEOUT, 1);
	return c->bev;
}

/* A whole request came: its deadline stops (and the next one's starts if
 * its bytes are here already). */
static void conn_request_read(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	int fd = bev ? bufferevent_getfd(bev) : -1;
	struct http_conn *c;

	if (fd < 0 || (size_t)fd >= conn_slots)
		return;
	c = atomic_load(&conn_by_fd[fd]);
	if (!c || !c->started)
		return;
	event_del(c->ev);
	c->in_request = false;
	if (evbuffer_get_length(bufferevent_get_input(bev)))
		conn_arm(c);
}

/* --- the gate --- */

/* Equal, in a time that does not tell where they differ (the length
 * aside). */
static bool token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char d = 0;

	if (alen != blen)
		return false;
	for (size_t i = 0; i < blen; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* Does the request carry "Authorization: Bearer TOKEN"? */
static bool token_given(const struct http_front *h, struct evhttp_request *req)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	if (!v || strncasecmp(v, "Bearer ", 7) != 0)
		return false;
	v += 7;
	while (*v == ' ')
		v++;
	return token_equal(v, strlen(v), h->token, h->token_len);
}

/* 0 when the client's bucket had a token; else the 429 was sent. */
static int gate_rate(struct http_front *h, struct evhttp_request *req, enum http_class c,
		     uint64_t t0)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const struct sockaddr *sa = evcon ? evhttp_connection_get_addr(evcon) : NULL;
	unsigned char key[RATELIMIT_KEY_MAX] = {0};
	size_t len = 1;
	uint32_t wait;
	char num[16];

	if (!h->rl)
		return 0;
	if (sa && sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		len = 5;
	} else if (sa && sa->sa_family == AF_INET6) {
		key[0] = 6;
		memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		len = 17;
	}
	wait = ratelimit_take(h->rl, key, len, http_now_us() / 1000);
	if (!wait)
		return 0;
	snprintf(num, sizeof(num), "%u", wait);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", num);
	http_stats_rate_limited();
	http_send_text(req, 429, "too many requests: rate limited", c, t0);
	return -EAGAIN;
}

/* 0 when the token rules let the request in; else the 401 or 403 was
 * sent. */
static int gate_token(struct http_front *h, struct evhttp_request *req, bool control,
		      enum http_class c, uint64_t t0)
{
	if (!control && !h->private_)
		return 0;
	if (!h->token) {
		http_send_text(req, 403,
			       "forbidden: control over HTTP needs a token ([http] token)", c, t0);
		return -EACCES;
	}
	if (token_given(h, req))
		return 0;
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
			  "Bearer realm=\"proxyfs\"");
	http_send_text(req, 401, "unauthorized: send Authorization: Bearer TOKEN", c, t0);
	return -EACCES;
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct http_thread *t = arg;
	struct http_front *h = t->front;
	uint64_t t0 = http_now_us();
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct tree_node node;
	enum http_class c = HTTP_CLASS_OTHER;
	char path[HTTP_PATH_MAX];
	bool found, control;

	conn_request_read(req);
	if (!uri || http_path_decode(evhttp_uri_get_path(uri), path, sizeof(path)) < 0) {
		http_send_text(req, 400, "bad request: malformed path", c, t0);
		return;
	}
	http_path_alias(path, sizeof(path));
	found = tree_lookup(path, &node);
	control = found && tree_is_control(&node);
	if (found)
		c = control ? HTTP_CLASS_CONTROL : http_class_of(&node);
	if (gate_rate(h, req, c, t0) < 0 || gate_token(h, req, control, c, t0) < 0)
		return;
	if (!found) {
		http_send_text(req, 404, "no such path", c, t0);
		return;
	}
	if (control != (cmd == EVHTTP_REQ_POST)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
				  control ? "POST" : "GET, HEAD");
		http_send_text(req, 405,
			       control ? "method not allowed: POST the lines"
				       : "method not allowed: GET or HEAD",
			       c, t0);
		return;
	}
	if (control)
		http_control_submit(t, req, tree_control_kind(&node), t0);
	else
		http_serve_reader(req, &node, path, evhttp_uri_get_query(uri), c, t0);
}

/* --- sockets and threads --- */

static void *thread_main(void *arg)
{
	struct http_thread *t = arg;

	event_base_dispatch(t->base);
	/* Answers the worker posted just before the stop. */
	event_base_loop(t->base, EVLOOP_NONBLOCK);
	return NULL;
}

static int thread_setup(struct http_front *h, struct http_thread *t, const struct cfg_http *conf)
{
	t->front = h;
	t->base = event_base_new();
	t->http = t->base ? evhttp_new(t->base) : NULL;
	if (!t->http)
		return -ENOMEM;
	evhttp_set_timeout(t->http, conf->idle_timeout_s);
	evhttp_set_max_headers_size(t->http, HTTP_HEADERS_MAX);
	evhttp_set_max_body_size(t->http, CONTROL_MAX);
	evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_default_content_type(t->http, "text/plain; charset=utf-8");
	evhttp_set_bevcb(t->http, conn_new_cb, t);
	evhttp_set_gencb(t->http, request_cb, t);
	for (size_t i = 0; i < h->nfds; i++) {
		int fd = fcntl(h->fds[i], F_DUPFD_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		if (!evhttp_accept_socket_with_handle(t->http, fd)) {
			close(fd);
			return -ENOMEM;
		}
	}
	return 0;
}

static int threads_start(struct http_front *h)
{
	int rc = 0;

	for (int i = 0; i < h->nthreads && rc == 0; i++) {
		rc = -thread_start(&h->threads[i].tid, NULL, thread_main, &h->threads[i]);
		h->threads[i].running = rc == 0;
	}
	return rc;
}

/* The socket table's size: the open-file limit. */
static int conn_table_init(void)
{
	struct rlimit rl;
	size_t n = 65536;

	if (conn_by_fd)
		return 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		n = rl.rlim_cur < (1u << 20) ? (size_t)rl.rlim_cur : (1u << 20);
	conn_by_fd = calloc(n, sizeof(*conn_by_fd));
	if (!conn_by_fd)
		return -ENOMEM;
	conn_slots = n;
	return 0;
}

struct http_front *http_front_start(const struct cfg_http *conf, const struct fs_control *ctl,
				    char *err, size_t errlen)
{
	struct http_front *h = calloc(1, sizeof(*h));
	int rc;

	/* The worker hands answers to the loops: their bases need locks
	 * (the engine turned this on already; it must precede every base). */
	if (!h || evthread_use_pthreads() < 0) {
		snprintf(err, errlen, "[http]: %s",
			 h ? "libevent has no thread support" : "out of memory");
		free(h);
		return NULL;
	}
	h->ctl = ctl;
	h->private_ = conf->private_;
	h->max_connections = (uint32_t)conf->max_connections;
	h->request_timeout.tv_sec = conf->request_timeout_s;
	h->nthreads = conf->threads;
	pthread_mutex_init(&h->jobs_lock, NULL);
	pthread_cond_init(&h->jobs_cond, NULL);
	h->jobs_tail = &h->jobs_head;
	if (conn_table_init() < 0)
		goto out_oom;
	if (conf->token) {
		h->token = strdup(conf->token);
		if (!h->token)
			goto out_oom;
		h->token_len = strlen(h->token);
	}
	h->rl = ratelimit_new((uint32_t)conf->rate, (uint32_t)conf->burst, HTTP_CLIENTS_MAX);
	h->fds = calloc(conf->nlisten, sizeof(*h->fds));
	h->threads = calloc((size_t)h->nthreads, sizeof(*h->threads));
	if ((conf->rate && !h->rl) || !h->fds || !h->threads)
		goto out_oom;
	for (size_t i = 0; i < conf->nlisten; i++) {
		rc = listen_open(conf->listen[i], "[http]", err, errlen);
		if (rc < 0)
			goto out_stop;
		h->fds[h->nfds++] = rc;
	}
	for (int i = 0; i < h->nthreads; i++) {
		if (thread_setup(h, &h->threads[i], conf) < 0) {
			snprintf(err, errlen, "[http]: cannot set up its event loops");
			goto out_stop;
		}
	}
	if (http_control_start(h) < 0 || threads_start(h) < 0) {
		snprintf(err, errlen, "[http]: cannot start its threads");
		goto out_stop;
	}
	http_stats_set_enabled(true);
	for (size_t i = 0; i < conf->nlisten; i++)
		log_info("http: listening on %s", conf->listen[i]);
	return h;
out_oom:
	snprintf(err, errlen, "[http]: out of memory");
out_stop:
	http_front_stop(h);
	return NULL;
}

void http_front_stop(struct http_front *h)
{
	if (!h)
		return;
	atomic_store(&h->stopping, true);
	http_control_stop(h);
	for (int i = 0; h->threads && i < h->nthreads; i++)
		if (h->threads[i].running)
			event_base_loopexit(h->threads[i].base, NULL);
	for (int i = 0; h->threads && i < h->nthreads; i++) {
		struct http_thread *t = &h->threads[i];

		if (t->running)
			pthread_join(t->tid, NULL);
		/* Frees every connection, and with them what their buffers
		 * still hold of snapshots. */
		if (t->http)
			evhttp_free(t->http);
		if (t->base)
			event_base_free(t->base);
	}
	for (size_t i = 0; i < h->nfds; i++)
		close(h->fds[i]);
	http_stats_set_enabled(false);
	ratelimit_free(h->rl);
	pthread_cond_destroy(&h->jobs_cond);
	pthread_mutex_destroy(&h->jobs_lock);
	free(h->threads);
	free(h->fds);
	free(h->token);
	free(h);
}
