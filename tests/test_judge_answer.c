/* test_judge_answer: the judge-answer parser on every format and every
 * class, on address tokens at their edges, and on hostile bodies. Each body
 * is copied into a buffer of exactly its length, so a read past len is an
 * ASan error rather than luck.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "echo.h"
#include "snapshot.h"
#include "testutil.h"

#define OURS "1.2.3.4"
#define EXIT "5.6.7.8"

static struct ja_result res;

/* ja_parse over an exact-size copy of len bytes of s. */
static int parse_n(const char *s, size_t len, const char *const *our, size_t n_our)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	memcpy(copy, s, len);
	rc = ja_parse(copy, len, our, n_our, &res);
	free(copy);
	return rc;
}

static int parse(const char *s, const char *our)
{
	const char *const list[] = { our };

	return parse_n(s, strlen(s), our ? list : NULL, our ? 1 : 0);
}

/* Classifies body against OURS and checks anon, exit address and header. */
static void expect_class(const char *body, int format, enum ja_anon anon, const char *exit_ip,
			 const char *header)
{
	CHECK_INT(parse(body, OURS), 0);
	CHECK_INT(res.format, format);
	CHECK_INT(res.anon, anon);
	CHECK_STR(res.exit_ip, exit_ip);
	CHECK_STR(res.header, header);
	if (res.anon != anon)
		fprintf(stderr, "  body: %s\n", body);
}

static void expect_unknown_n(const char *body, size_t len)
{
	CHECK_INT(parse_n(body, len, NULL, 0), -EINVAL);
	CHECK_INT(res.anon, JA_UNKNOWN);
	CHECK_STR(res.exit_ip, "");
	CHECK_STR(res.header, "");
}

static void expect_unknown(const char *body)
{
	expect_unknown_n(body, strlen(body));
}

static const char azenv_head[] =
	"<html><head><title>AZ Environment variables 1.04</title></head>\n<body><pre>\n"
	"HTTP_HOST = azenv.net\n"
	"HTTP_USER_AGENT = curl/7.88.1\n"
	"HTTP_ACCEPT = */*\n";

static void test_enum_matches_snapshot(void)
{
	CHECK_INT(JA_UNKNOWN, SNAP_ANON_UNKNOWN);
	CHECK_INT(JA_TRANSPARENT, SNAP_ANON_TRANSPARENT);
	CHECK_INT(JA_ANONYMOUS, SNAP_ANON_ANONYMOUS);
	CHECK_INT(JA_ELITE, SNAP_ANON_ELITE);
}

static void test_azenv(void)
{
	char body[1024];

	snprintf(body, sizeof(body), "%sREMOTE_ADDR = %s\nREMOTE_PORT = 51234\n</pre></body>\n",
		 azenv_head, EXIT);
	expect_class(body, JA_FORMAT_AZENV, JA_ELITE, EXIT, "");

	snprintf(body, sizeof(body), "%sHTTP_VIA = 1.1 squid\nREMOTE_ADDR = %s\n</pre>", azenv_head,
		 EXIT);
	expect_class(body, JA_FORMAT_AZENV, JA_ANONYMOUS, EXIT, "Via");

	snprintf(body, sizeof(body),
		 "%sHTTP_X_FORWARDED_FOR = %s\nHTTP_VIA = 1.1 x\nREMOTE_ADDR = %s\n</pre>",
		 azenv_head, OURS, EXIT);
	expect_class(body, JA_FORMAT_AZENV, JA_TRANSPARENT, EXIT, "X-Forwarded-For");

	/* The proxy connected from our own address: transparent, no header. */
	snprintf(body, sizeof(body), "%sREMOTE_ADDR = %s\n", azenv_head, OURS);
	expect_class(body, JA_FORMAT_AZENV, JA_TRANSPARENT, OURS, "");

	/* One line of HTML: segments split by tags, a trailing <br>, no spaces. */
	expect_class("<pre>REMOTE_ADDR=" EXIT "<br>HTTP_PROXY_CONNECTION = keep-alive<br></pre>",
		     JA_FORMAT_AZENV, JA_ANONYMOUS, EXIT, "Proxy-Connection");

	/* CRLF line ends, lower-case names, a colon for '='. */
	expect_class("remote_addr: " EXIT "\r\nhttp_x_real_ip = " OURS "\r\n", JA_FORMAT_AZENV,
		     JA_TRANSPARENT, EXIT, "X-Real-IP");

	/* The first REMOTE_ADDR is the exit address. */
	expect_class("REMOTE_ADDR = " EXIT "\nREMOTE_ADDR = 9.9.9.9\n", JA_FORMAT_AZENV, JA_ELITE,
		     EXIT, "");

	/* The Host header names the judge, not us; SERVER_ADDR is the judge's. */
	expect_class("HTTP_HOST = " OURS "\nSERVER_ADDR = " OURS "\nREQUEST_URI = http://" OURS
		     "/\nREMOTE_ADDR = " EXIT "\n",
		     JA_FORMAT_AZENV, JA_ELITE, EXIT, "");
}

