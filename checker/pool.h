/* pool: the proxies the engine knows, keyed by canonical URI.
 *
 * A chained hash table of entries, each holding what the engine needs to
 * check a proxy and what it learned. Owned and touched by the engine thread
 * only, so nothing here locks. Knows nothing about checking or publishing.
 *
 * The key is proxy_format_key()'s: an HTTP proxy listed https:// (checked
 * through CONNECT) and the same proxy listed http:// (checked by plain
 * forwarding) are two entries, "twins", since each way has its own result
 * and anonymity; both print as http://.
 */
#ifndef PROXYFS_POOL_H
#define PROXYFS_POOL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"
#include "snapshot.h"

enum pool_state { POOL_UNKNOWN, POOL_ALIVE, POOL_DEAD };

union pool_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct chk;
struct judge;

struct pool_entry {
	struct pool_entry *hnext;
	char *uri;                 /* the key (https:// when tunnel); one allocation holds
				    * uri, host, user, pass */
	const char *host, *user, *pass; /* user and pass are "" when none */
	struct judge *judge;       /* the judge of chk, holding a reference on its set */
	struct chk *chk;           /* the check in flight, or NULL */
	struct pool_entry *qnext;  /* the next in the engine queue it waits in */
	uint64_t qdue;             /* when a retry waiting in the engine is due (ms) */
	uint64_t sources;          /* bit i: listed by source i < 64 of the config */
	uint64_t *src_more;        /* sources 64 and up: [0] = words after it, then bit i
				    * of word 1 + (i - 64) / 64; NULL when none (the common case) */
	union pool_addr addr;      /* valid when have_addr */
	int64_t last_checked;      /* unix seconds, 0 = never */
	uint32_t latency_ms;
	uint32_t successes, failures, fails_in_row;
	uint32_t scan;             /* the scan that last queued it */
	uint32_t due;              /* next check, engine clock seconds (while heap_idx) */
	uint32_t heap_idx;         /* slot in the engine's schedule + 1; 0 = not scheduled */
	uint32_t lag_mark;         /* the engine's lag_ms when the check in flight started */
	int64_t dead_since;        /* unix seconds of the first failure in a row, 0 = alive */
	struct snap_result last;   /* the last check's result, kept to say why (8 bytes) */
	uint8_t exit_family;       /* AF_INET / AF_INET6 of exit_addr; 0 = unknown */
	uint8_t exit_addr[16];     /* the address the judge saw through the proxy */
	/* Where it comes out ([geo]): looked up on exit_addr, else on addr, by
	 * eng_geo_sync when geo_gen is not the databases' generation (0 = the
	 * address changed). */
	char country[2];           /* ISO 3166 alpha-2, upper case; "\0\0" = unknown */
	uint8_t geo_from;          /* enum snap_geo_from */
	uint32_t asn;              /* 0 = unknown */
	uint32_t as_org;           /* geo_org() id, 0 = unknown */
	uint32_t geo_gen;
	uint16_t port;
	uint8_t proto;             /* enum proxy_proto: HTTP, SOCKS4 or SOCKS5 */
	uint8_t state;             /* enum pool_state */
	uint8_t folders;           /* bit (1 << enum proxy_proto) per folder when alive */
	uint8_t tries;             /* attempts in the current check round */
	uint8_t anonymity;         /* enum snap_anon */
	uint8_t ejected;           /* enum snap_eject_by: taken out of the live set by a
				    * report (control/bad, the gateway) until its next result */
	uint8_t gw_fails;          /* the gateway's failures with it in a row, since its last
				    * success there or check result (not persisted) */
	bool tunnel, remote_dns, have_addr;
	bool manual;               /* added through control/add */
	bool removed;              /* kept out by control/remove: never checked or shown */
	bool dropped;              /* dead too long (max_fails, dead_ttl_s): kept, not checked */
	bool queued;               /* in a queue of the engine (linked by qnext) */
	bool doubted;              /* live, failed while the judges were in doubt: the next
				    * failure counts */
	bool unlinked;             /* out of the table; freed once not queued nor in flight */
	bool has_twin;             /* the same proxy listed the other way is in the table */
};

struct pool;

struct pool *pool_new(void);
/* Frees the table and every entry still in it. */
void pool_free(struct pool *p);

struct pool_entry *pool_find(const struct pool *p, const char *uri);
/* The entry of the same HTTP proxy listed the other way (the twin of an
 * http:// entry is its https:// one and back), or NULL. Cheap for an entry
 * without one (has_twin). */
struct pool_entry *pool_twin(const struct pool *p, const struct pool_entry *e);
/* The URI to print for e (an https:// key prints http://): e->uri, or buf
 * (PROXY_URI_MAX bytes) holding it. */
const char *pool_entry_uri(const struct pool_entry *e, char *buf);
/* Returns the entry for a's canonical URI, creating it (state unknown) if
 * needed; *created says which. NULL on allocation failure. */
struct pool_entry *pool_get(struct pool *p, const struct proxy_addr *a, bool *created);
/* Takes e out of the table (marks it unlinked); the caller frees it with
 * pool_entry_free() once nothing refers to it. */
void pool_unlink(struct pool *p, struct pool_entry *e);
void pool_entry_free(struct pool_entry *e);

size_t pool_count(const struct pool *p);

/* Which sources list an entry, for any number of sources: the first 64 are
 * bits inline, the rest in a bitmap allocated only for the entries that need
 * it, so 100,000 proxies in a few sources cost 8 bytes each. */
bool pool_src_has(const struct pool_entry *e, size_t src);
/* Marks e as listed by src; 0 or -ENOMEM (then e is unchanged). */
int pool_src_add(struct pool_entry *e, size_t src);
void pool_src_del(struct pool_entry *e, size_t src);
bool pool_src_any(const struct pool_entry *e);
/* The first source at or after from that lists e, or SIZE_MAX. */
size_t pool_src_next(const struct pool_entry *e, size_t from);
/* Renumbers e's sources: old source o becomes map[o] (dropped when -1 or
 * o >= nmap). 0, or -ENOMEM when some past the 64th could not be kept. */
int pool_src_remap(struct pool_entry *e, const long *map, size_t nmap);

/* Iteration: e = pool_next(p, &it, NULL) for the first, then pool_next(p,
 * &it, e). Unlinking the entry last returned is allowed. */
struct pool_iter {
	size_t bucket;
	struct pool_entry *next;
};
struct pool_entry *pool_next(const struct pool *p, struct pool_iter *it, struct pool_entry *prev);

#endif
