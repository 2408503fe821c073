/* Unit tests for fs/render_formats.c: which live proxies each format
 * lists and how, byte for byte, over a hand-built snapshot. (The real
 * proxychains4 and curl take the files in tests/integration/test_formats.py.) */
#include "render.h"
#include "testutil.h"

#include <stdlib.h>

/* Fastest first, in this order (latency_ms rises). */
static const struct snap_proxy six[] = {
    {.uri = "socks5://u:p@[2001:db8::1]:1080",
     .host = "2001:db8::1",
     .port = 1080,
     .proto = PROXY_SOCKS5,
     .folders = 1u << PROXY_SOCKS5,
     .latency_ms = 10},
    {.uri = "http://10.0.0.1:8080",
     .host = "10.0.0.1",
     .port = 8080,
     .proto = PROXY_HTTP,
     .folders = (1u << PROXY_HTTP) | (1u << PROXY_HTTPS),
     .latency_ms = 20},
    {.uri = "http://10.0.0.2:3128",
     .host = "10.0.0.2",
     .port = 3128,
     .proto = PROXY_HTTP,
     .folders = 1u << PROXY_HTTP,
     .latency_ms = 30},
    {.uri = "socks4://proxy.example.com:1080",
     .host = "proxy.example.com",
     .port = 1080,
     .proto = PROXY_SOCKS4,
     .folders = 1u << PROXY_SOCKS4,
     .latency_ms = 40},
    {.uri = "socks5h://10.0.0.3:1080",
     .host = "10.0.0.3",
     .port = 1080,
     .proto = PROXY_SOCKS5,
     .folders = 1u << PROXY_SOCKS5,
     .latency_ms = 50},
    {.uri = "socks5://a%20b:pw@10.0.0.4:1080",
     .host = "10.0.0.4",
     .port = 1080,
     .proto = PROXY_SOCKS5,
     .folders = 1u << PROXY_SOCKS5,
     .latency_ms = 60},
    {.uri = "socks4a://10.0.0.5:1080",
     .host = "10.0.0.5",
     .port = 1080,
     .proto = PROXY_SOCKS4,
     .folders = 1u << PROXY_SOCKS4,
     .latency_ms = 70},
};
#define NSIX (sizeof(six) / sizeof(six[0]))

static struct snapshot *make(uint32_t n, bool hide)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st;

	CHECK(b != NULL);
	if (!b)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		struct snap_proxy p = six[i];

		p.exit_ip = "";
		p.sources = "list";
		p.anonymity = SNAP_ANON_ELITE;
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	memset(&st, 0, sizeof(st));
	st.generation = 7;
	st.alive = n;
	st.health = "ok";
	st.store_error = "";
	st.hide_credentials = hide;
	snap_builder_set_stats(b, &st);
	return snap_builder_finish(b);
}

static const char *proxy_list(const struct sbuf *b)
{
	const char *at = strstr(b->data, "[ProxyList]\n");

	return at ? at + strlen("[ProxyList]\n") : "(none)";
}

static void test_proxychains(void)
{
	struct snapshot *s = make(NSIX, false);
	struct sbuf b;

	sbuf_init(&b);
	render_proxychains_conf(s, 0, &b);
	CHECK(!sbuf_failed(&b));
	CHECK_STR(proxy_list(&b), "socks5\t2001:db8::1\t1080\tu\tp\n"
				  "http\t10.0.0.1\t8080\n"
				  "socks5\t10.0.0.3\t1080\n"
				  "socks4\t10.0.0.5\t1080\n");
	CHECK(strstr(b.data, "\nrandom_chain\nchain_len = 1\n") != NULL);
	CHECK(strstr(b.data, "\nproxy_dns\n") != NULL);
	CHECK(strstr(b.data, "snapshot 7:\n# 4 live proxies") != NULL);
	CHECK(strstr(b.data, "# 3 left out") != NULL);
	snap_unref(s);

	/* Credentials hidden from readers: such proxies are of no use. */
	s = make(NSIX, true);
	sbuf_reset(&b);
	render_proxychains_conf(s, 0, &b);
	CHECK_STR(proxy_list(&b), "http\t10.0.0.1\t8080\n"
				  "socks5\t10.0.0.3\t1080\n"
				  "socks4\t10.0.0.5\t1080\n");
	CHECK(strstr(b.data, "u\tp") == NULL);
	snap_unref(s);

	/* An empty pool: the config whole, its list empty. */
	s = make(0, false);
	sbuf_reset(&b);
	render_proxychains_conf(s, 0, &b);
	CHECK_STR(proxy_list(&b), "");
	CHECK(strstr(b.data, "# 0 live proxies") != NULL);
	snap_unref(s);
	sbuf_free(&b);
}

static void test_curl(void)
{
	struct snapshot *s = make(NSIX, false);
	struct sbuf b;

	sbuf_init(&b);
	render_curl_txt(s, 0, &b);
	CHECK_STR(b.data, "socks5h://u:p@[2001:db8::1]:1080\n"
			  "http://10.0.0.1:8080\n"
			  "http://10.0.0.2:3128\n"
			  "socks4://proxy.example.com:1080\n"
			  "socks5h://10.0.0.3:1080\n"
			  "socks5h://a%20b:pw@10.0.0.4:1080\n"
			  "socks4a://10.0.0.5:1080\n");
	snap_unref(s);
	s = make(NSIX, true);
	sbuf_reset(&b);
	render_curl_txt(s, 0, &b);
	CHECK_STR(b.data, "socks5h://[2001:db8::1]:1080\n"
			  "http://10.0.0.1:8080\n"
			  "http://10.0.0.2:3128\n"
			  "socks4://proxy.example.com:1080\n"
			  "socks5h://10.0.0.3:1080\n"
			  "socks5h://10.0.0.4:1080\n"
			  "socks4a://10.0.0.5:1080\n");
	snap_unref(s);
	sbuf_free(&b);
}

int main(void)
{
	test_proxychains();
	test_curl();
	return test_exit_code();
}
