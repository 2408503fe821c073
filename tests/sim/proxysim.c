/* proxysim: many simulated proxies served from one process, with a known
 * truth, for scale tests and the benchmark.
 *
 * Proxy i has its own loopback address 127.x.y.z and the port of its family.
 * A few listening sockets on 0.0.0.0 (one per family: HTTP, SOCKS4, SOCKS5,
 * SOCKS5 with user/pass, the failure kinds) take every connection; the
 * address the client dialed (getsockname on the accepted socket) says which
 * proxy it reached, and so how to behave. A port that is bound but never
 * listens serves the "refused" proxies. The simulator writes the list (every
 * proxy as a URI line), the truth (the URIs a correct checker finds alive)
 * and, if asked, each proxy's kind. One more port is a judge that answers
 * direct requests, for a checker that probes its judge before trusting it.
 *
 * Alive proxies do not fetch anything: having read the request they answer
 * as the judge would, with the expected text and the address the judge would
 * have seen. Connections are raw descriptors with one event and a few
 * counters each (no buffers kept between reads), so 20,000 at once cost a
 * few MB. Not here: IPv6, TLS, real forwarding.
 *
 *   proxysim --count N --seed S --list FILE --truth FILE [--kinds FILE]
 *            [--judge-file FILE] [--port-base P] [--mix KIND=W,...]
 *            [--slow-ms MS] [--expect TEXT] [--ready-fd FD]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#define SIM_ACCEPT_BURST 512
#define SIM_BACKLOG 65535
#define SIM_PAUSE_MS 50
#define SIM_IDLE_MS 60000
#define SIM_HEAD_MAX 8192
#define SIM_NAME_MAX 255
#define SIM_OCTETS 254u
#define SIM_COUNT_MAX (SIM_OCTETS * SIM_OCTETS * SIM_OCTETS)
#define SIM_PORT_LOW 10000
#define SIM_PORT_HIGH 32767
#define SIM_ANSWER_MAX 1024

/* The listening sockets, at port base + slot. */
enum sim_slot {
	SLOT_HTTP,
	SLOT_SOCKS4,
	SLOT_SOCKS5,
	SLOT_SOCKS5_AUTH,
	SLOT_FAIL,
	SLOT_REFUSED, /* bound, never listening: connects are refused */
	SLOT_JUDGE,   /* the judge itself, asked directly */
	SLOT_COUNT
};

enum sim_kind {
	K_ALIVE_HTTP,
	K_ALIVE_SOCKS4,
	K_ALIVE_SOCKS5,
	K_ALIVE_SOCKS5_AUTH,
	K_SLOW,
	K_REFUSED,
	K_BLACKHOLE,
	K_LIAR,
	K_GARBAGE,
	K_EARLY_CLOSE,
	K_COUNT,
	K_JUDGE = K_COUNT /* a connection to the judge port: no proxy */
};

static const char *const sim_kind_names[K_COUNT] = {
	[K_ALIVE_HTTP] = "alive_http",	 [K_ALIVE_SOCKS4] = "alive_socks4",
	[K_ALIVE_SOCKS5] = "alive_socks5", [K_ALIVE_SOCKS5_AUTH] = "alive_socks5_auth",
	[K_SLOW] = "slow",		 [K_REFUSED] = "refused",
	[K_BLACKHOLE] = "blackhole",	 [K_LIAR] = "liar",
	[K_GARBAGE] = "garbage",	 [K_EARLY_CLOSE] = "early_close",
};

/* The realistic mix: 30% alive, 20% blackholes, 40% refused, 10% broken. */
static const double sim_default_mix[K_COUNT] = {
	[K_ALIVE_HTTP] = 10, [K_ALIVE_SOCKS4] = 5, [K_ALIVE_SOCKS5] = 5,
	[K_ALIVE_SOCKS5_AUTH] = 5, [K_SLOW] = 5, [K_REFUSED] = 40,
	[K_BLACKHOLE] = 20, [K_LIAR] = 4, [K_GARBAGE] = 3,
	[K_EARLY_CLOSE] = 3,
};

enum sim_scheme { SCH_HTTP, SCH_SOCKS4, SCH_SOCKS5, SCH_COUNT };

static const char *const sim_scheme_names[SCH_COUNT] = { "http", "socks4", "socks5" };

/* Where a connection is in its conversation. */
enum sim_phase {
	PH_S4_HEAD,	/* VN CD DSTPORT DSTIP: 8 bytes */
	PH_S4_USER,	/* user id up to NUL */
	PH_S4_HOST,	/* SOCKS4a host up to NUL */
	PH_S5_GREET,	/* VER NMETHODS */
	PH_S5_METHODS,
	PH_S5_AUTH_VER, /* RFC 1929 */
	PH_S5_ULEN,
	PH_S5_USER,
	PH_S5_PLEN,
	PH_S5_PASS,
	PH_S5_REQ,  /* VER CMD RSV ATYP */
	PH_S5_DLEN, /* domain name length */
	PH_S5_ADDR, /* address and port */
	PH_HTTP_HEAD,
	PH_WRITE, /* an answer is being sent */
	PH_SLOW,  /* waiting before the judge's answer */
	PH_SINK,  /* blackhole: reads, never answers */
	PH_CLOSE, /* as the phase after an answer: close once it is sent */
};