static void test_every_proxy_header(void)
{
	static const char *const names[][2] = {
		{ "HTTP_VIA", "Via" },
		{ "HTTP_X_FORWARDED_FOR", "X-Forwarded-For" },
		{ "HTTP_FORWARDED", "Forwarded" },
		{ "HTTP_X_REAL_IP", "X-Real-IP" },
		{ "HTTP_PROXY_CONNECTION", "Proxy-Connection" },
		{ "HTTP_CLIENT_IP", "Client-IP" },
		{ "HTTP_X_PROXY_ID", "X-Proxy-ID" },
		{ "HTTP_FORWARDED_FOR", "Forwarded-For" },
		{ "HTTP_X_FORWARDED", "X-Forwarded" },
		{ "HTTP_PROXY_AGENT", "Proxy-Agent" },
		{ "HTTP_X_TINYPROXY", "X-Tinyproxy" },
		{ "HTTP_X_CLIENT_IP", "X-Client-IP" },
	};
	char body[256];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(body, sizeof(body), "REMOTE_ADDR = %s\n%s = something\n", EXIT,
			 names[i][0]);
		expect_class(body, JA_FORMAT_AZENV, JA_ANONYMOUS, EXIT, names[i][1]);
		snprintf(body, sizeof(body), "{\"origin\": \"%s\", \"headers\": {\"%s\": \"x\"}}",
			 EXIT, names[i][1]);
		expect_class(body, JA_FORMAT_JSON, JA_ANONYMOUS, EXIT, names[i][1]);
		snprintf(body, sizeof(body), "proxyfs-judge 1\nremote_addr %s\nheader %s: x\n",
			 EXIT, names[i][1]);
		expect_class(body, JA_FORMAT_PROXYFS, JA_ANONYMOUS, EXIT, names[i][1]);
	}
	/* Ordinary headers reveal nothing. */
	expect_class("REMOTE_ADDR = " EXIT "\nHTTP_CONNECTION = close\n"
		     "HTTP_X_FORWARDED_PROTO = http\nHTTP_VIAX = 1\nHTTP_X_VIA = 1\n",
		     JA_FORMAT_AZENV, JA_ELITE, EXIT, "");
}

/* Our address in an X-Forwarded-For value: whole tokens only. */
static void expect_ours(const char *our, const char *value, bool ours)
{
	char body[512];
	const char *const list[] = { our };

	snprintf(body, sizeof(body), "REMOTE_ADDR = %s\nHTTP_X_FORWARDED_FOR = %s\n", EXIT, value);
	CHECK_INT(parse_n(body, strlen(body), list, 1), 0);
	CHECK_INT(res.anon, ours ? JA_TRANSPARENT : JA_ANONYMOUS);
	if (res.anon != (ours ? JA_TRANSPARENT : JA_ANONYMOUS))
		fprintf(stderr, "  ours %s in '%s'\n", our, value);
}

