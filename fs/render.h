/* render: the content of every file in the mounted tree, from a snapshot.
 *
 * Each renderer appends one file's bytes to an sbuf and reads nothing but
 * its snapshot and its arguments: no clock, no globals, no I/O, so the same
 * snapshot always gives the same bytes and tests can call them directly.
 * (One exception: stat.json and metrics show the session table's figures
 * as they are now.)
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

/* The folder argument: a view of the snapshot (enum snap_view, a country
 * view), or RENDER_ALL for the top level. */
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

/* The same two lists over the live proxies idx[0..n) names (indexes into
 * s->live, in the order given; NULL: the first n of s->live): what a
 * filter picked (pick_list). */
void render_live_txt_of(const struct snapshot *s, const uint32_t *idx, uint32_t n, struct sbuf *out);
void render_live_json_of(const struct snapshot *s, const uint32_t *idx, uint32_t n,
			 struct sbuf *out);

/* A proxy's country and network as JSON members, each led by a comma:
 * "country" (ISO code), "asn", "as_org", "geo_from" ("exit", "entry"),
 * each null when not known (live.json, all.json, lookup/). */
void render_geo_json(const struct snap_proxy *p, struct sbuf *out);

/* /stat.json: pool, scan, engine, store and source figures as one JSON
 * object. uptime_seconds is as of the snapshot (built - started). The
 * "sessions" object is the session table's now (session.h) and "http" the
 * HTTP front's live figures (http_stats.h): read when rendered, not fixed
 * per snapshot. arg unused. */
void render_stat_json(const struct snapshot *s, int arg, struct sbuf *out);

/* /metrics and /prometheus/proxyfs.prom: Prometheus text format 0.0.4;
 * the proxyfs_sessions_* figures are the session table's now, and the
 * proxyfs_http_* ones (while the HTTP front serves) its live figures.
 * arg unused. */
void render_metrics(const struct snapshot *s, int arg, struct sbuf *out);

/* /health: "ok" or "degraded: <why>", and "\n". arg unused. */
void render_health(const struct snapshot *s, int arg, struct sbuf *out);

/* --- files for the programs people chain through proxies
 * (render_formats.c); arg unused --- */

/* /formats/proxychains.conf: a whole proxychains-ng config (random_chain,
 * chain_len = 1, proxy_dns, timeouts) whose [ProxyList] holds, fastest
 * first, every live proxy that can carry a TCP connection, as "type host
 * port [user pass]": HTTP proxies whose CONNECT was verified (https/) as
 * http, socks4, socks5. Left out (and counted in the header): HTTP proxies
 * that only forward, DNS names (random_chain takes numeric addresses
 * only), credentials hidden from readers or with blanks, and beyond the
 * 512 proxychains reads. */
void render_proxychains_conf(const struct snapshot *s, int arg, struct sbuf *out);

/* /formats/curl.txt: every live proxy as `curl -x` takes it, one a line,
 * fastest first: http:// (forwarding or CONNECT), socks4:// (socks4a://
 * as listed), socks5h:// (names resolved by the proxy). */
void render_curl_txt(const struct snapshot *s, int arg, struct sbuf *out);

/* --- why a proxy is what it is (render_all.c) --- */

/* "alive", "dead", "unknown", "dropped" or "removed" (enum snap_state). */
const char *render_state_name(int state);

/* A last result in words: its class and what tells it apart, e.g.
 * "timeout after connect, waiting for the judge's answer", "refused:
 * connection refused", "wrong_answer: 200 without the expected text",
 * "auth: 407"; "not checked since start" when there is none. */
void render_result(const struct snap_result *r, struct sbuf *out);

/* /all.json: a JSON array, one object a line, of every tracked proxy:
 * the live ones fastest first, then the others by state and URI. Each:
 * uri, protocol, state, result (class or null; "reported_bad" for a
 * proxy control/bad took out, until its re-check), detail (render_result),
 * fails_in_row, last_checked, next_check (unix seconds or null),
 * latency_ms (null unless alive), country, asn, as_org, geo_from
 * (render_geo_json), sources. arg unused. */
void render_all_json(const struct snapshot *s, int arg, struct sbuf *out);

/* /dead.txt: "URI DETAIL" a line for each dead proxy, by URI. arg unused. */
void render_dead_txt(const struct snapshot *s, int arg, struct sbuf *out);

/* /removed.txt: the URI of each proxy control/remove keeps out, by URI
 * (a tunnel's as https://, the line that control/add takes back). arg unused. */
void render_removed_txt(const struct snapshot *s, int arg, struct sbuf *out);

/* /lookup/NAME: the all.json object of each proxy NAME names, one a line
 * (JSON Lines); returns how many (0: nothing written, the name is
 * unknown). NAME is a URI with its slashes written %2F (any %XX is
 * decoded: socks5:%2F%2Fhost:1080), naming that proxy, or a line
 * without a scheme (host:port, [v6]:port), naming every proxy on that
 * host and port whatever its scheme and credentials. */
uint32_t render_lookup(const struct snapshot *s, const char *name, struct sbuf *out);

#endif
