/* gw_relay: bytes between a client and its upstream, unparsed.
 *
 * Each side's bufferevent writes; the reads are the relay's own: an
 * EV_READ event per side reads what the socket holds (up to GW_RELAY_READ
 * at a time) straight into the other side's output buffer. libevent 2.1's
 * own reads take at most 4 KiB a turn of the loop, which for a bulk
 * download is most of the gateway's CPU. A side stops reading while the
 * other's output holds GW_RELAY_HIGH bytes and starts again once that
 * drained to half, so a fast sender never fills our memory. Half-close is
 * kept: EOF from one side becomes shutdown(SHUT_WR) to the other once what
 * it was owed is written; the connection ends when both directions are
 * done, on an error of either side, or after idle_timeout_s with no byte
 * either way.
 *
 * Until the first byte comes back from the upstream, what the client sends
 * is also kept (c->replay): an upstream that closes or breaks before
 * answering, while the client still talks, has the tunnel made again
 * through another one (gw_upstream_again), which gets those bytes again.
 * An upstream killed between our "tunnel up" and the target's answer is
 * so never seen by the client. A tunnel is made again at most retries
 * times (each with up to retries + 1 upstreams to try): a target that
 * closes without a word is reached through retries + 1 tunnels, getting
 * the client's first bytes that many times, before the client sees it
 * close. A request that may not be sent twice (POST, PATCH: it may have
 * been carried out) is not.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "gw_int.h"

static struct bufferevent *other(const struct gw_conn *c, const struct bufferevent *bev)
{
	return bev == c->client ? c->up : c->client;
}

static bool *eof_of(struct gw_conn *c, const struct bufferevent *bev)
{
	return bev == c->client ? &c->client_eof : &c->up_eof;
}

static bool *shut_of(struct gw_conn *c, const struct bufferevent *bev)
{
	return bev == c->client ? &c->client_shut : &c->up_shut;
}

/* dst's source is at EOF: once dst's output is written, dst's write side
 * is shut. Ends c when both directions are done (c may be freed). */
static void maybe_shut(struct gw_conn *c, struct bufferevent *dst)
{
	if (evbuffer_get_length(bufferevent_get_output(dst)) > 0) {
		/* The write callback comes when it is all written. */
		bufferevent_setwatermark(dst, EV_WRITE, 0, 0);
		return;
	}
	if (!*shut_of(c, dst)) {
		*shut_of(c, dst) = true;
		shutdown(bufferevent_getfd(dst), SHUT_WR);
	}
	if (c->client_shut && c->up_shut)
		gw_conn_free(c);
}

/* A copy of what the client sends until the first byte comes back, for
 * the tunnel made again; past GW_REPLAY_MAX it cannot be, and is not. */
static void keep_sent(struct gw_conn *c, const void *p, size_t n)
{
	struct gw_replay *r = c->replay;

	if ((r->sent ? evbuffer_get_length(r->sent) : 0) + n > GW_REPLAY_MAX ||
	    (!r->sent && !(r->sent = evbuffer_new())) || evbuffer_add(r->sent, p, n) < 0 ||
	    !gw_replay_allowed(r->sent))
		gw_replay_free(c);
}

/* Requests that may have been carried out before an upstream died, and so
 * must not go to the target twice: an HTTP POST or PATCH at the start. A
 * TLS tunnel never gets here with its request (the server's first
 * handshake bytes end the replay before the client can send one). */
bool gw_replay_allowed(struct evbuffer *sent)
{
	static const char *const once[] = {"POST ", "PATCH "};
	size_t n = evbuffer_get_length(sent);
	const char *p = (const char *)evbuffer_pullup(sent, n < 6 ? (ssize_t)n : 6);

	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
		size_t k = strlen(once[i]);

		if (memcmp(p, once[i], n < k ? n : k) == 0 && n >= k)
			return false;
	}
	return true;
}

static struct event *pump_of(const struct gw_conn *c, const struct bufferevent *bev)
{
	return c->pump[bev == c->client ? 0 : 1];
}

/* n bytes came from src: counted, kept for a replay (from the client), or
 * ending the replay (the first byte back). */
static void came(struct gw_conn *c, const struct bufferevent *src, const void *p, size_t n)
{
	if (src == c->client) {
		gw_stats_bytes(n, 0);
		if (c->replay)
			keep_sent(c, p, n);
	} else {
		gw_stats_bytes(0, n);
		/* The first byte back: the upstream carries the tunnel. */
		gw_replay_free(c);
	}
	event_base_gettimeofday_cached(c->gw->base, &c->last);
}

/* dst's output is full: src reads no more until it drained to half. */
static void hold_if_full(struct gw_conn *c, struct bufferevent *src, struct bufferevent *dst)
{
	if (evbuffer_get_length(bufferevent_get_output(dst)) < GW_RELAY_HIGH)
		return;
	event_del(pump_of(c, src));
	bufferevent_setwatermark(dst, EV_WRITE, GW_RELAY_HIGH / 2, 0);
}

/* What src's bufferevent read before the relay took over its reads (bytes
 * that came with the request, or right after the upstream's reply). */
