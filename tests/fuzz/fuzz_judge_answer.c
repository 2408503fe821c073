/* fuzz_judge_answer: ja_parse() and ja_own_addr() on any body.
 *
 * Input: a byte whose bits pick which of a few "our" addresses (IPv4,
 * IPv6, an empty string and a NULL among them) are passed, then the body.
 * The result must be coherent: on failure all zero but JA_UNKNOWN; on
 * success a recognised format, a literal IPv4 or IPv6 exit address (a zone
 * allowed), NUL-terminated strings, TRANSPARENT whenever the exit address
 * is one of ours, ELITE only without a proxy header and ANONYMOUS only with
 * one. ja_own_addr() must give the address ja_parse() found, fit a buffer
 * of exactly its size and refuse one byte less. Does not check which
 * header or address a given format should yield.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "echo.h"


static const char *const candidates[] = {
    "127.0.0.1", "203.0.113.7", "::1", "2001:db8::1", "", NULL, "10.0.0.5", "fe80::1",
};

#define N_CANDIDATES (sizeof(candidates) / sizeof(candidates[0]))

/* A literal address, with an optional %zone after an IPv6 one. */
static bool is_literal(const char *s)
{
	char buf[64];
	unsigned char bin[16];
	size_t len = strcspn(s, "%");

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

static bool is_ours(const char *ip, const char *const *ours, size_t n_our)
{
	for (size_t i = 0; i < n_our; i++) {
		if (ours[i] && ours[i][0] && strcmp(ours[i], ip) == 0)
			return true;
	}
	return false;
}

static void check_result(int rc, const struct ja_result *r, const char *const *ours, size_t n_our)
{
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	FUZZ_CHECK(memchr(r->exit_ip, '\0', sizeof(r->exit_ip)) != NULL);
	FUZZ_CHECK(memchr(r->header, '\0', sizeof(r->header)) != NULL);
	if (rc < 0) {
		FUZZ_CHECK(r->anon == JA_UNKNOWN && r->exit_ip[0] == '\0');
		return;
	}
	FUZZ_CHECK(r->format == JA_FORMAT_AZENV || r->format == JA_FORMAT_JSON ||
		   r->format == JA_FORMAT_PROXYFS);
	FUZZ_CHECK(is_literal(r->exit_ip));
	FUZZ_CHECK(r->anon == JA_TRANSPARENT || r->anon == JA_ANONYMOUS || r->anon == JA_ELITE);
	if (is_ours(r->exit_ip, ours, n_our))
		FUZZ_CHECK(r->anon == JA_TRANSPARENT);
	if (r->anon == JA_ELITE)
		FUZZ_CHECK(r->header[0] == '\0');
	if (r->anon == JA_ANONYMOUS)
		FUZZ_CHECK(r->header[0] != '\0');
}

/* ja_own_addr() against what ja_parse() found without our addresses. */
static void check_own_addr(const char *body, size_t len)
{
	struct ja_result r;
	int rc = ja_parse(body, len, NULL, 0, &r);
	size_t n = strlen(r.exit_ip);
	char *exact, *short_buf;

	check_result(rc, &r, NULL, 0);
	exact = malloc(n + 1);
	short_buf = malloc(n ? n : 1);
	FUZZ_CHECK(exact && short_buf);
	FUZZ_CHECK(ja_own_addr(body, len, exact, n + 1) == rc);
	if (rc == 0) {
		FUZZ_CHECK(strcmp(exact, r.exit_ip) == 0);
		FUZZ_CHECK(ja_own_addr(body, len, short_buf, n) == -ENOSPC);
	}
	free(short_buf);
	free(exact);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ours[N_CANDIDATES];
	const char *body;
	struct ja_result r;
	size_t n_our = 0, len;

	if (size < 1)
		return 0;
	for (size_t i = 0; i < N_CANDIDATES; i++) {
		if (data[0] & (1u << i))
			ours[n_our++] = candidates[i];
	}
	body = (const char *)data + 1;
	len = size - 1;

	check_result(ja_parse(body, len, ours, n_our, &r), &r, ours, n_our);
	check_own_addr(body, len);
	return 0;
}
