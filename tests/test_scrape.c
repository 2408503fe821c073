/* test_scrape: proxies picked out of pages, exports and junk.
 *
 * Each case scrapes a text and compares the canonical URIs found, in
 * order, with what a reader of that text would list. Junk and crafted
 * inputs of 1 MiB must finish quickly and find nothing false.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"
#include "scrape.h"
#include "testutil.h"

#define BIG (1u << 20)

struct found {
	char uris[4096]; /* space-separated */
	size_t calls;
	int stop_after; /* a negative return after this many; 0 = never */
};

static int collect(void *arg, const struct proxy_addr *a)
{
	struct found *f = arg;
	char uri[PROXY_URI_MAX];
	size_t used = strlen(f->uris);

	if (proxy_format_uri(a, uri, sizeof(uri)) < 0)
		uri[0] = '\0';
	snprintf(f->uris + used, sizeof(f->uris) - used, "%s%s", used ? " " : "", uri);
	f->calls++;
	return f->stop_after && f->calls >= (size_t)f->stop_after ? -1 : 0;
}

/* Scrapes text (up to its NUL) and returns the URIs found. */
static const char *scrape(const char *text, enum proxy_proto dflt)
{
	static struct found f;
	size_t n;

	memset(&f, 0, sizeof(f));
	n = scrape_text(text, strlen(text), dflt, collect, &f);
	CHECK_INT(n, f.calls);
	return f.uris;
}

static void test_html_table(void)
{
	CHECK_STR(scrape("<table><tr><th>IP</th><th>Port</th><th>Type</th></tr>\n"
			 "<tr><td>1.2.3.4</td><td>8080</td><td>HTTP</td></tr>\n"
			 "<tr><td>5.6.7.8</td>\n    <td class=\"port\" style=\"width:50px\">"
			 "<b>3128</b></td><td>elite</td></tr>\n"
			 "<tr><td>9.9.9.9</td><td>US</td><td>80</td></tr></table>",
			 PROXY_HTTP),
		  "http://1.2.3.4:8080 http://5.6.7.8:3128");
}

static void test_json(void)
{
	CHECK_STR(scrape("[{\"ip\":\"1.2.3.4\",\"port\":8080},\n"
			 " {\"ip\": \"5.6.7.8\", \"country\": \"DE\", \"port\": \"3128\"},\n"
			 " {\"ip\": \"9.9.9.9\", \"uptime\": 99, \"port\": 80}]",
			 PROXY_SOCKS5),
		  "socks5://1.2.3.4:8080 socks5://5.6.7.8:3128");
	CHECK_STR(scrape("{\"proxies\":[\"1.2.3.4:8080\",\"5.6.7.8:3128\"]}", PROXY_HTTP),
		  "http://1.2.3.4:8080 http://5.6.7.8:3128");
}

static void test_csv_and_prose(void)
{
	CHECK_STR(scrape("ip,port,country\r\n1.2.3.4,8080,US\r\n5.6.7.8,3128,DE\r\n", PROXY_HTTP),
		  "http://1.2.3.4:8080 http://5.6.7.8:3128");
	CHECK_STR(scrape("1.2.3.4\t8080\n5.6.7.8 | 3128\n", PROXY_SOCKS4),
		  "socks4://1.2.3.4:8080 socks4://5.6.7.8:3128");
	CHECK_STR(scrape("Fresh today: 1.2.3.4:8080 (elite), and 5.6.7.8:3128.", PROXY_HTTP),
		  "http://1.2.3.4:8080 http://5.6.7.8:3128");
	CHECK_STR(scrape("with login 1.2.3.4:8080:bob:s3cret and 5.6.7.8:3128:half\n", PROXY_HTTP),
		  "http://bob:s3cret@1.2.3.4:8080 http://5.6.7.8:3128");
}

static void test_clean_list(void)
{
	CHECK_STR(scrape("# updated 2024-01-01 from 9.9.9.9:99\n1.2.3.4:1080\n"
			 "  # 5.6.7.8:1080 is off\n\n5.6.7.8:1081\n#last 7.7.7.7:7",
			 PROXY_SOCKS5),
		  "socks5://1.2.3.4:1080 socks5://5.6.7.8:1081");
}

static void test_ipv6(void)
{
	CHECK_STR(scrape("v6: [2001:DB8::1]:8080, [::ffff:1.2.3.4]:3128; not [::]:80, "
			 "[ff02::1]:80, [2001:db8::2]:0, [fe80::1] or arr[1]:2",
			 PROXY_HTTP),
		  "http://[2001:db8::1]:8080 http://[::ffff:1.2.3.4]:3128");
}

static void test_uris(void)
{
	CHECK_STR(
	    scrape("Try socks5://user:p%40ss@1.2.3.4:1080 or https://5.6.7.8:443, "
		   "SOCKS4A://Proxy.Example.com:1080. <a href=\"socks5h://[2001:db8::5]:9050\">"
		   "x</a> http://8.8.8.8:8080/\n",
		   PROXY_SOCKS4),
	    "socks5://user:p%40ss@1.2.3.4:1080 http://5.6.7.8:443 "
	    "socks4a://proxy.example.com:1080 socks5h://[2001:db8::5]:9050 "
	    "http://8.8.8.8:8080");
	/* web links and other schemes, and their hosts, give nothing */
	CHECK_STR(scrape("see http://example.com/page, http://9.9.9.9:8080/index.html, "
			 "https://1.1.1.1:443?q=1 ftp://7.7.7.7:21 git+ssh://6.6.6.6:22 "
			 "mailto:x@5.5.5.5:25 xhttp://4.4.4.4:80 http://0.0.0.0:80",
			 PROXY_HTTP),
		  "");
}

