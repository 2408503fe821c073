/* gw_relay: bytes between a client and its upstream, unparsed.
 *
 * A pair of bufferevents: what one side reads is moved (not copied) into
 * the other's output. A side stops reading while the other's output holds
 * GW_RELAY_HIGH bytes and starts again once that drained to half, so a
 * fast sender never fills our memory. Half-close is kept: EOF from one
 * side becomes shutdown(SHUT_WR) to the other once what it was owed is
 * written; the connection ends when both directions are done, on an error
 * of either side, or after idle_timeout_s with no byte either way.
 *
 * Until the first byte comes back from the upstream, what the client sends
 * is also kept (c->replay): an upstream that closes or breaks before
 * answering, while the client still talks, has the tunnel made again
 * through another one (gw_upstream_again), which gets those bytes again.
 * An upstream killed between our "tunnel up" and the target's answer is
 * so never seen by the client. The cost: a target that closes without a
 * word is tried through retries + 1 upstreams before the client sees it
 * close, and gets the client's first bytes that many times.
 */
#include <string.h>
#include <sys/socket.h>

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
static void keep_sent(struct gw_conn *c, struct evbuffer *in, size_t n)
{
	struct gw_replay *r = c->replay;

	if ((r->sent ? evbuffer_get_length(r->sent) : 0) + n > GW_REPLAY_MAX ||
	    (!r->sent && !(r->sent = evbuffer_new())) ||
	    evbuffer_add(r->sent, evbuffer_pullup(in, (ssize_t)n), n) < 0 ||
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

static void relay_read_cb(struct bufferevent *src, void *arg)
{
	struct gw_conn *c = arg;
	struct bufferevent *dst = other(c, src);
	struct evbuffer *in = bufferevent_get_input(src), *out = bufferevent_get_output(dst);
	size_t n = evbuffer_get_length(in);

	if (n == 0)
		return;
	if (src == c->client) {
		gw_stats_bytes(n, 0);
		if (c->replay)
			keep_sent(c, in, n);
	} else {
		gw_stats_bytes(0, n);
		/* The first byte back: the upstream carries the tunnel. */
		gw_replay_free(c);
	}
	evbuffer_add_buffer(out, in);
	event_base_gettimeofday_cached(c->gw->base, &c->last);
	if (evbuffer_get_length(out) >= GW_RELAY_HIGH) {
		bufferevent_disable(src, EV_READ);
		bufferevent_setwatermark(dst, EV_WRITE, GW_RELAY_HIGH / 2, 0);
	}
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
	bufferevent_enable(src, EV_READ);
}

static void relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct gw_conn *c = arg;

	if (what & BEV_EVENT_EOF)
		/* What it sent before the EOF is moved on first. */
		relay_read_cb(bev, c);
	if (bev == c->up && c->replay && !c->client_eof && c->replay->agains < c->gw->retries) {
		/* Closed or broken before a byte came back, while the client
		 * still talks (once it closed its side, a close is the answer). */
		gw_upstream_again(c);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		*eof_of(c, bev) = true;
		bufferevent_disable(bev, EV_READ);
		maybe_shut(c, other(c, bev));
		return;
	}
	/* An error (reset, a write to a closed peer): nothing more to do. */
	gw_conn_free(c);
}

void gw_relay_start(struct gw_conn *c)
{
	c->state = GW_ST_RELAY;
	event_base_gettimeofday_cached(c->gw->base, &c->last);
	bufferevent_setwatermark(c->client, EV_READ, 0, 0);
	bufferevent_setcb(c->client, relay_read_cb, relay_write_cb, relay_event_cb, c);
	bufferevent_setcb(c->up, relay_read_cb, relay_write_cb, relay_event_cb, c);
	evtimer_add(c->timer, &c->gw->idle_timeout);
	bufferevent_enable(c->client, EV_READ | EV_WRITE);
	bufferevent_enable(c->up, EV_READ | EV_WRITE);
	/* Bytes that came with the request (the client did not wait), and
	 * any the upstream sent right after its reply. */
	relay_read_cb(c->client, c);
	relay_read_cb(c->up, c);
}
