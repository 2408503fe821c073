/* listen: the listening socket of a front that serves on ADDR:PORT.
 *
 * The HTTP front and the gateway open theirs the same way: the address as
 * the config writes it (cfg_parse_listen), non-blocking, close-on-exec,
 * SO_REUSEADDR, IPv6 sockets IPv6 only. Knows nothing of what is served.
 */
#ifndef PROXYFS_LISTEN_H
#define PROXYFS_LISTEN_H

#include <stddef.h>

/* Connections the kernel may queue before the front accepts them. */
#define LISTEN_BACKLOG 1024

/* Opens a socket listening on addr: its fd, or -errno with "SECTION listen
 * ADDR: why" in err (what names the section, e.g. "[http]"). */
int listen_open(const char *addr, const char *what, char *err, size_t errlen);

#endif
