/* test_http_answer: the incremental answer parser, fed whole, byte by byte
 * and in odd-sized pieces; every way of feeding must give the same result.
 */
#include <stdlib.h>
#include <string.h>

#include "http_answer.h"
#include "http_proxy.h"
#include "testutil.h"

#define EXPECT "proxyfs-judge-ok"

struct run {
	bool done;
	enum chk_result result;
	uint16_t status;
	size_t used;
};

/* When set, the answer is read as a check's with this token, the echo
 * required or sufficing as set. */
static const char *echo_tok;
static bool echo_required, echo_suffices;

/* Feeds s in pieces of step bytes (0: whole), then EOF if asked. */
static struct run feed(const char *s, size_t len, const char *expect, size_t max, size_t step,
		       bool eof, bool head_only)
{
	size_t elen = strlen(expect);
	uint32_t *kmp = calloc(elen + 1, sizeof(*kmp));
	struct chk_answer a;
	struct run r = {0};

	chk_kmp_build(expect, elen, kmp);
	chk_answer_init(&a, expect, elen, kmp, max, head_only);
	if (echo_tok)
		chk_answer_echo(&a, echo_tok, echo_required, echo_suffices);
	if (step == 0)
		step = len ? len : 1;
	for (size_t off = 0; off < len && !a.done; off += step) {
		size_t n = len - off < step ? len - off : step;

		r.used += chk_answer_feed(&a, s + off, n);
	}
	if (eof)
		chk_answer_eof(&a);
	free(kmp);
	r.done = a.done;
	r.result = (enum chk_result)a.result;
	r.status = a.status;
	return r;
}

/* Every way of feeding gives want (and status); eof is sent after the bytes. */
static void expect_len(int line, const char *s, size_t len, const char *expect, size_t max,
		       bool eof, enum chk_result want, uint16_t status)
{
	static const size_t steps[] = {0, 1, 2, 3, 5, 7, 13, 4096};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct run r = feed(s, len, expect, max, steps[i], eof, false);

		CHECK(r.done);
		if (r.result != want || r.status != status)
			fprintf(stderr, "line %d, step %zu: result %s status %u\n", line, steps[i],
				chk_result_name(r.result), r.status);
		CHECK_INT(r.result, want);
		CHECK_INT(r.status, status);
	}
}

#define EXPECT_RESULT(s, eof, want, status)                                                        \
	expect_len(__LINE__, s, strlen(s), EXPECT, 0, eof, want, status)

static void test_content_length(void)
{
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 24\r\nX-A: b\r\n\r\n"
			 "<p>" EXPECT "</p>\n\n";
	struct run r;

	EXPECT_RESULT(ok, false, CHK_OK, 200);
	/* whole without waiting for EOF; bytes after the body are not used */
	r = feed("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" EXPECT "tail", 59, EXPECT, 0, 0,
		 false, false);
	CHECK(r.done);
	CHECK_INT(r.result, CHK_OK);
	CHECK_INT(r.used, 55);
	EXPECT_RESULT("HTTP/1.0 200 OK\ncontent-LENGTH:16 \n\n" EXPECT, false, CHK_OK, 200);
	EXPECT_RESULT("HTTP/1.1 200\r\nContent-Length: 16\r\nContent-Length: 16\r\n\r\n" EXPECT,
		      false, CHK_OK, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 16\r\nContent-Length: 17\r\n\r\n" EXPECT,
		      false, CHK_PROTO_ERR, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 1 6\r\n\r\n" EXPECT, false, CHK_PROTO_ERR,
		      200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 16x\r\n\r\n" EXPECT, false, CHK_PROTO_ERR,
		      200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n" EXPECT, false, CHK_PROTO_ERR,
		      200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n" EXPECT, false, CHK_PROTO_ERR,
		      200);
	/* a header that only starts like Content-Length is another header */
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Lengthy: 3\r\nNoColon\r\n\r\n" EXPECT, true,
		      CHK_OK, 200);
}

