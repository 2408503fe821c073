/* check: one proxy check as a non-blocking state machine on a libevent loop.
 *
 * A check is one allocation: the struct below plus a short tail holding the
 * protocol messages this check sends, the judge's request with this
 * check's token last (built once at start, so credentials need not be
 * kept). It owns one socket and one struct event; the event
 * carries both the socket (registered once, edge-triggered, both ways) and
 * the current deadline as its timeout (libevent lets an I/O event time
 * out), so no second timer is needed. The deadline is the connect timeout
 * while resolving and connecting, then what is left of the whole-check
 * timeout. A proxy given by name is resolved first through evdns, the
 * event serving as the deadline's timer meanwhile. Answers are read into a buffer on the stack and fed to
 * incremental parsers that keep a few counters in the check, so a check in
 * flight costs a few hundred bytes and one descriptor; one through TLS adds
 * its SSL object, and one whose body is kept adds that buffer.
 *
 * Each protocol is a small table of functions (struct chk_proto): build its
 * messages, begin once connected, read its handshake replies. After the
 * handshake every protocol sends the judge's request and reads the answer
 * the same way. For an https judge the tunnel first carries a TLS client on
 * the same socket (an SSL object made only then), whose handshake, request
 * and answer are driven by the same event: OpenSSL's WANT_READ and
 * WANT_WRITE become the READING and SENDING states. When the judge asks for
 * the body, up to CHK_BODY_MAX bytes of it are kept in a buffer allocated
 * only once a 200 answer's head is read. Helpers never finish a check
 * themselves: they record the outcome and set CHK_ST_DONE, and the event
 * callback, as its last act, closes the socket, frees the check and calls
 * done. Not here: retries, scheduling, what an outcome means for the pool.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "check.h"
#include "http_answer.h"
#include "echo.h"
#include "socks.h"

#define CHK_TIMEOUT_DEFAULT_MS 10000
#define CHK_READ_CHUNK (16 * 1024)
#define CHK_MSGS 4
#define CHK_MSG_REQ (CHK_MSGS - 1) /* the judge's request: always the last message */
#define CHK_RAND_WORDS 512	   /* 64-bit tokens drawn per getrandom() call */

#ifndef PROXYFS_VERSION
#define PROXYFS_VERSION "dev"
#endif

/* The socket is registered once, for both directions, edge-triggered: the
 * kernel tells of a change, not of a state, so what it said is kept here
 * until a call finds the socket empty (read) or full (write). One
 * registration per check instead of one per turn of the conversation. */
#define CHK_CAN_READ 1
#define CHK_CAN_WRITE 2

/* Used when the caller passes no options: every field at its default. */
static const struct chk_opts chk_opts_default = {0};

enum chk_state {
	CHK_ST_RESOLVING,  /* waiting for the proxy's name to resolve */
	CHK_ST_CONNECTING, /* waiting for connect() to finish */
	CHK_ST_SENDING,	   /* out[out_off..out_len) still to send */
	CHK_ST_READING,	   /* waiting for the peer */
	CHK_ST_DONE,	   /* outcome recorded; finished by the callback */
};

enum chk_phase {
	CHK_PH_HANDSHAKE, /* talking to the proxy */
	CHK_PH_TLS,	  /* the tunnel is open: TLS handshake with the judge */
	CHK_PH_ANSWER,	  /* the judge's request is out (or going), reading its answer */
};

struct chk_proto;

struct chk {
	struct event ev; /* the socket, both ways, edge-triggered; the deadline */
	const struct chk_proto *proto;
	const struct chk_judge *judge;
	SSL *ssl;      /* https judge: from the tunnel's opening on, else NULL */
	struct evdns_getaddrinfo_request *dns; /* the name being resolved, else NULL */
	uint8_t *body; /* the answer's body being kept (judge->capture_body) */
	const struct chk_opts *opts;
	chk_done_fn done;
	void *arg;
	const uint8_t *out; /* being sent: a message in tail */
	uint32_t out_len, out_off;
	uint64_t start_ns;
	uint64_t wait_ns; /* when the proxy's turn began: connect, or our last send */
	int fd;
	uint8_t state;	/* enum chk_state */
	uint8_t phase;	/* enum chk_phase */
	bool with_auth; /* credentials were sent in an HTTP header */
	uint8_t ready;	/* CHK_CAN_*: what the kernel said and no call has used up */
	uint16_t port;	/* of the proxy given by name */
	struct chk_outcome res;
	struct chk_answer ans;	    /* the CONNECT reply's head, then the judge's answer */
	struct chk_socks_reply sr;  /* the SOCKS reply being read */
	uint32_t msg_len[CHK_MSGS]; /* messages in tail, one after another */
	uint8_t tail[];
};

struct chk_proto {
	/* At least the bytes build() writes into the tail. */
	size_t (*msg_size)(const struct chk_target *t, const struct chk_judge *j);
	/* Builds this check's messages into c->tail; 0 or -errno. */
	int (*build)(struct chk *c, const struct chk_target *t);
	/* Connected: sets the first thing to send. */
	void (*connected)(struct chk *c);
	/* Handshake bytes from the proxy; returns how many were used, which is
	 * at least one unless the check is over. */
	size_t (*feed)(struct chk *c, const uint8_t *p, size_t n);
	/* The proxy's own HTTP layer answers the judge's request, so a 407
	 * (or a 401 to our credentials) in the answer is the proxy's refusal. */
	bool proxy_answers;
};

static uint64_t chk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool chk_has_user(const struct chk_target *t)
{
	return t->user && t->user[0];
}

