/* test_socks: SOCKS4/4a/5 message builders and the reply parser; every
 * reply cut short at every byte and with every byte changed to every value.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "socks.h"
#include "testutil.h"

static void check_bytes(int line, const uint8_t *got, int n, const void *want, size_t len)
{
	if (n != (int)len || memcmp(got, want, len) != 0)
		fprintf(stderr, "line %d: message differs (length %d, expected %zu)\n", line, n,
			len);
	CHECK_INT(n, len);
	CHECK(n == (int)len && memcmp(got, want, len) == 0);
}

#define CHECK_BYTES(got, n, ...)                                                                   \
	check_bytes(__LINE__, got, n, (const uint8_t[]){__VA_ARGS__},                              \
		    sizeof((const uint8_t[]){__VA_ARGS__}))

static void test_socks4_request(void)
{
	static const uint8_t ip[4] = {127, 0, 0, 1};
	uint8_t buf[CHK_SOCKS_MSG_MAX];
	char name[257];
	int n;

	n = chk_socks4_request(buf, sizeof(buf), ip, NULL, 8080, NULL);
	CHECK_BYTES(buf, n, 4, 1, 0x1f, 0x90, 127, 0, 0, 1, 0);
	n = chk_socks4_request(buf, sizeof(buf), ip, NULL, 80, "bob");
	CHECK_BYTES(buf, n, 4, 1, 0, 80, 127, 0, 0, 1, 'b', 'o', 'b', 0);
	n = chk_socks4_request(buf, sizeof(buf), ip, "ex.org", 443, "u");
	CHECK_BYTES(buf, n, 4, 1, 1, 0xbb, 0, 0, 0, 1, 'u', 0, 'e', 'x', '.', 'o', 'r', 'g', 0);

	/* every too-small buffer */
	for (size_t size = 0; size < 17; size++)
		CHECK_INT(chk_socks4_request(buf, size, ip, "ex.org", 443, "u"), -ENOSPC);
	/* the largest: 255-byte user and host fit the documented maximum */
	memset(name, 'n', 255);
	name[255] = '\0';
	n = chk_socks4_request(buf, sizeof(buf), ip, name, 1, name);
	CHECK_INT(n, 8 + 256 + 256);
	CHECK(n <= CHK_SOCKS_MSG_MAX);
	name[255] = 'n';
	name[256] = '\0';
	CHECK_INT(chk_socks4_request(buf, sizeof(buf), ip, NULL, 1, name), -EINVAL);
	CHECK_INT(chk_socks4_request(buf, sizeof(buf), ip, name, 1, NULL), -EINVAL);
	CHECK_INT(chk_socks4_request(buf, sizeof(buf), ip, "", 1, NULL), -EINVAL);
}

static void test_socks5_messages(void)
{
	uint8_t buf[CHK_SOCKS_MSG_MAX];
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	char name[257];
	int n;

	n = chk_socks5_greeting(buf, sizeof(buf), false);
	CHECK_BYTES(buf, n, 5, 1, 0);
	n = chk_socks5_greeting(buf, sizeof(buf), true);
	CHECK_BYTES(buf, n, 5, 2, 0, 2);
	CHECK_INT(chk_socks5_greeting(buf, 3, true), -ENOSPC);
	CHECK_INT(chk_socks5_greeting(buf, 2, false), -ENOSPC);

	n = chk_socks5_auth(buf, sizeof(buf), "bob", "pass");
	CHECK_BYTES(buf, n, 1, 3, 'b', 'o', 'b', 4, 'p', 'a', 's', 's');
	n = chk_socks5_auth(buf, sizeof(buf), "bob", "");
	CHECK_BYTES(buf, n, 1, 3, 'b', 'o', 'b', 0);
	for (size_t size = 0; size < 10; size++)
		CHECK_INT(chk_socks5_auth(buf, size, "bob", "pass"), -ENOSPC);
	memset(name, 'x', 255);
	name[255] = '\0';
	CHECK_INT(chk_socks5_auth(buf, sizeof(buf), name, name), 3 + 255 + 255);
	name[255] = 'x';
	name[256] = '\0';
	CHECK_INT(chk_socks5_auth(buf, sizeof(buf), name, "p"), -EINVAL);
	CHECK_INT(chk_socks5_auth(buf, sizeof(buf), "u", name), -EINVAL);

	inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
	n = chk_socks5_request(buf, sizeof(buf), (struct sockaddr *)&sin, "ignored", 8080);
	CHECK_BYTES(buf, n, 5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90);
	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	n = chk_socks5_request(buf, sizeof(buf), (struct sockaddr *)&sin6, NULL, 80);
	CHECK_BYTES(buf, n, 5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		    0, 80);
	n = chk_socks5_request(buf, sizeof(buf), NULL, "ex.org", 80);
	CHECK_BYTES(buf, n, 5, 1, 0, 3, 6, 'e', 'x', '.', 'o', 'r', 'g', 0, 80);
	for (size_t size = 0; size < 13; size++)
		CHECK_INT(chk_socks5_request(buf, size, NULL, "ex.org", 80), -ENOSPC);
	for (size_t size = 0; size < 22; size++)
		CHECK_INT(chk_socks5_request(buf, size, (struct sockaddr *)&sin6, NULL, 80),
			  -ENOSPC);
	CHECK_INT(chk_socks5_request(buf, sizeof(buf), NULL, name, 80), -EINVAL);
	CHECK_INT(chk_socks5_request(buf, sizeof(buf), NULL, "", 80), -EINVAL);
	CHECK_INT(chk_socks5_request(buf, sizeof(buf), NULL, NULL, 80), -EINVAL);
}