static void test_chunked(void)
{
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "5;name=value\r\n<p>pr\r\n"
		      "B\r\noxyfs-judge\r\n"
		      "a \r\n-ok</p>\n\n\n\r\n"
		      "0\r\nX-Trailer: 1\r\n\r\n",
		      false, CHK_OK, 200);
	/* chunked wins over Content-Length; LF-only framing */
	EXPECT_RESULT("HTTP/1.1 200 OK\nContent-Length: 3\nTransfer-Encoding: gzip, Chunked\n\n"
		      "10\n" EXPECT "\n0\n\n",
		      false, CHK_OK, 200);
	/* "chunked, gzip": not chunked, so the body runs to EOF */
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n10\r\n" EXPECT,
		      true, CHK_OK, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "10\r\n" EXPECT "XX0\r\n\r\n",
		      false, CHK_PROTO_ERR, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false,
		      CHK_PROTO_ERR, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", false,
		      CHK_PROTO_ERR, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 0\r\n", false,
		      CHK_PROTO_ERR, 200);
	/* the expected text is in no single chunk */
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "1\r\np\r\n1\r\nr\r\nE\r\noxyfs-judge-ok\r\n0\r\n\r\n",
		      false, CHK_OK, 200);
}

static void test_to_eof(void)
{
	const char *s = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello " EXPECT " bye";
	struct run r = feed(s, strlen(s), EXPECT, 0, 0, false, false);

	CHECK(!r.done); /* not whole until the peer closes */
	EXPECT_RESULT(s, true, CHK_OK, 200);
	EXPECT_RESULT("HTTP/1.0 200 OK\r\n\r\nhello proxyfs-judge-o", true, CHK_BAD_ANSWER, 200);
}

static void test_status(void)
{
	EXPECT_RESULT("HTTP/1.1 404 Not Found\r\nContent-Length: 16\r\n\r\n" EXPECT, false,
		      CHK_BAD_ANSWER, 404);
	/* decided at the end of the head, without waiting for the body */
	EXPECT_RESULT("HTTP/1.1 502 Bad Gateway\r\n\r\n", false, CHK_BAD_ANSWER, 502);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, CHK_BAD_ANSWER,
		      200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, CHK_BAD_ANSWER, 200);
	expect_len(__LINE__, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38, "", 0, false,
		   CHK_OK, 200);
	expect_len(__LINE__, "HTTP/1.0 200\r\n\r\nanything", 24, "", 0, true, CHK_OK, 200);
}

static void test_garbage(void)
{
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
	char bin[256];

	for (int i = 0; i < 256; i++)
		bin[i] = (char)(255 - i);
	expect_len(__LINE__, tls, sizeof(tls) - 1, EXPECT, 0, false, CHK_PROTO_ERR, 0);
	expect_len(__LINE__, bin, sizeof(bin), EXPECT, 0, false, CHK_PROTO_ERR, 0);
	EXPECT_RESULT("HTTP/2 200\r\n\r\n", false, CHK_PROTO_ERR, 0);
	EXPECT_RESULT("http/1.1 200 OK\r\n\r\n", false, CHK_PROTO_ERR, 0);
	EXPECT_RESULT("HTTP/1.2 200 OK\r\n\r\n", false, CHK_PROTO_ERR, 0);
	EXPECT_RESULT("HTTP/1.1 20x OK\r\n\r\n", false, CHK_PROTO_ERR, 0);
	EXPECT_RESULT("HTTP/1.1 2000 OK\r\n\r\n", false, CHK_PROTO_ERR, 200);
	EXPECT_RESULT("HTTP/1.1  200 OK\r\n\r\n", false, CHK_PROTO_ERR, 0);
	EXPECT_RESULT("SSH-2.0-OpenSSH_9.2\r\n", false, CHK_PROTO_ERR, 0);
}