static const char *chk_pass(const struct chk_target *t)
{
	return t->pass ? t->pass : "";
}

static uint8_t *chk_msg(struct chk *c, unsigned i)
{
	uint8_t *p = c->tail;

	for (unsigned k = 0; k < i; k++)
		p += c->msg_len[k];
	return p;
}

/* Where the check is: the stage its outcome is told by. */
static enum chk_stage chk_stage_of(const struct chk *c)
{
	if (c->state == CHK_ST_RESOLVING)
		return CHK_STAGE_RESOLVE;
	if (c->state == CHK_ST_CONNECTING)
		return CHK_STAGE_CONNECT;
	if (c->phase == CHK_PH_TLS)
		return CHK_STAGE_TLS;
	return c->phase == CHK_PH_ANSWER ? CHK_STAGE_ANSWER : CHK_STAGE_HANDSHAKE;
}

/* Records the outcome and what tells it apart (enum chk_why, the SOCKS
 * reply code); the first one wins. */
static void chk_end_why(struct chk *c, enum chk_result r, int err, enum chk_why why,
			uint8_t socks_reply)
{
	if (c->state == CHK_ST_DONE)
		return;
	c->res.result = r;
	c->res.err = err;
	c->res.stage = (uint8_t)chk_stage_of(c);
	c->res.why = (uint8_t)why;
	c->res.socks_reply = socks_reply;
	if (r == CHK_OK)
		c->res.latency_ms = (uint32_t)((chk_now_ns() - c->start_ns) / 1000000u);
	if (r == CHK_TIMEOUT)
		c->res.idle_ms = (uint32_t)((chk_now_ns() - c->wait_ns) / 1000000u);
	c->state = CHK_ST_DONE;
}

static void chk_end(struct chk *c, enum chk_result r, int err)
{
	chk_end_why(c, r, err, CHK_WHY_NONE, 0);
}

/* What an errno from the socket says about the proxy. */
static enum chk_result chk_errno_result(int err)
{
	if (chk_errno_is_local(err))
		return CHK_LOCAL_ERR;
	switch (err) {
	case ENETUNREACH:
	case ENETDOWN:
	case EAFNOSUPPORT:
		return CHK_UNREACHABLE; /* our network: no route there */
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case EACCES:
	case EPERM:
		return CHK_REFUSED;
	case ETIMEDOUT:
		return CHK_TIMEOUT;
	default:
		return CHK_RESET;
	}
}

static void chk_end_errno(struct chk *c, int err)
{
	enum chk_result r = chk_errno_result(err);

	chk_end(c, r, r == CHK_TIMEOUT ? 0 : err);
}

static void chk_send_msg(struct chk *c, const void *msg, size_t len)
{
	c->out = msg;
	c->out_len = (uint32_t)len;
	c->out_off = 0;
	c->state = CHK_ST_SENDING;
}

/* The User-Agent line of every request, around the check's token. */
static const char chk_ua[] = "User-Agent: proxyfs/" PROXYFS_VERSION " " CHK_ECHO_MARKER;
static const char chk_req_end[] = "\r\nAccept: */*\r\nConnection: close\r\n\r\n";

/* Random words for the tokens, drawn from the kernel in batches so that a
 * check costs no system call for it. Each thread runs its own loop, so each
 * has its own batch; nothing is shared. */
static _Thread_local uint64_t chk_rand[CHK_RAND_WORDS];
static _Thread_local unsigned chk_rand_left;
static _Thread_local uint64_t chk_rand_mix; /* used only while getrandom() cannot serve */

/* 64 unpredictable bits. Early in boot, before the kernel's pool is ready
 * (GRND_NONBLOCK fails), a splitmix64 step over the clock stands in. */
static uint64_t chk_random64(void)
{
	uint64_t z;

	if (chk_rand_left == 0 &&
	    getrandom(chk_rand, sizeof(chk_rand), GRND_NONBLOCK) == (ssize_t)sizeof(chk_rand))
		chk_rand_left = CHK_RAND_WORDS;
	if (chk_rand_left > 0)
		return chk_rand[--chk_rand_left];
	z = (chk_rand_mix += 0x9e3779b97f4a7c15u ^ chk_now_ns());
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Writes a fresh token: CHK_TOKEN_LEN lowercase hex digits. */
static void chk_token(char *dst)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = chk_random64();

	for (int i = 0; i < CHK_TOKEN_LEN; i++, v >>= 4)
		dst[i] = hex[v & 15];
}

/* The handshake is over: send this check's request, read the judge's
 * answer, which must echo the request's token if it echoes any. */
static void chk_begin_answer(struct chk *c)
{
	const struct chk_judge *j = c->judge;
	const uint8_t *req = chk_msg(c, CHK_MSG_REQ);
	uint32_t len = c->msg_len[CHK_MSG_REQ];
	const char *tok = (const char *)req + len - (sizeof(chk_req_end) - 1) - CHK_TOKEN_LEN;

	c->phase = CHK_PH_ANSWER;
	chk_answer_init(&c->ans, j->expect, j->expect_len, j->expect_kmp, c->opts->max_answer,
			false);
	chk_answer_echo(&c->ans, tok, j->require_echo, j->echo_suffices);
	c->ans.pause_at_body = true; /* the body's start, to tell an echo */
	chk_send_msg(c, req, len);
}

/* Bytes already waiting when our request (or TLS's first flight) is about
 * to go were not sent in answer to it: the peer talks first, and nothing
 * it says can count as the judge's answer. Found empty, the socket has
 * used up its readiness. */
