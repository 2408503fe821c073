/* test_proxy: every accepted line form, every rejected one, and the URI
 * printed back.
 *
 * Each line is copied into a heap buffer of exactly its length (no NUL), so
 * AddressSanitizer catches any read past the end.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "testutil.h"

static enum proxy_parse_result parse_exact(const char *line, size_t len, enum proxy_proto dflt,
					   struct proxy_addr *a)
{
	char *copy = malloc(len ? len : 1);
	enum proxy_parse_result r;

	memcpy(copy, line, len);
	r = proxy_parse_line(copy, len, dflt, a);
	free(copy);
	return r;
}

/* Parses line and checks the URI it prints as. */
static void expect_uri(const char *line, enum proxy_proto dflt, const char *uri)
{
	struct proxy_addr a;
	char buf[2048];
	enum proxy_parse_result r = parse_exact(line, strlen(line), dflt, &a);

	CHECK_INT(r, PROXY_LINE_OK);
	if (r != PROXY_LINE_OK) {
		fprintf(stderr, "  line: \"%s\"\n", line);
		return;
	}
	CHECK(proxy_format_uri(&a, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, uri);
}

static void expect_bad_len(const char *line, size_t len)
{
	struct proxy_addr a;
	enum proxy_parse_result r = parse_exact(line, len, PROXY_HTTP, &a);

	CHECK_INT(r, PROXY_LINE_BAD);
	if (r != PROXY_LINE_BAD)
		fprintf(stderr, "  line: \"%.*s\"\n", (int)(len > 200 ? 200 : len), line);
}

static void expect_bad(const char *line)
{
	expect_bad_len(line, strlen(line));
}

static void expect_skip(const char *line)
{
	struct proxy_addr a;

	CHECK_INT(parse_exact(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_SKIP);
}

static void test_forms(void)
{
	struct proxy_addr a;

	expect_uri("1.2.3.4:8080", PROXY_HTTP, "http://1.2.3.4:8080");
	expect_uri("  1.2.3.4:8080 \t\r\n", PROXY_HTTP, "http://1.2.3.4:8080");
	expect_uri("1.2.3.4:8080\n", PROXY_HTTP, "http://1.2.3.4:8080");
	expect_uri("1.2.3.4:1", PROXY_SOCKS4, "socks4://1.2.3.4:1");
	expect_uri("1.2.3.4:65535", PROXY_SOCKS5, "socks5://1.2.3.4:65535");
	expect_uri("1.2.3.4:0080", PROXY_HTTP, "http://1.2.3.4:80");
	expect_uri("Proxy-1.Example.COM:3128", PROXY_HTTP, "http://proxy-1.example.com:3128");
	expect_uri("localhost:3128", PROXY_HTTP, "http://localhost:3128");
	expect_uri("http://1.2.3.4:80", PROXY_SOCKS5, "http://1.2.3.4:80");
	expect_uri("HTTP://1.2.3.4:80", PROXY_SOCKS5, "http://1.2.3.4:80");
	expect_uri("socks4://1.2.3.4:1080", PROXY_HTTP, "socks4://1.2.3.4:1080");
	expect_uri("Socks4a://1.2.3.4:1080", PROXY_HTTP, "socks4a://1.2.3.4:1080");
	expect_uri("socks5://1.2.3.4:1080", PROXY_HTTP, "socks5://1.2.3.4:1080");
	expect_uri("SOCKS5H://1.2.3.4:1080", PROXY_HTTP, "socks5h://1.2.3.4:1080");
	expect_uri("socks5://user:pass@1.2.3.4:1080", PROXY_HTTP,
		   "socks5://user:pass@1.2.3.4:1080");
	expect_uri("http://user@1.2.3.4:80", PROXY_HTTP, "http://user:@1.2.3.4:80");
	expect_uri("http://user:@1.2.3.4:80", PROXY_HTTP, "http://user:@1.2.3.4:80");
	expect_uri("1.2.3.4:8080:user:pass", PROXY_HTTP, "http://user:pass@1.2.3.4:8080");
	expect_uri("1.2.3.4:8080:user:pa:ss", PROXY_SOCKS5, "socks5://user:pa%3Ass@1.2.3.4:8080");
	expect_uri("1.2.3.4:8080:user:", PROXY_HTTP, "http://user:@1.2.3.4:8080");
	expect_uri("1.2.3.4:8080:us%er:p@ss", PROXY_HTTP, "http://us%25er:p%40ss@1.2.3.4:8080");
	expect_uri("user:pass@1.2.3.4:8080", PROXY_SOCKS5, "socks5://user:pass@1.2.3.4:8080");
	expect_uri("[::1]:8080", PROXY_HTTP, "http://[::1]:8080");
	expect_uri("[2001:DB8:0:0::1]:80", PROXY_HTTP, "http://[2001:db8::1]:80");
	expect_uri("[::ffff:1.2.3.4]:80", PROXY_HTTP, "http://[::ffff:1.2.3.4]:80");
	expect_uri("[::1]:8080:user:pass", PROXY_HTTP, "http://user:pass@[::1]:8080");
	expect_uri("socks5://[::1]:1080", PROXY_HTTP, "socks5://[::1]:1080");
	expect_uri("socks5h://u:p@[fe80::1]:1080", PROXY_HTTP, "socks5h://u:p@[fe80::1]:1080");
	expect_uri("http://u:p@ss@1.2.3.4:80", PROXY_HTTP, "http://u:p%40ss@1.2.3.4:80");

	CHECK_INT(proxy_parse_line("https://1.2.3.4:443", 19, PROXY_SOCKS5, &a), PROXY_LINE_OK);
	CHECK_INT(a.proto, PROXY_HTTP);
	CHECK(a.tunnel);
	CHECK(!a.remote_dns);
	CHECK_STR(a.host, "1.2.3.4");
	CHECK_INT(a.port, 443);
	expect_uri("https://1.2.3.4:443", PROXY_HTTP, "http://1.2.3.4:443");

	CHECK_INT(proxy_parse_line("1.2.3.4:443", 11, PROXY_HTTPS, &a), PROXY_LINE_OK);
	CHECK_INT(a.proto, PROXY_HTTP);
	CHECK(a.tunnel);
	CHECK_INT(proxy_parse_line("1.2.3.4:80", 10, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK(!a.tunnel);
	CHECK(!a.ipv6);
	CHECK_STR(a.user, "");
	CHECK_STR(a.pass, "");

	CHECK_INT(proxy_parse_line("socks4a://h.example:1", 21, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_INT(a.proto, PROXY_SOCKS4);
	CHECK(a.remote_dns);
	CHECK_INT(proxy_parse_line("socks5h://h.example:1", 21, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_INT(a.proto, PROXY_SOCKS5);
	CHECK(a.remote_dns);

	CHECK_INT(proxy_parse_line("socks5://[::1]:9", 16, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK(a.ipv6);
	CHECK_STR(a.host, "::1");
	CHECK_INT(a.port, 9);

	CHECK_INT(proxy_parse_line("1.2.3.4:8:u:p:q", 15, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_STR(a.user, "u");
	CHECK_STR(a.pass, "p:q");
}

static void test_long_names(void)
{
	char name[300], line[320];

	/* 63-char labels are fine, 64 are not */
	memset(name, 'A', 63);
	strcpy(name + 63, ".com:80");
	memcpy(line, "http://", 7);
	memset(line + 7, 'a', 63);
	strcpy(line + 70, ".com:80");
	expect_uri(name, PROXY_HTTP, line);
	memset(name, 'a', 64);
	strcpy(name + 64, ".com:80");
	expect_bad(name);

	/* a 253-char name is fine, 254 is not */
	for (int i = 0; i < 253; i++)
		name[i] = i % 2 ? '.' : 'b';
	name[253] = '\0';
	snprintf(line, sizeof(line), "%s:80", name);
	CHECK_INT(parse_exact(line, strlen(line), PROXY_HTTP, &(struct proxy_addr){0}),
		  PROXY_LINE_OK);
	name[252] = 'b';
	name[253] = '.';
	name[254] = 'b';
	name[255] = '\0';
	snprintf(line, sizeof(line), "%s:80", name);
	expect_bad(line);
}

/* Credentials up to PROXY_CRED_MAX (255, what SOCKS carries), and for
 * SOCKS only what its protocol takes (RFC 1929: 1..255 each, no empty
 * password; SOCKS4: a user id, no password). */
static void test_creds_limits(void)
{
	char user[400], line[1000];
	struct proxy_addr a;

	memset(user, 'u', PROXY_CRED_MAX);
	user[PROXY_CRED_MAX] = '\0';
	snprintf(line, sizeof(line), "http://%s:%s@1.2.3.4:80", user, user);
	CHECK_INT(parse_exact(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_INT(strlen(a.user), PROXY_CRED_MAX);
	CHECK_INT(strlen(a.pass), PROXY_CRED_MAX);
	snprintf(line, sizeof(line), "1.2.3.4:80:%s:%s", user, user);
	CHECK_INT(parse_exact(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_OK);

	user[PROXY_CRED_MAX] = 'u';
	user[PROXY_CRED_MAX + 1] = '\0';
	snprintf(line, sizeof(line), "http://%s:p@1.2.3.4:80", user);
	expect_bad(line);
	snprintf(line, sizeof(line), "http://u:%s@1.2.3.4:80", user);
	expect_bad(line);
	snprintf(line, sizeof(line), "1.2.3.4:80:%s:p", user);
	expect_bad(line);
	snprintf(line, sizeof(line), "1.2.3.4:80:u:%s", user);
	expect_bad(line);

	/* 300 bytes: more than any scheme takes (HTTP is held to SOCKS's 255
	 * too, so a parsed line stays small). */
	user[300] = '\0';
	snprintf(line, sizeof(line), "socks5://%s:p@1.2.3.4:80", user);
	expect_bad(line);
	snprintf(line, sizeof(line), "socks5h://u:%s@1.2.3.4:80", user);
	expect_bad(line);
	snprintf(line, sizeof(line), "1.2.3.4:80:u:%s", user);
	CHECK_INT(parse_exact(line, strlen(line), PROXY_SOCKS5, &a), PROXY_LINE_BAD);
	snprintf(line, sizeof(line), "socks4://%s@1.2.3.4:80", user);
	expect_bad(line);

	/* 255 is what SOCKS carries. */
	user[255] = '\0';
	snprintf(line, sizeof(line), "socks5://%s:%s@1.2.3.4:80", user, user);
	CHECK_INT(parse_exact(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_OK);
	snprintf(line, sizeof(line), "socks4a://%s@1.2.3.4:80", user);
	CHECK_INT(parse_exact(line, strlen(line), PROXY_HTTP, &a), PROXY_LINE_OK);

	/* RFC 1929 has no empty password; SOCKS4 has no password at all. */
	expect_bad("socks5://alice@1.2.3.4:1080");
	expect_bad("socks5://alice:@1.2.3.4:1080");
	expect_bad("socks4://alice:secret@1.2.3.4:1080");
	CHECK_INT(parse_exact("1.2.3.4:1080:alice:secret", 25, PROXY_SOCKS4, &a), PROXY_LINE_BAD);
	CHECK_INT(parse_exact("socks4://alice@1.2.3.4:1080", 27, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_INT(parse_exact("http://alice@1.2.3.4:80", 23, PROXY_HTTP, &a), PROXY_LINE_OK);
}

static void test_bad(void)
{
	static const char *const bad[] = {
	    "1.2.3.4",
	    "1.2.3.4:",
	    ":80",
	    "1.2.3.4:0",
	    "1.2.3.4:65536",
	    "1.2.3.4:123456",
	    "1.2.3.4:99999999999999999999999",
	    "1.2.3.4:+80",
	    "1.2.3.4:-1",
	    "1.2.3.4:8a",
	    "1.2.3.4: 80",
	    "1.2.3 .4:80",
	    "999.1.1.1:80",
	    "1.2.3:80",
	    "1.2.3.4.5:80",
	    "01.2.3.4:80",
	    "1234:80",
	    "[::1",
	    "[::1]",
	    "[::1]:",
	    "[::1]80",
	    "[]:80",
	    "[zz::1]:80",
	    "[1.2.3.4]:80",
	    "[::1%eth0]:80",
	    "::1:80",
	    "http://",
	    "http:/1.2.3.4:80",
	    "http//1.2.3.4:80",
	    "://1.2.3.4:80",
	    "http://1.2.3.4",
	    "http://1.2.3.",
	    "socks5://user:pa",
	    "socks9://1.2.3.4:1",
	    "ftp://1.2.3.4:21",
	    "http://1.2.3.4:80/",
	    "http://1.2.3.4:80/x",
	    "http://1.2.3.4:80?x",
	    "http://1.2.3.4:80#x",
	    "http://1.2.3.4:80 junk",
	    "http://1.2.3.4:80:u:p",
	    "1.2.3.4:80 junk",
	    "1.2.3.4:80:",
	    "1.2.3.4:80:user",
	    "1.2.3.4:80::pass",
	    "ho st:80",
	    "-bad.com:80",
	    "bad-.com:80",
	    "bad.-com:80",
	    "a..b:80",
	    ".a.b:80",
	    "example.com.:80",
	    "a_b.com:80",
	    "exa*mple.com:80",
	    "http://@1.2.3.4:80",
	    "http://:pass@1.2.3.4:80",
	    "@1.2.3.4:80",
	    "http://u:p%4@1.2.3.4:80",
	    "http://u:p%@1.2.3.4:80",
	    "http://u:p%zz@1.2.3.4:80",
	    "http://u:p%00@1.2.3.4:80",
	    "http://u:p@",
	    "http://[::1]:80/",
	    "socks5h://u:p@[::1:1080",
	    "1.2.3.4:80\x01",
	    "1.2.3.4\x7f:80",
	    "h\xc3\xa9.com:80",
	    "\x01\x02\x03\xff\xfe",
	};
	char huge[100000];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad(bad[i]);

	expect_bad_len("1.2.3.4:80\0junk", 15);
	expect_bad_len("1.2.3.4\0:80", 11);
	memset(huge, 'a', sizeof(huge));
	expect_bad_len(huge, sizeof(huge));
	memcpy(huge, "http://", 7);
	expect_bad_len(huge, sizeof(huge));
	for (size_t i = 0; i < sizeof(huge); i++)
		huge[i] = (char)(i * 131 + 7);
	expect_bad_len(huge, sizeof(huge));
	/* every prefix of a good line that cuts it before the port is bad */
	for (size_t n = 1; n <= strlen("socks5://user:pass@[::1]:"); n++) {
		struct proxy_addr a;

		CHECK(parse_exact("socks5://user:pass@[::1]:1080", n, PROXY_HTTP, &a) !=
		      PROXY_LINE_OK);
	}
}

static void test_skip(void)
{
	struct proxy_addr a = {.port = 7};

	expect_skip("");
	expect_skip("   ");
	expect_skip("\n");
	expect_skip("\r\n");
	expect_skip(" \t \r\n");
	expect_skip("#");
	expect_skip("# 1.2.3.4:80");
	expect_skip("   # comment");
	expect_skip("#\x01\xff binary comment");
	CHECK_INT(proxy_parse_line(NULL, 0, PROXY_HTTP, &a), PROXY_LINE_SKIP);

	/* a rejected line leaves the output alone */
	CHECK_INT(proxy_parse_line("x", 1, PROXY_HTTP, &a), PROXY_LINE_BAD);
	CHECK_INT(a.port, 7);
	CHECK_INT(proxy_parse_line("1.2.3.4:80", 10, PROXY_PROTO_COUNT, &a), PROXY_LINE_BAD);
}

/* The parser must stop at len even when garbage follows. */
static void test_not_terminated(void)
{
	char buf[64];
	struct proxy_addr a;

	memset(buf, 'X', sizeof(buf));
	memcpy(buf, "1.2.3.4:80", 10);
	CHECK_INT(proxy_parse_line(buf, 10, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_INT(a.port, 80);
	memcpy(buf, "1.2.3.4:8099", 12);
	CHECK_INT(proxy_parse_line(buf, 10, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_INT(a.port, 80);
	memcpy(buf, "[::1]:80]]]]", 12);
	CHECK_INT(proxy_parse_line(buf, 8, PROXY_HTTP, &a), PROXY_LINE_OK);
	CHECK_STR(a.host, "::1");
	memcpy(buf, "http://u%41", 11);
	CHECK_INT(proxy_parse_line(buf, 10, PROXY_HTTP, &a), PROXY_LINE_BAD);
	memcpy(buf, "[::1", 4);
	CHECK_INT(proxy_parse_line(buf, 4, PROXY_HTTP, &a), PROXY_LINE_BAD);
}

/* Any credential bytes survive format then parse. */
static void test_round_trip(void)
{
	struct proxy_addr a = {.proto = PROXY_SOCKS5, .remote_dns = true, .port = 1080};
	struct proxy_addr b;
	char uri[2048];
	int len;

	strcpy(a.host, "example.org");
	for (int i = 1; i < 256; i++) {
		a.user[i - 1] = (char)i;
		a.pass[255 - i] = (char)i;
	}
	a.user[255] = '\0';
	a.pass[255] = '\0';
	len = proxy_format_uri(&a, uri, sizeof(uri));
	CHECK(len > 0);
	CHECK_INT(strspn(uri, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			      "-._~!$&'()*+,;=%:/@"),
		  (size_t)len);
	CHECK_INT(parse_exact(uri, (size_t)len, PROXY_HTTP, &b), PROXY_LINE_OK);
	CHECK_INT(memcmp(a.user, b.user, sizeof(a.user)), 0);
	CHECK_INT(memcmp(a.pass, b.pass, sizeof(a.pass)), 0);
	CHECK_STR(b.host, "example.org");
	CHECK_INT(b.proto, PROXY_SOCKS5);
	CHECK(b.remote_dns);

	expect_uri("http://u%40x:p%3Aw%2F%25@1.2.3.4:80", PROXY_HTTP,
		   "http://u%40x:p%3Aw%2F%25@1.2.3.4:80");
	expect_uri("http://%75ser:p%3aw@1.2.3.4:80", PROXY_HTTP, "http://user:p%3Aw@1.2.3.4:80");
	expect_uri("http://a-._~!$&'()*+,;=:b@h:1", PROXY_HTTP, "http://a-._~!$&'()*+,;=:b@h:1");
	CHECK_INT(proxy_parse_line("http://u%40x:p%3Aw@h:1", 22, PROXY_HTTP, &b), PROXY_LINE_OK);
	CHECK_STR(b.user, "u@x");
	CHECK_STR(b.pass, "p:w");
}

static void test_format(void)
{
	struct proxy_addr a = {.proto = PROXY_HTTPS, .port = 8080};
	char buf[64];

	strcpy(a.host, "1.2.3.4");
	CHECK_INT(proxy_format_uri(&a, buf, sizeof(buf)), 19);
	CHECK_STR(buf, "http://1.2.3.4:8080");
	CHECK_INT(proxy_format_uri(&a, buf, 20), 19);
	CHECK_INT(proxy_format_uri(&a, buf, 19), -1);
	CHECK_INT(proxy_format_uri(&a, buf, 0), -1);
	a.proto = PROXY_HTTP;
	a.tunnel = true;
	CHECK_INT(proxy_format_uri(&a, buf, sizeof(buf)), 19);
	CHECK_STR(buf, "http://1.2.3.4:8080");
	a.proto = PROXY_SOCKS4;
	a.tunnel = false;
	CHECK_INT(proxy_format_uri(&a, buf, sizeof(buf)) > 0, 1);
	CHECK_STR(buf, "socks4://1.2.3.4:8080");
	a.remote_dns = true;
	proxy_format_uri(&a, buf, sizeof(buf));
	CHECK_STR(buf, "socks4a://1.2.3.4:8080");
	a.proto = PROXY_SOCKS5;
	proxy_format_uri(&a, buf, sizeof(buf));
	CHECK_STR(buf, "socks5h://1.2.3.4:8080");
	a.remote_dns = false;
	a.ipv6 = true;
	strcpy(a.host, "2001:db8::1");
	strcpy(a.user, "u");
	strcpy(a.pass, "p w");
	proxy_format_uri(&a, buf, sizeof(buf));
	CHECK_STR(buf, "socks5://u:p%20w@[2001:db8::1]:8080");
	a.proto = PROXY_PROTO_COUNT;
	CHECK_INT(proxy_format_uri(&a, buf, sizeof(buf)), -1);
}

static void test_names(void)
{
	CHECK_STR(proxy_proto_name(PROXY_HTTP), "http");
	CHECK_STR(proxy_proto_name(PROXY_HTTPS), "https");
	CHECK_STR(proxy_proto_name(PROXY_SOCKS4), "socks4");
	CHECK_STR(proxy_proto_name(PROXY_SOCKS5), "socks5");
	CHECK(proxy_proto_name(PROXY_PROTO_COUNT) == NULL);
	CHECK_INT(proxy_proto_from_name("http"), PROXY_HTTP);
	CHECK_INT(proxy_proto_from_name("HTTPS"), PROXY_HTTPS);
	CHECK_INT(proxy_proto_from_name("socks4"), PROXY_SOCKS4);
	CHECK_INT(proxy_proto_from_name("Socks4A"), PROXY_SOCKS4);
	CHECK_INT(proxy_proto_from_name("socks5"), PROXY_SOCKS5);
	CHECK_INT(proxy_proto_from_name("SOCKS5H"), PROXY_SOCKS5);
	CHECK_INT(proxy_proto_from_name("socks"), -1);
	CHECK_INT(proxy_proto_from_name("socks5x"), -1);
	CHECK_INT(proxy_proto_from_name(""), -1);
	CHECK_INT(proxy_proto_from_name(NULL), -1);
}

int main(void)
{
	test_forms();
	test_long_names();
	test_creds_limits();
	test_bad();
	test_skip();
	test_not_terminated();
	test_round_trip();
	test_format();
	test_names();
	return test_exit_code();
}
