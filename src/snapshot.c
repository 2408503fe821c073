/* snapshot: immutable, reference-counted pool pictures; see snapshot.h.
 *
 * A snapshot's strings and arrays live in one arena of chunks, freed
 * together with it. The published pointer is guarded by a mutex held only
 * for the swap and for taking a reference, so a reader can never take a
 * reference on a snapshot that is being freed.
 */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK 65536

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct arena {
	struct arena_chunk *head;
};

/* n bytes aligned to align (a power of two, at most max_align_t's). */
static void *arena_alloc_aligned(struct arena *a, size_t n, size_t align)
{
	struct arena_chunk *c = a->head;
	size_t off = c ? (c->used + align - 1) & ~(align - 1) : 0;

	if (!c || off > c->size || c->size - off < n) {
		size_t size = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;

		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->size = size;
		c->used = 0;
		off = 0;
		/* A dedicated big block goes behind the current chunk so the
		 * current one keeps serving small strings. */
		if (size != ARENA_CHUNK && a->head) {
			c->next = a->head->next;
			a->head->next = c;
		} else {
			c->next = a->head;
			a->head = c;
		}
	}
	c->used = off + n;
	return (char *)c->data + off;
}

static void *arena_alloc(struct arena *a, size_t n)
{
	return arena_alloc_aligned(a, n, sizeof(max_align_t));
}

static const char *arena_strdup(struct arena *a, const char *s)
{
	size_t n;
	char *p;

	if (!s || !*s)
		return "";
	n = strlen(s) + 1;
	p = arena_alloc_aligned(a, n, 1); /* strings packed: 100,000 proxies hold 4 each */
	if (p)
		memcpy(p, s, n);
	return p;
}