static bool chk_peer_spoke_first(struct chk *c)
{
	uint8_t b;
	ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0) {
		chk_end_why(c, CHK_PROTO_ERR, 0, CHK_WHY_EARLY, 0);
		return true;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		c->ready &= (uint8_t)~CHK_CAN_READ;
	return false; /* an end of stream or an error shows when reading */
}

/* The tunnel to the judge is open: TLS first for an https judge. Whatever
 * the peer sent before we speak ends the check (chk_peer_spoke_first). The
 * client speaks first, so the handshake starts when the socket is
 * writable. TLS writes its Finished and then the request back to back;
 * without TCP_NODELAY the second would wait for the first's delayed ACK
 * and add some 40 ms to every latency. */
static void chk_tunnel_up(struct chk *c)
{
	int one = 1;

	if (chk_peer_spoke_first(c))
		return;
	if (!c->judge->tls) {
		chk_begin_answer(c);
		return;
	}
	c->ssl = chk_judge_tls_new(c->judge, c->fd);
	if (!c->ssl) {
		chk_end(c, CHK_LOCAL_ERR, ENOMEM);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->phase = CHK_PH_TLS;
	c->state = CHK_ST_SENDING;
}

/* A 200 answer's head is read and a body follows: keep its start. */
static void chk_capture_begin(struct chk *c)
{
	size_t cap = CHK_BODY_MAX;

	if (!c->ans.chunked && c->ans.have_length && c->ans.length < cap)
		cap = (size_t)c->ans.length;
	c->body = malloc(cap + 1);
	if (!c->body) {
		chk_end(c, CHK_LOCAL_ERR, ENOMEM);
		return;
	}
	chk_answer_capture(&c->ans, c->body, cap);
}

/* An HTTP status from the proxy itself that refuses our credentials. */
static bool chk_status_is_auth(const struct chk *c, uint16_t status)
{
	return status == 407 || (status == 401 && c->with_auth);
}

/* A judge's answer that echoes our request's headers (ours always carry a
 * User-Agent) but not this check's token came from elsewhere: a page
 * canned, cached or replayed from another check. Read from the body's
 * first CHK_BODY_MAX bytes. */
static bool chk_echo_without_token(const struct chk *c)
{
	return !c->ans.tok_found && c->body &&
	       ja_echoes((const char *)c->body, c->ans.body_len, "User-Agent");
}

static void chk_answer_over(struct chk *c)
{
	enum chk_result r = (enum chk_result)c->ans.result;
	enum chk_why why = CHK_WHY_NONE;

	if (r == CHK_OK && chk_echo_without_token(c))
		r = CHK_BAD_ANSWER;
	c->res.status = c->ans.status;
	if (r == CHK_BAD_ANSWER && c->proto->proxy_answers && chk_status_is_auth(c, c->ans.status))
		r = CHK_AUTH;
	/* an answer turned bad here echoed another check's token */
	if (r == CHK_BAD_ANSWER)
		why = c->ans.why ? (enum chk_why)c->ans.why : CHK_WHY_TOKEN;
	chk_end_why(c, r, 0, why, 0);
}

/* ---- HTTP: absolute-URI GET, or CONNECT then the origin-form GET ---- */

static size_t chk_b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

static size_t chk_b64(char *dst, const uint8_t *src, size_t n)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)src[i + 1] << 8;
		if (i + 2 < n)
			v |= src[i + 2];
		dst[o++] = abc[v >> 18 & 63];
		dst[o++] = abc[v >> 12 & 63];
		dst[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		dst[o++] = i + 2 < n ? abc[v & 63] : '=';
	}
	return o;
}

static const char chk_auth_name[] = "Proxy-Authorization: Basic ";

static size_t chk_auth_size(const struct chk_target *t)
{
	if (!chk_has_user(t))
		return 0;
	return sizeof(chk_auth_name) - 1 + chk_b64_len(strlen(t->user) + 1 + strlen(chk_pass(t))) +
	       2;
}

/* Writes the Proxy-Authorization line (with CRLF), when there is a user. */
static size_t chk_auth_write(char *dst, const struct chk_target *t)
{
	size_t ulen, plen, o;
	uint8_t *cred;

	if (!chk_has_user(t))
		return 0;
	ulen = strlen(t->user);
	plen = strlen(chk_pass(t));
	cred = malloc(ulen + 1 + plen);
	if (!cred)
		return 0;
	memcpy(cred, t->user, ulen);
	cred[ulen] = ':';
	memcpy(cred + ulen + 1, chk_pass(t), plen);
	o = sizeof(chk_auth_name) - 1;
	memcpy(dst, chk_auth_name, o);
	o += chk_b64(dst + o, cred, ulen + 1 + plen);
	memcpy(dst + o, "\r\n", 2);
	free(cred);
	return o + 2;
}

/* Bytes of this check's request to the judge: the judge's start, the
 * credentials for a plain HTTP proxy, the User-Agent with the token. */
static size_t chk_req_size(const struct chk_target *t, const struct chk_judge *j, bool absolute)
{
	size_t head = absolute ? j->req_absolute_len + chk_auth_size(t) : j->req_origin_len;

	return head + sizeof(chk_ua) - 1 + CHK_TOKEN_LEN + sizeof(chk_req_end) - 1;
}

/* Builds the request as the tail's last message (the others are built
 * already): absolute, with the proxy's credentials, for a plain HTTP proxy;
 * in origin form for a tunnel. A fresh token per check: a judge that echoes
 * it proves that this request reached it. */
