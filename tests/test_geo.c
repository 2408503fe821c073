/* test_geo: src/geo.c against databases written at test time.
 *
 * Each database is written by tests/geo/mmdb_write.py from a JSON spec (run
 * with /usr/bin/python3, from the source directory meson runs tests in):
 * GeoLite2's layout and ip-location-db's, IPv4-only and IPv6 trees, a file
 * holding both kinds. Also: unknown addresses, interning of organisation
 * names, files that are missing or corrupt, a file replaced, deleted and
 * restored while open, the default places, and lookups per second.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "geo.h"
#include "testutil.h"

/* meson runs the tests in tests/; by hand they may run from the top. */
#define WRITER                                                                                     \
	(access("geo/mmdb_write.py", R_OK) == 0 ? "/usr/bin/python3 geo/mmdb_write.py"             \
						: "/usr/bin/python3 tests/geo/mmdb_write.py")
#define EPOCH 1700000000 /* 2023-11-14 */

static char dir[] = "/tmp/test_geo.XXXXXX";

static const char *at(const char *name)
{
	static char paths[8][256];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
	return p;
}

/* Writes the database name from a JSON spec; false if the writer failed. */
static bool write_db(const char *name, const char *spec)
{
	char cmd[1024], json[300];
	FILE *f;

	snprintf(json, sizeof(json), "%s.json", at(name));
	f = fopen(json, "w");
	if (!f)
		return false;
	fputs(spec, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s %s %s 2>/dev/null", WRITER, json, at(name));
	return system(cmd) == 0;
}

static void write_file(const char *path, const void *data, size_t n)
{
	char tmp[300];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, data, n) == (ssize_t)n);
	close(fd);
	CHECK(rename(tmp, path) == 0); /* replaced as an update is installed */
}

/* A copy of src at dst, renamed over it. */
static void copy_file(const char *src, const char *dst)
{
	static char buf[1 << 20];
	FILE *f = fopen(src, "rb");
	size_t n;

	CHECK(f != NULL);
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	write_file(dst, buf, n);
}

static void look(struct geo *g, const char *ip, struct geo_result *r)
{
	uint8_t a[16];

	if (inet_pton(AF_INET, ip, a) == 1)
		geo_lookup(g, AF_INET, a, r);
	else if (inet_pton(AF_INET6, ip, a) == 1)
		geo_lookup(g, AF_INET6, a, r);
	else
		CHECK(!"an address");
}

static const char *country_v4_geolite =
    "{\"ip_version\": 4, \"record_size\": 24, \"database_type\": \"GeoLite2-Country\","
    " \"build_epoch\": 1700000000, \"networks\": ["
    " [\"127.0.1.0/24\", {\"country\": {\"iso_code\": \"DE\", \"names\": {\"en\": \"Germany\"}}}],"
    " [\"127.0.2.0/24\", {\"registered_country\": {\"iso_code\": \"NL\"}}],"
    " [\"127.0.3.0/24\", {\"country\": {\"iso_code\": \"Germany\"}}]]}";

static const char *asn_v4 =
    "{\"ip_version\": 4, \"record_size\": 28, \"database_type\": \"GeoLite2-ASN\","
    " \"build_epoch\": 1700000000, \"networks\": ["
    " [\"127.0.1.0/24\", {\"autonomous_system_number\": 64501,"
    "   \"autonomous_system_organization\": \"Org A\"}],"
    " [\"127.0.2.0/24\", {\"autonomous_system_number\": {\"$type\": \"uint16\", \"value\": 64502},"
    "   \"autonomous_system_organization\": \"Org A\"}],"
    " [\"127.0.3.0/24\", {\"autonomous_system_number\": {\"$type\": \"uint64\", \"value\": 64503},"
    "   \"autonomous_system_organization\": \"Org B\"}]]}";

