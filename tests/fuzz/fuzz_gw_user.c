/* fuzz_gw_user: the gateway's user-name options on any bytes.
 *
 * The input is a user name as a client sends it (SOCKS5, HTTP Basic). One
 * that parses must give a plain name that is a prefix of the input, a
 * valid session key or none, and a filter within its bounds (known
 * protocol and grade bits, at most PICK_SOURCES_MAX valid source names);
 * one refused must say why and leave no filter. A parsed plain name is
 * also checked against a one-pair password table, which must not match
 * with a wrong password.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gw_user.h"
#include "proxy.h"
#include "snapshot.h"

static void check_parsed(const struct gw_user *u, const char *in, size_t size)
{
	size_t nlen = strlen(u->name);
	uint32_t grades =
	    (1u << SNAP_ANON_ELITE) | (1u << SNAP_ANON_ANONYMOUS) | (1u << SNAP_ANON_TRANSPARENT);

	FUZZ_CHECK(nlen <= GW_USER_MAX && nlen <= size && memcmp(u->name, in, nlen) == 0);
	FUZZ_CHECK(u->session_len == strlen(u->session));
	FUZZ_CHECK(u->session_len == 0 || session_key_valid(u->session, u->session_len));
	FUZZ_CHECK((u->filter.protos >> PROXY_PROTO_COUNT) == 0);
	FUZZ_CHECK((u->filter.anons & ~grades) == 0);
	FUZZ_CHECK(u->filter.nsources <= PICK_SOURCES_MAX);
	for (uint32_t i = 0; i < u->filter.nsources; i++) {
		size_t n = strlen(u->filter.sources[i]);

		FUZZ_CHECK(u->filter.sources[i] == u->sources[i]);
		FUZZ_CHECK(n > 0 && n <= GW_USER_SOURCE_MAX);
	}
}

/* A table holding the parsed name with password "pw": "pw" gets in,
 * "pX" does not. A name with ':' cannot be a pair's user (the pair splits
 * at its first ':'); names the table refuses must say why. */
static void check_auth(const struct gw_user *u)
{
	size_t n = strlen(u->name);
	char *pair;
	char err[64];
	struct gw_auth *a;

	if (memchr(u->name, ':', n))
		return;
	pair = malloc(n + 4);
	FUZZ_CHECK(pair != NULL);
	memcpy(pair, u->name, n);
	memcpy(pair + n, ":pw", 4);
	a = gw_auth_new(&pair, 1, err, sizeof(err));
	if (a) {
		FUZZ_CHECK(gw_auth_check(a, u->name, "pw", 2));
		FUZZ_CHECK(!gw_auth_check(a, u->name, "pX", 2));
		gw_auth_free(a);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	free(pair);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly the input's bytes, so that ASan sees a read past them. */
	char *in = malloc(size ? size : 1);
	struct gw_user *u = malloc(sizeof(*u));
	char *why = malloc(40);
	int rc;

	FUZZ_CHECK(in && u && why);
	if (size)
		memcpy(in, data, size);
	rc = gw_user_parse(in, size, u, why, 40);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		check_parsed(u, in, size);
		check_auth(u);
	} else {
		FUZZ_CHECK(why[0] != '\0' && strlen(why) < 40);
		FUZZ_CHECK(u->filter.protos == 0 && u->filter.anons == 0 &&
			   u->filter.nsources == 0);
	}
	free(why);
	free(u);
	free(in);
	return 0;
}