static int chk_req_build(struct chk *c, const struct chk_target *t, bool absolute)
{
	const struct chk_judge *j = c->judge;
	char *dst = (char *)chk_msg(c, CHK_MSG_REQ);
	size_t o = absolute ? j->req_absolute_len : j->req_origin_len;

	memcpy(dst, absolute ? j->req_absolute : j->req_origin, o);
	if (absolute && chk_has_user(t)) {
		size_t auth = chk_auth_write(dst + o, t);

		if (auth == 0)
			return -ENOMEM;
		o += auth;
		c->with_auth = true;
	}
	memcpy(dst + o, chk_ua, sizeof(chk_ua) - 1);
	o += sizeof(chk_ua) - 1;
	chk_token(dst + o);
	o += CHK_TOKEN_LEN;
	memcpy(dst + o, chk_req_end, sizeof(chk_req_end) - 1);
	c->msg_len[CHK_MSG_REQ] = (uint32_t)(o + sizeof(chk_req_end) - 1);
	return 0;
}

static size_t http_plain_size(const struct chk_target *t, const struct chk_judge *j)
{
	return chk_req_size(t, j, true);
}

static int http_plain_build(struct chk *c, const struct chk_target *t)
{
	return chk_req_build(c, t, true);
}

static void http_plain_connected(struct chk *c)
{
	if (!chk_peer_spoke_first(c))
		chk_begin_answer(c);
}

static size_t http_plain_feed(struct chk *c, const uint8_t *p, size_t n)
{
	return n; /* no handshake: never called */
}

static const char chk_connect_fmt[] = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n";

static size_t http_connect_msg_size(const struct chk_target *t, const struct chk_judge *j)
{
	size_t authority = strlen(j->host) + 2 + 6;

	return sizeof(chk_connect_fmt) + 2 * authority + chk_auth_size(t) + 2;
}

static size_t http_connect_size(const struct chk_target *t, const struct chk_judge *j)
{
	return http_connect_msg_size(t, j) + chk_req_size(t, j, false);
}

static int http_connect_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;
	bool v6 = strchr(j->host, ':') != NULL;
	char authority[sizeof(j->host) + 8];
	char *dst = (char *)c->tail;
	size_t len, auth;

	snprintf(authority, sizeof(authority), "%s%s%s:%u", v6 ? "[" : "", j->host, v6 ? "]" : "",
		 j->port);
	len = (size_t)snprintf(dst, http_connect_msg_size(t, j), chk_connect_fmt, authority,
			       authority);
	auth = chk_auth_write(dst + len, t);
	if (chk_has_user(t) && auth == 0)
		return -ENOMEM;
	c->with_auth = auth > 0;
	memcpy(dst + len + auth, "\r\n", 2);
	c->msg_len[0] = (uint32_t)(len + auth + 2);
	return chk_req_build(c, t, false);
}

static void http_connect_connected(struct chk *c)
{
	chk_answer_init(&c->ans, NULL, 0, NULL, c->opts->max_answer, true);
	chk_send_msg(c, c->tail, c->msg_len[0]);
}

/* The CONNECT reply's head: 2xx opens the tunnel. */
static size_t http_connect_feed(struct chk *c, const uint8_t *p, size_t n)
{
	size_t used = chk_answer_feed(&c->ans, p, n);
	uint16_t status = c->ans.status;

	if (!c->ans.done)
		return used;
	if (c->ans.result == CHK_OK && status >= 200 && status <= 299) {
		chk_tunnel_up(c);
		return used;
	}
	c->res.status = status;
	if (c->ans.result != CHK_OK)
		chk_end(c, (enum chk_result)c->ans.result, 0);
	else
		chk_end_why(c, chk_status_is_auth(c, status) ? CHK_AUTH : CHK_BAD_ANSWER, 0,
			    chk_status_is_auth(c, status) ? CHK_WHY_NONE : CHK_WHY_STATUS, 0);
	return used;
}

static const struct chk_proto chk_http_plain = {
    .msg_size = http_plain_size,
    .build = http_plain_build,
    .connected = http_plain_connected,
    .feed = http_plain_feed,
    .proxy_answers = true,
};

static const struct chk_proto chk_http_connect = {
    .msg_size = http_connect_size,
    .build = http_connect_build,
    .connected = http_connect_connected,
    .feed = http_connect_feed,
};

/* ---- SOCKS4 / SOCKS4a ---- */

static size_t socks4_msg_size(const struct chk_target *t, const struct chk_judge *j)
{
	return 8 + (t->user ? strlen(t->user) : 0) + 1 + strlen(j->host) + 1;
}

static size_t socks4_size(const struct chk_target *t, const struct chk_judge *j)
{
	return socks4_msg_size(t, j) + chk_req_size(t, j, false);
}

/* SOCKS4 needs the judge's IPv4 address; without one, ask by name (4a). */
static int socks4_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&j->addr;
	bool by_name = t->remote_dns || !j->have_addr || j->addr.ss_family != AF_INET;
	int n;

	n = chk_socks4_request(c->tail, socks4_msg_size(t, j), (const uint8_t *)&sin->sin_addr,
			       by_name ? j->host : NULL, j->port, t->user);
	if (n < 0)
		return n;
	c->msg_len[0] = (uint32_t)n;
	return chk_req_build(c, t, false);
}

static void socks4_connected(struct chk *c)
{
	chk_socks_reply_init(&c->sr, CHK_SOCKS4_REPLY);
	chk_send_msg(c, c->tail, c->msg_len[0]);
}