struct fed {
	bool done;
	enum chk_result result;
	uint8_t code;
	size_t used;
};

static struct fed feed(enum chk_socks_step step, const uint8_t *p, size_t n, size_t piece)
{
	struct chk_socks_reply r;
	struct fed f = {0};

	chk_socks_reply_init(&r, step);
	for (size_t off = 0; off < n && !r.done; off += piece)
		f.used += chk_socks_reply_feed(&r, p + off, n - off < piece ? n - off : piece);
	f.done = r.done;
	f.result = (enum chk_result)r.result;
	f.code = r.code;
	return f;
}

/* A good reply: whole, in pieces, with bytes after it; cut short anywhere,
 * it is not done yet. */
static void check_good(int line, enum chk_socks_step step, const uint8_t *p, size_t n)
{
	uint8_t more[300];

	for (size_t piece = 1; piece <= n; piece++) {
		struct fed f = feed(step, p, n, piece);

		if (!f.done || f.result != CHK_OK)
			fprintf(stderr, "line %d: piece %zu: %s\n", line, piece,
				chk_result_name(f.result));
		CHECK(f.done);
		CHECK_INT(f.result, CHK_OK);
		CHECK_INT(f.used, n);
	}
	memcpy(more, p, n);
	memset(more + n, 'H', 16);
	CHECK_INT(feed(step, more, n + 16, n + 16).used, n);
	for (size_t cut = 0; cut < n; cut++) {
		struct fed f = feed(step, p, cut, 1);

		CHECK(!f.done);
		CHECK_INT(f.used, cut);
	}
}

/* What the reply parser must say when byte i of a good reply is v. */
typedef int (*verdict_fn)(size_t i, uint8_t v);

/* Every byte of a good reply changed to every value: the parser's answer
 * matches the verdict (-1: the reply is longer and not done yet). */
static void check_every_byte(int line, enum chk_socks_step step, const uint8_t *good, size_t n,
			     verdict_fn verdict)
{
	uint8_t p[300];

	for (size_t i = 0; i < n; i++) {
		for (int v = 0; v < 256; v++) {
			int want = verdict(i, (uint8_t)v);
			struct fed f;

			memcpy(p, good, n);
			p[i] = (uint8_t)v;
			f = feed(step, p, n, 1);
			if (want < 0) {
				CHECK(!f.done);
				continue;
			}
			if (!f.done || (int)f.result != want)
				fprintf(stderr, "line %d: byte %zu = %d: %s, expected %s\n", line,
					i, v, f.done ? chk_result_name(f.result) : "not done",
					chk_result_name((enum chk_result)want));
			CHECK(f.done);
			CHECK_INT(f.result, want);
		}
	}
}

static int socks4_verdict(size_t i, uint8_t v)
{
	if (i == 0)
		return v == 0 || v == 4 ? CHK_OK : CHK_PROTO_ERR;
	if (i == 1) {
		if (v == 90)
			return CHK_OK;
		if (v == 91)
			return CHK_REFUSED;
		return v == 92 || v == 93 ? CHK_AUTH : CHK_PROTO_ERR;
	}
	return CHK_OK;
}

