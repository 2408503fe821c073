/* snapshot: an immutable, reference-counted picture of the pool.
 *
 * The engine builds one (snap_builder_*), publishes it (snap_publish), and
 * from then on nobody changes it. FUSE threads take a reference at open
 * (snap_current) and drop it at release (snap_unref), so a reader sees one
 * consistent pool from the first byte to EOF. Heavy renderings are made once
 * per snapshot on first use (snap_cached) and shared by all readers. This
 * file knows nothing about formats.
 */
#ifndef PROXYFS_SNAPSHOT_H
#define PROXYFS_SNAPSHOT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "check_result.h"
#include "proxy.h"
#include "sbuf.h"

enum snap_anon { SNAP_ANON_UNKNOWN, SNAP_ANON_TRANSPARENT, SNAP_ANON_ANONYMOUS, SNAP_ANON_ELITE };

/* "transparent", "anonymous", "elite", else "unknown": the names every
 * output (live.json, proxyfs check --json) uses. */
const char *snap_anon_name(int anonymity);

/* The subsets of live proxies a snapshot indexes (by_folder): one per
 * protocol folder (the enum proxy_proto values), one per anonymity class,
 * then one per source, in the order the sources were added. */
enum snap_view {
	SNAP_VIEW_ELITE = PROXY_PROTO_COUNT,
	SNAP_VIEW_ANONYMOUS,
	SNAP_VIEW_TRANSPARENT,
	SNAP_VIEW_SOURCES, /* the first source's view */
};

/* What a tracked proxy is: live, failed, not known yet (or only our
 * network failed it), dead too long and no longer checked, or kept out by
 * control/remove. SNAP_ALIVE is 0 so a record that says nothing is live. */
enum snap_state { SNAP_ALIVE, SNAP_DEAD, SNAP_UNKNOWN, SNAP_DROPPED, SNAP_REMOVED };

/* Who took a live proxy out of the live set before its re-check said so
 * (an ejection): a user through control/bad, or the gateway after
 * [gateway] eject_after failures of real traffic in a row. */
enum snap_eject_by {
	SNAP_EJECT_NONE,
	SNAP_EJECT_CONTROL,
	SNAP_EJECT_GATEWAY,
	SNAP_EJECT_BY_COUNT
};

/* How many of the last ejections stat.json shows. */
#define SNAP_EJECTED_KEEP 8

/* One ejection: which proxy, who, when and why. */
struct snap_ejection {
	const char *uri;
	const char *why;
	int64_t at;  /* unix seconds */
	uint8_t by;  /* enum snap_eject_by */
};

/* A proxy's last check result in a few bytes, worded only when rendered
 * (fs/render.c): 100,000 proxies keep no text for it. */
struct snap_result {
	uint8_t result;	     /* enum chk_result + 1; 0: none since the daemon started */
	uint8_t stage;	     /* enum chk_stage: where the check ended */
	uint8_t why;	     /* enum chk_why: why an answer did not count */
	uint8_t socks_reply; /* the SOCKS reply code of a refusal, 0 if none */
	uint16_t status;     /* the HTTP status answered, 0 if none */
	uint16_t err;	     /* the errno behind a refusal or reset, 0 if none */
};

/* Which address a proxy's country and network were looked up on: the exit
 * the judge saw (what a target sees), or, when no exit is known yet, the
 * address it is listed at. */
enum snap_geo_from { SNAP_GEO_NONE, SNAP_GEO_EXIT, SNAP_GEO_ENTRY };

/* One tracked proxy. Strings point into the snapshot's own arena. */
struct snap_proxy {
	const char *uri;     /* canonical URI, no newline */
	const char *host;    /* without brackets */
	const char *exit_ip; /* "" when unknown */
	const char *sources; /* source names joined with ','; "@control" marks control/add */
	uint16_t port;
	uint8_t proto;       /* enum proxy_proto of the URI (HTTP, SOCKS4, SOCKS5) */
	uint8_t folders;     /* bit (1 << enum proxy_proto) per folder it is listed in */
	uint8_t anonymity;   /* enum snap_anon: the worst of the ways it is listed */
	/* An HTTP proxy listed both http:// and https:// whose plain forwarding
	 * and CONNECT tunnel show different grades: each way's (enum snap_anon). */
	bool anon_split;
	uint8_t anon_http, anon_https;
	uint32_t latency_ms;
	int64_t last_checked; /* unix seconds */
	/* Why it is what it is (all.json, dead.txt, lookup/). */
	uint8_t state; /* enum snap_state */
	struct snap_result last;
	uint8_t ejected; /* enum snap_eject_by: out of the live set, waiting for its re-check */
	uint32_t fails_in_row;
	int64_t next_check; /* unix seconds it is due, 0 = not scheduled (removed,
			     * dropped) or now (queued, in flight: see state) */
	/* Where it comes out ([geo] databases): ISO 3166 alpha-2 country in
	 * upper case, "" when unknown; the autonomous system, 0 and "" when
	 * unknown; geo_from says which address they were looked up on. */
	char country[3];
	uint8_t geo_from; /* enum snap_geo_from */
	uint32_t asn;
	const char *as_org;
};

