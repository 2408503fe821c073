/* nullfs: the least a FUSE filesystem can do, as the benchmark's yardstick
 * for proxyfs's read path.
 *
 * It serves one read-only file, /random, whose 22 bytes look like the line
 * proxyfs would give, opened with direct_io as proxyfs opens its files, on
 * libfuse3's default multithreaded loop. It does nothing else: no snapshot,
 * no rendering, no other thread. Whatever proxyfs's readers cost beyond
 * nullfs's is proxyfs's own doing.
 *
 *   nullfs [-f] [FUSE options] MOUNTPOINT
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include <fuse.h>

static const char nullfs_path[] = "/random";
/* Constant: read by every FUSE thread, written by none. */
static const char nullfs_line[] = "http://127.0.0.1:3128\n";

static int nullfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	memset(st, 0, sizeof(*st));
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	}
	if (strcmp(path, nullfs_path) != 0)
		return -ENOENT;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = sizeof(nullfs_line) - 1;
	return 0;
}

static int nullfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
			  struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	if (strcmp(path, "/") != 0)
		return -ENOENT;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, nullfs_path + 1, NULL, 0, 0);
	return 0;
}

static int nullfs_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, nullfs_path) != 0)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EACCES;
	fi->direct_io = 1;
	return 0;
}

static int nullfs_read(const char *path, char *buf, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	size_t len = sizeof(nullfs_line) - 1;

	if (off < 0 || (size_t)off >= len)
		return 0;
	if (size > len - (size_t)off)
		size = len - (size_t)off;
	memcpy(buf, nullfs_line + off, size);
	return (int)size;
}

static const struct fuse_operations nullfs_ops = {
	.getattr = nullfs_getattr,
	.readdir = nullfs_readdir,
	.open = nullfs_open,
	.read = nullfs_read,
};

int main(int argc, char *argv[])
{
	return fuse_main(argc, argv, &nullfs_ops, NULL);
}
