/* http_stats: the HTTP front's live figures, for stat.json and /metrics.
 *
 * The front counts here as it serves; fs/render.c reads the figures when
 * it renders (they are live, not fixed per snapshot). Counters are
 * relaxed atomics: safe from any thread, never a lock on the request path.
 */
#ifndef PROXYFS_HTTP_STATS_H
#define PROXYFS_HTTP_STATS_H

#include <stdbool.h>
#include <stdint.h>

/* What a request asked for, the label "class" of the request counter. */
enum http_class {
	HTTP_CLASS_PICK,    /* random, next, session, get-proxy */
	HTTP_CLASS_LIST,    /* live.txt, live.json, all.json, dead.txt, formats, ... */
	HTTP_CLASS_STAT,    /* stat.json, stat */
	HTTP_CLASS_METRICS, /* metrics, prometheus/proxyfs.prom */
	HTTP_CLASS_HEALTH,
	HTTP_CLASS_CONTROL, /* control/..., reload */
	HTTP_CLASS_DIR,	    /* a directory's listing */
	HTTP_CLASS_OTHER,   /* unknown paths, refused requests */
	HTTP_CLASS_COUNT
};

/* The status codes counted one by one; any other counts as the last. */
#define HTTP_STATS_CODES 14
/* Upper bounds (seconds) of the latency histogram's buckets, +Inf apart. */
#define HTTP_STATS_BUCKETS 12

struct http_stats {
	bool enabled; /* the front is serving */
	uint64_t requests[HTTP_CLASS_COUNT][HTTP_STATS_CODES];
	uint64_t rate_limited;
	uint64_t latency[HTTP_STATS_BUCKETS]; /* cumulative, as Prometheus wants */
	uint64_t latency_count;
	double latency_sum;   /* seconds */
	uint64_t connections; /* open now */
	uint64_t connections_total;
	uint64_t connections_refused; /* closed at once: over max_connections */
};

const char *http_class_name(enum http_class c);
/* The status code counted in slot i, 0 for the last ("other"). */
int http_stats_code(int i);
/* A bucket's upper bound as Prometheus prints it ("0.0005"). */
const char *http_stats_bound(int i);

void http_stats_set_enabled(bool on);
void http_stats_request(enum http_class c, int code, uint64_t micros);
void http_stats_rate_limited(void);
void http_stats_connection(int delta);
void http_stats_refused(void);

/* A copy of the figures now. */
void http_stats_get(struct http_stats *out);

#endif