/* What is being sent; rendered again on every write, so nothing is kept. */
enum sim_answer {
	ANS_S4_GRANT,
	ANS_S4_REJECT,
	ANS_S5_NOAUTH,
	ANS_S5_USERPASS,
	ANS_S5_NOMETHOD,
	ANS_S5_AUTH_OK,
	ANS_S5_AUTH_FAIL,
	ANS_S5_GRANT,
	ANS_S5_BADCMD,
	ANS_CONNECT_OK,
	ANS_JUDGE,
	ANS_LIAR,
	ANS_GARBAGE,
};

/* What feeding a byte leads to. */
enum sim_act { ACT_MORE, ACT_REPLY, ACT_SLOW, ACT_CLOSE };

/* flag bits of a connection */
#define F_SOCKS4A 0x01	    /* DSTIP 0.0.0.x: a host name follows */
#define F_NOAUTH 0x02	    /* SOCKS5 method 0 offered */
#define F_USERPASS 0x04	    /* SOCKS5 method 2 offered */
#define F_CRED_OK 0x08	    /* the credentials match so far */
#define F_BAD_CMD 0x10	    /* a SOCKS5 command other than CONNECT */
#define F_NOT_CONNECT 0x20 /* the HTTP head does not start "CONNECT " */

struct sim_opts {
	uint32_t count;
	uint64_t seed;
	const char *list, *truth, *kinds, *judge_file;
	unsigned port_base; /* 0: find a free block */
	double mix[K_COUNT];
	int slow_ms;
	const char *expect;
	int ready_fd; /* -1: print "ready" on stdout */
};

struct sim_listener {
	struct sim *sim;
	int fd;
	enum sim_slot slot;
	struct event *ev; /* NULL for the refused slot */
};

struct sim_stats {
	uint64_t accepted, rejected, judged, paused, dropped;
};

struct sim {
	struct sim_opts o;
	uint8_t *kind;	 /* per proxy: enum sim_kind */
	uint8_t *scheme; /* per proxy: enum sim_scheme */
	struct event_base *base;
	struct sim_listener lis[SLOT_COUNT];
	struct event *resume; /* re-arms the listeners after a pause */
	const struct timeval *idle;
	struct sim_conn *conns; /* every open connection, to free at exit */
	struct sim_stats st;
};

/* One accepted connection. index is the proxy's, or for the judge the
 * client's address; pos/need count bytes of the field being read. */
struct sim_conn {
	struct event ev;
	struct sim *sim;
	struct sim_conn *prev, *next;
	int fd;
	uint32_t index;
	uint8_t kind, scheme, phase, after, answer, flags, nl;
	short armed; /* the events ev was last assigned with; 0 for the timer */
	uint16_t pos, need, sent;
};

/* ---- the proxies ---- */

static uint64_t sim_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t sim_rand(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return sim_mix64(*state);
}

/* 127.x.y.z in host order, every octet in 1..254: never 127.0.0.x. */
static uint32_t sim_addr_of(uint32_t i)
{
	uint32_t z = i % SIM_OCTETS + 1, y = i / SIM_OCTETS % SIM_OCTETS + 1;
	uint32_t x = i / (SIM_OCTETS * SIM_OCTETS) + 1;

	return 127u << 24 | x << 16 | y << 8 | z;
}

/* The proxy at a (host order), or -1 if it is none of ours. */
static int64_t sim_index_of(const struct sim *s, uint32_t a)
{
	uint32_t x = a >> 16 & 0xff, y = a >> 8 & 0xff, z = a & 0xff;
	uint32_t i;

	if (a >> 24 != 127 || !x || !y || !z || x == 255 || y == 255 || z == 255)
		return -1;
	i = ((x - 1) * SIM_OCTETS + (y - 1)) * SIM_OCTETS + (z - 1);
	return i < s->o.count ? (int64_t)i : -1;
}

static enum sim_slot sim_slot_of(enum sim_kind k)
{
	switch (k) {
	case K_ALIVE_HTTP:
	case K_SLOW:
		return SLOT_HTTP;
	case K_ALIVE_SOCKS4:
		return SLOT_SOCKS4;
	case K_ALIVE_SOCKS5:
		return SLOT_SOCKS5;
	case K_ALIVE_SOCKS5_AUTH:
		return SLOT_SOCKS5_AUTH;
	case K_REFUSED:
		return SLOT_REFUSED;
	default:
		return SLOT_FAIL;
	}
}

static bool sim_kind_alive(enum sim_kind k)
{
	return k <= K_SLOW;
}

/* The credentials of a SOCKS5-with-auth proxy, derived from its index. */
static void sim_creds(const struct sim *s, uint32_t i, char user[16], char pass[16])
{
	snprintf(user, 16, "u%" PRIu32, i);
	snprintf(pass, 16, "p%08" PRIx32, (uint32_t)sim_mix64(s->o.seed ^ ((uint64_t)i << 20)));
}

static void sim_write_uri(const struct sim *s, FILE *f, uint32_t i)
{
	uint32_t a = sim_addr_of(i);
	enum sim_kind k = s->kind[i];
	char user[16], pass[16];

	fprintf(f, "%s://", sim_scheme_names[s->scheme[i]]);
	if (k == K_ALIVE_SOCKS5_AUTH) {
		sim_creds(s, i, user, pass);
		fprintf(f, "%s:%s@", user, pass);
	}
	fprintf(f, "%u.%u.%u.%u:%u\n", a >> 24, a >> 16 & 0xff, a >> 8 & 0xff, a & 0xff,
		s->o.port_base + sim_slot_of(k));
}

/* How many proxies of each kind: the mix's shares of count, by largest
 * remainder so that they add up exactly. */