static const char *country_v6_iplocdb =
    "{\"ip_version\": 6, \"record_size\": 32, \"database_type\": \"ip-location-db country\","
    " \"build_epoch\": 1600000000, \"networks\": ["
    " [\"127.0.1.0/24\", {\"country_code\": \"fr\"}],"
    " [\"2001:db8::/32\", {\"country_code\": \"JP\"}]]}";

static const char *both_v6 =
    "{\"ip_version\": 6, \"database_type\": \"Test-Both\", \"build_epoch\": 1700000000,"
    " \"networks\": ["
    " [\"127.0.5.0/24\", {\"country\": {\"iso_code\": \"IT\"},"
    "   \"autonomous_system_number\": 64505, \"autonomous_system_organization\": \"Org C\"}]]}";

/* GeoLite2's layout, IPv4-only trees, a database of each kind. */
static void test_geolite_v4(void)
{
	char err[256] = "";
	struct geo *g = geo_new(at("c4.mmdb"), at("a4.mmdb"), err, sizeof(err));
	struct geo_db_status st;
	struct geo_result r;
	char date[16];

	CHECK(g != NULL);
	if (!g) {
		fprintf(stderr, "geo_new: %s\n", err);
		return;
	}
	CHECK(geo_active(g));
	look(g, "127.0.1.9", &r);
	CHECK_STR(r.country, "DE");
	CHECK_INT(r.asn, 64501);
	CHECK_STR(geo_org(g, r.org), "Org A");
	look(g, "127.0.2.9", &r); /* no country of its own: the registered one */
	CHECK_STR(r.country, "NL");
	CHECK_INT(r.asn, 64502);  /* stored as uint16 */
	look(g, "127.0.3.9", &r); /* not a two-letter code: unknown */
	CHECK_STR(r.country, "");
	CHECK_INT(r.asn, 64503); /* stored as uint64 */
	CHECK_STR(geo_org(g, r.org), "Org B");
	look(g, "10.1.2.3", &r); /* in neither */
	CHECK_STR(r.country, "");
	CHECK_INT(r.asn, 0);
	CHECK_INT(r.org, 0);
	CHECK_STR(geo_org(g, r.org), "");
	look(g, "2001:db8::1", &r); /* IPv6 asked of IPv4-only trees */
	CHECK_STR(r.country, "");
	CHECK_INT(r.asn, 0);
	look(g, "::ffff:127.0.1.9", &r); /* IPv4-mapped: looked up as IPv4 */
	CHECK_STR(r.country, "DE");
	geo_status(g, GEO_COUNTRY, &st);
	CHECK_STR(st.path, at("c4.mmdb"));
	CHECK_STR(st.type, "GeoLite2-Country");
	CHECK_INT(st.build_epoch, EPOCH);
	CHECK_STR(st.error, "");
	CHECK_STR(geo_date(st.build_epoch, date, sizeof(date)), "2023-11-14");
	geo_status(g, GEO_ASN, &st);
	CHECK_STR(st.type, "GeoLite2-ASN");
	CHECK_INT(geo_lookups(g), 6);
	geo_free(g);
}

/* ip-location-db's layout in an IPv6 tree: IPv4 found under ::/96, codes
 * upper-cased; no ASN database. */
static void test_iplocdb_v6(void)
{
	char err[256] = "";
	struct geo *g = geo_new(at("c6.mmdb"), "", err, sizeof(err));
	struct geo_db_status st;
	struct geo_result r;

	CHECK(g != NULL);
	if (!g)
		return;
	look(g, "127.0.1.200", &r);
	CHECK_STR(r.country, "FR");
	CHECK_INT(r.asn, 0);
	look(g, "::ffff:127.0.1.200", &r);
	CHECK_STR(r.country, "FR");
	look(g, "2001:db8:1::5", &r);
	CHECK_STR(r.country, "JP");
	look(g, "127.0.9.1", &r);
	CHECK_STR(r.country, "");
	geo_status(g, GEO_ASN, &st);
	CHECK(st.path == NULL); /* "" = off */
	geo_free(g);
}

