/* session: sticky picks, one table shared by every front.
 *
 * A session KEY asked with a filter (the tree's /session/KEY in any
 * folder, the HTTP front's /session/KEY?..., later the gateway's
 * USER-session-KEY) gets the same live proxy for as long as that proxy
 * stays live and the key was used within the time to live. A new key, an
 * expired one, or one whose proxy left the filter's live set is placed by
 * rendezvous hashing of KEY over the proxies the filter matches: the same
 * set gives the same placement on every front and after a restart, and a
 * proxy joining the set never moves a key that is placed. The table is
 * bounded: when full, the key used longest ago is dropped. Keys differ by
 * filter: /socks5/session/a and /session/a are two sessions.
 *
 * Safe from any thread (one mutex guards the table). Reads snapshots;
 * knows no front.
 */
#ifndef PROXYFS_SESSION_H
#define PROXYFS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pick.h"
#include "snapshot.h"

#define SESSION_KEY_MAX 64
#define SESSION_TTL_DEFAULT 600
#define SESSION_MAX_DEFAULT 100000

/* Sets the time to live (seconds) and the most keys kept; callable at any
 * time (a reload): a smaller bound drops the oldest keys at once. */
void session_configure(uint32_t ttl_s, uint32_t max);

/* Drops every key (at exit; tests). */
void session_clear(void);

/* Is key a session name: 1 to SESSION_KEY_MAX characters, each of
 * [A-Za-z0-9._-], and not "." or ".." (which no path can name)? */
bool session_key_valid(const char *key, size_t len);

/* The live proxy for key (len bytes) under f in s: its index into
 * s->live in *index. 0; -EINVAL for a key that is not a session name;
 * -ENOENT when f matches no live proxy in s (the key keeps its proxy, to
 * come back to if that proxy shows again before the key expires); -ENOMEM. */
int session_pick(const struct snapshot *s, const struct pick_filter *f, const char *key, size_t len,
		 uint32_t *index);

/* The table's figures (stat.json, the metrics). */
struct session_stats {
	uint32_t active;	/* keys in the table, used within the time to live */
	uint32_t max;		/* the bound */
	uint32_t ttl_s;
	uint64_t created_total; /* keys placed for the first time (or again, expired) */
	uint64_t moved_total;	/* keys placed again because their proxy left the set */
	uint64_t dropped_total; /* keys dropped because the table was full */
};
void session_get_stats(struct session_stats *out);

#endif
