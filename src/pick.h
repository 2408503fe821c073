/* pick: which live proxies a reader gets, for every front.
 *
 * Each way of asking for proxies comes down to a struct pick_filter: a
 * folder of the tree (/socks5/, /anonymity/elite/, /sources/NAME/,
 * /country/DE/), the HTTP front's query (protocol=, anonymity=, source=,
 * country=, asn=, max_latency_ms=), the gateway's user name (-proto-socks5,
 * -country-de). This file matches a filter against
 * a snapshot and picks from what matches: a random proxy (or N distinct
 * ones), the next in turn, the whole list in order. It reads only the
 * snapshot it is given (and, for "next", its own turn counters); it keeps
 * no proxy and knows no front. Safe from any thread.
 */
#ifndef PROXYFS_PICK_H
#define PROXYFS_PICK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

/* Most source names a filter can name. */
#define PICK_SOURCES_MAX 16
/* Most countries, and most autonomous systems, a filter can name. */
#define PICK_COUNTRIES_MAX 16
#define PICK_ASNS_MAX 16

/* What a reader asks for. Zeroed, it matches every live proxy. Each field
 * narrows: a proxy matches when it passes every one. */
struct pick_filter {
	uint32_t protos;	 /* bit (1 << enum proxy_proto) per folder allowed; 0 = any */
	uint32_t anons;		 /* bit (1 << enum snap_anon) per grade allowed; 0 = any */
	uint32_t max_latency_ms; /* 0 = no bound */
	uint32_t nsources;	 /* 0 = any source */
	/* Source names allowed (the caller's strings, kept while the filter
	 * is used). A name the snapshot has no source of matches nothing. */
	const char *sources[PICK_SOURCES_MAX];
	/* Countries allowed, or with countries_out the only ones left out:
	 * upper-case ISO 3166 alpha-2 codes, "" for unknown. 0 = any. */
	uint32_t ncountries;
	char countries[PICK_COUNTRIES_MAX][3];
	bool countries_out;
	/* Autonomous system numbers allowed; 0 = any. */
	uint32_t nasns;
	uint32_t asns[PICK_ASNS_MAX];
	/* Set when the filter can match nothing at all (two folders that
	 * exclude each other, say /socks5/ and protocol=http). */
	bool none;
};

/* The filter of a tree folder: view is an enum snap_view of s, a country
 * view (SNAP_VIEW_COUNTRY...), or -1 for the top level (every live
 * proxy). A source view's name points into s. */
void pick_filter_of_view(struct pick_filter *f, const struct snapshot *s, int view);

/* Narrows f to what both f and g allow. 0, or -E2BIG when the countries
 * both leave out do not fit (f is then left as it was). */
int pick_filter_and(struct pick_filter *f, const struct pick_filter *g);

/* Adds the country code[0..n) to f's list: two letters in either case, or
 * "unknown" (any case) for proxies of unknown country; a repeat is
 * ignored. 0, -EINVAL for anything else, -E2BIG past PICK_COUNTRIES_MAX.
 * Whether the list allows or leaves out is countries_out, the caller's. */
int pick_filter_add_country(struct pick_filter *f, const char *code, size_t n);

/* The words every front takes for a filter (the HTTP query's protocol=
 * and anonymity=, the gateway's -proto- and -anon- and its config lists),
 * n bytes, not NUL-ended: the bit a protocol folder name (http, https,
 * socks4, socks5) sets in protos, the bit a grade (elite, anonymous,
 * transparent) sets in anons; 0 for any other word. */
uint32_t pick_proto_bit(const char *name, size_t n);
uint32_t pick_anon_bit(const char *name, size_t n);

/* Longest source name. */
#define PICK_SOURCE_NAME_MAX 64

/* Is name (n bytes) a source name: 1..PICK_SOURCE_NAME_MAX of
 * [A-Za-z0-9._-], as the config's [source:NAME] and every filter take it? */
bool pick_source_name_valid(const char *name, size_t n);

/* Adds autonomous system asn (1..UINT32_MAX) to f's list; a repeat is
 * ignored. 0, -EINVAL for 0, -E2BIG past PICK_ASNS_MAX. */
int pick_filter_add_asn(struct pick_filter *f, uint32_t asn);

/* When f is exactly one view of s (or all of it: *view = -1), the view,
 * whose renderings s caches for every reader; false otherwise. */
bool pick_filter_is_view(const struct pick_filter *f, const struct snapshot *s, int *view);

/* Does live proxy i (an index into s->live) pass f? */
bool pick_match(const struct snapshot *s, const struct pick_filter *f, uint32_t i);

/* A name f gives that s has no source of, or NULL: the HTTP front tells
 * the user which. */
const char *pick_unknown_source(const struct pick_filter *f, const struct snapshot *s);

/* The indexes into s->live of the proxies f matches, fastest first, at
 * most max of them (0: all): a malloc'ed array in *out (NULL when none),
 * which the caller frees, and their number in *n. 0 or -ENOMEM. */
int pick_list(const struct snapshot *s, const struct pick_filter *f, uint32_t max,
	      uint32_t **out, uint32_t *n);

/* Up to count distinct proxies f matches, chosen at random: their
 * indexes into s->live in out[], in no set order. Returns how many (fewer
 * than count when fewer match; 0 when none). */
uint32_t pick_random(const struct snapshot *s, const struct pick_filter *f, uint32_t count,
		     uint32_t *out);

/* Up to count distinct proxies f matches, the next ones in turn: each call
 * takes the ones after the previous call's, wrapping around; a filter that
 * is a view has its own turn, shared by every front (the mount's
 * /socks5/next and the HTTP front's /next?protocol=socks5 take turns with
 * each other); any other filter shares one turn with all such filters.
 * Returns how many, as pick_random. */
uint32_t pick_next(const struct snapshot *s, const struct pick_filter *f, uint32_t count,
		   uint32_t *out);

/* A short text that names f the same way whatever front built it, for
 * tables keyed by filter (the session table): into buf (size bytes, NUL
 * ended; 256 bytes are enough for any filter but a long list of source
 * names, which is cut). */
void pick_filter_key(const struct pick_filter *f, char *buf, size_t size);

#endif
