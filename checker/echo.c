/* echo: what a judge echoes (its answer) says about the proxy it came through.
 *
 * Each format is read by one scanner that hands what it finds to three
 * sinks: the client address (the first one found is the exit address), a
 * header (name and value), and the search for our own addresses. The
 * scanners never look past len, never expect a NUL terminator and keep no
 * state beyond a few indexes, so any input costs time linear in its length
 * (times the number of our addresses). Which format an answer is in is
 * decided once, from its first bytes: "proxyfs-judge" is ours, '{' is
 * JSON, anything else is read as azenv. Does not decode HTML entities or
 * JSON escapes: neither can hide or forge a dotted or colon-separated
 * address token.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "echo.h"

/* Headers that a proxy adds and a browser never sends; the names are the
 * canonical spelling reported in ja_result.header. Matched without case,
 * '_' taken for '-' (azenv writes HTTP_X_FORWARDED_FOR). */
static const char *const ja_proxy_headers[] = {
	"Via",		   "X-Forwarded-For",	 "X-Forwarded",	   "Forwarded",
	"Forwarded-For",   "X-Real-IP",		 "Proxy-Connection", "X-Proxy-Connection",
	"Client-IP",	   "X-Client-IP",	 "X-Proxy-ID",	     "Proxy-Agent",
	"X-Tinyproxy",	   "X-BlueCoat-Via",	 "X-Originating-IP", "X-Remote-IP",
	"X-Remote-Addr",   "X-Cluster-Client-IP",
};

static const char ja_magic[] = "proxyfs-judge";

struct ja_scan {
	const char *const *our;
	size_t n_our;
	struct ja_result *out;
	const char *want; /* a header whose echo is looked for, or NULL */
	bool want_seen;	  /* it was echoed */
	bool ours;	  /* one of our addresses was seen */
	bool have_addr;	  /* out->exit_ip holds the client address */
};

