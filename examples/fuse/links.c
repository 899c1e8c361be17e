/*
 * Names of hardlinked files.
 *
 * An object's name hint (its parent and name in the map) is one of its
 * names: ".." of directories, fhmap_path() and fhmapctl follow it. A file
 * with several names keeps them, once it gets a second one through the
 * union, in the xattr trusted.fhmap.names of its upper file, so that when
 * the hinted name goes, the hint moves to a name that is still there
 * (checked on the upper layer before it is used) whatever the kernel
 * forgot or the daemon restarted meanwhile. Each entry is the directory
 * object (8 bytes, little-endian), the name's length (1 byte) and the
 * name; at most NAMES_MAX bytes are kept, the oldest names dropped first.
 * Names that go stale are harmless: every candidate is checked.
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define NAMES_MAX 2048

struct names {
	unsigned char buf[NAMES_MAX];
	size_t len;
};

/* Loads the list of the live file of @n; 0 with none. */
static int names_load(struct names *nm, char *proc, size_t size, int *fd, int *owned, struct ufs *u,
                      struct ufs_node *n)
{
	int r = ufs_node_fd(fd, owned, u, n);

	nm->len = 0;
	if (r == 0)
		r = ufs_proc_path(proc, size, *fd);
	if (r < 0)
		return r;
	ssize_t len = getxattr(proc, UFS_XATTR_NAMES, nm->buf, sizeof(nm->buf));
	if (len < 0)
		return errno == ENODATA ? 0 : -errno;
	nm->len = (size_t)len;
	return 0;
}

