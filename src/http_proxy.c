/* http_proxy: see http_proxy.h. */
#include "http_proxy.h"

#include <stdio.h>
#include <string.h>

static const char auth_name[] = "Proxy-Authorization: Basic ";

/* Byte i of user ':' pass. */
static uint8_t cred_at(const char *user, size_t ulen, const char *pass, size_t i)
{
	if (i < ulen)
		return (uint8_t)user[i];
	if (i == ulen)
		return ':';
	return (uint8_t)pass[i - ulen - 1];
}

size_t http_proxy_auth_size(const char *user, const char *pass)
{
	size_t n;

	if (!user || !*user)
		return 0;
	n = strlen(user) + 1 + (pass ? strlen(pass) : 0);
	return sizeof(auth_name) - 1 + (n + 2) / 3 * 4 + 2;
}

size_t http_proxy_auth_write(char *dst, const char *user, const char *pass)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t ulen, n, o = sizeof(auth_name) - 1;

	if (!user || !*user)
		return 0;
	pass = pass ? pass : "";
	ulen = strlen(user);
	n = ulen + 1 + strlen(pass);
	memcpy(dst, auth_name, o);
	/* Base64 of user:pass, three bytes at a time, without a copy. */
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)cred_at(user, ulen, pass, i) << 16;

		if (i + 1 < n)
			v |= (uint32_t)cred_at(user, ulen, pass, i + 1) << 8;
		if (i + 2 < n)
			v |= cred_at(user, ulen, pass, i + 2);
		dst[o++] = abc[v >> 18 & 63];
		dst[o++] = abc[v >> 12 & 63];
		dst[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		dst[o++] = i + 2 < n ? abc[v & 63] : '=';
	}
	memcpy(dst + o, "\r\n", 2);
	return o + 2;
}

size_t http_connect_size(const char *host, const char *user, const char *pass)
{
	size_t authority = strlen(host) + 2 + 6; /* brackets, ':' and the port */

	return sizeof("CONNECT  HTTP/1.1\r\nHost: \r\n") + 2 * authority +
	       http_proxy_auth_size(user, pass) + 2;
}

size_t http_connect_write(char *dst, const char *host, uint16_t port, const char *user,
			  const char *pass)
{
	const char *lb = strchr(host, ':') ? "[" : "", *rb = *lb ? "]" : "";
	size_t len;

	len = (size_t)snprintf(dst, http_connect_size(host, NULL, NULL),
			       "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n", lb, host, rb,
			       port, lb, host, rb, port);
	len += http_proxy_auth_write(dst + len, user, pass);
	memcpy(dst + len, "\r\n", 2);
	return len + 2;
}
