/* socks: SOCKS4, SOCKS4a and SOCKS5 (with RFC 1929 auth) messages.
 *
 * Builders for the client's messages and one incremental parser for the
 * four kinds of server reply. A reply that already says "no" (a bad version
 * byte, a refusal code) ends at once without waiting for its remaining
 * bytes, so a proxy that says no and closes is reported as saying no. Lenient
 * where real servers differ: a SOCKS4 reply version of 0 or 4, an RFC 1929
 * reply version of 1 or 5, and any reserved byte in a SOCKS5 reply.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "socks.h"

#define SOCKS_NAME_MAX 255

/* Appends len bytes at *pos, or fails if they do not fit. */
static int socks_put(uint8_t *buf, size_t size, size_t *pos, const void *src, size_t len)
{
	if (len > size - *pos)
		return -ENOSPC;
	memcpy(buf + *pos, src, len);
	*pos += len;
	return 0;
}

int chk_socks4_request(uint8_t *buf, size_t size, const uint8_t ip4[4], const char *host,
		       uint16_t port, const char *user)
{
	static const uint8_t socks4a_ip[4] = {0, 0, 0, 1};
	uint8_t head[4] = {4, 1, (uint8_t)(port >> 8), (uint8_t)port};
	size_t ulen = user ? strlen(user) : 0, hlen = host ? strlen(host) : 0, pos = 0;

	if (ulen > SOCKS_NAME_MAX || hlen > SOCKS_NAME_MAX || (host && hlen == 0))
		return -EINVAL;
	if (size < sizeof(head) + 4 + ulen + 1 + (host ? hlen + 1 : 0))
		return -ENOSPC;
	socks_put(buf, size, &pos, head, sizeof(head));
	socks_put(buf, size, &pos, host ? socks4a_ip : ip4, 4);
	socks_put(buf, size, &pos, user ? user : "", ulen + 1);
	if (host)
		socks_put(buf, size, &pos, host, hlen + 1);
	return (int)pos;
}

int chk_socks5_greeting(uint8_t *buf, size_t size, bool with_auth)
{
	static const uint8_t plain[] = {5, 1, 0};
	static const uint8_t auth[] = {5, 2, 0, 2};
	size_t pos = 0;
	int err;

	if (with_auth)
		err = socks_put(buf, size, &pos, auth, sizeof(auth));
	else
		err = socks_put(buf, size, &pos, plain, sizeof(plain));
	return err ? err : (int)pos;
}

int chk_socks5_auth(uint8_t *buf, size_t size, const char *user, const char *pass)
{
	size_t ulen = strlen(user), plen = strlen(pass), pos = 0;
	uint8_t b;

	if (ulen > SOCKS_NAME_MAX || plen > SOCKS_NAME_MAX)
		return -EINVAL;
	if (size < 3 + ulen + plen)
		return -ENOSPC;
	b = 1;
	socks_put(buf, size, &pos, &b, 1);
	b = (uint8_t)ulen;
	socks_put(buf, size, &pos, &b, 1);
	socks_put(buf, size, &pos, user, ulen);
	b = (uint8_t)plen;
	socks_put(buf, size, &pos, &b, 1);
	socks_put(buf, size, &pos, pass, plen);
	return (int)pos;
}

int chk_socks5_request(uint8_t *buf, size_t size, const struct sockaddr *addr, const char *host,
		       uint16_t port)
{
	uint8_t head[5] = {5, 1, 0, 3, 0};
	uint8_t tail[2] = {(uint8_t)(port >> 8), (uint8_t)port};
	const void *body;
	size_t blen, hlen = 4, pos = 0;

	if (addr && addr->sa_family == AF_INET) {
		head[3] = 1;
		body = &((const struct sockaddr_in *)addr)->sin_addr;
		blen = 4;
	} else if (addr && addr->sa_family == AF_INET6) {
		head[3] = 4;
		body = &((const struct sockaddr_in6 *)addr)->sin6_addr;
		blen = 16;
	} else {
		blen = host ? strlen(host) : 0;
		if (blen == 0 || blen > SOCKS_NAME_MAX)
			return -EINVAL;
		head[4] = (uint8_t)blen;
		hlen = 5;
		body = host;
	}
	if (size < hlen + blen + sizeof(tail))
		return -ENOSPC;
	socks_put(buf, size, &pos, head, hlen);
	socks_put(buf, size, &pos, body, blen);
	socks_put(buf, size, &pos, tail, sizeof(tail));
	return (int)pos;
}

