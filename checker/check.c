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
 *
 * The files: this one has the check's life (start, the event, the socket,
 * the state machine, the judge's request and answer); check_http.c,
 * check_socks4.c and check_socks5.c one protocol each; check_tls.c the TLS
 * to an https judge; check_dns.c a proxy given by name. check_int.h is
 * what they share.
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

#include "check_int.h"
#include "http_answer.h"
#include "echo.h"
#include "socks.h"

/* Used when the caller passes no options: every field at its default. */
static const struct chk_opts chk_opts_default = {0};

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
void chk_end_why(struct chk *c, enum chk_result r, int err, enum chk_why why,
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

void chk_end(struct chk *c, enum chk_result r, int err)
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

void chk_end_errno(struct chk *c, int err)
{
	enum chk_result r = chk_errno_result(err);

	chk_end(c, r, r == CHK_TIMEOUT ? 0 : err);
}

void chk_send_msg(struct chk *c, const void *msg, size_t len)
{
	c->out = msg;
	c->out_len = (uint32_t)len;
	c->out_off = 0;
	c->state = CHK_ST_SENDING;
}

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
void chk_token(char *dst)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = chk_random64();

	for (int i = 0; i < CHK_TOKEN_LEN; i++, v >>= 4)
		dst[i] = hex[v & 15];
}

/* The handshake is over: send this check's request, read the judge's
 * answer, which must echo the request's token if it echoes any. */
void chk_begin_answer(struct chk *c)
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
bool chk_peer_spoke_first(struct chk *c)
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
void chk_tunnel_up(struct chk *c)
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
bool chk_status_is_auth(const struct chk *c, uint16_t status)
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

/* ---- the judge's request, the same through every protocol ---- */

/* Bytes of this check's request to the judge: the judge's start, the
 * credentials for a plain HTTP proxy, the User-Agent with the token. */
size_t chk_req_size(const struct chk_target *t, const struct chk_judge *j, bool absolute)
{
	size_t head = absolute ? j->req_absolute_len + chk_auth_size(t) : j->req_origin_len;

	return head + sizeof(chk_ua) - 1 + CHK_TOKEN_LEN + sizeof(chk_req_end) - 1;
}

/* Builds the request as the tail's last message (the others are built
 * already): absolute, with the proxy's credentials, for a plain HTTP proxy;
 * in origin form for a tunnel. A fresh token per check: a judge that echoes
 * it proves that this request reached it. */
int chk_req_build(struct chk *c, const struct chk_target *t, bool absolute)
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
void chk_consume_answer(struct chk *c, const uint8_t *p, size_t n)
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

void chk_eof(struct chk *c)
{
	if (c->phase == CHK_PH_ANSWER) {
		chk_answer_eof(&c->ans);
		chk_answer_over(c);
	} else {
		chk_end(c, CHK_RESET, 0);
	}
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
int chk_arm(struct chk *c)
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
void chk_report_soon(struct chk *c)
{
	struct event_base *base = event_get_base(&c->ev);

	event_del(&c->ev);
	event_assign(&c->ev, base, -1, 0, chk_cb, c);
	event_active(&c->ev, EV_TIMEOUT, 1);
}

/* Connects to the proxy and waits on the socket: 0, or -errno when our
 * side failed (nothing is left open then). A refusal at once is the
 * proxy's outcome, reported from the loop. */
int chk_connect(struct chk *c, const struct sockaddr *addr, socklen_t len)
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

