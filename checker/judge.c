/* judge: the URL every check fetches, parsed and prepared once.
 *
 * Parses http://host[:port][/path], resolves the host (blocking, so only at
 * start), and builds the two requests every check sends: the absolute-URI
 * form for a plain HTTP proxy and the origin form for a tunnel. Also holds
 * the names of the results and which errnos are our own side's fault. Does
 * not fetch anything; https judges are not supported yet.
 */
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include "check.h"
#include "http_answer.h"

#ifndef PROXYFS_VERSION
#define PROXYFS_VERSION "dev"
#endif

/* Longer expected texts are refused: the KMP table is 4 bytes a character. */
#define JUDGE_EXPECT_MAX 4096

const char *chk_result_name(enum chk_result r)
{
	switch (r) {
	case CHK_OK:
		return "ok";
	case CHK_TIMEOUT:
		return "timeout";
	case CHK_REFUSED:
		return "refused";
	case CHK_RESET:
		return "reset";
	case CHK_PROTO_ERR:
		return "protocol_error";
	case CHK_BAD_ANSWER:
		return "wrong_answer";
	case CHK_AUTH:
		return "auth";
	case CHK_LOCAL_ERR:
		return "local_error";
	case CHK_TLS_ERR:
		return "tls_error";
	default:
		return "unknown";
	}
}

bool chk_errno_is_local(int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
	case EADDRNOTAVAIL:
	case ENOBUFS:
	case ENOMEM:
	case EAGAIN:
		return true;
	default:
		return false;
	}
}

__attribute__((format(printf, 4, 5))) static int judge_fail(char *err, size_t errlen, int ret,
							    const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static bool judge_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

/* Host and optional port from the authority part [s, end). */
static int judge_parse_authority(struct chk_judge *j, const char *s, const char *end, char *err,
				 size_t errlen)
{
	const char *host = s, *hend, *p;
	unsigned long port = 80;
	struct in6_addr a6;

	if (memchr(s, '@', (size_t)(end - s)))
		return judge_fail(err, errlen, -EINVAL,
				  "credentials in a judge URL are not supported");
	if (*s == '[') {
		host = s + 1;
		hend = memchr(host, ']', (size_t)(end - host));
		if (!hend)
			return judge_fail(err, errlen, -EINVAL, "unclosed [ in the judge's host");
		p = hend + 1;
	} else {
		for (hend = s; hend < end && judge_host_char(*hend); hend++)
			;
		p = hend;
	}
	if (hend == host || hend - host > (ptrdiff_t)sizeof(j->host) - 1)
		return judge_fail(err, errlen, -EINVAL, "bad host in the judge URL");
	memcpy(j->host, host, (size_t)(hend - host));
	j->host[hend - host] = '\0';
	if (*s == '[' && inet_pton(AF_INET6, j->host, &a6) != 1)
		return judge_fail(err, errlen, -EINVAL, "bad IPv6 address in the judge URL");
	if (p < end && *p == ':') {
		port = 0;
		for (p++; p < end && *p >= '0' && *p <= '9' && port <= 65535; p++)
			port = port * 10 + (unsigned long)(*p - '0');
		if (port == 0 || port > 65535 || p[-1] == ':')
			return judge_fail(err, errlen, -EINVAL, "bad port in the judge URL");
	}
	if (p != end)
		return judge_fail(err, errlen, -EINVAL, "bad host or port in the judge URL");
	j->port = (uint16_t)port;
	return 0;
}

/* The path with its query, without any fragment; "/" when empty. */
static int judge_parse_path(struct chk_judge *j, const char *s, char *err, size_t errlen)
{
	size_t len = strcspn(s, "#");
	const char *lead = *s == '/' ? "" : "/";

	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return judge_fail(err, errlen, -EINVAL,
					  "space or control character in the judge's path");
	}
	if (asprintf(&j->path, "%s%.*s", lead, (int)len, s) < 0) {
		j->path = NULL;
		return judge_fail(err, errlen, -ENOMEM, "out of memory");
	}
	return 0;
}

