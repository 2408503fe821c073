/* ratelimit: a token bucket per client address, for the HTTP front.
 *
 * Each address gets burst tokens and rate more per second; a request takes
 * one. The table is bounded: when it is full, the address seen longest ago
 * is forgotten (it starts again with a full bucket). Safe from any thread
 * (one mutex guards the table).
 */
#ifndef PROXYFS_RATELIMIT_H
#define PROXYFS_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/* Most bytes of an address key (an IPv6 address and its family). */
#define RATELIMIT_KEY_MAX 17

struct ratelimit;

/* A limiter of rate tokens a second, burst at most, for at most max
 * addresses; NULL when rate is 0 (no limit) or out of memory. */
struct ratelimit *ratelimit_new(uint32_t rate, uint32_t burst, uint32_t max);
void ratelimit_free(struct ratelimit *rl);

/* Takes a token for the address key[0..len) at now_ms (a monotonic
 * clock): 0 when the request may go, else how many whole seconds (>= 1)
 * until a token is there. Always 0 with rl NULL. */
uint32_t ratelimit_take(struct ratelimit *rl, const void *key, size_t len, uint64_t now_ms);

#endif
