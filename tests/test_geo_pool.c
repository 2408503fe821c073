/* test_geo_pool: the engine's lookups of each proxy's country and network.
 *
 * An engine (not started: this thread plays its loop) gets [geo]
 * databases written by tests/geo/mmdb_write.py and pool entries made by
 * hand: one whose exit the judge saw, ones known only by the address they
 * are listed at (IPv4, IPv6), one given by name, one in no network. The
 * published snapshot must show the exit's country where there is an exit
 * and the listed address's where not, saying which; publishing again must
 * look nothing up again; a database replaced must be looked up again once
 * per entry; one deleted must keep the last good one in use and make
 * health degraded, naming the file.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"
#include "engine_int.h"
#include "geo.h"
#include "testutil.h"

/* meson runs the tests in tests/; by hand they may run from the top. */
#define WRITER                                                                                     \
	(access("geo/mmdb_write.py", R_OK) == 0 ? "/usr/bin/python3 geo/mmdb_write.py"             \
						: "/usr/bin/python3 tests/geo/mmdb_write.py")

static char dir[] = "/tmp/test_geo_pool.XXXXXX";

static const char *at(const char *name)
{
	static char paths[4][256];
	static int next;
	char *p = paths[next++ % 4];

	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

/* Writes a database at path (renamed over it) from a JSON spec. */
static bool write_db(const char *path, const char *spec)
{
	char cmd[1024], json[300];
	FILE *f;

	snprintf(json, sizeof(json), "%s/spec.json", dir);
	f = fopen(json, "w");
	if (!f)
		return false;
	fputs(spec, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s %s %s 2>/dev/null", WRITER, json, path);
	return system(cmd) == 0;
}

static const char *country1 =
    "{\"ip_version\": 6, \"database_type\": \"Test-Country\", \"build_epoch\": 1700000000,"
    " \"networks\": ["
    " [\"127.0.1.0/24\", {\"country\": {\"iso_code\": \"DE\"}}],"
    " [\"127.0.2.0/24\", {\"country\": {\"iso_code\": \"FR\"}}],"
    " [\"2001:db8::/32\", {\"country\": {\"iso_code\": \"JP\"}}]]}";

/* The same, but 127.0.2.0/24 moved to the Netherlands. */
static const char *country2 =
    "{\"ip_version\": 6, \"database_type\": \"Test-Country-2\", \"build_epoch\": 1710000000,"
    " \"networks\": ["
    " [\"127.0.1.0/24\", {\"country\": {\"iso_code\": \"DE\"}}],"
    " [\"127.0.2.0/24\", {\"country\": {\"iso_code\": \"NL\"}}],"
    " [\"2001:db8::/32\", {\"country\": {\"iso_code\": \"JP\"}}]]}";

static const char *asn =
    "{\"ip_version\": 4, \"database_type\": \"Test-ASN\", \"build_epoch\": 1700000000,"
    " \"networks\": ["
    " [\"127.0.1.0/24\", {\"autonomous_system_number\": 3320,"
    "   \"autonomous_system_organization\": \"Deutsche Telekom AG\"}],"
    " [\"127.0.2.0/24\", {\"autonomous_system_number\": 3215,"
    "   \"autonomous_system_organization\": \"Orange S.A.\"}]]}";

static struct engine *new_engine(struct cfg *c)
{
	char err[256];

	cfg_init(c);
	CHECK_INT(cfg_add_judge(c, "http://127.0.0.1:9/"), 0);
	c->probe_judges = 0;
	CHECK_INT(cfg_validate(c, err, sizeof(err)), 0);
	return engine_new(c, NULL);
}

/* A tracked proxy made by hand; exit (may be NULL) is what its judge saw. */
static struct pool_entry *entry(struct engine *e, const char *line, bool alive, const char *exit)
{
	struct proxy_addr a;
	struct pool_entry *pe;
	bool created;

	CHECK_INT(proxy_parse_line(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_OK);
	pe = pool_get(e->pool, &a, &created);
	CHECK(pe != NULL);
	if (!pe)
		return NULL;
	pe->state = alive ? POOL_ALIVE : POOL_DEAD;
	pe->folders = alive ? (uint8_t)(1u << pe->proto) : 0;
	pe->latency_ms = 10;
	if (exit && inet_pton(AF_INET, exit, pe->exit_addr) == 1)
		pe->exit_family = AF_INET;
	else if (exit && inet_pton(AF_INET6, exit, pe->exit_addr) == 1)
		pe->exit_family = AF_INET6;
	return pe;
}

static const struct snap_proxy *find(const struct snapshot *s, const char *uri)
{
	for (uint32_t i = 0; i < s->nall; i++)
		if (strcmp(s->all[i].uri, uri) == 0)
			return &s->all[i];
	return NULL;
}

static void check_proxy(const struct snapshot *s, const char *uri, const char *country,
			uint32_t asn_, const char *org, int from)
{
	const struct snap_proxy *p = find(s, uri);

	CHECK(p != NULL);
	if (!p)
		return;
	CHECK_STR(p->country, country);
	CHECK_INT(p->asn, asn_);
	CHECK_STR(p->as_org, org);
	CHECK_INT(p->geo_from, from);
}

static void test_lookups(void)
{
	char err[256] = "", want[300];
	struct snapshot *s;
	struct engine *e;
	struct geo *g;
	struct cfg c;

	e = new_engine(&c);
	CHECK(e != NULL);
	if (!e)
		goto out;
	event_del(e->tick_ev); /* no scan, no poll: this test says when */
	entry(e, "http://127.0.1.10:8001", true, "127.0.2.10"); /* listed in DE, exits in FR */
	entry(e, "socks5://127.0.1.11:8002", true, NULL);	/* no exit known: DE */
	entry(e, "http://proxy.invalid:8003", true, NULL);	/* by name, no exit: nothing */
	entry(e, "http://127.0.9.1:8004", false, NULL);		/* in no network */
	entry(e, "http://[2001:db8::5]:8005", true, NULL);	/* IPv6, listed */
	entry(e, "socks4://127.0.9.2:8006", true, "::ffff:127.0.1.99"); /* exit mapped IPv4 */

	/* Without databases nothing is said. */
	eng_publish(e);
	s = snap_current();
	check_proxy(s, "http://127.0.1.10:8001", "", 0, "", SNAP_GEO_NONE);
	CHECK(s->stats.geo[SNAP_GEO_COUNTRY_DB].path == NULL);
	snap_unref(s);

	g = geo_new(at("country.mmdb"), at("asn.mmdb"), err, sizeof(err));
	CHECK(g != NULL);
	if (!g)
		goto out_free;
	engine_set_geo(e, g); /* publishes */
	s = snap_current();
	check_proxy(s, "http://127.0.1.10:8001", "FR", 3215, "Orange S.A.", SNAP_GEO_EXIT);
	check_proxy(s, "socks5://127.0.1.11:8002", "DE", 3320, "Deutsche Telekom AG",
		    SNAP_GEO_ENTRY);
	check_proxy(s, "http://proxy.invalid:8003", "", 0, "", SNAP_GEO_NONE);
	check_proxy(s, "http://127.0.9.1:8004", "", 0, "", SNAP_GEO_ENTRY);
	check_proxy(s, "http://[2001:db8::5]:8005", "JP", 0, "", SNAP_GEO_ENTRY);
	check_proxy(s, "socks4://127.0.9.2:8006", "DE", 3320, "Deutsche Telekom AG", SNAP_GEO_EXIT);
	CHECK_INT(s->stats.geo_lookups_total, 5);
	CHECK_STR(s->stats.geo[SNAP_GEO_COUNTRY_DB].path, at("country.mmdb"));
	CHECK_STR(s->stats.geo[SNAP_GEO_COUNTRY_DB].type, "Test-Country");
	CHECK_INT(s->stats.geo[SNAP_GEO_COUNTRY_DB].build_epoch, 1700000000);
	CHECK_STR(s->stats.geo[SNAP_GEO_ASN_DB].error, "");
	CHECK_STR(s->stats.health, "ok");
	snap_unref(s);

	/* Nothing changed: publishing again looks nothing up. */
	eng_publish(e);
	eng_geo_poll(e, true);
	eng_publish(e);
	s = snap_current();
	CHECK_INT(s->stats.geo_lookups_total, 5);
	snap_unref(s);

	/* The country file replaced: every entry once more, at the next publish. */
	CHECK(write_db(at("country.mmdb"), country2));
	eng_geo_poll(e, true);
	CHECK(e->pub.dirty);
	eng_publish(e);
	s = snap_current();
	check_proxy(s, "http://127.0.1.10:8001", "NL", 3215, "Orange S.A.", SNAP_GEO_EXIT);
	CHECK_STR(s->stats.geo[SNAP_GEO_COUNTRY_DB].type, "Test-Country-2");
	CHECK_INT(s->stats.geo_lookups_total, 10);
	snap_unref(s);

	/* Deleted: the last good one stays in use; health says so. */
	CHECK(unlink(at("country.mmdb")) == 0);
	eng_geo_poll(e, true);
	CHECK(e->pub.dirty);
	eng_publish(e);
	s = snap_current();
	snprintf(want, sizeof(want), "degraded: geo: %s: %s", at("country.mmdb"), strerror(ENOENT));
	CHECK_STR(s->stats.health, want);
	CHECK_STR(s->stats.geo[SNAP_GEO_COUNTRY_DB].error, strerror(ENOENT));
	CHECK_INT(s->nlive, 5);
	check_proxy(s, "http://127.0.1.10:8001", "NL", 3215, "Orange S.A.", SNAP_GEO_EXIT);
	CHECK_INT(s->stats.geo_lookups_total, 10);
	snap_unref(s);

	/* Back: health is ok again. */
	CHECK(write_db(at("country.mmdb"), country1));
	eng_geo_poll(e, true);
	eng_publish(e);
	s = snap_current();
	CHECK_STR(s->stats.health, "ok");
	check_proxy(s, "http://127.0.1.10:8001", "FR", 3215, "Orange S.A.", SNAP_GEO_EXIT);
	snap_unref(s);
out_free:
	engine_free(e);
out:
	cfg_free(&c);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	if (!write_db(at("country.mmdb"), country1) || !write_db(at("asn.mmdb"), asn)) {
		fprintf(stderr, "cannot write the test databases with %s\n", WRITER);
		return 1;
	}
	unsetenv("PROXYFS_GEO_DIRS");
	snap_system_init();
	test_lookups();
	snap_system_fini();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return test_exit_code();
}
