/* http_answer: an incremental parser for the judge's HTTP answer.
 *
 * Bytes go in as they arrive, in pieces of any size; the parser keeps only a
 * few counters (status, header state, body length or chunk state, and a KMP
 * position for the expected text) and allocates nothing. It decides when the
 * answer is whole and what it means as a chk_result. It also reads the head
 * of a CONNECT reply (head_only), and on request copies the start of the
 * de-chunked body into a buffer the caller supplies once the head is read,
 * and looks for the check's token in the body of a judge that echoes it.
 * It does no I/O and knows nothing about proxies. It lives in src/ because
 * the gateway reads its upstreams' CONNECT replies with it too.
 */
#ifndef PROXYFS_HTTP_ANSWER_H
#define PROXYFS_HTTP_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check_result.h"

/* Every check's request carries a fresh random token in its User-Agent:
 * "proxyfs/VERSION proxyfs-check/TOKEN", TOKEN CHK_TOKEN_LEN lowercase hex
 * digits. A judge that echoes the request (proxyfs judge, azenv, httpbin)
 * echoes it back; an answer that shows CHK_ECHO_MARKER with another token
 * is a page cached or replayed from an earlier check, and fails. */
#define CHK_ECHO_MARKER "proxyfs-check/"
#define CHK_TOKEN_LEN 16

/* Status line and headers together may take at most this many bytes. */
#define CHK_ANSWER_HEAD_MAX 8192

struct chk_answer {
	/* set by chk_answer_init, read-only afterwards */
	const char *expect;  /* not owned: the judge's */
	const uint32_t *kmp; /* expect's KMP failure table, expect_len entries */
	uint32_t expect_len;
	uint32_t max;	    /* answer bytes (head and body) accepted at most */
	bool head_only;	    /* stop after the headers (CONNECT reply) */
	bool pause_at_body; /* set after init: stop feeding after a 200's head */

	/* the check's token, from chk_answer_echo() on */
	const char *tok;    /* CHK_TOKEN_LEN bytes, not owned; NULL: no echo check */
	bool echo_required; /* ok only if the body echoes tok */
	bool echo_suffices; /* a body echoing tok is ok without expect */
	bool echo_seen;	    /* CHK_ECHO_MARKER was in the body */
	bool tok_found;	    /* CHK_ECHO_MARKER followed by tok was in the body */
	uint8_t tok_match;  /* bytes of marker and tok matched so far */

	/* body capture, from chk_answer_capture() on */
	bool at_body;  /* paused: a 200's head is read and a body follows */
	uint8_t *body; /* not owned: the body's first body_cap bytes go here */
	uint32_t body_cap;
	uint32_t body_len;

	/* outcome: valid once done */
	bool done;
	uint8_t result;	 /* enum chk_result */
	uint8_t why;	 /* enum chk_why of a CHK_BAD_ANSWER */
	uint16_t status; /* 0 until the status code is read */

	/* parse state */
	bool found; /* expect seen in the body */
	bool chunked;
	bool have_length;
	uint8_t phase;
	uint8_t pos;	/* position inside a fixed token or header name */
	uint8_t field;	/* which known header the current line is */
	uint32_t match; /* KMP: bytes of expect matched so far */
	uint32_t head_len;
	uint32_t total;	 /* answer bytes used so far, the current one included */
	uint64_t length; /* Content-Length */
	uint64_t left;	 /* body or chunk bytes still to come; also a number being read */
};

/* Fills kmp (len entries) with the failure table of pat. */
void chk_kmp_build(const char *pat, size_t len, uint32_t *kmp);

/* Prepares a to read one answer. expect/kmp may be NULL with expect_len 0
 * (any body). max is the most answer bytes accepted (0: 64 KiB). */
void chk_answer_init(struct chk_answer *a, const char *expect, size_t expect_len,
		     const uint32_t *kmp, size_t max, bool head_only);

/* Checks the body for the check's token too (tok: CHK_TOKEN_LEN bytes,
 * outliving the feeding): a body that shows CHK_ECHO_MARKER must show it
 * followed by tok. With required, a body must; with suffices, a body that
 * does is ok without the expected text. Call after chk_answer_init. */
void chk_answer_echo(struct chk_answer *a, const char *tok, bool required, bool suffices);

/* Feeds the next n bytes. Returns how many were used: all of them, unless
 * the answer ended inside this piece (then a->done is set and the rest does
 * not belong to it), or pause_at_body was set and the head of a 200 answer
 * with a body ended inside it (then a->at_body is set until the next feed,
 * pause_at_body is cleared, and the rest is the body's, to feed next). Once done, uses
 * nothing. */
size_t chk_answer_feed(struct chk_answer *a, const void *buf, size_t n);

/* From now on copies the body's bytes, de-chunked, into buf until cap of
 * them are there (a->body_len counts them); clears a->at_body. buf must
 * outlive the feeding. */
void chk_answer_capture(struct chk_answer *a, uint8_t *buf, size_t cap);

/* The peer closed the connection: ends a body read to EOF, or marks the
 * answer as cut short (CHK_RESET). Sets a->done. */
void chk_answer_eof(struct chk_answer *a);

#endif
