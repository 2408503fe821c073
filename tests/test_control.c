/* Unit tests for fs/control.c: what a control write unit means, against a
 * fake struct fs_control that records the calls it gets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "testutil.h"

/* What the fake saw. */
struct fake {
	int adds, removes, rescans, reloads;
	size_t last_n;		 /* proxies in the last add or remove */
	struct proxy_addr first; /* the first of them */
	bool last_wait;		 /* the last rescan's wait */
	int reload_err;		 /* what reload answers */
};

static void fake_list(struct fake *f, const struct proxy_addr *list, size_t n)
{
	f->last_n = n;
	if (n)
		f->first = list[0];
}

static int fake_add(void *arg, const struct proxy_addr *list, size_t n)
{
	struct fake *f = arg;

	f->adds++;
	fake_list(f, list, n);
	return 0;
}

static int fake_remove(void *arg, const struct proxy_addr *list, size_t n)
{
	struct fake *f = arg;

	f->removes++;
	fake_list(f, list, n);
	return 0;
}

static int fake_rescan(void *arg, bool wait, fs_stop_fn stop, void *stop_arg)
{
	struct fake *f = arg;

	f->rescans++;
	f->last_wait = wait;
	return 0;
}

static int fake_reload(void *arg, fs_stop_fn stop, void *stop_arg)
{
	struct fake *f = arg;

	f->reloads++;
	return f->reload_err;
}

static int apply(struct fake *f, enum control_kind kind, const char *text, char *why,
		 size_t why_size)
{
	struct fs_control ctl = {
	    .arg = f,
	    .add = fake_add,
	    .remove = fake_remove,
	    .rescan = fake_rescan,
	    .reload = fake_reload,
	};

	return control_apply(&ctl, kind, text, strlen(text), NULL, NULL, why, why_size);
}

static void test_add_remove(void)
{
	struct fake f = {0};
	char why[200];

	CHECK_INT(
	    apply(&f, CONTROL_ADD, "1.2.3.4:8080\n# c\n\nsocks5://5.6.7.8:1080", why, sizeof(why)),
	    0);
	CHECK_INT(f.adds, 1);
	CHECK_INT(f.last_n, 2);
	CHECK_STR(f.first.host, "1.2.3.4");
	CHECK_INT(f.first.port, 8080);
	CHECK_STR(why, "");

	CHECK_INT(apply(&f, CONTROL_REMOVE, "socks5://5.6.7.8:1080\n", why, sizeof(why)), 0);
	CHECK_INT(f.removes, 1);
	CHECK_INT(f.last_n, 1);
	CHECK_INT(f.first.proto, PROXY_SOCKS5);

	/* Only blank lines and comments: nothing to hand on, no call. */
	CHECK_INT(apply(&f, CONTROL_ADD, "\n# nothing\n", why, sizeof(why)), 0);
	CHECK_INT(f.adds, 1);
}

