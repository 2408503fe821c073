/* store: the pool on disk, in SQLite (WAL), written by a thread of its own.
 *
 * The engine hands records to store_put()/store_*() which only queue them;
 * the store thread writes the queue in batched transactions, so the engine
 * never waits on the disk. store_load() reads the last known pool at start.
 * A write error is counted and reported (store_status), never fatal: the
 * queue is kept (bounded) and written when the disk works again.
 */
#ifndef PROXYFS_STORE_H
#define PROXYFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_state { STORE_UNKNOWN = 0, STORE_ALIVE = 1, STORE_DEAD = 2, STORE_DROPPED = 3 };

/* One proxy as remembered. Strings are borrowed for the call. */
struct store_rec {
	const char *uri;       /* canonical URI, the key */
	int proto;             /* enum proxy_proto */
	int folders;           /* bitmask of folders (see snapshot.h) */
	int state;             /* enum store_state */
	uint32_t latency_ms;
	int64_t last_checked;  /* unix seconds, 0 = never */
	uint32_t successes, failures, fails_in_row;
	const char *sources;   /* comma-joined source names */
	const char *exit_ip;   /* "" when unknown */
	int anonymity;         /* enum snap_anon */
};

struct store;

/* Opens (creating with mode 0600, and the schema, as needed) the database
 * at path, and holds path.lock so that no second daemon opens it while this
 * one has it (that one is refused, its message naming this one's pid).
 * Does not start the thread yet. NULL with a message in err. */
struct store *store_open(const char *path, char *err, size_t errlen);
/* What path.lock says about its holder, after the pid: a mountpoint, say.
 * 0 or -errno. */
int store_set_owner(struct store *s, const char *note);
/* Starts the writer thread; 0 or -errno. */
int store_start(struct store *s);
/* Writes what is queued, stops the thread, closes the database. */
void store_close(struct store *s);

/* Calls fn for every remembered proxy (before store_start, from the
 * caller's thread). 0 or -EIO. */
int store_load(struct store *s, void (*fn)(void *arg, const struct store_rec *r), void *arg);
/* Calls fn for every removed URI. 0 or -EIO. */
int store_load_removed(struct store *s, void (*fn)(void *arg, const char *uri), void *arg);

/* Queue a write (any thread; never blocks on disk). 0 or -ENOMEM. */
int store_put(struct store *s, const struct store_rec *r);
int store_delete(struct store *s, const char *uri);
int store_mark_removed(struct store *s, const char *uri);   /* also deletes the proxy */
int store_unmark_removed(struct store *s, const char *uri);

/* Blocks until everything queued before the call is on disk (or failed). */
void store_flush(struct store *s);

struct store_status {
	uint64_t writes_total;  /* records written */
	uint64_t errors_total;  /* failed transactions */
	uint32_t queued;
	char error[256];        /* last error, "" when the last write was fine */
};
void store_get_status(struct store *s, struct store_status *out);

#endif