static void arena_free(struct arena *a)
{
	struct arena_chunk *c, *next;

	if (!a)
		return;
	for (c = a->head; c; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

/* A rendering of slot -1 (see snap_cached), one of the snapshot's list. */
struct snap_keyed {
	struct snap_keyed *next;
	snap_render_fn render;
	int arg;
	bool ready;
	struct sbuf buf;
};

/* --- builder --- */

#define SNAP_ORG_SLOTS 1024

struct snap_builder {
	struct arena *arena;
	/* Every record in one array of cap: the live ones from the front
	 * (nlive), the others from the back (nother). It becomes the
	 * snapshot's all[] as it is: 100,000 records are never copied. */
	struct snap_proxy *live;
	uint32_t nlive, nother, cap;
	const char *last_sources; /* the last proxy's sources, in the arena: most repeat it */
	/* Network names copied so far, by the caller's pointer: the engine
	 * hands every proxy of a network the same interned name (src/geo.c),
	 * so a few thousand networks hold 100,000 proxies with each name
	 * copied once and no name hashed (only compared). A slot holds the last name that
	 * came to it. */
	struct {
		const char *from, *copy;
	} orgs[SNAP_ORG_SLOTS];
	struct snap_source *sources;
	uint32_t nsources, srccap;
	struct snap_judge *judges;
	uint32_t njudges, judgecap;
	struct snap_stats stats;
	bool failed; /* an allocation failed; finish returns NULL */
};

struct snap_builder *snap_builder_new(void)
{
	struct snap_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->arena = calloc(1, sizeof(*b->arena));
	if (!b->arena) {
		free(b);
		return NULL;
	}
	b->stats.health = "ok";
	b->stats.store_error = "";
	return b;
}

void snap_builder_free(struct snap_builder *b)
{
	if (!b)
		return;
	arena_free(b->arena);
	free(b->live);
	free(b->sources);
	free(b->judges);
	free(b);
}

static bool grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t ncap;
	void *p;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return false;
	*arr = p;
	*cap = ncap;
	return true;
}

/* Grows the records to hold cap of them (at least one more when cap is
 * 0), keeping the others at the back. */
static bool records_grow(struct snap_builder *b, uint32_t cap)
{
	struct snap_proxy *p;

	if (!cap && b->nlive + b->nother < b->cap)
		return true;
	if (!cap)
		cap = b->cap ? b->cap * 2 : 64;
	if (cap <= b->cap || cap > UINT32_MAX / 2)
		return cap <= b->cap;
	p = realloc(b->live, (size_t)cap * sizeof(*p));
	if (!p)
		return false;
	memmove(p + cap - b->nother, p + b->cap - b->nother, (size_t)b->nother * sizeof(*p));
	b->live = p;
	b->cap = cap;
	return true;
}

int snap_builder_reserve(struct snap_builder *b, uint32_t n)
{
	if (records_grow(b, n))
		return 0;
	b->failed = true;
	return -ENOMEM;
}

/* The arena's copy of a network name, shared by every proxy whose caller
 * gave the same pointer for it. */
static const char *intern_org(struct snap_builder *b, const char *org)
{
	uintptr_t h = (uintptr_t)org;

	if (!org || !*org)
		return "";
	h = (h >> 4) ^ (h >> 14);
	h %= SNAP_ORG_SLOTS;
	/* The text is compared too: a caller may reuse one buffer. */
	if (b->orgs[h].from != org || !b->orgs[h].copy || strcmp(b->orgs[h].copy, org) != 0) {
		b->orgs[h].from = org;
		b->orgs[h].copy = arena_strdup(b->arena, org);
	}
	return b->orgs[h].copy;
}

/* An ASCII letter in upper case, or 0 for any other byte (whatever the
 * locale: the country table is indexed by it). */
static char ascii_upper(char c)
{
	if (c >= 'a' && c <= 'z')
		return (char)(c - 'a' + 'A');
	return c >= 'A' && c <= 'Z' ? c : 0;
}

/* A country code as the snapshot keeps it: two upper-case letters, or ""
 * for anything else (unknown). */
static void copy_country(char *dst, const char *src)
{
	char hi = ascii_upper(src[0]), lo = hi ? ascii_upper(src[1]) : 0;

	memset(dst, 0, 3);
	if (hi && lo && !src[2]) {
		dst[0] = hi;
		dst[1] = lo;
	}
}

int snap_builder_add(struct snap_builder *b, const struct snap_proxy *p)
{
	bool alive = p->state == SNAP_ALIVE;
	struct snap_proxy *d;

	if (!records_grow(b, 0))
		goto out_nomem;
	d = alive ? &b->live[b->nlive] : &b->live[b->cap - 1 - b->nother];
	*d = *p;
	d->uri = arena_strdup(b->arena, p->uri);
	d->host = arena_strdup(b->arena, p->host);
	d->exit_ip = arena_strdup(b->arena, p->exit_ip);
	if (b->last_sources && strcmp(b->last_sources, p->sources ? p->sources : "") == 0)
		d->sources = b->last_sources;
	else
		d->sources = b->last_sources = arena_strdup(b->arena, p->sources);
	d->as_org = intern_org(b, p->as_org);
	if (!d->uri || !d->host || !d->exit_ip || !d->sources || !d->as_org)
		goto out_nomem;
	copy_country(d->country, p->country);
	if (alive)
		b->nlive++;
	else
		b->nother++;
	return 0;
out_nomem:
	b->failed = true;
	return -ENOMEM;
}

int snap_builder_add_source(struct snap_builder *b, const struct snap_source *src)
{
	struct snap_source *d;
	bool ok;

	if (!grow((void **)&b->sources, &b->srccap, b->nsources + 1, sizeof(*b->sources)))
		goto out_nomem;
	d = &b->sources[b->nsources];
	*d = *src;
	d->name = arena_strdup(b->arena, src->name);
	d->url = arena_strdup(b->arena, src->url);
	d->error = arena_strdup(b->arena, src->error);
	ok = d->name && d->url && d->error;
	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++) {
		if (src->invalid_sample[i]) {
			d->invalid_sample[i] = arena_strdup(b->arena, src->invalid_sample[i]);
			ok = ok && d->invalid_sample[i];
		}
	}
	if (!ok)
		goto out_nomem;
	b->nsources++;
	return 0;
out_nomem:
	b->failed = true;
	return -ENOMEM;
}

