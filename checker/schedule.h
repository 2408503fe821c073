/* schedule: when each proxy is next due for a check.
 *
 * A binary min-heap of pool entries keyed by their due time (seconds on
 * the engine's own clock). The engine thread alone uses it. It decides
 * nothing about policy: the engine computes due times (re-check, backoff)
 * and moves due entries into its queues.
 */
#ifndef PROXYFS_SCHED_H
#define PROXYFS_SCHED_H

#include <stdint.h>

#include "pool.h"

struct sched {
	struct pool_entry **heap;
	uint32_t len, cap;
};

/* Schedules e at due, or moves it there if already scheduled. 0 or -ENOMEM. */
int sched_put(struct sched *s, struct pool_entry *e, uint32_t due);
/* Unschedules e (nothing if it was not scheduled). */
void sched_del(struct sched *s, struct pool_entry *e);
/* The entry due earliest if its time <= now (unscheduled), else NULL. */
struct pool_entry *sched_pop_due(struct sched *s, uint32_t now);
/* Unschedules everything and frees the heap (not the entries). */
void sched_free(struct sched *s);

#endif
