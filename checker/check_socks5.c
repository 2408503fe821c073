/* check_socks5: the SOCKS5 handshake of a check (see check.c): greeting,
 * RFC 1929 auth when asked, CONNECT. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "check_int.h"

enum { S5_GREETING, S5_AUTH, S5_CONNECT };

static size_t socks5_auth_size(const struct chk_target *t)
{
	return chk_has_user(t) ? 3 + strlen(t->user) + strlen(chk_pass(t)) : 0;
}

/* A CONNECT by name or by address (IPv6: 22 bytes). */
static size_t socks5_request_size(const struct chk_judge *j)
{
	size_t by_name = 7 + strlen(j->host);

	return by_name > 22 ? by_name : 22;
}

static size_t socks5_size(const struct chk_target *t, const struct chk_judge *j)
{
	return 4 + socks5_auth_size(t) + socks5_request_size(j) + chk_req_size(t, j, false);
}

static int socks5_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;
	bool by_name = t->remote_dns || !j->have_addr;
	int n;

	n = chk_socks5_greeting(chk_msg(c, S5_GREETING), 4, chk_has_user(t));
	if (n < 0)
		return n;
	c->msg_len[S5_GREETING] = (uint32_t)n;
	if (chk_has_user(t)) {
		n = chk_socks5_auth(chk_msg(c, S5_AUTH), socks5_auth_size(t), t->user, chk_pass(t));
		if (n < 0)
			return n;
		c->msg_len[S5_AUTH] = (uint32_t)n;
	}
	n = chk_socks5_request(chk_msg(c, S5_CONNECT), socks5_request_size(j),
			       by_name ? NULL : (const struct sockaddr *)&j->addr, j->host,
			       j->port);
	if (n < 0)
		return n;
	c->msg_len[S5_CONNECT] = (uint32_t)n;
	return chk_req_build(c, t, false);
}

static void socks5_send(struct chk *c, unsigned msg, enum chk_socks_step reply)
{
	chk_socks_reply_init(&c->sr, reply);
	chk_send_msg(c, chk_msg(c, msg), c->msg_len[msg]);
}

static void socks5_connected(struct chk *c)
{
	socks5_send(c, S5_GREETING,
		    c->msg_len[S5_AUTH] ? CHK_SOCKS5_METHOD_AUTH : CHK_SOCKS5_METHOD);
}

static size_t socks5_feed(struct chk *c, const uint8_t *p, size_t n)
{
	size_t used = chk_socks_reply_feed(&c->sr, p, n);

	if (!c->sr.done)
		return used;
	if (c->sr.result != CHK_OK) {
		chk_end_why(c, (enum chk_result)c->sr.result, 0, CHK_WHY_NONE, c->sr.code);
		return used;
	}
	switch (c->sr.step) {
	case CHK_SOCKS5_METHOD:
	case CHK_SOCKS5_METHOD_AUTH:
		if (c->sr.code == 2)
			socks5_send(c, S5_AUTH, CHK_SOCKS5_AUTH);
		else
			socks5_send(c, S5_CONNECT, CHK_SOCKS5_REPLY);
		break;
	case CHK_SOCKS5_AUTH:
		socks5_send(c, S5_CONNECT, CHK_SOCKS5_REPLY);
		break;
	default:
		chk_tunnel_up(c);
		break;
	}
	return used;
}

const struct chk_proto chk_socks5 = {
    .msg_size = socks5_size,
    .build = socks5_build,
    .connected = socks5_connected,
    .feed = socks5_feed,
};
