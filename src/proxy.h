/* proxy: what a proxy is, and reading one from a line of text.
 *
 * Parses every line form DESIGN.md accepts and formats the canonical URI
 * that the pool is keyed by and the filesystem prints. Knows nothing about
 * checking or the pool.
 */
#ifndef PROXYFS_PROXY_H
#define PROXYFS_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The protocol families the tree has folders for. */
enum proxy_proto {
	PROXY_HTTP,
	PROXY_HTTPS, /* an HTTP proxy proven to tunnel TLS (CONNECT); printed http:// */
	PROXY_SOCKS4,
	PROXY_SOCKS5,
	PROXY_PROTO_COUNT
};

#define PROXY_HOST_MAX 255
/* Longest user or password: HTTP basic auth has no limit of its own, this
 * is ours. SOCKS carries less (PROXY_SOCKS_CRED_MAX), checked per scheme. */
#define PROXY_CRED_MAX 255  /* HTTP too: keeps a parsed line (a control write holds thousands) small */
#define PROXY_SOCKS_CRED_MAX 255
/* Longest canonical URI: percent-encoded credentials, bracketed host, port. */
#define PROXY_URI_MAX 8192

/* One parsed proxy. Fixed buffers so parsing allocates nothing. */
struct proxy_addr {
	enum proxy_proto proto;
	bool remote_dns; /* socks4a:// or socks5h:// */
	bool tunnel;     /* written https://: an HTTP proxy to check with CONNECT */
	bool ipv6;       /* host is an IPv6 literal (printed in brackets) */
	bool scheme;     /* the line named its scheme (else it took the default) */
	uint16_t port;
	char host[PROXY_HOST_MAX + 1]; /* without brackets */
	char user[PROXY_CRED_MAX + 1]; /* "" when none */
	char pass[PROXY_CRED_MAX + 1];
};

enum proxy_parse_result {
	PROXY_LINE_OK = 0,
	PROXY_LINE_SKIP = 1, /* blank line or # comment */
	PROXY_LINE_BAD = -1,
};

/* Parses one line (no need for NUL termination; a trailing \r\n or \n and
 * surrounding white space are ignored). Forms: host:port,
 * scheme://host:port, scheme://user:pass@host:port, host:port:user:pass,
 * [v6]:port, scheme://[v6]:port. Schemes: http https socks4 socks4a socks5
 * socks5h (case-insensitive). dflt is the protocol of a line without a
 * scheme. Host: an IPv4 or IPv6 literal, or a DNS name. Port 1-65535.
 * Credentials the proxy's protocol cannot carry make the line bad: SOCKS5
 * (RFC 1929) takes a user and a password of 1..255 bytes each, SOCKS4 a
 * user id of up to 255 bytes and no password; HTTP up to PROXY_CRED_MAX. */
enum proxy_parse_result proxy_parse_line(const char *line, size_t len, enum proxy_proto dflt,
					 struct proxy_addr *out);

/* Writes the canonical URI: scheme://[user:pass@]host:port, IPv6 in
 * brackets; scheme one of http, socks4, socks4a, socks5, socks5h (an
 * https:// line prints as http://). Returns the length written (without
 * NUL), or -1 if it did not fit in size bytes. */
int proxy_format_uri(const struct proxy_addr *p, char *buf, size_t size);

/* The same, but an HTTP proxy to be checked through CONNECT (written
 * https://) keeps https://: the key that tells the two ways of listing one
 * HTTP proxy apart, as the pool and the store hold them. */
int proxy_format_key(const struct proxy_addr *p, char *buf, size_t size);

/* The value of hex digit c (either case), or -1: for %XX escapes. */
int proxy_hex_digit(char c);

/* "http", "https", "socks4", "socks5": the folder name of a protocol. */
const char *proxy_proto_name(enum proxy_proto proto);
/* Parses a folder/protocol name (also socks4a, socks5h); -1 if unknown. */
int proxy_proto_from_name(const char *name);
/* True for the names of the remote-DNS forms (socks4a, socks5h). */
bool proxy_name_remote_dns(const char *name);
/* The name a protocol is written with: "http", "https", "socks4",
 * "socks4a", "socks5" or "socks5h" (static); NULL if unknown. */
const char *proxy_scheme_name(enum proxy_proto proto, bool remote_dns);

#endif
