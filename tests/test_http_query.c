/* Unit tests for the HTTP front's pure parts: the query parser (every
 * parameter, the lists, decoding, and each refusal naming its parameter)
 * and the token buckets (burst, refill, Retry-After, the bounded table). */
#include "http_query.h"
#include "ratelimit.h"
#include "testutil.h"

#include <errno.h>
#include <string.h>

static int parse(const char *q, struct http_query *out, char *why)
{
	why[0] = '\0';
	return http_query_parse(q, q ? strlen(q) : 0, out, why, 200);
}

static void test_empty(void)
{
	struct http_query q;
	char why[200];

	CHECK_INT(parse(NULL, &q, why), 0);
	CHECK(!q.filtered && q.count == 0 && q.format == HTTP_FORMAT_DEFAULT);
	CHECK_INT(parse("", &q, why), 0);
	CHECK_INT(parse("&&", &q, why), 0);
	CHECK(!q.filtered);
}

static void test_filters(void)
{
	struct http_query q;
	char why[200];

	CHECK_INT(parse("protocol=socks5,http&anonymity=elite", &q, why), 0);
	CHECK(q.filtered);
	CHECK_INT(q.filter.protos, (1u << PROXY_SOCKS5) | (1u << PROXY_HTTP));
	CHECK_INT(q.filter.anons, 1u << SNAP_ANON_ELITE);
	CHECK_INT(parse("protocol=socks4&protocol=https", &q, why), 0);
	CHECK_INT(q.filter.protos, (1u << PROXY_SOCKS4) | (1u << PROXY_HTTPS));
	CHECK_INT(parse("source=a,b.c&source=a&max_latency_ms=250", &q, why), 0);
	CHECK_INT(q.filter.nsources, 2);
	CHECK_STR(q.filter.sources[0], "a");
	CHECK_STR(q.filter.sources[1], "b.c");
	CHECK_INT(q.filter.max_latency_ms, 250);
	CHECK_INT(parse("count=7&format=json", &q, why), 0);
	CHECK(!q.filtered);
	CHECK_INT(q.count, 7);
	CHECK_INT(q.format, HTTP_FORMAT_JSON);
	CHECK_INT(parse("format=txt", &q, why), 0);
	CHECK_INT(q.format, HTTP_FORMAT_TXT);
	/* Percent escapes and '+' are decoded. */
	CHECK_INT(parse("proto%63ol=socks%35", &q, why), 0);
	CHECK_INT(q.filter.protos, 1u << PROXY_SOCKS5);
}

/* country= and asn=: codes in any case, unknown, the exclusion, lists
 * and repeats; the numbers with or without AS. */
static void test_geo(void)
{
	struct http_query q;
	char why[200];

	CHECK_INT(parse("country=DE,fr", &q, why), 0);
	CHECK(q.filtered);
	CHECK_INT(q.filter.ncountries, 2);
	CHECK_STR(q.filter.countries[0], "DE");
	CHECK_STR(q.filter.countries[1], "FR");
	CHECK(!q.filter.countries_out);
	CHECK_INT(parse("country=!cn", &q, why), 0);
	CHECK_INT(q.filter.ncountries, 1);
	CHECK_STR(q.filter.countries[0], "CN");
	CHECK(q.filter.countries_out);
	CHECK_INT(parse("country=%21CN,!RU&country=!ru", &q, why), 0);
	CHECK_INT(q.filter.ncountries, 2);
	CHECK(q.filter.countries_out);
	CHECK_INT(parse("country=Unknown&country=de", &q, why), 0);
	CHECK_INT(q.filter.ncountries, 2);
	CHECK_STR(q.filter.countries[0], "");
	CHECK_STR(q.filter.countries[1], "DE");
	CHECK_INT(parse("asn=3320,AS1234&asn=as3320", &q, why), 0);
	CHECK(q.filtered);
	CHECK_INT(q.filter.nasns, 2);
	CHECK_INT(q.filter.asns[0], 3320);
	CHECK_INT(q.filter.asns[1], 1234);
	CHECK_INT(q.filter.ncountries, 0);
}

/* Each refusal is -EINVAL and names the parameter. */
static void refused(const char *query, const char *word)
{
	struct http_query q;
	char why[200];

	CHECK_INT(parse(query, &q, why), -EINVAL);
	if (!strstr(why, word))
		fprintf(stderr, "query %s: reason '%s' does not name %s\n", query, why, word);
	CHECK(strstr(why, word) != NULL);
}