static void test_token_boundaries(void)
{
	expect_ours(OURS, OURS, true);
	expect_ours(OURS, "11.2.3.45", false);
	expect_ours(OURS, "1.2.3.45", false);
	expect_ours(OURS, "11.2.3.4", false);
	expect_ours(OURS, "1.2.3.4.5", false);
	expect_ours(OURS, "0.1.2.3.4", false);
	expect_ours(OURS, "x1.2.3.4", false);
	expect_ours(OURS, "1.2.3.4a", false);
	expect_ours(OURS, "1.2.3.4:5678", true);
	expect_ours(OURS, "for=1.2.3.4;proto=http", true);
	expect_ours(OURS, "for=\"1.2.3.4\"", true);
	expect_ours(OURS, "10.0.0.1, 1.2.3.4", true);
	expect_ours(OURS, "1.2.3.4, 10.0.0.1", true);
	expect_ours(OURS, "::ffff:1.2.3.4", true);
	expect_ours(OURS, "unknown", false);

	expect_ours("2001:db8::1", "2001:db8::1", true);
	expect_ours("2001:db8::1", "for=\"[2001:db8::1]:4711\"", true);
	expect_ours("2001:db8::1", "2001:DB8::1", true);
	expect_ours("2001:db8::1", "2001:db8::10", false);
	expect_ours("2001:db8::1", "2001:db8::1:5", false);
	expect_ours("2001:db8::1", "32001:db8::1", false);
	expect_ours("2001:db8::1", "a:2001:db8::1", false);
	expect_ours("::1", "fe80::1", false);
	expect_ours("::1", "::1", true);

	/* Several of our addresses, empty and NULL ones skipped. */
	{
		const char *const list[] = { NULL, "", "9.9.9.9", "2001:db8::7" };
		const char *body =
			"REMOTE_ADDR = " EXIT "\nHTTP_FORWARDED = for=\"[2001:db8::7]\"\n";

		CHECK_INT(parse_n(body, strlen(body), list, 4), 0);
		CHECK_INT(res.anon, JA_TRANSPARENT);
		CHECK_STR(res.header, "Forwarded");
	}
}

static void test_json(void)
{
	expect_class("{\n  \"args\": {}, \n  \"headers\": {\n    \"Accept\": \"*/*\", \n"
		     "    \"Host\": \"httpbin.org\", \n    \"User-Agent\": \"curl/7.88.1\", \n"
		     "    \"X-Amzn-Trace-Id\": \"Root=1-6543\"\n  }, \n  \"origin\": \"" EXIT
		     "\", \n  \"url\": \"http://httpbin.org/get\"\n}\n",
		     JA_FORMAT_JSON, JA_ELITE, EXIT, "");
	expect_class("{\"headers\": {\"via\": \"1.1 squid\"}, \"origin\": \"" EXIT "\"}",
		     JA_FORMAT_JSON, JA_ANONYMOUS, EXIT, "Via");
	/* httpbin behind its load balancer: the connecting address comes last. */
	expect_class("{\"headers\": {}, \"origin\": \"" OURS ", " EXIT "\"}", JA_FORMAT_JSON,
		     JA_TRANSPARENT, EXIT, "");
	expect_class("{\"origin\": \"" EXIT "\", \"headers\": {\"X-Forwarded-For\": \"" OURS
		     "\"}}",
		     JA_FORMAT_JSON, JA_TRANSPARENT, EXIT, "X-Forwarded-For");
	/* go-httpbin: header values are lists. */
	expect_class("{\"headers\": {\"Accept\": [\"*/*\"], \"Via\": [\"1.1 a\", \"1.1 b\"]},"
		     " \"origin\": \"" EXIT "\"}",
		     JA_FORMAT_JSON, JA_ANONYMOUS, EXIT, "Via");
	/* Keys of the same name deeper down do not count; escapes do not
	 * end strings; the Host header is not searched. */
	expect_class("{\"args\": {\"origin\": \"9.9.9.9\", \"headers\": {\"Via\": \"x\"}},"
		     " \"json\": [{\"origin\": \"8.8.8.8\"}],"
		     " \"headers\": {\"User-Agent\": \"a \\\"quoted\\\", x\","
		     " \"Host\": \"" OURS "\"},"
		     " \"origin\": \"" EXIT "\"}",
		     JA_FORMAT_JSON, JA_ELITE, EXIT, "");
	expect_class("{\"ip\": \"2001:db8::5\"}", JA_FORMAT_JSON, JA_ELITE, "2001:db8::5", "");
	expect_unknown("{\"headers\": {\"Via\": \"x\"}}");
	expect_unknown("{\"origin\": \"not an address\"}");
	expect_unknown("{\"origin\": 12}");
}