static void move_input(struct gw_conn *c, struct bufferevent *src)
{
	struct evbuffer *in = bufferevent_get_input(src);
	struct bufferevent *dst = other(c, src);
	size_t n = evbuffer_get_length(in);

	if (n == 0)
		return;
	came(c, src, evbuffer_pullup(in, (ssize_t)n), n);
	evbuffer_add_buffer(bufferevent_get_output(dst), in);
	hold_if_full(c, src, dst);
}

static void src_eof(struct gw_conn *c, struct bufferevent *src);
static void src_error(struct gw_conn *c, struct bufferevent *src);

/* src's socket is readable: what it holds, up to what dst may still take,
 * read straight into dst's output. */
static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gw_conn *c = arg;
	struct bufferevent *src = fd == bufferevent_getfd(c->client) ? c->client : c->up;
	struct bufferevent *dst = other(c, src);
	struct evbuffer *out = bufferevent_get_output(dst);
	size_t held = evbuffer_get_length(out);
	size_t want = held < GW_RELAY_HIGH ? GW_RELAY_HIGH - held : 0;
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	int avail = 0, nv;
	ssize_t got;

	/* What the socket holds, so the space taken fits it; 0 may be an
	 * EOF, which a read of any size tells. */
	if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
		avail = 512;
	if ((size_t)avail < want)
		want = (size_t)avail;
	if (want > GW_RELAY_READ)
		want = GW_RELAY_READ;
	if (want == 0) {
		hold_if_full(c, src, dst);
		return;
	}
	nv = evbuffer_reserve_space(out, (ev_ssize_t)want, v, 2);
	if (nv <= 0) {
		src_error(c, src);
		return;
	}
	for (int i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	got = readv(fd, iov, nv);
	if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
		evbuffer_commit_space(out, v, 0);
		return;
	}
	if (got <= 0) {
		evbuffer_commit_space(out, v, 0);
		if (got == 0)
			src_eof(c, src);
		else
			src_error(c, src);
		return;
	}
	/* The vectors say what is filled: the first fully, the second with
	 * the rest. */
	for (int i = 0, left = (int)got; i < nv; i++) {
		size_t take = (size_t)left < v[i].iov_len ? (size_t)left : v[i].iov_len;

		came(c, src, v[i].iov_base, take);
		v[i].iov_len = take;
		left -= (int)take;
	}
	evbuffer_commit_space(out, v, nv);
	hold_if_full(c, src, dst);
}

/* dst's output drained to its low watermark: its source may read again,
 * or, the source being at EOF, dst's write side is shut. */
static void relay_write_cb(struct bufferevent *dst, void *arg)
{
	struct gw_conn *c = arg;
	struct bufferevent *src = other(c, dst);

	event_base_gettimeofday_cached(c->gw->base, &c->last);
	if (*eof_of(c, src)) {
		maybe_shut(c, dst);
		return;
	}
	bufferevent_setwatermark(dst, EV_WRITE, 0, 0);
	event_add(pump_of(c, src), NULL);
}

/* src said EOF. The upstream before its first byte back is the death the
 * replay hides (while the client still talks: once it closed its side, a
 * close is the answer); else dst's write side is shut once written. */
static void src_eof(struct gw_conn *c, struct bufferevent *src)
{
	if (src == c->up && c->replay && !c->client_eof && c->replay->agains < c->gw->retries) {
		gw_upstream_again(c);
		return;
	}
	*eof_of(c, src) = true;
	event_del(pump_of(c, src));
	maybe_shut(c, other(c, src));
}

/* A read or write of src failed (reset, a write to a closed peer). */
static void src_error(struct gw_conn *c, struct bufferevent *src)
{
	if (src == c->up && c->replay && !c->client_eof && c->replay->agains < c->gw->retries) {
		gw_upstream_again(c);
		return;
	}
	gw_conn_free(c);
}

/* The bufferevents only write now: their events are write errors. */
static void relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	src_error(arg, bev);
}

/* The read event of a side, made once per socket. */
static bool pump_new(struct gw_conn *c, int i, struct bufferevent *bev)
{
	if (c->pump[i])
		event_free(c->pump[i]);
	c->pump[i] = event_new(c->gw->base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, pump_cb,
			       c);
	return c->pump[i] != NULL;
}

void gw_relay_start(struct gw_conn *c)
{
	c->state = GW_ST_RELAY;
	event_base_gettimeofday_cached(c->gw->base, &c->last);
	if ((!c->pump[0] && !pump_new(c, 0, c->client)) || !pump_new(c, 1, c->up)) {
		gw_conn_free(c);
		return;
	}
	bufferevent_disable(c->client, EV_READ);
	bufferevent_disable(c->up, EV_READ);
	bufferevent_setcb(c->client, NULL, relay_write_cb, relay_event_cb, c);
	bufferevent_setcb(c->up, NULL, relay_write_cb, relay_event_cb, c);
	bufferevent_set_max_single_write(c->client, GW_RELAY_HIGH);
	bufferevent_set_max_single_write(c->up, GW_RELAY_HIGH);
	bufferevent_enable(c->client, EV_WRITE);
	bufferevent_enable(c->up, EV_WRITE);
	evtimer_add(c->timer, &c->gw->idle_timeout);
	if (!c->client_eof)
		event_add(c->pump[0], NULL);
	event_add(c->pump[1], NULL);
	move_input(c, c->client);
	move_input(c, c->up);
	if (c->client_eof)
		/* Closed its side before the tunnel was made again. */
		maybe_shut(c, c->up);
}
