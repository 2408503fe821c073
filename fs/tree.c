/* tree: the path table, shared by every front; see tree.h.
 *
 * Every path the tree has is one row of tree_nodes[]: its kind, its
 * renderer and folder, the snapshot cache slot it shares, its mode. A
 * front looks the path up here and acts on the row; nothing else knows
 * path names. /sources/NAME/... and /lookup/NAME are made up at lookup
 * from the current snapshot, /country/XX/... from the code alone,
 * FOLDER/session/KEY from its folder's row.
 */
#include "tree.h"

#include <errno.h>
#include <stdint.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "pick.h"
#include "proxy.h"
#include "session.h"

/* Cache slots: the two top-level lists, then live.txt per folder, then
 * the files of every tracked proxy, then formats/. */
enum {
	SLOT_LIVE_TXT,
	SLOT_LIVE_JSON,
	SLOT_FOLDER_LIVE_TXT,
	SLOT_ALL_JSON = SLOT_FOLDER_LIVE_TXT + SNAP_VIEW_SOURCES,
	SLOT_DEAD_TXT,
	SLOT_REMOVED_TXT,
	SLOT_PROXYCHAINS_CONF,
	SLOT_CURL_TXT,
	SLOT_COUNT,
};

/* One row per line reads best here. */
/* clang-format off */
#define DIR_NODE(p) { .path = (p), .kind = TREE_DIR, .mode = 0555 }
/* A folder's session/ directory: arg is the folder of its KEY files. */
#define SESSION_DIR_NODE(p, f) { .path = (p), .kind = TREE_DIR, .arg = (f), .mode = 0555 }
#define FOLDER_NODES(name, f)                                                           \
	DIR_NODE("/" name),                                                             \
	SESSION_DIR_NODE("/" name "/session", (f)),                                     \
	{ .path = "/" name "/random", .kind = TREE_RANDOM, .arg = (f), .mode = 0444 },    \
	{ .path = "/" name "/next", .kind = TREE_NEXT, .arg = (f), .mode = 0444 },        \
	{ .path = "/" name "/live.txt", .kind = TREE_CACHED, .render = render_live_txt,   \
	  .arg = (f), .slot = SLOT_FOLDER_LIVE_TXT + (f), .mode = 0444 }

static const struct tree_node tree_nodes[] = {
	DIR_NODE("/"),
	{ .path = "/random", .kind = TREE_RANDOM, .arg = RENDER_ALL, .mode = 0444 },
	{ .path = "/next", .kind = TREE_NEXT, .arg = RENDER_ALL, .mode = 0444 },
	{ .path = "/live.txt", .kind = TREE_CACHED, .render = render_live_txt, .arg = RENDER_ALL,
	  .slot = SLOT_LIVE_TXT, .mode = 0444 },
	{ .path = "/live.json", .kind = TREE_CACHED, .render = render_live_json, .arg = RENDER_ALL,
	  .slot = SLOT_LIVE_JSON, .mode = 0444 },
	{ .path = "/stat.json", .kind = TREE_RENDERED, .render = render_stat_json, .mode = 0444 },
	{ .path = "/metrics", .kind = TREE_RENDERED, .render = render_metrics, .mode = 0444 },
	{ .path = "/health", .kind = TREE_RENDERED, .render = render_health, .mode = 0444 },
	{ .path = "/all.json", .kind = TREE_CACHED, .render = render_all_json,
	  .slot = SLOT_ALL_JSON, .mode = 0444 },
	{ .path = "/dead.txt", .kind = TREE_CACHED, .render = render_dead_txt,
	  .slot = SLOT_DEAD_TXT, .mode = 0444 },
	{ .path = "/removed.txt", .kind = TREE_CACHED, .render = render_removed_txt,
	  .slot = SLOT_REMOVED_TXT, .mode = 0444 },
	DIR_NODE("/lookup"),
	SESSION_DIR_NODE("/session", RENDER_ALL),
	FOLDER_NODES("http", PROXY_HTTP),
	FOLDER_NODES("https", PROXY_HTTPS),
	FOLDER_NODES("socks4", PROXY_SOCKS4),
	FOLDER_NODES("socks5", PROXY_SOCKS5),
	DIR_NODE("/anonymity"),
	FOLDER_NODES("anonymity/elite", SNAP_VIEW_ELITE),
	FOLDER_NODES("anonymity/anonymous", SNAP_VIEW_ANONYMOUS),
	FOLDER_NODES("anonymity/transparent", SNAP_VIEW_TRANSPARENT),
	DIR_NODE("/sources"),
	DIR_NODE("/country"),
	DIR_NODE("/formats"),
	{ .path = "/formats/proxychains.conf", .kind = TREE_CACHED,
	  .render = render_proxychains_conf, .slot = SLOT_PROXYCHAINS_CONF, .mode = 0444 },
	{ .path = "/formats/curl.txt", .kind = TREE_CACHED, .render = render_curl_txt,
	  .slot = SLOT_CURL_TXT, .mode = 0444 },
	DIR_NODE("/prometheus"),
	{ .path = "/prometheus/proxyfs.prom", .kind = TREE_RENDERED, .render = render_metrics,
	  .mode = 0444 },
	DIR_NODE("/control"),
	{ .path = "/control/reload", .kind = TREE_RELOAD, .mode = 0200 },
	{ .path = "/control/add", .kind = TREE_ADD, .mode = 0200 },
	{ .path = "/control/remove", .kind = TREE_REMOVE, .mode = 0200 },
	{ .path = "/control/bad", .kind = TREE_BAD, .mode = 0200 },
};
/* clang-format on */

