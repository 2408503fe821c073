/* check_http: the HTTP proxy protocols of a check (see check.c): the
 * absolute-URI GET, or CONNECT then the origin-form GET. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "check_int.h"

static size_t chk_b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

static size_t chk_b64(char *dst, const uint8_t *src, size_t n)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)src[i + 1] << 8;
		if (i + 2 < n)
			v |= src[i + 2];
		dst[o++] = abc[v >> 18 & 63];
		dst[o++] = abc[v >> 12 & 63];
		dst[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		dst[o++] = i + 2 < n ? abc[v & 63] : '=';
	}
	return o;
}

static const char chk_auth_name[] = "Proxy-Authorization: Basic ";

size_t chk_auth_size(const struct chk_target *t)
{
	if (!chk_has_user(t))
		return 0;
	return sizeof(chk_auth_name) - 1 + chk_b64_len(strlen(t->user) + 1 + strlen(chk_pass(t))) +
	       2;
}

/* Writes the Proxy-Authorization line (with CRLF), when there is a user. */
size_t chk_auth_write(char *dst, const struct chk_target *t)
{
	size_t ulen, plen, o;
	uint8_t *cred;

	if (!chk_has_user(t))
		return 0;
	ulen = strlen(t->user);
	plen = strlen(chk_pass(t));
	cred = malloc(ulen + 1 + plen);
	if (!cred)
		return 0;
	memcpy(cred, t->user, ulen);
	cred[ulen] = ':';
	memcpy(cred + ulen + 1, chk_pass(t), plen);
	o = sizeof(chk_auth_name) - 1;
	memcpy(dst, chk_auth_name, o);
	o += chk_b64(dst + o, cred, ulen + 1 + plen);
	memcpy(dst + o, "\r\n", 2);
	free(cred);
	return o + 2;
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

static const char chk_connect_fmt[] = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n";

static size_t http_connect_msg_size(const struct chk_target *t, const struct chk_judge *j)
{
	size_t authority = strlen(j->host) + 2 + 6;

	return sizeof(chk_connect_fmt) + 2 * authority + chk_auth_size(t) + 2;
}

static size_t http_connect_size(const struct chk_target *t, const struct chk_judge *j)
{
	return http_connect_msg_size(t, j) + chk_req_size(t, j, false);
}

static int http_connect_build(struct chk *c, const struct chk_target *t)
{
	const struct chk_judge *j = c->judge;
	bool v6 = strchr(j->host, ':') != NULL;
	char authority[sizeof(j->host) + 8];
	char *dst = (char *)c->tail;
	size_t len, auth;

	snprintf(authority, sizeof(authority), "%s%s%s:%u", v6 ? "[" : "", j->host, v6 ? "]" : "",
		 j->port);
	len = (size_t)snprintf(dst, http_connect_msg_size(t, j), chk_connect_fmt, authority,
			       authority);
	auth = chk_auth_write(dst + len, t);
	if (chk_has_user(t) && auth == 0)
		return -ENOMEM;
	c->with_auth = auth > 0;
	memcpy(dst + len + auth, "\r\n", 2);
	c->msg_len[0] = (uint32_t)(len + auth + 2);
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
    .msg_size = http_connect_size,
    .build = http_connect_build,
    .connected = http_connect_connected,
    .feed = http_connect_feed,
};
