/* queue: the engine's FIFO rings of pool entries; see engine_int.h.
 *
 * A queue only holds pointers: an entry taken out of the pool while queued
 * is freed when the last queue or check lets go of it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"
#include "judge_answer.h"
#include "log.h"

int queue_push(struct queue *q, struct pool_entry *e, uint64_t due, bool timed)
{
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 256;
		struct pool_entry **items = malloc(ncap * sizeof(*items));
		uint64_t *dues = timed ? malloc(ncap * sizeof(*dues)) : NULL;

		if (!items || (timed && !dues)) {
			free(items);
			free(dues);
			return -ENOMEM;
		}
		for (size_t i = 0; i < q->len; i++) {
			items[i] = q->items[(q->head + i) % q->cap];
			if (timed)
				dues[i] = q->due[(q->head + i) % q->cap];
		}
		free(q->items);
		free(q->due);
		q->items = items;
		q->due = dues;
		q->head = 0;
		q->cap = ncap;
	}
	q->items[(q->head + q->len) % q->cap] = e;
	if (timed)
		q->due[(q->head + q->len) % q->cap] = due;
	q->len++;
	e->queued = true;
	return 0;
}

struct pool_entry *queue_peek(const struct queue *q, uint64_t *due)
{
	if (!q->len)
		return NULL;
	if (due)
		*due = q->due ? q->due[q->head] : 0;
	return q->items[q->head];
}

struct pool_entry *queue_pop(struct queue *q)
{
	struct pool_entry *e;

	if (!q->len)
		return NULL;
	e = q->items[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
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
	free(q->items);
	free(q->due);
	memset(q, 0, sizeof(*q));
}
