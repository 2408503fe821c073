/* judges: the judge URLs a check can go through, and whether each works.
 *
 * Every judge is probed directly (no proxy) at start and every
 * judge_probe_s: one whose answer is not a 200 containing `expect` is set
 * aside until a later probe succeeds; a probe also tells the address the
 * judge sees for us, which anonymity needs. Checks go round-robin over the
 * healthy judges. Owned by the engine thread; the probes' downloads run on
 * the fetcher's thread and come back through the engine.
 */
#ifndef PROXYFS_JUDGES_H
#define PROXYFS_JUDGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "config.h"
#include "fetch.h"

#define JUDGES_MAX 32

struct judge {
	char *url;
	struct chk_judge chk;
	bool healthy;        /* usable by checks */
	bool probing;        /* a probe is on its way */
	int64_t last_probe;  /* unix seconds of the last probe's answer, 0 = none yet */
	int64_t next_probe;  /* unix seconds */
	char error[256];     /* why it was set aside, "" when healthy */
	char our_addr[64];   /* the address it saw for us directly, "" if unknown */
	uint64_t checks;     /* checks sent through it */
	uint64_t ok;         /* of which the proxy was alive */
};

struct judge_set {
	struct judge v[JUDGES_MAX];
	size_t n;
	size_t rr;               /* round-robin position */
	const char *our[JUDGES_MAX]; /* the distinct our_addr values, for ja_parse */
	size_t nour;
};

/* Sets up every judge of c (parsing, resolving, TLS). With probe false
 * they start healthy and are never probed. 0, or -errno with a message. */
int judges_init(struct judge_set *js, const struct cfg *c, bool probe, char *err, size_t errlen);
void judges_free(struct judge_set *js);

/* True once every judge has answered (or failed) a probe. */
bool judges_all_probed(const struct judge_set *js);

/* The next healthy judge for a check, or NULL when none is. */
struct judge *judges_pick(struct judge_set *js);
bool judges_any_healthy(const struct judge_set *js);

/* Fills req with a direct probe of judge j. */
void judges_probe_req(const struct judge *j, const struct cfg *c, struct fetch_req *req);
/* Applies a probe's result to j (engine thread); true if j's health changed. */
bool judges_probe_done(struct judge_set *js, struct judge *j, const struct fetch_result *r,
		       int64_t now, int probe_s);

#endif