static void test_proxyfs(void)
{
	expect_class("proxyfs-judge 1\nremote_addr " EXIT "\nremote_port 40000\nmethod GET\n"
		     "uri http://judge/\nheader Host: " OURS ":8080\nheader User-Agent: curl\n",
		     JA_FORMAT_PROXYFS, JA_ELITE, EXIT, "");
	expect_class("proxyfs-judge 1\r\nremote_addr " EXIT "\r\nheader Via: 1.1 tinyproxy\r\n",
		     JA_FORMAT_PROXYFS, JA_ANONYMOUS, EXIT, "Via");
	expect_class("proxyfs-judge 1\nremote_addr " EXIT "\nheader Via: 1.1 x\n"
		     "header X-Forwarded-For: " OURS "\n",
		     JA_FORMAT_PROXYFS, JA_TRANSPARENT, EXIT, "Via");
	expect_class("proxyfs-judge 1\nremote_addr " OURS "\n", JA_FORMAT_PROXYFS, JA_TRANSPARENT,
		     OURS, "");
	expect_class("\n proxyfs-judge 2\nfuture_item x\nremote_addr ::1\n", JA_FORMAT_PROXYFS,
		     JA_ELITE, "::1", "");
	/* The body of another format mentioning us is not read as ours. */
	expect_class("proxyfs-judgement\nREMOTE_ADDR = " EXIT "\n", JA_FORMAT_AZENV, JA_ELITE, EXIT,
		     "");
	expect_unknown("proxyfs-judge 1\nheader Via: x\n");
	expect_unknown("proxyfs-judge 1\nremote_addr  \n");
}

static void test_addresses(void)
{
	static const char nul_addr[] = "REMOTE_ADDR = ::1\0junk\n";

	expect_class("REMOTE_ADDR = 2001:db8::9\n", JA_FORMAT_AZENV, JA_ELITE, "2001:db8::9", "");
	expect_class("REMOTE_ADDR = [2001:db8::9]\n", JA_FORMAT_AZENV, JA_ELITE, "2001:db8::9", "");
	expect_class("REMOTE_ADDR = ::ffff:" EXIT "\n", JA_FORMAT_AZENV, JA_ELITE, "::ffff:" EXIT,
		     "");
	expect_class("REMOTE_ADDR = fe80::1%eth0\n", JA_FORMAT_AZENV, JA_ELITE, "fe80::1%eth0", "");
	expect_class("REMOTE_ADDR = " EXIT "   \t\r\n", JA_FORMAT_AZENV, JA_ELITE, EXIT, "");
	expect_unknown("REMOTE_ADDR = 1.2.3\n");
	expect_unknown("REMOTE_ADDR = 1.2.3.256\n");
	expect_unknown("REMOTE_ADDR = example.com\n");
	expect_unknown("REMOTE_ADDR = fe80::1%\n");
	expect_unknown_n(nul_addr, sizeof(nul_addr) - 1);
	expect_unknown("REMOTE_ADDR\n");
	expect_unknown("");
	expect_unknown("hello world\n");
	expect_unknown("<html><body>It works!</body></html>\n");
	CHECK_INT(ja_parse(NULL, 10, NULL, 0, &res), -EINVAL);
}

