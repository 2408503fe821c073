/* socks: SOCKS4, SOCKS4a and SOCKS5 (with RFC 1929 auth) messages.
 *
 * Builders write one client message into a caller's buffer; the reply
 * parser reads one server reply incrementally, in pieces of any size, and
 * says what it means as a chk_result. No I/O, no allocation; the check's
 * state machine decides what to send next. In src/ because the checker and
 * the gateway's upstream handshakes share it: one implementation of each
 * protocol in the project.
 */
#ifndef PROXYFS_SOCKS_H
#define PROXYFS_SOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check_result.h"

/* Largest message a builder writes (SOCKS4a with a 255-byte user and host). */
#define CHK_SOCKS_MSG_MAX 600

/* Each builder returns the message length, or -EINVAL when a field does not
 * fit the protocol (a name or credential over 255 bytes, an empty host, a
 * NUL-containing SOCKS4 field) or -ENOSPC when size is too small. */

/* SOCKS4 CONNECT to ip4:port (network order bytes), or SOCKS4a when host is
 * not NULL (ip4 is then ignored and 0.0.0.1 sent). user may be NULL. */
int chk_socks4_request(uint8_t *buf, size_t size, const uint8_t ip4[4], const char *host,
		       uint16_t port, const char *user);

/* SOCKS5 greeting offering "no auth", plus user/password when with_auth. */
int chk_socks5_greeting(uint8_t *buf, size_t size, bool with_auth);

/* RFC 1929 username/password request. */
int chk_socks5_auth(uint8_t *buf, size_t size, const char *user, const char *pass);

/* SOCKS5 CONNECT: to addr (AF_INET or AF_INET6) when not NULL, else to the
 * domain name host; port is the port to use in either case. */
int chk_socks5_request(uint8_t *buf, size_t size, const struct sockaddr *addr, const char *host,
		       uint16_t port);

/* The reply being waited for. */
enum chk_socks_step {
	CHK_SOCKS4_REPLY,	/* 8 bytes: VN CD port ip */
	CHK_SOCKS5_METHOD,	/* [5, method]; only "no auth" offered */
	CHK_SOCKS5_METHOD_AUTH, /* [5, method]; user/password offered too */
	CHK_SOCKS5_AUTH,	/* RFC 1929 [1, status] */
	CHK_SOCKS5_REPLY,	/* [5, REP, 0, ATYP, addr, port] */
};

struct chk_socks_reply {
	uint8_t step; /* enum chk_socks_step */
	bool done;
	uint8_t result; /* enum chk_result, valid once done */
	uint8_t code;	/* CD, method, auth status or REP as received */
	uint16_t got;	/* bytes of the reply read so far */
	uint16_t need;	/* its whole length, as far as known */
};

void chk_socks_reply_init(struct chk_socks_reply *r, enum chk_socks_step step);

/* Feeds the next n bytes; returns how many belong to this reply (fewer than
 * n only once done). Once done, result says: CHK_OK (granted; for a method
 * reply, code is the chosen method), CHK_REFUSED (the proxy could not or
 * would not connect), CHK_AUTH (credentials refused or required) or
 * CHK_PROTO_ERR (not a valid reply). */
size_t chk_socks_reply_feed(struct chk_socks_reply *r, const uint8_t *p, size_t n);

#endif
