/* http_answer: an incremental parser for the judge's HTTP answer.
 *
 * The head is read byte by byte through a small state machine (no line is
 * ever buffered); body bytes are taken in runs and searched for the expected
 * text with KMP, so a match split across reads or chunks is still found.
 * Accepts "HTTP/1.0 NNN" and "HTTP/1.1 NNN", Content-Length, chunked
 * transfer coding (extensions and trailers skipped) and bodies ended by EOF.
 * The body is also followed for CHK_ECHO_MARKER and the check's token.
 * Lenient about bare LF line ends and header lines without a colon; strict
 * about everything that decides where the answer ends. Body bytes can also
 * be copied, de-chunked, into a buffer of the caller's; the parser pauses
 * after a 200's head so the caller can supply one only when it is needed.
 * Does no I/O.
 */
#include <string.h>

#include "http_answer.h"
#include "proxy.h"

#define ANSWER_MAX_DEFAULT (64 * 1024)

enum ans_phase {
	AP_STATUS,	/* the fixed part: "HTTP/1.x NNN" */
	AP_STATUS_REST, /* reason phrase up to LF */
	AP_LINE_START,	/* first byte of a header line, or the empty line */
	AP_NAME,	/* header name up to ':' */
	AP_VALUE,	/* value of Content-Length or Transfer-Encoding */
	AP_SKIP_LINE,	/* rest of a header line we do not care about */
	AP_BODY_LEN,	/* body of a known length */
	AP_BODY_EOF,	/* body ended by the peer's close */
	AP_CHUNK_SIZE,	/* hex size of the next chunk */
	AP_CHUNK_EXT,	/* chunk extension up to LF */
	AP_CHUNK_DATA,
	AP_CHUNK_END, /* CRLF after a chunk's data */
	AP_TRAILER_START,
	AP_TRAILER_SKIP,
};

enum ans_field { AF_OTHER, AF_LENGTH, AF_ENCODING };

/* Indexed by enum ans_field. */
static const char *const ans_field_names[] = {NULL, "content-length", "transfer-encoding"};

static const char ans_status_prefix[] = "HTTP/1.";
static const char ans_chunked[] = "chunked";

void chk_kmp_build(const char *pat, size_t len, uint32_t *kmp)
{
	uint32_t k = 0;

	if (len == 0)
		return;
	kmp[0] = 0;
	for (size_t i = 1; i < len; i++) {
		while (k > 0 && pat[i] != pat[k])
			k = kmp[k - 1];
		if (pat[i] == pat[k])
			k++;
		kmp[i] = k;
	}
}

void chk_answer_init(struct chk_answer *a, const char *expect, size_t expect_len,
		     const uint32_t *kmp, size_t max, bool head_only)
{
	memset(a, 0, sizeof(*a));
	a->expect = expect;
	a->kmp = kmp;
	a->expect_len = (uint32_t)expect_len;
	if (max == 0 || max > UINT32_MAX)
		max = max ? UINT32_MAX : ANSWER_MAX_DEFAULT;
	a->max = (uint32_t)max;
	a->head_only = head_only;
	a->found = expect_len == 0;
	a->phase = AP_STATUS;
}

void chk_answer_echo(struct chk_answer *a, const char *tok, bool required, bool suffices)
{
	a->tok = tok;
	a->echo_required = required;
	a->echo_suffices = suffices;
}

static void ans_end(struct chk_answer *a, enum chk_result r)
{
	a->done = true;
	a->result = (uint8_t)r;
}

/* A well-formed answer that is not the judge's, and why. */
static void ans_bad(struct chk_answer *a, enum chk_why why)
{
	ans_end(a, CHK_BAD_ANSWER);
	a->why = (uint8_t)why;
}

/* The body is whole: alive if the expected text was in it (or, where that
 * suffices, our token) and any echo of a token is of ours. */
static void ans_end_body(struct chk_answer *a)
{
	bool proof = a->found || (a->echo_suffices && a->tok_found);
	bool echo_ok = a->tok_found || (!a->echo_seen && !a->echo_required);

	if (proof && echo_ok)
		ans_end(a, CHK_OK);
	else
		ans_bad(a, echo_ok ? CHK_WHY_NO_EXPECT : CHK_WHY_TOKEN);
}

