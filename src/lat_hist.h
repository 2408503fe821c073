/* lat_hist: a latency histogram as Prometheus wants one (cumulative
 * buckets, +Inf, count and sum), for the live figures of the fronts
 * (fs/http_stats.c, src/gw_stats.c). Added to from any thread with relaxed
 * atomics, never a lock on a request's path; read by whoever renders.
 */
#ifndef PROXYFS_LAT_HIST_H
#define PROXYFS_LAT_HIST_H

#include <stdatomic.h>
#include <stdint.h>

/* Most buckets before +Inf. */
#define LAT_HIST_MAX 12

struct lat_hist {
	int n;				/* buckets before +Inf */
	const uint64_t *bound_us;	/* their upper bounds, microseconds */
	const char *const *bound_name;	/* the same as Prometheus prints them */
	atomic_uint_fast64_t count[LAT_HIST_MAX + 1]; /* per bucket (not cumulative), +Inf last */
	atomic_uint_fast64_t sum_us;
};

/* A histogram of nb buckets (at most LAT_HIST_MAX) with those bounds. */
#define LAT_HIST_INIT(us, names, nb) {.n = (nb), .bound_us = (us), .bound_name = (names)}

void lat_hist_add(struct lat_hist *h, uint64_t micros);

/* The cumulative count of each bucket into cum[0..n), the total (the +Inf
 * bucket) into *count, the sum in seconds into *sum_s. */
void lat_hist_read(struct lat_hist *h, uint64_t *cum, uint64_t *count, double *sum_s);

/* Bucket i's upper bound as Prometheus prints it ("0.005"), "+Inf" past. */
const char *lat_hist_bound(const struct lat_hist *h, int i);

#endif