/* One file holding both: named for both, or for the country only (its
 * ASN fields are read then too). */
static void test_one_file(void)
{
	char err[256] = "";
	struct geo *g = geo_new(at("both.mmdb"), at("both.mmdb"), err, sizeof(err));
	struct geo_result r;

	CHECK(g != NULL);
	if (!g)
		return;
	look(g, "127.0.5.1", &r);
	CHECK_STR(r.country, "IT");
	CHECK_INT(r.asn, 64505);
	CHECK_STR(geo_org(g, r.org), "Org C");
	geo_free(g);
	g = geo_new(at("both.mmdb"), "", err, sizeof(err));
	CHECK(g != NULL);
	if (!g)
		return;
	look(g, "127.0.5.1", &r);
	CHECK_STR(r.country, "IT");
	CHECK_INT(r.asn, 64505);
	geo_free(g);
	g = geo_new(at("c4.mmdb"), at("both.mmdb"), err, sizeof(err));
	CHECK(g != NULL);
	if (!g)
		return;
	look(g, "127.0.5.1", &r); /* the country file is loaded: its answer (none) */
	CHECK_STR(r.country, "");
	CHECK_INT(r.asn, 64505);
	geo_free(g);
}

/* 100,000 lookups in a few networks keep one copy of each name. */
static void test_interning(void)
{
	char err[256] = "";
	struct geo *g = geo_new("", at("a4.mmdb"), err, sizeof(err));
	struct geo_result a, b, c;

	CHECK(g != NULL);
	if (!g)
		return;
	look(g, "127.0.1.1", &a);
	look(g, "127.0.2.1", &b);
	look(g, "127.0.3.1", &c);
	CHECK(a.org != 0);
	CHECK_INT(a.org, b.org); /* two networks, one organisation: one id */
	CHECK(c.org != a.org);
	CHECK(geo_org(g, a.org) == geo_org(g, b.org)); /* one copy */
	for (int i = 0; i < 100000; i++) {
		struct geo_result x;
		uint8_t addr[4] = {127, 0, (uint8_t)(1 + i % 3), (uint8_t)i};

		geo_lookup(g, AF_INET, addr, &x);
		CHECK(x.org == a.org || x.org == c.org);
		if (test_failures)
			break;
	}
	CHECK_STR(geo_org(g, c.org), "Org B");
	CHECK_STR(geo_org(g, 12345), ""); /* never given */
	geo_free(g);
}

/* A configured file missing, not a MaxMind DB, or with a broken tree. */
static void test_bad_files(void)
{
	static const char junk[] = "this is not a database\n";
	char err[256] = "", want[300], buf[1 << 16];
	struct geo *g;
	FILE *f;
	size_t n;

	g = geo_new(at("missing.mmdb"), NULL, err, sizeof(err));
	CHECK(g == NULL);
	snprintf(want, sizeof(want), "%s: %s", at("missing.mmdb"), strerror(ENOENT));
	CHECK_STR(err, want);
	write_file(at("junk.mmdb"), junk, sizeof(junk) - 1);
	g = geo_new(NULL, at("junk.mmdb"), err, sizeof(err));
	CHECK(g == NULL);
	snprintf(want, sizeof(want), "%s: not a MaxMind DB file", at("junk.mmdb"));
	CHECK(strncmp(err, want, strlen(want)) == 0);
	/* Valid metadata over a search tree of garbage. */
	f = fopen(at("c4.mmdb"), "rb");
	CHECK(f != NULL);
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	memset(buf, 0xff, 24); /* the first nodes point far past the data */
	write_file(at("tree.mmdb"), buf, n);
	g = geo_new(at("tree.mmdb"), "", err, sizeof(err));
	CHECK(g == NULL);
	snprintf(want, sizeof(want), "%s: corrupt MaxMind DB file", at("tree.mmdb"));
	CHECK(strncmp(err, want, strlen(want)) == 0);
	g = geo_new(at("tree.mmdb"), "", NULL, 0); /* no room for why: still refused */
	CHECK(g == NULL);
}

