/* pool: the engine's hash table of proxies; see pool.h. */
#include "pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pool {
	struct pool_entry **slots;
	size_t nslots; /* a power of two */
	size_t count;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

struct pool *pool_new(void)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->nslots = 1024;
	p->slots = calloc(p->nslots, sizeof(*p->slots));
	if (!p->slots) {
		free(p);
		return NULL;
	}
	return p;
}

void pool_entry_free(struct pool_entry *e)
{
	if (!e)
		return;
	free(e->uri);
	free(e->src_more);
	free(e);
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nslots; i++) {
		struct pool_entry *e = p->slots[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			pool_entry_free(e);
		}
	}
	free(p->slots);
	free(p);
}

struct pool_entry *pool_find(const struct pool *p, const char *uri)
{
	struct pool_entry *e = p->slots[hash_str(uri) & (p->nslots - 1)];

	for (; e; e = e->hnext)
		if (strcmp(e->uri, uri) == 0)
			return e;
	return NULL;
}

static struct pool_entry *find_twin(const struct pool *p, const struct pool_entry *e)
{
	char key[PROXY_URI_MAX];

	if (e->proto != PROXY_HTTP)
		return NULL;
	/* "https://..." <-> "http://..." */
	if (e->tunnel)
		snprintf(key, sizeof(key), "http%s", e->uri + strlen("https"));
	else
		snprintf(key, sizeof(key), "https%s", e->uri + strlen("http"));
	return pool_find(p, key);
}

struct pool_entry *pool_twin(const struct pool *p, const struct pool_entry *e)
{
	return e->has_twin ? find_twin(p, e) : NULL;
}

const char *pool_entry_uri(const struct pool_entry *e, char *buf)
{
	if (e->proto != PROXY_HTTP || !e->tunnel)
		return e->uri;
	snprintf(buf, PROXY_URI_MAX, "http%s", e->uri + strlen("https"));
	return buf;
}

static void pool_grow(struct pool *p)
{
	size_t n = p->nslots * 2;
	struct pool_entry **slots = calloc(n, sizeof(*slots));

	if (!slots)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < p->nslots; i++) {
		struct pool_entry *e = p->slots[i], *next;

		for (; e; e = next) {
			size_t b = hash_str(e->uri) & (n - 1);

			next = e->hnext;
			e->hnext = slots[b];
			slots[b] = e;
		}
	}
	free(p->slots);
	p->slots = slots;
	p->nslots = n;
}

/* One allocation: "uri\0host\0user\0pass\0". */
static struct pool_entry *entry_new(const struct proxy_addr *a, const char *uri)
{
	size_t lu = strlen(uri) + 1, lh = strlen(a->host) + 1;
	size_t lusr = strlen(a->user) + 1, lp = strlen(a->pass) + 1;
	struct pool_entry *e = calloc(1, sizeof(*e));
	char *s;

	if (!e)
		return NULL;
	s = malloc(lu + lh + lusr + lp);
	if (!s) {
		free(e);
		return NULL;
	}
	e->uri = memcpy(s, uri, lu);
	e->host = memcpy(s + lu, a->host, lh);
	e->user = memcpy(s + lu + lh, a->user, lusr);
	e->pass = memcpy(s + lu + lh + lusr, a->pass, lp);
	e->port = a->port;
	e->proto = (uint8_t)(a->proto == PROXY_HTTPS ? PROXY_HTTP : a->proto);
	e->tunnel = a->tunnel || a->proto == PROXY_HTTPS;
	e->remote_dns = a->remote_dns;
	if (inet_pton(AF_INET, a->host, &e->addr.in.sin_addr) == 1) {
		e->addr.in.sin_family = AF_INET;
		e->addr.in.sin_port = htons(a->port);
		e->have_addr = true;
	} else if (inet_pton(AF_INET6, a->host, &e->addr.in6.sin6_addr) == 1) {
		e->addr.in6.sin6_family = AF_INET6;
		e->addr.in6.sin6_port = htons(a->port);
		e->have_addr = true;
	}
	return e;
}

struct pool_entry *pool_get(struct pool *p, const struct proxy_addr *a, bool *created)
{
	char uri[PROXY_URI_MAX];
	struct pool_entry *e, *twin;
	size_t b;