static size_t socks4_feed(struct chk *c, const uint8_t *p, size_t n)
{
	size_t used = chk_socks_reply_feed(&c->sr, p, n);

	if (!c->sr.done)
		return used;
	if (c->sr.result != CHK_OK)
		chk_end_why(c, (enum chk_result)c->sr.result, 0, CHK_WHY_NONE, c->sr.code);
	else
		chk_tunnel_up(c);
	return used;
}

static const struct chk_proto chk_socks4 = {
    .msg_size = socks4_size,
    .build = socks4_build,
    .connected = socks4_connected,
    .feed = socks4_feed,
};

/* ---- SOCKS5: greeting, RFC 1929 auth when asked, CONNECT ---- */

enum { S5_GREETING, S5_AUTH, S5_CONNECT };

static size_t socks5_auth_size(const struct chk_target *t)
{
	return chk_has_user(t) ? 3 + strlen(t->user) + strlen(chk_pass(t)) : 0;
}

/* A CONNECT by name or by address (IPv6: 22 bytes). */
static size_t socks5_request_size(const struct chk_judge *j)
{
	size_t by_name = 7 + strlen(j->host);

	return by_name > 22 ? by_name : 22;
}

static size_t socks5_size(const struct chk_target *t, const struct chk_judge *j)
{
	return 4 + socks5_auth_size(t) + socks5_request_size(j) + chk_req_size(t, j, false);
}

static int socks5_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;
	bool by_name = t->remote_dns || !j->have_addr;
	int n;

	n = chk_socks5_greeting(chk_msg(c, S5_GREETING), 4, chk_has_user(t));
	if (n < 0)
		return n;
	c->msg_len[S5_GREETING] = (uint32_t)n;
	if (chk_has_user(t)) {
		n = chk_socks5_auth(chk_msg(c, S5_AUTH), socks5_auth_size(t), t->user, chk_pass(t));
		if (n < 0)
			return n;
		c->msg_len[S5_AUTH] = (uint32_t)n;
	}
	n = chk_socks5_request(chk_msg(c, S5_CONNECT), socks5_request_size(j),
			       by_name ? NULL : (const struct sockaddr *)&j->addr, j->host,
			       j->port);
	if (n < 0)
		return n;
	c->msg_len[S5_CONNECT] = (uint32_t)n;
	return chk_req_build(c, t, false);
}

static void socks5_send(struct chk *c, unsigned msg, enum chk_socks_step reply)
{
	chk_socks_reply_init(&c->sr, reply);
	chk_send_msg(c, chk_msg(c, msg), c->msg_len[msg]);
}

static void socks5_connected(struct chk *c)
{
	socks5_send(c, S5_GREETING,
		    c->msg_len[S5_AUTH] ? CHK_SOCKS5_METHOD_AUTH : CHK_SOCKS5_METHOD);
}

static size_t socks5_feed(struct chk *c, const uint8_t *p, size_t n)
{
	size_t used = chk_socks_reply_feed(&c->sr, p, n);

	if (!c->sr.done)
		return used;
	if (c->sr.result != CHK_OK) {
		chk_end_why(c, (enum chk_result)c->sr.result, 0, CHK_WHY_NONE, c->sr.code);
		return used;
	}
	switch (c->sr.step) {
	case CHK_SOCKS5_METHOD:
	case CHK_SOCKS5_METHOD_AUTH:
		if (c->sr.code == 2)
			socks5_send(c, S5_AUTH, CHK_SOCKS5_AUTH);
		else
			socks5_send(c, S5_CONNECT, CHK_SOCKS5_REPLY);
		break;
	case CHK_SOCKS5_AUTH:
		socks5_send(c, S5_CONNECT, CHK_SOCKS5_REPLY);
		break;
	default:
		chk_tunnel_up(c);
		break;
	}
	return used;
}

static const struct chk_proto chk_socks5 = {
    .msg_size = socks5_size,
    .build = socks5_build,
    .connected = socks5_connected,
    .feed = socks5_feed,
};

/* ---- the state machine ---- */

/* An https judge is reached through a tunnel whatever the target says. */
static const struct chk_proto *chk_proto_for(const struct chk_target *t, const struct chk_judge *j)
{
	switch (t->proto) {
	case PROXY_HTTP:
		return t->tunnel || j->tls ? &chk_http_connect : &chk_http_plain;
	case PROXY_HTTPS:
		return &chk_http_connect;
	case PROXY_SOCKS4:
		return &chk_socks4;
	case PROXY_SOCKS5:
		return &chk_socks5;
	default:
		return NULL;
	}
}

/* A send or recv failed (errno set, not EINTR): the socket is full or
 * empty for now, which uses up what the kernel said (can), or the
 * connection is over. */
static void chk_io_failed(struct chk *c, uint8_t can)
{
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		c->ready &= (uint8_t)~can;
	else
		chk_end_errno(c, errno);
}

static void chk_send(struct chk *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			chk_io_failed(c, CHK_CAN_WRITE);
			return;
		}
		c->out_off += (uint32_t)n;
	}
	c->state = CHK_ST_READING;
	c->wait_ns = chk_now_ns();
}

/* Answer bytes, plain or decrypted; a pause after the head of a 200
 * answer lets the body's buffer be made. */
static void chk_consume_answer(struct chk *c, const uint8_t *p, size_t n)
{
	for (;;) {
		size_t used = chk_answer_feed(&c->ans, p, n);

		if (c->ans.done) {
			chk_answer_over(c);
			return;
		}
		if (!c->ans.at_body)
			return;
		chk_capture_begin(c);
		if (c->state == CHK_ST_DONE)
			return;
		p += used;
		n -= used;
	}
}