static void test_endless_header(void)
{
	size_t len = 20 + CHK_ANSWER_HEAD_MAX;
	char *s = malloc(len);

	memcpy(s, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(s + 20, 'a', len - 20);
	expect_len(__LINE__, s, len, EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	/* endless header lines, each short */
	for (size_t i = 17; i + 4 <= len; i += 4)
		memcpy(s + i, "X:\r\n", 4);
	expect_len(__LINE__, s, len, EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	/* an endless status line */
	memset(s + 13, 'b', len - 13);
	expect_len(__LINE__, s, len, EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	free(s);
}

static void test_truncated(void)
{
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" EXPECT;
	const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "10\r\n" EXPECT "\r\n0\r\n\r\n";

	/* cut at every byte: never OK, always a clear result */
	for (size_t cut = 0; cut < strlen(ok); cut++)
		expect_len(__LINE__, ok, cut, EXPECT, 0, true, CHK_RESET, cut >= 12 ? 200 : 0);
	for (size_t cut = 0; cut < strlen(chunked); cut++)
		expect_len(__LINE__, chunked, cut, EXPECT, 0, true, CHK_RESET, cut >= 12 ? 200 : 0);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" EXPECT, true, CHK_RESET,
		      200);
}

static void test_too_big(void)
{
	size_t len = 70000;
	char *s = malloc(len);

	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
		      false, CHK_BAD_ANSWER, 200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n", false, CHK_BAD_ANSWER,
		      200);
	EXPECT_RESULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "fffffffffffffffffffffffffff\r\n",
		      false, CHK_BAD_ANSWER, 200);
	/* a body read to EOF stops at the limit */
	memset(s, 'x', len);
	memcpy(s, "HTTP/1.1 200 OK\r\n\r\n", 19);
	expect_len(__LINE__, s, len, EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	/* a smaller limit, exactly reached, is fine */
	expect_len(__LINE__, "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" EXPECT, 55, EXPECT, 55,
		   false, CHK_OK, 200);
	expect_len(__LINE__, "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" EXPECT, 55, EXPECT, 54,
		   false, CHK_BAD_ANSWER, 200);
	expect_len(__LINE__, "HTTP/1.1 200 OK\r\n\r\n" EXPECT, 35, EXPECT, 35, true, CHK_OK, 200);
	expect_len(__LINE__, "HTTP/1.1 200 OK\r\n\r\n" EXPECT, 35, EXPECT, 34, true, CHK_BAD_ANSWER,
		   200);
	free(s);
}

static void test_kmp(void)
{
	/* self-overlapping patterns across any split */
	expect_len(__LINE__, "HTTP/1.0 200\r\n\r\naaaab", 21, "aaab", 0, true, CHK_OK, 200);
	expect_len(__LINE__, "HTTP/1.0 200\r\n\r\nabababcab", 25, "ababc", 0, true, CHK_OK, 200);
	expect_len(__LINE__, "HTTP/1.0 200\r\n\r\nabababab", 24, "ababc", 0, true, CHK_BAD_ANSWER,
		   200);
	expect_len(__LINE__, "HTTP/1.0 200\r\n\r\nx", 17, "x", 0, true, CHK_OK, 200);
}

static void test_head_only(void)
{
	const char *s = "HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nHTTP/1.1 200";
	struct run r;

	for (size_t step = 0; step < 6; step++) {
		r = feed(s, strlen(s), "", 0, step, false, true);
		CHECK(r.done);
		CHECK_INT(r.result, CHK_OK);
		CHECK_INT(r.status, 200);
		CHECK_INT(r.used, strlen(s) - 12);
	}
	s = "HTTP/1.1 407 Auth\r\nContent-Length: 5\r\n\r\n";
	r = feed(s, strlen(s), "", 0, 0, false, true);
	CHECK_INT(r.result, CHK_OK);
	CHECK_INT(r.status, 407);
	r = feed("HTTP/1.1 200 OK\r\n", 17, "", 0, 0, true, true);
	CHECK_INT(r.result, CHK_RESET);
}

#define TOK "0123456789abcdef"
#define OK_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

/* The token's echo is followed across pieces and chunks; near misses of
 * the marker, and the marker with another token, are not it. */
static void test_echo(void)
{
	static const char ours[] = OK_HEAD "8\r\nproxyfs-\r\n"
					   "e\r\nproxyfs-check/\r\n" /* a marker, cut short */
					   "20\r\nproxyfs-check/" TOK "xx\r\n"
					   "11\r\n " EXPECT "\r\n0\r\n\r\n";
	static const char other[] =
	    OK_HEAD "2f\r\nproxyfs-check/0123456789abcdee " EXPECT "\r\n0\r\n\r\n";
	static const char none[] = OK_HEAD "10\r\n" EXPECT "\r\n0\r\n\r\n";
	static const char echo_only[] = OK_HEAD "1e\r\nproxyfs-check/" TOK "\r\n0\r\n\r\n";

	echo_tok = TOK;
	expect_len(__LINE__, ours, strlen(ours), EXPECT, 0, false, CHK_OK, 200);
	expect_len(__LINE__, other, strlen(other), EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	expect_len(__LINE__, none, strlen(none), EXPECT, 0, false, CHK_OK, 200);
	expect_len(__LINE__, echo_only, strlen(echo_only), EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	echo_suffices = true;
	expect_len(__LINE__, echo_only, strlen(echo_only), EXPECT, 0, false, CHK_OK, 200);
	expect_len(__LINE__, other, strlen(other), EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	echo_suffices = false;
	echo_required = true;
	expect_len(__LINE__, none, strlen(none), EXPECT, 0, false, CHK_BAD_ANSWER, 200);
	expect_len(__LINE__, echo_only, strlen(echo_only), "", 0, false, CHK_OK, 200);
	expect_len(__LINE__, ours, strlen(ours), EXPECT, 0, false, CHK_OK, 200);
	echo_required = false;
	echo_tok = NULL;
	/* without a token to look for, the marker means nothing */
	expect_len(__LINE__, other, strlen(other), EXPECT, 0, false, CHK_OK, 200);
}

/* What an HTTP proxy is told (src/http_proxy.c): RFC 7617's example
 * credentials, padding of each length, no line without a user, and the
 * CONNECT head with an IPv6 literal bracketed; each within its _size. */
static void test_proxy_requests(void)
{
	char buf[512];
	size_t n;

	n = http_proxy_auth_write(buf, "Aladdin", "open sesame");
	CHECK_INT(n, http_proxy_auth_size("Aladdin", "open sesame"));
	buf[n] = '\0';
	CHECK_STR(buf, "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n");
	n = http_proxy_auth_write(buf, "ab", "");
	buf[n] = '\0';
	CHECK_STR(buf, "Proxy-Authorization: Basic YWI6\r\n");
	n = http_proxy_auth_write(buf, "a", "bcd");
	buf[n] = '\0';
	CHECK_STR(buf, "Proxy-Authorization: Basic YTpiY2Q=\r\n");
	CHECK_INT(http_proxy_auth_size("", "x"), 0);
	CHECK_INT(http_proxy_auth_write(buf, NULL, NULL), 0);

	n = http_connect_write(buf, "::1", 8080, NULL, NULL);
	CHECK(n <= http_connect_size("::1", NULL, NULL));
	buf[n] = '\0';
	CHECK_STR(buf, "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
	n = http_connect_write(buf, "example.org", 443, "u", "p");
	CHECK(n <= http_connect_size("example.org", "u", "p"));
	buf[n] = '\0';
	CHECK_STR(buf, "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n"
		       "Proxy-Authorization: Basic dTpw\r\n\r\n");
}

int main(void)
{
	test_content_length();
	test_chunked();
	test_to_eof();
	test_status();
	test_garbage();
	test_endless_header();
	test_truncated();
	test_too_big();
	test_kmp();
	test_head_only();
	test_echo();
	test_proxy_requests();
	return test_exit_code();
}