static void sim_kind_counts(const struct sim *s, uint32_t n[K_COUNT])
{
	double total = 0, rest[K_COUNT];
	uint32_t given = 0;

	for (int k = 0; k < K_COUNT; k++)
		total += s->o.mix[k];
	for (int k = 0; k < K_COUNT; k++) {
		double share = s->o.mix[k] / total * s->o.count;

		n[k] = (uint32_t)share;
		rest[k] = share - n[k];
		given += n[k];
	}
	while (given < s->o.count) {
		int best = 0;

		for (int k = 1; k < K_COUNT; k++)
			if (rest[k] > rest[best])
				best = k;
		n[best]++;
		rest[best] = -1;
		given++;
	}
}

/* Kinds in a seeded random order; schemes for the failure kinds drawn too. */
static int sim_build_table(struct sim *s)
{
	uint32_t n[K_COUNT], i = 0;
	uint64_t rng = s->o.seed;

	s->kind = malloc(s->o.count);
	s->scheme = malloc(s->o.count);
	if (!s->kind || !s->scheme)
		return -ENOMEM;
	sim_kind_counts(s, n);
	for (int k = 0; k < K_COUNT; k++)
		for (uint32_t c = 0; c < n[k]; c++)
			s->kind[i++] = (uint8_t)k;
	for (i = s->o.count; i > 1; i--) {
		uint32_t j = (uint32_t)(sim_rand(&rng) % i);
		uint8_t t = s->kind[i - 1];

		s->kind[i - 1] = s->kind[j];
		s->kind[j] = t;
	}
	for (i = 0; i < s->o.count; i++) {
		switch (s->kind[i]) {
		case K_ALIVE_HTTP:
		case K_SLOW:
			s->scheme[i] = SCH_HTTP;
			break;
		case K_ALIVE_SOCKS4:
			s->scheme[i] = SCH_SOCKS4;
			break;
		case K_ALIVE_SOCKS5:
		case K_ALIVE_SOCKS5_AUTH:
			s->scheme[i] = SCH_SOCKS5;
			break;
		default:
			s->scheme[i] = (uint8_t)(sim_rand(&rng) % SCH_COUNT);
		}
	}
	return 0;
}

static int sim_fclose(FILE *f, int rc)
{
	if (f && fclose(f) != 0 && rc == 0)
		return -errno;
	return rc;
}

/* The URL of the judge, one line. */
static int sim_write_judge(const struct sim *s)
{
	FILE *f = fopen(s->o.judge_file, "w");

	if (!f)
		return -errno;
	fprintf(f, "http://127.0.0.1:%u/\n", s->o.port_base + SLOT_JUDGE);
	return sim_fclose(f, 0);
}

/* The list, the truth, and the kinds ("KIND URI" lines) if asked for. */
static int sim_write_files(const struct sim *s)
{
	FILE *list, *truth, *kinds = NULL;
	int rc = 0;

	list = fopen(s->o.list, "w");
	if (!list)
		return -errno;
	truth = fopen(s->o.truth, "w");
	if (!truth) {
		rc = -errno;
		goto out_list;
	}
	if (s->o.kinds && !(kinds = fopen(s->o.kinds, "w"))) {
		rc = -errno;
		goto out_truth;
	}
	for (uint32_t i = 0; i < s->o.count; i++) {
		sim_write_uri(s, list, i);
		if (sim_kind_alive(s->kind[i]))
			sim_write_uri(s, truth, i);
		if (kinds) {
			fprintf(kinds, "%s ", sim_kind_names[s->kind[i]]);
			sim_write_uri(s, kinds, i);
		}
	}
	rc = sim_fclose(kinds, rc);
	if (rc == 0 && s->o.judge_file)
		rc = sim_write_judge(s);
out_truth:
	rc = sim_fclose(truth, rc);
out_list:
	return sim_fclose(list, rc);
}

/* ---- answers ---- */

static size_t sim_put(char *buf, size_t size, const void *src, size_t len)
{
	if (len > size)
		len = size;
	memcpy(buf, src, len);
	return len;
}

static size_t sim_render_page(const struct sim_conn *c, char *buf, size_t size, bool liar)
{
	uint32_t a = c->kind == K_JUDGE ? c->index : sim_addr_of(c->index);
	char body[512];
	int blen, n;

	if (liar)
		blen = snprintf(body, sizeof(body),
				"<html><body><h1>Welcome!</h1>"
				"This domain is parked.</body></html>\n");
	else
		blen = snprintf(body, sizeof(body), "%s\nREMOTE_ADDR = %u.%u.%u.%u\n",
				c->sim->o.expect, a >> 24, a >> 16 & 0xff, a >> 8 & 0xff,
				a & 0xff);
	n = snprintf(buf, size,
		     "HTTP/1.1 200 OK\r\n"
		     "Content-Type: text/plain\r\n"
		     "Content-Length: %d\r\n"
		     "Connection: close\r\n"
		     "\r\n%s",
		     blen, body);
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

/* Random bytes that are the same each time they are rendered. */
static size_t sim_render_garbage(const struct sim_conn *c, char *buf, size_t size)
{
	uint64_t rng = c->sim->o.seed ^ (uint64_t)c->index << 32;
	size_t len = 64 + sim_rand(&rng) % 448;

	if (len > size)
		len = size;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t r = sim_rand(&rng);

		memcpy(buf + i, &r, len - i < 8 ? len - i : 8);
	}
	return len;
}

