/* test_fetch: the fetcher against a scripted HTTP server in this process.
 *
 * The server listens on 127.0.0.1 (port chosen by the kernel), serves each
 * connection on a thread of its own and answers by path: a list, a 404,
 * redirects (to itself, in a loop, to file://), a gzip body, an ETag with
 * 304 on revalidation, bodies past the size cap with and without a
 * Content-Length, an empty body, and a path that never answers. HTTPS with
 * a real certificate is left to tests/integration/listserver.py.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "testutil.h"

#define LIST_BODY "1.2.3.4:8080\n5.6.7.8:3128\n"
#define ETAG "\"v1\""
#define LAST_MODIFIED "Wed, 21 Oct 2015 07:28:00 GMT"
#define BIG_BODY 100000
#define MAX_CONNS 64
#define WAIT_S 20

struct server {
	int fd;
	uint16_t port;
	int stop[2]; /* readable once the server is stopping */
	pthread_t acceptor;
	pthread_mutex_t lock; /* guards conns, nconns and the fields below */
	pthread_t conns[MAX_CONNS];
	int nconns;
	char last_inm[128]; /* If-None-Match of the last request, "" if none */
	char last_ua[128];
};

struct conn {
	struct server *srv;
	int fd;
};

static struct server srv;

/* --- the server --- */

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void answer(int fd, const char *status, const char *headers, const void *body, size_t len)
{
	char head[1024];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n",
			 status, len, headers);

	send_all(fd, head, (size_t)n);
	send_all(fd, body, len);
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? crc >> 1 ^ 0xedb88320u : crc >> 1;
	}
	return ~crc;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* LIST_BODY as a gzip member holding one stored (uncompressed) block. */
static void answer_gzip(int fd)
{
	static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
	const char *text = LIST_BODY;
	uint16_t len = (uint16_t)strlen(text);
	unsigned char buf[256];
	size_t n = 0;

	memcpy(buf, head, sizeof(head));
	n += sizeof(head);
	buf[n++] = 1; /* BFINAL, stored */
	buf[n++] = (unsigned char)len;
	buf[n++] = (unsigned char)(len >> 8);
	buf[n++] = (unsigned char)~len;
	buf[n++] = (unsigned char)(~len >> 8);
	memcpy(buf + n, text, len);
	n += len;
	put_le32(buf + n, crc32_of((const unsigned char *)text, len));
	put_le32(buf + n + 4, len);
	n += 8;
	answer(fd, "200 OK", "Content-Encoding: gzip\r\n", buf, n);
}

/* A body past the cap: with Content-Length, or ended by closing. */
static void answer_big(int fd, bool with_length)
{
	char *body = malloc(BIG_BODY);

	if (!body)
		return;
	memset(body, 'x', BIG_BODY);
	if (with_length) {
		answer(fd, "200 OK", "", body, BIG_BODY);
	} else {
		static const char head[] = "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n";

		send_all(fd, head, sizeof(head) - 1);
		send_all(fd, body, BIG_BODY);
	}
	free(body);
}

/* Never answers: waits until the client gives up or the server stops. */
static void stall(struct server *s, int fd)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->stop[0], .events = POLLIN}};

	poll(p, 2, 30000);
}

static void answer_etag(struct server *s, int fd)
{
	bool match;

	pthread_mutex_lock(&s->lock);
	match = strcmp(s->last_inm, ETAG) == 0;
	pthread_mutex_unlock(&s->lock);
	if (match)
		answer(fd, "304 Not Modified", "ETag: " ETAG "\r\n", "", 0);
	else
		answer(fd, "200 OK", "ETag: " ETAG "\r\nLast-Modified: " LAST_MODIFIED "\r\n",
		       LIST_BODY, strlen(LIST_BODY));
}

