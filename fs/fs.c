/* fs: the FUSE operations and the path table; see fs.h.
 *
 * Every path the tree has is one row of fs_nodes[]: its kind, its renderer
 * and folder, the snapshot cache slot it shares, its mode. The ops look the
 * path up in that table and act on the row; nothing else knows path names.
 *
 * Reading: open takes a snapshot reference and the content (a rendering the
 * snapshot caches for all readers, or one made for this open) into a handle
 * in fi->fh; read copies from it; release drops both. direct_io is set on
 * every file, so reads reach us whatever st_size said, and the page cache
 * never serves an older rendering. Nothing on this path logs.
 *
 * Writing: only the control files, by the mounting user or root. add and
 * remove check each write's whole lines at once (a bad one fails that
 * write and the close) and apply everything at close, so each open is all
 * or nothing.
 */
#include "fs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "proxy.h"
#include "render.h"
#include "snapshot.h"

/* Most bytes a control write may carry, with the partial line before it. */
#define FS_CONTROL_MAX (1024 * 1024)

enum fs_kind {
	FS_DIR,
	FS_CACHED,   /* rendered once per snapshot, shared by all readers */
	FS_RENDERED, /* rendered per open */
	FS_RANDOM,   /* one proxy, picked at random per open */
	FS_NEXT,     /* one proxy, the next in turn per open */
	FS_LOOKUP,   /* /lookup/NAME: the records NAME names, rendered per open */
	FS_RELOAD,   /* control files from here on */
	FS_ADD,
	FS_REMOVE,
};

struct fs_node {
	const char *path;
	enum fs_kind kind;
	snap_render_fn render; /* FS_CACHED, FS_RENDERED */
	int arg;	       /* folder: enum snap_view or RENDER_ALL */
	int slot;	       /* FS_CACHED: the snapshot's cache slot */
	mode_t mode;
};

/* Cache slots: the two top-level lists, then live.txt per folder, then
 * the files of every tracked proxy. */
enum {
	SLOT_LIVE_TXT,
	SLOT_LIVE_JSON,
	SLOT_FOLDER_LIVE_TXT,
	SLOT_ALL_JSON = SLOT_FOLDER_LIVE_TXT + SNAP_VIEW_SOURCES,
	SLOT_DEAD_TXT,
	SLOT_REMOVED_TXT,
	SLOT_COUNT,
};

/* One row per line reads best here. */
/* clang-format off */
#define DIR_NODE(p) { .path = (p), .kind = FS_DIR, .mode = 0555 }
#define FOLDER_NODES(name, f)                                                           \
	DIR_NODE("/" name),                                                             \
	{ .path = "/" name "/random", .kind = FS_RANDOM, .arg = (f), .mode = 0444 },    \
	{ .path = "/" name "/next", .kind = FS_NEXT, .arg = (f), .mode = 0444 },        \
	{ .path = "/" name "/live.txt", .kind = FS_CACHED, .render = render_live_txt,   \
	  .arg = (f), .slot = SLOT_FOLDER_LIVE_TXT + (f), .mode = 0444 }

