/* scrape: picking proxies out of text that is not a clean list.
 *
 * Web pages, JSON and CSV exports publish proxies in many shapes. This
 * module finds them wherever they appear in arbitrary bytes: IPv4:port,
 * [IPv6]:port, scheme://[user:pass@]host:port, IPv4:port:user:pass, and an
 * IPv4 address followed closely by a port field (a table cell, a JSON
 * "port" key, a CSV or tab column). Every find is validated by
 * proxy_parse_line(). It does not read lines that proxy_parse_line()
 * already accepts any differently, does not resolve or check anything, and
 * does not remove duplicates.
 */
#ifndef PROXYFS_SCRAPE_H
#define PROXYFS_SCRAPE_H

#include <stddef.h>

#include "proxy.h"

/* Called per proxy found; a negative return stops the scan. */
typedef int (*scrape_fn)(void *arg, const struct proxy_addr *a);

/* Scans len bytes of text (any bytes; NUL-termination not needed) and
 * calls fn for each proxy in order of appearance; dflt is the protocol of
 * a proxy written without a scheme. Lines whose first non-blank character
 * is '#' are skipped. Linear time, no allocation. Returns how many proxies
 * were handed to fn. */
size_t scrape_text(const char *text, size_t len, enum proxy_proto dflt, scrape_fn fn, void *arg);

#endif
