/* sources: reading the proxy lists the config names.
 *
 * Reads a list line by line, hands each proxy to the caller, counts and
 * samples the lines that do not parse, and remembers the last error. Local
 * files only for now; it does not touch the pool itself.
 */
#ifndef PROXYFS_SOURCES_H
#define PROXYFS_SOURCES_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "proxy.h"
#include "snapshot.h"

struct src_state {
	uint32_t proxies;  /* distinct proxies in the last good read */
	uint32_t invalid;  /* lines that did not parse in the last good read */
	int64_t last_read; /* unix seconds of the last good read, 0 = never */
	char error[256];   /* "" when the last read was fine */
	char *sample[SNAP_SAMPLE_INVALID]; /* the first bad lines, owned */
};

/* Called per proxy line; returns 0 when the proxy is new to this source,
 * 1 when the source listed it already, or -errno. */
typedef int (*src_line_fn)(void *arg, size_t src, const struct proxy_addr *a);

/* Opens the source's list. NULL (with st->error set and the last good
 * figures kept) when it cannot be read. */
FILE *src_open(struct src_state *st, const struct cfg_source *cs);

/* Reads every line of f (then closes it), calling fn for each proxy. */
void src_read(struct src_state *st, const struct cfg_source *cs, FILE *f, size_t idx,
	      src_line_fn fn, void *arg);

/* Adds the source's figures to a snapshot being built. */
void src_snapshot(const struct src_state *st, const struct cfg_source *cs, uint32_t alive,
		  struct snap_builder *b);

void src_state_clear(struct src_state *st);

#endif