static const struct fs_node fs_nodes[] = {
	DIR_NODE("/"),
	{ .path = "/random", .kind = FS_RANDOM, .arg = RENDER_ALL, .mode = 0444 },
	{ .path = "/next", .kind = FS_NEXT, .arg = RENDER_ALL, .mode = 0444 },
	{ .path = "/live.txt", .kind = FS_CACHED, .render = render_live_txt, .arg = RENDER_ALL,
	  .slot = SLOT_LIVE_TXT, .mode = 0444 },
	{ .path = "/live.json", .kind = FS_CACHED, .render = render_live_json, .arg = RENDER_ALL,
	  .slot = SLOT_LIVE_JSON, .mode = 0444 },
	{ .path = "/stat.json", .kind = FS_RENDERED, .render = render_stat_json, .mode = 0444 },
	{ .path = "/metrics", .kind = FS_RENDERED, .render = render_metrics, .mode = 0444 },
	{ .path = "/health", .kind = FS_RENDERED, .render = render_health, .mode = 0444 },
	{ .path = "/all.json", .kind = FS_CACHED, .render = render_all_json,
	  .slot = SLOT_ALL_JSON, .mode = 0444 },
	{ .path = "/dead.txt", .kind = FS_CACHED, .render = render_dead_txt,
	  .slot = SLOT_DEAD_TXT, .mode = 0444 },
	{ .path = "/removed.txt", .kind = FS_CACHED, .render = render_removed_txt,
	  .slot = SLOT_REMOVED_TXT, .mode = 0444 },
	DIR_NODE("/lookup"),
	FOLDER_NODES("http", PROXY_HTTP),
	FOLDER_NODES("https", PROXY_HTTPS),
	FOLDER_NODES("socks4", PROXY_SOCKS4),
	FOLDER_NODES("socks5", PROXY_SOCKS5),
	DIR_NODE("/anonymity"),
	FOLDER_NODES("anonymity/elite", SNAP_VIEW_ELITE),
	FOLDER_NODES("anonymity/anonymous", SNAP_VIEW_ANONYMOUS),
	FOLDER_NODES("anonymity/transparent", SNAP_VIEW_TRANSPARENT),
	DIR_NODE("/sources"),
	DIR_NODE("/prometheus"),
	{ .path = "/prometheus/proxyfs.prom", .kind = FS_RENDERED, .render = render_metrics,
	  .mode = 0444 },
	DIR_NODE("/control"),
	{ .path = "/control/reload", .kind = FS_RELOAD, .mode = 0200 },
	{ .path = "/control/add", .kind = FS_ADD, .mode = 0200 },
	{ .path = "/control/remove", .kind = FS_REMOVE, .mode = 0200 },
};
/* clang-format on */

_Static_assert(SLOT_COUNT <= SNAP_CACHE_SLOTS,
	       "the snapshot has a cache slot for every cached file");

#define FS_NNODES (sizeof(fs_nodes) / sizeof(fs_nodes[0]))

/* The tree's owner, the user who mounted it. Written once by fs_init before
 * libfuse serves any request, read-only afterwards. */
static uid_t owner_uid;
static gid_t owner_gid;

/* Reader files' mode and group (fs_set_access). Written once before
 * libfuse serves any request, read-only afterwards. */
static mode_t reader_mode = 0444;
static bool reader_has_group;
static gid_t reader_gid;

/* /next: how many opens each folder has served (index folder + 1, 0 for the
 * top level). Atomic: FUSE threads open concurrently. */
static atomic_uint_fast64_t next_counter[SNAP_VIEW_SOURCES + 2]; /* the last: all sources */

/* What one open file holds (fi->fh). */
struct fs_handle {
	const struct fs_node *node;
	struct snapshot *snap;	    /* readers: the snapshot shown, referenced */
	const struct sbuf *content; /* readers: &buf or a snapshot cache slot */
	struct sbuf buf;	    /* readers: own rendering; add/remove: text until close */
	pthread_mutex_t lock;	    /* add/remove: guards buf between write and flush */
	struct fs_node node_copy;   /* what node points to (sources' nodes are made up) */
	size_t checked;             /* add/remove: bytes of buf already checked (whole lines) */
	bool failed;                /* add/remove: a write of this open failed: the close fails */
	struct fs_handle *prev, *next; /* in open_handles */
};

/* Every handle not yet released, so the ones the kernel never releases
 * (files still open at unmount) are freed at destroy. open_lock guards
 * the list. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fs_handle *open_handles;

static void handle_track(struct fs_handle *h)
{
	pthread_mutex_lock(&open_lock);
	h->prev = NULL;
	h->next = open_handles;
	if (open_handles)
		open_handles->prev = h;
	open_handles = h;
	pthread_mutex_unlock(&open_lock);
}

static void handle_untrack(struct fs_handle *h)
{
	pthread_mutex_lock(&open_lock);
	if (h->prev)
		h->prev->next = h->next;
	else if (open_handles == h)
		open_handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
	pthread_mutex_unlock(&open_lock);
}

/* /sources/NAME/...: one folder per source of the current snapshot, made
 * up at lookup since the sources change with the config. */
