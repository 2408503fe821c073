/* Unit tests for the snapshot: building, ordering, folder indexes, the
 * render cache, and publish/reference counting across threads. */
#include "snapshot.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>

static int render_calls;

static void render_count(const struct snapshot *s, int arg, struct sbuf *out)
{
	render_calls++;
	sbuf_printf(out, "%u proxies, arg %d\n", s->nlive, arg);
}

static struct snapshot *make(uint32_t n)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st = { .generation = n, .health = "ok" };
	char uri[64], host[32];

	for (uint32_t i = 0; i < n; i++) {
		struct snap_proxy p = {
			.uri = uri, .host = host, .port = (uint16_t)(1000 + i),
			.latency_ms = (n - i) * 10, .proto = i % 2 ? PROXY_SOCKS5 : PROXY_HTTP,
			.folders = i % 2 ? 1u << PROXY_SOCKS5 : (1u << PROXY_HTTP) | (1u << PROXY_HTTPS),
			.sources = "a,b",
		};
		snprintf(host, sizeof(host), "127.0.0.%u", i + 1);
		snprintf(uri, sizeof(uri), "%s://%s:%u", i % 2 ? "socks5" : "http", host, 1000 + i);
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	struct snap_source src = { .name = "local", .url = "/tmp/x", .proxies = n,
				   .invalid_sample = { "bad line" } };
	CHECK_INT(snap_builder_add_source(b, &src), 0);
	snap_builder_set_stats(b, &st);
	return snap_builder_finish(b);
}

static void test_build(void)
{
	struct snapshot *s = make(5);

	CHECK(s != NULL);
	CHECK_INT(s->nlive, 5);
	/* fastest first: the last added has the lowest latency */
	CHECK_STR(s->live[0].uri, "http://127.0.0.5:1004");
	CHECK_INT(s->live[0].latency_ms, 10);
	CHECK_STR(s->live[4].uri, "http://127.0.0.1:1000");
	CHECK_STR(s->live[0].sources, "a,b");
	CHECK_INT(s->nby_folder[PROXY_HTTP], 3);
	CHECK_INT(s->nby_folder[PROXY_HTTPS], 3);
	CHECK_INT(s->nby_folder[PROXY_SOCKS5], 2);
	CHECK_INT(s->nby_folder[PROXY_SOCKS4], 0);
	CHECK_INT(s->nviews, SNAP_VIEW_SOURCES + 1);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES], 0); /* "a,b" does not name "local" */
	CHECK_INT(s->nby_folder[SNAP_VIEW_ELITE], 0);
	for (uint32_t i = 0; i < s->nby_folder[PROXY_SOCKS5]; i++)
		CHECK_INT(s->live[s->by_folder[PROXY_SOCKS5][i]].proto, PROXY_SOCKS5);
	CHECK_INT(s->nsources, 1);
	CHECK_STR(s->sources[0].invalid_sample[0], "bad line");
	CHECK(s->sources[0].invalid_sample[1] == NULL);
	CHECK_STR(s->stats.health, "ok");
	snap_unref(s);
}

/* Per-source views past 64 sources, in live order, with names that are no
 * source ("@control"), prefixes of one ("s1" of "s10"), and a name twice. */
static void test_source_views(void)
{
	struct snap_builder *b = snap_builder_new();
	static const char *const lists[] = {
		"s10,@control", "s199,s0", "s1,s1", "s199", "", "s100,s10,s199",
	};
	char names[200][8], uri[64];
	struct snapshot *s;

	for (int i = 0; i < 200; i++) {
		struct snap_source src = { .name = names[i], .url = "u", .error = "" };

		snprintf(names[i], sizeof(names[i]), "s%d", i);
		CHECK_INT(snap_builder_add_source(b, &src), 0);
	}
	for (uint32_t i = 0; i < 6; i++) {
		struct snap_proxy p = { .uri = uri, .host = "h", .port = 1, .latency_ms = i,
					.folders = 1, .sources = lists[i] };

		snprintf(uri, sizeof(uri), "http://10.0.0.%u:1", i);
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	s = snap_builder_finish(b);
	CHECK(s != NULL);
	CHECK_INT(s->nviews, SNAP_VIEW_SOURCES + 200);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES + 199], 3);
	CHECK_INT(s->by_folder[SNAP_VIEW_SOURCES + 199][0], 1);
	CHECK_INT(s->by_folder[SNAP_VIEW_SOURCES + 199][1], 3);
	CHECK_INT(s->by_folder[SNAP_VIEW_SOURCES + 199][2], 5);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES + 10], 2);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES + 100], 1);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES + 1], 1);
	CHECK_INT(s->by_folder[SNAP_VIEW_SOURCES + 1][0], 2);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES + 0], 1);
	CHECK_INT(s->nby_folder[SNAP_VIEW_SOURCES + 2], 0);
	CHECK(s->by_folder[SNAP_VIEW_SOURCES + 2] == NULL);
	snap_unref(s);
}

