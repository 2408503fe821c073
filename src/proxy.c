/* proxy: reading one proxy from a line of text, and printing it back.
 *
 * proxy_parse_line() accepts the line forms of DESIGN.md ("Proxy lines
 * accepted") from a buffer that need not be NUL-terminated and never reads
 * past its length. Hosts are IPv4 or bracketed IPv6 literals or DNS names;
 * IPv6 literals are stored in inet_ntop's canonical form and DNS names in
 * lower case, so that the URI proxy_format_uri() prints is a stable key for
 * the pool. Credentials in a URI may be percent-encoded and are printed
 * percent-encoded, so a printed URI parses back to the same proxy.
 * Nothing here allocates, resolves names or knows about checking.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

/* Every name a protocol is known by, as a scheme and as a folder. */
static const struct {
	const char *name;
	enum proxy_proto proto;
	bool remote_dns;
} proto_names[] = {
    {"http", PROXY_HTTP, false},     {"https", PROXY_HTTPS, false},
    {"socks4", PROXY_SOCKS4, false}, {"socks4a", PROXY_SOCKS4, true},
    {"socks5", PROXY_SOCKS5, false}, {"socks5h", PROXY_SOCKS5, true},
};

#define N_PROTO_NAMES (sizeof(proto_names) / sizeof(proto_names[0]))

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Only printable ASCII without spaces may appear in a line. */
static bool all_printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

/* A line given as https:// (or a source whose protocol is https) is an HTTP
 * proxy to be checked with CONNECT. */
static void set_proto(struct proxy_addr *a, enum proxy_proto proto)
{
	a->proto = proto == PROXY_HTTPS ? PROXY_HTTP : proto;
	a->tunnel = proto == PROXY_HTTPS;
}

static bool parse_port(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > 65535)
			return false;
	}
	if (v == 0)
		return false;
	*port = (uint16_t)v;
	return true;
}

static bool parse_ipv6(const char *s, size_t n, struct proxy_addr *a)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr in6;

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET6, buf, &in6) != 1)
		return false;
	if (!inet_ntop(AF_INET6, &in6, a->host, sizeof(a->host)))
		return false;
	a->ipv6 = true;
	return true;
}

/* Letters, digits and inner hyphens; labels of 1..63 between dots. */
static bool valid_dns_name(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-')
			return false;
		if (s[i] == '-' && label == 0)
			return false;
		if (++label > DNS_LABEL_MAX)
			return false;
	}
	return label > 0 && s[n - 1] != '-';
}

/* A name of only digits and dots must be an IPv4 address (so 999.1.1.1
 * is rejected rather than taken for a host name). */