static const char *const source_files[] = { "live.txt", "random", "next" };

/* The view of source name in s, or -1. */
static int source_view(const struct snapshot *s, const char *name, size_t len)
{
	for (uint32_t i = 0; i < s->nsources; i++)
		if (strlen(s->sources[i].name) == len && strncmp(s->sources[i].name, name, len) == 0)
			return (int)(SNAP_VIEW_SOURCES + i);
	return -1;
}

static bool source_node(const char *path, struct fs_node *out)
{
	const char *name = path + strlen("/sources/"), *slash = strchr(name, '/');
	size_t len = slash ? (size_t)(slash - name) : strlen(name);
	struct snapshot *s = snap_current();
	int view = source_view(s, name, len);

	snap_unref(s);
	if (view < 0)
		return false;
	memset(out, 0, sizeof(*out));
	out->path = path;
	out->arg = view;
	if (!slash) {
		out->kind = FS_DIR;
		out->mode = 0555;
		return true;
	}
	out->mode = 0444;
	if (strcmp(slash + 1, "live.txt") == 0) {
		out->kind = FS_RENDERED;
		out->render = render_live_txt;
	} else if (strcmp(slash + 1, "random") == 0) {
		out->kind = FS_RANDOM;
	} else if (strcmp(slash + 1, "next") == 0) {
		out->kind = FS_NEXT;
	} else {
		return false;
	}
	return true;
}

/* /lookup/NAME: a file while the current snapshot has a proxy NAME names
 * (render_lookup says how NAME is read); `ls lookup/` is empty. */
static bool lookup_node(const char *path, struct fs_node *out)
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
	out->kind = FS_LOOKUP;
	out->mode = 0444;
	return true;
}

/* Fills *out with the node at path; false if there is none. */
static bool node_lookup(const char *path, struct fs_node *out)
{
	for (size_t i = 0; i < FS_NNODES; i++) {
		if (strcmp(fs_nodes[i].path, path) == 0) {
			*out = fs_nodes[i];
			return true;
		}
	}
	if (strncmp(path, "/sources/", 9) == 0 && path[9])
		return source_node(path, out);
	if (strncmp(path, "/lookup/", 8) == 0 && path[8])
		return lookup_node(path, out);
	return false;
}