static size_t sim_render(const struct sim_conn *c, char *buf, size_t size)
{
	static const uint8_t s4_grant[] = { 0, 0x5a, 0, 0, 0, 0, 0, 0 };
	static const uint8_t s4_reject[] = { 0, 0x5b, 0, 0, 0, 0, 0, 0 };
	static const uint8_t s5_grant[] = { 5, 0, 0, 1, 0, 0, 0, 0, 0, 0 };
	static const uint8_t s5_badcmd[] = { 5, 7, 0, 1, 0, 0, 0, 0, 0, 0 };
	static const char connect_ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	switch (c->answer) {
	case ANS_S4_GRANT:
		return sim_put(buf, size, s4_grant, sizeof(s4_grant));
	case ANS_S4_REJECT:
		return sim_put(buf, size, s4_reject, sizeof(s4_reject));
	case ANS_S5_NOAUTH:
		return sim_put(buf, size, "\x05\x00", 2);
	case ANS_S5_USERPASS:
		return sim_put(buf, size, "\x05\x02", 2);
	case ANS_S5_NOMETHOD:
		return sim_put(buf, size, "\x05\xff", 2);
	case ANS_S5_AUTH_OK:
		return sim_put(buf, size, "\x01\x00", 2);
	case ANS_S5_AUTH_FAIL:
		return sim_put(buf, size, "\x01\x01", 2);
	case ANS_S5_GRANT:
		return sim_put(buf, size, s5_grant, sizeof(s5_grant));
	case ANS_S5_BADCMD:
		return sim_put(buf, size, s5_badcmd, sizeof(s5_badcmd));
	case ANS_CONNECT_OK:
		return sim_put(buf, size, connect_ok, sizeof(connect_ok) - 1);
	case ANS_JUDGE:
		return sim_render_page(c, buf, size, false);
	case ANS_LIAR:
		return sim_render_page(c, buf, size, true);
	default:
		return sim_render_garbage(c, buf, size);
	}
}

/* ---- one connection ---- */

static void sim_conn_cb(evutil_socket_t fd, short what, void *arg);