static void chk_consume(struct chk *c, const uint8_t *p, size_t n)
{
	while (n > 0 && c->state != CHK_ST_DONE) {
		size_t used;

		if (c->state != CHK_ST_READING) {
			/* after a reply, before our next message (the request,
			 * TLS's first flight): the peer talks first */
			chk_end(c, CHK_PROTO_ERR, 0);
			return;
		}
		if (c->phase == CHK_PH_ANSWER) {
			chk_consume_answer(c, p, n);
			return;
		}
		used = c->proto->feed(c, p, n);
		if (used == 0) {
			chk_end(c, CHK_PROTO_ERR, 0); /* a parser that stalls: never loop */
			return;
		}
		p += used;
		n -= used;
	}
}

static void chk_eof(struct chk *c)
{
	if (c->phase == CHK_PH_ANSWER) {
		chk_answer_eof(&c->ans);
		chk_answer_over(c);
	} else {
		chk_end(c, CHK_RESET, 0);
	}
}

/* ---- TLS to an https judge, through the tunnel ---- */

/* A TLS call returned r <= 0 (err: errno right after it): wait for the
 * socket as OpenSSL asks, or end the check. A close_notify is a clean
 * EOF; a socket error is the connection's; anything else (alert, bad or
 * unverified certificate, wrong host, garbage, EOF without close_notify)
 * is a TLS failure. */
static void chk_tls_handle(struct chk *c, int r, int err)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ: /* its BIO found the socket empty */
		c->state = CHK_ST_READING;
		c->ready &= (uint8_t)~CHK_CAN_READ;
		return;
	case SSL_ERROR_WANT_WRITE:
		c->state = CHK_ST_SENDING;
		c->ready &= (uint8_t)~CHK_CAN_WRITE;
		return;
	case SSL_ERROR_ZERO_RETURN:
		chk_eof(c);
		break;
	case SSL_ERROR_SYSCALL:
		if (err)
			chk_end_errno(c, err);
		else
			chk_end(c, CHK_TLS_ERR, 0);
		break;
	default:
		chk_end(c, CHK_TLS_ERR, 0);
		break;
	}
	ERR_clear_error();
}

/* Each TLS call starts with an empty error queue, as SSL_get_error needs. */
static void chk_tls_prepare(void)
{
	ERR_clear_error();
	errno = 0;
}

/* True once the handshake is done and the judge's request is set to go. */
static bool chk_tls_handshake(struct chk *c)
{
	int r;

	chk_tls_prepare();
	r = SSL_connect(c->ssl);
	if (r != 1) {
		chk_tls_handle(c, r, errno);
		return false;
	}
	chk_begin_answer(c);
	return true;
}

/* True once the whole request is written. A retry passes the same bytes,
 * as SSL_write wants. */
static bool chk_tls_write(struct chk *c)
{
	while (c->out_off < c->out_len) {
		size_t n;
		int r;

		chk_tls_prepare();
		r = SSL_write_ex(c->ssl, c->out + c->out_off, c->out_len - c->out_off, &n);
		if (r != 1) {
			chk_tls_handle(c, r, errno);
			return false;
		}
		c->out_off += (uint32_t)n;
	}
	c->state = CHK_ST_READING;
	c->wait_ns = chk_now_ns();
	return true;
}

/* Reads until OpenSSL has nothing more: decrypted bytes may be waiting in
 * it while the socket is quiet, and no event would come for those. */
static void chk_tls_read(struct chk *c)
{
	uint8_t buf[CHK_READ_CHUNK];

	while (c->state != CHK_ST_DONE) {
		size_t n;
		int r;

		chk_tls_prepare();
		r = SSL_read_ex(c->ssl, buf, sizeof(buf), &n);
		if (r != 1) {
			chk_tls_handle(c, r, errno);
			return;
		}
		chk_consume_answer(c, buf, n);
	}
}

/* Drives TLS as far as it goes now: handshake, request, answer. */
static void chk_tls_io(struct chk *c)
{
	if (c->state == CHK_ST_DONE)
		return;
	if (c->phase == CHK_PH_TLS && !chk_tls_handshake(c))
		return;
	if (c->out_off < c->out_len && !chk_tls_write(c))
		return;
	chk_tls_read(c);
}

/* ---- the socket ---- */

/* Reads until the socket says it is empty (a short read is not enough: an
 * end of stream behind the data brings no new edge) or the conversation
 * moves on. */
static void chk_recv(struct chk *c)
{
	uint8_t buf[CHK_READ_CHUNK];

	while (c->state == CHK_ST_READING && !c->ssl && (c->ready & CHK_CAN_READ)) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			chk_io_failed(c, CHK_CAN_READ);
			return;
		}
		if (n == 0) {
			chk_eof(c);
			return;
		}
		chk_consume(c, buf, (size_t)n);
	}
}

static void chk_connected(struct chk *c)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		chk_end_errno(c, err);
		return;
	}
	c->proto->connected(c);
	if (c->state == CHK_ST_SENDING)
		chk_send(c);
}

static void chk_cb(evutil_socket_t fd, short what, void *arg);

/* Sets the timeout to the current deadline: connect_timeout_ms while
 * connecting, timeout_ms from the start for the whole check. Only the
 * timer moves: the socket stays registered as it is. */
