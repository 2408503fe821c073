/* http_query: the query string of a request; see http_query.h.
 *
 * Each key=value pair is percent-decoded ('+' is a space) into a bounded
 * buffer and handed to its key's reader; nothing is allocated.
 */
#include "http_query.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"
#include "snapshot.h"

/* Longest decoded key or value worth reading: a list of every source. */
#define QUERY_VALUE_MAX (PICK_SOURCES_MAX * (SESSION_KEY_MAX + 1))

/* Decodes in[0..len) into out (size bytes, NUL ended). -EINVAL for a bad
 * escape, a NUL byte or too long a text. */
static int query_decode(const char *in, size_t len, char *out, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c == '%') {
			int hi = i + 2 < len ? proxy_hex_digit(in[i + 1]) : -1;
			int lo = i + 2 < len ? proxy_hex_digit(in[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (c == '\0' || o + 1 >= size)
			return -EINVAL;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

/* Calls one(q, item) for each comma-separated item of v. */
static int each_item(struct http_query *q, char *v, const char *key,
		     int (*one)(struct http_query *q, const char *item, char *why, size_t ws),
		     char *why, size_t why_size)
{
	char *save = NULL, *item;
	int rc;

	if (!*v) {
		snprintf(why, why_size, "%s: empty", key);
		return -EINVAL;
	}
	for (item = strtok_r(v, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		rc = one(q, item, why, why_size);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int one_protocol(struct http_query *q, const char *item, char *why, size_t why_size)
{
	uint32_t bit = pick_proto_bit(item, strlen(item));

	if (!bit) {
		snprintf(why, why_size,
			 "protocol: '%.40s' is not one of http, https, socks4, socks5", item);
		return -EINVAL;
	}
	q->filter.protos |= bit;
	return 0;
}

static int one_anonymity(struct http_query *q, const char *item, char *why, size_t why_size)
{
	uint32_t bit = pick_anon_bit(item, strlen(item));

	if (!bit) {
		snprintf(why, why_size,
			 "anonymity: '%.40s' is not one of elite, anonymous, transparent", item);
		return -EINVAL;
	}
	q->filter.anons |= bit;
	return 0;
}

/* A source name as the config takes it: 1..64 of [A-Za-z0-9._-]. */
static int one_source(struct http_query *q, const char *item, char *why, size_t why_size)
{
	size_t n = strlen(item);
	uint32_t k = q->filter.nsources;

	if (!pick_source_name_valid(item, n)) {
		snprintf(why, why_size, "source: '%.40s' is not a source name", item);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < k; i++)
		if (strcmp(q->names[i], item) == 0)
			return 0;
	if (k == PICK_SOURCES_MAX) {
		snprintf(why, why_size, "source: more than %d names", PICK_SOURCES_MAX);
		return -EINVAL;
	}
	memcpy(q->names[k], item, n + 1);
	q->filter.sources[k] = q->names[k];
	q->filter.nsources = k + 1;
	return 0;
}

/* A country code (either case) or "unknown", "!" before it to leave it
 * out; a list leaves out all it names or none. */
static int one_country(struct http_query *q, const char *item, char *why, size_t why_size)
{
	bool out = item[0] == '!';
	const char *code = item + out;
	int rc;

	if (q->filter.ncountries && out != q->filter.countries_out) {
		snprintf(why, why_size,
			 "country: '%.40s' mixes countries allowed and left out (all or none "
			 "take '!')",
			 item);
		return -EINVAL;
	}
	rc = pick_filter_add_country(&q->filter, code, strlen(code));
	if (rc == -E2BIG) {
		snprintf(why, why_size, "country: more than %d codes", PICK_COUNTRIES_MAX);
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(why, why_size,
			 "country: '%.40s' is not a two-letter country code nor unknown", item);
		return -EINVAL;
	}
	q->filter.countries_out = out;
	return 0;
}

static int read_number(const char *key, const char *v, uint32_t max, uint32_t *out, char *why,
		       size_t why_size);

/* An autonomous system number, "AS" before it or not. */
static int one_asn(struct http_query *q, const char *item, char *why, size_t why_size)
{
	uint32_t asn;
	int rc;

	if (strncasecmp(item, "as", 2) == 0)
		item += 2;
	rc = read_number("asn", item, UINT32_MAX, &asn, why, why_size);
	if (rc < 0)
		return rc;
	if (pick_filter_add_asn(&q->filter, asn) < 0) {
		snprintf(why, why_size, "asn: more than %d numbers", PICK_ASNS_MAX);
		return -EINVAL;
	}
	return 0;
}

/* A decimal number in 1..max. */
static int read_number(const char *key, const char *v, uint32_t max, uint32_t *out, char *why,
		       size_t why_size)
{
	uint64_t n = 0;
	size_t len = strlen(v);

	if (len == 0 || len > 10 || strspn(v, "0123456789") != len) {
		snprintf(why, why_size, "%s: '%.40s' is not a number", key, v);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		n = n * 10 + (uint64_t)(v[i] - '0');
	if (n < 1 || n > max) {
		snprintf(why, why_size, "%s: %.40s is out of range 1..%u", key, v, max);
		return -EINVAL;
	}
	*out = (uint32_t)n;
	return 0;
}

static int read_pair(struct http_query *q, const char *key, char *v, uint32_t *seen, char *why,
		     size_t why_size)
{
	static const char *const once[] = {"max_latency_ms", "count", "format"};
	/* The comma lists, each item narrowing the filter. */
	static const struct {
		const char *key;
		int (*one)(struct http_query *q, const char *item, char *why, size_t ws);
	} lists[] = {
	    {"protocol", one_protocol}, {"anonymity", one_anonymity}, {"source", one_source},
	    {"country", one_country},	{"asn", one_asn},
	};

	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
		if (strcmp(key, once[i]) != 0)
			continue;
		if (*seen & (1u << i)) {
			snprintf(why, why_size, "%s: given twice", key);
			return -EINVAL;
		}
		*seen |= 1u << i;
	}
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		if (strcmp(key, lists[i].key) == 0) {
			q->filtered = true;
			return each_item(q, v, key, lists[i].one, why, why_size);
		}
	}
	if (strcmp(key, "max_latency_ms") == 0) {
		q->filtered = true;
		return read_number(key, v, UINT32_MAX, &q->filter.max_latency_ms, why, why_size);
	}
	if (strcmp(key, "count") == 0)
		return read_number(key, v, HTTP_COUNT_MAX, &q->count, why, why_size);
	if (strcmp(key, "format") == 0) {
		if (strcmp(v, "txt") == 0) {
			q->format = HTTP_FORMAT_TXT;
			return 0;
		}
		if (strcmp(v, "json") == 0) {
			q->format = HTTP_FORMAT_JSON;
			return 0;
		}
		snprintf(why, why_size, "format: '%.40s' is not txt or json", v);
		return -EINVAL;
	}
	snprintf(why, why_size,
		 "unknown parameter '%.40s' (protocol, anonymity, source, country, asn, "
		 "max_latency_ms, count, format)",
		 key);
	return -EINVAL;
}

int http_path_decode(const char *in, char *out, size_t size)
{
	size_t o = 0;

	if (!in || !*in)
		in = "/";
	if (*in != '/')
		return -EINVAL;
	for (; *in; in++) {
		char c = *in;

		if (c == '%') {
			int hi = proxy_hex_digit(in[1]), lo = hi >= 0 ? proxy_hex_digit(in[2]) : -1;

			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi * 16 + lo);
			if (c == '/') {
				c = '%'; /* kept as written */
			} else {
				in += 2;
			}
		}
		if ((unsigned char)c < 0x20 || c == 0x7f || o + 1 >= size)
			return -EINVAL;
		out[o++] = c;
	}
	while (o > 1 && out[o - 1] == '/')
		o--;
	out[o] = '\0';
	return 0;
}

void http_path_alias(char *path, size_t size)
{
	static const char *const aliases[][2] = {
	    {"/get-proxy", "/random"},
	    {"/stat", "/stat.json"},
	    {"/reload", "/control/reload"},
	};

	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
		if (strcmp(path, aliases[i][0]) == 0) {
			snprintf(path, size, "%s", aliases[i][1]);
			return;
		}
	}
}

int http_query_parse(const char *query, size_t len, struct http_query *q, char *why,
		     size_t why_size)
{
	char key[32], value[QUERY_VALUE_MAX + 1];
	const char *p = query, *end = query ? query + len : NULL, *amp, *eq;
	uint32_t seen = 0;
	int rc;

	memset(q, 0, sizeof(*q));
	while (p && p < end) {
		amp = memchr(p, '&', (size_t)(end - p));
		if (!amp)
			amp = end;
		if (amp == p) {
			p++;
			continue;
		}
		eq = memchr(p, '=', (size_t)(amp - p));
		if (query_decode(p, (size_t)((eq ? eq : amp) - p), key, sizeof(key)) < 0) {
			snprintf(why, why_size, "a parameter name is malformed or too long");
			return -EINVAL;
		}
		if (!eq) {
			snprintf(why, why_size, "%.31s: no value (%.31s=...)", key, key);
			return -EINVAL;
		}
		if (query_decode(eq + 1, (size_t)(amp - eq - 1), value, sizeof(value)) < 0) {
			snprintf(why, why_size, "%.31s: the value is malformed or too long", key);
			return -EINVAL;
		}
		rc = read_pair(q, key, value, &seen, why, why_size);
		if (rc < 0)
			return rc;
		p = amp + 1;
	}
	return 0;
}
