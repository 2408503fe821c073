/* sbuf: growable byte buffer; see sbuf.h. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(struct sbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void sbuf_free(struct sbuf *b)
{
	free(b->data);
	sbuf_init(b);
}

void sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->data)
		b->data[0] = '\0';
}

bool sbuf_failed(const struct sbuf *b)
{
	return b->failed;
}

static bool sbuf_reserve(struct sbuf *b, size_t extra)
{
	size_t want, cap;
	char *p;

	if (b->failed)
		return false;
	if (extra > (size_t)-1 / 2 - b->len) {
		b->failed = true;
		return false;
	}
	want = b->len + extra + 1;
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (!sbuf_reserve(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_addc(struct sbuf *b, char c)
{
	sbuf_add(b, &c, 1);
}

/* Formats into the room the buffer has, and only when that is too small
 * grows it and formats again: one pass for nearly every call (100,000
 * records of all.json make this count). */
void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	size_t room = b->failed || !b->data ? 0 : b->cap - b->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < room) {
		b->len += (size_t)n;
		return;
	}
	if (!sbuf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sbuf_add_json_str(struct sbuf *b, const char *s)
{
	const unsigned char *p;

	sbuf_addc(b, '"');
	for (p = (const unsigned char *)s; *p; p++) {
		size_t run = 0;

		/* the characters that need no escape, in one go */
		while (p[run] >= 0x20 && p[run] != '"' && p[run] != '\\' && p[run] != 0x7f)
			run++;
		if (run) {
			sbuf_add(b, p, run);
			p += run - 1;
			continue;
		}
		switch (*p) {
		case '"':
			sbuf_adds(b, "\\\"");
			break;
		case '\\':
			sbuf_adds(b, "\\\\");
			break;
		case '\n':
			sbuf_adds(b, "\\n");
			break;
		case '\r':
			sbuf_adds(b, "\\r");
			break;
		case '\t':
			sbuf_adds(b, "\\t");
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				sbuf_printf(b, "\\u%04x", *p);
			else
				sbuf_addc(b, (char)*p);
		}
	}
	sbuf_addc(b, '"');
}

const char *sbuf_cstr(struct sbuf *b)
{
	if (b->failed || !b->data)
		return "";
	return b->data;
}
