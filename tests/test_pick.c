/* Unit tests for pick: a snapshot of 60 proxies of every protocol, grade,
 * latency and source; every filter's list compared with a brute-force walk
 * of the records, random and next picks checked for distinctness, cover
 * and membership, and the filter key for its canonical form. */
#include "pick.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define NPROXIES 60

static char uris[NPROXIES][48];
static char hosts[NPROXIES][24];
static const char *const source_names[] = { "a", "b", "c" };

static const char *const country_of[] = { "DE", "FR", "", "US", "DE", "FR", "" };

/* Proxy i: protocol i % 4, grade by i % 3, sources by i % 5, country by
 * i % 7 (DE, FR, US, unknown), network 100 + i % 3, latency falling with
 * i so live[] order is not insertion order. */
static struct snapshot *make(void)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st = { .health = "ok", .store_error = "" };

	CHECK(b != NULL);
	for (int i = 0; i < NPROXIES; i++) {
		static const char *const src_of[] = { "a", "b", "a,b", "c", "" };
		struct snap_proxy p = { 0 };
		int proto = i % 4;

		snprintf(hosts[i], sizeof(hosts[i]), "10.0.%d.%d", i / 200, i % 200 + 1);
		snprintf(uris[i], sizeof(uris[i]), "%s://%.23s:%d",
			 proto == PROXY_SOCKS4 ? "socks4" : proto == PROXY_SOCKS5 ? "socks5" : "http",
			 hosts[i], 1000 + i);
		p.uri = uris[i];
		p.host = hosts[i];
		p.port = (uint16_t)(1000 + i);
		p.proto = (uint8_t)(proto == PROXY_HTTPS ? PROXY_HTTP : proto);
		p.folders = (uint8_t)(1u << proto);
		if (proto == PROXY_HTTPS)
			p.folders |= 1u << PROXY_HTTP;
		p.anonymity = (uint8_t)(SNAP_ANON_TRANSPARENT + i % 3);
		p.latency_ms = (uint32_t)(1000 - i * 10);
		p.exit_ip = "";
		p.sources = src_of[i % 5];
		snprintf(p.country, sizeof(p.country), "%s", country_of[i % 7]);
		p.asn = (uint32_t)(100 + i % 3);
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	for (size_t i = 0; i < 3; i++) {
		struct snap_source s = { .name = source_names[i], .url = "x", .error = "" };

		CHECK_INT(snap_builder_add_source(b, &s), 0);
	}
	st.alive = NPROXIES;
	snap_builder_set_stats(b, &st);
	return snap_builder_finish(b);
}

static bool has_source(const struct snap_proxy *p, const char *name)
{
	size_t n = strlen(name);

	for (const char *l = p->sources; *l;) {
		size_t len = strcspn(l, ",");

		if (len == n && strncmp(l, name, n) == 0)
			return true;
		l += len + (l[len] == ',');
	}
	return false;
}

/* What f should match, from the records alone. */
static bool brute(const struct snap_proxy *p, const struct pick_filter *f)
{
	bool src = !f->nsources;

	if (f->none)
		return false;
	if (f->protos && !(p->folders & f->protos))
		return false;
	if (f->anons && !((1u << p->anonymity) & f->anons))
		return false;
	if (f->max_latency_ms && p->latency_ms > f->max_latency_ms)
		return false;
	if (f->ncountries) {
		bool listed = false;

		for (uint32_t i = 0; i < f->ncountries; i++)
			listed = listed || strcmp(f->countries[i], p->country) == 0;
		if (listed == f->countries_out)
			return false;
	}
	if (f->nasns) {
		bool listed = false;

		for (uint32_t i = 0; i < f->nasns; i++)
			listed = listed || f->asns[i] == p->asn;
		if (!listed)
			return false;
	}
	for (uint32_t i = 0; i < f->nsources; i++)
		src = src || has_source(p, f->sources[i]);
	return src;
}