static const char ans_marker[] = CHK_ECHO_MARKER;

#define ANS_MARKER_LEN (sizeof(ans_marker) - 1)

/* Follows the marker and then tok through body bytes. The marker's first
 * byte occurs nowhere else in it nor in a hex token, so a mismatch can
 * only restart the match at that byte: no failure table is needed. */
static void ans_echo(struct chk_answer *a, const uint8_t *p, size_t n)
{
	uint32_t m = a->tok_match;
	size_t i = 0;

	if (!a->tok || a->tok_found)
		return;
	while (i < n) {
		uint8_t want;

		if (m == 0) {
			const uint8_t *q = memchr(p + i, ans_marker[0], n - i);

			if (!q)
				break;
			i = (size_t)(q - p);
		}
		want = (uint8_t)(m < ANS_MARKER_LEN ? ans_marker[m] : a->tok[m - ANS_MARKER_LEN]);
		if (p[i] == want)
			m++;
		else
			m = p[i] == (uint8_t)ans_marker[0];
		i++;
		if (m == ANS_MARKER_LEN)
			a->echo_seen = true;
		if (m == ANS_MARKER_LEN + CHK_TOKEN_LEN) {
			a->tok_found = true;
			return;
		}
	}
	a->tok_match = (uint8_t)m;
}

/* Advances the KMP search over body bytes. */
static void ans_match(struct chk_answer *a, const uint8_t *p, size_t n)
{
	const unsigned char *pat = (const unsigned char *)a->expect;
	uint32_t m = a->match;
	size_t i = 0;

	if (a->found)
		return;
	while (i < n) {
		if (m == 0) {
			const uint8_t *q = memchr(p + i, pat[0], n - i);

			if (!q)
				break;
			i = (size_t)(q - p);
		}
		while (m > 0 && p[i] != pat[m])
			m = a->kmp[m - 1];
		if (p[i] == pat[m])
			m++;
		i++;
		if (m == a->expect_len) {
			a->found = true;
			return;
		}
	}
	a->match = m;
}

/* Copies body bytes into the capture buffer while it has room. */
static void ans_keep(struct chk_answer *a, const uint8_t *p, size_t n)
{
	size_t room = a->body_cap - a->body_len;

	if (!a->body)
		return;
	if (n > room)
		n = room;
	memcpy(a->body + a->body_len, p, n);
	a->body_len += (uint32_t)n;
}

/* Takes body bytes in a run; returns how many. */
static size_t ans_body(struct chk_answer *a, const uint8_t *p, size_t n)
{
	if (a->phase == AP_BODY_EOF) {
		ans_match(a, p, n);
		ans_echo(a, p, n);
		ans_keep(a, p, n);
		return n;
	}
	if (n > a->left)
		n = (size_t)a->left;
	ans_match(a, p, n);
	ans_echo(a, p, n);
	ans_keep(a, p, n);
	a->left -= n;
	if (a->left > 0)
		return n;
	if (a->phase == AP_CHUNK_DATA) {
		a->phase = AP_CHUNK_END;
		a->pos = 0;
	} else {
		ans_end_body(a);
	}
	return n;
}

