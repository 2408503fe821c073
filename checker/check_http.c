/* check_http: the HTTP proxy protocols of a check (see check.c): the
 * absolute-URI GET, or CONNECT then the origin-form GET. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "check_int.h"
#include "http_proxy.h"

size_t chk_auth_size(const struct chk_target *t)
{
	return chk_has_user(t) ? http_proxy_auth_size(t->user, chk_pass(t)) : 0;
}

/* Writes the Proxy-Authorization line (with CRLF), when there is a user. */
size_t chk_auth_write(char *dst, const struct chk_target *t)
{
	return chk_has_user(t) ? http_proxy_auth_write(dst, t->user, chk_pass(t)) : 0;
}

static size_t http_plain_size(const struct chk_target *t, const struct chk_judge *j)
{
	return chk_req_size(t, j, true);
}

static int http_plain_build(struct chk *c, const struct chk_target *t)
{
	return chk_req_build(c, t, true);
}

static void http_plain_connected(struct chk *c)
{
	if (!chk_peer_spoke_first(c))
		chk_begin_answer(c);
}

static size_t http_plain_feed(struct chk *c, const uint8_t *p, size_t n)
{
	return n; /* no handshake: never called */
}

static size_t http_connect_msg_size(const struct chk_target *t, const struct chk_judge *j)
{
	return http_connect_size(j->host, chk_has_user(t) ? t->user : NULL, chk_pass(t));
}

static size_t http_connect_size_all(const struct chk_target *t, const struct chk_judge *j)
{
	return http_connect_msg_size(t, j) + chk_req_size(t, j, false);
}

static int http_connect_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;

	c->msg_len[0] = (uint32_t)http_connect_write((char *)c->tail, j->host, j->port,
						     chk_has_user(t) ? t->user : NULL, chk_pass(t));
	c->with_auth = chk_has_user(t);
	return chk_req_build(c, t, false);
}

static void http_connect_connected(struct chk *c)
{
	chk_answer_init(&c->ans, NULL, 0, NULL, c->opts->max_answer, true);
	chk_send_msg(c, c->tail, c->msg_len[0]);
}

/* The CONNECT reply's head: 2xx opens the tunnel. */
static size_t http_connect_feed(struct chk *c, const uint8_t *p, size_t n)
{
	size_t used = chk_answer_feed(&c->ans, p, n);
	uint16_t status = c->ans.status;

	if (!c->ans.done)
		return used;
	if (c->ans.result == CHK_OK && status >= 200 && status <= 299) {
		chk_tunnel_up(c);
		return used;
	}
	c->res.status = status;
	if (c->ans.result != CHK_OK)
		chk_end(c, (enum chk_result)c->ans.result, 0);
	else
		chk_end_why(c, chk_status_is_auth(c, status) ? CHK_AUTH : CHK_BAD_ANSWER, 0,
			    chk_status_is_auth(c, status) ? CHK_WHY_NONE : CHK_WHY_STATUS, 0);
	return used;
}

const struct chk_proto chk_http_plain = {
    .msg_size = http_plain_size,
    .build = http_plain_build,
    .connected = http_plain_connected,
    .feed = http_plain_feed,
    .proxy_answers = true,
};

const struct chk_proto chk_http_connect = {
    .msg_size = http_connect_size_all,
    .build = http_connect_build,
    .connected = http_connect_connected,
    .feed = http_connect_feed,
};
