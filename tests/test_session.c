/* Unit tests for src/session.c: sticky picks over hand-built snapshots.
 * Sets of proxies come and go between snapshots as they would between
 * scans; the tests check what session.h promises a user of /session/KEY. */
#include "render.h"
#include "session.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Proxy number i of the test's universe: http or socks5 by parity. */
static void proxy_uri(uint32_t i, char *buf, size_t size)
{
	snprintf(buf, size, "%s://10.0.%u.%u:%u", i % 2 ? "socks5" : "http", i / 200, i % 200,
		 1000 + i);
}

static uint64_t next_generation = 1;

/* A snapshot whose live proxies are the universe's numbers ids[0..n), with
 * latencies that depend on salt, so that the same set comes in another
 * order of live[] when salt differs. */
static struct snapshot *make(const uint32_t *ids, uint32_t n, uint32_t salt)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st;
	char uri[64], host[32];

	CHECK(b != NULL);
	if (!b)
		return NULL;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = ids[k];
		struct snap_proxy p = {
		    .uri = uri,
		    .host = host,
		    .exit_ip = "",
		    .sources = "list",
		    .port = (uint16_t)(1000 + i),
		    .proto = i % 2 ? PROXY_SOCKS5 : PROXY_HTTP,
		    .folders = (uint8_t)(1u << (i % 2 ? PROXY_SOCKS5 : PROXY_HTTP)),
		    .anonymity = SNAP_ANON_ELITE,
		    .latency_ms = (i * 7919u + salt * 104729u) % 1000 + 1,
		    .state = SNAP_ALIVE,
		};

		proxy_uri(i, uri, sizeof(uri));
		snprintf(host, sizeof(host), "10.0.%u.%u", i / 200, i % 200);
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	memset(&st, 0, sizeof(st));
	st.generation = next_generation++;
	st.alive = n;
	st.health = "ok";
	st.store_error = "";
	snap_builder_set_stats(b, &st);
	return snap_builder_finish(b);
}

/* A snapshot of the universe's proxies first..first+n-1. */
static struct snapshot *make_range(uint32_t first, uint32_t n, uint32_t salt)
{
	uint32_t *ids = malloc(n * sizeof(*ids) + 1);
	struct snapshot *s;

	for (uint32_t k = 0; k < n; k++)
		ids[k] = first + k;
	s = make(ids, n, salt);
	free(ids);
	return s;
}

/* The URI key gets under the top level's filter in s, "" on an error. */
static const char *pick_uri(const struct snapshot *s, const char *key)
{
	struct pick_filter all;
	uint32_t i;

	pick_filter_of_view(&all, s, -1);
	if (session_pick(s, &all, key, strlen(key), &i) != 0)
		return "";
	return s->live[i].uri;
}

static void key_name(char *buf, size_t size, uint32_t k)
{
	snprintf(buf, size, "user-%u", k);
}

#define NKEYS 300

static void test_sticks(void)
{
	struct snapshot *s = make_range(0, 20, 1), *again = make_range(0, 20, 1);
	char key[32], first[64];

	session_clear();
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		snprintf(first, sizeof(first), "%s", pick_uri(s, key));
		CHECK(first[0] != '\0');
		for (int r = 0; r < 5; r++)
			CHECK_STR(pick_uri(s, key), first);
		/* The same set in a newer snapshot. */
		CHECK_STR(pick_uri(again, key), first);
	}
	struct session_stats st;

	session_get_stats(&st);
	CHECK_INT(st.active, NKEYS);
	CHECK_INT(st.created_total, NKEYS);
	CHECK_INT(st.moved_total, 0);
	snap_unref(s);
	snap_unref(again);
}

/* Keys spread over the proxies: the hash is good enough that no proxy of
 * ten gets far from a tenth of 10,000 keys. */
static void test_spread(void)
{
	struct snapshot *s = make_range(0, 10, 1);
	uint32_t counts[10] = {0};
	char key[32];

	session_clear();
	for (uint32_t k = 0; k < 10000; k++) {
		key_name(key, sizeof(key), k);
		const char *uri = pick_uri(s, key);

		for (uint32_t i = 0; i < 10; i++) {
			char u[64];

			proxy_uri(i, u, sizeof(u));
			if (strcmp(u, uri) == 0)
				counts[i]++;
		}
	}
	for (uint32_t i = 0; i < 10; i++) {
		CHECK(counts[i] > 850);
		CHECK(counts[i] < 1150);
	}
	session_clear();
	snap_unref(s);
}

/* Proxies joining never move a placed key, though a fresh table would
 * place some keys on them. */