_Static_assert(SLOT_COUNT <= SNAP_CACHE_SLOTS,
	       "the snapshot has a cache slot for every cached file");

#define TREE_NNODES (sizeof(tree_nodes) / sizeof(tree_nodes[0]))

/* The files of a folder made up at lookup (a source's, a country's) and
 * of that folder's session/: the node of rest ("live.txt", "session/KEY",
 * ...) of the folder of view. */
static bool folder_file_node(const char *path, const char *rest, int view, struct tree_node *out)
{
	memset(out, 0, sizeof(*out));
	out->path = path;
	out->arg = view;
	out->mode = 0444;
	if (!rest) {
		out->kind = TREE_DIR;
		out->mode = 0555;
	} else if (strcmp(rest, "live.txt") == 0) {
		/* Rendered once per snapshot, like the fixed folders'. */
		out->kind = TREE_CACHED;
		out->render = render_live_txt;
		out->slot = -1;
	} else if (strcmp(rest, "random") == 0) {
		out->kind = TREE_RANDOM;
	} else if (strcmp(rest, "next") == 0) {
		out->kind = TREE_NEXT;
	} else if (strcmp(rest, "session") == 0) {
		out->kind = TREE_DIR;
		out->mode = 0555;
	} else if (strncmp(rest, "session/", 8) == 0 &&
		   session_key_valid(rest + 8, strlen(rest + 8))) {
		out->kind = TREE_SESSION;
	} else {
		return false;
	}
	return true;
}

/* /sources/NAME/...: one folder per source of the current snapshot, made
 * up at lookup since the sources change with the config. */
static const char *const source_files[] = { "live.txt", "random", "next", "session" };

/* The view of source name in s, or -1. */
static int source_view(const struct snapshot *s, const char *name, size_t len)
{
	for (uint32_t i = 0; i < s->nsources; i++)
		if (strlen(s->sources[i].name) == len && strncmp(s->sources[i].name, name, len) == 0)
			return (int)(SNAP_VIEW_SOURCES + i);
	return -1;
}

static bool source_node(const char *path, struct tree_node *out)
{
	const char *name = path + strlen("/sources/"), *slash = strchr(name, '/');
	size_t len = slash ? (size_t)(slash - name) : strlen(name);
	struct snapshot *s = snap_current();
	int view = source_view(s, name, len);

	snap_unref(s);
	if (view < 0)
		return false;
	return folder_file_node(path, slash ? slash + 1 : NULL, view, out);
}

/* The country view of a /country/ folder name: a code in either case, or
 * "unknown"; -1 for anything else. */
static int country_name_view(const char *name, size_t len)
{
	char code[3];

	if (len == 7 && strncasecmp(name, "unknown", 7) == 0)
		return snap_country_view("");
	if (len != 2)
		return -1;
	memcpy(code, name, 2);
	code[2] = '\0';
	return snap_country_view(code);
}

/* /country/XX/...: a folder for every code, whether or not the pool has
 * a proxy there now (`ls country/` lists those it has): a country that
 * empties behaves as any empty folder, its files 0 bytes, not gone. */
