/* pool: the proxies the engine knows, keyed by canonical URI.
 *
 * A chained hash table of entries, each holding what the engine needs to
 * check a proxy and what it learned. Owned and touched by the engine thread
 * only, so nothing here locks. Knows nothing about checking or publishing.
 */
#ifndef PROXYFS_POOL_H
#define PROXYFS_POOL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

enum pool_state { POOL_UNKNOWN, POOL_ALIVE, POOL_DEAD };

union pool_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct chk;

struct pool_entry {
	struct pool_entry *hnext;
	char *uri;                 /* the key; one allocation holds uri, host, user, pass */
	const char *host, *user, *pass; /* user and pass are "" when none */
	struct chk *chk;           /* the check in flight, or NULL */
	struct pool_entry *qnext;  /* the next in the engine queue it waits in */
	uint64_t qdue;             /* when a retry waiting in the engine is due (ms) */
	uint64_t sources;          /* bit i: listed by source i of the config */
	union pool_addr addr;      /* valid when have_addr */
	int64_t last_checked;      /* unix seconds, 0 = never */
	uint32_t latency_ms;
	uint32_t successes, failures, fails_in_row;
	uint32_t scan;             /* the scan that last queued it */
	uint32_t due;              /* next check, engine clock seconds (while heap_idx) */
	uint32_t heap_idx;         /* slot in the engine's schedule + 1; 0 = not scheduled */
	uint32_t lag_mark;         /* the engine's lag_ms when the check in flight started */
	int64_t dead_since;        /* unix seconds of the first failure in a row, 0 = alive */
	uint8_t exit_family;       /* AF_INET / AF_INET6 of exit_addr; 0 = unknown */
	uint8_t exit_addr[16];     /* the address the judge saw through the proxy */
	uint16_t port;
	uint8_t proto;             /* enum proxy_proto: HTTP, SOCKS4 or SOCKS5 */
	uint8_t state;             /* enum pool_state */
	uint8_t folders;           /* bit (1 << enum proxy_proto) per folder when alive */
	uint8_t tries;             /* attempts in the current check round */
	uint8_t anonymity;         /* enum snap_anon */
	uint8_t judge;             /* the judge of the check in flight (index) */
	bool tunnel, remote_dns, have_addr;
	bool manual;               /* added through control/add */
	bool removed;              /* kept out by control/remove: never checked or shown */
	bool dropped;              /* dead too long (max_fails, dead_ttl_s): kept, not checked */
	bool queued;               /* in a queue of the engine (linked by qnext) */
	bool doubted;              /* live, failed while the judges were in doubt: the next
				    * failure counts */
	bool unlinked;             /* out of the table; freed once not queued nor in flight */
};

struct pool;

struct pool *pool_new(void);
/* Frees the table and every entry still in it. */
void pool_free(struct pool *p);

struct pool_entry *pool_find(const struct pool *p, const char *uri);
/* Returns the entry for a's canonical URI, creating it (state unknown) if
 * needed; *created says which. NULL on allocation failure. */
struct pool_entry *pool_get(struct pool *p, const struct proxy_addr *a, bool *created);
/* Takes e out of the table (marks it unlinked); the caller frees it with
 * pool_entry_free() once nothing refers to it. */
void pool_unlink(struct pool *p, struct pool_entry *e);
void pool_entry_free(struct pool_entry *e);

size_t pool_count(const struct pool *p);

/* Iteration: e = pool_next(p, &it, NULL) for the first, then pool_next(p,
 * &it, e). Unlinking the entry last returned is allowed. */
struct pool_iter {
	size_t bucket;
	struct pool_entry *next;
};
struct pool_entry *pool_next(const struct pool *p, struct pool_iter *it, struct pool_entry *prev);

#endif