	*created = false;
	if (proxy_format_key(a, uri, sizeof(uri)) < 0)
		return NULL;
	e = pool_find(p, uri);
	if (e)
		return e;
	e = entry_new(a, uri);
	if (!e)
		return NULL;
	if (p->count >= p->nslots)
		pool_grow(p);
	b = hash_str(uri) & (p->nslots - 1);
	e->hnext = p->slots[b];
	p->slots[b] = e;
	p->count++;
	*created = true;
	twin = find_twin(p, e);
	if (twin)
		e->has_twin = twin->has_twin = true;
	return e;
}

void pool_unlink(struct pool *p, struct pool_entry *e)
{
	struct pool_entry **pp = &p->slots[hash_str(e->uri) & (p->nslots - 1)];
	struct pool_entry *twin = pool_twin(p, e);

	if (twin)
		twin->has_twin = false;

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			e->hnext = NULL;
			e->unlinked = true;
			p->count--;
			return;
		}
	}
}

size_t pool_count(const struct pool *p)
{
	return p->count;
}

bool pool_src_has(const struct pool_entry *e, size_t src)
{
	size_t w;

	if (src < 64)
		return e->sources >> src & 1;
	w = (src - 64) / 64;
	return e->src_more && w < e->src_more[0] && (e->src_more[1 + w] >> (src % 64) & 1);
}

int pool_src_add(struct pool_entry *e, size_t src)
{
	size_t w, have;

	if (src < 64) {
		e->sources |= 1ULL << src;
		return 0;
	}
	w = (src - 64) / 64;
	have = e->src_more ? (size_t)e->src_more[0] : 0;
	if (w >= have) {
		uint64_t *more = realloc(e->src_more, (w + 2) * sizeof(*more));

		if (!more)
			return -ENOMEM;
		memset(more + 1 + have, 0, (w + 1 - have) * sizeof(*more));
		more[0] = w + 1;
		e->src_more = more;
	}
	e->src_more[1 + w] |= 1ULL << (src % 64);
	return 0;
}

void pool_src_del(struct pool_entry *e, size_t src)
{
	size_t w;

	if (src < 64) {
		e->sources &= ~(1ULL << src);
		return;
	}
	w = (src - 64) / 64;
	if (e->src_more && w < e->src_more[0])
		e->src_more[1 + w] &= ~(1ULL << (src % 64));
}

size_t pool_src_next(const struct pool_entry *e, size_t from)
{
	size_t nbits = 64 + (e->src_more ? (size_t)e->src_more[0] * 64 : 0);

	for (size_t i = from; i < nbits; i++) {
		uint64_t word = i < 64 ? e->sources : e->src_more[1 + (i - 64) / 64];

		if (!(word >> (i % 64))) { /* nothing left in this word */
			i |= 63;
			continue;
		}
		if (word >> (i % 64) & 1)
			return i;
	}
	return SIZE_MAX;
}

bool pool_src_any(const struct pool_entry *e)
{
	return pool_src_next(e, 0) != SIZE_MAX;
}

int pool_src_remap(struct pool_entry *e, const long *map, size_t nmap)
{
	struct pool_entry n = { .sources = 0, .src_more = NULL };
	int rc = 0;

	for (size_t o = pool_src_next(e, 0); o != SIZE_MAX; o = pool_src_next(e, o + 1)) {
		if (o >= nmap || map[o] < 0)
			continue;
		if (pool_src_add(&n, (size_t)map[o]) < 0)
			rc = -ENOMEM;
	}
	free(e->src_more);
	e->sources = n.sources;
	e->src_more = n.src_more;
	return rc;
}

struct pool_entry *pool_next(const struct pool *p, struct pool_iter *it, struct pool_entry *prev)
{
	struct pool_entry *e;

	if (!prev) {
		it->bucket = 0;
		it->next = NULL;
		e = NULL;
	} else {
		e = it->next;
	}
	while (!e) {
		if (it->bucket >= p->nslots)
			return NULL;
		e = p->slots[it->bucket++];
	}
	it->next = e->hnext; /* read before the caller may unlink e */
	return e;
}
