/* fs: the FUSE operations, one front of the tree; see fs.h.
 *
 * The ops look each path up in the path table (tree.h) and act on its row:
 * this file adds only what FUSE needs (owner and modes, open handles,
 * control writes).
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
 * or nothing; what a unit means is control.c's, shared with every front.
 */
#include "fs.h"

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
#include "tree.h"

/* The tree's owner, the user who mounted it. Written once by fs_init before
 * libfuse serves any request, read-only afterwards. */
static uid_t owner_uid;
static gid_t owner_gid;

/* Reader files' mode and group (fs_set_access). Written once before
 * libfuse serves any request, read-only afterwards. */
static mode_t reader_mode = 0444;
static bool reader_has_group;
static gid_t reader_gid;

/* What one open file holds (fi->fh). */
struct fs_handle {
	const struct tree_node *node;
	struct snapshot *snap;	    /* readers: the snapshot shown, referenced */
	const struct sbuf *content; /* readers: &buf or a snapshot cache slot */
	struct sbuf buf;	    /* readers: own rendering; add/remove: text until close */
	pthread_mutex_t lock;	    /* add/remove: guards buf between write and flush */
	struct tree_node node_copy; /* what node points to (sources' nodes are made up) */
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

/* --- control writes --- */

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
	if (size > CONTROL_MAX || before + size > CONTROL_MAX) {
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
	err = control_check(b->data + h->checked, (size_t)(nl - b->data) + 1 - h->checked, NULL, 0);
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
	enum control_kind kind = h->node->kind == TREE_ADD ? CONTROL_ADD : CONTROL_REMOVE;
	int err = h->failed ? -EINVAL : 0;

	if (!err && h->buf.len)
		err = control_apply(control_of(), kind, h->buf.data, h->buf.len, control_wait_stop,
				    NULL, NULL, 0);
	sbuf_reset(&h->buf);
	h->checked = 0;
	h->failed = false;
	return err;
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
	struct tree_node node, *n = &node;
	struct fs_handle *h = fi ? handle_of(fi) : NULL;
	struct snapshot *s;

	if (!tree_lookup(path, n))
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->st_uid = owner_uid;
	st->st_gid = owner_gid;
	if (n->kind == TREE_DIR) {
		st->st_mode = S_IFDIR | n->mode;
		st->st_nlink = 2;
	} else if (tree_is_control(n)) {
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
	st->st_size = h && h->content ? (off_t)h->content->len : (off_t)tree_size(n, s);
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim = s->stats.built;
	st->st_ctim = s->stats.built;
	st->st_atim = s->stats.built;
	snap_unref(s);
	return 0;
}

/* What readdir hands tree_list for its fill. */
struct readdir_ctx {
	fuse_fill_dir_t filler;
	void *buf;
};

static int readdir_fill(void *arg, const char *name)
{
	struct readdir_ctx *rc = arg;

	return rc->filler(rc->buf, name, NULL, 0, 0);
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct tree_node node, *dir = &node;
	struct readdir_ctx rc = { .filler = filler, .buf = buf };

	if (!tree_lookup(path, dir))
		return -ENOENT;
	if (dir->kind != TREE_DIR)
		return -ENOTDIR;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	return tree_list(dir, readdir_fill, &rc);
}

/* Readers open read-only; control files write-only, by their owner or root. */
static int open_allowed(const struct tree_node *n, int flags)
{
	if (n->kind == TREE_DIR)
		return -EISDIR;
	if (!tree_is_control(n))
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
	struct tree_node node, *n = &node;
	struct fs_handle *h;
	int err;

	if (!tree_lookup(path, n))
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
	if (!tree_is_control(n)) {
		h->snap = snap_current();
		err = tree_content(h->node, h->snap, path, &h->buf, &h->content);
		if (err)
			goto out_free_handle;
	}
	handle_track(h);
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* Only a control file has anything to do at close: a reader's close
	 * skips the FLUSH round trip. */
	fi->noflush = !tree_is_control(n);
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

	if (!tree_is_control(h->node))
		return -EBADF;
	if (size > INT32_MAX)
		return -EINVAL;
	if (h->node->kind == TREE_RELOAD) {
		err = control_apply(control_of(), CONTROL_RELOAD, buf, size, control_wait_stop, NULL,
				    NULL, 0);
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

	if (h->node->kind != TREE_ADD && h->node->kind != TREE_REMOVE)
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
	struct tree_node node, *n = &node;

	if (!tree_lookup(path, n))
		return -ENOENT;
	if (n->kind == TREE_DIR)
		return -EISDIR;
	if (!tree_is_control(n) || !caller_may_control())
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