static void route(struct server *s, int fd, const char *path)
{
	char ua[128];

	if (strcmp(path, "/list") == 0) {
		answer(fd, "200 OK", "", LIST_BODY, strlen(LIST_BODY));
	} else if (strcmp(path, "/redirect") == 0) {
		answer(fd, "302 Found", "Location: /list\r\n", "", 0);
	} else if (strcmp(path, "/loop") == 0) {
		answer(fd, "302 Found", "Location: /loop\r\n", "", 0);
	} else if (strcmp(path, "/to-file") == 0) {
		answer(fd, "302 Found", "Location: file:///etc/hostname\r\n", "", 0);
	} else if (strcmp(path, "/gzip") == 0) {
		answer_gzip(fd);
	} else if (strcmp(path, "/etag") == 0) {
		answer_etag(s, fd);
	} else if (strcmp(path, "/big") == 0 || strcmp(path, "/big-unsized") == 0) {
		answer_big(fd, strcmp(path, "/big") == 0);
	} else if (strcmp(path, "/empty") == 0) {
		answer(fd, "200 OK", "", "", 0);
	} else if (strcmp(path, "/ua") == 0) {
		pthread_mutex_lock(&s->lock);
		snprintf(ua, sizeof(ua), "%s", s->last_ua);
		pthread_mutex_unlock(&s->lock);
		answer(fd, "200 OK", "", ua, strlen(ua));
	} else if (strcmp(path, "/slow") == 0) {
		stall(s, fd);
	} else {
		answer(fd, "404 Not Found", "", "not here\n", 9);
	}
}

/* Copies the value of header name (with its ": ") from req into out. */
static void header_value(const char *req, const char *name, char *out, size_t size)
{
	const char *p = strcasestr(req, name);
	size_t n;

	out[0] = '\0';
	if (!p)
		return;
	p += strlen(name);
	n = strcspn(p, "\r\n");
	snprintf(out, size, "%.*s", (int)n, p);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	char req[8192], path[256];
	size_t len = 0;

	req[0] = '\0';
	while (len < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0)
			break;
		n = recv(c->fd, req + len, sizeof(req) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		req[len] = '\0';
	}
	req[len] = '\0';
	if (sscanf(req, "GET %255s HTTP/1.", path) == 1) {
		pthread_mutex_lock(&c->srv->lock);
		header_value(req, "\r\nIf-None-Match: ", c->srv->last_inm,
			     sizeof(c->srv->last_inm));
		header_value(req, "\r\nUser-Agent: ", c->srv->last_ua, sizeof(c->srv->last_ua));
		pthread_mutex_unlock(&c->srv->lock);
		route(c->srv, c->fd, path);
	}
	close(c->fd);
	free(c);
	return NULL;
}

