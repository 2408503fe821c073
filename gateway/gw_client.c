/* gw_client: what a client of the gateway speaks, and what it is told.
 *
 * Reads the client's request as it arrives, in the protocol its first byte
 * names: 0x05 SOCKS5 (no auth or RFC 1929 user/password, CONNECT to an
 * IPv4, IPv6 or domain address), 0x04 SOCKS4/4a (CONNECT), a letter an
 * HTTP proxy request (CONNECT host:port, or an absolute-form request such
 * as GET http://host/path, rewritten to origin form with the Proxy-*
 * headers dropped and `Connection: close`: one request per connection).
 * Anything else, a request over GW_HTTP_HEAD_MAX or one that breaks its
 * protocol ends that connection alone. Each step is a small function
 * returning how much it used, 0 for "more bytes needed" or -1 when it
 * ended the connection. Replies in the client's own protocol: granted,
 * failed (the reason mapped to a SOCKS reply code, or an HTTP 502 with an
 * X-Proxyfs-Error header), credentials refused (407, SOCKS 0x01).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gw_int.h"
#include "log.h"

/* --- targets --- */

/* A host name we pass on: letters, digits, '.', '-', '_' only (it goes
 * into a CONNECT line and a SOCKS message as it is). */
static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* Sets t's host (n bytes of s) and, for an IP literal, its family and
 * address. 0, or -1 for a host we do not take. */
static int target_host(struct gw_target *t, const char *s, size_t n)
{
	memcpy(t->host, s, n);
	t->host[n] = '\0';
	t->family = AF_UNSPEC;
	if (inet_pton(AF_INET, t->host, t->ip) == 1)
		t->family = AF_INET;
	else if (inet_pton(AF_INET6, t->host, t->ip) == 1)
		t->family = AF_INET6;
	else if (!name_ok(s, n))
		return -1;
	return 0;
}

/* host:port or [v6]:port (port optional when dflt is not 0) into t. */
static int target_authority(struct gw_target *t, const char *s, size_t n, uint16_t dflt)
{
	const char *host = s, *colon = NULL;
	size_t hlen;
	unsigned long port = dflt;

	if (n && s[0] == '[') {
		const char *end = memchr(s, ']', n);

		if (!end)
			return -1;
		host = s + 1;
		hlen = (size_t)(end - host);
		if (end + 1 < s + n) {
			if (end[1] != ':')
				return -1;
			colon = end + 1;
		}
	} else {
		colon = memrchr(s, ':', n);
		hlen = colon ? (size_t)(colon - s) : n;
	}
	if (colon) {
		const char *p = colon + 1, *e = s + n;

		if (p == e || e - p > 5)
			return -1;
		port = 0;
		for (; p < e; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			port = port * 10 + (unsigned long)(*p - '0');
		}
	}
	if (port == 0 || port > 65535 || hlen == 0 || hlen > 255)
		return -1;
	t->port = (uint16_t)port;
	if (target_host(t, host, hlen) < 0)
		return -1;
	/* A bracketed host must be an IPv6 literal, an unbracketed one not. */
	if ((host != s) != (t->family == AF_INET6))
		return -1;
	return 0;
}

/* --- the user name --- */

/* The client's user name and password (if it gave any) are whole: its
 * options read (gw_user.h) and joined to the config's filter, and, with
 * auth configured, the password checked. 0, or -EACCES with why. */
static int user_apply(struct gw_conn *c, char *why, size_t why_size)
{
	struct gw_hs *hs = c->hs;
	struct gateway *g = c->gw;
	size_t ulen = hs->has_user ? strlen(hs->user) : 0;

	if (hs->user_done)
		return 0;
	hs->user_done = true;
	if (gw_user_parse(hs->user, ulen, &hs->opts, why, why_size) < 0)
		return -EACCES;
	if (g->auth_required &&
	    (!hs->has_user || !gw_auth_check(g->auth, hs->opts.name, hs->pass, strlen(hs->pass)))) {
		snprintf(why, why_size, "%s",
			 hs->has_user ? "wrong user or password" : "credentials required");
		return -EACCES;
	}
	hs->filter = g->filter;
	if (pick_filter_and(&hs->filter, &hs->opts.filter) < 0) {
		snprintf(why, why_size, "too many source names");
		return -EACCES;
	}
	return 0;
}

