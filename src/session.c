/* session: sticky picks, one table for every front; see session.h.
 *
 * The table maps the filter's key (pick_filter_key) and KEY to the URI of
 * the proxy the key was given. Entries sit in a chained hash table and on
 * one list ordered by last use, most recent first: the keys past their
 * time to live are a tail of that list (dropped as they are met), and
 * when the table is full the tail is the key used longest ago.
 *
 * Placement is rendezvous hashing: every proxy the filter matches scores
 * hash(KEY, URI) and the highest wins. The score depends on nothing but the
 * two strings, so any front, any process and any restart places a key on
 * the same proxy of the same set, and a proxy joining the set can take
 * only keys that are not placed yet (placed keys are kept by the table).
 */
#include "session.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Room for a filter's key (pick.h: 160 bytes for any filter but a long
 * list of source names, which is cut). */
#define SESSION_FKEY_MAX 256

struct session_entry {
	struct session_entry *chain;	     /* next in the hash bucket */
	struct session_entry *newer, *older; /* the list by last use */
	uint64_t hash;			     /* of name */
	uint64_t last_ns;		     /* last use, CLOCK_MONOTONIC */
	uint64_t generation;		     /* snapshot where index was checked */
	uint32_t index;			     /* into that snapshot's live[] */
	char *uri;			     /* the proxy's URI (own copy) */
	char name[];			     /* filter key, '/', KEY */
};

/* The table. lock guards every field of it (entries included). */
static struct {
	pthread_mutex_t lock;
	struct session_entry **buckets;
	size_t nbuckets; /* a power of two, or 0 before the first entry */
	size_t count;
	struct session_entry *newest, *oldest;
	uint64_t ttl_ns;
	uint32_t ttl_s, max;
	uint64_t created_total, moved_total, dropped_total;
} table = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .ttl_ns = (uint64_t)SESSION_TTL_DEFAULT * 1000000000u,
    .ttl_s = SESSION_TTL_DEFAULT,
    .max = SESSION_MAX_DEFAULT,
};

/* --- hashing --- */

/* The 64-bit finaliser of MurmurHash3: spreads every input bit over the
 * whole word, which FNV-1a alone does poorly for the high bits. */
