/* Unit tests for gateway/gw_user.c: the options a gateway client writes in
 * its user name, and the password check of [gateway] auth / users_file.
 * Each case is a user name as curl --proxy-user or a scraper would send
 * it, and what the gateway must make of it. */
#include "gw_user.h"
#include "proxy.h"
#include "snapshot.h"
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BIT(x) (UINT32_C(1) << (x))

static struct gw_user u;
static char why[128];

static int parse(const char *s)
{
	return gw_user_parse(s, strlen(s), &u, why, sizeof(why));
}

static void test_plain(void)
{
	CHECK_INT(parse("alice"), 0);
	CHECK_STR(u.name, "alice");
	CHECK_INT(u.session_len, 0);
	CHECK_INT(u.filter.protos, 0);
	CHECK_INT(u.filter.anons, 0);
	CHECK_INT(u.filter.nsources, 0);

	/* No user name at all: no options, anyone. */
	CHECK_INT(gw_user_parse("", 0, &u, why, sizeof(why)), 0);
	CHECK_STR(u.name, "");

	/* '-' without a keyword is part of the name. */
	CHECK_INT(parse("my-crawler-7"), 0);
	CHECK_STR(u.name, "my-crawler-7");
}

static void test_options(void)
{
	CHECK_INT(parse("alice-session-x7"), 0);
	CHECK_STR(u.name, "alice");
	CHECK_STR(u.session, "x7");
	CHECK_INT(u.session_len, 2);

	CHECK_INT(parse("alice-proto-socks5"), 0);
	CHECK_STR(u.name, "alice");
	CHECK_INT(u.filter.protos, BIT(PROXY_SOCKS5));

	CHECK_INT(parse("alice-anon-elite"), 0);
	CHECK_INT(u.filter.anons, BIT(SNAP_ANON_ELITE));

	CHECK_INT(parse("alice-source-free_list.1"), 0);
	CHECK_INT(u.filter.nsources, 1);
	CHECK_STR(u.filter.sources[0], "free_list.1");

	/* Combined, any order: the example. */
	CHECK_INT(parse("alice-anon-elite-session-x7"), 0);
	CHECK_STR(u.name, "alice");
	CHECK_STR(u.session, "x7");
	CHECK_INT(u.filter.anons, BIT(SNAP_ANON_ELITE));

	CHECK_INT(parse("bob-session-s1-proto-http-source-a-anon-anonymous"), 0);
	CHECK_STR(u.name, "bob");
	CHECK_STR(u.session, "s1");
	CHECK_INT(u.filter.protos, BIT(PROXY_HTTP));
	CHECK_INT(u.filter.anons, BIT(SNAP_ANON_ANONYMOUS));
	CHECK_INT(u.filter.nsources, 1);
	CHECK_STR(u.filter.sources[0], "a");

	/* Options only (no plain name), as a client without an account. */
	CHECK_INT(parse("session-abc-proto-socks5"), 0);
	CHECK_STR(u.name, "");
	CHECK_STR(u.session, "abc");
	CHECK_INT(u.filter.protos, BIT(PROXY_SOCKS5));

	/* Repeated and comma lists add to the set. */
	CHECK_INT(parse("a-proto-http,https-proto-socks4-anon-elite,transparent"), 0);
	CHECK_INT(u.filter.protos, BIT(PROXY_HTTP) | BIT(PROXY_HTTPS) | BIT(PROXY_SOCKS4));
	CHECK_INT(u.filter.anons, BIT(SNAP_ANON_ELITE) | BIT(SNAP_ANON_TRANSPARENT));
	CHECK_INT(parse("a-source-x,y-source-x-source-z"), 0);
	CHECK_INT(u.filter.nsources, 3);
	CHECK_STR(u.filter.sources[2], "z");

	/* A value runs up to the next keyword: keys and names with '-'. */
	CHECK_INT(parse("team-a-session-job-42-b-source-my-list-proto-socks5"), 0);
	CHECK_STR(u.name, "team-a");
	CHECK_STR(u.session, "job-42-b");
	CHECK_STR(u.filter.sources[0], "my-list");
	CHECK_INT(u.filter.protos, BIT(PROXY_SOCKS5));

	/* The longest session key there is. */
	char key[80];
	memset(key, 'k', SESSION_KEY_MAX);
	key[SESSION_KEY_MAX] = '\0';
	char name[120];
	snprintf(name, sizeof(name), "u-session-%s", key);
	CHECK_INT(parse(name), 0);
	CHECK_INT(u.session_len, SESSION_KEY_MAX);
}

/* -country-de: the same as the HTTP query's country=DE. */
static void test_country(void)
{
	CHECK_INT(parse("alice-country-de"), 0);
	CHECK_STR(u.name, "alice");
	CHECK_INT(u.filter.ncountries, 1);
	CHECK_STR(u.filter.countries[0], "DE");
	CHECK(!u.filter.countries_out);

	CHECK_INT(parse("alice-country-DE,fr-session-s1-country-unknown-proto-socks5"), 0);
	CHECK_STR(u.session, "s1");
	CHECK_INT(u.filter.protos, BIT(PROXY_SOCKS5));
	CHECK_INT(u.filter.ncountries, 3);
	CHECK_STR(u.filter.countries[0], "DE");
	CHECK_STR(u.filter.countries[1], "FR");
	CHECK_STR(u.filter.countries[2], "");

	CHECK_INT(parse("country-us"), 0);
	CHECK_STR(u.name, "");
	CHECK_STR(u.filter.countries[0], "US");
}