static bool node_is_control(const struct fs_node *n)
{
	return n->kind >= FS_RELOAD;
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

static struct fs_handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

static const struct fs_control *control_of(void)
{
	return fuse_get_context()->private_data;
}

/* May the caller of this request write the control files? */
static bool caller_may_control(void)
{
	uid_t uid = fuse_get_context()->uid;

	return uid == 0 || uid == owner_uid;
}

/* --- rendering --- */

/* Which proxy /random or /next shows on this open. */
static uint32_t pick_index(const struct fs_node *n, const struct snapshot *s)
{
	uint32_t count = render_count(s, n->arg);

	if (count == 0)
		return 0;
	if (n->kind == FS_RANDOM)
		return arc4random_uniform(count);
	int c = n->arg < SNAP_VIEW_SOURCES ? n->arg + 1 : SNAP_VIEW_SOURCES + 1;

	return (uint32_t)(atomic_fetch_add(&next_counter[c], 1) % count);
}

/* Points h->content at the node's content over h->snap; path is the
 * request's. 0, -ENOENT (a lookup name this snapshot does not have) or
 * -ENOMEM. */
static int handle_render(struct fs_handle *h, const char *path)
{
	const struct fs_node *n = h->node;

	if (n->kind == FS_CACHED) {
		h->content = snap_cached(h->snap, n->slot, n->render, n->arg);
		return h->content ? 0 : -ENOMEM;
	}
	if (n->kind == FS_LOOKUP) {
		if (!render_lookup(h->snap, path + strlen("/lookup/"), &h->buf) &&
		    !sbuf_failed(&h->buf))
			return -ENOENT;
	} else if (n->kind == FS_RENDERED) {
		n->render(h->snap, n->arg, &h->buf);
	} else {
		render_pick(h->snap, n->arg, pick_index(n, h->snap), &h->buf);
	}
	h->content = &h->buf;
	return sbuf_failed(&h->buf) ? -ENOMEM : 0;
}

/* The length of the node's content over s, where cheap to know; 0 for
 * /random and /next (picked at open; direct_io reads them whole). */
static off_t node_size(const struct fs_node *n, struct snapshot *s)
{
	const struct sbuf *c;
	struct sbuf tmp;
	off_t size = 0;

	if (n->kind == FS_CACHED) {
		c = snap_cached(s, n->slot, n->render, n->arg);
		size = c ? (off_t)c->len : 0;
	} else if (n->kind == FS_RENDERED || n->kind == FS_LOOKUP) {
		sbuf_init(&tmp);
		if (n->kind == FS_LOOKUP)
			render_lookup(s, n->path + strlen("/lookup/"), &tmp);
		else
			n->render(s, n->arg, &tmp);
		size = (off_t)tmp.len;
		sbuf_free(&tmp);
	}
	return size;
}

/* --- control writes --- */

/* Parses len bytes of complete lines and hands the proxies to the engine
 * (add or remove). Nothing is applied if any line is bad: -EINVAL. */
/* Parses the lines of text; with apply, hands them to the engine. Any bad
 * line: -EINVAL and nothing is applied. */
static int control_parse(enum fs_kind kind, const char *text, size_t len, bool apply)
{
	struct proxy_addr *list = NULL, *grown;
	size_t n = 0, cap = 0;
	const char *p = text, *end = text + len, *eol;
	int err = 0;

	while (p < end && !err) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(list, cap * sizeof(*list));
			if (!grown) {
				err = -ENOMEM;
				break;
			}
			list = grown;
		}
		switch (proxy_parse_line(p, (size_t)(eol - p), PROXY_HTTP, &list[n])) {
		case PROXY_LINE_OK:
			n++;
			break;
		case PROXY_LINE_SKIP:
			break;
		default:
			err = -EINVAL;
		}
		p = eol + 1;
	}
	if (apply && !err && n) {
		const struct fs_control *ctl = control_of();

		err = kind == FS_ADD ? ctl->add(ctl->arg, list, n) : ctl->remove(ctl->arg, list, n);
	}
	free(list);
	return err;
}

/* A write to add or remove: its complete lines are checked at once (a bad
 * one fails this write with EINVAL), and everything is kept until the file
 * is closed, then applied in one go. One open is one unit: once any write
 * of it failed (a bad line, too much text), every later write and the
 * close fail too and nothing of it is applied, so `printf 'a\nbad\n' >
 * add`, which bash writes a line at a time, changes nothing. Caller holds
 * h->lock. */
static int control_feed(struct fs_handle *h, const char *data, size_t size)
{
	struct sbuf *b = &h->buf;
	size_t before = b->len;
	const char *nl;
	int err;

	if (h->failed)
		return -EINVAL;
	if (size > FS_CONTROL_MAX || before + size > FS_CONTROL_MAX) {
		h->failed = true;
		return -EINVAL;
	}
	sbuf_add(b, data, size);
	if (sbuf_failed(b)) {
		h->failed = true;
		return -ENOMEM;
	}
	nl = memrchr(b->data + h->checked, '\n', b->len - h->checked);
	if (!nl)
		return 0;
	err = control_parse(h->node->kind, b->data + h->checked,
			    (size_t)(nl - b->data) + 1 - h->checked, false);
	if (err) {
		b->len = before;
		b->data[b->len] = '\0';
		h->failed = true;
		return err;
	}
	h->checked = (size_t)(nl - b->data) + 1;
	return 0;
}

/* At close: the last line without a newline is checked too, then all of
 * it is applied. -EINVAL (nothing applied) after any failed write of this
 * open or for a bad last line. Caller holds h->lock. */
static int control_commit(struct fs_handle *h)
{
	int err = h->failed ? -EINVAL : 0;

	if (!err && h->buf.len)
		err = control_parse(h->node->kind, h->buf.data, h->buf.len, true);
	sbuf_reset(&h->buf);
	h->checked = 0;
	h->failed = false;
	return err;
}