static void check_list(const struct snapshot *s, const struct pick_filter *f)
{
	uint32_t *idx, n, want = 0, k = 0;

	CHECK_INT(pick_list(s, f, 0, &idx, &n), 0);
	for (uint32_t i = 0; i < s->nlive; i++) {
		if (!brute(&s->live[i], f))
			continue;
		want++;
		CHECK(k < n && idx[k] == i); /* same proxies, live[] order */
		k++;
		CHECK(pick_match(s, f, i));
	}
	CHECK_INT(n, want);
	free(idx);
}

static void test_lists(const struct snapshot *s)
{
	struct pick_filter f = { 0 };
	uint32_t *idx, n;

	check_list(s, &f);
	CHECK_INT(s->nlive, NPROXIES);
	for (uint32_t p = 1; p < 16; p++) {
		f = (struct pick_filter){ .protos = p };
		check_list(s, &f);
		for (uint32_t a = 0; a < 16; a += 2) {
			f.anons = a;
			check_list(s, &f);
			f.max_latency_ms = 600;
			check_list(s, &f);
			f.max_latency_ms = 0;
		}
	}
	f = (struct pick_filter){ .nsources = 1, .sources = { "a" } };
	check_list(s, &f);
	f = (struct pick_filter){ .nsources = 2, .sources = { "b", "c" }, .protos = 1u << PROXY_SOCKS5 };
	check_list(s, &f);
	f = (struct pick_filter){ .nsources = 1, .sources = { "nosuch" } };
	CHECK_INT(pick_list(s, &f, 0, &idx, &n), 0);
	CHECK_INT(n, 0);
	CHECK(idx == NULL);
	CHECK_STR(pick_unknown_source(&f, s), "nosuch");
	f.sources[0] = "b";
	CHECK(pick_unknown_source(&f, s) == NULL);
	/* max: the first ones, fastest first */
	f = (struct pick_filter){ 0 };
	CHECK_INT(pick_list(s, &f, 5, &idx, &n), 0);
	CHECK_INT(n, 5);
	for (uint32_t i = 0; i < n; i++)
		CHECK_INT(idx[i], i);
	free(idx);
}

static void test_views(const struct snapshot *s)
{
	struct pick_filter f, g;
	int view = 99;

	pick_filter_of_view(&f, s, -1);
	CHECK(pick_filter_is_view(&f, s, &view));
	CHECK_INT(view, -1);
	for (int v = 0; v < (int)s->nviews; v++) {
		uint32_t *idx, n;

		pick_filter_of_view(&f, s, v);
		CHECK(pick_filter_is_view(&f, s, &view));
		CHECK_INT(view, v);
		CHECK_INT(pick_list(s, &f, 0, &idx, &n), 0);
		CHECK_INT(n, s->nby_folder[v]);
		for (uint32_t i = 0; i < n; i++)
			CHECK_INT(idx[i], s->by_folder[v][i]);
		free(idx);
	}
	/* a folder and a query that exclude each other */
	pick_filter_of_view(&f, s, PROXY_SOCKS5);
	g = (struct pick_filter){ .protos = 1u << PROXY_HTTP };
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK(f.none);
	check_list(s, &f);
	/* a folder narrowed by a grade is no view */
	pick_filter_of_view(&f, s, PROXY_SOCKS5);
	g = (struct pick_filter){ .anons = 1u << SNAP_ANON_ELITE };
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK(!f.none);
	CHECK(!pick_filter_is_view(&f, s, &view));
	check_list(s, &f);
	/* sources: what both allow */
	f = (struct pick_filter){ .nsources = 2, .sources = { "a", "b" } };
	g = (struct pick_filter){ .nsources = 2, .sources = { "c", "b" } };
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK_INT(f.nsources, 1);
	CHECK_STR(f.sources[0], "b");
	CHECK(pick_filter_is_view(&f, s, &view));
	CHECK_INT(view, SNAP_VIEW_SOURCES + 1);
	g = (struct pick_filter){ .nsources = 1, .sources = { "c" } };
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK(f.none);
}

