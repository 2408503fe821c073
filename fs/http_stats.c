/* http_stats: counters of the HTTP front; see http_stats.h. */
#include "http_stats.h"
#include "lat_hist.h"

#include <stdatomic.h>
#include <string.h>

static const int codes[HTTP_STATS_CODES] = {200, 204, 304, 400, 401, 403, 404,
					    405, 413, 429, 500, 501, 503, 0};
static const char *const bounds[HTTP_STATS_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",   "0.025",	 "0.05",   "0.1",   "1",      "10",
};
static const uint64_t bound_us[HTTP_STATS_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 1000000, 10000000};

static const char *const class_names[HTTP_CLASS_COUNT] = {
    "pick", "list", "stat", "metrics", "health", "control", "dir", "other",
};

/* Every figure: relaxed atomics, written by the front's threads, read by
 * whoever renders. */
static atomic_bool st_enabled;
static atomic_uint_fast64_t st_requests[HTTP_CLASS_COUNT][HTTP_STATS_CODES];
static atomic_uint_fast64_t st_rate_limited;
_Static_assert(HTTP_STATS_BUCKETS <= LAT_HIST_MAX, "lat_hist holds the buckets");
static struct lat_hist st_latency = LAT_HIST_INIT(bound_us, bounds, HTTP_STATS_BUCKETS);
static atomic_int_fast64_t st_connections;
static atomic_uint_fast64_t st_connections_total;
static atomic_uint_fast64_t st_refused;

const char *http_class_name(enum http_class c)
{
	return (unsigned)c < HTTP_CLASS_COUNT ? class_names[c] : "other";
}

int http_stats_code(int i)
{
	return i >= 0 && i < HTTP_STATS_CODES ? codes[i] : 0;
}

const char *http_stats_bound(int i)
{
	return lat_hist_bound(&st_latency, i);
}

void http_stats_set_enabled(bool on)
{
	atomic_store(&st_enabled, on);
}

void http_stats_request(enum http_class c, int code, uint64_t micros)
{
	int i;

	if ((unsigned)c >= HTTP_CLASS_COUNT)
		c = HTTP_CLASS_OTHER;
	for (i = 0; i < HTTP_STATS_CODES - 1 && codes[i] != code; i++)
		;
	atomic_fetch_add_explicit(&st_requests[c][i], 1, memory_order_relaxed);
	lat_hist_add(&st_latency, micros);
}

void http_stats_rate_limited(void)
{
	atomic_fetch_add_explicit(&st_rate_limited, 1, memory_order_relaxed);
}

void http_stats_connection(int delta)
{
	atomic_fetch_add_explicit(&st_connections, delta, memory_order_relaxed);
	if (delta > 0)
		atomic_fetch_add_explicit(&st_connections_total, 1, memory_order_relaxed);
}

void http_stats_refused(void)
{
	atomic_fetch_add_explicit(&st_refused, 1, memory_order_relaxed);
}

void http_stats_get(struct http_stats *out)
{
	int64_t conns;

	memset(out, 0, sizeof(*out));
	out->enabled = atomic_load(&st_enabled);
	for (int c = 0; c < HTTP_CLASS_COUNT; c++)
		for (int i = 0; i < HTTP_STATS_CODES; i++)
			out->requests[c][i] =
			    atomic_load_explicit(&st_requests[c][i], memory_order_relaxed);
	out->rate_limited = atomic_load_explicit(&st_rate_limited, memory_order_relaxed);
	lat_hist_read(&st_latency, out->latency, &out->latency_count, &out->latency_sum);
	conns = atomic_load_explicit(&st_connections, memory_order_relaxed);
	out->connections = conns > 0 ? (uint64_t)conns : 0;
	out->connections_total = atomic_load_explicit(&st_connections_total, memory_order_relaxed);
	out->connections_refused = atomic_load_explicit(&st_refused, memory_order_relaxed);
}
