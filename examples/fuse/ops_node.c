/*
 * Operations on one object: lookup (also the NFS handle decoding of "."
 * and ".."), forget, attributes, symlinks, xattrs, statfs.
 *
 * A lookup holds the directory's node lock shared: lookups and listings of
 * one directory run in parallel, namespace changes in it (exclusive) wait.
 * Operations on an object's own file hold its node shared and use the fd
 * the node keeps; those that change it copy it up first (no lock held).
 */
#define _GNU_SOURCE
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The node of @ino, read-locked, with the fd of its live file. */
struct live {
	struct ufs_node *n;
	int fd, owned;
	char proc[64];
};

static int live_begin(struct live *lv, struct ufs *u, uint64_t ino, int copyup)
{
	int r = ufs_node_hold(&lv->n, u, ino);

	lv->fd = -1;
	lv->owned = 0;
	if (r < 0)
		return r;
	if (copyup && (r = ufs_copyup(u, lv->n)) < 0 && r != -ESTALE)
		goto fail; /* -ESTALE: unlinked, still open: its kept fd */
	ufs_node_rdlock(lv->n);
	r = ufs_node_fd(&lv->fd, &lv->owned, u, lv->n);
	if (r == 0)
		r = ufs_proc_path(lv->proc, sizeof(lv->proc), lv->fd);
	if (r == 0)
		return 0;
	if (lv->owned)
		close(lv->fd);
	ufs_node_unlock(lv->n);
fail:
	ufs_node_put(u, lv->n);
	return r;
}

static void live_end(struct live *lv, struct ufs *u)
{
	if (lv->owned)
		close(lv->fd);
	ufs_node_unlock(lv->n);
	ufs_node_put(u, lv->n);
}

/* LOOKUP "." of a nodeid (the kernel decoding a file handle) and ".." */
static void reply_node(fuse_req_t req, struct ufs *u, uint64_t ino)
{
	struct ufs_node *n;
	struct stat st;
	uint32_t gen = 0;
	int r = ufs_node_hold(&n, u, ino);

	if (r < 0) {
		ufs_reply_err(req, r);
		return;
	}
	ufs_node_rdlock(n);
	r = n->obj.state == FHMAP_STATE_UNLINKED ? -ESTALE : ufs_node_stat(&st, u, n);
	gen = n->obj.gen;
	ufs_node_unlock(n);
	if (r < 0)
		ufs_reply_err(req, r);
	else
		ufs_reply_entry(req, u, n, gen, &st);
	ufs_node_put(u, n);
}

void ufs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ufs *u = ufs_of(req);
	struct ufs_dirref ref;
	struct ufs_entry e = { 0 };
	struct ufs_node *d;
	struct stat st;
	int r;

	if (!strcmp(name, ".")) {
		reply_node(req, u, parent);
		return;
	}
	r = ufs_node_hold(&d, u, parent);
	if (r < 0) {
		ufs_reply_err(req, r);
		return;
	}
	ufs_node_rdlock(d);
	if (d->obj.type != S_IFDIR)
		r = -ENOTDIR;
	else if (d->obj.state == FHMAP_STATE_UNLINKED)
		r = -ENOENT;
	if (r == 0 && !strcmp(name, "..")) {
		uint64_t up = d->obj.parent ? d->obj.parent : FHMAP_ROOT_INO;

		ufs_node_unlock(d);
		ufs_node_put(u, d);
		reply_node(req, u, up);
		return;
	}
	if (r == 0 && (r = ufs_dir_get(&ref, u, d)) == 0) {
		r = ufs_resolve(&e, u, d, ref.l, name, 0);
		if (r == 0 && !e.s.on_upper)
			ufs_links_seen(u, e.n, d->ino, name);
		if (r == 0)
			r = ufs_entry_attr(&st, u, &e);
		ufs_dir_put(&ref);
	}
	ufs_node_unlock(d);
	if (r == 0 && e.created)
		r = ufs_map_changed(u, 1);
	if (r < 0)
		ufs_reply_err(req, r);
	else
		ufs_reply_entry(req, u, e.n, e.obj.gen, &st);
	ufs_entry_put(u, &e);
	ufs_node_put(u, d);
}

void ufs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ufs_node_forget(ufs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

void ufs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		ufs_node_forget(ufs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

void ufs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ufs *u = ufs_of(req);
	struct ufs_node *n;
	struct stat st;
	int r = ufs_node_hold(&n, u, ino);

	(void)fi;
	if (r == 0) {
		ufs_node_rdlock(n);
		r = ufs_node_stat(&st, u, n);
		ufs_node_unlock(n);
		ufs_node_put(u, n);
	}
	if (r < 0)
		ufs_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, u->cfg.attr_timeout);
}

