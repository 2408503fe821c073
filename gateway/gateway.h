/* gateway: one proxy address backed by the whole pool.
 *
 * A listener on [gateway] listen that speaks HTTP proxy (CONNECT and
 * absolute-form requests), SOCKS5 and SOCKS4/4a, told apart by the first
 * byte. Each client connection goes out through one live proxy of the
 * published snapshot (src/pick.h, src/session.h), reached with the
 * project's one implementation of each protocol (src/socks.h,
 * src/http_answer.h); an upstream that fails before anything was said to
 * the client is replaced by another (retries), and every upstream's outcome
 * is reported to whoever main wires in (the engine counts and ejects). Then
 * bytes are relayed unparsed. Its own thread and event loop; reads only
 * published snapshots; knows nothing of the engine or the tree. Counts in
 * src/gw_stats.h.
 */
#ifndef PROXYFS_GATEWAY_H
#define PROXYFS_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include "pick.h"

enum gw_policy { GW_POLICY_RANDOM, GW_POLICY_ROUND_ROBIN, GW_POLICY_FASTEST };

/* What the gateway is to do; main fills it from the config. The strings
 * are the caller's and need not outlive gw_start(). */
struct gw_conf {
	const char *const *listen; /* ADDR:PORT, IPv6 as [::1]:1080 */
	size_t nlisten;
	enum gw_policy policy;
	/* The default filter, narrowed by each client's user options (its
	 * source names are copied). */
	struct pick_filter filter;
	/* "user:pass" pairs a client must give; none: any user name is
	 * taken, as options only. */
	char *const *users;
	size_t nusers;
	int retries;		 /* further upstreams tried after the first fails */
	int max_connections;	 /* client connections open at once */
	int per_client;		 /* of them from one client address */
	int handshake_timeout_s; /* accept to tunnel ready */
	int idle_timeout_s;	 /* no byte either way in a tunnel */
};

/* What the gateway tells the pool: an upstream (its URI as the snapshot
 * names it) worked (ok) or failed real traffic, and why. Called on the
 * gateway's thread; must not block. */
struct gw_report {
	void (*report)(void *arg, const char *uri, bool ok, const char *why);
	void *arg;
};

struct gateway;

/* Binds every listen address and starts the gateway's thread;
 * snap_system_init() done, libevent's threading on. report must outlive
 * the gateway. NULL with why in err. */
struct gateway *gw_start(const struct gw_conf *conf, const struct gw_report *report, char *err,
			 size_t errlen);

/* Stops: the loop exits, every connection is closed, the thread joined.
 * NULL is ignored. */
void gw_stop(struct gateway *g);

#endif