static void test_near_misses(void)
{
	CHECK_STR(scrape("999.1.1.1:80 1.2.3.4:0 1.2.3.4:70000 1.2.3.4:123456 0.0.0.0:80 "
			 "0.1.2.3:80 01.2.3.4:80 1.2.3.04:80 v1.2.3.4:5 1.2.3.4.5:80 "
			 "239.1.1.1:80 255.255.255.255:80 1.2.3:80 a1.2.3.4:80 1.2.3.4a:80",
			 PROXY_HTTP),
		  "");
	CHECK_STR(scrape("version 1.2.3.4 released 2020, on 2024-01-02 at 12:30:45; "
			 "dates 01.02.2024 10:00, net 10.0.0.0/24, build 1.2.3.4-5 and "
			 "1.2.3.4:80.5, 1.2.3.4 2024-01-01, host 10.1.1.1 was seen 5 times, "
			 "1.2.3.4 12:30, list 1.2.3.4, 5.6.7.8 only",
			 PROXY_HTTP),
		  "");
}

static void test_edges(void)
{
	static const char bin[] = "\0\x01\xff"
				  "1.2.3.4:8080\0"
				  "\x80[::1]:80\0";
	const char *cut = "1.2.3.4:80801";
	struct found f;
	size_t n;

	memset(&f, 0, sizeof(f));
	n = scrape_text(bin, sizeof(bin) - 1, PROXY_HTTP, collect, &f);
	CHECK_INT(n, 2);
	CHECK_STR(f.uris, "http://1.2.3.4:8080 http://[::1]:80");

	/* no NUL needed: the text ends where len says */
	memset(&f, 0, sizeof(f));
	n = scrape_text(cut, strlen(cut) - 1, PROXY_HTTP, collect, &f);
	CHECK_INT(n, 1);
	CHECK_STR(f.uris, "http://1.2.3.4:8080");
	memset(&f, 0, sizeof(f));
	CHECK_INT(scrape_text(cut, 8, PROXY_HTTP, collect, &f), 0);
	CHECK_INT(scrape_text("", 0, PROXY_HTTP, collect, &f), 0);

	/* a negative return stops the scan */
	memset(&f, 0, sizeof(f));
	f.stop_after = 2;
	n = scrape_text("1.1.1.1:1 2.2.2.2:2 3.3.3.3:3", 29, PROXY_HTTP, collect, &f);
	CHECK_INT(n, 2);
	CHECK_STR(f.uris, "http://1.1.1.1:1 http://2.2.2.2:2");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Scrapes BIG bytes of buf; checks that every find reached the callback
 * and that the scan took far less than a quadratic one would. */
static void scrape_big(const char *buf, const char *what, size_t *found)
{
	struct found f;
	double t0, took;

	memset(&f, 0, sizeof(f));
	t0 = now_s();
	*found = scrape_text(buf, BIG, PROXY_HTTP, collect, &f);
	took = now_s() - t0;
	CHECK_INT(*found, f.calls);
	CHECK(took < 5.0);
	if (took >= 5.0)
		fprintf(stderr, "slow on %s: %.2f s\n", what, took);
}

static void fill(char *buf, const char *pattern)
{
	size_t plen = strlen(pattern);

	for (size_t i = 0; i < BIG; i++)
		buf[i] = pattern[i % plen];
}

/* Random bytes, and repeated fragments that make each attempt look as far
 * ahead as it may. */
static void test_junk(void)
{
	static const char *const patterns[] = {
	    "1.1.1.1.",
	    "1.1.1.1:",
	    "1.1.1.1:1:",
	    "[",
	    "[::1]",
	    "http://",
	    "http://a",
	    "<<<<",
	    "1.1.1.1</td><td",
	    "a",
	    "1",
	    "#",
	    "\n#",
	    "1.1.1.1 port ",
	    "socks5://[",
	    "1.1.1.1<",
	    "1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:"
	    "1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:1.1.1.1:1:1.1.1.1:1 ",
	};
	char *buf = malloc(BIG);
	uint32_t x = 12345;
	size_t found;

	if (!buf) {
		CHECK(buf != NULL);
		return;
	}
	for (size_t i = 0; i < BIG; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (char)(x >> 16);
	}
	scrape_big(buf, "random bytes", &found);
	for (size_t k = 0; k < sizeof(patterns) / sizeof(patterns[0]); k++) {
		fill(buf, patterns[k]);
		scrape_big(buf, patterns[k], &found);
	}
	/* one proxy per line: all found, the cut last one as 1.2.3.4:8 */
	fill(buf, "1.2.3.4:8080\n");
	scrape_big(buf, "a list", &found);
	CHECK_INT(found, BIG / 13 + 1);
	free(buf);
}

int main(void)
{
	test_html_table();
	test_json();
	test_csv_and_prose();
	test_clean_list();
	test_ipv6();
	test_uris();
	test_near_misses();
	test_edges();
	test_junk();
	return test_exit_code();
}