/* A file replaced (renamed over) is loaded; deleted or corrupt, the last
 * good one stays in use with the error shown; back, the error goes. */
static void test_swap(void)
{
	char err[256] = "";
	const char *live = at("live.mmdb");
	struct geo_db_status st;
	struct geo_result r;
	struct geo *g;
	uint32_t gen;

	copy_file(at("c4.mmdb"), live);
	g = geo_new(live, "", err, sizeof(err));
	CHECK(g != NULL);
	if (!g)
		return;
	gen = geo_generation(g);
	CHECK_INT(geo_refresh(g), 0); /* nothing changed: nothing to do */
	CHECK_INT(geo_generation(g), gen);
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "DE");

	copy_file(at("c6.mmdb"), live);
	CHECK_INT(geo_refresh(g), GEO_CHANGED_DATA);
	CHECK(geo_generation(g) != gen);
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "FR");
	geo_status(g, GEO_COUNTRY, &st);
	CHECK_STR(st.type, "ip-location-db country");
	CHECK_INT(st.build_epoch, 1600000000);

	gen = geo_generation(g);
	CHECK(unlink(live) == 0);
	CHECK_INT(geo_refresh(g), GEO_CHANGED_STATUS);
	CHECK_INT(geo_refresh(g), 0); /* said once */
	geo_status(g, GEO_COUNTRY, &st);
	CHECK_STR(st.error, strerror(ENOENT));
	CHECK_STR(st.path, live);
	CHECK_INT(geo_generation(g), gen);
	look(g, "127.0.1.1", &r); /* the last good copy answers */
	CHECK_STR(r.country, "FR");

	write_file(live, "garbage", 7);
	CHECK_INT(geo_refresh(g), GEO_CHANGED_STATUS);
	geo_status(g, GEO_COUNTRY, &st);
	CHECK(strncmp(st.error, "not a MaxMind DB file", 21) == 0);
	CHECK_INT(geo_refresh(g), 0); /* the same bad file is not read again */
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "FR");

	copy_file(at("c4.mmdb"), live);
	CHECK_INT(geo_refresh(g), GEO_CHANGED_DATA | GEO_CHANGED_STATUS);
	geo_status(g, GEO_COUNTRY, &st);
	CHECK_STR(st.error, "");
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "DE");

	/* A reload that turns it off drops it. */
	gen = geo_generation(g);
	CHECK_INT(geo_configure(g, "", ""), GEO_CHANGED_DATA);
	CHECK(!geo_active(g));
	CHECK(geo_generation(g) != gen);
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "");
	geo_free(g);
}

/* bytes of src written over dst in place (truncated, then written: what
 * cp does), not renamed over it. */
static void overwrite_in_place(const char *src, const char *dst)
{
	static char buf[1 << 20];
	FILE *f = fopen(src, "rb");
	size_t n;
	int fd;

	CHECK(f != NULL);
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	fd = open(dst, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK(write(fd, buf, n) == (ssize_t)n);
	close(fd);
}

/* A database written over in place while mapped: a lookup of it faults
 * (SIGBUS), which ends that lookup only, not the process; the file is
 * dropped with its error saying why, and opened again once whole. */
static void test_written_over_in_place(void)
{
	char err[256] = "";
	const char *live = at("inplace.mmdb");
	struct geo_db_status st;
	struct geo_result r;
	struct geo *g;
	uint32_t gen;

	copy_file(at("c4.mmdb"), live);
	g = geo_new(live, "", err, sizeof(err));
	CHECK(g != NULL);
	if (!g)
		return;
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "DE");
	gen = geo_generation(g);

	CHECK(truncate(live, 0) == 0); /* the first step of cp onto it */
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "");
	CHECK(geo_generation(g) != gen);
	CHECK(!geo_active(g));
	geo_status(g, GEO_COUNTRY, &st);
	CHECK(strstr(st.error, "written over while in use") != NULL);
	look(g, "127.0.1.1", &r); /* nothing mapped is read again */
	CHECK_STR(r.country, "");

	overwrite_in_place(at("c6.mmdb"), live);
	CHECK(geo_refresh(g) & GEO_CHANGED_DATA);
	geo_status(g, GEO_COUNTRY, &st);
	CHECK_STR(st.error, "");
	look(g, "127.0.1.1", &r);
	CHECK_STR(r.country, "FR");
	geo_free(g);
}