static bool ans_is_space(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static uint8_t ans_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* Adds a digit to a->left, saturating just above the answer limit. */
static void ans_accumulate(struct chk_answer *a, unsigned base, unsigned digit)
{
	a->left = a->left * base + digit;
	if (a->left > (uint64_t)a->max + 1)
		a->left = (uint64_t)a->max + 1;
}

static void ans_status_byte(struct chk_answer *a, uint8_t c)
{
	unsigned pos = a->pos++;

	if (pos < sizeof(ans_status_prefix) - 1) {
		if (c != (uint8_t)ans_status_prefix[pos])
			ans_end(a, CHK_PROTO_ERR);
	} else if (pos == 7) {
		if (c != '0' && c != '1')
			ans_end(a, CHK_PROTO_ERR);
	} else if (pos == 8) {
		if (c != ' ')
			ans_end(a, CHK_PROTO_ERR);
	} else if (pos <= 11) {
		if (c < '0' || c > '9') {
			ans_end(a, CHK_PROTO_ERR);
			return;
		}
		a->left = a->left * 10 + (uint64_t)(c - '0');
		if (pos == 11)
			a->status = (uint16_t)a->left;
	} else if (c == '\n') {
		a->phase = AP_LINE_START;
	} else if (c == ' ' || c == '\r') {
		a->phase = AP_STATUS_REST;
	} else {
		ans_end(a, CHK_PROTO_ERR);
	}
}

/* A body follows the head: pause there if asked to. */
static void ans_body_begins(struct chk_answer *a)
{
	if (a->pause_at_body) {
		a->pause_at_body = false;
		a->at_body = true;
	}
}

/* The empty line: decides how the body is delimited. */
static void ans_head_end(struct chk_answer *a)
{
	if (a->head_only) {
		ans_end(a, CHK_OK);
	} else if (a->status != 200) {
		ans_bad(a, CHK_WHY_STATUS);
	} else if (a->chunked) {
		a->phase = AP_CHUNK_SIZE;
		a->left = 0;
		a->pos = 0;
		ans_body_begins(a);
	} else if (a->have_length) {
		if (a->length > a->max - a->total) {
			ans_bad(a, CHK_WHY_TOO_BIG);
		} else if (a->length == 0) {
			ans_end_body(a);
		} else {
			a->phase = AP_BODY_LEN;
			a->left = a->length;
			ans_body_begins(a);
		}
	} else {
		a->phase = AP_BODY_EOF;
		ans_body_begins(a);
	}
}

static void ans_name_byte(struct chk_answer *a, uint8_t c)
{
	const char *name = ans_field_names[a->field];

	if (c == ':') {
		if (a->field != AF_OTHER && name[a->pos] == '\0') {
			a->phase = AP_VALUE;
			a->pos = 0;
			a->left = 0;
		} else {
			a->phase = AP_SKIP_LINE;
		}
	} else if (c == '\n') {
		a->phase = AP_LINE_START; /* no colon: ignore the line */
	} else if (a->field != AF_OTHER && name[a->pos] != '\0' &&
		   ans_lower(c) == (uint8_t)name[a->pos]) {
		a->pos++;
	} else if (c != '\r') {
		a->field = AF_OTHER;
	}
}

/* Content-Length: optional white space, digits, optional white space.
 * pos: 0 before the digits, 1 in them, 2 after them. */
static void ans_length_byte(struct chk_answer *a, uint8_t c)
{
	if (c >= '0' && c <= '9' && a->pos < 2) {
		a->pos = 1;
		ans_accumulate(a, 10, c - '0');
	} else if (ans_is_space(c) || c == '\r') {
		if (a->pos == 1)
			a->pos = 2;
	} else if (c == '\n' && a->pos > 0) {
		if (a->have_length && a->length != a->left) {
			ans_end(a, CHK_PROTO_ERR);
			return;
		}
		a->have_length = true;
		a->length = a->left;
		a->phase = AP_LINE_START;
	} else {
		ans_end(a, CHK_PROTO_ERR);
	}
}

/* Transfer-Encoding: chunked when its last coding is "chunked".
 * pos: letters of "chunked" matched since the last comma; 8 = another coding. */
static void ans_encoding_byte(struct chk_answer *a, uint8_t c)
{
	if (c == '\n') {
		a->chunked = a->pos == sizeof(ans_chunked) - 1;
		a->phase = AP_LINE_START;
	} else if (c == ',') {
		a->pos = 0;
	} else if (ans_is_space(c) || c == '\r') {
		if (a->pos > 0 && a->pos < sizeof(ans_chunked) - 1)
			a->pos = 8;
	} else if (a->pos < sizeof(ans_chunked) - 1 &&
		   ans_lower(c) == (uint8_t)ans_chunked[a->pos]) {
		a->pos++;
	} else {
		a->pos = 8;
	}
}

static void ans_head_byte(struct chk_answer *a, uint8_t c)
{
	if (++a->head_len > CHK_ANSWER_HEAD_MAX) {
		ans_bad(a, CHK_WHY_TOO_BIG);
		return;
	}
	switch (a->phase) {
	case AP_STATUS:
		ans_status_byte(a, c);
		break;
	case AP_STATUS_REST:
	case AP_SKIP_LINE:
		if (c == '\n')
			a->phase = AP_LINE_START;
		break;
	case AP_LINE_START:
		if (c == '\n') {
			ans_head_end(a);
		} else if (c != '\r') {
			a->phase = AP_NAME;
			a->field = AF_OTHER;
			a->pos = 1;
			if (ans_lower(c) == 'c')
				a->field = AF_LENGTH;
			else if (ans_lower(c) == 't')
				a->field = AF_ENCODING;
		}
		break;
	case AP_NAME:
		ans_name_byte(a, c);
		break;
	case AP_VALUE:
		if (a->field == AF_LENGTH)
			ans_length_byte(a, c);
		else
			ans_encoding_byte(a, c);
		break;
	}
}

/* The LF ending a chunk-size line: a->left holds the size. */
static void ans_chunk_size_end(struct chk_answer *a)
{
	if (a->left > a->max - a->total) {
		ans_bad(a, CHK_WHY_TOO_BIG);
	} else if (a->left == 0) {
		a->phase = AP_TRAILER_START;
	} else {
		a->phase = AP_CHUNK_DATA;
	}
}

/* Chunk framing. In AP_CHUNK_SIZE pos is 0 before the digits, 1 in them,
 * 2 after them; in AP_CHUNK_END it is 1 once the CR was seen. */
static void ans_chunk_byte(struct chk_answer *a, uint8_t c)
{
	int d = proxy_hex_digit((char)c);

	switch (a->phase) {
	case AP_CHUNK_SIZE:
		if (d >= 0 && a->pos < 2) {
			a->pos = 1;
			ans_accumulate(a, 16, (unsigned)d);
		} else if ((ans_is_space(c) || c == '\r') && a->pos > 0) {
			a->pos = 2;
		} else if ((c == ';' || c == '\n') && a->pos > 0) {
			if (c == ';')
				a->phase = AP_CHUNK_EXT;
			else
				ans_chunk_size_end(a);
		} else {
			ans_end(a, CHK_PROTO_ERR);
		}
		break;
	case AP_CHUNK_EXT:
		if (c == '\n')
			ans_chunk_size_end(a);
		break;
	case AP_CHUNK_END:
		if (c == '\r' && a->pos == 0) {
			a->pos = 1;
		} else if (c == '\n') {
			a->phase = AP_CHUNK_SIZE;
			a->pos = 0;
			a->left = 0;
		} else {
			ans_end(a, CHK_PROTO_ERR);
		}
		break;
	case AP_TRAILER_START:
		if (c == '\n')
			ans_end_body(a);
		else if (c != '\r')
			a->phase = AP_TRAILER_SKIP;
		break;
	case AP_TRAILER_SKIP:
		if (c == '\n')
			a->phase = AP_TRAILER_START;
		break;
	}
}

size_t chk_answer_feed(struct chk_answer *a, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	size_t room, lim, i = 0;

	if (a->done)
		return 0;
	a->at_body = false;
	room = a->max - a->total;
	lim = n < room ? n : room;
	while (i < lim && !a->done && !a->at_body) {
		size_t k;

		switch (a->phase) {
		case AP_BODY_LEN:
		case AP_BODY_EOF:
		case AP_CHUNK_DATA:
			k = ans_body(a, p + i, lim - i);
			a->total += (uint32_t)k;
			i += k;
			break;
		case AP_CHUNK_SIZE:
		case AP_CHUNK_EXT:
		case AP_CHUNK_END:
		case AP_TRAILER_START:
		case AP_TRAILER_SKIP:
			a->total++;
			ans_chunk_byte(a, p[i++]);
			break;
		default:
			a->total++;
			ans_head_byte(a, p[i++]);
			break;
		}
	}
	if (!a->done && !a->at_body && i < n)
		ans_bad(a, CHK_WHY_TOO_BIG); /* more than max bytes */
	return i;
}

void chk_answer_capture(struct chk_answer *a, uint8_t *buf, size_t cap)
{
	a->body = buf;
	a->body_cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
	a->body_len = 0;
	a->at_body = false;
}

void chk_answer_eof(struct chk_answer *a)
{
	if (a->done)
		return;
	if (a->phase == AP_BODY_EOF)
		ans_end_body(a);
	else
		ans_end(a, CHK_RESET);
}