static void sim_conn_free(struct sim_conn *c)
{
	struct sim *s = c->sim;

	if (event_initialized(&c->ev))
		event_del(&c->ev);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* Waits for events on the socket (0: a timer of ms instead). */
static int sim_arm(struct sim_conn *c, short events, int ms)
{
	struct sim *s = c->sim;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (c->armed == events && events)
		return 0;
	if (event_initialized(&c->ev))
		event_del(&c->ev);
	if (events)
		event_assign(&c->ev, s->base, c->fd, events | EV_PERSIST, sim_conn_cb, c);
	else
		event_assign(&c->ev, s->base, -1, 0, sim_conn_cb, c);
	c->armed = events;
	return event_add(&c->ev, events ? s->idle : &tv) ? -ENOMEM : 0;
}

static void sim_enter(struct sim_conn *c, enum sim_phase ph, uint16_t need)
{
	c->phase = (uint8_t)ph;
	c->pos = 0;
	c->need = need;
	c->nl = 0;
	c->flags &= F_CRED_OK;
}

/* Queues an answer; a garbage proxy sends its bytes instead of its first. */
static enum sim_act sim_reply(struct sim_conn *c, enum sim_answer a, enum sim_phase after)
{
	if (c->kind == K_GARBAGE) {
		a = ANS_GARBAGE;
		after = PH_CLOSE;
	}
	c->answer = (uint8_t)a;
	c->after = (uint8_t)after;
	return ACT_REPLY;
}

/* The client's proxy handshake is over: grant, and read its HTTP request. */
static enum sim_act sim_granted(struct sim_conn *c, enum sim_answer grant)
{
	return sim_reply(c, grant, PH_HTTP_HEAD);
}

static enum sim_act sim_s4_head(struct sim_conn *c, uint8_t b)
{
	unsigned i = c->pos++;

	if ((i == 0 && b != 4) || (i == 1 && b != 1))
		return i == 0 ? ACT_CLOSE : sim_reply(c, ANS_S4_REJECT, PH_CLOSE);
	if (i == 4 && b == 0)
		c->flags |= F_SOCKS4A;
	if ((i == 5 || i == 6) && b != 0)
		c->flags &= (uint8_t)~F_SOCKS4A;
	if (i == 7) {
		bool s4a = (c->flags & F_SOCKS4A) && b != 0;

		sim_enter(c, PH_S4_USER, 0);
		if (s4a)
			c->flags |= F_SOCKS4A;
	}
	return ACT_MORE;
}

/* A NUL-terminated SOCKS4 field: the user id, then the 4a host if any. */
static enum sim_act sim_s4_name(struct sim_conn *c, uint8_t b)
{
	if (b != 0)
		return ++c->pos > SIM_NAME_MAX ? ACT_CLOSE : ACT_MORE;
	if (c->phase == PH_S4_USER && (c->flags & F_SOCKS4A)) {
		sim_enter(c, PH_S4_HOST, 0);
		return ACT_MORE;
	}
	return sim_granted(c, ANS_S4_GRANT);
}

static enum sim_act sim_s5_methods(struct sim_conn *c, uint8_t b)
{
	bool auth = c->kind == K_ALIVE_SOCKS5_AUTH;

	if (b == 0)
		c->flags |= F_NOAUTH;
	if (b == 2)
		c->flags |= F_USERPASS;
	if (++c->pos < c->need)
		return ACT_MORE;
	if (auth && (c->flags & F_USERPASS))
		return sim_reply(c, ANS_S5_USERPASS, PH_S5_AUTH_VER);
	if (!auth && (c->flags & F_NOAUTH))
		return sim_reply(c, ANS_S5_NOAUTH, PH_S5_REQ);
	return sim_reply(c, ANS_S5_NOMETHOD, PH_CLOSE);
}

/* One byte of the user name or password, checked against the proxy's. */
static enum sim_act sim_s5_cred(struct sim_conn *c, uint8_t b)
{
	char user[16], pass[16];
	const char *want;

	sim_creds(c->sim, c->index, user, pass);
	want = c->phase == PH_S5_USER ? user : pass;
	if (c->pos >= strlen(want) || want[c->pos] != (char)b)
		c->flags &= (uint8_t)~F_CRED_OK;
	if (++c->pos < c->need)
		return ACT_MORE;
	if (c->phase == PH_S5_USER) {
		sim_enter(c, PH_S5_PLEN, 0);
		return ACT_MORE;
	}
	if (c->flags & F_CRED_OK)
		return sim_reply(c, ANS_S5_AUTH_OK, PH_S5_REQ);
	return sim_reply(c, ANS_S5_AUTH_FAIL, PH_CLOSE);
}

/* A length byte of RFC 1929: a wrong length already fails the match. */
static enum sim_act sim_s5_cred_len(struct sim_conn *c, uint8_t b)
{
	char user[16], pass[16];
	bool is_user = c->phase == PH_S5_ULEN;

	sim_creds(c->sim, c->index, user, pass);
	if (b != strlen(is_user ? user : pass))
		c->flags &= (uint8_t)~F_CRED_OK;
	if (b != 0) {
		sim_enter(c, is_user ? PH_S5_USER : PH_S5_PASS, b);
		return ACT_MORE;
	}
	if (is_user) {
		sim_enter(c, PH_S5_PLEN, 0);
		return ACT_MORE;
	}
	return sim_reply(c, ANS_S5_AUTH_FAIL, PH_CLOSE);
}

static enum sim_act sim_s5_req(struct sim_conn *c, uint8_t b)
{
	unsigned i = c->pos++;

	if (i == 0 && b != 5)
		return ACT_CLOSE;
	if (i == 1 && b != 1)
		c->flags |= F_BAD_CMD;
	if (i < 3)
		return ACT_MORE;
	if (b == 1 || b == 4) {
		bool bad = c->flags & F_BAD_CMD;

		sim_enter(c, PH_S5_ADDR, b == 1 ? 6 : 18);
		c->flags |= bad ? F_BAD_CMD : 0;
		return ACT_MORE;
	}
	if (b == 3) {
		c->pos = 0;
		c->phase = PH_S5_DLEN;
		return ACT_MORE;
	}
	return ACT_CLOSE;
}

static enum sim_act sim_s5_addr(struct sim_conn *c, uint8_t b)
{
	if (c->phase == PH_S5_DLEN) {
		if (b == 0)
			return ACT_CLOSE;
		c->phase = PH_S5_ADDR;
		c->need = (uint16_t)(b + 2);
		return ACT_MORE;
	}
	if (++c->pos < c->need)
		return ACT_MORE;
	if (c->flags & F_BAD_CMD)
		return sim_reply(c, ANS_S5_BADCMD, PH_CLOSE);
	return sim_granted(c, ANS_S5_GRANT);
}

/* The request head is whole: what this proxy does with it. */
static enum sim_act sim_head_done(struct sim_conn *c)
{
	bool is_connect = c->pos > 8 && !(c->flags & F_NOT_CONNECT);

	if (c->kind == K_JUDGE)
		return sim_reply(c, ANS_JUDGE, PH_CLOSE);
	if (is_connect && c->scheme == SCH_HTTP && c->kind != K_EARLY_CLOSE)
		return sim_reply(c, ANS_CONNECT_OK, PH_HTTP_HEAD);
	switch (c->kind) {
	case K_EARLY_CLOSE:
		return ACT_CLOSE;
	case K_SLOW:
		return ACT_SLOW;
	case K_LIAR:
		return sim_reply(c, ANS_LIAR, PH_CLOSE);
	default:
		return sim_reply(c, ANS_JUDGE, PH_CLOSE);
	}
}

static enum sim_act sim_http_head(struct sim_conn *c, uint8_t b)
{
	static const char connect[] = "CONNECT ";

	if (c->pos < sizeof(connect) - 1 && (char)b != connect[c->pos])
		c->flags |= F_NOT_CONNECT;
	if (++c->pos > SIM_HEAD_MAX)
		return ACT_CLOSE;
	if (b == '\n' && ++c->nl == 2)
		return sim_head_done(c);
	if (b != '\n' && b != '\r')
		c->nl = 0;
	return ACT_MORE;
}

static enum sim_act sim_feed(struct sim_conn *c, uint8_t b)
{
	switch (c->phase) {
	case PH_S4_HEAD:
		return sim_s4_head(c, b);
	case PH_S4_USER:
	case PH_S4_HOST:
		return sim_s4_name(c, b);
	case PH_S5_GREET:
		if (c->pos++ == 0)
			return b == 5 ? ACT_MORE : ACT_CLOSE;
		if (b == 0)
			return ACT_CLOSE;
		sim_enter(c, PH_S5_METHODS, b);
		return ACT_MORE;
	case PH_S5_METHODS:
		return sim_s5_methods(c, b);
	case PH_S5_AUTH_VER:
		if (b != 1)
			return ACT_CLOSE;
		c->flags |= F_CRED_OK;
		sim_enter(c, PH_S5_ULEN, 0);
		return ACT_MORE;
	case PH_S5_ULEN:
	case PH_S5_PLEN:
		return sim_s5_cred_len(c, b);
	case PH_S5_USER:
	case PH_S5_PASS:
		return sim_s5_cred(c, b);
	case PH_S5_REQ:
		return sim_s5_req(c, b);
	case PH_S5_DLEN:
	case PH_S5_ADDR:
		return sim_s5_addr(c, b);
	case PH_HTTP_HEAD:
		return sim_http_head(c, b);
	default:
		return ACT_MORE; /* the sink, or bytes sent past an answer */
	}
}

/* Sends what is left of the queued answer. 0: sent, go on reading; 1: the
 * socket is full, wait to write; -errno: close the connection. */
static int sim_send(struct sim_conn *c)
{
	char buf[SIM_ANSWER_MAX];
	size_t len = sim_render(c, buf, sizeof(buf));
	ssize_t n = send(c->fd, buf + c->sent, len - c->sent, MSG_NOSIGNAL);
	int rc;

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		n = 0;
	}
	c->sent = (uint16_t)(c->sent + n);
	if (c->sent < len) {
		c->phase = PH_WRITE;
		rc = sim_arm(c, EV_WRITE, 0);
		return rc < 0 ? rc : 1;
	}
	if (c->answer == ANS_JUDGE)
		c->sim->st.judged++;
	c->sent = 0;
	if (c->after == PH_CLOSE)
		return -ECONNRESET;
	sim_enter(c, (enum sim_phase)c->after, 0);
	return sim_arm(c, EV_READ, 0);
}

