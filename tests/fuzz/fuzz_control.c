/* fuzz_control: a control write unit (control/add, control/remove, a POST
 * body) of any bytes, through control_apply() against a fake engine.
 *
 * Whatever the bytes: the answer is 0, -EINVAL or -EMSGSIZE; on -EINVAL
 * nothing is applied and the reason, NUL-ended within its buffer and of
 * printable bytes only, names a line; on 0 the engine gets exactly the
 * proxies of the lines proxy_parse_line() takes, in order, in one call
 * (none when there are none). control_check() agrees with the apply, and
 * checking the text in two parts cut after any newline agrees with
 * checking it whole (what the mount does a write at a time). The same
 * bytes as a reload word queue exactly one rescan or one reload.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "fuzz.h"

struct fake {
	int calls;
	size_t n;
	const char *text; /* the unit, to compare what was handed over */
	size_t len;
	int rescans, reloads;
};

/* The proxies the lines of text[0..len) hold, counted independently. */
static size_t count_good(const char *text, size_t len, bool *bad)
{
	const char *p = text, *end = text + len, *eol;
	struct proxy_addr a;
	size_t n = 0;

	*bad = false;
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		switch (proxy_parse_line(p, (size_t)(eol - p), PROXY_HTTP, &a)) {
		case PROXY_LINE_OK:
			n++;
			break;
		case PROXY_LINE_SKIP:
			break;
		default:
			*bad = true;
		}
		p = eol + 1;
	}
	return n;
}

static int fake_list(void *arg, const struct proxy_addr *list, size_t n)
{
	struct fake *f = arg;
	const char *p = f->text, *end = f->text + f->len, *eol;
	struct proxy_addr a;
	size_t k = 0;

	f->calls++;
	f->n = n;
	/* The same proxies as the lines, in their order. */
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if (proxy_parse_line(p, (size_t)(eol - p), PROXY_HTTP, &a) == PROXY_LINE_OK) {
			FUZZ_CHECK(k < n);
			FUZZ_CHECK(list[k].port == a.port && list[k].proto == a.proto);
			FUZZ_CHECK(strcmp(list[k].host, a.host) == 0);
			FUZZ_CHECK(strcmp(list[k].user, a.user) == 0);
			k++;
		}
		p = eol + 1;
	}
	FUZZ_CHECK(k == n);
	return 0;
}

static int fake_rescan(void *arg, bool wait, fs_stop_fn stop, void *stop_arg)
{
	((struct fake *)arg)->rescans++;
	return 0;
}

static int fake_reload(void *arg, fs_stop_fn stop, void *stop_arg)
{
	((struct fake *)arg)->reloads++;
	return 0;
}

static void check_why(const char *why, size_t size)
{
	size_t n = strnlen(why, size);

	FUZZ_CHECK(n < size);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(isprint((unsigned char)why[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct fake f = {.text = text, .len = size};
	struct fs_control ctl = {.arg = &f,
				 .add = fake_list,
				 .remove = fake_list,
				 .rescan = fake_rescan,
				 .reload = fake_reload};
	char why[128], small[9];
	bool bad;
	size_t good = count_good(text, size, &bad);
	int rc;

	memset(why, 'x', sizeof(why));
	rc = control_apply(&ctl, CONTROL_ADD, text, size, NULL, NULL, why, sizeof(why));
	check_why(why, sizeof(why));
	if (size > CONTROL_MAX) {
		FUZZ_CHECK(rc == -EMSGSIZE && f.calls == 0);
	} else if (bad) {
		FUZZ_CHECK(rc == -EINVAL && f.calls == 0);
		FUZZ_CHECK(strncmp(why, "line ", 5) == 0);
	} else {
		FUZZ_CHECK(rc == 0 && why[0] == '\0');
		FUZZ_CHECK(f.calls == (good ? 1 : 0) && (!good || f.n == good));
	}
	if (size <= CONTROL_MAX) {
		/* A reason cut to a small buffer stays NUL-ended (on success
		 * the buffer is left alone). */
		memset(small, 'x', sizeof(small));
		FUZZ_CHECK(control_check(text, size, small, sizeof(small)) == (bad ? -EINVAL : 0));
		if (bad)
			check_why(small, sizeof(small));
		/* In two parts cut after a newline, as writes arrive. */
		const char *nl = memchr(text, '\n', size);

		if (nl) {
			size_t cut = (size_t)(nl - text) + 1;
			bool bad1 = control_check(text, cut, NULL, 0) != 0;
			bool bad2 = control_check(text + cut, size - cut, NULL, 0) != 0;

			FUZZ_CHECK((bad1 || bad2) == bad);
		}
	}
	f.calls = 0;
	rc = control_apply(&ctl, CONTROL_REMOVE, text, size, NULL, NULL, NULL, 0);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EMSGSIZE);
	FUZZ_CHECK(rc != 0 ? f.calls == 0 : f.calls <= 1);

	rc = control_apply(&ctl, CONTROL_RELOAD, text, size, NULL, NULL, why, sizeof(why));
	FUZZ_CHECK(rc == (size > CONTROL_MAX ? -EMSGSIZE : 0));
	FUZZ_CHECK(f.rescans + f.reloads == (size > CONTROL_MAX ? 0 : 1));
	return 0;
}
