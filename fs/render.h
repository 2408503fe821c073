/* render: the content of every file in the mounted tree, from a snapshot.
 *
 * Each renderer appends one file's bytes to an sbuf and reads nothing but
 * its snapshot and its arguments: no clock, no globals, no I/O, so the same
 * snapshot always gives the same bytes and tests can call them directly.
 * The snap_render_fn-shaped ones can be handed to snap_cached(). Choosing a
 * proxy for /random or /next is the caller's business (it needs a random
 * number or a counter); render_pick only prints the one chosen. On
 * allocation failure the sbuf is marked failed (see sbuf.h).
 */
#ifndef PROXYFS_RENDER_H
#define PROXYFS_RENDER_H

#include <stdint.h>

#include "sbuf.h"
#include "snapshot.h"

/* The folder argument: a enum proxy_proto, or RENDER_ALL for the top level. */
#define RENDER_ALL (-1)

/* A proxy URI (or a source or judge URL, or a line from a list) as readers
 * may see it: as it is, or without its user:pass@ when the snapshot says
 * credentials are hidden. Every renderer writes URIs through this. */
void render_uri(const struct snapshot *s, const char *uri, struct sbuf *out);
/* The same, as a JSON string. */
void render_uri_json(const struct snapshot *s, const char *uri, struct sbuf *out);

/* Live proxies in a folder (RENDER_ALL: all of them). */
uint32_t render_count(const struct snapshot *s, int folder);

/* /random and /next: the URI of the folder's proxy number index (taken
 * modulo render_count) and "\n"; nothing at all when the folder is empty. */
void render_pick(const struct snapshot *s, int folder, uint32_t index, struct sbuf *out);

/* /live.txt: every live URI of the folder and "\n", fastest first. */
void render_live_txt(const struct snapshot *s, int folder, struct sbuf *out);

/* /live.json: a JSON array, one object per line, same order as live.txt. */
void render_live_json(const struct snapshot *s, int folder, struct sbuf *out);

/* /stat.json: pool, scan, engine, store and source figures as one JSON
 * object. uptime_seconds is as of the snapshot (built - started). arg unused. */
void render_stat_json(const struct snapshot *s, int arg, struct sbuf *out);

/* /metrics and /prometheus/proxyfs.prom: Prometheus text format 0.0.4.
 * arg unused. */
void render_metrics(const struct snapshot *s, int arg, struct sbuf *out);

/* /health: "ok" or "degraded: <why>", and "\n". arg unused. */
void render_health(const struct snapshot *s, int arg, struct sbuf *out);

#endif
