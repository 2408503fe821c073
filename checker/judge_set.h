/* judge_set: the healthy-judge rotation: the judge URLs a check can go through,
 * and whether each works.
 *
 * A judge given by name is looked up off the engine's thread (resolve.h)
 * at start and again before every probe; one that does not resolve is set
 * aside, since SOCKS4 and SOCKS5 checks need its address. Every judge is
 * probed directly (no proxy) at start and every judge_probe_s unless
 * probing is off: one whose answer is not a 200 containing `expect` is set
 * aside until a later probe succeeds; a probe also tells the address the
 * judge sees for us, which anonymity needs. Checks go round-robin over the
 * healthy judges.
 *
 * A set is reference counted: the engine holds the current one, and every
 * check in flight holds the set of the judge it goes through, so a reload
 * that replaces the set leaves those checks their judge (URL, address, TLS
 * context) until they end, and the old set is freed by the last of them.
 * Owned by the engine thread; lookups and probes run elsewhere and come
 * back through the engine.
 */
#ifndef PROXYFS_JUDGE_SET_H
#define PROXYFS_JUDGE_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "config.h"
#include "fetch.h"
#include "resolve.h"

#define JUDGES_MAX 32

struct judge_set;

struct judge {
	char *url;
	struct chk_judge chk;   /* chk.have_addr once its host resolved (or is an address) */
	struct judge_set *set;  /* the set it belongs to */
	bool healthy;           /* usable by checks: resolved, and answering when probed */
	bool probing;           /* a lookup or a probe is on its way */
	bool by_name;           /* its host is a name, looked up before every probe */
	int64_t last_probe;     /* unix seconds of the last lookup's or probe's answer, 0 = none */
	int64_t next_probe;     /* unix seconds */
	char error[256];        /* why it was set aside, "" when healthy */
	char our_addr[64];      /* the address it saw for us directly, "" if unknown */
	uint64_t checks;        /* checks sent through it */
	uint64_t ok;            /* of which the proxy was alive */
};

struct engine;

struct judge_set {
	struct judge v[JUDGES_MAX];
	size_t n;
	size_t rr;               /* round-robin position */
	const char *our[JUDGES_MAX]; /* the distinct our_addr values, for ja_parse */
	size_t nour;
	bool probe;              /* probed directly (probe_judges); else only looked up */
	uint64_t id;             /* set by the owner: which set a lookup or probe was for */
	struct engine *owner;    /* set by the owner: the engine whose checks go through
				  * this set, which is how a check's end finds it */
	unsigned refs;           /* the owner's, plus one per check through one of its
				  * judges; touched on the engine thread only */
};

/* Sets up every judge of c (parsing, TLS; no lookup, which never blocks
 * here): a new set with one reference, whose judges are healthy at once
 * only when their host is an address and probe is false. NULL with a
 * message in err (a malformed URL, a CA file that does not load). */
struct judge_set *judges_new(const struct cfg *c, bool probe, char *err, size_t errlen);
struct judge_set *judges_ref(struct judge_set *js);
/* Drops a reference; the last one frees the set. NULL is ignored. */
void judges_unref(struct judge_set *js);

/* True once every judge has had an answer (lookup or probe, good or bad). */
bool judges_all_probed(const struct judge_set *js);

/* The next healthy judge for a check, or NULL when none is. */
struct judge *judges_pick(struct judge_set *js);
bool judges_any_healthy(const struct judge_set *js);

/* Whether j is due for its lookup or probe (always when force), and
 * marks it as on its way when it is. */
bool judges_probe_due(struct judge *j, int64_t now, bool force);
/* What j needs next once due or looked up: a lookup of its host, a
 * direct probe, or nothing (then judges_unprobed_ok() makes it healthy). */
enum judge_step { JUDGE_LOOKUP, JUDGE_PROBE, JUDGE_READY };
enum judge_step judges_next_step(const struct judge *j, bool looked_up);
/* A judge that needs no probe is healthy now; true if that changed it. */
bool judges_unprobed_ok(struct judge *j, int64_t now, int probe_s);

/* Applies a lookup's result to j (engine thread): the address on success
 * (0 is returned and the caller goes on with judges_next_step), else j is
 * set aside as not resolving and -EHOSTUNREACH returned. */
int judges_lookup_done(struct judge *j, const struct resolve_result *r, int64_t now,
		       int probe_s);

/* Fills req with a direct probe of judge j. */
void judges_probe_req(const struct judge *j, const struct cfg *c, struct fetch_req *req);
/* Applies a probe's result to j (engine thread); true if j's health changed. */
bool judges_probe_done(struct judge_set *js, struct judge *j, const struct fetch_result *r,
		       int64_t now, int probe_s);

#endif