static int chk_arm(struct chk *c)
{
	const struct chk_opts *o = c->opts;
	int64_t total = o->timeout_ms > 0 ? o->timeout_ms : CHK_TIMEOUT_DEFAULT_MS;
	int64_t limit = total, left;
	struct timeval tv = {0, 0};

	if (c->state <= CHK_ST_CONNECTING && o->connect_timeout_ms > 0 &&
	    o->connect_timeout_ms < total)
		limit = o->connect_timeout_ms;
	left = (int64_t)(c->start_ns + (uint64_t)limit * 1000000u) - (int64_t)chk_now_ns();
	if (left > 0) {
		tv.tv_sec = (time_t)(left / 1000000000);
		tv.tv_usec = (suseconds_t)(left % 1000000000 / 1000);
	}
	return event_add(&c->ev, &tv);
}

/* Closes without TIME_WAIT: an abortive close is fine for a check. */
static void chk_close(struct chk *c)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (c->fd < 0)
		return;
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	c->fd = -1;
}

static void chk_destroy(struct chk *c)
{
	if (c->dns)
		evdns_getaddrinfo_cancel(c->dns); /* its callback comes, and leaves c alone */
	event_del(&c->ev);
	SSL_free(c->ssl); /* no close_notify: the close below is abortive anyway */
	chk_close(c);
	free(c->body);
	free(c);
}

/* Last act of a callback: the check is gone before done runs, so done may
 * start new checks freely; only the body lives on until done returns. */
static void chk_finish(struct chk *c)
{
	struct chk_outcome out = c->res;
	chk_done_fn done = c->done;
	void *arg = c->arg;
	uint8_t *body = NULL;

	if (out.result == CHK_OK && c->judge->capture_body && c->body && c->ans.body_len > 0) {
		body = c->body;
		body[c->ans.body_len] = '\0';
		out.body = (const char *)body;
		out.body_len = c->ans.body_len;
		c->body = NULL;
	}
	chk_destroy(c);
	done(arg, &out);
	free(body);
}

/* Goes as far as what the socket is known to allow: each step changes the
 * state or uses up a readiness, or there is nothing to do until the next
 * edge. */
static void chk_io(struct chk *c)
{
	for (;;) {
		uint8_t state = c->state, phase = c->phase, ready = c->ready;

		if (state == CHK_ST_CONNECTING && ready)
			chk_connected(c); /* done, or failed: either way an edge */
		else if (state == CHK_ST_SENDING && (ready & CHK_CAN_WRITE))
			c->ssl ? chk_tls_io(c) : chk_send(c);
		else if (state == CHK_ST_READING && (ready & CHK_CAN_READ))
			c->ssl ? chk_tls_io(c) : chk_recv(c);
		else
			return;
		if (c->state == state && c->phase == phase && c->ready == ready)
			return; /* no step made: wait for the kernel */
	}
}

static void chk_cb(evutil_socket_t fd, short what, void *arg)
{
	struct chk *c = arg;

	if (c->state != CHK_ST_DONE) {
		/* A socket that became ready is served even when its deadline
		 * passed in the same loop turn: a late loop is our delay, not
		 * the proxy's. */
		if ((what & EV_TIMEOUT) && !(what & (EV_READ | EV_WRITE))) {
			chk_end(c, CHK_TIMEOUT, 0);
		} else {
			if (what & EV_READ)
				c->ready |= CHK_CAN_READ;
			if (what & EV_WRITE)
				c->ready |= CHK_CAN_WRITE;
			chk_io(c);
		}
	}
	/* A persistent event's timer restarts at each callback: put the
	 * deadline back where it was. */
	if (c->state != CHK_ST_DONE && chk_arm(c) < 0)
		chk_end(c, CHK_LOCAL_ERR, ENOMEM);
	if (c->state == CHK_ST_DONE)
		chk_finish(c);
}

/* connect() failed at once for a reason that is the proxy's, or our
 * network's (no route): report it from the loop, as the contract wants. */
static bool chk_connect_err_is_reported(int err)
{
	enum chk_result r = chk_errno_result(err);

	return r == CHK_REFUSED || r == CHK_TIMEOUT || r == CHK_UNREACHABLE || err == ECONNRESET;
}

/* EADDRNOTAVAIL from connect() is either our ephemeral ports running out
 * (our overload: requeue, lower the limit) or a host with no address of
 * the destination's family to send from (an IPv6 proxy on an IPv4-only
 * host: unreachable). A UDP connect() to the same address asks the kernel
 * for a route and a source address without using a TCP port or sending
 * anything: if that fails too, the family has no route here. Runs only on
 * that error, so it costs nothing on the way of a normal check. */
static bool chk_family_unroutable(const struct sockaddr *addr, socklen_t len)
{
	int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool unroutable;

	if (fd < 0)
		return errno == EAFNOSUPPORT;
	unroutable = connect(fd, addr, len) < 0 &&
		     (errno == EADDRNOTAVAIL || errno == ENETUNREACH || errno == EAFNOSUPPORT);
	close(fd);
	return unroutable;
}

static struct chk *chk_alloc(const struct chk_target *t, const struct chk_judge *judge,
			     const struct chk_opts *opts, chk_done_fn done, void *arg)
{
	const struct chk_proto *proto = chk_proto_for(t, judge);
	struct chk *c;

	if (!proto) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c) + proto->msg_size(t, judge));
	if (!c)
		return NULL;
	c->proto = proto;
	c->judge = judge;
	c->opts = opts ? opts : &chk_opts_default;
	c->done = done;
	c->arg = arg;
	c->fd = -1;
	return c;
}

/* The outcome is set already: done is called from the loop, as the
 * contract wants, never from inside chk_start. */