void chk_socks_reply_init(struct chk_socks_reply *r, enum chk_socks_step step)
{
	memset(r, 0, sizeof(*r));
	r->step = (uint8_t)step;
	r->need = step == CHK_SOCKS4_REPLY ? 8 : step == CHK_SOCKS5_REPLY ? 5 : 2;
}

static void socks_end(struct chk_socks_reply *r, enum chk_result res)
{
	r->done = true;
	r->result = (uint8_t)res;
}

static void socks4_byte(struct chk_socks_reply *r, unsigned i, uint8_t c)
{
	if (i == 0 && c != 0 && c != 4) {
		socks_end(r, CHK_PROTO_ERR);
	} else if (i == 1) {
		r->code = c;
		if (c == 91)
			socks_end(r, CHK_REFUSED);
		else if (c == 92 || c == 93)
			socks_end(r, CHK_AUTH);
		else if (c != 90)
			socks_end(r, CHK_PROTO_ERR);
	}
}

static void socks5_method_byte(struct chk_socks_reply *r, unsigned i, uint8_t c)
{
	if (i == 0) {
		if (c != 5)
			socks_end(r, CHK_PROTO_ERR);
		return;
	}
	r->code = c;
	if (c == 0 || (c == 2 && r->step == CHK_SOCKS5_METHOD_AUTH))
		socks_end(r, CHK_OK);
	else if (c == 0xff)
		socks_end(r, CHK_AUTH);
	else
		socks_end(r, CHK_PROTO_ERR);
}

static void socks5_auth_byte(struct chk_socks_reply *r, unsigned i, uint8_t c)
{
	if (i == 0) {
		if (c != 1 && c != 5)
			socks_end(r, CHK_PROTO_ERR);
		return;
	}
	r->code = c;
	socks_end(r, c == 0 ? CHK_OK : CHK_AUTH);
}

/* [5, REP, RSV, ATYP, addr..., port]: the length is known from ATYP (and
 * for a domain name, from the byte after it). */
static void socks5_reply_byte(struct chk_socks_reply *r, unsigned i, uint8_t c)
{
	switch (i) {
	case 0:
		if (c != 5)
			socks_end(r, CHK_PROTO_ERR);
		break;
	case 1:
		r->code = c;
		if (c != 0)
			socks_end(r, CHK_REFUSED);
		break;
	case 3:
		if (c == 1)
			r->need = 4 + 4 + 2;
		else if (c == 4)
			r->need = 4 + 16 + 2;
		else if (c != 3)
			socks_end(r, CHK_PROTO_ERR);
		break;
	case 4:
		if (r->need == 5)
			r->need = (uint16_t)(5 + c + 2);
		break;
	}
}

size_t chk_socks_reply_feed(struct chk_socks_reply *r, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && !r->done) {
		unsigned at = r->got++;

		switch (r->step) {
		case CHK_SOCKS4_REPLY:
			socks4_byte(r, at, p[i]);
			break;
		case CHK_SOCKS5_METHOD:
		case CHK_SOCKS5_METHOD_AUTH:
			socks5_method_byte(r, at, p[i]);
			break;
		case CHK_SOCKS5_AUTH:
			socks5_auth_byte(r, at, p[i]);
			break;
		default:
			socks5_reply_byte(r, at, p[i]);
			break;
		}
		i++;
		if (!r->done && r->got == r->need)
			socks_end(r, CHK_OK);
	}
	return i;
}