static void test_bad_line(void)
{
	struct fake f = {0};
	char why[200];

	/* A bad third line: nothing of the unit applied, the reason names it. */
	CHECK_INT(apply(&f, CONTROL_ADD, "1.2.3.4:8080\n# c\nnot a proxy\n5.6.7.8:3128\n", why,
			sizeof(why)),
		  -EINVAL);
	CHECK_INT(f.adds, 0);
	CHECK_STR(why, "line 3: not a proxy line: not a proxy");
	CHECK_INT(apply(&f, CONTROL_REMOVE, "1.2.3.4:99999", why, sizeof(why)), -EINVAL);
	CHECK_INT(f.removes, 0);
	CHECK_STR(why, "line 1: not a proxy line: 1.2.3.4:99999");

	/* Control bytes are not echoed; a long line is cut. */
	CHECK_INT(apply(&f, CONTROL_ADD, "\x01\x1b[2J\n", why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "line 1: not a proxy line: ??[2J");
	{
		char longline[300];

		memset(longline, 'x', sizeof(longline) - 1);
		longline[sizeof(longline) - 1] = '\0';
		CHECK_INT(apply(&f, CONTROL_ADD, longline, why, sizeof(why)), -EINVAL);
		CHECK(strlen(why) < 100);
		CHECK(strstr(why, "...") != NULL);
	}
	/* A small why buffer is never overrun and still NUL ended. */
	{
		char small[8];

		CHECK_INT(apply(&f, CONTROL_ADD, "bad", small, sizeof(small)), -EINVAL);
		CHECK_INT(strlen(small), 7);
	}
	/* No why buffer at all. */
	CHECK_INT(apply(&f, CONTROL_ADD, "bad", NULL, 0), -EINVAL);

	CHECK_INT(control_check("1.2.3.4:80\n", 11, why, sizeof(why)), 0);
	CHECK_INT(control_check("1.2.3.4:80\nx\n", 13, why, sizeof(why)), -EINVAL);
	CHECK_STR(why, "line 2: not a proxy line: x");
	CHECK_INT(f.adds, 0);
}

static void test_reload_words(void)
{
	struct fake f = {0};
	char why[200];

	CHECK_INT(apply(&f, CONTROL_RELOAD, "  sync\n", why, sizeof(why)), 0);
	CHECK_INT(f.rescans, 1);
	CHECK(f.last_wait);
	CHECK_INT(apply(&f, CONTROL_RELOAD, "1\n", why, sizeof(why)), 0);
	CHECK_INT(f.rescans, 2);
	CHECK(!f.last_wait);
	CHECK_INT(apply(&f, CONTROL_RELOAD, "", why, sizeof(why)), 0);
	CHECK_INT(f.rescans, 3);
	CHECK(!f.last_wait);
	CHECK_INT(apply(&f, CONTROL_RELOAD, "syncx", why, sizeof(why)), 0);
	CHECK(!f.last_wait);
	CHECK_INT(apply(&f, CONTROL_RELOAD, "\treload \n", why, sizeof(why)), 0);
	CHECK_INT(f.reloads, 1);
	CHECK_INT(f.rescans, 4);
	f.reload_err = -EINVAL;
	CHECK_INT(apply(&f, CONTROL_RELOAD, "reload", why, sizeof(why)), -EINVAL);
	CHECK_INT(f.reloads, 2);
	CHECK(strstr(why, "config") != NULL);
	CHECK_INT(f.adds + f.removes, 0);
}

static void test_too_big(void)
{
	struct fake f = {0};
	struct fs_control ctl = {
	    .arg = &f,
	    .add = fake_add,
	    .remove = fake_remove,
	    .rescan = fake_rescan,
	    .reload = fake_reload,
	};
	size_t len = CONTROL_MAX + 1, i;
	char *text = malloc(len), why[200];

	CHECK(text != NULL);
	if (!text)
		return;
	/* Good lines all the way, one byte too many. */
	for (i = 0; i < len; i++)
		text[i] = "1.2.3.4:80\n"[i % 11];
	CHECK_INT(control_apply(&ctl, CONTROL_ADD, text, len, NULL, NULL, why, sizeof(why)),
		  -EMSGSIZE);
	CHECK_INT(control_apply(&ctl, CONTROL_RELOAD, text, len, NULL, NULL, why, sizeof(why)),
		  -EMSGSIZE);
	CHECK(why[0] != '\0');
	CHECK_INT(f.adds + f.rescans + f.reloads, 0);
	/* Exactly CONTROL_MAX is taken (its last byte a blank line, not a
	 * cut one). */
	len = CONTROL_MAX;
	text[len - 1] = '\n';
	CHECK_INT(control_apply(&ctl, CONTROL_ADD, text, len, NULL, NULL, why, sizeof(why)), 0);
	CHECK_INT(f.adds, 1);
	CHECK_INT(f.last_n, len / 11);
	free(text);
}

int main(void)
{
	test_add_remove();
	test_bad_line();
	test_reload_words();
	test_too_big();
	return test_exit_code();
}