static void test_random(const struct snapshot *s)
{
	struct pick_filter f = { .protos = 1u << PROXY_SOCKS4 };
	uint32_t out[NPROXIES], seen[NPROXIES] = { 0 }, n, want = 0;

	for (uint32_t i = 0; i < s->nlive; i++)
		want += brute(&s->live[i], &f);
	for (uint32_t count = 1; count <= want + 3; count++) {
		n = pick_random(s, &f, count, out);
		CHECK_INT(n, count < want ? count : want);
		for (uint32_t k = 0; k < n; k++) {
			CHECK(brute(&s->live[out[k]], &f));
			for (uint32_t j = 0; j < k; j++)
				CHECK(out[j] != out[k]);
			seen[out[k]]++;
		}
	}
	/* every match turns up; the same with a filter that is no view */
	for (uint32_t i = 0; i < s->nlive; i++)
		CHECK(!brute(&s->live[i], &f) || seen[i] > 0);
	f.max_latency_ms = 700;
	for (int r = 0; r < 50; r++) {
		n = pick_random(s, &f, 2, out);
		CHECK_INT(n, 2);
		CHECK(brute(&s->live[out[0]], &f) && brute(&s->live[out[1]], &f));
		CHECK(out[0] != out[1]);
	}
	f.none = true;
	CHECK_INT(pick_random(s, &f, 3, out), 0);
}

static void test_next(const struct snapshot *s)
{
	struct pick_filter f = { .anons = 1u << SNAP_ANON_ELITE };
	uint32_t out[4], count[NPROXIES] = { 0 }, want = 0;

	for (uint32_t i = 0; i < s->nlive; i++)
		want += brute(&s->live[i], &f);
	/* one turn through: each match once */
	for (uint32_t k = 0; k < want; k++) {
		CHECK_INT(pick_next(s, &f, 1, out), 1);
		count[out[0]]++;
	}
	for (uint32_t i = 0; i < s->nlive; i++)
		CHECK_INT(count[i], brute(&s->live[i], &f) ? 1 : 0);
	/* count=N: N distinct in a row */
	CHECK_INT(pick_next(s, &f, 4, out), 4);
	for (int k = 0; k < 4; k++)
		for (int j = 0; j < k; j++)
			CHECK(out[j] != out[k]);
	f.max_latency_ms = 500; /* no view: its own walk */
	CHECK_INT(pick_next(s, &f, 1, out), 1);
	CHECK(brute(&s->live[out[0]], &f));
}

/* A filter of countries from a list like "DE,,CN" ("" = unknown). */
static struct pick_filter countries(const char *list, bool out)
{
	struct pick_filter f = { .countries_out = out };
	char buf[64];

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *c = buf, *e;; c = e + 1) {
		e = strchr(c, ',');
		if (e)
			*e = '\0';
		if (*c)
			CHECK_INT(pick_filter_add_country(&f, c, strlen(c)), 0);
		else
			CHECK_INT(pick_filter_add_country(&f, "unknown", 7), 0);
		if (!e)
			break;
	}
	return f;
}

/* Country and network filters, alone and with the others, and what two
 * of them together allow, against the records. */
