/* Unit tests for the tree's /country/ folders: what `ls country/` lists,
 * which names are folders (codes in either case, "unknown"), and what
 * live.txt, random, next and session/KEY under one give, read through the
 * path table as every front reads it, over a published snapshot of six
 * proxies in Germany, France and nowhere known. */
#include "session.h"
#include "tree.h"
#include "testutil.h"

#include <stdlib.h>

static const struct {
	const char *uri, *country;
} proxies[] = {
    {"http://10.0.0.1:1", "DE"}, {"http://10.0.0.2:2", "FR"}, {"http://10.0.0.3:3", ""},
    {"http://10.0.0.4:4", "DE"}, {"http://10.0.0.5:5", "de"}, {"http://10.0.0.6:6", "FR"},
};
#define NPROXIES (sizeof(proxies) / sizeof(proxies[0]))

static void publish(uint32_t n)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st = {.health = "ok"};

	for (uint32_t i = 0; i < n; i++) {
		struct snap_proxy p = {.uri = proxies[i].uri,
				       .host = "h",
				       .port = (uint16_t)(i + 1),
				       .proto = PROXY_HTTP,
				       .folders = 1u << PROXY_HTTP,
				       .latency_ms = 10 * (i + 1),
				       .sources = ""};

		snprintf(p.country, sizeof(p.country), "%s", proxies[i].country);
		CHECK_INT(snap_builder_add(b, &p), 0);
	}
	snap_builder_set_stats(b, &st);
	snap_publish(snap_builder_finish(b));
}

struct names {
	char buf[256];
};

static int fill(void *arg, const char *name)
{
	struct names *n = arg;
	size_t len = strlen(n->buf);

	snprintf(n->buf + len, sizeof(n->buf) - len, "%s%s", len ? " " : "", name);
	return 0;
}

/* The names dir lists, space-separated. */
static const char *list(const char *dir)
{
	static struct names n;
	struct tree_node d;

	n.buf[0] = '\0';
	CHECK(tree_lookup(dir, &d));
	CHECK_INT(d.kind, TREE_DIR);
	CHECK_INT(tree_list(&d, fill, &n), 0);
	return n.buf;
}

/* The content of path now, as a C string (static). */
static const char *read_path(const char *path)
{
	static char out[512];
	const struct sbuf *content;
	struct tree_node n;
	struct sbuf buf;
	struct snapshot *s = snap_current();

	out[0] = '\0';
	sbuf_init(&buf);
	CHECK(tree_lookup(path, &n));
	CHECK_INT(tree_content(&n, s, path, &buf, &content), 0);
	snprintf(out, sizeof(out), "%.*s", (int)content->len, content->data);
	sbuf_free(&buf);
	snap_unref(s);
	return out;
}

static void test_country_listing(void)
{
	struct tree_node n;

	publish(NPROXIES);
	CHECK(strstr(list("/"), "country") != NULL);
	CHECK_STR(list("/country"), "DE FR unknown");
	CHECK_STR(list("/country/DE"), "live.txt random next session");
	CHECK_STR(list("/country/unknown"), "live.txt random next session");
	/* any code is a folder, listed or not; other names are not */
	CHECK(tree_lookup("/country/de", &n) && n.kind == TREE_DIR);
	CHECK(tree_lookup("/country/Unknown", &n) && n.kind == TREE_DIR);
	CHECK(tree_lookup("/country/CN", &n) && n.kind == TREE_DIR);
	CHECK(tree_lookup("/country/de/session/k1", &n) && n.kind == TREE_SESSION);
	CHECK(!tree_lookup("/country/D", &n));
	CHECK(!tree_lookup("/country/DEU", &n));
	CHECK(!tree_lookup("/country/d1/random", &n));
	CHECK(!tree_lookup("/country/DE/other", &n));
	CHECK(!tree_lookup("/country/DE/session/bad key", &n));

	publish(0);
	CHECK_STR(list("/country"), "");
	publish(3); /* DE, FR, unknown */
	CHECK_STR(list("/country"), "DE FR unknown");
	publish(2);
	CHECK_STR(list("/country"), "DE FR");
}

static void test_country_content(void)
{
	char path[64];

	publish(NPROXIES);
	/* fastest first; "de" given by the engine counts as DE */
	CHECK_STR(read_path("/country/DE/live.txt"),
		  "http://10.0.0.1:1\nhttp://10.0.0.4:4\nhttp://10.0.0.5:5\n");
	CHECK_STR(read_path("/country/de/live.txt"), read_path("/country/DE/live.txt"));
	CHECK_STR(read_path("/country/fr/live.txt"), "http://10.0.0.2:2\nhttp://10.0.0.6:6\n");
	CHECK_STR(read_path("/country/unknown/live.txt"), "http://10.0.0.3:3\n");
	CHECK_STR(read_path("/country/CN/live.txt"), "");
	CHECK_STR(read_path("/country/CN/random"), "");
	for (int i = 0; i < 10; i++) {
		const char *r = read_path("/country/fr/random");

		CHECK(strcmp(r, "http://10.0.0.2:2\n") == 0 ||
		      strcmp(r, "http://10.0.0.6:6\n") == 0);
	}
	/* next: each in turn */
	{
		char a[64], b[64];

		snprintf(a, sizeof(a), "%s", read_path("/country/FR/next"));
		snprintf(b, sizeof(b), "%s", read_path("/country/FR/next"));
		CHECK(strcmp(a, b) != 0);
		CHECK_STR(read_path("/country/FR/next"), a);
	}
	/* a session sticks inside its country, and differs per country */
	snprintf(path, sizeof(path), "%s", read_path("/country/DE/session/k1"));
	CHECK(strstr(read_path("/country/DE/live.txt"), path) != NULL);
	for (int i = 0; i < 5; i++)
		CHECK_STR(read_path("/country/de/session/k1"), path);
	CHECK(strstr(read_path("/country/FR/live.txt"), read_path("/country/FR/session/k1")));
	CHECK_STR(read_path("/country/unknown/session/k1"), "http://10.0.0.3:3\n");
	/* the country empties: its session file is empty, as any empty
	 * folder's, and comes back when the country does */
	publish(2);
	CHECK_STR(read_path("/country/unknown/session/k1"), "");
	CHECK_STR(read_path("/country/unknown/random"), "");
	publish(3);
	CHECK_STR(read_path("/country/unknown/session/k1"), "http://10.0.0.3:3\n");
}

/* A country folder's live.txt is rendered once per snapshot however many
 * read it (the mount's opens and stats, the HTTP front), as the fixed
 * folders' are; a new snapshot renders it anew. */
static void test_country_rendered_once(void)
{
	uint64_t r0;

	publish(NPROXIES);
	r0 = snap_renderings();
	for (int i = 0; i < 5; i++)
		CHECK_STR(read_path("/country/FR/live.txt"), "http://10.0.0.2:2\nhttp://10.0.0.6:6\n");
	CHECK_STR(read_path("/country/DE/live.txt"),
		  "http://10.0.0.1:1\nhttp://10.0.0.4:4\nhttp://10.0.0.5:5\n");
	CHECK_INT(snap_renderings() - r0, 2);
	publish(NPROXIES);
	read_path("/country/FR/live.txt");
	CHECK_INT(snap_renderings() - r0, 3);
}

int main(void)
{
	CHECK_INT(snap_system_init(), 0);
	session_configure(600, 1000);
	test_country_listing();
	test_country_content();
	test_country_rendered_once();
	snap_system_fini();
	session_clear();
	return test_exit_code();
}