static int method_verdict(size_t i, uint8_t v)
{
	if (i == 0)
		return v == 5 ? CHK_OK : CHK_PROTO_ERR;
	if (v == 0)
		return CHK_OK;
	return v == 0xff ? CHK_AUTH : CHK_PROTO_ERR;
}

static int method_auth_verdict(size_t i, uint8_t v)
{
	if (i == 1 && v == 2)
		return CHK_OK;
	return method_verdict(i, v);
}

static int auth_verdict(size_t i, uint8_t v)
{
	if (i == 0)
		return v == 1 || v == 5 ? CHK_OK : CHK_PROTO_ERR;
	return v == 0 ? CHK_OK : CHK_AUTH;
}

/* Against the IPv4 reply [5,0,0,1,a,a,a,a,p,p]. */
static int reply_verdict(size_t i, uint8_t v)
{
	switch (i) {
	case 0:
		return v == 5 ? CHK_OK : CHK_PROTO_ERR;
	case 1:
		return v == 0 ? CHK_OK : CHK_REFUSED;
	case 3:
		if (v == 1)
			return CHK_OK;
		if (v == 4 || v == 3)
			return -1; /* 22 bytes long, or a 127-byte name (byte 4) */
		return CHK_PROTO_ERR;
	default:
		return CHK_OK;
	}
}

static void test_replies(void)
{
	static const uint8_t s4[] = {0, 90, 0x1f, 0x90, 127, 0, 0, 1};
	static const uint8_t m0[] = {5, 0};
	static const uint8_t m2[] = {5, 2};
	static const uint8_t a0[] = {1, 0};
	static const uint8_t r4[] = {5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90};
	static const uint8_t r6[] = {5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
				     0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
	static const uint8_t rd[] = {5, 0, 0, 3, 3, 'a', 'b', 'c', 0, 80};
	static const uint8_t r0[] = {5, 0, 0, 3, 0, 0, 80};
	struct fed f;

	check_good(__LINE__, CHK_SOCKS4_REPLY, s4, sizeof(s4));
	check_good(__LINE__, CHK_SOCKS5_METHOD, m0, sizeof(m0));
	check_good(__LINE__, CHK_SOCKS5_METHOD_AUTH, m0, sizeof(m0));
	check_good(__LINE__, CHK_SOCKS5_METHOD_AUTH, m2, sizeof(m2));
	check_good(__LINE__, CHK_SOCKS5_AUTH, a0, sizeof(a0));
	check_good(__LINE__, CHK_SOCKS5_REPLY, r4, sizeof(r4));
	check_good(__LINE__, CHK_SOCKS5_REPLY, r6, sizeof(r6));
	check_good(__LINE__, CHK_SOCKS5_REPLY, rd, sizeof(rd));
	check_good(__LINE__, CHK_SOCKS5_REPLY, r0, sizeof(r0));

	check_every_byte(__LINE__, CHK_SOCKS4_REPLY, s4, sizeof(s4), socks4_verdict);
	check_every_byte(__LINE__, CHK_SOCKS5_METHOD, m0, sizeof(m0), method_verdict);
	check_every_byte(__LINE__, CHK_SOCKS5_METHOD_AUTH, m0, sizeof(m0), method_auth_verdict);
	check_every_byte(__LINE__, CHK_SOCKS5_AUTH, a0, sizeof(a0), auth_verdict);
	check_every_byte(__LINE__, CHK_SOCKS5_REPLY, r4, sizeof(r4), reply_verdict);

	/* a "no" ends the reply at once, and keeps its code */
	f = feed(CHK_SOCKS4_REPLY, (const uint8_t[]){0, 91}, 2, 2);
	CHECK(f.done);
	CHECK_INT(f.result, CHK_REFUSED);
	CHECK_INT(f.code, 91);
	f = feed(CHK_SOCKS5_REPLY, (const uint8_t[]){5, 5}, 2, 1);
	CHECK_INT(f.result, CHK_REFUSED);
	CHECK_INT(f.code, 5);
	f = feed(CHK_SOCKS5_METHOD_AUTH, m2, 2, 2);
	CHECK_INT(f.code, 2);
	f = feed(CHK_SOCKS5_METHOD, m2, 2, 2);
	CHECK_INT(f.result, CHK_PROTO_ERR);
}

int main(void)
{
	test_socks4_request();
	test_socks5_messages();
	test_replies();
	return test_exit_code();
}