/* Feeds what was read. Bytes after an answer that had to wait for the
 * socket are dropped (and counted): no client in these tests sends any. */
static int sim_consume(struct sim_conn *c, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc;

		switch (sim_feed(c, p[i])) {
		case ACT_MORE:
			continue;
		case ACT_CLOSE:
			return -ECONNRESET;
		case ACT_SLOW:
			c->phase = PH_SLOW;
			return sim_arm(c, 0, c->sim->o.slow_ms);
		case ACT_REPLY:
			rc = sim_send(c);
			if (rc < 0)
				return rc;
			if (rc > 0) {
				c->sim->st.dropped += n - i - 1;
				return 0;
			}
		}
	}
	return 0;
}

static int sim_conn_read(struct sim_conn *c)
{
	uint8_t buf[4096];
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	return sim_consume(c, buf, (size_t)n);
}

static void sim_conn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim_conn *c = arg;
	int rc;

	if (c->phase == PH_SLOW) {
		c->answer = ANS_JUDGE;
		c->after = PH_CLOSE;
		rc = sim_send(c);
	} else if (what & EV_TIMEOUT) {
		rc = -ETIMEDOUT;
	} else if (c->phase == PH_WRITE) {
		rc = sim_send(c);
	} else {
		rc = sim_conn_read(c);
	}
	if (rc < 0)
		sim_conn_free(c);
}

/* The connection's proxy, or -1 when it reached a port or an address that
 * is none of ours (or the wrong port for the proxy). */
static int64_t sim_conn_proxy(struct sim *s, int fd, enum sim_slot slot,
			      const struct sockaddr_in *peer)
{
	struct sockaddr_in local;
	socklen_t len = sizeof(local);
	int64_t i;

	if (peer->sin_family != AF_INET || ntohl(peer->sin_addr.s_addr) >> 24 != 127)
		return -1;
	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0 || local.sin_family != AF_INET)
		return -1;
	i = sim_index_of(s, ntohl(local.sin_addr.s_addr));
	if (i < 0 || sim_slot_of(s->kind[i]) != slot)
		return -1;
	return i;
}

/* A judge's client: any loopback address; -1 for others. */
static int64_t sim_judge_client(const struct sockaddr_in *peer)
{
	uint32_t a = ntohl(peer->sin_addr.s_addr);

	return peer->sin_family == AF_INET && a >> 24 == 127 ? (int64_t)a : -1;
}

static void sim_conn_start(struct sim *s, int fd, enum sim_slot slot,
			   const struct sockaddr_in *peer)
{
	bool judge = slot == SLOT_JUDGE;
	int64_t i = judge ? sim_judge_client(peer) : sim_conn_proxy(s, fd, slot, peer);
	struct sim_conn *c;

	if (i < 0 || !(c = calloc(1, sizeof(*c)))) {
		s->st.rejected++;
		close(fd);
		return;
	}
	c->sim = s;
	c->fd = fd;
	c->index = (uint32_t)i;
	c->kind = judge ? K_JUDGE : s->kind[i];
	c->scheme = judge ? SCH_HTTP : s->scheme[i];
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	if (c->kind == K_BLACKHOLE)
		sim_enter(c, PH_SINK, 0);
	else if (c->scheme == SCH_SOCKS4)
		sim_enter(c, PH_S4_HEAD, 0);
	else if (c->scheme == SCH_SOCKS5)
		sim_enter(c, PH_S5_GREET, 0);
	else
		sim_enter(c, PH_HTTP_HEAD, 0);
	if (sim_arm(c, EV_READ, 0) < 0)
		sim_conn_free(c);
}

/* ---- listening ---- */

static void sim_listeners_enable(struct sim *s, bool on)
{
	for (int k = 0; k < SLOT_COUNT; k++) {
		if (!s->lis[k].ev)
			continue;
		if (on)
			event_add(s->lis[k].ev, NULL);
		else
			event_del(s->lis[k].ev);
	}
}

static void sim_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	sim_listeners_enable(arg, true);
}