/* --- replies --- */

static void reply(struct gw_conn *c, const void *p, size_t n)
{
	bufferevent_write(c->client, p, n);
}

static uint8_t socks5_code(const struct gw_conn *c)
{
	/* The upstream's own answer for the target, passed on as it came. */
	if (c->hs->up_socks_code)
		return c->hs->up_socks_code;
	switch (c->hs->up_err) {
	case ECONNREFUSED:
		return 0x05;
	case ENETUNREACH:
	case ENETDOWN:
		return 0x03;
	case EHOSTUNREACH:
	case ETIMEDOUT:
		return 0x04;
	default:
		return 0x01;
	}
}

static void http_error(struct gw_conn *c, int code, const char *status, const char *why,
		       const char *extra)
{
	struct evbuffer *out = bufferevent_get_output(c->client);

	evbuffer_add_printf(out,
			    "HTTP/1.1 %d %s\r\nX-Proxyfs-Error: %s\r\n%s"
			    "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
			    "Connection: close\r\n\r\n%s\n",
			    code, status, why, extra ? extra : "", strlen(why) + 1, why);
}

void gw_client_granted(struct gw_conn *c)
{
	static const uint8_t s5_ok[10] = {5, 0, 0, 1};
	static const uint8_t s4_ok[8] = {0, 0x5a};
	static const char http_ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	if (c->proto == GW_CL_SOCKS5)
		reply(c, s5_ok, sizeof(s5_ok));
	else if (c->proto == GW_CL_SOCKS4)
		reply(c, s4_ok, sizeof(s4_ok));
	else if (!c->hs->head)
		reply(c, http_ok, sizeof(http_ok) - 1);
}

void gw_client_failed(struct gw_conn *c)
{
	char why[sizeof(c->hs->why) + 48];

	if (c->hs->again) {
		/* The client was told its tunnel is up: it sees it close, as
		 * it would have without the attempts to make it again. */
		log_debug("gateway: %s:%u: tunnel closed before answering, none left to make it again",
			  c->hs->target.host, c->hs->target.port);
		gw_conn_close_after_flush(c);
		return;
	}

	if (!c->hs->ntried)
		snprintf(why, sizeof(why), "%s", c->hs->why[0] ? c->hs->why : "no live upstream");
	else
		snprintf(why, sizeof(why), "%d upstream%s tried, the last: %s", c->hs->ntried,
			 c->hs->ntried > 1 ? "s" : "", c->hs->why);

	if (c->proto == GW_CL_SOCKS5) {
		uint8_t r[10] = {5, socks5_code(c), 0, 1};

		reply(c, r, sizeof(r));
	} else if (c->proto == GW_CL_SOCKS4) {
		static const uint8_t r[8] = {0, 0x5b};

		reply(c, r, sizeof(r));
	} else {
		http_error(c, 502, "Bad Gateway", why, NULL);
	}
	log_debug("gateway: %s:%u: %s", c->hs->target.host, c->hs->target.port, why);
	gw_conn_close_after_flush(c);
}

void gw_client_auth_failed(struct gw_conn *c, const char *why)
{
	log_debug("gateway: refused: %s", why);
	gw_conn_outcome(c, GW_OUT_AUTH_FAILED);
	if (c->proto == GW_CL_SOCKS5) {
		static const uint8_t r[2] = {1, 1};

		reply(c, r, sizeof(r));
	} else if (c->proto == GW_CL_SOCKS4) {
		static const uint8_t r[8] = {0, 0x5b};

		reply(c, r, sizeof(r));
	} else {
		http_error(c, 407, "Proxy Authentication Required", why,
			   "Proxy-Authenticate: Basic realm=\"proxyfs\"\r\n");
	}
	gw_conn_close_after_flush(c);
}