static void test_join(void)
{
	struct snapshot *small = make_range(0, 10, 1), *big = make_range(0, 30, 2);
	char key[32], placed[NKEYS][64];
	uint32_t would_move = 0;

	session_clear();
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		snprintf(placed[k], sizeof(placed[k]), "%s", pick_uri(small, key));
	}
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		CHECK_STR(pick_uri(big, key), placed[k]);
	}
	session_clear();
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		if (strcmp(pick_uri(big, key), placed[k]) != 0)
			would_move++;
	}
	CHECK(would_move > NKEYS / 2); /* 20 of 30 are new: about two thirds */
	session_clear();
	snap_unref(small);
	snap_unref(big);
}

/* A key whose proxy leaves is placed again; the other keys stay. */
static void test_leave(void)
{
	struct snapshot *s = make_range(0, 10, 1), *less;
	char key[32], placed[NKEYS][64], gone[64];
	uint32_t ids[9], n = 0, on_gone = 0;
	struct session_stats st;

	session_clear();
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		snprintf(placed[k], sizeof(placed[k]), "%s", pick_uri(s, key));
	}
	proxy_uri(3, gone, sizeof(gone));
	for (uint32_t i = 0; i < 10; i++)
		if (i != 3)
			ids[n++] = i;
	less = make(ids, n, 5);
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		const char *now = pick_uri(less, key);

		CHECK(now[0] != '\0');
		CHECK(strcmp(now, gone) != 0);
		if (strcmp(placed[k], gone) == 0)
			on_gone++;
		else
			CHECK_STR(now, placed[k]);
	}
	CHECK(on_gone > 0);
	session_get_stats(&st);
	CHECK_INT(st.moved_total, on_gone);
	CHECK_INT(st.created_total, NKEYS);
	/* The proxy coming back does not take its keys back: they moved. */
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		CHECK(strcmp(pick_uri(s, key), gone) != 0);
	}
	session_clear();
	snap_unref(s);
	snap_unref(less);
}

/* A key whose fresh placement over {0, 1, ..., n-1} is proxy want. */
static void key_placed_on(const struct snapshot *s, uint32_t want, uint32_t skip, char *key,
			  size_t size)
{
	char uri[64];

	proxy_uri(want, uri, sizeof(uri));
	for (uint32_t k = 0;; k++) {
		snprintf(key, size, "probe-%u", k);
		if (k < skip)
			continue;
		session_clear();
		if (strcmp(pick_uri(s, key), uri) == 0)
			break;
	}
	session_clear();
}

/* A key not used within the time to live is placed afresh. */
static void test_expiry(void)
{
	uint32_t only0[] = {0};
	struct snapshot *one = make(only0, 1, 1), *two = make_range(0, 2, 1);
	struct timespec wait = {.tv_sec = 1, .tv_nsec = 100 * 1000 * 1000};
	struct session_stats st;
	char key[32], uri0[64], uri1[64];

	proxy_uri(0, uri0, sizeof(uri0));
	proxy_uri(1, uri1, sizeof(uri1));
	key_placed_on(two, 1, 0, key, sizeof(key));
	session_configure(1, SESSION_MAX_DEFAULT);
	CHECK_STR(pick_uri(one, key), uri0);
	CHECK_STR(pick_uri(two, key), uri0); /* sticks */
	/* The time to live is whole seconds of CLOCK_MONOTONIC: no event
	 * tells that it passed but the clock itself. */
	nanosleep(&wait, NULL);
	session_get_stats(&st);
	CHECK_INT(st.active, 0);
	CHECK_STR(pick_uri(two, key), uri1);
	session_get_stats(&st);
	CHECK_INT(st.active, 1);
	CHECK_INT(st.created_total, 2);
	CHECK_INT(st.moved_total, 0);
	CHECK_INT(st.ttl_s, 1);
	session_configure(SESSION_TTL_DEFAULT, SESSION_MAX_DEFAULT);
	session_clear();
	snap_unref(one);
	snap_unref(two);
}