static void test_geo(const struct snapshot *s)
{
	static const char *const lists[] = { "DE", "de", "FR,US", "", "CN", "CN,DE", ",DE" };
	struct pick_filter f, g, h;
	int view;

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		for (int out = 0; out < 2; out++) {
			f = countries(lists[i], out);
			check_list(s, &f);
			f.protos = 1u << PROXY_SOCKS5;
			check_list(s, &f);
			f.protos = 0;
			f.nsources = 1;
			f.sources[0] = "a";
			check_list(s, &f);
			f.nsources = 0;
			CHECK_INT(pick_filter_add_asn(&f, 101), 0);
			check_list(s, &f);
			/* and: every pair of lists, both ways round */
			for (size_t j = 0; j < sizeof(lists) / sizeof(lists[0]); j++) {
				for (int out2 = 0; out2 < 2; out2++) {
					g = countries(lists[i], out);
					h = countries(lists[j], out2);
					CHECK_INT(pick_filter_and(&g, &h), 0);
					for (uint32_t k = 0; k < s->nlive; k++) {
						f = countries(lists[i], out);
						bool want = brute(&s->live[k], &f);

						f = countries(lists[j], out2);
						want = want && brute(&s->live[k], &f);
						CHECK(pick_match(s, &g, k) == want);
					}
					check_list(s, &g);
				}
			}
		}
	}
	f = (struct pick_filter){ 0 };
	CHECK_INT(pick_filter_add_asn(&f, 100), 0);
	CHECK_INT(pick_filter_add_asn(&f, 102), 0);
	CHECK_INT(pick_filter_add_asn(&f, 102), 0);
	CHECK_INT(f.nasns, 2);
	check_list(s, &f);
	g = (struct pick_filter){ 0 };
	CHECK_INT(pick_filter_add_asn(&g, 101), 0);
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK(f.none);
	CHECK_INT(pick_filter_add_asn(&g, 0), -EINVAL);
	/* bad codes, too many */
	CHECK_INT(pick_filter_add_country(&f, "D", 1), -EINVAL);
	CHECK_INT(pick_filter_add_country(&f, "DEU", 3), -EINVAL);
	CHECK_INT(pick_filter_add_country(&f, "D1", 2), -EINVAL);
	CHECK_INT(pick_filter_add_country(&f, "unknowN", 7), 0);
	f = (struct pick_filter){ 0 };
	for (int i = 0; i < PICK_COUNTRIES_MAX; i++) {
		char c[2] = { 'A', (char)('A' + i) };

		CHECK_INT(pick_filter_add_country(&f, c, 2), 0);
	}
	CHECK_INT(pick_filter_add_country(&f, "ZZ", 2), -E2BIG);
	f.countries_out = true;
	g = f;
	g.countries[0][1] = 'Z';
	CHECK_INT(pick_filter_and(&f, &g), -E2BIG);
	CHECK_INT(f.ncountries, PICK_COUNTRIES_MAX);

	/* a country's folder is a view, with the country's own list */
	for (uint32_t c = 0; c < s->ncountries; c++) {
		uint32_t *idx, n;
		int v = snap_country_view(s->countries[c].code);

		pick_filter_of_view(&f, s, v);
		CHECK_INT(f.ncountries, 1);
		CHECK_STR(f.countries[0], s->countries[c].code);
		CHECK(pick_filter_is_view(&f, s, &view));
		CHECK_INT(view, v);
		CHECK_INT(pick_list(s, &f, 0, &idx, &n), 0);
		CHECK_INT(n, s->countries[c].n);
		for (uint32_t i = 0; i < n; i++)
			CHECK_INT(idx[i], s->countries[c].idx[i]);
		free(idx);
		check_list(s, &f);
	}
	CHECK_INT(s->ncountries, 4);
	/* absent from the pool: the view is empty */
	pick_filter_of_view(&f, s, snap_country_view("CN"));
	CHECK(pick_filter_is_view(&f, s, &view));
	{
		uint32_t out[4];

		CHECK_INT(pick_random(s, &f, 1, out), 0);
		CHECK_INT(pick_next(s, &f, 1, out), 0);
	}
	/* a code no front makes (a caller's own filter) matches nothing */
	f = (struct pick_filter){ .ncountries = 1, .countries = { "d1" } };
	{
		uint32_t out[2];

		CHECK_INT(pick_next(s, &f, 1, out), 0);
		CHECK_INT(pick_random(s, &f, 1, out), 0);
		check_list(s, &f);
	}
	f = countries("DE", true);
	CHECK(!pick_filter_is_view(&f, s, &view));
	f = countries("DE,FR", false);
	CHECK(!pick_filter_is_view(&f, s, &view));
	/* /country/DE/ + country=!CN: DE's own list, one view */
	pick_filter_of_view(&f, s, snap_country_view("DE"));
	g = countries("CN", true);
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK(pick_filter_is_view(&f, s, &view));
	CHECK_INT(view, snap_country_view("DE"));
	/* /country/DE/ + country=!DE: nothing */
	pick_filter_of_view(&f, s, snap_country_view("DE"));
	g = countries("DE", true);
	CHECK_INT(pick_filter_and(&f, &g), 0);
	CHECK(f.none);
}