/* A request that breaks its protocol: an HTTP client gets a status, a
 * SOCKS one the reply code given (0: just the close). */
static int bad_request(struct gw_conn *c, const char *why, int http_code, uint8_t socks_code)
{
	log_debug("gateway: bad request: %s", why);
	gw_conn_outcome(c, GW_OUT_CLIENT_ERROR);
	if (c->proto == GW_CL_HTTP) {
		http_error(c, http_code,
			   http_code == 431   ? "Request Header Fields Too Large"
			   : http_code == 405 ? "Method Not Allowed"
					      : "Bad Request",
			   why, NULL);
	} else if (c->proto == GW_CL_SOCKS5 && socks_code) {
		uint8_t r[10] = {5, socks_code, 0, 1};

		reply(c, r, sizeof(r));
	} else if (c->proto == GW_CL_SOCKS4 && socks_code) {
		static const uint8_t r[8] = {0, 0x5b};

		reply(c, r, sizeof(r));
	}
	gw_conn_close_after_flush(c);
	return -1;
}

/* The request is whole: options from the user name, then the upstream. */
static int request_whole(struct gw_conn *c)
{
	char why[128];

	if (user_apply(c, why, sizeof(why)) < 0) {
		gw_client_auth_failed(c, why);
		return -1;
	}
	bufferevent_disable(c->client, EV_READ);
	clock_gettime(CLOCK_MONOTONIC, &c->hs->t0);
	c->state = GW_ST_UPSTREAM;
	gw_upstream_start(c);
	return -1; /* nothing more for the reader to do */
}

/* --- SOCKS5 --- */

static int s5_methods(struct gw_conn *c, const uint8_t *p, size_t n)
{
	uint8_t r[2] = {5, 0xff};
	bool none = false, userpass = false;

	if (n < 2 || n < 2u + p[1])
		return 0;
	for (unsigned i = 0; i < p[1]; i++) {
		none |= p[2 + i] == 0;
		userpass |= p[2 + i] == 2;
	}
	/* User/password whenever offered: the user name carries options. */
	if (userpass)
		r[1] = 2;
	else if (none && !c->gw->auth_required)
		r[1] = 0;
	reply(c, r, 2);
	if (r[1] == 0xff) {
		gw_conn_outcome(c, GW_OUT_AUTH_FAILED);
		gw_conn_close_after_flush(c);
		return -1;
	}
	c->state = r[1] == 2 ? GW_ST_S5_AUTH : GW_ST_S5_REQUEST;
	return 2 + p[1];
}

static int s5_auth(struct gw_conn *c, const uint8_t *p, size_t n)
{
	static const uint8_t ok[2] = {1, 0};
	size_t ulen, plen;
	char why[128];

	if (n < 2)
		return 0;
	if (p[0] != 1)
		return bad_request(c, "SOCKS5 auth: not version 1", 0, 0);
	ulen = p[1];
	if (n < 3 + ulen)
		return 0;
	plen = p[2 + ulen];
	if (n < 3 + ulen + plen)
		return 0;
	memcpy(c->hs->user, p + 2, ulen);
	c->hs->user[ulen] = '\0';
	memcpy(c->hs->pass, p + 3 + ulen, plen);
	c->hs->pass[plen] = '\0';
	c->hs->has_user = true;
	if (user_apply(c, why, sizeof(why)) < 0) {
		gw_client_auth_failed(c, why);
		return -1;
	}
	reply(c, ok, 2);
	c->state = GW_ST_S5_REQUEST;
	return (int)(3 + ulen + plen);
}