/* The live proxies of one country (code "" = unknown). */
struct snap_country {
	char code[3];
	uint32_t n;
	const uint32_t *idx;
};

/* A country's folder (/country/XX/) as a view number that names the same
 * country in every snapshot, since countries come and go between
 * snapshots: SNAP_VIEW_COUNTRY + (code[0] << 8 | code[1]) for an
 * upper-case code, SNAP_VIEW_COUNTRY itself for unknown. It is not in
 * by_folder; its proxies are those of its countries[] entry. */
#define SNAP_VIEW_COUNTRY 0x10000

#define SNAP_SAMPLE_INVALID 3

struct snap_source {
	const char *name;
	const char *url;
	const char *protocol; /* of lines without a scheme, as written; static, NULL if unknown */
	uint32_t proxies;  /* valid distinct proxy lines last read */
	uint32_t invalid;  /* lines that did not parse */
	uint32_t alive;
	const char *error; /* "" when the last read was fine */
	int64_t last_read; /* unix seconds of the last good read, 0 = never */
	int64_t last_try;  /* unix seconds of the last attempt, 0 = never */
	long http_status;  /* of the last download, 0 for files */
	uint32_t scraped;  /* proxies picked out of lines that were not proxy lines */
	uint64_t fetches_total, errors_total;
	const char *invalid_sample[SNAP_SAMPLE_INVALID]; /* first bad lines, NULL-padded */
};

struct snap_judge {
	const char *url;
	bool healthy;
	int64_t last_probe;   /* unix seconds, 0 = not yet */
	const char *error;    /* why it is set aside, "" when healthy */
	const char *our_addr; /* the address it sees for us, "" if unknown */
	uint64_t checks, ok;  /* checks through it, and how many found the proxy alive */
};

/* Engine figures at the time of the snapshot. Indexes are enum chk_result. */
#define SNAP_RESULT_CLASSES CHK_RESULT_COUNT

/* Why the adaptive concurrency limit is where it is. */
enum snap_limit_why {
	SNAP_LIMIT_CONFIGURED,  /* at its maximum */
	SNAP_LIMIT_LOCAL_ERROR, /* lowered: our side ran short (fds, ports, buffers) */
	SNAP_LIMIT_LOOP_LAG,    /* lowered: the event loop ran late */
	SNAP_LIMIT_LATENCY,     /* lowered: checks that succeed took far longer than usual */
	SNAP_LIMIT_RECOVERING,  /* growing back towards its maximum */
	SNAP_LIMIT_WHY_COUNT
};

struct snap_stats {
	uint64_t generation;     /* snapshot number, increases by one per publish */
	struct timespec built;   /* when built; the files' st_mtime */
	int64_t started;         /* daemon start, unix seconds */

	uint32_t total, alive, dead, unknown; /* the pool */
	uint32_t alive_by_folder[PROXY_PROTO_COUNT];
	uint32_t removed;        /* proxies kept out by control/remove */
	uint32_t dropped;        /* dead too long: kept but no longer checked */

	bool scan_running;
	uint64_t scan_generation;  /* scans started so far */
	uint32_t scan_checked, scan_total;
	int64_t scan_started, scan_finished; /* unix seconds, 0 = never */
	double last_scan_seconds;

	uint32_t in_flight;
	uint32_t concurrency;       /* the current (adaptive) limit */
	uint32_t concurrency_conf;  /* what the config asked for */
	uint32_t concurrency_fd_max; /* what the open-file limit leaves of it (the clamp) */
	uint32_t in_flight_max;
	enum snap_limit_why concurrency_why; /* why the limit is where it is */
	uint64_t concurrency_lowered[SNAP_LIMIT_WHY_COUNT]; /* times lowered, by why */
	double latency_ratio;       /* checks' latency over their proxies' usual; 0 = none */
	uint64_t checks_total[SNAP_RESULT_CLASSES];
	uint64_t local_requeues_total; /* checks put back because our side failed */
	bool paused;               /* no judge answers: checking waits */
	uint64_t held_total;       /* failures not applied while the judges were in doubt */
	uint64_t retries_total;
	uint64_t ejections_total[SNAP_EJECT_BY_COUNT]; /* live proxies ejected, by who */
	struct snap_ejection ejected[SNAP_EJECTED_KEEP]; /* the last ones, newest first */
	uint32_t nejected;

	uint64_t store_writes_total;
	uint64_t store_errors_total;
	const char *store_error;   /* "" when fine */
	const char *health;        /* "ok" or "degraded: <why>" (no newline) */
	uint64_t snapshots_total;
	bool hide_credentials;     /* [proxyfs] hide_credentials: readers leave user:pass@ out */
	/* The [geo] databases (stat.json "geo", the metrics), by enum
	 * snap_geo_db, and the lookups made so far. */
	struct snap_geo_db {
		const char *path;    /* the file in use or wanted; NULL when off */
		const char *type;    /* its database_type, "" when none is loaded */
		const char *error;   /* why it is not (or no longer) read, "" when fine */
		int64_t build_epoch; /* the loaded one's build time (unix seconds), 0 = none */
	} geo[2];
	uint64_t geo_lookups_total;
};

