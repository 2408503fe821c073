/* sources: the proxy lists the config names, and what became of each.
 *
 * Turns a list's text (a local file, or a download handed over by the
 * engine) into proxies for the caller: proxy lines first, and where a line
 * is not one, whatever proxies the scraper finds in it (HTML, JSON, CSV).
 * Counts what was read and skipped, samples bad lines, and keeps each
 * source's last result, error and validators. It does not touch the pool
 * and does not download anything itself.
 */
#ifndef PROXYFS_SOURCES_H
#define PROXYFS_SOURCES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "proxy.h"
#include "snapshot.h"

struct src_state {
	uint32_t proxies;  /* distinct proxies in the last good read */
	uint32_t invalid;  /* lines with no proxy in them, in the last good read */
	uint32_t scraped;  /* proxies picked out of lines that were not proxy lines */
	int64_t last_read; /* unix seconds of the last good read, 0 = never */
	int64_t last_try;  /* unix seconds of the last attempt, 0 = never */
	long http_status;  /* of the last download, 0 for files */
	char error[256];   /* "" when the last attempt was fine */
	char *sample[SNAP_SAMPLE_INVALID]; /* the first bad lines, owned */
	char *etag, *last_modified;        /* the last download's validators, owned */
	uint64_t next_ms;  /* engine clock (ms) of the next refresh */
	bool busy;         /* a download is on its way */
	uint64_t fetches_total, errors_total;
};

/* Called per proxy; returns 0 when the proxy is new to this source, 1 when
 * the source listed it already, or -errno. */
typedef int (*src_line_fn)(void *arg, size_t src, const struct proxy_addr *a);

/* True when the source is a download rather than a local file. */
bool src_is_remote(const struct cfg_source *cs);

/* Opens a local list. NULL (with st->error set and the last good figures
 * kept) when it cannot be read. */
FILE *src_open(struct src_state *st, const struct cfg_source *cs);

/* Reads every line of f (then closes it), calling fn for each proxy. */
void src_read(struct src_state *st, const struct cfg_source *cs, FILE *f, size_t idx,
	      src_line_fn fn, void *arg);

/* The same over a downloaded text of len bytes. */
void src_read_text(struct src_state *st, const struct cfg_source *cs, const char *text,
		   size_t len, size_t idx, src_line_fn fn, void *arg);

/* Records a failed attempt (the last good list stays). */
void src_failed(struct src_state *st, const char *why, long http_status);

/* Adds the source's figures to a snapshot being built. */
void src_snapshot(const struct src_state *st, const struct cfg_source *cs, uint32_t alive,
		  struct snap_builder *b);

/* Frees what st owns and zeroes it. */
void src_state_clear(struct src_state *st);

#endif
