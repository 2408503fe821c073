/* pick: filters over a snapshot's live proxies, and picks from them; see
 * pick.h.
 *
 * A filter is matched without touching the proxies' strings: protocol and
 * anonymity are bits of each record, country and network fields of it,
 * and a source is a view of the snapshot (indexes into live[] in
 * ascending order), so membership is a binary search. What a filter
 * matches is walked over the smallest view it implies, in live[] order,
 * so "fastest first" holds for every list.
 */
#include "pick.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Turns of pick_next: one per fixed view, one per source view up to
 * PICK_TURN_SOURCES, then one for the top level, one shared by every
 * other filter, and one per country view (each pair of letters, then
 * unknown). Atomic: any thread picks. */
#define PICK_TURN_SOURCES 64
#define PICK_TURN_ALL (SNAP_VIEW_SOURCES + PICK_TURN_SOURCES)
#define PICK_TURN_OTHER (PICK_TURN_ALL + 1)
#define PICK_TURN_COUNTRY (PICK_TURN_OTHER + 1)
#define PICK_TURN_COUNTRIES (26 * 26 + 1)
static atomic_uint_fast64_t pick_turns[PICK_TURN_COUNTRY + PICK_TURN_COUNTRIES];

/* A filter resolved against one snapshot: its source names as views. */
struct resolved {
	const struct pick_filter *f;
	bool none;		/* matches nothing in this snapshot */
	uint32_t nsrc;		/* source views found (names s has) */
	uint32_t src[PICK_SOURCES_MAX];
	const uint32_t *base;	/* the view walked, or NULL: all of live[] */
	uint32_t nbase;
};

/* The view of source name in s, or -1. */
static int source_view(const struct snapshot *s, const char *name)
{
	for (uint32_t i = 0; i < s->nsources; i++)
		if (strcmp(s->sources[i].name, name) == 0)
			return (int)(SNAP_VIEW_SOURCES + i);
	return -1;
}

static bool one_bit(uint32_t x)
{
	return x && !(x & (x - 1));
}

static unsigned bit_index(uint32_t x)
{
	return (unsigned)__builtin_ctz(x);
}

/* The snapshot view of anonymity grade g (enum snap_anon), or -1. */
static int anon_view(unsigned g)
{
	switch (g) {
	case SNAP_ANON_ELITE:
		return SNAP_VIEW_ELITE;
	case SNAP_ANON_ANONYMOUS:
		return SNAP_VIEW_ANONYMOUS;
	case SNAP_ANON_TRANSPARENT:
		return SNAP_VIEW_TRANSPARENT;
	default:
		return -1;
	}
}

/* Makes list[0..n) the walked view when it is smaller than the one so far. */
static void consider_list(struct resolved *r, const uint32_t *list, uint32_t n)
{
	if (!r->base || n < r->nbase) {
		r->base = list;
		r->nbase = n;
	}
}

static void consider_base(struct resolved *r, const struct snapshot *s, int v)
{
	if (v < 0 || (uint32_t)v >= s->nviews)
		return;
	consider_list(r, s->by_folder[v], s->nby_folder[v]);
}

/* The view of country code (as a filter keeps it). */
static int country_view(const char *code)
{
	return code[0] ? SNAP_VIEW_COUNTRY + ((unsigned char)code[0] << 8 | (unsigned char)code[1])
		       : SNAP_VIEW_COUNTRY;
}

/* A filter allowing one country walks that country's list; one none of
 * whose countries has a live proxy matches nothing. */
static void resolve_countries(struct resolved *r, const struct snapshot *s,
			      const struct pick_filter *f)
{
	const struct snap_country *c, *one = NULL;
	uint32_t present = 0;

	if (!f->ncountries || f->countries_out)
		return;
	for (uint32_t i = 0; i < f->ncountries && i < PICK_COUNTRIES_MAX; i++) {
		c = snap_view_country(s, country_view(f->countries[i]));
		if (c) {
			present++;
			one = c;
		}
	}
	if (!present)
		r->none = true;
	else if (present == 1)
		consider_list(r, one->idx, one->n);
}

