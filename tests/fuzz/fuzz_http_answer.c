/* fuzz_http_answer: the judge-answer parser on any bytes, in any pieces.
 *
 * Input: a split byte, an options byte, then the answer. The options pick
 * head_only, the expected text (none, "REMOTE_ADDR", or one that tests the
 * KMP fallbacks) and the size limit. The answer is fed three ways: whole,
 * in two pieces cut where the split byte says, and one byte at a time, each
 * followed by chk_answer_eof() if still undecided. All three must agree on
 * every outcome and on how many bytes belonged to the answer; and the
 * outcome must be coherent (nothing past the limit, OK only with status 200
 * and, in a plain body, the expected text in the bytes used). Does not
 * check the parser against an independent HTTP parser.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http_answer.h"


static const char *const expects[] = {"", "REMOTE_ADDR", "abaabab", "\r\n"};
static const size_t maxes[] = {0, 40, 300, 5000};

/* The parser's settings, from the options byte. */
struct answer_opts {
	const char *expect;
	size_t expect_len;
	uint32_t kmp[16];
	size_t max;
	bool head_only;
};

static void opts_from_byte(struct answer_opts *o, uint8_t b)
{
	o->head_only = b & 1;
	o->expect = expects[(b >> 1) & 3];
	o->expect_len = strlen(o->expect);
	o->max = maxes[(b >> 3) & 3];
	chk_kmp_build(o->expect, o->expect_len, o->kmp);
}

struct run {
	struct chk_answer a;
	size_t used;
};

static void run_init(struct run *r, const struct answer_opts *o)
{
	chk_answer_init(&r->a, o->expect, o->expect_len, o->kmp, o->max, o->head_only);
	r->used = 0;
}

/* Feeds one piece to a run that may already be done. */
static void run_feed(struct run *r, const uint8_t *p, size_t n)
{
	size_t used = chk_answer_feed(&r->a, p, n);

	FUZZ_CHECK(used <= n);
	FUZZ_CHECK(used == n || r->a.done);
	r->used += used;
}

static void run_end(struct run *r)
{
	if (!r->a.done)
		chk_answer_eof(&r->a);
	FUZZ_CHECK(r->a.done);
	FUZZ_CHECK(r->a.result < CHK_RESULT_COUNT);
}

static void check_same(const struct run *x, const struct run *y)
{
	FUZZ_CHECK(x->a.result == y->a.result);
	FUZZ_CHECK(x->a.status == y->a.status);
	FUZZ_CHECK(x->a.found == y->a.found);
	FUZZ_CHECK(x->a.chunked == y->a.chunked);
	FUZZ_CHECK(x->a.total == y->a.total);
	FUZZ_CHECK(x->used == y->used);
}

static void check_coherent(const struct run *r, const struct answer_opts *o, const uint8_t *p)
{
	const struct chk_answer *a = &r->a;
	size_t limit = o->max ? o->max : 64 * 1024;

	FUZZ_CHECK(r->used <= limit);
	if (a->result != CHK_OK || o->head_only)
		return;
	FUZZ_CHECK(a->status == 200);
	FUZZ_CHECK(a->found);
	if (!a->chunked && o->expect_len > 0)
		FUZZ_CHECK(memmem(p, r->used, o->expect, o->expect_len) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct answer_opts o;
	struct run whole, halves, bytes;
	const uint8_t *p;
	size_t n, cut;

	if (size < 2)
		return 0;
	opts_from_byte(&o, data[1]);
	p = data + 2;
	n = size - 2;
	cut = n * data[0] / 255;

	run_init(&whole, &o);
	run_feed(&whole, p, n);
	run_end(&whole);

	run_init(&halves, &o);
	run_feed(&halves, p, cut);
	run_feed(&halves, p + cut, n - cut);
	run_end(&halves);

	run_init(&bytes, &o);
	for (size_t i = 0; i < n; i++)
		run_feed(&bytes, p + i, 1);
	run_end(&bytes);

	check_coherent(&whole, &o, p);
	check_same(&whole, &halves);
	check_same(&whole, &bytes);
	return 0;
}