/* Random and next picks over a country: members only, next covers it. */
static void test_geo_picks(const struct snapshot *s)
{
	struct pick_filter f;
	uint32_t out[NPROXIES], seen[NPROXIES] = { 0 }, want = 0;

	pick_filter_of_view(&f, s, snap_country_view("FR"));
	for (uint32_t i = 0; i < s->nlive; i++)
		want += brute(&s->live[i], &f);
	CHECK(want > 2);
	for (uint32_t k = 0; k < want; k++) {
		CHECK_INT(pick_next(s, &f, 1, out), 1);
		seen[out[0]]++;
	}
	for (uint32_t i = 0; i < s->nlive; i++)
		CHECK_INT(seen[i], brute(&s->live[i], &f) ? 1 : 0);
	for (int r = 0; r < 20; r++) {
		CHECK_INT(pick_random(s, &f, 2, out), 2);
		CHECK(brute(&s->live[out[0]], &f) && brute(&s->live[out[1]], &f));
	}
	f = countries("FR,", true);
	for (int r = 0; r < 20; r++) {
		CHECK_INT(pick_random(s, &f, 1, out), 1);
		CHECK(brute(&s->live[out[0]], &f));
		CHECK_INT(pick_next(s, &f, 1, out), 1);
		CHECK(brute(&s->live[out[0]], &f));
	}
}

static void test_key(void)
{
	struct pick_filter f = { .protos = 8, .nsources = 2, .sources = { "b", "a" } };
	struct pick_filter g = { .protos = 8, .nsources = 2, .sources = { "a", "b" } };
	char kf[160], kg[160];

	pick_filter_key(&f, kf, sizeof(kf));
	pick_filter_key(&g, kg, sizeof(kg));
	CHECK_STR(kf, kg);
	g.anons = 2;
	pick_filter_key(&g, kg, sizeof(kg));
	CHECK(strcmp(kf, kg) != 0);
	f = (struct pick_filter){ 0 };
	pick_filter_key(&f, kf, sizeof(kf));
	g = (struct pick_filter){ .max_latency_ms = 1 };
	pick_filter_key(&g, kg, sizeof(kg));
	CHECK(strcmp(kf, kg) != 0);

	/* each country, in or out, and each network its own key; order not */
	{
		static const char *const lists[] = { "DE", "FR", "", "DE,FR" };
		char keys[2 * 4 + 2][256];
		int nk = 0;

		for (int out = 0; out < 2; out++)
			for (int i = 0; i < 4; i++) {
				f = countries(lists[i], out);
				pick_filter_key(&f, keys[nk++], sizeof(keys[0]));
			}
		f = (struct pick_filter){ 0 };
		pick_filter_add_asn(&f, 3320);
		pick_filter_key(&f, keys[nk++], sizeof(keys[0]));
		pick_filter_add_asn(&f, 1234);
		pick_filter_key(&f, keys[nk++], sizeof(keys[0]));
		for (int i = 0; i < nk; i++)
			for (int j = 0; j < i; j++)
				CHECK(strcmp(keys[i], keys[j]) != 0);
		f = countries("FR,DE", false);
		pick_filter_key(&f, kf, sizeof(kf));
		CHECK_STR(kf, keys[3]);
		f = (struct pick_filter){ 0 };
		pick_filter_key(&f, kf, sizeof(kf));
		for (int i = 0; i < nk; i++)
			CHECK(strcmp(keys[i], kf) != 0);
	}
}

int main(void)
{
	struct snapshot *s = make();

	CHECK(s != NULL);
	if (!s)
		return 1;
	test_lists(s);
	test_views(s);
	test_random(s);
	test_next(s);
	test_key();
	test_geo(s);
	test_geo_picks(s);
	snap_unref(s);
	return test_exit_code();
}
