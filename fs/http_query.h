/* http_query: the HTTP front's request path and query string, read into
 * a tree path and a pick filter.
 *
 * protocol=, anonymity=, source=, country= (DE, de, unknown; !CN to
 * leave out), asn= (3320 or AS3320) (comma lists, or the key repeated),
 * max_latency_ms=, count=, format=txt|json. Anything else, or a bad value,
 * is refused with a one-line reason naming the parameter, which the front
 * answers as a 400. Pure: no snapshot, no I/O; safe from any thread.
 */
#ifndef PROXYFS_HTTP_QUERY_H
#define PROXYFS_HTTP_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pick.h"
#include "session.h"

/* Most proxies one pick may ask for (count=). */
#define HTTP_COUNT_MAX 100000

enum http_format { HTTP_FORMAT_DEFAULT, HTTP_FORMAT_TXT, HTTP_FORMAT_JSON };

struct http_query {
	struct pick_filter filter; /* its source names point into names[] */
	bool filtered;		   /* a filter key (protocol= ... max_latency_ms=) given */
	uint32_t count;		   /* 0: not given */
	enum http_format format;
	char names[PICK_SOURCES_MAX][SESSION_KEY_MAX + 1];
};

/* Reads len bytes of query (what follows '?', NULL or empty for none) into
 * *q. 0, or -EINVAL with why (e.g. "protocol: 'ftp' is not one of http,
 * https, socks4, socks5") in why[0..why_size). */
int http_query_parse(const char *query, size_t len, struct http_query *q, char *why,
		     size_t why_size);

/* The request's path as the tree names it, into out (size bytes): %XX
 * decoded but %2F (a slash inside a name, as lookup/ takes it), no
 * trailing slash, "/" for an empty one. -EINVAL for a path that does not
 * start with '/', a bad escape, a control byte, or too long a path. */
int http_path_decode(const char *in, char *out, size_t size);

/* The other pools' names for tree paths (/get-proxy, /stat, /reload):
 * path (size bytes) rewritten to the tree's name. */
void http_path_alias(char *path, size_t size);

#endif