static void test_empty(void)
{
	struct snapshot *s = make(0);

	CHECK(s != NULL);
	CHECK_INT(s->nlive, 0);
	CHECK(s->live == NULL);
	snap_unref(s);
}

static void test_cache(void)
{
	struct snapshot *s = make(3), *t = make(2);
	const struct sbuf *a, *b;
	uint64_t before = snap_renderings();

	render_calls = 0;
	a = snap_cached(s, 2, render_count, 7);
	b = snap_cached(s, 2, render_count, 7);
	CHECK(a == b);
	CHECK_INT(render_calls, 1);
	CHECK_STR(a->data, "3 proxies, arg 7\n");
	CHECK(snap_cached(s, SNAP_CACHE_SLOTS, render_count, 0) == NULL);
	/* counted once per snapshot and slot, however often read */
	CHECK_INT(snap_renderings() - before, 1);
	snap_cached(s, 3, render_count, 7);
	snap_cached(t, 2, render_count, 7);
	snap_cached(t, 2, render_count, 7);
	CHECK_INT(snap_renderings() - before, 3);
	CHECK_INT(render_calls, 3);
	snap_unref(t);
	snap_unref(s);
}

static atomic_bool stop_readers;
static atomic_ulong total_reads;
static atomic_int readers_seen; /* readers that have done at least one read */

static void *reader(void *arg)
{
	unsigned long reads = 0;

	while (!atomic_load(&stop_readers)) {
		struct snapshot *s = snap_current();

		/* a whole snapshot: count matches its generation by construction */
		if (s->nlive != s->stats.generation)
			return (void *)1;
		snap_unref(s);
		if (reads++ == 0)
			atomic_fetch_add(&readers_seen, 1);
		atomic_fetch_add(&total_reads, 1);
	}
	return reads ? NULL : (void *)1;
}

static void test_publish_threads(void)
{
	pthread_t th[4];
	void *rc;

	snap_publish(make(0));
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, reader, NULL);
	/* Publish until the readers have raced the swaps many times over,
	 * however the threads are scheduled. */
	for (uint32_t g = 1;
	     g <= 300 || atomic_load(&total_reads) < 20000 || atomic_load(&readers_seen) < 4; g++)
		snap_publish(make(g % 17));
	atomic_store(&stop_readers, true);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], &rc);
		CHECK(rc == NULL);
	}
	snap_system_fini();
}

static void test_system_init(void)
{
	struct snapshot *s;

	CHECK_INT(snap_system_init(), 0);
	s = snap_current();
	CHECK(s != NULL);
	CHECK_INT(s->nlive, 0);
	CHECK(strncmp(s->stats.health, "degraded", 8) == 0);
	snap_unref(s);
	snap_system_fini();
}

/* Live and other proxies mixed, past the first growth, with and without a
 * reservation: all[] holds the live ones (fastest first) then every other
 * one, each once; a source string repeated is shared. */
static void test_all_records(void)
{
	for (int reserve = 0; reserve < 2; reserve++) {
		struct snap_builder *b = snap_builder_new();
		struct snap_stats st = {.health = "ok"};
		struct snapshot *s;
		char uri[64], host[32];
		unsigned seen[300] = {0};

		CHECK(b != NULL);
		if (!b)
			return;
		if (reserve)
			CHECK_INT(snap_builder_reserve(b, 300), 0);
		for (uint32_t i = 0; i < 300; i++) {
			struct snap_proxy p = {
			    .uri = uri,
			    .host = host,
			    .exit_ip = "",
			    .sources = "a,b",
			    .port = (uint16_t)(1000 + i),
			    .latency_ms = 1000 - i,
			    .state = i % 3 ? (uint8_t)(SNAP_DEAD + i % 4) : SNAP_ALIVE,
			};

			snprintf(host, sizeof(host), "10.0.%u.%u", i / 256, i % 256);
			snprintf(uri, sizeof(uri), "http://%s:%u", host, 1000 + i);
			CHECK_INT(snap_builder_add(b, &p), 0);
		}
		snap_builder_set_stats(b, &st);
		s = snap_builder_finish(b);
		CHECK(s != NULL);
		if (!s)
			return;
		CHECK_INT(s->nlive, 100);
		CHECK_INT(s->nall, 300);
		CHECK(s->live == s->all);
		for (uint32_t i = 0; i < s->nall; i++) {
			uint32_t k = s->all[i].port - 1000u;

			CHECK((s->all[i].state == SNAP_ALIVE) == (i < s->nlive));
			CHECK(k < 300 && (k % 3 == 0) == (i < s->nlive));
			if (k < 300)
				seen[k]++;
			if (i > 0 && i < s->nlive)
				CHECK(s->all[i - 1].latency_ms <= s->all[i].latency_ms);
			CHECK(s->all[i].sources == s->all[0].sources);
		}
		for (uint32_t k = 0; k < 300; k++)
			CHECK_INT(seen[k], 1);
		snap_unref(s);
	}
}