/* Over the bound the key used longest ago is dropped. */
static void test_bound(void)
{
	uint32_t only0[] = {0};
	struct snapshot *one = make(only0, 1, 1), *two = make_range(0, 2, 1);
	struct session_stats st;
	char k1[32], k2[32], k3[32], uri0[64], uri1[64];

	proxy_uri(0, uri0, sizeof(uri0));
	proxy_uri(1, uri1, sizeof(uri1));
	/* Three keys that a fresh table places on proxy 1 of {0, 1}. */
	key_placed_on(two, 1, 0, k1, sizeof(k1));
	key_placed_on(two, 1, (uint32_t)atoi(k1 + 6) + 1, k2, sizeof(k2));
	key_placed_on(two, 1, (uint32_t)atoi(k2 + 6) + 1, k3, sizeof(k3));
	session_configure(SESSION_TTL_DEFAULT, 3);
	CHECK_STR(pick_uri(one, k1), uri0);
	CHECK_STR(pick_uri(one, k2), uri0);
	CHECK_STR(pick_uri(one, k3), uri0);
	CHECK_STR(pick_uri(one, k1), uri0); /* k1 used again: k2 is the oldest */
	CHECK_STR(pick_uri(one, "fourth"), uri0);
	session_get_stats(&st);
	CHECK_INT(st.active, 3);
	CHECK_INT(st.max, 3);
	CHECK_INT(st.dropped_total, 1);
	CHECK_STR(pick_uri(two, k1), uri0); /* kept */
	CHECK_STR(pick_uri(two, k2), uri1); /* dropped: placed afresh (drops k3) */
	CHECK_STR(pick_uri(two, k3), uri1); /* dropped too */
	session_get_stats(&st);
	CHECK_INT(st.dropped_total, 3);
	/* A smaller bound drops at once. */
	session_configure(SESSION_TTL_DEFAULT, 1);
	session_get_stats(&st);
	CHECK_INT(st.active, 1);
	CHECK_INT(st.dropped_total, 5);
	session_configure(SESSION_TTL_DEFAULT, SESSION_MAX_DEFAULT);
	session_clear();
	snap_unref(one);
	snap_unref(two);
}

static void test_invalid_keys(void)
{
	struct snapshot *s = make_range(0, 4, 1);
	struct pick_filter all;
	char long_key[SESSION_KEY_MAX + 2];
	const char *bad[] = {"",
			     "a b",
			     "a/b",
			     "a%",
			     "a\n",
			     "caf\xc3\xa9",
			     "a+b",
			     ".."
			     "\x01"};
	uint32_t i = 12345;

	pick_filter_of_view(&all, s, -1);
	session_clear();
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		CHECK(!session_key_valid(bad[k], strlen(bad[k])));
		CHECK_INT(session_pick(s, &all, bad[k], strlen(bad[k]), &i), -EINVAL);
	}
	CHECK_INT(i, 12345);
	memset(long_key, 'k', sizeof(long_key));
	CHECK(session_key_valid(long_key, SESSION_KEY_MAX));
	CHECK(!session_key_valid(long_key, SESSION_KEY_MAX + 1));
	CHECK_INT(session_pick(s, &all, long_key, SESSION_KEY_MAX + 1, &i), -EINVAL);
	CHECK_INT(session_pick(s, &all, long_key, SESSION_KEY_MAX, &i), 0);
	CHECK(session_key_valid("Az09._-", 7));
	CHECK(session_key_valid("...", 3));
	CHECK(session_key_valid(".a", 2));
	CHECK(!session_key_valid("..", 2));
	CHECK(!session_key_valid(".", 1));
	/* len counts, not a NUL: "ab" of "abc". */
	CHECK_INT(session_pick(s, &all, "ab/", 2, &i), 0);
	struct session_stats st;

	session_get_stats(&st);
	CHECK_INT(st.active, 2);
	session_clear();
	snap_unref(s);
}

/* A restart (a fresh table) places the same keys on the same proxies of
 * the same set, whatever the order of live[]. */
static void test_restart(void)
{
	struct snapshot *a = make_range(0, 25, 1), *b = make_range(0, 25, 9);
	char key[32], placed[NKEYS][64];

	CHECK(strcmp(a->live[0].uri, b->live[0].uri) != 0); /* another order */
	session_clear();
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		snprintf(placed[k], sizeof(placed[k]), "%s", pick_uri(a, key));
	}
	session_clear();
	for (uint32_t k = 0; k < NKEYS; k++) {
		key_name(key, sizeof(key), k);
		CHECK_STR(pick_uri(b, key), placed[k]);
	}
	session_clear();
	snap_unref(a);
	snap_unref(b);
}

/* Filters: a folder's key is a proxy of that folder, a session of its own,
 * and a filter that matches nothing is -ENOENT but keeps the key. */
