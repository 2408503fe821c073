/* render_formats: the pool in the formats of the programs people chain
 * through proxies (/formats/); see render.h.
 *
 * Each file is made from one snapshot's live proxies, fastest first, and
 * holds only lines its program takes as they are.
 */
#include "render.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "proxy.h"

/* proxychains-ng reads at most this many proxies of its [ProxyList] (its
 * MAX_CHAIN); the rest would be ignored, so they are left out. */
#define FORMATS_PROXYCHAINS_MAX 512

/* proxychains reads "type host port [user [pass]]" with sscanf %s: a
 * credential must be one word of printable bytes. */
static bool proxychains_word(const char *w)
{
	for (; *w; w++)
		if (!isgraph((unsigned char)*w))
			return false;
	return true;
}

/* The proxychains type of live proxy p, or NULL when proxychains cannot use
 * it: its http type is a CONNECT tunnel, so an HTTP proxy counts only when
 * CONNECT was verified (listed in https/); a plain-forwarding-only one
 * cannot carry a TCP connection. */
static const char *proxychains_type(const struct snap_proxy *p)
{
	if (p->proto == PROXY_HTTP)
		return p->folders & (1u << PROXY_HTTPS) ? "http" : NULL;
	if (p->proto == PROXY_SOCKS4)
		return "socks4";
	if (p->proto == PROXY_SOCKS5)
		return "socks5";
	return NULL;
}

/* Appends p's [ProxyList] line; false (nothing written) when proxychains
 * could not use it: a DNS name (random_chain takes only numeric
 * addresses), credentials the reader may not see or proxychains cannot
 * read. */
static bool proxychains_line(const struct snapshot *s, const struct snap_proxy *p, struct sbuf *out)
{
	const char *type = proxychains_type(p);
	unsigned char addr[sizeof(struct in6_addr)];
	struct proxy_addr a;

	if (!type || proxy_parse_line(p->uri, strlen(p->uri), PROXY_HTTP, &a) != PROXY_LINE_OK)
		return false;
	if (inet_pton(a.ipv6 ? AF_INET6 : AF_INET, a.host, addr) != 1)
		return false;
	if (a.user[0] && (s->stats.hide_credentials || !proxychains_word(a.user) ||
			  (a.pass[0] && !proxychains_word(a.pass))))
		return false;
	sbuf_printf(out, "%s\t%s\t%u", type, a.host, (unsigned)a.port);
	if (a.user[0])
		sbuf_printf(out, "\t%s", a.user);
	if (a.pass[0])
		sbuf_printf(out, "\t%s", a.pass);
	sbuf_addc(out, '\n');
	return true;
}

void render_proxychains_conf(const struct snapshot *s, int arg, struct sbuf *out)
{
	uint32_t listed = 0, left = 0;
	struct sbuf list;

	sbuf_init(&list);
	for (uint32_t i = 0; i < s->nlive; i++) {
		if (listed < FORMATS_PROXYCHAINS_MAX && proxychains_line(s, &s->live[i], &list))
			listed++;
		else
			left++;
	}
	sbuf_printf(out,
		    "# proxychains-ng configuration made by proxyfs from snapshot %" PRIu64 ":\n"
		    "# %" PRIu32 " live proxies that carry a TCP connection, fastest first;\n"
		    "# %" PRIu32 " left out (plain-forwarding-only HTTP proxies, DNS names,\n"
		    "# credentials hidden or with blanks, beyond proxychains' %d).\n"
		    "# Use: proxychains4 -f THIS_FILE PROGRAM [ARG...]\n"
		    "\n"
		    "# Each connection through one proxy picked at random.\n"
		    "random_chain\n"
		    "chain_len = 1\n"
		    "\n"
		    "# Names are resolved by the proxy, not here.\n"
		    "proxy_dns\n"
		    "remote_dns_subnet 224\n"
		    "\n"
		    "# Milliseconds.\n"
		    "tcp_read_time_out 15000\n"
		    "tcp_connect_time_out 8000\n"
		    "\n"
		    "[ProxyList]\n",
		    s->stats.generation, listed, left, FORMATS_PROXYCHAINS_MAX);
	sbuf_add(out, list.data, list.len);
	if (sbuf_failed(&list))
		out->failed = true; /* no config with proxies missing */
	sbuf_free(&list);
}

void render_curl_txt(const struct snapshot *s, int arg, struct sbuf *out)
{
	for (uint32_t i = 0; i < s->nlive; i++) {
		const struct snap_proxy *p = &s->live[i];
		const char *rest = strstr(p->uri, "://");

		if (!rest)
			continue;
		/* socks5h: curl hands names to the proxy to resolve; socks4a
		 * is kept as listed (it resolves remotely too), http is http
		 * whether it forwards or tunnels. */
		if (p->proto == PROXY_SOCKS5) {
			sbuf_adds(out, "socks5h");
			render_uri(s, rest, out);
		} else {
			render_uri(s, p->uri, out);
		}
		sbuf_addc(out, '\n');
	}
}