static void test_own_addr(void)
{
	char addr[64], tiny[4];

	CHECK_INT(ja_own_addr("REMOTE_ADDR = 9.8.7.6\n", 22, addr, sizeof(addr)), 0);
	CHECK_STR(addr, "9.8.7.6");
	CHECK_INT(ja_own_addr("{\"origin\": \"9.8.7.5\"}", 20, addr, sizeof(addr)), 0);
	CHECK_STR(addr, "9.8.7.5");
	CHECK_INT(ja_own_addr("proxyfs-judge 1\nremote_addr 2001:db8::3\n", 40, addr,
			      sizeof(addr)),
		  0);
	CHECK_STR(addr, "2001:db8::3");
	CHECK_INT(ja_own_addr("REMOTE_ADDR = 9.8.7.6\n", 22, tiny, sizeof(tiny)), -ENOSPC);
	CHECK_INT(ja_own_addr("nothing here", 12, addr, sizeof(addr)), -EINVAL);
}

/* xorshift: the same junk on every run. */
static uint32_t junk_next(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void test_junk(void)
{
	const size_t n = 1024 * 1024;
	char *b = malloc(n);
	const char *const our[] = { OURS, "2001:db8::1" };
	const char *xff = "REMOTE_ADDR = " EXIT "\nHTTP_X_FORWARDED_FOR = ";
	uint32_t seed = 2463534242u;
	int rc;

	/* Random bytes; then random bytes from a small alphabet that forms
	 * many near-tokens, keys and tags. */
	for (size_t i = 0; i < n; i++)
		b[i] = (char)junk_next(&seed);
	rc = parse_n(b, n, our, 2);
	CHECK(rc == 0 || rc == -EINVAL);
	for (size_t i = 0; i < n; i++)
		b[i] = "1.2.3.4:=_ \n<>\"{}[],\\aHTP"[junk_next(&seed) % 26];
	rc = parse_n(b, n, our, 2);
	CHECK(rc == 0 || rc == -EINVAL);
	b[0] = '{';
	rc = parse_n(b, n, our, 2);
	CHECK(rc == 0 || rc == -EINVAL);
	memcpy(b, "proxyfs-judge 1\n", 16);
	rc = parse_n(b, n, our, 2);
	CHECK(rc == 0 || rc == -EINVAL);

	/* Nesting a million levels deep, and one unclosed tag or string. */
	memset(b, '{', n);
	CHECK_INT(parse_n(b, n, our, 2), -EINVAL);
	memset(b, '[', n);
	b[0] = '{';
	CHECK_INT(parse_n(b, n, our, 2), -EINVAL);
	memset(b, 'a', n);
	b[0] = '<';
	CHECK_INT(parse_n(b, n, our, 2), -EINVAL);
	memcpy(b, "{\"origin\": \"", 12);
	CHECK_INT(parse_n(b, n, our, 2), -EINVAL);

	/* Our address repeated without a boundary, over the whole megabyte. */
	for (size_t i = 0; i < n; i++)
		b[i] = "1.2.3.4."[i % 8];
	memcpy(b, xff, strlen(xff));
	CHECK_INT(parse_n(b, n, our, 2), 0);
	CHECK_INT(res.anon, JA_ANONYMOUS);
	free(b);
}

static void test_long_lines(void)
{
	const size_t n = 10 * 1024;
	const char *via = "REMOTE_ADDR = " EXIT "\nHTTP_VIA = ";
	size_t k = strlen(via);
	char *b = malloc(n + 64);

	/* A 10 KB REMOTE_ADDR value: not an address. */
	memcpy(b, "REMOTE_ADDR = ", 14);
	memset(b + 14, '1', n);
	b[14 + n] = '\n';
	expect_unknown_n(b, n + 15);
	/* An address padded with 10 KB of blanks is still that address. */
	memcpy(b + 14, EXIT, 7);
	memset(b + 21, ' ', n - 7);
	CHECK_INT(parse_n(b, n + 15, NULL, 0), 0);
	CHECK_STR(res.exit_ip, EXIT);
	/* A 10 KB header value with our address at its very end. */
	memcpy(b, via, k);
	memset(b + k, 'v', n);
	memcpy(b + k + n, " " OURS, 8);
	CHECK_INT(parse_n(b, k + n + 8, (const char *const[]){ OURS }, 1), 0);
	CHECK_INT(res.anon, JA_TRANSPARENT);
	CHECK_STR(res.header, "Via");
	free(b);
}

/* Every prefix of a valid answer parses or is refused, never more. */
static void truncate_all(const char *body, size_t len)
{
	const char *const our[] = { OURS };

	for (size_t n = 0; n <= len; n++) {
		int rc = parse_n(body, n, our, 1);

		CHECK(rc == 0 || rc == -EINVAL);
		if (rc == 0) {
			CHECK(res.anon >= JA_TRANSPARENT && res.anon <= JA_ELITE);
			CHECK(res.exit_ip[0] != '\0');
		}
	}
	CHECK_INT(parse_n(body, len, our, 1), 0);
}

static void test_truncated(void)
{
	static const char azenv[] = "<pre>\nHTTP_HOST = judge\nHTTP_VIA = 1.1 p\n"
				    "HTTP_X_FORWARDED_FOR = " OURS "\nREMOTE_ADDR = 2001:db8::2\n"
				    "REMOTE_PORT = 1\n</pre>\n";
	static const char json[] = "{\"args\": {}, \"headers\": {\"Via\": [\"1.1 p\"],"
				   " \"X-Forwarded-For\": \"" OURS "\"}, \"origin\": \"" OURS
				   ", " EXIT "\", \"url\": \"http://judge/get\"}\n";
	static const char own[] = "proxyfs-judge 1\nremote_addr " EXIT "\nremote_port 40000\n"
				  "header Host: judge\nheader Via: 1.1 p\nheader X-Real-IP: " OURS
				  "\n";

	truncate_all(azenv, sizeof(azenv) - 1);
	truncate_all(json, sizeof(json) - 1);
	truncate_all(own, sizeof(own) - 1);
}

static void test_nul_bytes(void)
{
	/* NUL is an ordinary byte: it only spoils the line it is in. */
	static const char body[] = "\0\0\nREMOTE_ADDR = " EXIT "\n\0HTTP_VIA = x\n"
				   "HTTP_X_FORWARDED_FOR = \0" OURS "\0\n";

	CHECK_INT(parse_n(body, sizeof(body) - 1, (const char *const[]){ OURS }, 1), 0);
	CHECK_STR(res.exit_ip, EXIT);
	CHECK_INT(res.anon, JA_TRANSPARENT);
	CHECK_STR(res.header, "X-Forwarded-For");
	CHECK_INT(parse_n(body, sizeof(body) - 1, NULL, 0), 0);
	CHECK_INT(res.anon, JA_ANONYMOUS);
}

/* Which answers echo the request's User-Agent, in each format. */
static void test_echoes(void)
{
	static const char az[] = "<pre>REMOTE_ADDR = 1.2.3.4\nHTTP_USER_AGENT = x/1\n</pre>";
	static const char az_via[] = "REMOTE_ADDR = 1.2.3.4\nHTTP_VIA = 1.1 p\n";
	static const char js[] = "{\"headers\": {\"user-agent\": \"x\"}, \"origin\": \"1.2.3.4\"}";
	static const char js_top[] = "{\"User-Agent\": \"x\", \"origin\": \"1.2.3.4\"}";
	static const char pf[] = "proxyfs-judge 1\nremote_addr 1.2.3.4\nheader User-Agent: x\n";

	CHECK(ja_echoes(az, strlen(az), "User-Agent"));
	CHECK(!ja_echoes(az_via, strlen(az_via), "User-Agent"));
	CHECK(ja_echoes(js, strlen(js), "User-Agent"));
	CHECK(!ja_echoes(js_top, strlen(js_top), "User-Agent"));
	CHECK(ja_echoes(pf, strlen(pf), "User-Agent"));
	CHECK(!ja_echoes(pf, strlen(pf) - 3, "Accept"));
	CHECK(!ja_echoes(NULL, 0, "User-Agent"));
	CHECK(!ja_echoes("User-Agent", 10, "User-Agent"));
}

int main(void)
{
	test_enum_matches_snapshot();
	test_azenv();
	test_every_proxy_header();
	test_token_boundaries();
	test_json();
	test_proxyfs();
	test_addresses();
	test_own_addr();
	test_junk();
	test_long_lines();
	test_truncated();
	test_nul_bytes();
	test_echoes();
	return test_exit_code();
}
