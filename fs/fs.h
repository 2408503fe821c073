/* fs: the FUSE front (libfuse3 high-level API).
 *
 * Serves the tree of DESIGN.md §1 from the published snapshot: one path
 * table drives getattr, readdir, open, read and the control writes. A file's
 * content is rendered at open and kept with the open file, so a reader sees
 * one snapshot from the first byte to EOF. Knows nothing about how the pool
 * is kept; control writes go through the struct fs_control calls that
 * the caller hands in, so that fs/ needs no checker header.
 *
 * Use: fuse_new(&args, fs_operations(), sizeof(struct fuse_operations),
 * &control), with what control acts on started and snap_system_init()
 * done. The control pointer comes back in every op through
 * fuse_get_context()->private_data.
 * The user running the daemon at mount time owns the tree and alone (with
 * root) may write the control files.
 *
 * fs/ holds the tree (tree.h: the path table, for any front), the
 * renderers (render.h) and this FUSE front. Uses src/, never checker/.
 */
#ifndef PROXYFS_FS_H
#define PROXYFS_FS_H

#include <stdbool.h>
#include <stddef.h>

#include <fuse.h>

#include "control.h"
#include "proxy.h"

/* Who may read the reader files (every file but the directories and
 * control/): they get mode (read bits) and, when has_group, group gid
 * instead of the mounting user's. Call before fuse_new(); mount with
 * default_permissions so the kernel enforces it for every user. */
void fs_set_access(bool has_group, unsigned int gid, unsigned int mode);

/* The filesystem's operations; a static table, valid for the whole run. */
const struct fuse_operations *fs_operations(void);

#endif
