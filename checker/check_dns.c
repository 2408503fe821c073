/* check_dns: a proxy given by name (see check.c): resolved through evdns,
 * the check's event serving as the deadline meanwhile, then connected. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <event2/dns.h>
#include <event2/util.h>

#include "check_int.h"

static const struct evutil_addrinfo *chk_pick(const struct evutil_addrinfo *ai)
{
	const struct evutil_addrinfo *v6 = NULL;

	for (; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			return ai;
		if (ai->ai_family == AF_INET6 && !v6)
			v6 = ai;
	}
	return v6;
}

/* The name's answer, from the loop or from inside evdns_getaddrinfo (a
 * name in /etc/hosts). A name that does not exist leaves the proxy
 * unreachable; a resolver that does not answer is a timeout, tried again
 * like one. Our own failure to connect is reported like any local error. */
static void chk_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	const struct evutil_addrinfo *ai = result == 0 ? chk_pick(res) : NULL;
	struct chk *c = arg;
	struct sockaddr_storage ss;
	int err;

	if (result == EVUTIL_EAI_CANCEL)
		goto out; /* the check is gone */
	c->dns = NULL;
	if (!ai || ai->ai_addrlen > sizeof(ss)) {
		if (result == EVUTIL_EAI_AGAIN || result == EVUTIL_EAI_FAIL)
			chk_end(c, CHK_TIMEOUT, 0);
		else if (result == EVUTIL_EAI_MEMORY)
			chk_end(c, CHK_LOCAL_ERR, ENOMEM);
		else
			chk_end(c, CHK_REFUSED, EHOSTUNREACH);
		chk_report_soon(c);
		goto out;
	}
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(c->port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->port);
	err = chk_connect(c, (const struct sockaddr *)&ss, (socklen_t)ai->ai_addrlen);
	if (err) {
		chk_end(c, CHK_LOCAL_ERR, -err);
		chk_report_soon(c);
	}
out:
	if (res)
		evutil_freeaddrinfo(res);
}

/* Asks for the proxy's name; the connect timeout covers the answer. */
int chk_resolve(struct chk *c, const struct chk_target *t)
{
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
	};
	struct evdns_getaddrinfo_request *req;

	if (!c->opts->dns || !t->host || !t->host[0]) {
		chk_end(c, CHK_REFUSED, EHOSTUNREACH);
		chk_report_soon(c);
		return 0;
	}
	c->port = t->port;
	c->state = CHK_ST_RESOLVING;
	if (chk_arm(c) < 0)
		return -ENOMEM;
	req = evdns_getaddrinfo(c->opts->dns, t->host, NULL, &hints, chk_resolved, c);
	if (c->state != CHK_ST_RESOLVING)
		return 0; /* answered already, from /etc/hosts */
	if (!req) {
		chk_end(c, CHK_LOCAL_ERR, ENOMEM);
		chk_report_soon(c);
	}
	c->dns = req;
	return 0;
}
