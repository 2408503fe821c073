/* test_schedule: the re-check heap against a plain model of it.
 *
 * Pool entries are allocated here by hand (only heap_idx and due matter to
 * the heap). A seeded generator drives puts, moves, deletes and pops on the
 * heap and on an array that records, per entry, whether it is scheduled
 * and when; after every step the heap must agree with the array, keep the
 * heap order, and every entry's heap_idx must name its own slot. Also: the
 * order of pops, due times at the boundary, growth past the first
 * allocation, and sched_free.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "schedule.h"
#include "testutil.h"

#define NENT 300
#define STEPS 40000
#define DUE_SPAN 64 /* small, so that equal due times are common */

struct model {
	struct pool_entry *ent;
	uint32_t *due;
	bool *in;
	size_t n;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t bound)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % bound);
}

static int model_init(struct model *m, size_t n)
{
	m->n = n;
	m->ent = calloc(n, sizeof(*m->ent));
	m->due = calloc(n, sizeof(*m->due));
	m->in = calloc(n, sizeof(*m->in));
	return m->ent && m->due && m->in ? 0 : -1;
}

static void model_free(struct model *m)
{
	free(m->ent);
	free(m->due);
	free(m->in);
}

static size_t model_index(const struct model *m, const struct pool_entry *e)
{
	return (size_t)(e - m->ent);
}

/* The earliest due time among the scheduled entries; false if none is. */
static bool model_min(const struct model *m, uint32_t *min)
{
	bool any = false;

	for (size_t i = 0; i < m->n; i++) {
		if (m->in[i] && (!any || m->due[i] < *min)) {
			*min = m->due[i];
			any = true;
		}
	}
	return any;
}

/* Heap and model agree; returns false (after reporting) if not, so that a
 * broken heap does not flood the output. */
static bool consistent(const struct sched *s, const struct model *m)
{
	int before = test_failures;
	uint32_t scheduled = 0;

	CHECK(s->len <= s->cap);
	for (uint32_t k = 0; k < s->len; k++) {
		const struct pool_entry *e = s->heap[k];

		CHECK(e >= m->ent && e < m->ent + m->n);
		if (e < m->ent || e >= m->ent + m->n)
			return false;
		CHECK_INT(e->heap_idx, k + 1);
		if (k > 0)
			CHECK(s->heap[(k - 1) / 2]->due <= e->due);
	}
	for (size_t i = 0; i < m->n; i++) {
		const struct pool_entry *e = &m->ent[i];

		CHECK_INT(e->heap_idx != 0, m->in[i]);
		if (!m->in[i] || !e->heap_idx)
			continue;
		scheduled++;
		CHECK_INT(e->due, m->due[i]);
		CHECK(e->heap_idx <= s->len && s->heap[e->heap_idx - 1] == e);
	}
	CHECK_INT(scheduled, s->len);
	return test_failures == before;
}

static void do_put(struct sched *s, struct model *m, size_t i, uint32_t due)
{
	CHECK_INT(sched_put(s, &m->ent[i], due), 0);
	m->in[i] = true;
	m->due[i] = due;
}

static void do_del(struct sched *s, struct model *m, size_t i)
{
	sched_del(s, &m->ent[i]);
	m->in[i] = false;
}

/* One pop at now: NULL exactly when nothing is due; otherwise one of the
 * earliest, now unscheduled. */
static void do_pop(struct sched *s, struct model *m, uint32_t now)
{
	uint32_t min = 0;
	bool any = model_min(m, &min);
	struct pool_entry *e = sched_pop_due(s, now);

	if (!any || min > now) {
		CHECK(e == NULL);
		return;
	}
	CHECK(e != NULL);
	if (!e)
		return;
	CHECK(e >= m->ent && e < m->ent + m->n);
	CHECK(m->in[model_index(m, e)]);
	CHECK_INT(e->due, min);
	CHECK_INT(e->heap_idx, 0);
	m->in[model_index(m, e)] = false;
}

static void test_random_operations(void)
{
	struct sched s = { 0 };
	struct model m;
	uint32_t now = 0;

	if (model_init(&m, NENT) < 0) {
		CHECK(!"out of memory");
		return;
	}
	for (int step = 0; step < STEPS; step++) {
		size_t i = rnd(NENT);
		uint32_t op = rnd(10);

		if (op < 4)
			do_put(&s, &m, i, now + rnd(DUE_SPAN)); /* new, or moved either way */
		else if (op < 6)
			do_del(&s, &m, i); /* scheduled or not */
		else if (op < 9)
			do_pop(&s, &m, now);
		else
			now += rnd(4);
		if (!consistent(&s, &m)) {
			fprintf(stderr, "  after step %d (op %u, entry %zu)\n", step, op, i);
			break;
		}
	}
	sched_free(&s);
	for (size_t i = 0; i < NENT; i++)
		CHECK_INT(m.ent[i].heap_idx, 0);
	model_free(&m);
}

