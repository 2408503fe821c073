/* gw_stats: the gateway's live figures, for stat.json and /metrics.
 *
 * The gateway (gateway/) counts here as it serves; fs/render.c reads the
 * figures when it renders (live, not fixed per snapshot). It lives in src/
 * because both sides must see it and fs/ never sees gateway/. Counters are
 * relaxed atomics: safe from any thread, never a lock on the relay path.
 * Ejections are the engine's (its report path), not counted here.
 */
#ifndef PROXYFS_GW_STATS_H
#define PROXYFS_GW_STATS_H

#include <stdbool.h>
#include <stdint.h>

/* How a client connection ended, the label "outcome" of the total. */
enum gw_outcome {
	GW_OUT_OK,		/* tunnel made (whatever happened after) */
	GW_OUT_UPSTREAM_FAILED, /* every upstream tried failed, or none live */
	GW_OUT_CLIENT_ERROR,	/* bad request, junk, timeout before a tunnel */
	GW_OUT_AUTH_FAILED,	/* 407 / SOCKS auth failure / bad user options */
	GW_OUT_REFUSED_LIMIT,	/* over max_connections or per_client */
	GW_OUT_COUNT
};

/* Upper bounds (seconds) of the handshake latency buckets, +Inf apart. */
#define GW_STATS_BUCKETS 12

struct gw_stats {
	bool enabled;				  /* the gateway is listening */
	uint64_t max_connections;		  /* its share of open files, in connections */
	uint64_t connections;			  /* client connections open now */
	uint64_t connections_total[GW_OUT_COUNT]; /* ended or tunnelled, by outcome */
	uint64_t bytes_in;			  /* from clients towards upstreams */
	uint64_t bytes_out;			  /* from upstreams back to clients */
	uint64_t retries;			  /* upstream attempts after a client's first */
	/* Tunnels made again through another upstream after theirs closed
	 * before a byte came back (the client's first bytes sent again). */
	uint64_t replays;
	/* Time from a client's request to its upstream tunnel being ready,
	 * successful handshakes only; cumulative, as Prometheus wants. */
	uint64_t handshake[GW_STATS_BUCKETS];
	uint64_t handshake_count;
	double handshake_sum; /* seconds */
};

const char *gw_outcome_name(enum gw_outcome o);
/* A bucket's upper bound as Prometheus prints it ("0.005"), "+Inf" past. */
const char *gw_stats_bound(int i);

/* The gateway started (on) or stopped, with its max_connections. */
void gw_stats_set_enabled(bool on, uint64_t max_connections);
/* A client connection opened (+1) or closed (-1). */
void gw_stats_connection(int delta);
/* A client connection's outcome, once per connection. */
void gw_stats_outcome(enum gw_outcome o);
void gw_stats_bytes(uint64_t in, uint64_t out);
void gw_stats_retry(void);
void gw_stats_replay(void);
void gw_stats_handshake(uint64_t micros);

/* The client connections the gateway may hold given max_connections: at
 * most half of the open files the daemon can spare (the open-file limit
 * less GW_FD_OTHERS), 2 a connection, so the gateway and the checks never
 * starve each other. The gateway holds to it, and the engine leaves that
 * share out of the checks' budget. */
#define GW_FD_OTHERS 512
uint32_t gw_fd_share(uint32_t max_connections);

/* A copy of the figures now. */
void gw_stats_get(struct gw_stats *out);

#endif