/* A refused user name: -EINVAL, a reason, and no filter left behind. */
static void refused(const char *s, const char *reason)
{
	why[0] = '\0';
	CHECK_INT(parse(s), -EINVAL);
	if (!strstr(why, reason)) {
		test_failures++;
		fprintf(stderr, "'%s': why '%s' lacks '%s'\n", s, why, reason);
	}
	CHECK_INT(u.filter.protos | u.filter.anons | u.filter.nsources | u.filter.ncountries, 0);
}

static void test_refused(void)
{
	refused("alice-proto-ftp", "proto: 'ftp'");
	refused("alice-proto-socks5h", "proto: 'socks5h'");
	refused("alice-proto-socks5-x", "proto: 'socks5-x'");
	refused("alice-anon-high", "anon: 'high'");
	refused("alice-anon-Elite", "anon: 'Elite'");
	refused("alice-session", "session: no value");
	refused("alice-session-", "session: no value");
	refused("alice-session-proto-http", "session: no value");
	refused("alice-session-a-session-b", "session given twice");
	refused("alice-session-..", "not a session key");
	refused("alice-session-a/b", "not a session key");
	refused("alice-source-a/b", "not a source name");
	refused("alice-proto-http,,socks5", "empty item");
	refused("alice-proto-http,", "empty item");
	refused("alice-anon-elite-proto", "proto: no value");
	refused("al\x01ice", "control byte");
	/* Filters from before the bad option are not kept either. */
	refused("alice-proto-http-anon-x", "anon: 'x'");
	refused("alice-country-deu", "country: 'deu'");
	refused("alice-country-!cn", "country: '!cn'");
	refused("alice-country-de-x", "country: 'de-x'");
	refused("alice-country", "country: no value");
	refused("alice-country-de,,fr", "empty item");

	char key[80];
	memset(key, 'k', SESSION_KEY_MAX + 1);
	key[SESSION_KEY_MAX + 1] = '\0';
	char name[120];
	snprintf(name, sizeof(name), "u-session-%s", key);
	refused(name, "not a session key");

	char src[200];
	strcpy(src, "u-source-");
	memset(src + 9, 's', 65);
	src[9 + 65] = '\0';
	refused(src, "not a source name");

	/* More source names than a filter holds. */
	char many[400] = "u-source-";
	for (int i = 0; i <= PICK_SOURCES_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%ss%d", i ? "," : "",
			 i);
	refused(many, "more than");

	/* Too long a name: the plain part over 255, the whole over 1024. */
	char *big = malloc(2000);
	CHECK(big != NULL);
	if (big) {
		memset(big, 'n', 256);
		strcpy(big + 256, "-session-a");
		refused(big, "over 255");
		memset(big, 'n', 1500);
		big[1500] = '\0';
		refused(big, "over 1024");
		free(big);
	}

	/* A NUL inside the given length is a control byte, not an end. */
	CHECK_INT(gw_user_parse("ab\0cd", 5, &u, why, sizeof(why)), -EINVAL);

	/* why is cut to its size and stays NUL-ended. */
	char small[8];
	CHECK_INT(gw_user_parse("a-proto-xyzxyzxyz", 17, &u, small, sizeof(small)), -EINVAL);
	CHECK_INT(strlen(small), sizeof(small) - 1);
}

static void test_auth(void)
{
	char err[160];
	char *pairs[] = {"alice:secret", "bob:p:w:with:colons", "carol:"};
	struct gw_auth *a = gw_auth_new(pairs, 3, err, sizeof(err));

	CHECK(a != NULL);
	if (!a)
		return;
	CHECK(gw_auth_check(a, "alice", "secret", 6));
	CHECK(!gw_auth_check(a, "alice", "secreT", 6));
	CHECK(!gw_auth_check(a, "alice", "secret", 5));
	CHECK(!gw_auth_check(a, "alice", "secret2", 7));
	CHECK(!gw_auth_check(a, "alice", "", 0));
	CHECK(gw_auth_check(a, "bob", "p:w:with:colons", 15));
	/* The split cannot be moved between user and password. */
	CHECK(!gw_auth_check(a, "bob:p", "w:with:colons", 13));
	CHECK(gw_auth_check(a, "carol", "", 0));
	CHECK(!gw_auth_check(a, "mallory", "secret", 6));
	CHECK(!gw_auth_check(a, "", "secret", 6));
	/* The plain name is checked: options come off before. */
	CHECK_INT(parse("alice-session-x7-proto-socks5"), 0);
	CHECK(gw_auth_check(a, u.name, "secret", 6));
	gw_auth_free(a);

	/* No pairs: anyone. */
	a = gw_auth_new(NULL, 0, err, sizeof(err));
	CHECK(a != NULL);
	CHECK(gw_auth_check(a, "whoever", "x", 1));
	CHECK(gw_auth_check(a, "", "", 0));
	gw_auth_free(a);

	char *bad1[] = {"alice:x", "nocolon"};
	CHECK(gw_auth_new(bad1, 2, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "pair 2") != NULL);
	char *bad2[] = {":pass"};
	CHECK(gw_auth_new(bad2, 1, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "pair 1") != NULL);
	/* A user the options would cut could never log in: refused. */
	char *bad3[] = {"team-session-x:pw"};
	CHECK(gw_auth_new(bad3, 1, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "team-session-x") != NULL);
	char *bad4[] = {"eu-country-de:pw"};
	CHECK(gw_auth_new(bad4, 1, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "-country-") != NULL);
	char *ok4[] = {"team-a:pw"};
	a = gw_auth_new(ok4, 1, err, sizeof(err));
	CHECK(a != NULL);
	CHECK(gw_auth_check(a, "team-a", "pw", 2));
	gw_auth_free(a);
	gw_auth_free(NULL);
}

int main(void)
{
	test_plain();
	test_options();
	test_country();
	test_refused();
	test_auth();
	return test_exit_code();
}