static int apply_setattr(struct live *lv, const struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	if ((to_set & FUSE_SET_ATTR_MODE) && lv->n->obj.type != S_IFLNK && chmod(lv->proc, attr->st_mode & 07777) < 0)
		return -errno;
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(lv->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		int r = fi ? ftruncate(ufs_file_fd(fi), attr->st_size) : truncate(lv->proc, attr->st_size);

		if (r < 0)
			return -errno;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(AT_FDCWD, lv->proc, ts, 0) < 0)
			return -errno;
	}
	return 0;
}

/* Also for an object that lost its last name but is still open: through
 * the fd its node keeps. */
void ufs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	struct ufs *u = ufs_of(req);
	struct live lv;
	struct stat st;
	int r = live_begin(&lv, u, ino, 1);

	if (r == 0) {
		r = apply_setattr(&lv, attr, to_set, fi);
		if (r == 0)
			r = ufs_node_stat(&st, u, lv.n);
		live_end(&lv, u);
	}
	if (r < 0)
		ufs_reply_err(req, r);
	else
		fuse_reply_attr(req, &st, u->cfg.attr_timeout);
}

void ufs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct ufs *u = ufs_of(req);
	char buf[FHMAP_PATH_MAX];
	struct live lv;
	int r = live_begin(&lv, u, ino, 0);

	if (r == 0) {
		ssize_t n = readlinkat(lv.fd, "", buf, sizeof(buf) - 1);

		r = n < 0 ? -errno : 0;
		if (n >= 0)
			buf[n] = '\0';
		live_end(&lv, u);
	}
	if (r < 0)
		ufs_reply_err(req, r);
	else
		fuse_reply_readlink(req, buf);
}

void ufs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct ufs *u = ufs_of(req);
	struct statvfs sv;

	(void)ino;
	/* the upper layer's, else the topmost lower layer's, as in overlayfs */
	if (fstatvfs(u->upper.fd >= 0 ? u->upper.fd : u->lowers[0].fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

void ufs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct ufs *u = ufs_of(req);
	char *buf = NULL;
	struct live lv;
	ssize_t n = 0;
	int r;

	if (strcmp(name, UFS_XATTR_MAP_UUID) == 0) {
		ufs_reply_map_uuid(req, size);
		return;
	}
	r = ufs_xattr_private(name) ? -ENODATA : live_begin(&lv, u, ino, 0);

	if (r == 0) {
		buf = size ? malloc(size) : NULL;
		if (size && !buf)
			r = -ENOMEM;
		else if ((n = getxattr(lv.proc, name, buf, size)) < 0)
			r = -errno;
		live_end(&lv, u);
	}
	if (r < 0)
		ufs_reply_err(req, r);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)n);
	else
		fuse_reply_xattr(req, (size_t)n);
	free(buf);
}

void ufs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct ufs *u = ufs_of(req);
	char *all = NULL, *out = NULL;
	struct live lv;
	ssize_t n = 0;
	size_t len = 0;
	int r = live_begin(&lv, u, ino, 0);

	if (r == 0) {
		n = listxattr(lv.proc, NULL, 0);
		all = n > 0 ? malloc((size_t)n) : NULL;
		out = n > 0 ? malloc((size_t)n) : NULL;
		if (n < 0)
			r = -errno;
		else if (n > 0 && (!all || !out))
			r = -ENOMEM;
		else if (n > 0 && (n = listxattr(lv.proc, all, (size_t)n)) < 0)
			r = -errno;
		live_end(&lv, u);
	}
	for (char *p = all; r == 0 && p && p < all + n; p += strlen(p) + 1) {
		if (ufs_xattr_private(p))
			continue; /* the union's own markers stay hidden */
		memcpy(out + len, p, strlen(p) + 1);
		len += strlen(p) + 1;
	}
	if (r == 0 && size && len > size)
		r = -ERANGE;
	if (r < 0)
		ufs_reply_err(req, r);
	else if (size)
		fuse_reply_buf(req, out, len);
	else
		fuse_reply_xattr(req, len);
	free(all);
	free(out);
}

/* xattr changes go to the upper copy; the daemon's own names cannot be
 * set, removed or forged through the union. */
void ufs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                     int flags)
{
	struct ufs *u = ufs_of(req);
	struct live lv;
	int r = ufs_xattr_private(name) ? -EPERM : live_begin(&lv, u, ino, 1);

	if (r == 0) {
		if (setxattr(lv.proc, name, value, size, flags) < 0)
			r = -errno;
		live_end(&lv, u);
	}
	ufs_reply_err(req, r);
}

void ufs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct ufs *u = ufs_of(req);
	struct live lv;
	int r = ufs_xattr_private(name) ? -EPERM : live_begin(&lv, u, ino, 1);

	if (r == 0) {
		if (removexattr(lv.proc, name) < 0)
			r = -errno;
		live_end(&lv, u);
	}
	ufs_reply_err(req, r);
}