/* Out of descriptors or memory: stop accepting for a moment, so that the
 * connections in flight can finish and free some. */
static void sim_pause(struct sim *s)
{
	struct timeval tv = { 0, SIM_PAUSE_MS * 1000 };

	s->st.paused++;
	sim_listeners_enable(s, false);
	event_add(s->resume, &tv);
}

static void sim_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct sim_listener *l = arg;

	for (int n = 0; n < SIM_ACCEPT_BURST; n++) {
		struct sockaddr_in peer = { 0 };
		socklen_t len = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				sim_pause(l->sim);
			return;
		}
		l->sim->st.accepted++;
		sim_conn_start(l->sim, fd, l->slot, &peer);
	}
}

static int sim_bind_one(unsigned port, bool listening)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one = 1, fd, rc;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (listening && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
			  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0))
		goto out_close;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		goto out_close;
	if (listening && listen(fd, SIM_BACKLOG) < 0)
		goto out_close;
	return fd;
out_close:
	rc = -errno;
	close(fd);
	return rc;
}

static void sim_close_listeners(struct sim *s)
{
	for (int k = 0; k < SLOT_COUNT; k++) {
		if (s->lis[k].ev)
			event_free(s->lis[k].ev);
		if (s->lis[k].fd >= 0)
			close(s->lis[k].fd);
		s->lis[k].ev = NULL;
		s->lis[k].fd = -1;
	}
}

/* Binds all the slots at base; -errno (all closed again) if one fails. */
static int sim_bind_all(struct sim *s, unsigned base)
{
	for (int k = 0; k < SLOT_COUNT; k++) {
		int fd = sim_bind_one(base + (unsigned)k, k != SLOT_REFUSED);

		if (fd < 0) {
			sim_close_listeners(s);
			return fd;
		}
		s->lis[k].fd = fd;
	}
	s->o.port_base = base;
	return 0;
}

/* The given port base, or the first free block from a start that differs
 * between processes, so that simulators run side by side. */
static int sim_listen(struct sim *s)
{
	unsigned span = (SIM_PORT_HIGH - SIM_PORT_LOW) / SLOT_COUNT;
	unsigned start = (unsigned)(sim_mix64(s->o.seed ^ (uint64_t)getpid() << 32) % span);
	int rc = -EADDRINUSE;

	if (s->o.port_base)
		return sim_bind_all(s, s->o.port_base);
	for (unsigned t = 0; t < span && rc == -EADDRINUSE; t++)
		rc = sim_bind_all(s, SIM_PORT_LOW + (start + t) % span * SLOT_COUNT);
	return rc;
}