static uint64_t session_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* FNV-1a over len bytes from state h. */
static uint64_t session_fnv(uint64_t h, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define SESSION_FNV_BASIS 0xcbf29ce484222325ULL

/* The rendezvous score of uri for the key whose FNV state is key_state
 * (KEY and a 0 byte, so that "ab"+"c" and "a"+"bc" differ). */
static uint64_t session_score(uint64_t key_state, const char *uri)
{
	return session_mix(session_fnv(key_state, uri, strlen(uri)));
}

static uint64_t session_key_state(const char *key, size_t len)
{
	static const char zero;

	return session_fnv(session_fnv(SESSION_FNV_BASIS, key, len), &zero, 1);
}

/* The proxy of s->live f matches that scores highest for key: its index,
 * -ENOENT when f matches none, -ENOMEM. Ties (all but impossible) go to
 * the smaller URI, so the choice does not depend on the order of live[]. */
static int session_place(const struct snapshot *s, const struct pick_filter *f, uint64_t key_state,
			 uint32_t *index)
{
	uint32_t *list, n, best_i = 0;
	uint64_t best = 0, score;
	int err = pick_list(s, f, 0, &list, &n);

	if (err)
		return err;
	if (!n)
		return -ENOENT;
	for (uint32_t k = 0; k < n; k++) {
		const char *uri = s->live[list[k]].uri;

		score = session_score(key_state, uri);
		if (k == 0 || score > best ||
		    (score == best && strcmp(uri, s->live[best_i].uri) < 0)) {
			best = score;
			best_i = list[k];
		}
	}
	free(list);
	*index = best_i;
	return 0;
}

/* --- the table (caller holds table.lock) --- */

static uint64_t session_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void list_unlink(struct session_entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		table.newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		table.oldest = e->newer;
	e->newer = e->older = NULL;
}

static void list_push_newest(struct session_entry *e)
{
	e->newer = NULL;
	e->older = table.newest;
	if (table.newest)
		table.newest->newer = e;
	table.newest = e;
	if (!table.oldest)
		table.oldest = e;
}

/* Unlinks e from its bucket and the list and frees it. */
static void entry_drop(struct session_entry *e)
{
	struct session_entry **pp = &table.buckets[e->hash & (table.nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	list_unlink(e);
	table.count--;
	free(e->uri);
	free(e);
}

/* Drops the keys not used within the time to live (a tail of the list). */
static void table_expire(uint64_t now)
{
	while (table.oldest && now - table.oldest->last_ns > table.ttl_ns)
		entry_drop(table.oldest);
}

/* Drops the keys used longest ago until at most max are left. */
static void table_bound(uint32_t max)
{
	while (table.count > max) {
		entry_drop(table.oldest);
		table.dropped_total++;
	}
}

static struct session_entry *table_find(const char *name, uint64_t hash)
{
	struct session_entry *e;

	if (!table.nbuckets)
		return NULL;
	for (e = table.buckets[hash & (table.nbuckets - 1)]; e; e = e->chain)
		if (e->hash == hash && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* Keeps the buckets at least as many as the entries. 0 or -ENOMEM (the
 * table then stays as it was, longer chains but whole). */
static int table_grow(void)
{
	size_t n = table.nbuckets ? table.nbuckets * 2 : 64;
	struct session_entry **b, *e, *next;

	if (table.count < table.nbuckets)
		return 0;
	b = calloc(n, sizeof(*b));
	if (!b)
		return table.nbuckets ? 0 : -ENOMEM;
	for (size_t i = 0; i < table.nbuckets; i++) {
		for (e = table.buckets[i]; e; e = next) {
			next = e->chain;
			e->chain = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(table.buckets);
	table.buckets = b;
	table.nbuckets = n;
	return 0;
}

/* A new entry for name on uri, the newest; NULL for lack of memory. */
static struct session_entry *table_add(const char *name, uint64_t hash, const char *uri)
{
	size_t len = strlen(name);
	struct session_entry *e;

	if (table_grow())
		return NULL;
	e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->uri = strdup(uri);
	if (!e->uri) {
		free(e);
		return NULL;
	}
	memcpy(e->name, name, len + 1);
	e->hash = hash;
	e->chain = table.buckets[hash & (table.nbuckets - 1)];
	table.buckets[hash & (table.nbuckets - 1)] = e;
	list_push_newest(e);
	table.count++;
	return e;
}

/* Points e at live proxy i of s. 0 or -ENOMEM (e keeps its old proxy). */
static int entry_set(struct session_entry *e, const struct snapshot *s, uint32_t i)
{
	if (strcmp(e->uri, s->live[i].uri) != 0) {
		char *uri = strdup(s->live[i].uri);

		if (!uri)
			return -ENOMEM;
		free(e->uri);
		e->uri = uri;
	}
	e->generation = s->stats.generation;
	e->index = i;
	return 0;
}

/* Is e's proxy still where the snapshot it was last checked in had it?
 * Then s is that snapshot (or one built alike) and nothing need be looked
 * up. Caller holds table.lock. */
static bool entry_fast(const struct session_entry *e, const struct snapshot *s,
		       const struct pick_filter *f)
{
	return e->generation == s->stats.generation && e->index < s->nlive &&
	       strcmp(s->live[e->index].uri, e->uri) == 0 && pick_match(s, f, e->index);
}

/* Is uri live in s and matched by f? Its index in *index. */
static bool uri_still_there(const char *uri, const struct snapshot *s, const struct pick_filter *f,
			    uint32_t *index)
{
	for (uint32_t i = 0; i < s->nlive; i++) {
		if (strcmp(s->live[i].uri, uri) == 0) {
			*index = i;
			return pick_match(s, f, i);
		}
	}
	return false;
}

/* --- the interface --- */

void session_configure(uint32_t ttl_s, uint32_t max)
{
	pthread_mutex_lock(&table.lock);
	table.ttl_s = ttl_s ? ttl_s : 1;
	table.ttl_ns = (uint64_t)table.ttl_s * 1000000000u;
	table.max = max ? max : 1;
	table_bound(table.max);
	pthread_mutex_unlock(&table.lock);
}

void session_clear(void)
{
	pthread_mutex_lock(&table.lock);
	while (table.oldest)
		entry_drop(table.oldest);
	free(table.buckets);
	table.buckets = NULL;
	table.nbuckets = 0;
	table.created_total = table.moved_total = table.dropped_total = 0;
	pthread_mutex_unlock(&table.lock);
}

bool session_key_valid(const char *key, size_t len)
{
	if (!key || len == 0 || len > SESSION_KEY_MAX)
		return false;
	if ((len == 1 && key[0] == '.') || (len == 2 && key[0] == '.' && key[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* The walks over s (finding a key's proxy again in a new snapshot,
 * placing a key) run outside the lock, so that a pool of 100,000 proxies
 * holds other callers up only for the table's own work. Two callers that
 * place one key at the same time over the same set agree (the placement
 * is a function of KEY and the set); the later one's entry stands. */
int session_pick(const struct snapshot *s, const struct pick_filter *f, const char *key, size_t len,
		 uint32_t *index)
{
	char name[SESSION_FKEY_MAX + 1 + SESSION_KEY_MAX + 1];
	struct session_entry *e;
	uint64_t now, hash, key_state;
	char *had = NULL; /* the URI the key had, when it had one */
	bool known = false;
	size_t flen;
	uint32_t i = 0;
	int err = 0;

	if (!session_key_valid(key, len))
		return -EINVAL;
	/* Filter key, '/', KEY: KEY has no '/', so two pairs never meet. */
	pick_filter_key(f, name, SESSION_FKEY_MAX);
	flen = strlen(name);
	name[flen] = '/';
	memcpy(name + flen + 1, key, len);
	name[flen + 1 + len] = '\0';
	hash = session_mix(session_fnv(SESSION_FNV_BASIS, name, flen + 1 + len));
	key_state = session_key_state(key, len);

	pthread_mutex_lock(&table.lock);
	now = session_now_ns();
	table_expire(now);
	e = table_find(name, hash);
	if (e) {
		e->last_ns = now;
		list_unlink(e);
		list_push_newest(e);
		if (entry_fast(e, s, f)) {
			i = e->index;
			pthread_mutex_unlock(&table.lock);
			*index = i;
			return 0;
		}
		had = strdup(e->uri);
		known = true;
	}
	pthread_mutex_unlock(&table.lock);
	if (known && !had)
		return -ENOMEM;

	/* A key placed before: its proxy in this snapshot, if still there. */
	if (had && uri_still_there(had, s, f, &i)) {
		pthread_mutex_lock(&table.lock);
		e = table_find(name, hash);
		if (e && strcmp(e->uri, had) == 0) {
			e->generation = s->stats.generation;
			e->index = i;
		}
		pthread_mutex_unlock(&table.lock);
		goto out;
	}

	/* New, expired, or its proxy left: placed. When nothing matches, a
	 * key that had a proxy keeps it to come back to. */
	err = session_place(s, f, key_state, &i);
	if (err)
		goto out;
	pthread_mutex_lock(&table.lock);
	e = table_find(name, hash);
	if (e) {
		err = entry_set(e, s, i);
		if (!err && had)
			table.moved_total++;
	} else {
		e = table_add(name, hash, s->live[i].uri);
		if (e) {
			e->last_ns = session_now_ns();
			e->generation = s->stats.generation;
			e->index = i;
			table.created_total++;
			table_bound(table.max);
		} else {
			err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&table.lock);
out:
	free(had);
	if (!err)
		*index = i;
	return err;
}

void session_get_stats(struct session_stats *out)
{
	pthread_mutex_lock(&table.lock);
	table_expire(session_now_ns());
	out->active = (uint32_t)table.count;
	out->max = table.max;
	out->ttl_s = table.ttl_s;
	out->created_total = table.created_total;
	out->moved_total = table.moved_total;
	out->dropped_total = table.dropped_total;
	pthread_mutex_unlock(&table.lock);
}