static void resolve(struct resolved *r, const struct snapshot *s, const struct pick_filter *f)
{
	memset(r, 0, sizeof(*r));
	r->f = f;
	r->none = f->none;
	for (uint32_t i = 0; i < f->nsources && i < PICK_SOURCES_MAX; i++) {
		int v = source_view(s, f->sources[i]);

		if (v >= 0)
			r->src[r->nsrc++] = (uint32_t)v;
	}
	if (f->nsources && !r->nsrc)
		r->none = true;
	if (r->none)
		return;
	if (one_bit(f->protos))
		consider_base(r, s, (int)bit_index(f->protos));
	if (one_bit(f->anons))
		consider_base(r, s, anon_view(bit_index(f->anons)));
	if (r->nsrc == 1)
		consider_base(r, s, (int)r->src[0]);
	resolve_countries(r, s, f);
}

/* Is live index i in view v (ascending indexes)? */
static bool in_view(const struct snapshot *s, uint32_t v, uint32_t i)
{
	const uint32_t *a = s->by_folder[v];
	uint32_t lo = 0, hi = s->nby_folder[v];

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (a[mid] == i)
			return true;
		if (a[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static bool country_listed(const struct pick_filter *f, const char *code)
{
	for (uint32_t k = 0; k < f->ncountries && k < PICK_COUNTRIES_MAX; k++)
		if (strcmp(f->countries[k], code) == 0)
			return true;
	return false;
}

static bool asn_listed(const struct pick_filter *f, uint32_t asn)
{
	for (uint32_t k = 0; k < f->nasns && k < PICK_ASNS_MAX; k++)
		if (f->asns[k] == asn)
			return true;
	return false;
}

static bool match_resolved(const struct snapshot *s, const struct resolved *r, uint32_t i)
{
	const struct pick_filter *f = r->f;
	const struct snap_proxy *p = &s->live[i];
	bool in_src = false;

	if (r->none || i >= s->nlive)
		return false;
	if (f->protos && !(p->folders & f->protos))
		return false;
	if (f->anons && !((1u << p->anonymity) & f->anons))
		return false;
	if (f->max_latency_ms && p->latency_ms > f->max_latency_ms)
		return false;
	if (f->ncountries && country_listed(f, p->country) == f->countries_out)
		return false;
	if (f->nasns && !asn_listed(f, p->asn))
		return false;
	if (!r->nsrc)
		return true;
	for (uint32_t k = 0; k < r->nsrc && !in_src; k++)
		in_src = in_view(s, r->src[k], i);
	return in_src;
}

/* The number of proxies walked, and the live index of the k-th. */
static uint32_t walk_len(const struct snapshot *s, const struct resolved *r)
{
	if (r->none)
		return 0;
	return r->base ? r->nbase : s->nlive;
}

static uint32_t walk_at(const struct resolved *r, uint32_t k)
{
	return r->base ? r->base[k] : k;
}

void pick_filter_of_view(struct pick_filter *f, const struct snapshot *s, int view)
{
	memset(f, 0, sizeof(*f));
	if (view < 0)
		return;
	if (view >= SNAP_VIEW_COUNTRY) {
		int rest = view - SNAP_VIEW_COUNTRY;

		f->ncountries = 1;
		if (rest) {
			f->countries[0][0] = (char)(rest >> 8);
			f->countries[0][1] = (char)(rest & 0xff);
		}
	} else if (view < PROXY_PROTO_COUNT)
		f->protos = 1u << view;
	else if (view == SNAP_VIEW_ELITE)
		f->anons = 1u << SNAP_ANON_ELITE;
	else if (view == SNAP_VIEW_ANONYMOUS)
		f->anons = 1u << SNAP_ANON_ANONYMOUS;
	else if (view == SNAP_VIEW_TRANSPARENT)
		f->anons = 1u << SNAP_ANON_TRANSPARENT;
	else if ((uint32_t)view < s->nviews) {
		f->nsources = 1;
		f->sources[0] = s->sources[view - SNAP_VIEW_SOURCES].name;
	} else {
		f->none = true;
	}
}

/* Both masks narrow: an unset one allows everything. */
static uint32_t and_mask(uint32_t a, uint32_t b, bool *none)
{
	uint32_t m;

	if (!a || !b)
		return a | b;
	m = a & b;
	if (!m)
		*none = true;
	return m;
}

/* The countries of a that b lists (keep) or does not (!keep), into out. */
static uint32_t countries_where(const struct pick_filter *a, const struct pick_filter *b, bool keep,
				char (*out)[3])
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < a->ncountries; i++)
		if (country_listed(b, a->countries[i]) == keep)
			memcpy(out[n++], a->countries[i], 3);
	return n;
}

/* r's countries (r starts as f): what both f and g allow. */
static int and_countries(struct pick_filter *r, const struct pick_filter *f,
			 const struct pick_filter *g)
{
	const struct pick_filter *in = f->countries_out ? g : f, *out = f->countries_out ? f : g;

	if (!g->ncountries)
		return 0;
	if (!f->ncountries) {
		r->ncountries = g->ncountries;
		r->countries_out = g->countries_out;
		memcpy(r->countries, g->countries, sizeof(r->countries));
		return 0;
	}
	if (f->countries_out && g->countries_out) {
		/* left out by either */
		char extra[PICK_COUNTRIES_MAX][3];
		uint32_t n = countries_where(g, f, false, extra);

		if (f->ncountries + n > PICK_COUNTRIES_MAX)
			return -E2BIG;
		memcpy(r->countries + f->ncountries, extra, n * sizeof(extra[0]));
		r->ncountries = f->ncountries + n;
		return 0;
	}
	/* allowed by one, not left out (or allowed too) by the other */
	r->countries_out = false;
	r->ncountries = countries_where(in, out, !out->countries_out, r->countries);
	if (!r->ncountries) {
		r->none = true;
		r->ncountries = in->ncountries; /* keep it narrowing */
		memcpy(r->countries, in->countries, sizeof(r->countries));
	}
	return 0;
}

/* r's networks (r starts as f): those both allow. */
static void and_asns(struct pick_filter *r, const struct pick_filter *f,
		     const struct pick_filter *g)
{
	if (!g->nasns)
		return;
	if (!f->nasns) {
		r->nasns = g->nasns;
		memcpy(r->asns, g->asns, sizeof(r->asns));
		return;
	}
	r->nasns = 0;
	for (uint32_t i = 0; i < f->nasns; i++)
		if (asn_listed(g, f->asns[i]))
			r->asns[r->nasns++] = f->asns[i];
	if (!r->nasns) {
		r->none = true;
		r->nasns = f->nasns;
		memcpy(r->asns, f->asns, sizeof(r->asns));
	}
}

int pick_filter_and(struct pick_filter *f, const struct pick_filter *g)
{
	struct pick_filter r = *f;

	if (f->ncountries > PICK_COUNTRIES_MAX || g->ncountries > PICK_COUNTRIES_MAX ||
	    f->nasns > PICK_ASNS_MAX || g->nasns > PICK_ASNS_MAX)
		return -E2BIG;
	r.none = f->none || g->none;
	if (and_countries(&r, f, g) < 0)
		return -E2BIG;
	and_asns(&r, f, g);
	r.protos = and_mask(f->protos, g->protos, &r.none);
	r.anons = and_mask(f->anons, g->anons, &r.none);
	if (g->max_latency_ms && (!r.max_latency_ms || g->max_latency_ms < r.max_latency_ms))
		r.max_latency_ms = g->max_latency_ms;
	if (!f->nsources) {
		r.nsources = g->nsources;
		memcpy(r.sources, g->sources, sizeof(r.sources));
	} else if (g->nsources) {
		/* names both allow */
		r.nsources = 0;
		for (uint32_t i = 0; i < f->nsources; i++)
			for (uint32_t j = 0; j < g->nsources; j++)
				if (strcmp(f->sources[i], g->sources[j]) == 0) {
					r.sources[r.nsources++] = f->sources[i];
					break;
				}
		if (!r.nsources) {
			r.none = true;
			r.nsources = f->nsources; /* keep it narrowing */
			memcpy(r.sources, f->sources, sizeof(r.sources));
		}
	}
	*f = r;
	return 0;
}

/* An ASCII letter in upper case, or 0 for any other byte. */
static char ascii_upper(char c)
{
	if (c >= 'a' && c <= 'z')
		return (char)(c - 'a' + 'A');
	return c >= 'A' && c <= 'Z' ? c : 0;
}

int pick_filter_add_country(struct pick_filter *f, const char *code, size_t n)
{
	char c[3] = {0};

	if (n == 7 && strncasecmp(code, "unknown", 7) == 0) {
		/* c stays "" */
	} else if (n == 2 && ascii_upper(code[0]) && ascii_upper(code[1])) {
		c[0] = ascii_upper(code[0]);
		c[1] = ascii_upper(code[1]);
	} else {
		return -EINVAL;
	}
	if (country_listed(f, c))
		return 0;
	if (f->ncountries >= PICK_COUNTRIES_MAX)
		return -E2BIG;
	memcpy(f->countries[f->ncountries++], c, 3);
	return 0;
}

uint32_t pick_proto_bit(const char *name, size_t n)
{
	for (int p = 0; p < PROXY_PROTO_COUNT; p++) {
		const char *w = proxy_proto_name((enum proxy_proto)p);

		if (strlen(w) == n && memcmp(w, name, n) == 0)
			return UINT32_C(1) << p;
	}
	return 0;
}

uint32_t pick_anon_bit(const char *name, size_t n)
{
	static const int grades[] = {SNAP_ANON_ELITE, SNAP_ANON_ANONYMOUS, SNAP_ANON_TRANSPARENT};

	for (size_t i = 0; i < sizeof(grades) / sizeof(grades[0]); i++) {
		const char *w = snap_anon_name(grades[i]);

		if (strlen(w) == n && memcmp(w, name, n) == 0)
			return UINT32_C(1) << grades[i];
	}
	return 0;
}

bool pick_source_name_valid(const char *name, size_t n)
{
	if (n == 0 || n > PICK_SOURCE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int pick_filter_add_asn(struct pick_filter *f, uint32_t asn)
{
	if (!asn)
		return -EINVAL;
	if (asn_listed(f, asn))
		return 0;
	if (f->nasns >= PICK_ASNS_MAX)
		return -E2BIG;
	f->asns[f->nasns++] = asn;
	return 0;
}

bool pick_filter_is_view(const struct pick_filter *f, const struct snapshot *s, int *view)
{
	int kinds = (f->protos != 0) + (f->anons != 0) + (f->nsources != 0) + (f->ncountries != 0);
	int v = -1;

	if (f->none || f->max_latency_ms || f->nasns || kinds > 1)
		return false;
	if (f->ncountries) {
		if (f->countries_out || f->ncountries != 1)
			return false;
		v = country_view(f->countries[0]);
	} else if (f->protos) {
		if (!one_bit(f->protos))
			return false;
		v = (int)bit_index(f->protos);
	} else if (f->anons) {
		if (!one_bit(f->anons) || (v = anon_view(bit_index(f->anons))) < 0)
			return false;
	} else if (f->nsources) {
		for (uint32_t i = 1; i < f->nsources; i++)
			if (strcmp(f->sources[i], f->sources[0]) != 0)
				return false;
		if ((v = source_view(s, f->sources[0])) < 0)
			return false;
	}
	*view = v;
	return true;
}

bool pick_match(const struct snapshot *s, const struct pick_filter *f, uint32_t i)
{
	struct resolved r;

	resolve(&r, s, f);
	return match_resolved(s, &r, i);
}

const char *pick_unknown_source(const struct pick_filter *f, const struct snapshot *s)
{
	for (uint32_t i = 0; i < f->nsources; i++)
		if (source_view(s, f->sources[i]) < 0)
			return f->sources[i];
	return NULL;
}

int pick_list(const struct snapshot *s, const struct pick_filter *f, uint32_t max, uint32_t **out,
	      uint32_t *n)
{
	struct resolved r;
	uint32_t total, cap, got = 0, *idx;

	*out = NULL;
	*n = 0;
	resolve(&r, s, f);
	total = walk_len(s, &r);
	if (!total)
		return 0;
	cap = max && max < total ? max : total;
	idx = malloc((size_t)cap * sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	for (uint32_t k = 0; k < total && got < cap; k++) {
		uint32_t i = walk_at(&r, k);

		if (match_resolved(s, &r, i))
			idx[got++] = i;
	}
	if (!got)
		free(idx);
	else
		*out = idx;
	*n = got;
	return 0;
}

/* The view's k-th live index (view -1: live[] itself). */
static uint32_t view_at(const struct snapshot *s, int view, uint32_t k)
{
	if (view >= SNAP_VIEW_COUNTRY)
		return snap_view_country(s, view)->idx[k];
	return view < 0 ? k : s->by_folder[view][k];
}

static uint32_t view_len(const struct snapshot *s, int view)
{
	const struct snap_country *c;

	if (view >= SNAP_VIEW_COUNTRY) {
		c = snap_view_country(s, view);
		return c ? c->n : 0;
	}
	return view < 0 ? s->nlive : s->nby_folder[view];
}

/* The turn of a country view (the shared one for a code that is no
 * pair of upper-case letters, which a caller's own filter may hold). */
static int country_turn(int view)
{
	int rest = view - SNAP_VIEW_COUNTRY, hi = (rest >> 8) - 'A', lo = (rest & 0xff) - 'A';

	if (!rest)
		return PICK_TURN_COUNTRY + PICK_TURN_COUNTRIES - 1;
	if (hi < 0 || hi >= 26 || lo < 0 || lo >= 26)
		return PICK_TURN_OTHER;
	return PICK_TURN_COUNTRY + hi * 26 + lo;
}

/* count distinct numbers below n, at random, into out (count <= n). Few
 * out of many: drawn and redrawn on a repeat; else a partial shuffle of
 * all of them. 0 or -ENOMEM. */
static int sample(uint32_t n, uint32_t count, uint32_t *out)
{
	uint32_t *all;

	if (count <= 64 && (uint64_t)count * 4 <= n) {
		for (uint32_t k = 0; k < count; k++) {
			bool again;

			do {
				out[k] = arc4random_uniform(n);
				again = false;
				for (uint32_t j = 0; j < k && !again; j++)
					again = out[j] == out[k];
			} while (again);
		}
		return 0;
	}
	all = malloc((size_t)n * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (uint32_t k = 0; k < n; k++)
		all[k] = k;
	for (uint32_t k = 0; k < count; k++) {
		uint32_t j = k + arc4random_uniform(n - k), t = all[k];

		all[k] = all[j];
		all[j] = t;
		out[k] = all[k];
	}
	free(all);
	return 0;
}

uint32_t pick_random(const struct snapshot *s, const struct pick_filter *f, uint32_t count,
		     uint32_t *out)
{
	uint32_t *list = NULL, n = 0;
	int view;

	if (!count)
		return 0;
	if (pick_filter_is_view(f, s, &view)) {
		n = view_len(s, view);
		if (count > n)
			count = n;
		if (!count || sample(n, count, out) < 0)
			return 0;
		for (uint32_t k = 0; k < count; k++)
			out[k] = view_at(s, view, out[k]);
		return count;
	}
	if (pick_list(s, f, 0, &list, &n) < 0 || !n)
		return 0;
	if (count > n)
		count = n;
	if (sample(n, count, out) < 0) {
		free(list);
		return 0;
	}
	for (uint32_t k = 0; k < count; k++)
		out[k] = list[out[k]];
	free(list);
	return count;
}

uint32_t pick_next(const struct snapshot *s, const struct pick_filter *f, uint32_t count,
		   uint32_t *out)
{
	uint32_t *list = NULL, n;
	uint64_t first;
	int view, turn;

	if (!count)
		return 0;
	if (pick_filter_is_view(f, s, &view)) {
		n = view_len(s, view);
		if (view < 0)
			turn = PICK_TURN_ALL;
		else if (view >= SNAP_VIEW_COUNTRY)
			turn = country_turn(view);
		else if (view < SNAP_VIEW_SOURCES + PICK_TURN_SOURCES)
			turn = view;
		else
			turn = PICK_TURN_OTHER;
	} else {
		if (pick_list(s, f, 0, &list, &n) < 0)
			return 0;
		turn = PICK_TURN_OTHER;
	}
	if (!n)
		return 0;
	if (count > n)
		count = n;
	first = atomic_fetch_add(&pick_turns[turn], count);
	for (uint32_t k = 0; k < count; k++) {
		uint32_t at = (uint32_t)((first + k) % n);

		out[k] = list ? list[at] : view_at(s, view, at);
	}
	free(list);
	return count;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_code(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* ".c" (allowed) or ".x" (left out) and the sorted codes ("-" for
 * unknown), then ".n" and the sorted networks; nothing for none. */
static int key_geo(const struct pick_filter *f, char *buf, size_t size)
{
	char codes[PICK_COUNTRIES_MAX][3];
	uint32_t asns[PICK_ASNS_MAX];
	uint32_t nc = f->ncountries < PICK_COUNTRIES_MAX ? f->ncountries : PICK_COUNTRIES_MAX;
	uint32_t na = f->nasns < PICK_ASNS_MAX ? f->nasns : PICK_ASNS_MAX;
	int len = 0;

	memcpy(codes, f->countries, sizeof(codes));
	qsort(codes, nc, sizeof(codes[0]), cmp_code);
	memcpy(asns, f->asns, sizeof(asns));
	qsort(asns, na, sizeof(asns[0]), cmp_u32);
	for (uint32_t i = 0; i < nc && len >= 0 && (size_t)len < size; i++)
		len += snprintf(buf + len, size - (size_t)len, "%s%s",
				i ? "+" : (f->countries_out ? ".x" : ".c"), codes[i][0] ? codes[i] : "-");
	for (uint32_t i = 0; i < na && len >= 0 && (size_t)len < size; i++)
		len += snprintf(buf + len, size - (size_t)len, "%s%u", i ? "+" : ".n",
				(unsigned)asns[i]);
	return len;
}

void pick_filter_key(const struct pick_filter *f, char *buf, size_t size)
{
	const char *names[PICK_SOURCES_MAX];
	uint32_t n = f->nsources < PICK_SOURCES_MAX ? f->nsources : PICK_SOURCES_MAX;
	int len;

	if (!size)
		return;
	if (f->none) {
		snprintf(buf, size, "none");
		return;
	}
	len = snprintf(buf, size, "p%x.a%x.l%u", (unsigned)f->protos, (unsigned)f->anons,
		       (unsigned)f->max_latency_ms);
	if (len >= 0 && (size_t)len < size)
		len += key_geo(f, buf + len, size - (size_t)len);
	memcpy(names, f->sources, n * sizeof(*names));
	qsort(names, n, sizeof(*names), cmp_str);
	for (uint32_t i = 0; i < n && len >= 0 && (size_t)len < size; i++) {
		if (i && strcmp(names[i], names[i - 1]) == 0)
			continue;
		len += snprintf(buf + len, size - (size_t)len, "%s%s", i ? "+" : ".s", names[i]);
	}
}