static bool country_node(const char *path, struct tree_node *out)
{
	const char *name = path + strlen("/country/"), *slash = strchr(name, '/');
	size_t len = slash ? (size_t)(slash - name) : strlen(name);
	int view = country_name_view(name, len);

	if (view < 0)
		return false;
	return folder_file_node(path, slash ? slash + 1 : NULL, view, out);
}

/* /lookup/NAME: a file while the current snapshot has a proxy NAME names
 * (render_lookup says how NAME is read); `ls lookup/` is empty. */
static bool lookup_node(const char *path, struct tree_node *out)
{
	struct snapshot *s = snap_current();
	struct sbuf tmp;
	bool found;

	sbuf_init(&tmp);
	found = render_lookup(s, path + strlen("/lookup/"), &tmp) > 0;
	sbuf_free(&tmp);
	snap_unref(s);
	if (!found)
		return false;
	memset(out, 0, sizeof(*out));
	out->path = path;
	out->kind = TREE_LOOKUP;
	out->mode = 0444;
	return true;
}

/* FOLDER/session/KEY of a folder in the table: a file for every KEY that
 * is a session name (session.h); `ls session/` is empty. */
static bool session_node(const char *path, struct tree_node *out)
{
	const char *key = strrchr(path, '/') + 1;
	size_t dir_len = (size_t)(key - 1 - path);

	if (!session_key_valid(key, strlen(key)))
		return false;
	for (size_t i = 0; i < TREE_NNODES; i++) {
		const struct tree_node *d = &tree_nodes[i];
		size_t n = strlen(d->path);

		if (d->kind != TREE_DIR || n != dir_len || strncmp(d->path, path, n) != 0)
			continue;
		if (n < 8 || strcmp(d->path + n - 8, "/session") != 0)
			return false;
		memset(out, 0, sizeof(*out));
		out->path = path;
		out->kind = TREE_SESSION;
		out->arg = d->arg;
		out->mode = 0444;
		return true;
	}
	return false;
}

/* Fills *out with the node at path; false if there is none. */
bool tree_lookup(const char *path, struct tree_node *out)
{
	for (size_t i = 0; i < TREE_NNODES; i++) {
		if (strcmp(tree_nodes[i].path, path) == 0) {
			*out = tree_nodes[i];
			return true;
		}
	}
	if (strncmp(path, "/sources/", 9) == 0 && path[9])
		return source_node(path, out);
	if (strncmp(path, "/lookup/", 8) == 0 && path[8])
		return lookup_node(path, out);
	if (strncmp(path, "/country/", 9) == 0 && path[9])
		return country_node(path, out);
	if (strstr(path, "/session/"))
		return session_node(path, out);
	return false;
}

bool tree_is_control(const struct tree_node *n)
{
	return n->kind >= TREE_RELOAD;
}

enum control_kind tree_control_kind(const struct tree_node *n)
{
	switch (n->kind) {
	case TREE_ADD:
		return CONTROL_ADD;
	case TREE_REMOVE:
		return CONTROL_REMOVE;
	case TREE_BAD:
		return CONTROL_BAD;
	default:
		return CONTROL_RELOAD;
	}
}

/* The name of path inside dir, or NULL if path is not directly in dir. */
static const char *child_name(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	const char *name;

	if (strcmp(path, "/") == 0)
		return NULL;
	if (strcmp(dir, "/") == 0)
		name = path + 1;
	else if (strncmp(path, dir, n) == 0 && path[n] == '/')
		name = path + n + 1;
	else
		return NULL;
	return strchr(name, '/') ? NULL : name;
}

/* The countries the current snapshot has live proxies in, upper case,
 * "unknown" last (the order of countries[]). */
static int list_countries(tree_fill_fn fill, void *arg)
{
	struct snapshot *s = snap_current();
	int rc = 0;

	for (uint32_t i = 0; i < s->ncountries && rc == 0; i++)
		if (fill(arg, s->countries[i].code[0] ? s->countries[i].code : "unknown"))
			rc = -ENOMEM;
	snap_unref(s);
	return rc;
}

static int list_sources(tree_fill_fn fill, void *arg)
{
	struct snapshot *s = snap_current();
	int rc = 0;

	for (uint32_t i = 0; i < s->nsources && rc == 0; i++)
		if (fill(arg, s->sources[i].name))
			rc = -ENOMEM;
	snap_unref(s);
	return rc;
}

