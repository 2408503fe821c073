/* resolve: host names looked up off the caller's thread.
 *
 * getaddrinfo() can block for the system resolver's whole timeout (a name
 * server that does not answer, a network not up yet), which an event loop
 * cannot afford. Each lookup runs on a short thread of its own and hands
 * its result to the resolver's callback there, which passes it on to the
 * owner's thread. resolver_free() returns at once even while lookups wait
 * on the network: once it has returned no callback runs any more, and a
 * lookup that ends later only frees what it holds. It does not cache, and
 * it logs nothing.
 */
#ifndef PROXYFS_RESOLVE_H
#define PROXYFS_RESOLVE_H

#include <stdint.h>
#include <sys/socket.h>

struct resolve_result {
	int err;                      /* 0, -EHOSTUNREACH (no address), -ENOMEM, -EIO */
	struct sockaddr_storage addr; /* an IPv4 address when the name has one: every
				       * proxy protocol can reach it; port 0 */
	socklen_t addrlen;
	char error[128];              /* the resolver's reason, "" when err is 0 */
};

/* Called once per lookup, on the lookup's thread, with the resolver's lock
 * held: it must be quick and must not call resolver_*(). */
typedef void (*resolve_done_fn)(void *owner, uint64_t tag, const struct resolve_result *r);

struct resolver;

/* Makes no thread yet (so it may come before a fork). NULL when out of
 * memory. */
struct resolver *resolver_new(resolve_done_fn fn, void *owner);

/* Looks host up; fn(owner, tag, result) follows from another thread unless
 * the resolver is freed first. 0, or -errno when the lookup could not start
 * (-ENOMEM, -EAGAIN: no thread), and then fn is not called. */
int resolver_lookup(struct resolver *r, const char *host, uint64_t tag);

/* Never waits for a lookup: see above. */
void resolver_free(struct resolver *r);

/* Blocking, for the lookup threads and tests: host's address (IPv4 first)
 * into *out. Returns out->err. */
int resolve_now(const char *host, struct resolve_result *out);

#endif