/* Asked while a control write waits on the engine: a writer interrupted
 * by a signal (Ctrl-C) stops waiting at once, and so does every writer when
 * the daemon is told to stop (SIGTERM, an unmount), which otherwise could
 * not end while a request is still being answered. */
static int control_wait_stop(void *arg)
{
	struct fuse_context *ctx = fuse_get_context();

	(void)arg;
	if (fuse_interrupted())
		return -EINTR;
	if (ctx && ctx->fuse && fuse_session_exited(fuse_get_session(ctx->fuse)))
		return -ESHUTDOWN;
	return 0;
}

/* White space around the word ignored: "sync" waits for the rescan,
 * "reload" re-reads the config file first (EINVAL if it does not parse),
 * anything else queues a rescan. */
static int control_reload(const char *buf, size_t size)
{
	const struct fs_control *ctl = control_of();
	const char *end = buf + size;
	size_t n;

	while (buf < end && isspace((unsigned char)*buf))
		buf++;
	while (end > buf && isspace((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - buf);
	if (n == 6 && memcmp(buf, "reload", 6) == 0)
		return ctl->reload(ctl->arg, control_wait_stop, NULL);
	return ctl->rescan(ctl->arg, n == 4 && memcmp(buf, "sync", 4) == 0, control_wait_stop,
			   NULL);
}

/* --- the operations --- */

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Sizes and times are the current snapshot's at every stat. A name
	 * found stays valid in the kernel for a second, so a reader's open is
	 * not a LOOKUP too (most names never change; a source removed by a
	 * reload is gone from readdir at once, and its files answer ENOENT);
	 * a name not found is asked again every time, so a new source shows
	 * at once. */
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 1;
	cfg->negative_timeout = 0;
	cfg->direct_io = 1;
	cfg->kernel_cache = 0;
	cfg->auto_cache = 0;
	owner_uid = getuid();
	owner_gid = getgid();
	return fuse_get_context()->private_data;
}

void fs_set_access(bool has_group, unsigned int gid, unsigned int mode)
{
	reader_has_group = has_group;
	reader_gid = (gid_t)gid;
	reader_mode = (mode_t)(mode & 0444);
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct fs_node node, *n = &node;
	struct fs_handle *h = fi ? handle_of(fi) : NULL;
	struct snapshot *s;

	if (!node_lookup(path, n))
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->st_uid = owner_uid;
	st->st_gid = owner_gid;
	if (n->kind == FS_DIR) {
		st->st_mode = S_IFDIR | n->mode;
		st->st_nlink = 2;
	} else if (node_is_control(n)) {
		st->st_mode = S_IFREG | n->mode;
		st->st_nlink = 1;
	} else {
		st->st_mode = S_IFREG | reader_mode;
		st->st_nlink = 1;
		if (reader_has_group)
			st->st_gid = reader_gid;
	}
	/* An open reader's own snapshot and content, else the current one. */
	s = h && h->snap ? snap_ref(h->snap) : snap_current();
	st->st_size = h && h->content ? (off_t)h->content->len : node_size(n, s);
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim = s->stats.built;
	st->st_ctim = s->stats.built;
	st->st_atim = s->stats.built;
	snap_unref(s);
	return 0;
}

static int readdir_sources(void *buf, fuse_fill_dir_t filler)
{
	struct snapshot *s = snap_current();
	int rc = 0;

	for (uint32_t i = 0; i < s->nsources && rc == 0; i++)
		if (filler(buf, s->sources[i].name, NULL, 0, 0))
			rc = -ENOMEM;
	snap_unref(s);
	return rc;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fs_node node, *dir = &node;
	const char *name;

	if (!node_lookup(path, dir))
		return -ENOENT;
	if (dir->kind != FS_DIR)
		return -ENOTDIR;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	for (size_t i = 0; i < FS_NNODES; i++) {
		name = child_name(dir->path, fs_nodes[i].path);
		if (name && filler(buf, name, NULL, 0, 0))
			return -ENOMEM;
	}
	if (strcmp(path, "/sources") == 0)
		return readdir_sources(buf, filler);
	if (strncmp(path, "/sources/", 9) == 0) {
		for (size_t i = 0; i < sizeof(source_files) / sizeof(source_files[0]); i++)
			if (filler(buf, source_files[i], NULL, 0, 0))
				return -ENOMEM;
	}
	return 0;
}

/* Readers open read-only; control files write-only, by their owner or root. */
static int open_allowed(const struct fs_node *n, int flags)
{
	if (n->kind == FS_DIR)
		return -EISDIR;
	if (!node_is_control(n))
		return (flags & O_ACCMODE) == O_RDONLY ? 0 : -EACCES;
	if ((flags & O_ACCMODE) != O_WRONLY || !caller_may_control())
		return -EACCES;
	return 0;
}

static void handle_free(struct fs_handle *h)
{
	snap_unref(h->snap);
	sbuf_free(&h->buf);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	struct fs_node node, *n = &node;
	struct fs_handle *h;
	int err;

	if (!node_lookup(path, n))
		return -ENOENT;
	err = open_allowed(n, fi->flags);
	if (err)
		return err;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->node_copy = node;
	h->node_copy.path = NULL; /* path belongs to the request, not the handle */
	h->node = &h->node_copy;
	sbuf_init(&h->buf);
	pthread_mutex_init(&h->lock, NULL);
	if (!node_is_control(n)) {
		h->snap = snap_current();
		err = handle_render(h, path);
		if (err)
			goto out_free_handle;
	}
	handle_track(h);
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* Only a control file has anything to do at close: a reader's close
	 * skips the FLUSH round trip. */
	fi->noflush = !node_is_control(n);
	return 0;
out_free_handle:
	handle_free(h);
	return err;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	const struct sbuf *c = handle_of(fi)->content;
	size_t n;

	if (!c)
		return -EBADF;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= c->len)
		return 0;
	n = c->len - (size_t)off;
	if (n > size)
		n = size;
	memcpy(buf, c->data + off, n);
	return (int)n;
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);
	int err;

	if (!node_is_control(h->node))
		return -EBADF;
	if (size > INT32_MAX)
		return -EINVAL;
	if (h->node->kind == FS_RELOAD) {
		err = control_reload(buf, size);
	} else {
		pthread_mutex_lock(&h->lock);
		err = control_feed(h, buf, size);
		pthread_mutex_unlock(&h->lock);
	}
	return err ? err : (int)size;
}