/* The country index: codes sorted, unknown last, each list fastest first
 * and nothing but live proxies; codes in lower case or junk are read as
 * the snapshot keeps them; as_org copied once per name, NULL as "". */
static void test_countries(void)
{
	static const char *const codes[] = {"DE", "fr", "", "DE", "x1", "US", "", "DE"};
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st = {.health = "ok"};
	struct snapshot *s;
	char uri[64];

	for (uint32_t i = 0; i < 8; i++) {
		struct snap_proxy p = {
		    .uri = uri, .host = "h", .sources = "", .port = (uint16_t)(1000 + i),
		    .latency_ms = 100 - i, .asn = i, .as_org = i % 2 ? "Org" : NULL,
		    .geo_from = SNAP_GEO_EXIT,
		};

		snprintf(p.country, sizeof(p.country), "%s", codes[i]);
		snprintf(uri, sizeof(uri), "http://h:%u", 1000 + i);
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	/* a dead one counts nowhere */
	struct snap_proxy dead = {.uri = "http://d:1", .host = "d", .state = SNAP_DEAD,
				  .country = "CN"};
	CHECK_INT(snap_builder_add(b, &dead), 0);
	snap_builder_set_stats(b, &st);
	s = snap_builder_finish(b);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(s->ncountries, 4);
	CHECK_STR(s->countries[0].code, "DE");
	CHECK_STR(s->countries[1].code, "FR");
	CHECK_STR(s->countries[2].code, "US");
	CHECK_STR(s->countries[3].code, "");
	CHECK_INT(s->countries[0].n, 3);
	CHECK_INT(s->countries[3].n, 3); /* "", "", "x1" */
	for (uint32_t k = 0; k < s->ncountries; k++)
		for (uint32_t j = 0; j < s->countries[k].n; j++) {
			uint32_t i = s->countries[k].idx[j];

			CHECK(i < s->nlive);
			CHECK_STR(s->live[i].country, s->countries[k].code);
			if (j)
				CHECK(s->countries[k].idx[j - 1] < i);
		}
	/* live[0] is the fastest: port 1007, "DE" */
	CHECK_INT(s->countries[0].idx[0], 0);
	CHECK_STR(s->live[0].country, "DE");
	CHECK_STR(s->live[0].as_org, "Org");
	CHECK_INT(s->live[0].asn, 7);
	CHECK_INT(s->live[0].geo_from, SNAP_GEO_EXIT);
	CHECK_STR(s->live[1].as_org, "");
	CHECK(s->live[0].as_org == s->live[2].as_org); /* one copy per name */
	CHECK_STR(s->all[8].country, "CN");

	CHECK(snap_view_country(s, snap_country_view("de")) == &s->countries[0]);
	CHECK(snap_view_country(s, snap_country_view("US")) == &s->countries[2]);
	CHECK(snap_view_country(s, snap_country_view("")) == &s->countries[3]);
	CHECK(snap_view_country(s, snap_country_view("CN")) == NULL);
	CHECK(snap_view_country(s, PROXY_SOCKS5) == NULL);
	CHECK_INT(snap_country_view("D"), -1);
	CHECK_INT(snap_country_view("DEU"), -1);
	CHECK_INT(snap_country_view("d1"), -1);
	CHECK_INT(snap_country_view("\xc4\xe4"), -1); /* letters of no ISO code */
	snap_unref(s);

	/* no unknown ones: none listed */
	s = make(3);
	CHECK_INT(s->ncountries, 1);
	CHECK(snap_view_country(s, snap_country_view("")) != NULL);
	snap_unref(s);
	s = make(0);
	CHECK_INT(s->ncountries, 0);
	CHECK(snap_view_country(s, snap_country_view("")) == NULL);
	snap_unref(s);
}

int main(void)
{
	test_countries();
	test_all_records();
	test_source_views();
	test_build();
	test_empty();
	test_cache();
	test_publish_threads();
	test_system_init();
	return test_exit_code();
}
