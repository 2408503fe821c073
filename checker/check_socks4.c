/* check_socks4: the SOCKS4 and SOCKS4a handshake of a check (see check.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "check_int.h"

static size_t socks4_msg_size(const struct chk_target *t, const struct chk_judge *j)
{
	return 8 + (t->user ? strlen(t->user) : 0) + 1 + strlen(j->host) + 1;
}

static size_t socks4_size(const struct chk_target *t, const struct chk_judge *j)
{
	return socks4_msg_size(t, j) + chk_req_size(t, j, false);
}

/* SOCKS4 needs the judge's IPv4 address; without one, ask by name (4a). */
static int socks4_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&j->addr;
	bool by_name = t->remote_dns || !j->have_addr || j->addr.ss_family != AF_INET;
	int n;

	n = chk_socks4_request(c->tail, socks4_msg_size(t, j), (const uint8_t *)&sin->sin_addr,
			       by_name ? j->host : NULL, j->port, t->user);
	if (n < 0)
		return n;
	c->msg_len[0] = (uint32_t)n;
	return chk_req_build(c, t, false);
}

static void socks4_connected(struct chk *c)
{
	chk_socks_reply_init(&c->sr, CHK_SOCKS4_REPLY);
	chk_send_msg(c, c->tail, c->msg_len[0]);
}

static size_t socks4_feed(struct chk *c, const uint8_t *p, size_t n)
{
	size_t used = chk_socks_reply_feed(&c->sr, p, n);

	if (!c->sr.done)
		return used;
	if (c->sr.result != CHK_OK)
		chk_end_why(c, (enum chk_result)c->sr.result, 0, CHK_WHY_NONE, c->sr.code);
	else
		chk_tunnel_up(c);
	return used;
}

const struct chk_proto chk_socks4 = {
    .msg_size = socks4_size,
    .build = socks4_build,
    .connected = socks4_connected,
    .feed = socks4_feed,
};