static bool ja_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static char ja_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ja_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void ja_copy(char *dst, size_t size, const char *s, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* Trims blanks (and CR) on both ends of [*s, *s + *n). */
static void ja_trim(const char **s, size_t *n)
{
	while (*n && ja_space(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && ja_space((*s)[*n - 1]))
		(*n)--;
}

/* Header names are equal regardless of case and of '-' against '_'. */
static bool ja_name_eq(const char *name, size_t n, const char *canon)
{
	size_t i;

	for (i = 0; i < n && canon[i]; i++) {
		char a = name[i] == '_' ? '-' : ja_lower(name[i]);
		char b = canon[i] == '_' ? '-' : ja_lower(canon[i]);

		if (a != b)
			return false;
	}
	return i == n && canon[i] == '\0';
}

static bool ja_prefix(const char *s, size_t n, const char *prefix)
{
	size_t i;

	for (i = 0; prefix[i]; i++)
		if (i >= n || ja_lower(s[i]) != ja_lower(prefix[i]))
			return false;
	return true;
}

/* A character that continues an address token: an IPv4 address must not
 * touch a digit, a letter or a dot; an IPv6 one not a colon either. A colon
 * may touch an IPv4 address: a port after it, "::ffff:" before it. */
static bool ja_token_char(char c, bool v6)
{
	return ja_alnum(c) || c == '.' || (v6 && c == ':');
}

/* Whether tok (tlen bytes, not empty) occurs in s as a whole token. */
static bool ja_has_token(const char *s, size_t n, const char *tok, size_t tlen)
{
	bool v6 = memchr(tok, ':', tlen) != NULL;

	for (size_t i = 0; i + tlen <= n; i++) {
		size_t k = 0;

		while (k < tlen && ja_lower(s[i + k]) == ja_lower(tok[k]))
			k++;
		if (k < tlen)
			continue;
		if (i > 0 && ja_token_char(s[i - 1], v6))
			continue;
		if (i + tlen < n && ja_token_char(s[i + tlen], v6))
			continue;
		return true;
	}
	return false;
}

/* Something the judge echoed from the client: look for our addresses. */
static void ja_echoed(struct ja_scan *sc, const char *v, size_t n)
{
	for (size_t i = 0; i < sc->n_our && !sc->ours; i++) {
		const char *a = sc->our[i];

		if (a && a[0] && ja_has_token(v, n, a, strlen(a)))
			sc->ours = true;
	}
}

/* A literal IPv4 or IPv6 address, brackets and an IPv6 zone allowed;
 * on success *s, *n are narrowed to the address without brackets. */
static bool ja_valid_addr(const char **s, size_t *n)
{
	char buf[64];
	unsigned char bin[16];
	const char *pct;
	size_t len;

	if (*n >= 2 && (*s)[0] == '[' && (*s)[*n - 1] == ']') {
		(*s)++;
		*n -= 2;
	}
	if (*n == 0 || *n >= sizeof(buf) || memchr(*s, '\0', *n))
		return false;
	pct = memchr(*s, '%', *n);
	len = pct ? (size_t)(pct - *s) : *n;
	memcpy(buf, *s, len);
	buf[len] = '\0';
	if (pct && (memchr(buf, ':', len) == NULL || pct + 1 == *s + *n))
		return false;
	return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

/* The address the judge saw. The first valid one is the exit address. */
static void ja_client(struct ja_scan *sc, const char *v, size_t n)
{
	ja_echoed(sc, v, n);
	ja_trim(&v, &n);
	if (sc->have_addr || !ja_valid_addr(&v, &n))
		return;
	ja_copy(sc->out->exit_ip, sizeof(sc->out->exit_ip), v, n);
	sc->have_addr = true;
}

/* httpbin's origin is a list when forwarders were involved: its own load
 * balancer appends the address that connected to it, after whatever the
 * proxy put in X-Forwarded-For. So the exit address is the last item. */
static void ja_client_list(struct ja_scan *sc, const char *v, size_t n)
{
	const char *comma = v + n;

	ja_echoed(sc, v, n);
	while (comma > v && comma[-1] != ',')
		comma--;
	ja_client(sc, comma, (size_t)(v + n - comma));
}

static void ja_header(struct ja_scan *sc, const char *name, size_t nlen, const char *v,
		      size_t vn)
{
	struct ja_result *out = sc->out;

	ja_trim(&name, &nlen);
	if (sc->want && ja_name_eq(name, nlen, sc->want))
		sc->want_seen = true;
	if (nlen == 0 || ja_name_eq(name, nlen, "Host"))
		return;
	ja_echoed(sc, v, vn);
	if (out->header[0])
		return;
	for (size_t i = 0; i < sizeof(ja_proxy_headers) / sizeof(ja_proxy_headers[0]); i++) {
		if (ja_name_eq(name, nlen, ja_proxy_headers[i])) {
			ja_copy(out->header, sizeof(out->header), ja_proxy_headers[i],
				strlen(ja_proxy_headers[i]));
			return;
		}
	}
}

/* --- azenv: "KEY = value" segments, split by newlines and HTML tags --- */

static void ja_azenv_segment(struct ja_scan *sc, const char *s, size_t n)
{
	size_t k = 0, i;

	ja_trim(&s, &n);
	while (k < n && (ja_alnum(s[k]) || s[k] == '_' || s[k] == '-'))
		k++;
	for (i = k; i < n && ja_space(s[i]); i++)
		;
	if (k == 0 || i >= n || (s[i] != '=' && s[i] != ':'))
		return;
	i++;
	if (ja_name_eq(s, k, "REMOTE_ADDR"))
		ja_client(sc, s + i, n - i);
	else if (k > 5 && ja_prefix(s, k, "HTTP_"))
		ja_header(sc, s + 5, k - 5, s + i, n - i);
}

static void ja_azenv(struct ja_scan *sc, const char *b, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t end = i;

		while (end < len && b[end] != '\n' && b[end] != '<')
			end++;
		ja_azenv_segment(sc, b + i, end - i);
		/* A tag ends at '>', or at the end of its line if unclosed. */
		if (end < len && b[end] == '<')
			while (end < len && b[end] != '>' && b[end] != '\n')
				end++;
		i = end + 1;
	}
}

/* --- JSON: "origin" (or "ip") at the top, "headers" one level down --- */

struct ja_json {
	size_t depth;	      /* open objects and arrays */
	uint64_t objects;     /* bit d - 1 set: level d is an object (d <= 64) */
	bool want_key;	      /* the next string at this level is a key */
	bool headers_done;    /* only the first "headers" object counts */
	size_t headers_depth; /* level of the headers object, 0 when outside */
	const char *top_key;  /* last key at level 1 */
	size_t top_len;
	const char *hkey; /* last key inside headers */
	size_t hkey_len;
};

static bool ja_json_is_object(const struct ja_json *j, size_t depth)
{
	return depth >= 1 && depth <= 64 && (j->objects >> (depth - 1) & 1);
}

/* A string at the current level, between its quotes (escapes kept). */
static void ja_json_string(struct ja_scan *sc, struct ja_json *j, const char *s, size_t n)
{
	if (j->want_key) {
		j->want_key = false;
		if (j->depth == 1) {
			j->top_key = s;
			j->top_len = n;
		} else if (j->depth == j->headers_depth) {
			j->hkey = s;
			j->hkey_len = n;
		}
		return;
	}
	if (j->depth == 1 && j->top_key &&
	    (ja_name_eq(j->top_key, j->top_len, "origin") ||
	     ja_name_eq(j->top_key, j->top_len, "ip")))
		ja_client_list(sc, s, n);
	else if (j->headers_depth && j->hkey &&
		 (j->depth == j->headers_depth ||
		  (j->depth == j->headers_depth + 1 && !ja_json_is_object(j, j->depth))))
		ja_header(sc, j->hkey, j->hkey_len, s, n); /* go-httpbin: a list of values */
}

static void ja_json_open(struct ja_json *j, bool object)
{
	if (object && j->depth == 1 && !j->headers_done && j->top_key &&
	    ja_name_eq(j->top_key, j->top_len, "headers")) {
		j->headers_depth = 2;
		j->headers_done = true;
		j->hkey = NULL;
	}
	j->depth++;
	if (j->depth <= 64) {
		uint64_t bit = (uint64_t)1 << (j->depth - 1);

		j->objects = object ? j->objects | bit : j->objects & ~bit;
	}
	j->want_key = object;
}

static void ja_json_close(struct ja_json *j)
{
	if (j->depth == 0)
		return;
	if (j->depth == j->headers_depth)
		j->headers_depth = 0;
	j->depth--;
	j->want_key = false;
}

static void ja_json(struct ja_scan *sc, const char *b, size_t len)
{
	struct ja_json j = { 0 };
	size_t i = 0;

	while (i < len) {
		char c = b[i];
		size_t end;

		switch (c) {
		case '"':
			for (end = i + 1; end < len && b[end] != '"'; end++)
				if (b[end] == '\\')
					end++;
			if (end >= len)
				return; /* cut inside a string */
			ja_json_string(sc, &j, b + i + 1, end - i - 1);
			i = end;
			break;
		case '{':
		case '[':
			ja_json_open(&j, c == '{');
			break;
		case '}':
		case ']':
			ja_json_close(&j);
			break;
		case ',':
			j.want_key = ja_json_is_object(&j, j.depth);
			break;
		default: /* ':', blanks, numbers, literals */
			break;
		}
		i++;
	}
}

/* --- proxyfs judge: "remote_addr A" and "header Name: value" lines --- */

static void ja_proxyfs_line(struct ja_scan *sc, const char *s, size_t n)
{
	const char *colon;

	if (n > 12 && memcmp(s, "remote_addr ", 12) == 0) {
		ja_client(sc, s + 12, n - 12);
	} else if (n > 7 && memcmp(s, "header ", 7) == 0) {
		colon = memchr(s + 7, ':', n - 7);
		if (colon)
			ja_header(sc, s + 7, (size_t)(colon - s - 7), colon + 1,
				  (size_t)(s + n - colon - 1));
	}
}

static void ja_proxyfs(struct ja_scan *sc, const char *b, size_t len)
{
	const char *nl = memchr(b, '\n', len);
	size_t i = nl ? (size_t)(nl - b) + 1 : len; /* the magic line is skipped */

	while (i < len) {
		size_t end = i;

		while (end < len && b[end] != '\n')
			end++;
		ja_proxyfs_line(sc, b + i, end - i);
		i = end + 1;
	}
}

/* --- the entry points --- */

static enum ja_format ja_detect(const char *b, size_t len, size_t *start)
{
	size_t i = 0, m = sizeof(ja_magic) - 1;

	if (len >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0)
		i = 3; /* UTF-8 byte order mark */
	while (i < len && (ja_space(b[i]) || b[i] == '\n'))
		i++;
	*start = i;
	if (len - i >= m && memcmp(b + i, ja_magic, m) == 0 &&
	    (len - i == m || ja_space(b[i + m]) || b[i + m] == '\n'))
		return JA_FORMAT_PROXYFS;
	if (i < len && b[i] == '{')
		return JA_FORMAT_JSON;
	return JA_FORMAT_AZENV;
}

/* Runs the scanner of the body's format over it. */
static void ja_scan_body(struct ja_scan *sc, const char *body, size_t len)
{
	size_t start;

	sc->out->format = ja_detect(body, len, &start);
	if (sc->out->format == JA_FORMAT_PROXYFS)
		ja_proxyfs(sc, body + start, len - start);
	else if (sc->out->format == JA_FORMAT_JSON)
		ja_json(sc, body + start, len - start);
	else
		ja_azenv(sc, body, len);
}

int ja_parse(const char *body, size_t len, const char *const *our_addrs, size_t n_our,
	     struct ja_result *out)
{
	struct ja_scan sc = { .our = our_addrs, .n_our = our_addrs ? n_our : 0, .out = out };

	memset(out, 0, sizeof(*out));
	if (!body) {
		body = "";
		len = 0;
	}
	ja_scan_body(&sc, body, len);
	if (!sc.have_addr) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	if (sc.ours)
		out->anon = JA_TRANSPARENT;
	else
		out->anon = out->header[0] ? JA_ANONYMOUS : JA_ELITE;
	return 0;
}

bool ja_echoes(const char *body, size_t len, const char *header)
{
	struct ja_result r = { 0 };
	struct ja_scan sc = { .out = &r, .want = header };

	if (!body || !header)
		return false;
	ja_scan_body(&sc, body, len);
	return sc.want_seen;
}

int ja_own_addr(const char *body, size_t len, char *addr, size_t size)
{
	struct ja_result r;
	size_t n;
	int rc = ja_parse(body, len, NULL, 0, &r);

	if (rc < 0)
		return rc;
	n = strlen(r.exit_ip);
	if (n >= size)
		return -ENOSPC;
	memcpy(addr, r.exit_ip, n + 1);
	return 0;
}