/* The default places: PROXYFS_GEO_DIRS in order, the usual names in order
 * within each; empty = nowhere; a configured value is never searched. */
static void test_default_places(void)
{
	char d1[300], d2[300], env[700], err[256] = "";
	struct geo_db_status st;
	struct geo_result r;
	struct geo *g;
	char *p;

	snprintf(d1, sizeof(d1), "%s/d1", dir);
	snprintf(d2, sizeof(d2), "%s/d2", dir);
	CHECK(mkdir(d1, 0755) == 0 && mkdir(d2, 0755) == 0);
	snprintf(env, sizeof(env), "%s:%s", d1, d2);
	setenv("PROXYFS_GEO_DIRS", env, 1);
	CHECK(geo_find(GEO_COUNTRY, NULL) == NULL);
	copy_file(at("c6.mmdb"), at("d2/dbip-country-lite.mmdb"));
	copy_file(at("c4.mmdb"), at("d2/GeoLite2-Country.mmdb"));
	copy_file(at("a4.mmdb"), at("d1/GeoLite2-ASN.mmdb"));
	p = geo_find(GEO_COUNTRY, NULL);
	CHECK_STR(p, at("d2/GeoLite2-Country.mmdb")); /* before dbip-country-lite */
	free(p);
	p = geo_find(GEO_ASN, NULL);
	CHECK_STR(p, at("d1/GeoLite2-ASN.mmdb"));
	free(p);
	CHECK(geo_find(GEO_ASN, "") == NULL);
	p = geo_find(GEO_ASN, "/nowhere/x.mmdb");
	CHECK_STR(p, "/nowhere/x.mmdb");
	free(p);

	g = geo_new(NULL, NULL, err, sizeof(err));
	CHECK(g != NULL);
	if (g) {
		look(g, "127.0.1.1", &r);
		CHECK_STR(r.country, "DE");
		CHECK_INT(r.asn, 64501);
		/* A file of a name searched earlier appears: used from then on. */
		copy_file(at("c6.mmdb"), at("d1/country.mmdb"));
		CHECK(geo_refresh(g) & GEO_CHANGED_DATA);
		look(g, "127.0.1.1", &r);
		CHECK_STR(r.country, "FR");
		/* ... and goes: the next one found is used again. */
		CHECK(unlink(at("d1/country.mmdb")) == 0);
		CHECK_INT(geo_refresh(g), GEO_CHANGED_DATA);
		look(g, "127.0.1.1", &r);
		CHECK_STR(r.country, "DE");
		/* None left: the one in use stays, with the error. */
		CHECK(unlink(at("d2/GeoLite2-Country.mmdb")) == 0);
		CHECK(unlink(at("d2/dbip-country-lite.mmdb")) == 0);
		CHECK_INT(geo_refresh(g), GEO_CHANGED_STATUS);
		geo_status(g, GEO_COUNTRY, &st);
		CHECK_STR(st.path, at("d2/GeoLite2-Country.mmdb"));
		CHECK_STR(st.error, strerror(ENOENT));
		look(g, "127.0.1.1", &r);
		CHECK_STR(r.country, "DE");
		geo_free(g);
	}
	setenv("PROXYFS_GEO_DIRS", "", 1);
	CHECK(geo_find(GEO_COUNTRY, NULL) == NULL);
	g = geo_new(NULL, NULL, err, sizeof(err));
	CHECK(g != NULL && !geo_active(g));
	geo_free(g);
	unsetenv("PROXYFS_GEO_DIRS");
}