enum snap_geo_db_kind { SNAP_GEO_COUNTRY_DB, SNAP_GEO_ASN_DB };

struct snap_keyed;

/* Render slots a snapshot caches (filled by whoever renders). */
#define SNAP_CACHE_SLOTS 16

struct snapshot {
	atomic_uint refs;
	struct snap_stats stats;

	const struct snap_proxy *live; /* alive proxies, fastest first */
	uint32_t nlive;
	/* Every tracked proxy: all[0..nlive) is live[], then the others
	 * (dead, unknown, dropped, removed) in no set order. */
	const struct snap_proxy *all;
	uint32_t nall;
	/* Indexes into live[] of the proxies in each view (enum snap_view),
	 * same order; nviews = SNAP_VIEW_SOURCES + nsources. */
	const uint32_t *const *by_folder;
	const uint32_t *nby_folder;
	uint32_t nviews;

	const struct snap_source *sources;
	uint32_t nsources;
	const struct snap_judge *judges;
	uint32_t njudges;

	/* Live proxies by country (the tree's /country/XX/): one entry per
	 * country some live proxy comes out in, sorted by code, then the
	 * live proxies of unknown country under code "" (present only when
	 * there are such). idx[] holds indexes into live[], fastest first. */
	const struct snap_country *countries;
	uint32_t ncountries;

	/* Lazily rendered files; cache_lock guards cache[], ready[] and
	 * keyed (the renderings of slot -1, see snap_cached). */
	pthread_mutex_t cache_lock;
	struct sbuf cache[SNAP_CACHE_SLOTS];
	bool ready[SNAP_CACHE_SLOTS];
	struct snap_keyed *keyed;

	void *arena;   /* owns every string and array above but all[] */
	void *records; /* owns all[] (and so live[]) */
};

/* --- readers (any thread) --- */

/* The published snapshot with a reference taken; never NULL after
 * snap_system_init(). Drop it with snap_unref(). */
struct snapshot *snap_current(void);
struct snapshot *snap_ref(struct snapshot *s);
void snap_unref(struct snapshot *s);

typedef void (*snap_render_fn)(const struct snapshot *s, int arg, struct sbuf *out);

/* The rendering in slot (0..SNAP_CACHE_SLOTS-1), made by render(s, arg, ...)
 * on first use and kept for the snapshot's life. Slot -1: a rendering of
 * a folder made up at lookup (a source's, a country's), kept the same way
 * in a list of the snapshot's, found by render and arg. The caller keeps
 * its snapshot reference while it uses the result. Returns NULL if the
 * rendering failed for lack of memory. */
const struct sbuf *snap_cached(struct snapshot *s, int slot, snap_render_fn render, int arg);

/* Renderings snap_cached() has made since the process started, over every
 * snapshot and slot: at most one per cached file and snapshot, however many
 * read it (proxyfs_renderings_total; the benchmark checks it that way). */
uint64_t snap_renderings(void);

/* The view of code ("DE", "de", or "" for unknown; case-insensitive), or
 * -1 when code is not two ASCII letters nor "". */
int snap_country_view(const char *code);

/* The countries[] entry of view (a country view of s), or NULL when view
 * is no country view or s has no live proxy there. */
const struct snap_country *snap_view_country(const struct snapshot *s, int view);

/* --- the engine --- */

/* Publishes an empty snapshot so snap_current() always has one. */
int snap_system_init(void);
/* Drops the published snapshot (at exit, after the filesystem stopped). */
void snap_system_fini(void);

struct snap_builder;

struct snap_builder *snap_builder_new(void);
/* Room for n proxies, when the caller knows how many will come: one
 * allocation instead of a series of growing ones. 0 or -ENOMEM. */
int snap_builder_reserve(struct snap_builder *b, uint32_t n);
/* Copies the proxy's strings; p's own pointers need not outlive the call.
 * A proxy whose state is not SNAP_ALIVE goes to all[] only. */
int snap_builder_add(struct snap_builder *b, const struct snap_proxy *p);
int snap_builder_add_source(struct snap_builder *b, const struct snap_source *src);
int snap_builder_add_judge(struct snap_builder *b, const struct snap_judge *j);
/* Copies stats (and its strings). */
void snap_builder_set_stats(struct snap_builder *b, const struct snap_stats *st);
/* Sorts by latency, builds the folder indexes, and returns the finished
 * snapshot (refs = 1) or NULL on allocation failure; frees the builder
 * either way. */
struct snapshot *snap_builder_finish(struct snap_builder *b);
void snap_builder_free(struct snap_builder *b);

/* Makes s the current snapshot (takes over the caller's reference) and
 * drops the reference on the previous one. */
void snap_publish(struct snapshot *s);

#endif