static int judge_parse_url(struct chk_judge *j, const char *url, char *err, size_t errlen)
{
	static const char http[] = "http://";
	const char *auth, *end;
	int ret;

	if (strncasecmp(url, "https://", 8) == 0)
		return judge_fail(err, errlen, -EINVAL, "https judges come later: use http://");
	if (strncasecmp(url, http, sizeof(http) - 1) != 0)
		return judge_fail(err, errlen, -EINVAL, "judge URL must start with http://");
	auth = url + sizeof(http) - 1;
	end = auth + strcspn(auth, "/?#");
	ret = judge_parse_authority(j, auth, end, err, errlen);
	if (ret)
		return ret;
	return judge_parse_path(j, end, err, errlen);
}

/* Prefers an IPv4 address, which every proxy protocol can connect to. */
static int judge_resolve(struct chk_judge *j, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res, *ai, *pick;
	int rc;

	rc = getaddrinfo(j->host, NULL, &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags = AI_ADDRCONFIG;
		rc = getaddrinfo(j->host, NULL, &hints, &res);
	}
	if (rc)
		return judge_fail(err, errlen, -EHOSTUNREACH, "judge host %s does not resolve: %s",
				  j->host, gai_strerror(rc));
	pick = res;
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	}
	memcpy(&j->addr, pick->ai_addr, pick->ai_addrlen);
	j->addrlen = pick->ai_addrlen;
	if (pick->ai_family == AF_INET)
		((struct sockaddr_in *)&j->addr)->sin_port = htons(j->port);
	else
		((struct sockaddr_in6 *)&j->addr)->sin6_port = htons(j->port);
	j->have_addr = true;
	freeaddrinfo(res);
	return 0;
}

static int judge_build_requests(struct chk_judge *j)
{
	static const char tail[] = "User-Agent: proxyfs/" PROXYFS_VERSION "\r\n"
				   "Accept: */*\r\n"
				   "Connection: close\r\n\r\n";
	bool v6 = strchr(j->host, ':') != NULL;
	char authority[sizeof(j->host) + 8];
	int n;

	snprintf(authority, sizeof(authority), "%s%s%s", v6 ? "[" : "", j->host, v6 ? "]" : "");
	if (j->port != 80) {
		size_t len = strlen(authority);

		snprintf(authority + len, sizeof(authority) - len, ":%u", j->port);
	}
	n = asprintf(&j->req_absolute, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\n%s", authority,
		     j->path, authority, tail);
	if (n < 0) {
		j->req_absolute = NULL;
		return -ENOMEM;
	}
	j->req_absolute_len = (size_t)n;
	n = asprintf(&j->req_origin, "GET %s HTTP/1.1\r\nHost: %s\r\n%s", j->path, authority, tail);
	if (n < 0) {
		j->req_origin = NULL;
		return -ENOMEM;
	}
	j->req_origin_len = (size_t)n;
	return 0;
}

static int judge_set_expect(struct chk_judge *j, const char *expect, char *err, size_t errlen)
{
	j->expect_len = expect ? strlen(expect) : 0;
	if (j->expect_len > JUDGE_EXPECT_MAX)
		return judge_fail(err, errlen, -EINVAL, "expected text longer than %d bytes",
				  JUDGE_EXPECT_MAX);
	j->expect = strdup(expect ? expect : "");
	j->expect_kmp = calloc(j->expect_len ? j->expect_len : 1, sizeof(*j->expect_kmp));
	if (!j->expect || !j->expect_kmp)
		return judge_fail(err, errlen, -ENOMEM, "out of memory");
	chk_kmp_build(j->expect, j->expect_len, j->expect_kmp);
	return 0;
}

int chk_judge_init(struct chk_judge *j, const char *url, const char *expect, char *err,
		   size_t errlen)
{
	int ret;

	memset(j, 0, sizeof(*j));
	ret = judge_parse_url(j, url, err, errlen);
	if (ret)
		goto out_free;
	ret = judge_set_expect(j, expect, err, errlen);
	if (ret)
		goto out_free;
	ret = judge_resolve(j, err, errlen);
	if (ret)
		goto out_free;
	ret = judge_build_requests(j);
	if (ret) {
		judge_fail(err, errlen, ret, "out of memory");
		goto out_free;
	}
	return 0;

out_free:
	chk_judge_free(j);
	return ret;
}

void chk_judge_free(struct chk_judge *j)
{
	free(j->path);
	free(j->expect);
	free(j->expect_kmp);
	free(j->req_absolute);
	free(j->req_origin);
	memset(j, 0, sizeof(*j));
}