static void *acceptor_main(void *arg)
{
	struct server *s = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
				      {.fd = s->stop[0], .events = POLLIN}};
		struct conn *c;

		if (poll(p, 2, -1) < 0 || p[1].revents)
			return NULL;
		c = malloc(sizeof(*c));
		if (!c)
			return NULL;
		c->srv = s;
		c->fd = accept(s->fd, NULL, NULL);
		pthread_mutex_lock(&s->lock);
		if (c->fd < 0 || s->nconns == MAX_CONNS ||
		    pthread_create(&s->conns[s->nconns], NULL, conn_main, c) != 0) {
			if (c->fd >= 0)
				close(c->fd);
			free(c);
		} else {
			s->nconns++;
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* A bound and listening socket on 127.0.0.1, its port in *port. */
static int listen_any(uint16_t *port, bool do_listen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || (do_listen && listen(fd, 64) < 0) ||
	    getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static int server_start(struct server *s)
{
	s->fd = listen_any(&s->port, true);
	if (s->fd < 0 || pipe(s->stop) < 0)
		return -1;
	pthread_mutex_init(&s->lock, NULL);
	return pthread_create(&s->acceptor, NULL, acceptor_main, s) == 0 ? 0 : -1;
}

static void server_stop(struct server *s)
{
	if (write(s->stop[1], "x", 1) != 1)
		return;
	pthread_join(s->acceptor, NULL);
	for (int i = 0; i < s->nconns; i++)
		pthread_join(s->conns[i], NULL);
	close(s->fd);
	close(s->stop[0]);
	close(s->stop[1]);
	pthread_mutex_destroy(&s->lock);
}

/* --- waiting for results --- */

struct waiter {
	pthread_mutex_t lock; /* guards res and calls */
	pthread_cond_t cond;
	struct fetch_result *res;
	int calls;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->res = NULL;
	w->calls = 0;
}

static void waiter_destroy(struct waiter *w)
{
	fetch_result_free(w->res);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

static void done_cb(void *arg, struct fetch_result *res)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	fetch_result_free(w->res);
	w->res = res;
	w->calls++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Waits up to WAIT_S for the callback; true if it came. */
static bool waiter_wait(struct waiter *w)
{
	struct timespec until;
	bool done;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_S;
	pthread_mutex_lock(&w->lock);
	while (w->calls == 0 && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
		;
	done = w->calls > 0;
	pthread_mutex_unlock(&w->lock);
	return done;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *url_of(const char *path)
{
	static char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)srv.port, path);
	return url;
}

/* Fetches req and returns its result (owned by w), NULL on no answer. */
static struct fetch_result *fetch(struct fetcher *f, struct waiter *w, struct fetch_req *req)
{
	waiter_init(w);
	CHECK_INT(fetcher_submit(f, req, done_cb, w), 0);
	if (!waiter_wait(w)) {
		CHECK(!"no callback");
		return NULL;
	}
	CHECK_INT(w->calls, 1);
	return w->res;
}

/* Fetches path with defaults; checks it failed with err and message. */
static void expect_error(struct fetcher *f, const char *path, size_t max_bytes, int err,
			 const char *error)
{
	struct fetch_req req = {.url = url_of(path), .max_bytes = max_bytes};
	struct waiter w;
	struct fetch_result *r = fetch(f, &w, &req);

	if (r) {
		CHECK_INT(r->err, err);
		if (error)
			CHECK_STR(r->error, error);
		CHECK(r->data == NULL);
		CHECK(!r->not_modified);
	}
	waiter_destroy(&w);
}

/* --- the cases --- */

static void test_ok(struct fetcher *f)
{
	struct fetch_req req = {.url = url_of("/list")};
	struct waiter w;
	struct fetch_result *r = fetch(f, &w, &req);

	if (r) {
		CHECK_INT(r->err, 0);
		CHECK_STR(r->error, "");
		CHECK_INT(r->http_status, 200);
		CHECK(!r->not_modified);
		CHECK_INT(r->len, strlen(LIST_BODY));
		CHECK_STR(r->data, LIST_BODY);
		CHECK(r->etag == NULL);
		CHECK(r->last_modified == NULL);
	}
	waiter_destroy(&w);
}

static void test_redirect_and_gzip(struct fetcher *f)
{
	static const char *const paths[] = {"/redirect", "/gzip"};

	for (size_t i = 0; i < 2; i++) {
		struct fetch_req req = {.url = url_of(paths[i])};
		struct waiter w;
		struct fetch_result *r = fetch(f, &w, &req);

		if (r) {
			CHECK_INT(r->err, 0);
			CHECK_INT(r->http_status, 200);
			CHECK_STR(r->data, LIST_BODY);
		}
		waiter_destroy(&w);
	}
}

static void test_user_agent(struct fetcher *f)
{
	struct fetch_req req = {.url = url_of("/ua")};
	struct waiter w;
	struct fetch_result *r = fetch(f, &w, &req);

	if (r) {
		CHECK_INT(r->err, 0);
		CHECK_STR(r->data, "proxyfs/" PROXYFS_VERSION);
	}
	waiter_destroy(&w);
}

static void test_etag(struct fetcher *f)
{
	struct fetch_req req = {.url = url_of("/etag")};
	struct waiter w1, w2;
	struct fetch_result *r1 = fetch(f, &w1, &req), *r2;

	if (!r1) {
		waiter_destroy(&w1);
		return;
	}
	CHECK_INT(r1->err, 0);
	CHECK_STR(r1->etag, ETAG);
	CHECK_STR(r1->last_modified, LAST_MODIFIED);
	req.etag = r1->etag;
	req.last_modified = r1->last_modified;
	r2 = fetch(f, &w2, &req);
	if (r2) {
		CHECK_INT(r2->err, 0);
		CHECK_INT(r2->http_status, 304);
		CHECK(r2->not_modified);
		CHECK(r2->data == NULL);
		CHECK_INT(r2->len, 0);
		CHECK_STR(r2->etag, ETAG);
		/* not repeated by the 304: the request's own is handed back */
		CHECK_STR(r2->last_modified, LAST_MODIFIED);
	}
	waiter_destroy(&w2);
	waiter_destroy(&w1);
}

static void test_errors(struct fetcher *f)
{
	struct fetch_req req = {.url = "file:///etc/hostname"};

	expect_error(f, "/nothing-here", 0, -EREMOTEIO, "HTTP 404");
	expect_error(f, "/loop", 0, -ELOOP, NULL);
	expect_error(f, "/to-file", 0, -EPROTONOSUPPORT, NULL);
	expect_error(f, "/big", 1000, -EFBIG, "answer larger than 1000 bytes");
	expect_error(f, "/big-unsized", 1000, -EFBIG, "answer larger than 1000 bytes");
	expect_error(f, "/empty", 0, -ENODATA, "empty answer");
	CHECK_INT(fetcher_submit(f, &req, done_cb, NULL), -EPROTONOSUPPORT);
	req.url = NULL;
	CHECK_INT(fetcher_submit(f, &req, done_cb, NULL), -EINVAL);
}

static void test_404_status(struct fetcher *f)
{
	struct fetch_req req = {.url = url_of("/nothing-here")};
	struct waiter w;
	struct fetch_result *r = fetch(f, &w, &req);

	if (r)
		CHECK_INT(r->http_status, 404);
	waiter_destroy(&w);
}

static void test_network_errors(struct fetcher *f)
{
	struct fetch_req req = {.url = url_of("/slow"), .timeout_ms = 300};
	char url[128];
	struct waiter w;
	struct fetch_result *r;
	uint16_t port;
	double t0 = now_s();
	int fd;

	r = fetch(f, &w, &req);
	if (r) {
		CHECK_INT(r->err, -ETIMEDOUT);
		CHECK(r->data == NULL);
		CHECK(r->error[0] != '\0');
	}
	CHECK(now_s() - t0 < 5.0);
	waiter_destroy(&w);

	fd = listen_any(&port, false); /* bound, never listening: refused */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/list", (unsigned)port);
	req = (struct fetch_req){.url = url};
	r = fetch(f, &w, &req);
	if (r)
		CHECK_INT(r->err, -ECONNREFUSED);
	waiter_destroy(&w);
	close(fd);

	/* TLS set up with a CA file that does not exist */
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/list", (unsigned)srv.port);
	req = (struct fetch_req){.url = url, .ca_file = "/nonexistent/ca.pem", .timeout_ms = 5000};
	r = fetch(f, &w, &req);
	if (r)
		CHECK_INT(r->err, -EPROTO);
	waiter_destroy(&w);
}

static int calls_of(struct waiter *w)
{
	int calls;

	pthread_mutex_lock(&w->lock);
	calls = w->calls;
	pthread_mutex_unlock(&w->lock);
	return calls;
}

static void expect_cancelled(struct waiter *w)
{
	CHECK_INT(w->calls, 1);
	if (w->res) {
		CHECK_INT(w->res->err, -ECANCELED);
		CHECK(w->res->data == NULL);
	}
}

/* A stalled transfer does not hold up others, and freeing the fetcher
 * cancels it at once, calling back with -ECANCELED before returning. So
 * is a request freed before the fetcher thread took it up. */
static void test_cancel(void)
{
	struct fetcher *f = fetcher_new();
	char slow_url[128], list_url[128];
	struct fetch_req slow = {.url = slow_url}, list = {.url = list_url};
	struct waiter ws1, ws2, wl;
	double t0;

	if (!f) {
		CHECK(f != NULL);
		return;
	}
	snprintf(slow_url, sizeof(slow_url), "%s", url_of("/slow"));
	snprintf(list_url, sizeof(list_url), "%s", url_of("/list"));
	waiter_init(&ws1);
	waiter_init(&ws2);
	waiter_init(&wl);
	CHECK_INT(fetcher_submit(f, &slow, done_cb, &ws1), 0);
	CHECK_INT(fetcher_submit(f, &list, done_cb, &wl), 0);
	CHECK(waiter_wait(&wl));
	CHECK(wl.res && wl.res->err == 0);
	CHECK_INT(calls_of(&ws1), 0);
	CHECK_INT(fetcher_submit(f, &slow, done_cb, &ws2), 0);
	t0 = now_s();
	fetcher_free(f);
	CHECK(now_s() - t0 < 2.0);
	expect_cancelled(&ws1);
	expect_cancelled(&ws2);
	waiter_destroy(&ws1);
	waiter_destroy(&ws2);
	waiter_destroy(&wl);
}

int main(void)
{
	struct fetcher *f;

	if (server_start(&srv) != 0) {
		fprintf(stderr, "cannot start the test server\n");
		return 1;
	}
	f = fetcher_new();
	CHECK(f != NULL);
	if (f) {
		test_ok(f);
		test_redirect_and_gzip(f);
		test_user_agent(f);
		test_etag(f);
		test_errors(f);
		test_404_status(f);
		test_network_errors(f);
		fetcher_free(f);
	}
	test_cancel();
	server_stop(&srv);
	fetch_global_cleanup();
	return test_exit_code();
}
