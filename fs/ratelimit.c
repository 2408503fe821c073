/* ratelimit: token buckets per address; see ratelimit.h.
 *
 * A chained hash table over the addresses, and a list of them from the
 * most to the least recently seen, whose tail is dropped when the table is
 * full. Buckets are refilled lazily, when their address asks again.
 */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct rl_entry {
	unsigned char key[RATELIMIT_KEY_MAX];
	uint8_t len;
	double tokens;
	uint64_t last_ms;
	struct rl_entry *chain;		/* next in the same hash slot */
	struct rl_entry *newer, *older; /* the recency list */
};

struct ratelimit {
	double rate, burst;
	uint32_t max, count, nslots;
	struct rl_entry **slots;
	struct rl_entry *newest, *oldest;
	pthread_mutex_t lock; /* guards everything above but rate, burst, max */
};

struct ratelimit *ratelimit_new(uint32_t rate, uint32_t burst, uint32_t max)
{
	struct ratelimit *rl;

	if (rate == 0 || max == 0)
		return NULL;
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->rate = rate;
	rl->burst = burst ? burst : 1;
	rl->max = max;
	for (rl->nslots = 64; rl->nslots < max && rl->nslots < (1u << 20); rl->nslots *= 2)
		;
	rl->slots = calloc(rl->nslots, sizeof(*rl->slots));
	if (!rl->slots) {
		free(rl);
		return NULL;
	}
	pthread_mutex_init(&rl->lock, NULL);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	struct rl_entry *e, *next;

	if (!rl)
		return;
	for (e = rl->newest; e; e = next) {
		next = e->older;
		free(e);
	}
	free(rl->slots);
	pthread_mutex_destroy(&rl->lock);
	free(rl);
}

/* FNV-1a over the key. */
static uint32_t rl_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void list_unlink(struct ratelimit *rl, struct rl_entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		rl->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		rl->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void list_push(struct ratelimit *rl, struct rl_entry *e)
{
	e->older = rl->newest;
	e->newer = NULL;
	if (rl->newest)
		rl->newest->newer = e;
	rl->newest = e;
	if (!rl->oldest)
		rl->oldest = e;
}

static void drop_oldest(struct ratelimit *rl)
{
	struct rl_entry *e = rl->oldest, **pp;

	list_unlink(rl, e);
	for (pp = &rl->slots[rl_hash(e->key, e->len) & (rl->nslots - 1)]; *pp; pp = &(*pp)->chain) {
		if (*pp == e) {
			*pp = e->chain;
			break;
		}
	}
	free(e);
	rl->count--;
}

/* The entry of key, made (with a full bucket) if new; NULL without memory. */
static struct rl_entry *rl_find(struct ratelimit *rl, const void *key, size_t len, uint64_t now)
{
	struct rl_entry **slot = &rl->slots[rl_hash(key, len) & (rl->nslots - 1)], *e;

	for (e = *slot; e; e = e->chain)
		if (e->len == len && memcmp(e->key, key, len) == 0)
			return e;
	if (rl->count >= rl->max)
		drop_oldest(rl);
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->key, key, len);
	e->len = (uint8_t)len;
	e->tokens = rl->burst;
	e->last_ms = now;
	/* drop_oldest may have emptied this very slot: take it again. */
	slot = &rl->slots[rl_hash(key, len) & (rl->nslots - 1)];
	e->chain = *slot;
	*slot = e;
	list_push(rl, e);
	rl->count++;
	return e;
}

uint32_t ratelimit_take(struct ratelimit *rl, const void *key, size_t len, uint64_t now_ms)
{
	struct rl_entry *e;
	uint32_t wait = 0;

	if (!rl)
		return 0;
	if (len > RATELIMIT_KEY_MAX)
		len = RATELIMIT_KEY_MAX;
	pthread_mutex_lock(&rl->lock);
	e = rl_find(rl, key, len, now_ms);
	if (!e)
		goto out; /* no memory: let it through rather than refuse everyone */
	if (now_ms > e->last_ms)
		e->tokens += (double)(now_ms - e->last_ms) * rl->rate / 1000.0;
	if (e->tokens > rl->burst)
		e->tokens = rl->burst;
	e->last_ms = now_ms > e->last_ms ? now_ms : e->last_ms;
	list_unlink(rl, e);
	list_push(rl, e);
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
	} else {
		wait = (uint32_t)ceil((1.0 - e->tokens) / rl->rate);
		if (wait < 1)
			wait = 1;
	}
out:
	pthread_mutex_unlock(&rl->lock);
	return wait;
}