static double now_s(void)
{
	struct timespec ts;

	/* CPU time: other work on the machine does not count against it */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define NBENCH 20000

/* The bench's network i: distinct /24s spread over 11.0.0.0 - 70.0.0.0. */
static uint32_t bench_net(uint32_t i)
{
	return (11u << 24) + (i * 2654435761u % (60u << 16)) * 256u;
}

/* Lookups per second in a tree of 20,000 IPv4 networks in an IPv6 tree
 * (the depth a real country database has), country and ASN files both:
 * printed for the README, not asserted. */
static void bench_run(const char *country, const char *asn, const char *what);

static void bench(void)
{
	char cmd[1024];
	FILE *f = fopen(at("big.json"), "w");

	CHECK(f != NULL);
	if (!f)
		return;
	fputs("{\"ip_version\": 6, \"networks\": [", f);
	for (uint32_t i = 0; i < NBENCH; i++) {
		uint32_t a = bench_net(i);

		fprintf(f,
			"%s[\"%u.%u.%u.0/24\", {\"country\": {\"iso_code\": \"%c%c\"},"
			" \"autonomous_system_number\": %u, \"autonomous_system_organization\":"
			" \"Org %u\"}]",
			i ? "," : "", a >> 24, a >> 16 & 255, a >> 8 & 255, 'A' + i % 26,
			'A' + i / 26 % 26, 64000 + i % 500, i % 500);
	}
	fputs("]}", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s %s %s 2>/dev/null", WRITER, at("big.json"), at("big.mmdb"));
	CHECK(system(cmd) == 0);
	bench_run(at("big.mmdb"), "", "country only");
	bench_run("", at("big.mmdb"), "asn only");
	bench_run(at("big.mmdb"), at("big.mmdb"), "one file for both");
	snprintf(cmd, sizeof(cmd), "cp %s %s", at("big.mmdb"), at("big2.mmdb"));
	CHECK(system(cmd) == 0);
	bench_run(at("big.mmdb"), at("big2.mmdb"), "two files");
}

static void bench_run(const char *country, const char *asn, const char *what)
{
	char err[256] = "";
	struct geo_result r;
	struct geo *g;
	double t0, t;
	int n = 0;

	g = geo_new(country, asn, err, sizeof(err));
	CHECK(g != NULL);
	if (!g)
		return;
	t0 = now_s();
	do {
		for (int i = 0; i < 10000; i++, n++) {
			/* a hit in one of the networks, in no order a cache favours */
			uint32_t a = htonl(bench_net((uint32_t)n * 7919u % NBENCH) | (n & 255));

			geo_lookup(g, AF_INET, (const uint8_t *)&a, &r);
		}
		t = now_s() - t0;
	} while (t < 0.5);
	printf("geo lookups, 20,000 networks in an IPv6 tree, %s: %.0f/s of CPU, %.2f us each\n",
	       what, n / t, t * 1e6 / n);
	geo_free(g);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	if (!write_db("c4.mmdb", country_v4_geolite) || !write_db("a4.mmdb", asn_v4) ||
	    !write_db("c6.mmdb", country_v6_iplocdb) || !write_db("both.mmdb", both_v6)) {
		fprintf(stderr, "cannot write the test databases with %s\n", WRITER);
		return 1;
	}
	unsetenv("PROXYFS_GEO_DIRS");
	test_geolite_v4();
	test_iplocdb_v6();
	test_one_file();
	test_interning();
	test_bad_files();
	test_swap();
	test_written_over_in_place();
	test_default_places();
	bench();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return test_exit_code();
}