int snap_builder_add_judge(struct snap_builder *b, const struct snap_judge *j)
{
	struct snap_judge *d;

	if (!grow((void **)&b->judges, &b->judgecap, b->njudges + 1, sizeof(*b->judges)))
		goto out_nomem;
	d = &b->judges[b->njudges];
	*d = *j;
	d->url = arena_strdup(b->arena, j->url);
	d->error = arena_strdup(b->arena, j->error);
	d->our_addr = arena_strdup(b->arena, j->our_addr);
	if (!d->url || !d->error || !d->our_addr)
		goto out_nomem;
	b->njudges++;
	return 0;
out_nomem:
	b->failed = true;
	return -ENOMEM;
}

void snap_builder_set_stats(struct snap_builder *b, const struct snap_stats *st)
{
	b->stats = *st;
	b->stats.health = arena_strdup(b->arena, st->health ? st->health : "ok");
	b->stats.store_error = arena_strdup(b->arena, st->store_error);
	if (!b->stats.health || !b->stats.store_error)
		b->failed = true;
	for (int k = 0; k < 2; k++) {
		struct snap_geo_db *g = &b->stats.geo[k];

		g->path = st->geo[k].path ? arena_strdup(b->arena, st->geo[k].path) : NULL;
		g->type = arena_strdup(b->arena, st->geo[k].type ? st->geo[k].type : "");
		g->error = arena_strdup(b->arena, st->geo[k].error ? st->geo[k].error : "");
		if ((st->geo[k].path && !g->path) || !g->type || !g->error)
			b->failed = true;
	}
	for (uint32_t i = 0; i < st->nejected && i < SNAP_EJECTED_KEEP; i++) {
		b->stats.ejected[i].uri = arena_strdup(b->arena, st->ejected[i].uri);
		b->stats.ejected[i].why = arena_strdup(b->arena, st->ejected[i].why);
		if (!b->stats.ejected[i].uri || !b->stats.ejected[i].why)
			b->failed = true;
	}
}

static int by_latency(const void *pa, const void *pb)
{
	const struct snap_proxy *a = pa, *b = pb;

	if (a->latency_ms != b->latency_ms)
		return a->latency_ms < b->latency_ms ? -1 : 1;
	return strcmp(a->uri, b->uri);
}

/* Copies a builder-owned array into the arena so the snapshot frees it. */
static void *arena_copy(struct arena *a, const void *src, size_t n)
{
	void *p;

	if (n == 0)
		return NULL;
	p = arena_alloc(a, n);
	if (p)
		memcpy(p, src, n);
	return p;
}

static bool in_view(const struct snap_proxy *p, uint32_t v)
{
	if (v < PROXY_PROTO_COUNT)
		return (p->folders >> v) & 1;
	if (v == SNAP_VIEW_ELITE)
		return p->anonymity == SNAP_ANON_ELITE;
	if (v == SNAP_VIEW_ANONYMOUS)
		return p->anonymity == SNAP_ANON_ANONYMOUS;
	return p->anonymity == SNAP_ANON_TRANSPARENT;
}

/* A source's name, to find its view from the names a proxy lists. */
struct src_name {
	const char *name;
	size_t len;
	uint32_t idx;
};