static void names_done(int fd, int owned)
{
	if (owned)
		close(fd);
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Offset of the entry @parent/@name, or -1; malformed lists end early. */
static long names_find(const struct names *nm, uint64_t parent, const char *name)
{
	size_t nl = strlen(name);

	for (size_t off = 0; off + 9 <= nm->len && off + 9 + nm->buf[off + 8] <= nm->len;
	     off += 9 + nm->buf[off + 8])
		if (get64(nm->buf + off) == parent && nm->buf[off + 8] == nl && !memcmp(nm->buf + off + 9, name, nl))
			return (long)off;
	return -1;
}

static void names_drop(struct names *nm, long off)
{
	size_t n = 9 + nm->buf[off + 8];

	memmove(nm->buf + off, nm->buf + off + n, nm->len - (size_t)off - n);
	nm->len -= n;
}

static void names_add(struct names *nm, uint64_t parent, const char *name)
{
	size_t nl = strlen(name);

	if (nl > 255 || names_find(nm, parent, name) >= 0)
		return;
	while (nm->len && nm->len + 9 + nl > sizeof(nm->buf))
		names_drop(nm, 0);
	for (int i = 0; i < 8; i++)
		nm->buf[nm->len + (size_t)i] = (unsigned char)(parent >> (8 * i));
	nm->buf[nm->len + 8] = (unsigned char)nl;
	memcpy(nm->buf + nm->len + 9, name, nl);
	nm->len += 9 + nl;
}

static void names_store(const struct names *nm, const char *proc)
{
	/* only a hint is at stake if this fails */
	if (nm->len)
		setxattr(proc, UFS_XATTR_NAMES, nm->buf, nm->len, 0);
	else
		removexattr(proc, UFS_XATTR_NAMES);
}

void ufs_links_add(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name)
{
	struct names nm;
	char proc[64];
	int fd, owned;

	if (names_load(&nm, proc, sizeof(proc), &fd, &owned, u, n) < 0)
		return;
	if (!nm.len)
		names_add(&nm, n->obj.parent, n->obj.name);
	names_add(&nm, parent, name);
	names_store(&nm, proc);
	names_done(fd, owned);
}

void ufs_links_move(struct ufs *u, struct ufs_node *n, uint64_t oldp, const char *oldname, uint64_t newp,
                    const char *newname)
{
	struct names nm;
	char proc[64];
	int fd, owned;

	if (names_load(&nm, proc, sizeof(proc), &fd, &owned, u, n) < 0)
		return;
	long off = names_find(&nm, oldp, oldname);
	if (off >= 0) {
		names_drop(&nm, off);
		names_add(&nm, newp, newname);
		names_store(&nm, proc);
	}
	names_done(fd, owned);
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* The lower entry @name of the directory object @dir is the origin of
 * @obj (nothing above it on the upper layer: the name shows it). */
static int lower_names(struct ufs *u, const fhmap_object *dir, const fhmap_object *obj, const char *name)
{
	struct stat a, b;
	int dfd, fd, same = 0;

	if (!dir->has_origin || !obj->has_origin ||
	    fhmap_open_real(&dfd, u->map, &dir->origin, O_PATH | O_DIRECTORY))
		return 0;
	if (fstatat(dfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
	    fhmap_open_real(&fd, u->map, &obj->origin, O_PATH) == 0) {
		same = fstat(fd, &b) == 0 && same_file(&a, &b);
		close(fd);
	}
	close(dfd);
	return same;
}

/* Does @parent/@name show @obj, whose upper file is @fd: an upper link of
 * it, or a lower name of its origin that nothing on the upper layer hides
 * (a lower hardlink copied up into the index)? The directory is not
 * locked: the answer is only good for a hint. */
static int still_named(struct ufs *u, const fhmap_object *obj, int fd, uint64_t parent, const char *name)
{
	fhmap_object dir;
	struct stat a, b;
	int dfd, found, opaque;

	if (fhmap_get(&dir, u->map, parent) < 0 || dir.state == FHMAP_STATE_UNLINKED)
		return 0;
	if (!dir.has_upper)
		return lower_names(u, &dir, obj, name);
	if (fhmap_open_real(&dfd, u->map, &dir.upper, O_RDONLY | O_DIRECTORY) < 0)
		return 0;
	found = fstatat(dfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0;
	opaque = !found && errno == ENOENT ? ufs_fd_opaque(dfd) : 1;
	close(dfd);
	if (found)
		return fstat(fd, &b) == 0 && same_file(&a, &b);
	return !opaque && lower_names(u, &dir, obj, name);
}

void ufs_links_gone(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name)
{
	int hinted = n->obj.parent == parent && !strcmp(n->obj.name, name), fd, owned;
	struct names nm;
	char proc[64];

	if (names_load(&nm, proc, sizeof(proc), &fd, &owned, u, n) < 0)
		return;
	long off = names_find(&nm, parent, name);
	if (off >= 0)
		names_drop(&nm, off);
	while (hinted && nm.len >= 9) {
		char other[256];
		uint64_t op = get64(nm.buf);
		size_t ol = nm.buf[8];

		memcpy(other, nm.buf + 9, ol);
		other[ol] = '\0';
		if (still_named(u, &n->obj, fd, op, other) && fhmap_rename(u->map, n->ino, op, other) == 0) {
			fhmap_object obj = n->obj;

			obj.parent = op;
			snprintf(obj.name, sizeof(obj.name), "%s", other);
			ufs_node_set_obj(n, &obj);
			ufs_map_changed(u, 1);
			break;
		}
		names_drop(&nm, 0); /* gone meanwhile */
	}
	if (off >= 0 || hinted)
		names_store(&nm, proc);
	names_done(fd, owned);
}

void ufs_links_seen(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name)
{
	fhmap_object obj;
	int fd, owned;

	ufs_node_obj(&obj, n);
	if (obj.type == S_IFDIR || obj.state != FHMAP_STATE_UPPER || !obj.has_origin ||
	    (obj.parent == parent && !strcmp(obj.name, name)))
		return; /* the common case: no lock taken */
	ufs_node_wrlock(n);
	obj = n->obj;
	if (obj.state == FHMAP_STATE_UPPER && ufs_node_fd(&fd, &owned, u, n) == 0) {
		if (!still_named(u, &obj, fd, obj.parent, obj.name) &&
		    fhmap_rename(u->map, n->ino, parent, name) == 0) {
			obj.parent = parent;
			snprintf(obj.name, sizeof(obj.name), "%s", name);
			ufs_node_set_obj(n, &obj);
			ufs_map_changed(u, 1);
		}
		names_done(fd, owned);
	}
	ufs_node_unlock(n);
}