static void test_refusals(void)
{
	char many[400] = "source=";

	refused("protocol=ftp", "protocol");
	refused("protocol=", "protocol");
	refused("protocol=HTTP", "protocol");
	refused("anonymity=secret", "anonymity");
	refused("source=a b", "source");
	refused("source=a+b", "source");
	refused("source=a/b", "source");
	refused("count=0", "count");
	refused("count=-1", "count");
	refused("count=100001", "count");
	refused("count=99999999999", "count");
	refused("count=1&count=2", "count");
	refused("max_latency_ms=1.5", "max_latency_ms");
	refused("format=xml", "format");
	refused("colour=red", "colour");
	refused("count", "count");
	refused("protocol=%zz", "protocol");
	refused("protocol=%0", "protocol");
	refused("protocol=a%00b", "protocol");
	for (int i = 0; i < PICK_SOURCES_MAX + 1; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%ss%d", i ? "," : "",
			 i);
	refused(many, "source");
	refused("country=DEU", "country");
	refused("country=D", "country");
	refused("country=", "country");
	refused("country=!", "country");
	refused("country=1A", "country");
	refused("country=!CN,RU", "RU");
	refused("country=DE,!CN", "!CN");
	refused("country=!CN&country=RU", "RU");
	strcpy(many, "country=");
	for (int i = 0; i < PICK_COUNTRIES_MAX + 1; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sA%c", i ? "," : "",
			 'A' + i);
	refused(many, "country");
	refused("asn=0", "asn");
	refused("asn=x", "asn");
	refused("asn=AS", "asn");
	refused("asn=-5", "asn");
	refused("asn=99999999999", "asn");
	strcpy(many, "asn=");
	for (int i = 0; i < PICK_ASNS_MAX + 1; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d", i ? "," : "",
			 i + 1);
	refused(many, "asn");
}

static void test_ratelimit(void)
{
	struct ratelimit *rl = ratelimit_new(2, 3, 2);
	const char a[] = "a", b[] = "b", c[] = "c";

	CHECK(ratelimit_new(0, 10, 10) == NULL);
	CHECK_INT(ratelimit_take(NULL, a, 1, 0), 0);
	CHECK(rl != NULL);
	/* A burst of 3, then refused with at least a second to wait. */
	for (int i = 0; i < 3; i++)
		CHECK_INT(ratelimit_take(rl, a, 1, 1000), 0);
	CHECK(ratelimit_take(rl, a, 1, 1000) >= 1);
	/* Two a second: one more after half a second. */
	CHECK_INT(ratelimit_take(rl, a, 1, 1500), 0);
	CHECK(ratelimit_take(rl, a, 1, 1500) >= 1);
	/* Another address has its own bucket. */
	CHECK_INT(ratelimit_take(rl, b, 1, 1500), 0);
	/* A third address drops the oldest (a), which starts full again. */
	CHECK_INT(ratelimit_take(rl, c, 1, 1600), 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(ratelimit_take(rl, a, 1, 1600), 0);
	CHECK(ratelimit_take(rl, a, 1, 1600) >= 1);
	ratelimit_free(rl);
	/* A slow rate: the wait is rounded up to whole seconds. */
	rl = ratelimit_new(1, 1, 8);
	CHECK_INT(ratelimit_take(rl, a, 1, 0), 0);
	CHECK_INT(ratelimit_take(rl, a, 1, 100), 1);
	ratelimit_free(rl);
}

static void test_paths(void)
{
	char out[32];

	CHECK_INT(http_path_decode("", out, sizeof(out)), 0);
	CHECK_STR(out, "/");
	CHECK_INT(http_path_decode("/socks5/", out, sizeof(out)), 0);
	CHECK_STR(out, "/socks5");
	CHECK_INT(http_path_decode("/%73ession/a", out, sizeof(out)), 0);
	CHECK_STR(out, "/session/a");
	/* %2F stays as written: a slash inside a name (lookup/). */
	CHECK_INT(http_path_decode("/lookup/socks5:%2F%2Fh:1", out, sizeof(out)), 0);
	CHECK_STR(out, "/lookup/socks5:%2F%2Fh:1");
	CHECK_INT(http_path_decode("relative", out, sizeof(out)), -EINVAL);
	CHECK_INT(http_path_decode("/a%zz", out, sizeof(out)), -EINVAL);
	CHECK_INT(http_path_decode("/a%4", out, sizeof(out)), -EINVAL);
	CHECK_INT(http_path_decode("/a%00b", out, sizeof(out)), -EINVAL);
	CHECK_INT(http_path_decode("/a%0Ab", out, sizeof(out)), -EINVAL);
	CHECK_INT(http_path_decode("/0123456789012345678901234567890123", out, sizeof(out)),
		  -EINVAL);
	snprintf(out, sizeof(out), "/get-proxy");
	http_path_alias(out, sizeof(out));
	CHECK_STR(out, "/random");
	snprintf(out, sizeof(out), "/stat");
	http_path_alias(out, sizeof(out));
	CHECK_STR(out, "/stat.json");
	snprintf(out, sizeof(out), "/reload");
	http_path_alias(out, sizeof(out));
	CHECK_STR(out, "/control/reload");
	snprintf(out, sizeof(out), "/stats");
	http_path_alias(out, sizeof(out));
	CHECK_STR(out, "/stats");
}

int main(void)
{
	test_paths();
	test_empty();
	test_filters();
	test_geo();
	test_refusals();
	test_ratelimit();
	return test_exit_code();
}
