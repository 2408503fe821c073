/* http_proxy: what an HTTP proxy is told, for the checker and the gateway
 * alike: the Proxy-Authorization line of Basic credentials, and the head
 * of a CONNECT. One writer of each, so a proxy the checker proved
 * reachable is spoken to the same way by the gateway. Writes into memory
 * the caller sized with the matching _size function; allocates nothing.
 */
#ifndef PROXYFS_HTTP_PROXY_H
#define PROXYFS_HTTP_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of "Proxy-Authorization: Basic B64(user:pass)\r\n"; 0 when user
 * is NULL or "" (no line). pass NULL is "". */
size_t http_proxy_auth_size(const char *user, const char *pass);
/* Writes that line into dst; its length (0: none). */
size_t http_proxy_auth_write(char *dst, const char *user, const char *pass);

/* Bytes of "CONNECT AUTH HTTP/1.1\r\nHost: AUTH\r\n[auth line]\r\n", AUTH
 * being host:port (host an IPv6 literal is bracketed). */
size_t http_connect_size(const char *host, const char *user, const char *pass);
/* Writes that head into dst; its length. */
size_t http_connect_write(char *dst, const char *host, uint16_t port, const char *user,
			  const char *pass);

#endif
