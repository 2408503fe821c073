/* Unit tests for gw_stats: the gateway's counters as the renderers read
 * them (outcomes, bytes each way, cumulative handshake buckets, the open
 * count) and its share of open files (gw_fd_share) under a lowered limit. */
#include "gw_stats.h"
#include "testutil.h"

#include <sys/resource.h>

static void test_counters(void)
{
	struct gw_stats st;

	gw_stats_set_enabled(true, 100);
	gw_stats_connection(1);
	gw_stats_connection(1);
	gw_stats_connection(-1);
	gw_stats_outcome(GW_OUT_OK);
	gw_stats_outcome(GW_OUT_OK);
	gw_stats_outcome(GW_OUT_AUTH_FAILED);
	gw_stats_outcome((enum gw_outcome)99); /* out of range: a client error */
	gw_stats_bytes(10, 0);
	gw_stats_bytes(5, 7);
	gw_stats_retry();
	gw_stats_replay();
	gw_stats_replay();
	gw_stats_handshake(500);      /* <= 1 ms */
	gw_stats_handshake(3000);     /* <= 5 ms */
	gw_stats_handshake(20000000); /* past 10 s: +Inf only */
	gw_stats_get(&st);
	CHECK(st.enabled);
	CHECK_INT(st.max_connections, 100);
	CHECK_INT(st.connections, 1);
	CHECK_INT(st.connections_total[GW_OUT_OK], 2);
	CHECK_INT(st.connections_total[GW_OUT_AUTH_FAILED], 1);
	CHECK_INT(st.connections_total[GW_OUT_CLIENT_ERROR], 1);
	CHECK_INT(st.bytes_in, 15);
	CHECK_INT(st.bytes_out, 7);
	CHECK_INT(st.retries, 1);
	CHECK_INT(st.replays, 2);
	CHECK_INT(st.handshake[0], 1);
	CHECK_INT(st.handshake[1], 1);
	CHECK_INT(st.handshake[2], 2);
	CHECK_INT(st.handshake[GW_STATS_BUCKETS - 1], 2);
	CHECK_INT(st.handshake_count, 3);
	CHECK(st.handshake_sum > 20.0 && st.handshake_sum < 20.01);
	CHECK_STR(gw_outcome_name(GW_OUT_REFUSED_LIMIT), "refused_limit");
	CHECK_STR(gw_stats_bound(GW_STATS_BUCKETS), "+Inf");
	gw_stats_set_enabled(false, 0);
	gw_stats_get(&st);
	CHECK(!st.enabled);
	CHECK_INT(st.max_connections, 0);
}

static void test_fd_share(void)
{
	struct rlimit rl = {4096, 4096};

	/* Lowering both limits is always allowed (raising is not). */
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_INT(gw_fd_share(100), 100);
	CHECK_INT(gw_fd_share(1000000), (4096 - GW_FD_OTHERS) / 4);
	rl.rlim_cur = rl.rlim_max = 600;
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_INT(gw_fd_share(1000), GW_FD_OTHERS / 4);
}

int main(void)
{
	test_counters();
	test_fd_share();
	return test_exit_code();
}
