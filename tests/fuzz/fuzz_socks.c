/* fuzz_socks: the SOCKS reply parser on any bytes, and the builders.
 *
 * Input: a split byte, then the bytes a server sends. They are read as
 * each of the five replies (SOCKS4, SOCKS5 method with and without auth
 * offered, RFC 1929 auth, SOCKS5 connect), fed whole, in two pieces cut where
 * the split byte says, and one byte at a time; all three must agree, and a
 * reply must be coherent (never more bytes than its length, OK only once
 * whole). The same bytes, as NUL-terminated names, go to the builders,
 * whose messages must have the length the protocol gives them and fit
 * exactly in a buffer of that size. Does not check what the codes mean.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "socks.h"


#define NAME_MAX_LEN 255

struct run {
	struct chk_socks_reply r;
	size_t used;
};

static void run_feed(struct run *x, const uint8_t *p, size_t n)
{
	size_t used = chk_socks_reply_feed(&x->r, p, n);

	FUZZ_CHECK(used <= n);
	FUZZ_CHECK(used == n || x->r.done);
	FUZZ_CHECK(x->r.got <= x->r.need);
	x->used += used;
}

static void check_same(const struct run *x, const struct run *y)
{
	FUZZ_CHECK(x->r.done == y->r.done);
	FUZZ_CHECK(x->r.result == y->r.result);
	FUZZ_CHECK(x->r.code == y->r.code);
	FUZZ_CHECK(x->r.got == y->r.got);
	FUZZ_CHECK(x->r.need == y->r.need);
	FUZZ_CHECK(x->used == y->used);
}

static void check_coherent(const struct run *x)
{
	const struct chk_socks_reply *r = &x->r;

	FUZZ_CHECK(x->used == r->got);
	if (!r->done)
		return;
	FUZZ_CHECK(r->result == CHK_OK || r->result == CHK_REFUSED || r->result == CHK_AUTH ||
		   r->result == CHK_PROTO_ERR);
	if (r->result == CHK_OK)
		FUZZ_CHECK(r->got == r->need);
}

static void read_reply(enum chk_socks_step step, const uint8_t *p, size_t n, size_t cut)
{
	struct run whole = {.used = 0}, halves = {.used = 0}, bytes = {.used = 0};

	chk_socks_reply_init(&whole.r, step);
	run_feed(&whole, p, n);

	chk_socks_reply_init(&halves.r, step);
	run_feed(&halves, p, cut);
	run_feed(&halves, p + cut, n - cut);

	chk_socks_reply_init(&bytes.r, step);
	for (size_t i = 0; i < n; i++)
		run_feed(&bytes, p + i, 1);

	check_coherent(&whole);
	check_same(&whole, &halves);
	check_same(&whole, &bytes);
}

/* Runs call, which writes into buf of buf_size bytes, with a heap buffer of
 * exactly want bytes (so ASan sees a write past it), then checks that one
 * byte less is refused. */
#define CHECK_BUILD(want, call)                                                                    \
	do {                                                                                       \
		size_t buf_size = (want);                                                          \
		uint8_t *buf = malloc(buf_size);                                                   \
		FUZZ_CHECK(buf);                                                                   \
		FUZZ_CHECK(call == (int)buf_size);                                                 \
		buf_size--;                                                                        \
		FUZZ_CHECK(call == -ENOSPC);                                                       \
		free(buf);                                                                         \
	} while (0)

/* user and host: the input up to its first NUL, and the rest up to the
 * next one, each cut to the longest name the protocols allow. */
static void build_messages(const uint8_t *p, size_t n)
{
	static const uint8_t ip4[4] = {127, 0, 0, 1};
	char user[NAME_MAX_LEN + 1], host[NAME_MAX_LEN + 1];
	size_t ulen = strnlen((const char *)p, n), hlen = 0;
	const uint8_t *h = p;

	if (ulen < n) {
		h = p + ulen + 1;
		hlen = strnlen((const char *)h, n - ulen - 1);
	}
	ulen = ulen > NAME_MAX_LEN ? NAME_MAX_LEN : ulen;
	hlen = hlen > NAME_MAX_LEN ? NAME_MAX_LEN : hlen;
	memcpy(user, p, ulen);
	user[ulen] = '\0';
	memcpy(host, h, hlen);
	host[hlen] = '\0';

	CHECK_BUILD(8 + ulen + 1, chk_socks4_request(buf, buf_size, ip4, NULL, 80, user));
	CHECK_BUILD(3 + ulen + hlen, chk_socks5_auth(buf, buf_size, user, host));
	if (hlen == 0) {
		uint8_t buf[CHK_SOCKS_MSG_MAX];

		FUZZ_CHECK(chk_socks4_request(buf, sizeof(buf), ip4, host, 80, user) == -EINVAL);
		FUZZ_CHECK(chk_socks5_request(buf, sizeof(buf), NULL, host, 80) == -EINVAL);
		return;
	}
	CHECK_BUILD(8 + ulen + 1 + hlen + 1,
		    chk_socks4_request(buf, buf_size, ip4, host, 80, user));
	CHECK_BUILD(5 + hlen + 2, chk_socks5_request(buf, buf_size, NULL, host, 443));
	FUZZ_CHECK(8 + ulen + 1 + hlen + 1 <= CHK_SOCKS_MSG_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum chk_socks_step steps[] = {
	    CHK_SOCKS4_REPLY, CHK_SOCKS5_METHOD, CHK_SOCKS5_METHOD_AUTH,
	    CHK_SOCKS5_AUTH,  CHK_SOCKS5_REPLY,
	};
	const uint8_t *p;
	size_t n, cut;

	if (size < 1)
		return 0;
	p = data + 1;
	n = size - 1;
	cut = n * data[0] / 255;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		read_reply(steps[i], p, n, cut);
	build_messages(p, n);
	return 0;
}