static void chk_report_soon(struct chk *c)
{
	struct event_base *base = event_get_base(&c->ev);

	event_del(&c->ev);
	event_assign(&c->ev, base, -1, 0, chk_cb, c);
	event_active(&c->ev, EV_TIMEOUT, 1);
}

/* Connects to the proxy and waits on the socket: 0, or -errno when our
 * side failed (nothing is left open then). A refusal at once is the
 * proxy's outcome, reported from the loop. */
static int chk_connect(struct chk *c, const struct sockaddr *addr, socklen_t len)
{
	struct event_base *base = event_get_base(&c->ev);
	int err;

	c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0 && errno != EAFNOSUPPORT)
		return -errno;
	c->state = CHK_ST_CONNECTING;
	err = c->fd < 0 ? EAFNOSUPPORT : 0; /* this host has no such family at all */
	if (!err && connect(c->fd, addr, len) < 0 && errno != EINPROGRESS && errno != EINTR)
		err = errno;
	if (err) {
		chk_close(c);
		if (err == EADDRNOTAVAIL && chk_family_unroutable(addr, len)) {
			chk_end(c, CHK_UNREACHABLE, err);
			chk_report_soon(c);
			return 0;
		}
		if (!chk_connect_err_is_reported(err))
			return -err;
		chk_end_errno(c, err);
		chk_report_soon(c);
		return 0;
	}
	event_del(&c->ev); /* the deadline while resolving, if any */
	event_assign(&c->ev, base, c->fd, EV_READ | EV_WRITE | EV_PERSIST | EV_ET, chk_cb, c);
	if (chk_arm(c) < 0) {
		chk_close(c);
		return -ENOMEM;
	}
	return 0;
}

/* The first IPv4 address of a resolved name, else the first IPv6 one. */
static const struct evutil_addrinfo *chk_pick(const struct evutil_addrinfo *ai)
{
	const struct evutil_addrinfo *v6 = NULL;

	for (; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			return ai;
		if (ai->ai_family == AF_INET6 && !v6)
			v6 = ai;
	}
	return v6;
}

/* The name's answer, from the loop or from inside evdns_getaddrinfo (a
 * name in /etc/hosts). A name that does not exist leaves the proxy
 * unreachable; a resolver that does not answer is a timeout, tried again
 * like one. Our own failure to connect is reported like any local error. */
static void chk_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	const struct evutil_addrinfo *ai = result == 0 ? chk_pick(res) : NULL;
	struct chk *c = arg;
	struct sockaddr_storage ss;
	int err;

	if (result == EVUTIL_EAI_CANCEL)
		goto out; /* the check is gone */
	c->dns = NULL;
	if (!ai || ai->ai_addrlen > sizeof(ss)) {
		if (result == EVUTIL_EAI_AGAIN || result == EVUTIL_EAI_FAIL)
			chk_end(c, CHK_TIMEOUT, 0);
		else if (result == EVUTIL_EAI_MEMORY)
			chk_end(c, CHK_LOCAL_ERR, ENOMEM);
		else
			chk_end(c, CHK_REFUSED, EHOSTUNREACH);
		chk_report_soon(c);
		goto out;
	}
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(c->port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->port);
	err = chk_connect(c, (const struct sockaddr *)&ss, (socklen_t)ai->ai_addrlen);
	if (err) {
		chk_end(c, CHK_LOCAL_ERR, -err);
		chk_report_soon(c);
	}
out:
	if (res)
		evutil_freeaddrinfo(res);
}

/* Asks for the proxy's name; the connect timeout covers the answer. */
static int chk_resolve(struct chk *c, const struct chk_target *t)
{
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
	};
	struct evdns_getaddrinfo_request *req;

	if (!c->opts->dns || !t->host || !t->host[0]) {
		chk_end(c, CHK_REFUSED, EHOSTUNREACH);
		chk_report_soon(c);
		return 0;
	}
	c->port = t->port;
	c->state = CHK_ST_RESOLVING;
	if (chk_arm(c) < 0)
		return -ENOMEM;
	req = evdns_getaddrinfo(c->opts->dns, t->host, NULL, &hints, chk_resolved, c);
	if (c->state != CHK_ST_RESOLVING)
		return 0; /* answered already, from /etc/hosts */
	if (!req) {
		chk_end(c, CHK_LOCAL_ERR, ENOMEM);
		chk_report_soon(c);
	}
	c->dns = req;
	return 0;
}

struct chk *chk_start(struct event_base *base, const struct chk_target *target,
		      const struct chk_judge *judge, const struct chk_opts *opts, chk_done_fn done,
		      void *arg)
{
	int family = target->addr.ss_family;
	struct chk *c;
	int err;

	if (family != AF_INET && family != AF_INET6 && family != AF_UNSPEC) {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	c = chk_alloc(target, judge, opts, done, arg);
	if (!c)
		return NULL;
	err = c->proto->build(c, target);
	if (err)
		goto out_free;
	c->start_ns = chk_now_ns();
	c->wait_ns = c->start_ns;
	event_assign(&c->ev, base, -1, 0, chk_cb, c); /* the deadline while resolving */
	if (family == AF_UNSPEC)
		err = chk_resolve(c, target);
	else
		err = chk_connect(c, (const struct sockaddr *)&target->addr, target->addrlen);
	if (err)
		goto out_free;
	return c;

out_free:
	event_del(&c->ev);
	free(c);
	errno = -err;
	return NULL;
}

void chk_cancel(struct chk *c)
{
	if (c)
		chk_destroy(c);
}