static int cmp_src_name(const void *pa, const void *pb)
{
	const struct src_name *a = pa, *b = pb;
	int c = memcmp(a->name, b->name, a->len < b->len ? a->len : b->len);

	return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Calls back, per name in p's comma-joined sources that is a source of
 * the snapshot, with that source's index. */
static void for_each_source(const struct snap_proxy *p, const struct src_name *names, uint32_t n,
			    void (*fn)(void *arg, uint32_t src), void *arg)
{
	for (const char *l = p->sources; *l;) {
		struct src_name key = { .name = l, .len = strcspn(l, ",") };
		const struct src_name *hit = bsearch(&key, names, n, sizeof(*names), cmp_src_name);

		if (hit)
			fn(arg, hit->idx);
		l += key.len + (l[key.len] == ',');
	}
}

struct src_fill {
	uint32_t *counts;
	uint32_t **idx; /* NULL while counting */
	uint32_t *last; /* per source: the proxy last placed + 1 (a name twice counts once) */
	uint32_t live;  /* the proxy being placed */
};

static void src_fill_cb(void *arg, uint32_t src)
{
	struct src_fill *f = arg;

	if (f->last[src] == f->live + 1)
		return;
	f->last[src] = f->live + 1;
	if (f->idx)
		f->idx[src][f->counts[src]] = f->live;
	f->counts[src]++;
}

/* The per-source views in two passes over the proxies' source names (one
 * to count, one to fill), not one pass per source: with hundreds of
 * sources and 100,000 proxies that is the difference between a publish
 * in milliseconds and one in seconds. */
static int build_source_views(struct snapshot *s, struct arena *a, const uint32_t **views,
			      uint32_t *counts)
{
	uint32_t ns = s->nsources;
	struct src_name *names = calloc(ns ? ns : 1, sizeof(*names));
	uint32_t **idx = calloc(ns ? ns : 1, sizeof(*idx));
	uint32_t *last = calloc(ns ? ns : 1, sizeof(*last));
	struct src_fill f = { .counts = counts, .last = last };
	int rc = -ENOMEM;

	if (!names || !idx || !last)
		goto out;
	for (uint32_t i = 0; i < ns; i++)
		names[i] = (struct src_name){ s->sources[i].name, strlen(s->sources[i].name), i };
	qsort(names, ns, sizeof(*names), cmp_src_name);
	for (f.live = 0; f.live < s->nlive; f.live++)
		for_each_source(&s->live[f.live], names, ns, src_fill_cb, &f);
	for (uint32_t i = 0; i < ns; i++) {
		if (counts[i] && !(idx[i] = arena_alloc(a, (size_t)counts[i] * sizeof(**idx))))
			goto out;
		views[i] = idx[i];
		counts[i] = 0;
		last[i] = 0;
	}
	f.idx = idx;
	for (f.live = 0; f.live < s->nlive; f.live++)
		for_each_source(&s->live[f.live], names, ns, src_fill_cb, &f);
	rc = 0;
out:
	free(names);
	free(idx);
	free(last);
	return rc;
}

static int build_folders(struct snapshot *s, struct arena *a)
{
	uint32_t nviews = SNAP_VIEW_SOURCES + s->nsources;
	const uint32_t **views = arena_alloc(a, nviews * sizeof(*views));
	uint32_t *counts = arena_alloc(a, nviews * sizeof(*counts));

	if (!views || !counts)
		return -ENOMEM;
	for (uint32_t v = 0; v < SNAP_VIEW_SOURCES; v++) {
		uint32_t n = 0, *idx = NULL;

		for (uint32_t i = 0; i < s->nlive; i++)
			n += in_view(&s->live[i], v);
		if (n) {
			idx = arena_alloc(a, (size_t)n * sizeof(*idx));
			if (!idx)
				return -ENOMEM;
			n = 0;
			for (uint32_t i = 0; i < s->nlive; i++)
				if (in_view(&s->live[i], v))
					idx[n++] = i;
		}
		views[v] = idx;
		counts[v] = n;
	}
	memset(counts + SNAP_VIEW_SOURCES, 0, s->nsources * sizeof(*counts));
	if (build_source_views(s, a, views + SNAP_VIEW_SOURCES, counts + SNAP_VIEW_SOURCES) < 0)
		return -ENOMEM;
	s->by_folder = views;
	s->nby_folder = counts;
	s->nviews = nviews;
	return 0;
}

/* Slots of the country table: one per pair of letters, "AA" first, then
 * unknown; in slot order they are the order countries[] keeps. */
#define COUNTRY_SLOTS (26 * 26 + 1)
#define COUNTRY_UNKNOWN (26 * 26)

static unsigned country_slot(const char *code)
{
	if (!code[0])
		return COUNTRY_UNKNOWN;
	return (unsigned)(code[0] - 'A') * 26 + (unsigned)(code[1] - 'A');
}

/* countries[]: counted per slot, then each present slot's share of one
 * array of indexes filled in live[] order (so fastest first). */
static int build_countries(struct snapshot *s, struct arena *a)
{
	uint32_t *count = calloc(COUNTRY_SLOTS, sizeof(*count));
	uint32_t *at = calloc(COUNTRY_SLOTS, sizeof(*at));
	struct snap_country *c = NULL;
	uint32_t *idx, n = 0, off = 0;
	int rc = -ENOMEM;

	if (!count || !at)
		goto out;
	for (uint32_t i = 0; i < s->nlive; i++)
		count[country_slot(s->live[i].country)]++;
	for (unsigned k = 0; k < COUNTRY_SLOTS; k++)
		n += count[k] != 0;
	rc = 0;
	if (!n)
		goto out;
	rc = -ENOMEM;
	c = arena_alloc(a, n * sizeof(*c));
	idx = arena_alloc(a, (size_t)s->nlive * sizeof(*idx));
	if (!c || !idx)
		goto out;
	n = 0;
	for (unsigned k = 0; k < COUNTRY_SLOTS; k++) {
		if (!count[k])
			continue;
		memset(c[n].code, 0, sizeof(c[n].code));
		if (k != COUNTRY_UNKNOWN) {
			c[n].code[0] = (char)('A' + k / 26);
			c[n].code[1] = (char)('A' + k % 26);
		}
		c[n].n = count[k];
		c[n].idx = idx + off;
		at[k] = off;
		off += count[k];
		n++;
	}
	for (uint32_t i = 0; i < s->nlive; i++)
		idx[at[country_slot(s->live[i].country)]++] = i;
	s->countries = c;
	s->ncountries = n;
	rc = 0;
out:
	free(count);
	free(at);
	return rc;
}

struct snapshot *snap_builder_finish(struct snap_builder *b)
{
	struct snapshot *s = NULL;

	if (b->failed)
		goto out;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	if (b->nlive)
		qsort(b->live, b->nlive, sizeof(*b->live), by_latency);
	/* The others follow the live ones, and the array shrinks to fit. */
	if (b->nother)
		memmove(b->live + b->nlive, b->live + b->cap - b->nother,
			(size_t)b->nother * sizeof(*b->live));
	if (b->nlive + b->nother == 0) {
		free(b->live);
		b->live = NULL;
	} else if (b->nlive + b->nother < b->cap) {
		struct snap_proxy *all =
		    realloc(b->live, (size_t)(b->nlive + b->nother) * sizeof(*b->live));

		if (all)
			b->live = all;
	}
	/* the builder's array becomes the snapshot's: no copy of 100,000 records */
	s->all = s->live = s->records = b->live;
	b->live = NULL;
	s->nall = b->nlive + b->nother;
	s->sources = arena_copy(b->arena, b->sources, (size_t)b->nsources * sizeof(*b->sources));
	s->judges = arena_copy(b->arena, b->judges, (size_t)b->njudges * sizeof(*b->judges));
	if ((b->nsources && !s->sources) || (b->njudges && !s->judges))
		goto out_free_snap;
	s->njudges = b->njudges;
	s->nlive = b->nlive;
	s->nsources = b->nsources;
	if (build_folders(s, b->arena) < 0 || build_countries(s, b->arena) < 0)
		goto out_free_snap;
	s->stats = b->stats;
	atomic_init(&s->refs, 1);
	pthread_mutex_init(&s->cache_lock, NULL);
	for (int i = 0; i < SNAP_CACHE_SLOTS; i++)
		sbuf_init(&s->cache[i]);
	s->arena = b->arena;
	b->arena = NULL;
	goto out;
out_free_snap:
	free(s->records);
	free(s);
	s = NULL;
out:
	snap_builder_free(b);
	return s;
}

/* --- references --- */

struct snapshot *snap_ref(struct snapshot *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void snap_unref(struct snapshot *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (int i = 0; i < SNAP_CACHE_SLOTS; i++)
		sbuf_free(&s->cache[i]);
	while (s->keyed) {
		struct snap_keyed *k = s->keyed;

		s->keyed = k->next;
		sbuf_free(&k->buf);
		free(k);
	}
	pthread_mutex_destroy(&s->cache_lock);
	arena_free(s->arena);
	free(s->records);
	free(s);
}

/* Renderings made by snap_cached() in every snapshot; only incremented, and
 * read for the metrics, so relaxed ordering suffices. */
static atomic_uint_fast64_t renderings;

uint64_t snap_renderings(void)
{
	return atomic_load_explicit(&renderings, memory_order_relaxed);
}

/* The keyed rendering of (render, arg) in s, made (not rendered yet) when
 * new; NULL when out of memory. cache_lock held. */
static struct snap_keyed *keyed_get(struct snapshot *s, snap_render_fn render, int arg)
{
	struct snap_keyed *k;

	for (k = s->keyed; k; k = k->next)
		if (k->render == render && k->arg == arg)
			return k;
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->render = render;
	k->arg = arg;
	sbuf_init(&k->buf);
	k->next = s->keyed;
	s->keyed = k;
	return k;
}

const struct sbuf *snap_cached(struct snapshot *s, int slot, snap_render_fn render, int arg)
{
	const struct sbuf *out = NULL;
	struct snap_keyed *k = NULL;
	struct sbuf *buf;
	bool *ready;

	if (slot < -1 || slot >= SNAP_CACHE_SLOTS)
		return NULL;
	pthread_mutex_lock(&s->cache_lock);
	if (slot == -1 && !(k = keyed_get(s, render, arg)))
		goto out;
	buf = k ? &k->buf : &s->cache[slot];
	ready = k ? &k->ready : &s->ready[slot];
	if (!*ready) {
		sbuf_reset(buf);
		render(s, arg, buf);
		*ready = !sbuf_failed(buf);
		atomic_fetch_add_explicit(&renderings, 1, memory_order_relaxed);
	}
	if (*ready)
		out = buf;
out:
	pthread_mutex_unlock(&s->cache_lock);
	return out;
}

int snap_country_view(const char *code)
{
	char c[3];

	if (!code[0])
		return SNAP_VIEW_COUNTRY;
	copy_country(c, code);
	if (!c[0])
		return -1;
	return SNAP_VIEW_COUNTRY + ((unsigned char)c[0] << 8 | (unsigned char)c[1]);
}

const struct snap_country *snap_view_country(const struct snapshot *s, int view)
{
	char code[3] = {0};
	uint32_t lo = 0, hi = s->ncountries;
	int rest = view - SNAP_VIEW_COUNTRY;

	if (view < SNAP_VIEW_COUNTRY || rest > 0xffff)
		return NULL;
	if (rest) {
		code[0] = (char)(rest >> 8);
		code[1] = (char)(rest & 0xff);
		if (code[0] < 'A' || code[0] > 'Z' || code[1] < 'A' || code[1] > 'Z')
			return NULL;
	}
	/* sorted by code with "" last: unknown is the last entry or none */
	if (!rest)
		return hi && !s->countries[hi - 1].code[0] ? &s->countries[hi - 1] : NULL;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int cmp = s->countries[mid].code[0] ? strcmp(s->countries[mid].code, code) : 1;

		if (cmp == 0)
			return &s->countries[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* --- the published snapshot --- */

/* Guards current: the swap in snap_publish and taking a reference in
 * snap_current. Held for a few instructions only. */
static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *current;

struct snapshot *snap_current(void)
{
	struct snapshot *s;

	pthread_mutex_lock(&current_lock);
	s = snap_ref(current);
	pthread_mutex_unlock(&current_lock);
	return s;
}

void snap_publish(struct snapshot *s)
{
	struct snapshot *old;

	pthread_mutex_lock(&current_lock);
	old = current;
	current = s;
	pthread_mutex_unlock(&current_lock);
	snap_unref(old);
}

int snap_system_init(void)
{
	struct snap_builder *b = snap_builder_new();
	struct snapshot *s;
	struct snap_stats st = { .health = "degraded: starting" };

	if (!b)
		return -ENOMEM;
	clock_gettime(CLOCK_REALTIME, &st.built);
	st.started = st.built.tv_sec;
	snap_builder_set_stats(b, &st);
	s = snap_builder_finish(b);
	if (!s)
		return -ENOMEM;
	snap_publish(s);
	return 0;
}

void snap_system_fini(void)
{
	snap_publish(NULL);
}

const char *snap_anon_name(int anonymity)
{
	switch (anonymity) {
	case SNAP_ANON_TRANSPARENT:
		return "transparent";
	case SNAP_ANON_ANONYMOUS:
		return "anonymous";
	case SNAP_ANON_ELITE:
		return "elite";
	default:
		return "unknown";
	}
}
