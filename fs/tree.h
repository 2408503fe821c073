/* tree: the path table, the one map of the tree every front serves.
 *
 * Front-agnostic: it names each path of DESIGN.md §1, says what kind of
 * file it is and renders its content from a snapshot; it knows nothing of
 * FUSE (fs.c is one front) nor of who may read or write. Safe from any
 * thread.
 */
#ifndef PROXYFS_TREE_H
#define PROXYFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "render.h"
#include "sbuf.h"
#include "snapshot.h"

enum tree_kind {
	TREE_DIR,
	TREE_CACHED,   /* rendered once per snapshot, shared by all readers */
	TREE_RENDERED, /* rendered per open */
	TREE_RANDOM,   /* one proxy, picked at random per open */
	TREE_NEXT,     /* one proxy, the next in turn per open */
	TREE_LOOKUP,   /* /lookup/NAME: the records NAME names, rendered per open */
	TREE_SESSION,  /* FOLDER/session/KEY: KEY's sticky proxy (session.h) per open */
	TREE_RELOAD,   /* control files from here on */
	TREE_ADD,
	TREE_REMOVE,
};

/* One path of the tree. path points to the table or, for a made-up node,
 * to the caller's path string. */
struct tree_node {
	const char *path;
	enum tree_kind kind;
	snap_render_fn render; /* TREE_CACHED, TREE_RENDERED */
	int arg;	       /* folder: enum snap_view or RENDER_ALL (random, next, session) */
	int slot;	       /* TREE_CACHED: the snapshot's cache slot */
	mode_t mode;
};

/* Fills *out with the node at path; false if there is none. */
bool tree_lookup(const char *path, struct tree_node *out);

/* A control file (written, not read)? */
bool tree_is_control(const struct tree_node *n);

/* Called with each name in a directory; nonzero stops the listing. */
typedef int (*tree_fill_fn)(void *arg, const char *name);

/* Calls fill with the name of every entry of dir (a TREE_DIR), "." and
 * ".." left out. 0, or -ENOMEM when fill stopped it. */
int tree_list(const struct tree_node *dir, tree_fill_fn fill, void *arg);

/* The content of reader node n over snapshot s, path the request's:
 * *content is a rendering s caches for all readers, or buf, filled here.
 * /random, /next and session/KEY pick their proxy now (pick.h, session.h:
 * the turns and sessions every front shares); a folder that matches
 * nothing gives 0 bytes. 0, -ENOENT (a lookup name s does not have, a
 * session key that is not a session name) or -ENOMEM. */
int tree_content(const struct tree_node *n, struct snapshot *s, const char *path, struct sbuf *buf,
		 const struct sbuf **content);

/* The length of n's content over s, where cheap to know; 0 for /random,
 * /next and session/KEY (picked at open; a front reads them whole). */
size_t tree_size(const struct tree_node *n, struct snapshot *s);

#endif