static int sim_watch_listeners(struct sim *s)
{
	for (int k = 0; k < SLOT_COUNT; k++) {
		struct sim_listener *l = &s->lis[k];

		l->sim = s;
		l->slot = (enum sim_slot)k;
		if (k == SLOT_REFUSED)
			continue;
		l->ev = event_new(s->base, l->fd, EV_READ | EV_PERSIST, sim_accept_cb, l);
		if (!l->ev || event_add(l->ev, NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- the program ---- */

static void sim_usage(FILE *f)
{
	fprintf(f, "usage: proxysim --count N --seed S --list FILE --truth FILE [--kinds FILE]\n"
		   "                [--judge-file FILE] [--port-base P] [--mix KIND=W,...]\n"
		   "                [--slow-ms MS] [--expect TEXT] [--ready-fd FD]\n"
		   "kinds:");
	for (int k = 0; k < K_COUNT; k++)
		fprintf(f, " %s", sim_kind_names[k]);
	fprintf(f, "\n");
}

static int sim_parse_mix(struct sim_opts *o, char *spec)
{
	char *save = NULL, *item;
	double total = 0;

	memset(o->mix, 0, sizeof(o->mix));
	for (item = strtok_r(spec, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '='), *end;
		int k;

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		for (k = 0; k < K_COUNT && strcmp(item, sim_kind_names[k]) != 0; k++)
			;
		if (k == K_COUNT)
			return -EINVAL;
		o->mix[k] = strtod(eq + 1, &end);
		if (*end || end == eq + 1 || !(o->mix[k] >= 0))
			return -EINVAL;
		total += o->mix[k];
	}
	return total > 0 ? 0 : -EINVAL;
}

static int sim_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno || end == s || *end || *out > max || *s == '-')
		return -EINVAL;
	return 0;
}

static int sim_parse_opt(struct sim_opts *o, int opt, char *arg)
{
	unsigned long long v = 0;
	int rc = 0;

	switch (opt) {
	case 'n':
		rc = sim_parse_uint(arg, SIM_COUNT_MAX, &v);
		o->count = (uint32_t)v;
		return rc ? rc : v ? 0 : -EINVAL;
	case 's':
		rc = sim_parse_uint(arg, UINT64_MAX, &v);
		o->seed = v;
		return rc;
	case 'l':
		o->list = arg;
		return 0;
	case 't':
		o->truth = arg;
		return 0;
	case 'k':
		o->kinds = arg;
		return 0;
	case 'j':
		o->judge_file = arg;
		return 0;
	case 'p':
		rc = sim_parse_uint(arg, 65535 - SLOT_COUNT, &v);
		o->port_base = (unsigned)v;
		return rc;
	case 'm':
		return sim_parse_mix(o, arg);
	case 'w':
		rc = sim_parse_uint(arg, 3600000, &v);
		o->slow_ms = (int)v;
		return rc;
	case 'e':
		o->expect = arg;
		return *arg && strlen(arg) < 256 ? 0 : -EINVAL;
	case 'r':
		rc = sim_parse_uint(arg, 1 << 20, &v);
		o->ready_fd = (int)v;
		return rc;
	default:
		return -EINVAL;
	}
}

static const struct option sim_longopts[] = {
	{ "count", required_argument, NULL, 'n' },
	{ "seed", required_argument, NULL, 's' },
	{ "list", required_argument, NULL, 'l' },
	{ "truth", required_argument, NULL, 't' },
	{ "kinds", required_argument, NULL, 'k' },
	{ "judge-file", required_argument, NULL, 'j' },
	{ "port-base", required_argument, NULL, 'p' },
	{ "mix", required_argument, NULL, 'm' },
	{ "slow-ms", required_argument, NULL, 'w' },
	{ "expect", required_argument, NULL, 'e' },
	{ "ready-fd", required_argument, NULL, 'r' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *sim_opt_name(int opt)
{
	const struct option *l = sim_longopts;

	while (l->name && l->val != opt)
		l++;
	return l->name ? l->name : "?";
}

static int sim_parse_args(struct sim_opts *o, int argc, char **argv)
{
	int opt;

	*o = (struct sim_opts){ .count = 1000, .seed = 1, .slow_ms = 300,
				.expect = "PROXYFS-SIM-OK", .ready_fd = -1 };
	memcpy(o->mix, sim_default_mix, sizeof(o->mix));
	while ((opt = getopt_long(argc, argv, "", sim_longopts, NULL)) != -1) {
		if (opt == 'h') {
			sim_usage(stdout);
			return 1;
		}
		if (opt == '?') {
			sim_usage(stderr);
			return -EINVAL;
		}
		if (sim_parse_opt(o, opt, optarg) < 0) {
			fprintf(stderr, "proxysim: bad value for --%s: %s\n", sim_opt_name(opt),
				optarg ? optarg : "");
			sim_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc || !o->list || !o->truth) {
		sim_usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* As many descriptors as the hard limit allows: one per connection. */
static void sim_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void sim_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static int sim_say_ready(const struct sim *s)
{
	static const char msg[] = "ready\n";

	if (s->o.ready_fd < 0) {
		fputs(msg, stdout);
		return fflush(stdout) == 0 ? 0 : -EIO;
	}
	if (write(s->o.ready_fd, msg, sizeof(msg) - 1) != (ssize_t)sizeof(msg) - 1)
		return -errno;
	close(s->o.ready_fd);
	return 0;
}

static void sim_free_conns(struct sim *s)
{
	while (s->conns)
		sim_conn_free(s->conns);
}

static void sim_report(const struct sim *s)
{
	fprintf(stderr,
		"proxysim: %" PRIu32 " proxies on ports %u-%u (judge %u); accepted %" PRIu64
		", rejected %" PRIu64 ", judge answers %" PRIu64 ", accept pauses %" PRIu64
		", dropped bytes %" PRIu64 "\n",
		s->o.count, s->o.port_base, s->o.port_base + SLOT_FAIL,
		s->o.port_base + SLOT_JUDGE, s->st.accepted,
		s->st.rejected, s->st.judged, s->st.paused, s->st.dropped);
}

/* Listeners up, then the loop until SIGTERM or SIGINT. */
static int sim_serve(struct sim *s)
{
	struct timeval idle = { SIM_IDLE_MS / 1000, 0 };
	struct event *sigterm = NULL, *sigint = NULL;
	int rc = -ENOMEM;

	s->base = event_base_new();
	if (!s->base)
		return -ENOMEM;
	s->idle = event_base_init_common_timeout(s->base, &idle);
	s->resume = evtimer_new(s->base, sim_resume_cb, s);
	sigterm = evsignal_new(s->base, SIGTERM, sim_stop_cb, s->base);
	sigint = evsignal_new(s->base, SIGINT, sim_stop_cb, s->base);
	if (!s->idle || !s->resume || !sigterm || !sigint || event_add(sigterm, NULL) ||
	    event_add(sigint, NULL) || sim_watch_listeners(s))
		goto out_events;
	rc = sim_say_ready(s);
	if (rc == 0 && event_base_dispatch(s->base) < 0)
		rc = -EIO;
	sim_free_conns(s);
out_events:
	sim_close_listeners(s);
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	if (s->resume)
		event_free(s->resume);
	event_base_free(s->base);
	return rc;
}

int main(int argc, char **argv)
{
	struct sim s = { 0 };
	int rc;

	for (int k = 0; k < SLOT_COUNT; k++)
		s.lis[k].fd = -1;
	rc = sim_parse_args(&s.o, argc, argv);
	if (rc)
		return rc > 0 ? 0 : 2;
	signal(SIGPIPE, SIG_IGN);
	sim_raise_nofile();
	rc = sim_build_table(&s);
	if (rc) {
		fprintf(stderr, "proxysim: out of memory\n");
		goto out_table;
	}
	rc = sim_listen(&s);
	if (rc) {
		fprintf(stderr, "proxysim: cannot listen: %s\n", strerror(-rc));
		goto out_table;
	}
	rc = sim_write_files(&s);
	if (rc) {
		fprintf(stderr, "proxysim: cannot write the list or truth: %s\n", strerror(-rc));
		sim_close_listeners(&s);
		goto out_table;
	}
	rc = sim_serve(&s);
	if (rc)
		fprintf(stderr, "proxysim: %s\n", strerror(-rc));
	sim_report(&s);
out_table:
	free(s.scheme);
	free(s.kind);
	return rc ? 1 : 0;
}