static int s5_request(struct gw_conn *c, const uint8_t *p, size_t n)
{
	size_t need;

	if (n < 5)
		return 0;
	if (p[0] != 5)
		return bad_request(c, "SOCKS5 request: not version 5", 0, 0x01);
	if (p[1] != 1)
		return bad_request(c, "SOCKS5: only CONNECT", 0, 0x07);
	switch (p[3]) {
	case 1:
		need = 4 + 4 + 2;
		break;
	case 3:
		need = 5 + (size_t)p[4] + 2;
		break;
	case 4:
		need = 4 + 16 + 2;
		break;
	default:
		return bad_request(c, "SOCKS5: unknown address type", 0, 0x08);
	}
	if (n < need)
		return 0;
	if (p[3] == 1) {
		c->hs->target.family = AF_INET;
		memcpy(c->hs->target.ip, p + 4, 4);
		inet_ntop(AF_INET, p + 4, c->hs->target.host, sizeof(c->hs->target.host));
	} else if (p[3] == 4) {
		c->hs->target.family = AF_INET6;
		memcpy(c->hs->target.ip, p + 4, 16);
		inet_ntop(AF_INET6, p + 4, c->hs->target.host, sizeof(c->hs->target.host));
	} else if (target_host(&c->hs->target, (const char *)p + 5, p[4]) < 0) {
		return bad_request(c, "SOCKS5: bad host name", 0, 0x01);
	}
	c->hs->target.port = (uint16_t)(p[need - 2] << 8 | p[need - 1]);
	if (c->hs->target.port == 0)
		return bad_request(c, "SOCKS5: port 0", 0, 0x01);
	evbuffer_drain(bufferevent_get_input(c->client), need);
	return request_whole(c);
}

/* --- SOCKS4/4a --- */

static int s4_request(struct gw_conn *c, const uint8_t *p, size_t n)
{
	const uint8_t *user, *end, *host = NULL, *hend = NULL;
	size_t used;

	if (n < 9)
		return 0;
	if (p[1] != 1)
		return bad_request(c, "SOCKS4: only CONNECT", 0, 0x5b);
	user = p + 8;
	end = memchr(user, 0, n - 8);
	if (!end)
		return n - 8 > 255 ? bad_request(c, "SOCKS4: user id too long", 0, 0x5b) : 0;
	used = (size_t)(end - p) + 1;
	/* 0.0.0.x, x not 0: SOCKS4a, a host name follows. */
	if (p[4] == 0 && p[5] == 0 && p[6] == 0 && p[7] != 0) {
		host = end + 1;
		hend = memchr(host, 0, n - used);
		if (!hend)
			return n - used > 255 ? bad_request(c, "SOCKS4a: host too long", 0, 0x5b)
					      : 0;
		if (target_host(&c->hs->target, (const char *)host, (size_t)(hend - host)) < 0)
			return bad_request(c, "SOCKS4a: bad host name", 0, 0x5b);
		used = (size_t)(hend - p) + 1;
	} else {
		c->hs->target.family = AF_INET;
		memcpy(c->hs->target.ip, p + 4, 4);
		inet_ntop(AF_INET, p + 4, c->hs->target.host, sizeof(c->hs->target.host));
	}
	c->hs->target.port = (uint16_t)(p[2] << 8 | p[3]);
	if (c->hs->target.port == 0)
		return bad_request(c, "SOCKS4: port 0", 0, 0x5b);
	if (end > user) {
		memcpy(c->hs->user, user, (size_t)(end - user));
		c->hs->user[end - user] = '\0';
		c->hs->has_user = true;
	}
	evbuffer_drain(bufferevent_get_input(c->client), used);
	return request_whole(c);
}

/* --- HTTP --- */