/* Applies what the writes left; called at each close (flush). */
static int control_finish(struct fs_handle *h)
{
	int err;

	if (h->node->kind != FS_ADD && h->node->kind != FS_REMOVE)
		return 0;
	pthread_mutex_lock(&h->lock);
	err = control_commit(h);
	pthread_mutex_unlock(&h->lock);
	return err;
}

static int fs_flush(const char *path, struct fuse_file_info *fi)
{
	return control_finish(handle_of(fi));
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	struct fs_handle *h = handle_of(fi);

	control_finish(h);
	handle_untrack(h);
	handle_free(h);
	return 0;
}

/* After unmount: drop what readers left open (no release comes for it). */
static void fs_destroy(void *private_data)
{
	struct fs_handle *h;

	pthread_mutex_lock(&open_lock);
	h = open_handles;
	open_handles = NULL;
	pthread_mutex_unlock(&open_lock);
	while (h) {
		struct fs_handle *next = h->next;

		handle_free(h);
		h = next;
	}
}

/* Shells open with O_TRUNC before they write: a no-op on control files. */
static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct fs_node node, *n = &node;

	if (!node_lookup(path, n))
		return -ENOENT;
	if (n->kind == FS_DIR)
		return -EISDIR;
	if (!node_is_control(n) || !caller_may_control())
		return -EACCES;
	return 0;
}

/* clang-format off */
static const struct fuse_operations fs_ops = {
	.init = fs_init,
	.destroy = fs_destroy,
	.getattr = fs_getattr,
	.readdir = fs_readdir,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.truncate = fs_truncate,
};
/* clang-format on */

const struct fuse_operations *fs_operations(void)
{
	return &fs_ops;
}