static bool parse_name_or_ipv4(const char *s, size_t n, struct proxy_addr *a)
{
	struct in_addr in4;
	bool numeric = true;

	if (n == 0 || n > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		numeric = numeric && (is_digit(s[i]) || s[i] == '.');
	if (!numeric && !valid_dns_name(s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		a->host[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
	a->host[n] = '\0';
	return !numeric || inet_pton(AF_INET, a->host, &in4) == 1;
}

/* Reads host:port or [v6]:port from s; *end is set just past the port,
 * which ends at the end of s or at the next ':'. */
static bool parse_hostport(const char *s, size_t n, struct proxy_addr *a, size_t *end)
{
	const char *host_end;
	size_t port_at, port_len;

	if (n > 0 && s[0] == '[') {
		host_end = memchr(s, ']', n);
		if (!host_end || !parse_ipv6(s + 1, (size_t)(host_end - s) - 1, a))
			return false;
		host_end++;
	} else {
		host_end = memchr(s, ':', n);
		if (!host_end || !parse_name_or_ipv4(s, (size_t)(host_end - s), a))
			return false;
	}
	port_at = (size_t)(host_end - s);
	if (port_at >= n || s[port_at] != ':')
		return false;
	port_at++;
	for (port_len = 0; port_at + port_len < n && s[port_at + port_len] != ':'; port_len++)
		;
	if (!parse_port(s + port_at, port_len, &a->port))
		return false;
	*end = port_at + port_len;
	return true;
}

int proxy_hex_digit(char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Copies a credential into dst (PROXY_CRED_MAX + 1 bytes), decoding %XX
 * escapes when asked. A decoded NUL or a broken escape is refused. */
static bool copy_cred(char *dst, const char *s, size_t n, bool decode)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (decode && c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return false;
			hi = proxy_hex_digit(s[i + 1]);
			lo = proxy_hex_digit(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return false;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (len == PROXY_CRED_MAX)
			return false;
		dst[len++] = c;
	}
	dst[len] = '\0';
	return true;
}

/* user[:pass] from a URI; the user may not be empty. */
static bool parse_userinfo(const char *s, size_t n, struct proxy_addr *a)
{
	const char *colon = memchr(s, ':', n);
	size_t ulen = colon ? (size_t)(colon - s) : n;

	if (ulen == 0 || !copy_cred(a->user, s, ulen, true))
		return false;
	if (!colon)
		return true;
	return copy_cred(a->pass, colon + 1, n - ulen - 1, true);
}

/* [user:pass@]host:port, the part of a URI after "scheme://". */
static bool parse_authority(const char *s, size_t n, struct proxy_addr *a)
{
	const char *at = memrchr(s, '@', n);
	size_t end;

	if (at) {
		if (!parse_userinfo(s, (size_t)(at - s), a))
			return false;
		n -= (size_t)(at + 1 - s);
		s = at + 1;
	}
	return parse_hostport(s, n, a, &end) && end == n;
}

/* host:port or host:port:user:pass, credentials taken literally. */
static bool parse_colon_form(const char *s, size_t n, struct proxy_addr *a)
{
	const char *colon;
	size_t end, ulen;

	if (!parse_hostport(s, n, a, &end))
		return false;
	if (end == n)
		return true;
	s += end + 1;
	n -= end + 1;
	colon = memchr(s, ':', n);
	if (!colon)
		return false;
	ulen = (size_t)(colon - s);
	return ulen > 0 && copy_cred(a->user, s, ulen, false) &&
	       copy_cred(a->pass, colon + 1, n - ulen - 1, false);
}

/* Length of a leading "scheme://", 0 if the line has none. */
static size_t scheme_length(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_alpha(s[0]))
		return 0;
	while (i < n &&
	       (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
		return 0;
	return i;
}

static bool apply_scheme(const char *s, size_t n, struct proxy_addr *a)
{
	for (size_t i = 0; i < N_PROTO_NAMES; i++) {
		if (strlen(proto_names[i].name) == n &&
		    strncasecmp(s, proto_names[i].name, n) == 0) {
			set_proto(a, proto_names[i].proto);
			a->remote_dns = proto_names[i].remote_dns;
			return true;
		}
	}
	return false;
}

/* Parses a trimmed, non-empty, non-comment line into a. */
static bool parse_trimmed(const char *s, size_t n, enum proxy_proto dflt, struct proxy_addr *a)
{
	size_t slen = scheme_length(s, n);
	struct proxy_addr colon_try;

	if (!all_printable(s, n))
		return false;
	if (slen > 0) {
		a->scheme = true;
		return apply_scheme(s, slen, a) && parse_authority(s + slen + 3, n - slen - 3, a);
	}
	set_proto(a, dflt);
	colon_try = *a;
	if (parse_colon_form(s, n, &colon_try)) {
		*a = colon_try;
		return true;
	}
	/* user:pass@host:port without a scheme, as some lists write it */
	return memchr(s, '@', n) && parse_authority(s, n, a);
}

/* What the proxy's own protocol can carry, so that a line no check could
 * ever pass is refused once, when read, instead of failing every check. */
static bool creds_fit(const struct proxy_addr *a)
{
	size_t ulen = strlen(a->user), plen = strlen(a->pass);

	switch (a->proto) {
	case PROXY_SOCKS5:
		return ulen == 0 || (ulen <= PROXY_SOCKS_CRED_MAX && plen >= 1 &&
				     plen <= PROXY_SOCKS_CRED_MAX);
	case PROXY_SOCKS4:
		return ulen <= PROXY_SOCKS_CRED_MAX && plen == 0;
	default:
		return true;
	}
}

enum proxy_parse_result proxy_parse_line(const char *line, size_t len, enum proxy_proto dflt,
					 struct proxy_addr *out)
{
	struct proxy_addr a;

	while (len > 0 && is_blank(line[0])) {
		line++;
		len--;
	}
	while (len > 0 && is_blank(line[len - 1]))
		len--;
	if (len == 0 || line[0] == '#')
		return PROXY_LINE_SKIP;
	if ((unsigned)dflt >= PROXY_PROTO_COUNT)
		return PROXY_LINE_BAD;
	memset(&a, 0, sizeof(a));
	if (!parse_trimmed(line, len, dflt, &a) || !creds_fit(&a))
		return PROXY_LINE_BAD;
	*out = a;
	return PROXY_LINE_OK;
}

/* A bounded writer: remembers overflow instead of failing each call. */
struct uri_buf {
	char *p;
	size_t size;
	size_t len;
	bool overflow;
};

static void ub_put(struct uri_buf *b, const char *s, size_t n)
{
	if (b->overflow || b->size - b->len <= n) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void ub_puts(struct uri_buf *b, const char *s)
{
	ub_put(b, s, strlen(s));
}

/* RFC 3986 unreserved and sub-delims pass; everything else is %XX. */
static void ub_put_cred(struct uri_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

		if (is_alpha((char)c) || is_digit((char)c) || strchr("-._~!$&'()*+,;=", c))
			ub_put(b, s, 1);
		else
			ub_put(b, esc, sizeof(esc));
	}
}

static const char *uri_scheme(const struct proxy_addr *p)
{
	switch (p->proto) {
	case PROXY_HTTP:
	case PROXY_HTTPS:
		return "http";
	case PROXY_SOCKS4:
		return p->remote_dns ? "socks4a" : "socks4";
	case PROXY_SOCKS5:
		return p->remote_dns ? "socks5h" : "socks5";
	default:
		return NULL;
	}
}

static int format_uri(const struct proxy_addr *p, char *buf, size_t size, bool key)
{
	struct uri_buf b = {.p = buf, .size = size};
	const char *scheme = uri_scheme(p);
	char port[8];

	if (key && (p->proto == PROXY_HTTPS || (p->proto == PROXY_HTTP && p->tunnel)))
		scheme = "https";

	if (!scheme || size == 0)
		return -1;
	buf[0] = '\0';
	ub_puts(&b, scheme);
	ub_puts(&b, "://");
	if (p->user[0]) {
		ub_put_cred(&b, p->user);
		ub_puts(&b, ":");
		ub_put_cred(&b, p->pass);
		ub_puts(&b, "@");
	}
	ub_puts(&b, p->ipv6 ? "[" : "");
	ub_puts(&b, p->host);
	ub_puts(&b, p->ipv6 ? "]" : "");
	snprintf(port, sizeof(port), ":%u", (unsigned)p->port);
	ub_puts(&b, port);
	return b.overflow ? -1 : (int)b.len;
}

int proxy_format_uri(const struct proxy_addr *p, char *buf, size_t size)
{
	return format_uri(p, buf, size, false);
}

int proxy_format_key(const struct proxy_addr *p, char *buf, size_t size)
{
	return format_uri(p, buf, size, true);
}

const char *proxy_proto_name(enum proxy_proto proto)
{
	static const char *const names[PROXY_PROTO_COUNT] = {
	    [PROXY_HTTP] = "http",
	    [PROXY_HTTPS] = "https",
	    [PROXY_SOCKS4] = "socks4",
	    [PROXY_SOCKS5] = "socks5",
	};

	return (unsigned)proto < PROXY_PROTO_COUNT ? names[proto] : NULL;
}

int proxy_proto_from_name(const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < N_PROTO_NAMES; i++) {
		if (strcasecmp(name, proto_names[i].name) == 0)
			return (int)proto_names[i].proto;
	}
	return -1;
}

bool proxy_name_remote_dns(const char *name)
{
	for (size_t i = 0; name && i < N_PROTO_NAMES; i++)
		if (strcasecmp(name, proto_names[i].name) == 0)
			return proto_names[i].remote_dns;
	return false;
}

const char *proxy_scheme_name(enum proxy_proto proto, bool remote_dns)
{
	for (size_t i = 0; i < N_PROTO_NAMES; i++)
		if (proto_names[i].proto == proto && proto_names[i].remote_dns == remote_dns)
			return proto_names[i].name;
	return NULL;
}
