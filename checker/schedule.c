/* schedule: a min-heap of pool entries by due time; see schedule.h.
 *
 * Each entry remembers its heap slot (heap_idx, 1-based, 0 = not in the
 * heap), so rescheduling and removing are O(log n) without a search.
 */
#include "schedule.h"

#include <errno.h>
#include <stdlib.h>

static void place(struct sched *s, uint32_t i, struct pool_entry *e)
{
	s->heap[i] = e;
	e->heap_idx = i + 1;
}

static void sift_up(struct sched *s, uint32_t i)
{
	struct pool_entry *e = s->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (s->heap[parent]->due <= e->due)
			break;
		place(s, i, s->heap[parent]);
		i = parent;
	}
	place(s, i, e);
}

static void sift_down(struct sched *s, uint32_t i)
{
	struct pool_entry *e = s->heap[i];

	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		uint32_t mdue = e->due;

		if (l < s->len && s->heap[l]->due < mdue) {
			m = l;
			mdue = s->heap[l]->due;
		}
		if (r < s->len && s->heap[r]->due < mdue)
			m = r;
		if (m == i)
			break;
		place(s, i, s->heap[m]);
		i = m;
	}
	place(s, i, e);
}

int sched_put(struct sched *s, struct pool_entry *e, uint32_t due)
{
	if (e->heap_idx) {
		uint32_t old = e->due;

		e->due = due;
		if (due < old)
			sift_up(s, e->heap_idx - 1);
		else
			sift_down(s, e->heap_idx - 1);
		return 0;
	}
	if (s->len == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 1024;
		struct pool_entry **h = realloc(s->heap, (size_t)cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		s->heap = h;
		s->cap = cap;
	}
	e->due = due;
	s->heap[s->len] = e;
	e->heap_idx = ++s->len;
	sift_up(s, s->len - 1);
	return 0;
}

void sched_del(struct sched *s, struct pool_entry *e)
{
	uint32_t i;
	struct pool_entry *last;

	if (!e->heap_idx)
		return;
	i = e->heap_idx - 1;
	e->heap_idx = 0;
	last = s->heap[--s->len];
	if (i == s->len)
		return;
	place(s, i, last);
	if (i > 0 && s->heap[(i - 1) / 2]->due > last->due)
		sift_up(s, i);
	else
		sift_down(s, i);
}

struct pool_entry *sched_pop_due(struct sched *s, uint32_t now)
{
	struct pool_entry *e;

	if (!s->len || s->heap[0]->due > now)
		return NULL;
	e = s->heap[0];
	sched_del(s, e);
	return e;
}

void sched_free(struct sched *s)
{
	for (uint32_t i = 0; i < s->len; i++)
		s->heap[i]->heap_idx = 0;
	free(s->heap);
	s->heap = NULL;
	s->len = s->cap = 0;
}
