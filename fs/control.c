/* control: what a write to the control files means; see control.h.
 *
 * add and remove parse every line first and hand the whole list to the
 * engine in one call only when all of them are good, so a unit is all or
 * nothing; reload reads one word. The reason for an EINVAL names the line
 * (counted from 1, blank and comment lines included) and shows its start.
 */
#include "control.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How much of a bad line the reason quotes. */
#define CONTROL_QUOTE_MAX 60

/* Writes the reason for bad line lineno (its text in line[0..len)) to why:
 * printable bytes quoted, anything else shown as '?', cut with "...". */
static void control_why_line(char *why, size_t why_size, size_t lineno, const char *line,
			     size_t len)
{
	char quote[CONTROL_QUOTE_MAX + 4];
	size_t i, n = len;

	if (!why || !why_size)
		return;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	for (i = 0; i < n && i < CONTROL_QUOTE_MAX; i++)
		quote[i] = isprint((unsigned char)line[i]) ? line[i] : '?';
	if (n > CONTROL_QUOTE_MAX) {
		memcpy(quote + i, "...", 3);
		i += 3;
	}
	quote[i] = '\0';
	snprintf(why, why_size, "line %zu: not a proxy line: %s", lineno, quote);
}

static void control_why(char *why, size_t why_size, const char *text)
{
	if (why && why_size)
		snprintf(why, why_size, "%s", text);
}

/* Parses the lines of text into *out (malloc'ed, NULL when no proxy) and
 * their number *n. -EINVAL with why at the first bad line, -ENOMEM. */
static int control_parse(const char *text, size_t len, struct proxy_addr **out, size_t *n,
			 char *why, size_t why_size)
{
	struct proxy_addr *list = NULL, *grown;
	size_t cap = 0, lineno = 0;
	const char *p = text, *end = text + len, *eol;
	int err = 0;

	*n = 0;
	while (p < end) {
		lineno++;
		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(list, cap * sizeof(*list));
			if (!grown) {
				err = -ENOMEM;
				control_why(why, why_size, "out of memory");
				goto fail;
			}
			list = grown;
		}
		switch (proxy_parse_line(p, (size_t)(eol - p), PROXY_HTTP, &list[*n])) {
		case PROXY_LINE_OK:
			(*n)++;
			break;
		case PROXY_LINE_SKIP:
			break;
		default:
			control_why_line(why, why_size, lineno, p, (size_t)(eol - p));
			err = -EINVAL;
			goto fail;
		}
		p = eol + 1;
	}
	*out = list;
	return 0;
fail:
	free(list);
	*out = NULL;
	*n = 0;
	return err;
}

int control_check(const char *text, size_t len, char *why, size_t why_size)
{
	struct proxy_addr *list;
	size_t n;
	int err = control_parse(text, len, &list, &n, why, why_size);

	free(list);
	return err;
}

/* One word, white space around it ignored: "sync" waits for the rescan,
 * "reload" re-reads the config file first, anything else queues a rescan. */
static int control_reload(const struct fs_control *ctl, const char *text, size_t len,
			  fs_stop_fn stop, void *stop_arg, char *why, size_t why_size)
{
	const char *end = text + len;
	size_t n;
	int err;

	while (text < end && isspace((unsigned char)*text))
		text++;
	while (end > text && isspace((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - text);
	if (n == 6 && memcmp(text, "reload", 6) == 0) {
		err = ctl->reload(ctl->arg, stop, stop_arg);
		if (err == -EINVAL)
			control_why(why, why_size,
				    "the config file does not parse (the log says why)");
		return err;
	}
	return ctl->rescan(ctl->arg, n == 4 && memcmp(text, "sync", 4) == 0, stop, stop_arg);
}

int control_apply(const struct fs_control *ctl, enum control_kind kind, const char *text,
		  size_t len, fs_stop_fn stop, void *stop_arg, char *why, size_t why_size)
{
	struct proxy_addr *list;
	size_t n;
	int err;

	if (why && why_size)
		why[0] = '\0';
	if (len > CONTROL_MAX) {
		control_why(why, why_size, "more than 1 MiB");
		return -EMSGSIZE;
	}
	if (kind == CONTROL_RELOAD)
		return control_reload(ctl, text, len, stop, stop_arg, why, why_size);
	err = control_parse(text, len, &list, &n, why, why_size);
	if (!err && n)
		err = kind == CONTROL_ADD ? ctl->add(ctl->arg, list, n)
					  : ctl->remove(ctl->arg, list, n);
	free(list);
	return err;
}
