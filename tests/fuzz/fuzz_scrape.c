/* fuzz_scrape: scrape_text() on any bytes.
 *
 * Input: a control byte (its low two bits the default protocol, the rest
 * after how many finds a second scan is stopped), then the text. Every
 * proxy handed over must be one proxy_parse_line() could have produced: a
 * port, a host, a canonical URI that fits PROXY_URI_MAX and parses back to
 * the same proxy. The count returned must be the number of calls, and a
 * scan stopped after k finds must have made exactly k calls, the same
 * first k as the full scan. Does not check what a page should yield.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "scrape.h"


/* Finds remembered for comparing the two scans. */
#define KEPT_MAX 64

struct finds {
	size_t calls;
	size_t stop_at;		 /* return -1 on this call; 0: never */
	uint32_t hash[KEPT_MAX]; /* of each find's URI */
};

static uint32_t uri_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static int found_cb(void *arg, const struct proxy_addr *a)
{
	struct finds *f = arg;
	char uri[PROXY_URI_MAX];
	struct proxy_addr again;
	int n = proxy_format_uri(a, uri, sizeof(uri));

	FUZZ_CHECK(n > 0);
	FUZZ_CHECK(a->port > 0 && a->host[0] != '\0');
	FUZZ_CHECK(proxy_parse_line(uri, (size_t)n, PROXY_HTTP, &again) == PROXY_LINE_OK);
	FUZZ_CHECK(again.proto == a->proto && again.remote_dns == a->remote_dns);
	FUZZ_CHECK(again.port == a->port && again.ipv6 == a->ipv6);
	FUZZ_CHECK(strcmp(again.host, a->host) == 0);
	FUZZ_CHECK(strcmp(again.user, a->user) == 0 && strcmp(again.pass, a->pass) == 0);
	if (f->calls < KEPT_MAX)
		f->hash[f->calls] = uri_hash(uri);
	f->calls++;
	return f->calls == f->stop_at ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct finds all = {.stop_at = 0}, some = {.stop_at = 0};
	enum proxy_proto dflt;
	const char *text;
	size_t len, n, kept;

	if (size < 1)
		return 0;
	dflt = (enum proxy_proto)(data[0] & 3);
	text = (const char *)data + 1;
	len = size - 1;

	n = scrape_text(text, len, dflt, found_cb, &all);
	FUZZ_CHECK(n == all.calls);
	if (n == 0)
		return 0;

	some.stop_at = 1 + (size_t)(data[0] >> 2) % n;
	FUZZ_CHECK(scrape_text(text, len, dflt, found_cb, &some) == some.stop_at);
	FUZZ_CHECK(some.calls == some.stop_at);
	kept = some.calls < KEPT_MAX ? some.calls : KEPT_MAX;
	FUZZ_CHECK(memcmp(all.hash, some.hash, kept * sizeof(all.hash[0])) == 0);
	return 0;
}
