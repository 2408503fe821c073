/* fuzz_http_query: the HTTP front's request path and query string.
 *
 * The input is read three ways: as a query string (http_query_parse), as a
 * path (http_path_decode, then http_path_alias), each into buffers sized
 * exactly so that ASan sees a write past them. A query that parses must
 * give a filter within its bounds (known protocol and grade bits, at most
 * PICK_SOURCES_MAX source names, each a valid name, country codes in
 * upper case or "" and networks not 0, within their bounds, a count within
 * HTTP_COUNT_MAX); one refused must say why. A decoded path starts with
 * '/', holds no control byte and never ends with '/' (but the root).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http_query.h"

static void check_query(const char *q, size_t size)
{
	struct http_query *out = malloc(sizeof(*out));
	char *why = malloc(40);
	int rc;

	FUZZ_CHECK(out && why);
	why[0] = '\0';
	rc = http_query_parse(q, size, out, why, 40);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0) {
		FUZZ_CHECK(why[0] != '\0' && strlen(why) < 40);
		goto out;
	}
	FUZZ_CHECK((out->filter.protos >> PROXY_PROTO_COUNT) == 0);
	FUZZ_CHECK((out->filter.anons & ~((1u << SNAP_ANON_ELITE) | (1u << SNAP_ANON_ANONYMOUS) |
					  (1u << SNAP_ANON_TRANSPARENT))) == 0);
	FUZZ_CHECK(out->filter.nsources <= PICK_SOURCES_MAX);
	FUZZ_CHECK(out->filter.ncountries <= PICK_COUNTRIES_MAX);
	for (uint32_t i = 0; i < out->filter.ncountries; i++) {
		const char *c = out->filter.countries[i];

		FUZZ_CHECK(c[0] == '\0' || (c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' &&
					    c[1] <= 'Z' && c[2] == '\0'));
	}
	FUZZ_CHECK(out->filter.nasns <= PICK_ASNS_MAX);
	for (uint32_t i = 0; i < out->filter.nasns; i++)
		FUZZ_CHECK(out->filter.asns[i] != 0);
	FUZZ_CHECK(out->count <= HTTP_COUNT_MAX);
	FUZZ_CHECK(out->format <= HTTP_FORMAT_JSON);
	for (uint32_t i = 0; i < out->filter.nsources; i++) {
		const char *name = out->filter.sources[i];

		FUZZ_CHECK(name == out->names[i]);
		size_t len = strlen(name);

		FUZZ_CHECK(len >= 1 && len <= SESSION_KEY_MAX);
		FUZZ_CHECK(strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					"0123456789._-") == len);
	}
out:
	free(why);
	free(out);
}

static void check_path(const char *p, size_t size)
{
	size_t cap = size + 2;
	char *out = malloc(cap);
	size_t n;

	FUZZ_CHECK(out);
	if (http_path_decode(p, out, cap) == 0) {
		n = strlen(out);
		FUZZ_CHECK(out[0] == '/' && n < cap);
		FUZZ_CHECK(n == 1 || out[n - 1] != '/');
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
		http_path_alias(out, cap);
		FUZZ_CHECK(strlen(out) < cap);
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	FUZZ_CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	check_query(text, size);
	/* The path is a C string (evhttp hands one over): up to the first NUL. */
	check_path(text, strlen(text));
	free(text);
	return 0;
}