static void test_filters(void)
{
	struct snapshot *s = make_range(0, 20, 1), *http_only;
	struct pick_filter socks5, all;
	uint32_t ids[10], i, j;
	char key[32], kept[64];

	session_clear();
	pick_filter_of_view(&socks5, s, PROXY_SOCKS5);
	pick_filter_of_view(&all, s, -1);
	for (uint32_t k = 0; k < 50; k++) {
		key_name(key, sizeof(key), k);
		CHECK_INT(session_pick(s, &socks5, key, strlen(key), &i), 0);
		CHECK_INT(s->live[i].proto, PROXY_SOCKS5);
	}
	struct session_stats st;

	session_get_stats(&st);
	CHECK_INT(st.active, 50);
	/* The top level's session "user-1" is another one. */
	CHECK_INT(session_pick(s, &all, "user-1", 6, &j), 0);
	session_get_stats(&st);
	CHECK_INT(st.active, 51);

	CHECK_INT(session_pick(s, &socks5, "user-1", 6, &i), 0);
	snprintf(kept, sizeof(kept), "%s", s->live[i].uri);
	for (uint32_t k = 0; k < 10; k++)
		ids[k] = 2 * k; /* the http ones */
	http_only = make(ids, 10, 3);
	CHECK_INT(session_pick(http_only, &socks5, "user-1", 6, &i), -ENOENT);
	/* A new key under a filter that matches nothing is not kept. */
	CHECK_INT(session_pick(http_only, &socks5, "fresh", 5, &i), -ENOENT);
	session_get_stats(&st);
	CHECK_INT(st.active, 51);
	CHECK_INT(st.moved_total, 0);
	/* Its proxy back before the key expired: the key has it again. */
	CHECK_INT(session_pick(s, &socks5, "user-1", 6, &i), 0);
	CHECK_STR(s->live[i].uri, kept);
	session_get_stats(&st);
	CHECK_INT(st.moved_total, 0);
	session_clear();
	snap_unref(s);
	snap_unref(http_only);
}

/* stat.json's "sessions" and the proxyfs_sessions_* metrics show the
 * table as it is when they are rendered. */
static void test_rendered_figures(void)
{
	struct snapshot *s = make_range(0, 3, 1);
	struct sbuf b;
	char key[32];

	session_clear();
	session_configure(30, 1000);
	for (uint32_t k = 0; k < 7; k++) {
		key_name(key, sizeof(key), k);
		pick_uri(s, key);
	}
	sbuf_init(&b);
	render_stat_json(s, 0, &b);
	CHECK(!sbuf_failed(&b));
	CHECK(strstr(b.data,
		     "  \"sessions\": {\"active\": 7, \"max\": 1000, \"ttl_s\": 30, "
		     "\"created_total\": 7, \"moved_total\": 0, \"dropped_total\": 0},\n") != NULL);
	sbuf_reset(&b);
	render_metrics(s, 0, &b);
	CHECK(strstr(b.data, "# TYPE proxyfs_sessions_active gauge\nproxyfs_sessions_active 7\n") !=
	      NULL);
	CHECK(strstr(b.data, "\nproxyfs_sessions_created_total 7\n") != NULL);
	CHECK(strstr(b.data, "\nproxyfs_sessions_moved_total 0\n") != NULL);
	CHECK(strstr(b.data, "\nproxyfs_sessions_dropped_total 0\n") != NULL);
	sbuf_free(&b);
	session_configure(SESSION_TTL_DEFAULT, SESSION_MAX_DEFAULT);
	session_clear();
	snap_unref(s);
}

/* Threads picking the same keys over two snapshots of one set: every
 * answer is the key's one placement (run under ASan/TSan for the lock). */
#define NTHREADS 4
#define NSHARED 200

struct shared_run {
	struct snapshot *a, *b;
	char (*want)[64];
	int wrong;
};

static void *shared_picker(void *arg)
{
	struct shared_run *r = arg;
	char key[32];

	for (uint32_t round = 0; round < 10; round++) {
		for (uint32_t k = 0; k < NSHARED; k++) {
			key_name(key, sizeof(key), k);
			if (strcmp(pick_uri(round % 2 ? r->a : r->b, key), r->want[k]) != 0)
				__atomic_add_fetch(&r->wrong, 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static void test_threads(void)
{
	static char want[NSHARED][64];
	struct shared_run r = {.a = make_range(0, 20, 1), .b = make_range(0, 20, 4), .want = want};
	pthread_t t[NTHREADS];
	struct session_stats st;
	char key[32];

	session_clear();
	for (uint32_t k = 0; k < NSHARED; k++) {
		key_name(key, sizeof(key), k);
		snprintf(want[k], sizeof(want[k]), "%s", pick_uri(r.a, key));
	}
	session_clear();
	for (int i = 0; i < NTHREADS; i++)
		CHECK_INT(pthread_create(&t[i], NULL, shared_picker, &r), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(r.wrong, 0);
	session_get_stats(&st);
	CHECK_INT(st.active, NSHARED);
	CHECK_INT(st.moved_total, 0);
	session_clear();
	snap_unref(r.a);
	snap_unref(r.b);
}

int main(void)
{
	test_sticks();
	test_spread();
	test_join();
	test_leave();
	test_expiry();
	test_bound();
	test_invalid_keys();
	test_restart();
	test_filters();
	test_rendered_figures();
	test_threads();
	return test_exit_code();
}
