/* scrape: proxies out of arbitrary text; see scrape.h.
 *
 * One pass from left to right. Where a word begins, a "scheme://" is tried
 * as a URI; where a number begins, a dotted IPv4 address; at '[', an IPv6
 * literal with its port. An address must stand on its own (not inside a
 * longer word, number or version string such as v1.2.3.4). Its port is
 * either glued to it by ':' or found in the next field: within GAP_MAX
 * bytes of separators and markup, where words are only allowed if one of
 * them names the port. Every attempt looks at a bounded number of bytes
 * and the scan never moves back, so the time is linear in the input.
 * What is found goes through proxy_parse_line(), then must print with
 * proxy_format_uri() and name a host one could connect to (not 0.0.0.0/8,
 * multicast, reserved or the IPv6 unspecified and multicast addresses).
 */
#include "scrape.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define GAP_MAX 64	    /* bytes between an address and its port field */
#define TOKEN_MAX 600	    /* longest URI authority (credentials and host) */
#define CREDS_TOKEN_MAX 128 /* longest host:port:user:pass outside a URI */
#define IPV6_TEXT_MAX 45    /* INET6_ADDRSTRLEN without the NUL */
#define PORT_DIGITS_MAX 5

struct scan {
	const char *s;
	size_t n;
	enum proxy_proto dflt;
	scrape_fn fn;
	void *arg;
	size_t found;
	bool stop; /* fn asked to stop */
};