/* Basic credentials of a Proxy-Authorization value into c. */
static void http_credentials(struct gw_conn *c, const char *v, size_t n)
{
	uint8_t dec[400];
	const char *colon;
	size_t len, pad = 0;
	int rc;

	if (n < 6 || strncasecmp(v, "Basic ", 6) != 0)
		return;
	v += 6;
	n -= 6;
	while (n && *v == ' ')
		v++, n--;
	if (n == 0 || n % 4 || n > 4 * (sizeof(dec) / 3) - 4)
		return;
	rc = EVP_DecodeBlock(dec, (const unsigned char *)v, (int)n);
	if (rc < 0)
		return;
	pad = (v[n - 1] == '=') + (v[n - 2] == '=');
	len = (size_t)rc - pad;
	dec[len] = '\0';
	colon = memchr(dec, ':', len);
	if (!colon || memchr(dec, '\0', len))
		return;
	if ((size_t)((uint8_t *)colon - dec) >= sizeof(c->hs->user) ||
	    len - (size_t)((uint8_t *)colon - dec) > sizeof(c->hs->pass))
		return;
	memcpy(c->hs->user, dec, (size_t)((uint8_t *)colon - dec));
	c->hs->user[(uint8_t *)colon - dec] = '\0';
	strcpy(c->hs->pass, colon + 1);
	c->hs->has_user = true;
}

/* Headers that stay between the client and us. */
static bool hop_header(const char *name, size_t n)
{
	return (n >= 6 && strncasecmp(name, "Proxy-", 6) == 0) ||
	       (n == 10 && strncasecmp(name, "Connection", 10) == 0) ||
	       (n == 10 && strncasecmp(name, "Keep-Alive", 10) == 0);
}

/* Headers (from h, n bytes, each line CRLF-ended, the blank one not
 * included): credentials taken, hop-by-hop ones dropped; with out, the
 * rest copied there. -1 for a line that is not a header. */
static int http_headers(struct gw_conn *c, const char *h, size_t n, struct evbuffer *out,
			bool *has_host)
{
	while (n) {
		const char *eol = memmem(h, n, "\r\n", 2), *colon;
		size_t len = (size_t)(eol - h), name_len;
		const char *v;

		colon = memchr(h, ':', len);
		if (!colon || colon == h)
			return -1;
		name_len = (size_t)(colon - h);
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		if (name_len == 19 && strncasecmp(h, "Proxy-Authorization", 19) == 0)
			http_credentials(c, v, (size_t)(eol - v));
		if (name_len == 4 && strncasecmp(h, "Host", 4) == 0)
			*has_host = true;
		if (out && !hop_header(h, name_len))
			evbuffer_add(out, h, len + 2);
		n -= len + 2;
		h = eol + 2;
	}
	return 0;
}

/* The request line and headers (len bytes up to and with the blank line). */
static int http_head(struct gw_conn *c, const char *h, size_t len)
{
	const char *eol = memmem(h, len, "\r\n", 2);
	const char *sp1, *sp2, *target, *version, *auth, *path;
	size_t tlen, alen;
	bool has_host = false, connect;

	sp1 = memchr(h, ' ', (size_t)(eol - h));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return bad_request(c, "not an HTTP request line", 400, 0);
	target = sp1 + 1;
	tlen = (size_t)(sp2 - target);
	version = sp2 + 1;
	connect = sp1 - h == 7 && memcmp(h, "CONNECT", 7) == 0;
	if (connect) {
		if (target_authority(&c->hs->target, target, tlen, 0) < 0)
			return bad_request(c, "CONNECT: bad host:port", 400, 0);
		if (http_headers(c, eol + 2, len - (size_t)(eol + 2 - h) - 2, NULL, &has_host) < 0)
			return bad_request(c, "bad header line", 400, 0);
		evbuffer_drain(bufferevent_get_input(c->client), len);
		return request_whole(c);
	}
	if (tlen < 7 || strncasecmp(target, "http://", 7) != 0)
		return bad_request(c, "only http:// targets (use CONNECT for others)", 400, 0);
	auth = target + 7;
	for (path = auth; path < sp2 && *path != '/' && *path != '?'; path++)
		;
	alen = (size_t)(path - auth);
	if (memchr(auth, '@', alen) || target_authority(&c->hs->target, auth, alen, 80) < 0)
		return bad_request(c, "bad host in the URL", 400, 0);
	c->hs->head = evbuffer_new();
	if (!c->hs->head)
		return bad_request(c, "out of memory", 400, 0);
	evbuffer_add(c->hs->head, h, (size_t)(sp1 - h) + 1);
	if (path == sp2)
		evbuffer_add(c->hs->head, "/", 1);
	else
		evbuffer_add(c->hs->head, path, (size_t)(sp2 - path));
	evbuffer_add_printf(c->hs->head, " HTTP/1.%c\r\n", version[7]);
	if (http_headers(c, eol + 2, len - (size_t)(eol + 2 - h) - 2, c->hs->head, &has_host) < 0)
		return bad_request(c, "bad header line", 400, 0);
	if (!has_host) {
		evbuffer_add(c->hs->head, "Host: ", 6);
		evbuffer_add(c->hs->head, auth, alen);
		evbuffer_add(c->hs->head, "\r\n", 2);
	}
	evbuffer_add(c->hs->head, "Connection: close\r\n\r\n", 21);
	evbuffer_drain(bufferevent_get_input(c->client), len);
	return request_whole(c);
}