int tree_list(const struct tree_node *dir, tree_fill_fn fill, void *arg)
{
	const char *name;

	for (size_t i = 0; i < TREE_NNODES; i++) {
		name = child_name(dir->path, tree_nodes[i].path);
		if (name && fill(arg, name))
			return -ENOMEM;
	}
	if (strcmp(dir->path, "/sources") == 0)
		return list_sources(fill, arg);
	if (strcmp(dir->path, "/country") == 0)
		return list_countries(fill, arg);
	if ((strncmp(dir->path, "/sources/", 9) == 0 && !strchr(dir->path + 9, '/')) ||
	    (strncmp(dir->path, "/country/", 9) == 0 && !strchr(dir->path + 9, '/'))) {
		for (size_t i = 0; i < sizeof(source_files) / sizeof(source_files[0]); i++)
			if (fill(arg, source_files[i]))
				return -ENOMEM;
	}
	return 0;
}

/* --- content --- */

/* The filter of the folder node n is in, as s sees it. A source's folder
 * is named by the path (the view a lookup found may be another in s, the
 * sources change with reloads): its name goes to name[0..size). */
static void node_filter(const struct tree_node *n, const struct snapshot *s, const char *path,
			struct pick_filter *f, char *name, size_t size)
{
	const char *start, *slash;
	size_t len;

	if (!path || strncmp(path, "/sources/", 9) != 0) {
		pick_filter_of_view(f, s, n->arg);
		return;
	}
	start = path + 9;
	slash = strchr(start, '/');
	len = slash ? (size_t)(slash - start) : strlen(start);
	memset(f, 0, sizeof(*f));
	if (len >= size) {
		f->none = true;
		return;
	}
	memcpy(name, start, len);
	name[len] = '\0';
	f->nsources = 1;
	f->sources[0] = name;
}

/* /random, /next, session/KEY: the proxy this open shows, or nothing when
 * the folder has none. 0, -ENOENT (KEY not a session name), -ENOMEM. */
static int pick_content(const struct tree_node *n, const struct snapshot *s, const char *path,
			struct sbuf *buf)
{
	char name[256];
	struct pick_filter f;
	uint32_t i, got;
	const char *key;
	int err;

	node_filter(n, s, path, &f, name, sizeof(name));
	if (n->kind == TREE_SESSION) {
		key = path ? strrchr(path, '/') : NULL;
		if (!key)
			return -ENOENT;
		key++;
		err = session_pick(s, &f, key, strlen(key), &i);
		if (err == -EINVAL)
			return -ENOENT;
		if (err == -ENOENT)
			return 0;
		if (err)
			return err;
		got = 1;
	} else if (n->kind == TREE_RANDOM) {
		got = pick_random(s, &f, 1, &i);
	} else {
		got = pick_next(s, &f, 1, &i);
	}
	if (got)
		render_live_txt_of(s, &i, 1, buf);
	return 0;
}

int tree_content(const struct tree_node *n, struct snapshot *s, const char *path, struct sbuf *buf,
		 const struct sbuf **content)
{

	if (n->kind == TREE_CACHED) {
		*content = snap_cached(s, n->slot, n->render, n->arg);
		return *content ? 0 : -ENOMEM;
	}
	if (n->kind == TREE_LOOKUP) {
		if (!render_lookup(s, path + strlen("/lookup/"), buf) && !sbuf_failed(buf))
			return -ENOENT;
	} else if (n->kind == TREE_RENDERED) {
		n->render(s, n->arg, buf);
	} else {
		int err = pick_content(n, s, path, buf);

		if (err)
			return err;
	}
	*content = buf;
	return sbuf_failed(buf) ? -ENOMEM : 0;
}

size_t tree_size(const struct tree_node *n, struct snapshot *s)
{
	const struct sbuf *c;
	struct sbuf tmp;
	size_t size = 0;

	if (n->kind == TREE_CACHED) {
		c = snap_cached(s, n->slot, n->render, n->arg);
		size = c ? c->len : 0;
	} else if (n->kind == TREE_RENDERED || n->kind == TREE_LOOKUP) {
		sbuf_init(&tmp);
		if (n->kind == TREE_LOOKUP)
			render_lookup(s, n->path + strlen("/lookup/"), &tmp);
		else
			n->render(s, n->arg, &tmp);
		size = tmp.len;
		sbuf_free(&tmp);
	}
	return size;
}
