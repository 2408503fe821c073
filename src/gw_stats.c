/* gw_stats: counters of the gateway; see gw_stats.h. */
#include "gw_stats.h"
#include "lat_hist.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>

static const char *const outcome_names[GW_OUT_COUNT] = {
    "ok", "upstream_failed", "client_error", "auth_failed", "refused_limit",
};
static const char *const bounds[GW_STATS_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10",
};
static const uint64_t bound_us[GW_STATS_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};

/* Every figure: relaxed atomics, written by the gateway's thread, read by
 * whoever renders. */
static atomic_bool st_enabled;
static atomic_uint_fast64_t st_max;
static atomic_int_fast64_t st_connections;
static atomic_uint_fast64_t st_total[GW_OUT_COUNT];
static atomic_uint_fast64_t st_bytes_in;
static atomic_uint_fast64_t st_bytes_out;
static atomic_uint_fast64_t st_retries;
static atomic_uint_fast64_t st_replays;
_Static_assert(GW_STATS_BUCKETS <= LAT_HIST_MAX, "lat_hist holds the buckets");
static struct lat_hist st_handshake = LAT_HIST_INIT(bound_us, bounds, GW_STATS_BUCKETS);

const char *gw_outcome_name(enum gw_outcome o)
{
	return (unsigned)o < GW_OUT_COUNT ? outcome_names[o] : "client_error";
}

const char *gw_stats_bound(int i)
{
	return lat_hist_bound(&st_handshake, i);
}

void gw_stats_set_enabled(bool on, uint64_t max_connections)
{
	atomic_store(&st_max, on ? max_connections : 0);
	atomic_store(&st_enabled, on);
}

void gw_stats_connection(int delta)
{
	atomic_fetch_add_explicit(&st_connections, delta, memory_order_relaxed);
}

void gw_stats_outcome(enum gw_outcome o)
{
	if ((unsigned)o >= GW_OUT_COUNT)
		o = GW_OUT_CLIENT_ERROR;
	atomic_fetch_add_explicit(&st_total[o], 1, memory_order_relaxed);
}

void gw_stats_bytes(uint64_t in, uint64_t out)
{
	if (in)
		atomic_fetch_add_explicit(&st_bytes_in, in, memory_order_relaxed);
	if (out)
		atomic_fetch_add_explicit(&st_bytes_out, out, memory_order_relaxed);
}

void gw_stats_retry(void)
{
	atomic_fetch_add_explicit(&st_retries, 1, memory_order_relaxed);
}

void gw_stats_replay(void)
{
	atomic_fetch_add_explicit(&st_replays, 1, memory_order_relaxed);
}

void gw_stats_handshake(uint64_t micros)
{
	lat_hist_add(&st_handshake, micros);
}

void gw_stats_get(struct gw_stats *out)
{
	int64_t conns;

	memset(out, 0, sizeof(*out));
	out->enabled = atomic_load(&st_enabled);
	out->max_connections = atomic_load(&st_max);
	conns = atomic_load_explicit(&st_connections, memory_order_relaxed);
	out->connections = conns > 0 ? (uint64_t)conns : 0;
	for (int o = 0; o < GW_OUT_COUNT; o++)
		out->connections_total[o] =
		    atomic_load_explicit(&st_total[o], memory_order_relaxed);
	out->bytes_in = atomic_load_explicit(&st_bytes_in, memory_order_relaxed);
	out->bytes_out = atomic_load_explicit(&st_bytes_out, memory_order_relaxed);
	out->retries = atomic_load_explicit(&st_retries, memory_order_relaxed);
	out->replays = atomic_load_explicit(&st_replays, memory_order_relaxed);
	lat_hist_read(&st_handshake, out->handshake, &out->handshake_count, &out->handshake_sum);
}

uint32_t gw_fd_share(uint32_t max_connections)
{
	struct rlimit rl;
	uint64_t lim, room;

	/* The hard limit: the engine raises the soft one to it at start. */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return max_connections;
	lim = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : rl.rlim_cur;
	if (lim == RLIM_INFINITY)
		return max_connections;
	room = lim > 2 * GW_FD_OTHERS ? (lim - GW_FD_OTHERS) / 4 : GW_FD_OTHERS / 4;
	return max_connections < room ? max_connections : (uint32_t)room;
}