static int http_request(struct gw_conn *c, struct evbuffer *in, size_t n)
{
	struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	const char *h;

	if (end.pos < 0) {
		if (n > GW_HTTP_HEAD_MAX)
			return bad_request(c, "request head too large", 431, 0);
		return 0;
	}
	if ((size_t)end.pos + 4 > GW_HTTP_HEAD_MAX)
		return bad_request(c, "request head too large", 431, 0);
	h = (const char *)evbuffer_pullup(in, end.pos + 4);
	if (!h)
		return bad_request(c, "out of memory", 400, 0);
	if (memchr(h, '\0', (size_t)end.pos + 4))
		return bad_request(c, "NUL in the request head", 400, 0);
	return http_head(c, h, (size_t)end.pos + 4);
}

/* --- the reader --- */

/* The first byte names the protocol. */
static int first(struct gw_conn *c, const uint8_t *p, size_t n)
{
	if (p[0] == 5) {
		c->proto = GW_CL_SOCKS5;
		c->state = GW_ST_S5_METHODS;
	} else if (p[0] == 4) {
		c->proto = GW_CL_SOCKS4;
		c->state = GW_ST_S4_REQUEST;
	} else if (isupper(p[0])) {
		c->proto = GW_CL_HTTP;
		c->state = GW_ST_HTTP_HEAD;
	} else {
		log_debug("gateway: first byte 0x%02x is no protocol we speak", p[0]);
		gw_conn_outcome(c, GW_OUT_CLIENT_ERROR);
		gw_conn_free(c);
		return -1;
	}
	return 0;
}

void gw_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct gw_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t n = evbuffer_get_length(in);
		const uint8_t *p;
		int used;

		if (n == 0)
			return;
		if (c->state == GW_ST_HTTP_HEAD) {
			/* Whole (c handed on), too large (refused) or more to
			 * come: nothing more here either way. */
			http_request(c, in, n);
			return;
		}
		/* A SOCKS message is at most 513 bytes (RFC 1929), SOCKS4a
		 * at most 8 + 2 * 256 (s4_request sees no more than 1024). */
		p = evbuffer_pullup(in, n < 1024 ? (ssize_t)n : 1024);
		switch (c->state) {
		case GW_ST_FIRST:
			used = first(c, p, n);
			if (used < 0)
				return;
			continue;
		case GW_ST_S5_METHODS:
			used = s5_methods(c, p, n);
			break;
		case GW_ST_S5_AUTH:
			used = s5_auth(c, p, n);
			break;
		case GW_ST_S5_REQUEST:
			s5_request(c, p, n);
			return;
		case GW_ST_S4_REQUEST:
			s4_request(c, p, n < 1024 ? n : 1024);
			return;
		default:
			return;
		}
		if (used <= 0)
			return;
		evbuffer_drain(in, (size_t)used);
	}
}