static const char *const proxy_schemes[] = {"http",    "https",	 "socks4",
					    "socks4a", "socks5", "socks5h"};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
	return is_digit(c) || is_alpha(c);
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* c is one of the bytes of set (a NUL in the text never is). */
static bool in_set(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

/* Ends a host:port:user:pass token. */
static bool is_token_delim(char c)
{
	unsigned char u = (unsigned char)c;

	return u <= 0x20 || u >= 0x7f || in_set(c, "\"'<>,;|(){}[]\\`");
}

/* Ends the authority of a URI (brackets stay: they hold IPv6). */
static bool is_uri_delim(char c)
{
	unsigned char u = (unsigned char)c;

	return u <= 0x20 || u >= 0x7f || in_set(c, "\"'<>,;|(){}\\`^/?#");
}

/* Whether something may start at i: not in the middle of a word, a
 * number, a dotted name or an address with credentials before it. */
static bool starts_here(const struct scan *sc, size_t i)
{
	char c;

	if (i == 0)
		return true;
	c = sc->s[i - 1];
	return !is_alnum(c) && !in_set(c, "._-@");
}

/* True when the byte at i, and the one after it, do not continue a number
 * or word that ends just before i (so 8080 in "8080.5" or "8080a" is not a
 * port, nor 1.2.3.4 in "1.2.3.4.5"). */
static bool ends_here(const struct scan *sc, size_t i, const char *joiners)
{
	char c;

	if (i >= sc->n)
		return true;
	c = sc->s[i];
	if (is_alnum(c) || c == '_')
		return false;
	return !(in_set(c, joiners) && i + 1 < sc->n && is_digit(sc->s[i + 1]));
}

static bool usable_host(const struct proxy_addr *a)
{
	struct in6_addr in6;
	struct in_addr in4;
	uint8_t first;

	if (a->ipv6) {
		if (inet_pton(AF_INET6, a->host, &in6) != 1)
			return false;
		return !IN6_IS_ADDR_UNSPECIFIED(&in6) && !IN6_IS_ADDR_MULTICAST(&in6);
	}
	if (inet_pton(AF_INET, a->host, &in4) != 1)
		return true; /* a DNS name, from a URI */
	first = (uint8_t)(ntohl(in4.s_addr) >> 24);
	return first != 0 && first < 224;
}

/* Validates the proxy written in text[0..len) and hands it on. */
static bool emit(struct scan *sc, const char *text, size_t len)
{
	char uri[PROXY_URI_MAX];
	struct proxy_addr a;

	if (proxy_parse_line(text, len, sc->dflt, &a) != PROXY_LINE_OK)
		return false;
	if (!usable_host(&a) || proxy_format_uri(&a, uri, sizeof(uri)) < 0)
		return false;
	sc->found++;
	if (sc->fn(sc->arg, &a) < 0)
		sc->stop = true;
	return true;
}

/* --- ports --- */

/* The port digits at i and where they end; the byte after them must not
 * continue a number (a date, a time, a version). */
static bool port_at(const struct scan *sc, size_t i, size_t *end)
{
	size_t k = i;

	while (k < sc->n && k - i <= PORT_DIGITS_MAX && is_digit(sc->s[k]))
		k++;
	if (k == i || k - i > PORT_DIGITS_MAX || !ends_here(sc, k, ".-/:"))
		return false;
	*end = k;
	return true;
}

/* Looks for the port field after an address ending at from: a run of
 * separators and tags (<td class="x">), then digits. Words outside tags
 * are allowed only if one contains "port" (a JSON key); so "1.2.3.4 was
 * seen 5 times" gives no proxy. */
static bool gap_to_port(const struct scan *sc, size_t from, size_t *port)
{
	size_t limit = sc->n - from > GAP_MAX ? from + GAP_MAX : sc->n;
	bool in_tag = false, words = false, port_word = false;
	uint32_t last4 = 0; /* the last four letters, lowered */

	for (size_t k = from; k < limit; k++) {
		char c = sc->s[k];

		if (in_tag) {
			in_tag = c != '>';
		} else if (is_digit(c)) {
			*port = k;
			return k > from && (!words || port_word);
		} else if (is_alpha(c)) {
			words = true;
			last4 = last4 << 8 | (uint8_t)(c | 0x20);
			port_word = port_word || last4 == ('p' << 24 | 'o' << 16 | 'r' << 8 | 't');
			continue;
		} else if (c == '_' || c == '-') {
			words = true; /* proxy_port, x-port; and 1.2.3.4-5 is no proxy */
		} else if (c == '<') {
			in_tag = true;
		} else if (!in_set(c, " \t\r\n,;|:=\"'")) {
			return false;
		}
		last4 = 0;
	}
	return false;
}

/* --- the three shapes --- */

/* Reads a dotted quad at i (no leading zeros, octets up to 255) and sets
 * *end past it. */
static bool quad_at(const struct scan *sc, size_t i, size_t *end)
{
	size_t k = i;

	for (int part = 0; part < 4; part++) {
		size_t start = k;
		unsigned v = 0;

		if (part > 0) {
			if (k >= sc->n || sc->s[k] != '.')
				return false;
			start = ++k;
		}
		while (k < sc->n && k - start < 4 && is_digit(sc->s[k]))
			v = v * 10 + (unsigned)(sc->s[k++] - '0');
		if (k == start || k - start > 3 || v > 255 ||
		    (sc->s[start] == '0' && k - start > 1))
			return false;
	}
	*end = k;
	return ends_here(sc, k, ".");
}

/* 1.2.3.4:8080:user:pass as one token (quad_end is at the first ':');
 * true if it was a proxy, with *end set past it. */
static bool try_with_creds(struct scan *sc, size_t i, size_t quad_end, size_t *end)
{
	struct proxy_addr a;
	size_t k = quad_end + 1;

	while (k < sc->n && k - quad_end <= PORT_DIGITS_MAX && is_digit(sc->s[k]))
		k++;
	if (k == quad_end + 1 || k >= sc->n || sc->s[k] != ':')
		return false;
	while (k < sc->n && k - i < CREDS_TOKEN_MAX && !is_token_delim(sc->s[k]))
		k++;
	if (k - i >= CREDS_TOKEN_MAX ||
	    proxy_parse_line(sc->s + i, k - i, sc->dflt, &a) != PROXY_LINE_OK || !a.user[0])
		return false;
	*end = k;
	return emit(sc, sc->s + i, k - i);
}

/* An IPv4 address at i, then its port; returns where to go on. */
static size_t try_ipv4(struct scan *sc, size_t i)
{
	char line[32];
	size_t quad_end, port, port_end;
	int len;

	if (!quad_at(sc, i, &quad_end))
		return i + 1;
	if (quad_end < sc->n && sc->s[quad_end] == ':' &&
	    try_with_creds(sc, i, quad_end, &port_end))
		return port_end;
	if (!gap_to_port(sc, quad_end, &port) || !port_at(sc, port, &port_end))
		return quad_end;
	len = snprintf(line, sizeof(line), "%.*s:%.*s", (int)(quad_end - i), sc->s + i,
		       (int)(port_end - port), sc->s + port);
	if (len < 0 || (size_t)len >= sizeof(line) || !emit(sc, line, (size_t)len))
		return quad_end;
	return port_end;
}

/* [v6]:port at i (the '['); returns where to go on. */
static size_t try_ipv6(struct scan *sc, size_t i)
{
	size_t k = i + 1, port_end;

	while (k < sc->n && k - i <= IPV6_TEXT_MAX &&
	       (is_hex(sc->s[k]) || sc->s[k] == ':' || sc->s[k] == '.'))
		k++;
	if (k + 2 >= sc->n || sc->s[k] != ']' || sc->s[k + 1] != ':' ||
	    !port_at(sc, k + 2, &port_end))
		return i + 1;
	if (!emit(sc, sc->s + i, port_end - i))
		return i + 1;
	return port_end;
}

static bool is_proxy_scheme(const char *s, size_t n)
{
	for (size_t k = 0; k < sizeof(proxy_schemes) / sizeof(proxy_schemes[0]); k++) {
		if (strlen(proxy_schemes[k]) == n && strncasecmp(s, proxy_schemes[k], n) == 0)
			return true;
	}
	return false;
}

/* A URI at i whose scheme ends at word_end (before "://"). A URI of
 * another scheme, or one with a path, query or fragment (a web link),
 * gives nothing; either way the scan goes on after its authority. */
static size_t try_uri(struct scan *sc, size_t i, size_t word_end)
{
	size_t auth = word_end + 3, k = auth, end;
	bool link;

	while (k < sc->n && k - auth < TOKEN_MAX && !is_uri_delim(sc->s[k]))
		k++;
	end = k;
	while (end > auth && sc->s[end - 1] == '.')
		end--; /* the full stop of a sentence */
	/* a lone trailing '/' is still a proxy: http://1.2.3.4:8080/ */
	link = k < sc->n && (in_set(sc->s[k], "?#") ||
			     (sc->s[k] == '/' && k + 1 < sc->n && !is_uri_delim(sc->s[k + 1])));
	if (k - auth < TOKEN_MAX && !link && is_proxy_scheme(sc->s + i, word_end - i))
		emit(sc, sc->s + i, end - i);
	return k;
}

/* A word at i: a URI if "://" follows it, else skipped whole. */
static size_t try_word(struct scan *sc, size_t i)
{
	size_t k = i;

	while (k < sc->n && is_alnum(sc->s[k]))
		k++;
	if (sc->n - k >= 3 && memcmp(sc->s + k, "://", 3) == 0)
		return try_uri(sc, i, k);
	return k;
}

/* At the start of a line: past it if it is a # comment, else i. */
static size_t skip_comment(const struct scan *sc, size_t i)
{
	size_t k = i;
	const char *nl;

	while (k < sc->n && (sc->s[k] == ' ' || sc->s[k] == '\t'))
		k++;
	if (k >= sc->n || sc->s[k] != '#')
		return i;
	nl = memchr(sc->s + k, '\n', sc->n - k);
	return nl ? (size_t)(nl - sc->s) + 1 : sc->n;
}

size_t scrape_text(const char *text, size_t len, enum proxy_proto dflt, scrape_fn fn, void *arg)
{
	struct scan sc = {.s = text, .n = len, .dflt = dflt, .fn = fn, .arg = arg};
	size_t i = 0, next;

	while (i < sc.n && !sc.stop) {
		char c = text[i];

		if (i == 0 || text[i - 1] == '\n') {
			next = skip_comment(&sc, i);
			if (next != i) {
				i = next;
				continue;
			}
		}
		if (is_alpha(c) && starts_here(&sc, i))
			i = try_word(&sc, i);
		else if (is_digit(c) && starts_here(&sc, i))
			i = try_ipv4(&sc, i);
		else if (c == '[')
			i = try_ipv6(&sc, i);
		else
			i++;
	}
	return sc.found;
}
