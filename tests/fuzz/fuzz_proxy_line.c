/* fuzz_proxy_line: proxy_parse_line() on any bytes, and the round trip.
 *
 * The input is one line, parsed once with each default protocol. Every line
 * that parses must print with proxy_format_uri() into PROXY_URI_MAX bytes,
 * into a buffer of exactly its length plus one and not into one byte less,
 * and the printed URI must parse back to the same proxy (only "tunnel" is
 * lost: an https:// line prints as http://) and print the same again.
 * Does not look at what the parser refuses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy.h"


static void check_same_proxy(const struct proxy_addr *a, const struct proxy_addr *b)
{
	FUZZ_CHECK(a->proto == b->proto);
	FUZZ_CHECK(a->remote_dns == b->remote_dns);
	FUZZ_CHECK(a->ipv6 == b->ipv6);
	FUZZ_CHECK(a->port == b->port);
	FUZZ_CHECK(strcmp(a->host, b->host) == 0);
	FUZZ_CHECK(strcmp(a->user, b->user) == 0);
	FUZZ_CHECK(strcmp(a->pass, b->pass) == 0);
}

/* Prints p into heap buffers of the exact size and one byte less, so that
 * ASan sees any write past the size given; returns the URI (caller frees). */
static char *format_exact(const struct proxy_addr *p)
{
	char big[PROXY_URI_MAX];
	char *exact, *short_buf;
	int n = proxy_format_uri(p, big, sizeof(big));

	FUZZ_CHECK(n > 0 && (size_t)n == strlen(big));
	exact = malloc((size_t)n + 1);
	short_buf = malloc((size_t)n);
	FUZZ_CHECK(exact && short_buf);
	FUZZ_CHECK(proxy_format_uri(p, exact, (size_t)n + 1) == n);
	FUZZ_CHECK(strcmp(exact, big) == 0);
	FUZZ_CHECK(proxy_format_uri(p, short_buf, (size_t)n) == -1);
	free(short_buf);
	return exact;
}

static void round_trip(const uint8_t *data, size_t size, enum proxy_proto dflt)
{
	struct proxy_addr first, again;
	enum proxy_parse_result r;
	char *uri, *uri_again;

	r = proxy_parse_line((const char *)data, size, dflt, &first);
	FUZZ_CHECK(r == PROXY_LINE_OK || r == PROXY_LINE_SKIP || r == PROXY_LINE_BAD);
	if (r != PROXY_LINE_OK)
		return;
	FUZZ_CHECK(first.proto == PROXY_HTTP || first.proto == PROXY_SOCKS4 ||
		   first.proto == PROXY_SOCKS5);
	FUZZ_CHECK(first.port > 0);
	FUZZ_CHECK(first.host[0] != '\0');

	uri = format_exact(&first);
	/* The URI carries its scheme, so the default protocol must not matter. */
	FUZZ_CHECK(proxy_parse_line(uri, strlen(uri), (dflt + 1) % PROXY_PROTO_COUNT, &again) ==
		   PROXY_LINE_OK);
	FUZZ_CHECK(!again.tunnel);
	check_same_proxy(&first, &again);
	uri_again = format_exact(&again);
	FUZZ_CHECK(strcmp(uri, uri_again) == 0);
	free(uri_again);
	free(uri);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int p = 0; p < PROXY_PROTO_COUNT; p++)
		round_trip(data, size, (enum proxy_proto)p);
	return 0;
}
