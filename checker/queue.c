/* queue: the engine's FIFOs of pool entries, and its retry queue; see
 * engine_int.h.
 *
 * A queue links its entries through the entries themselves (qnext): an
 * entry is in one queue at most, so a push never allocates and cannot
 * fail, and no proxy can leave the schedule because memory ran short. An
 * entry taken out of the pool while queued is freed when the last queue or
 * check lets go of it. Nothing here decides what is checked when.
 */
#include "engine_int.h"

void queue_push(struct queue *q, struct pool_entry *e)
{
	if (e->queued)
		return; /* already waiting for a check: once is enough */
	e->qnext = NULL;
	if (q->tail)
		q->tail->qnext = e;
	else
		q->head = e;
	q->tail = e;
	q->len++;
	e->queued = true;
}

struct pool_entry *queue_pop(struct queue *q)
{
	struct pool_entry *e = q->head;

	if (!e)
		return NULL;
	q->head = e->qnext;
	if (!q->head)
		q->tail = NULL;
	q->len--;
	e->qnext = NULL;
	e->queued = false;
	return e;
}

/* Frees an unlinked entry once nothing refers to it any more. */
void eng_release_entry(struct pool_entry *e)
{
	if (e->unlinked && !e->queued && !e->chk)
		pool_entry_free(e);
}

/* Empties q, freeing the unlinked entries only it still held. */
void queue_drain(struct queue *q)
{
	struct pool_entry *e;

	while ((e = queue_pop(q)))
		eng_release_entry(e);
}

/* Every entry of one try waits the same backoff, so each try's FIFO is in
 * due order by itself: the next due entry is the earliest of the heads. */
void retry_push(struct retry_queue *r, struct pool_entry *e, unsigned int try, uint64_t due)
{
	unsigned int level = try ? try - 1 : 0;

	if (e->queued)
		return;
	if (level >= RETRY_LEVELS)
		level = RETRY_LEVELS - 1;
	e->qdue = due;
	queue_push(&r->by_try[level], e);
	r->len++;
}

struct pool_entry *retry_pop_due(struct retry_queue *r, uint64_t now)
{
	struct queue *first = NULL;

	if (!r->len)
		return NULL;
	for (size_t i = 0; i < RETRY_LEVELS; i++) {
		struct queue *q = &r->by_try[i];

		if (q->head && q->head->qdue <= now && (!first || q->head->qdue < first->head->qdue))
			first = q;
	}
	if (!first)
		return NULL;
	r->len--;
	return queue_pop(first);
}

uint64_t retry_last_due(const struct retry_queue *r)
{
	uint64_t last = 0;

	for (size_t i = 0; i < RETRY_LEVELS; i++)
		if (r->by_try[i].tail && r->by_try[i].tail->qdue > last)
			last = r->by_try[i].tail->qdue;
	return last;
}

void retry_drain(struct retry_queue *r)
{
	for (size_t i = 0; i < RETRY_LEVELS; i++)
		queue_drain(&r->by_try[i]);
	r->len = 0;
}