/* Everything popped at the end of time comes out in due order. */
static void test_pop_order(void)
{
	struct sched s = { 0 };
	struct model m;
	uint32_t last = 0, popped = 0;
	struct pool_entry *e;

	if (model_init(&m, NENT) < 0) {
		CHECK(!"out of memory");
		return;
	}
	for (size_t i = 0; i < NENT; i++)
		do_put(&s, &m, i, rnd(1000));
	for (size_t i = 0; i < NENT; i += 3)
		do_put(&s, &m, i, rnd(1000)); /* moved */
	CHECK(consistent(&s, &m));
	while ((e = sched_pop_due(&s, UINT32_MAX))) {
		CHECK(e->due >= last);
		CHECK_INT(e->heap_idx, 0);
		last = e->due;
		m.in[model_index(&m, e)] = false;
		popped++;
	}
	CHECK_INT(popped, NENT);
	CHECK_INT(s.len, 0);
	CHECK(consistent(&s, &m));
	sched_free(&s);
	model_free(&m);
}

static void test_boundaries(void)
{
	struct sched s = { 0 };
	struct model m;

	if (model_init(&m, 4) < 0) {
		CHECK(!"out of memory");
		return;
	}
	/* Never used, and an entry never scheduled: nothing to pop or delete. */
	CHECK(sched_pop_due(&s, UINT32_MAX) == NULL);
	sched_del(&s, &m.ent[0]);
	CHECK_INT(s.len, 0);

	do_put(&s, &m, 0, 10);
	do_put(&s, &m, 1, 20);
	do_put(&s, &m, 2, UINT32_MAX);
	CHECK(sched_pop_due(&s, 9) == NULL); /* not yet */
	CHECK_INT(s.len, 3);
	CHECK(sched_pop_due(&s, 10) == &m.ent[0]); /* due exactly now */
	m.in[0] = false;
	CHECK(consistent(&s, &m));

	do_put(&s, &m, 1, 20); /* the same time again: still once in the heap */
	CHECK_INT(s.len, 2);
	do_put(&s, &m, 2, 5); /* the latest moved first */
	CHECK(consistent(&s, &m));
	CHECK(sched_pop_due(&s, 5) == &m.ent[2]);
	m.in[2] = false;
	do_del(&s, &m, 1); /* the last one */
	CHECK(consistent(&s, &m));
	CHECK_INT(s.len, 0);
	CHECK(sched_pop_due(&s, UINT32_MAX) == NULL);

	do_put(&s, &m, 3, 0);
	CHECK(sched_pop_due(&s, 0) == &m.ent[3]);
	m.in[3] = false;
	CHECK(consistent(&s, &m));
	sched_free(&s);
	model_free(&m);
}

/* More entries than the first allocation holds; deletes from anywhere. */
static void test_growth(void)
{
	enum { N = 5000 };
	struct sched s = { 0 };
	struct model m;

	if (model_init(&m, N) < 0) {
		CHECK(!"out of memory");
		return;
	}
	for (size_t i = 0; i < N; i++)
		do_put(&s, &m, i, (uint32_t)(N - i)); /* each new one goes to the top */
	CHECK_INT(s.len, N);
	CHECK(s.cap >= N);
	CHECK(consistent(&s, &m));
	for (size_t i = 0; i < N; i += 2)
		do_del(&s, &m, i);
	CHECK(consistent(&s, &m));
	for (size_t k = 0; k < 100; k++)
		do_pop(&s, &m, UINT32_MAX);
	CHECK(consistent(&s, &m));
	CHECK_INT(s.len, N / 2 - 100);
	sched_free(&s);
	model_free(&m);
}

/* sched_free unschedules what is left; the heap can be used again. */
static void test_free(void)
{
	struct sched s = { 0 };
	struct model m;

	sched_free(&s); /* never used */
	CHECK(s.heap == NULL);
	if (model_init(&m, 50) < 0) {
		CHECK(!"out of memory");
		return;
	}
	for (size_t i = 0; i < 50; i++)
		do_put(&s, &m, i, rnd(100));
	sched_free(&s);
	CHECK(s.heap == NULL);
	CHECK_INT(s.len, 0);
	CHECK_INT(s.cap, 0);
	for (size_t i = 0; i < 50; i++) {
		CHECK_INT(m.ent[i].heap_idx, 0);
		m.in[i] = false;
	}
	sched_del(&s, &m.ent[7]); /* unscheduled by the free: nothing to do */
	do_put(&s, &m, 7, 3);
	do_put(&s, &m, 8, 1);
	CHECK(consistent(&s, &m));
	CHECK(sched_pop_due(&s, 2) == &m.ent[8]);
	m.in[8] = false;
	CHECK(consistent(&s, &m));
	sched_free(&s);
	CHECK_INT(m.ent[7].heap_idx, 0);
	model_free(&m);
}

int main(void)
{
	test_random_operations();
	test_pop_order();
	test_boundaries();
	test_growth();
	test_free();
	return test_exit_code();
}
