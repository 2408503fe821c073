/* sbuf: a growable byte buffer for rendering text.
 *
 * Appends never fail silently: on allocation failure the buffer is marked
 * failed, later appends do nothing and sbuf_failed() says so. The caller
 * checks once at the end instead of after every append.
 */
#ifndef PROXYFS_SBUF_H
#define PROXYFS_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data; /* NUL-terminated when len > 0 or after sbuf_cstr() */
	size_t len;
	size_t cap;
	bool failed;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b);
bool sbuf_failed(const struct sbuf *b);
void sbuf_add(struct sbuf *b, const void *p, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
__attribute__((format(printf, 2, 3))) void sbuf_printf(struct sbuf *b, const char *fmt, ...);
/* Appends s as a JSON string literal, quotes included. */
void sbuf_add_json_str(struct sbuf *b, const char *s);
/* Always returns a valid NUL-terminated string ("" when empty or failed). */
const char *sbuf_cstr(struct sbuf *b);

#endif
