/*
 * Namespace changes: mknod, mkdir, symlink, create, link, unlink, rmdir,
 * rename.
 *
 * Each one copies up what it needs first, with no lock held (the parent
 * directories, the objects it moves or links), then locks, in the order
 * of unionfs.h: the rename lock for a rename across directories, the
 * directories (an ancestor before its descendant; two unrelated ones only
 * under the rename lock), then the objects named, in number order. It
 * then resolves the names once; if the resolution finds something still to
 * copy up (another thread changed the directory meanwhile), it unlocks,
 * copies up and starts again, which ends because copy-up is one-way.
 *
 * A new object is made in the work dir under a temporary name, gets its
 * owner and its identity xattr (durable.c), and is renamed into place:
 * the name never exists without the identity. A crash before the rename
 * leaves a temporary whose object the next mount forgets.
 *
 * Removal leaves a whiteout where a lower entry would show through
 * (RENAME_WHITEOUT makes removing the upper entry and the whiteout one
 * step). RENAME_EXCHANGE copies both objects up and swaps their upper
 * entries; both hints follow. A file that loses its last name while open keeps its node's fd,
 * so that it stays usable until the kernel forgets it.
 */
#define _GNU_SOURCE
#include "ops.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

/* A directory held for a namespace change: on the upper layer, locked
 * exclusively, its layers at hand. */
struct nsdir {
	struct ufs_node *n;
	struct ufs_dirref ref;
	int locked;
};

static int nsdir_hold(struct nsdir *d, struct ufs *u, uint64_t ino)
{
	int r;

	memset(d, 0, sizeof(*d));
	r = ufs_node_hold(&d->n, u, ino);
	if (r == 0 && (r = ufs_copyup(u, d->n)) < 0) {
		ufs_node_put(u, d->n);
		d->n = NULL;
	}
	return r == -ESTALE ? -ENOENT : r; /* a removed directory */
}

static int nsdir_lock(struct nsdir *d, struct ufs *u)
{
	int r = 0;

	ufs_node_wrlock(d->n);
	d->locked = 1;
	if (d->n->obj.state == FHMAP_STATE_UNLINKED)
		r = -ENOENT;
	else if (d->n->obj.type != S_IFDIR)
		r = -ENOTDIR;
	if (r == 0)
		r = ufs_dir_get(&d->ref, u, d->n);
	if (r == 0 && d->ref.l->upper_fd < 0)
		r = -EIO; /* copied up, and that never goes back */
	return r;
}

static void nsdir_unlock(struct nsdir *d)
{
	if (!d->locked)
		return;
	if (d->ref.l)
		ufs_dir_put(&d->ref);
	ufs_node_unlock(d->n);
	d->locked = 0;
}

static void nsdir_put(struct nsdir *d, struct ufs *u)
{
	nsdir_unlock(d);
	if (d->n)
		ufs_node_put(u, d->n);
	d->n = NULL;
}

static int whiteout_at(int dirfd, const char *name)
{
	return mknodat(dirfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0 ? -errno : 0;
}

/* ------------------------------------------------------------------------ */
/* New objects */

int ufs_open_flags(const struct ufs *u, int flags)
{
	/* O_DIRECT is the kernel's to honour: it sends direct I/O on the union
	 * file straight to the daemon, bypassing its page cache; the layer file
	 * is written from FUSE's unaligned buffers, which O_DIRECT refuses.
	 * O_NOFOLLOW was the kernel's too (it never opens a symlink through
	 * FUSE), and would refuse the /proc/self/fd link files are opened by */
	flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOFOLLOW);
	/* with a writeback cache the kernel reads to fill pages of files open
	 * for writing, and appends itself */
	if (atomic_load(&((struct ufs *)u)->writeback)) {
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	return flags | O_CLOEXEC;
}

/* Makes the new object as work/<tmp>. */
static int make_new(struct ufs *u, const char *tmp, mode_t mode, dev_t rdev, const char *link,
                    struct fuse_file_info *fi, int *fd)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return mkdirat(u->work_fd, tmp, mode & 07777) < 0 ? -errno : 0;
	case S_IFLNK:
		return symlinkat(link, u->work_fd, tmp) < 0 ? -errno : 0;
	case S_IFREG:
		if (fi) {
			int flags = ufs_open_flags(u, fi->flags & ~O_TRUNC) | O_CREAT | O_EXCL;

			*fd = openat(u->work_fd, tmp, flags, mode & 07777);
			return *fd < 0 ? -errno : 0;
		}
		/* fall through */
	default:
		return mknodat(u->work_fd, tmp, mode, rdev) < 0 ? -errno : 0;
	}
}

/* Owner of a new object: the caller, or the group of a setgid directory
 * (BSD semantics, which directories below inherit). */
static int set_owner(struct ufs *u, const char *tmp, fuse_req_t req, int parent_fd, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat pst;
	gid_t gid = ctx->gid;

	if (fstat(parent_fd, &pst) == 0 && (pst.st_mode & S_ISGID)) {
		gid = pst.st_gid;
		if (S_ISDIR(mode) && fchmodat(u->work_fd, tmp, (mode & 07777) | S_ISGID, 0) < 0)
			return -errno;
	}
	return fchownat(u->work_fd, tmp, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* Moves work/<tmp> to @name in @dirfd, replacing a whiteout there. */
static int place_new(struct ufs *u, const char *tmp, int dirfd, const char *name, int over_whiteout, int is_dir)
{
	if (!over_whiteout)
		return renameat2(u->work_fd, tmp, dirfd, name, RENAME_NOREPLACE) < 0 ? -errno : 0;
	if (!is_dir)
		return renameat(u->work_fd, tmp, dirfd, name) < 0 ? -errno : 0;
	/* a directory cannot replace a whiteout: swap them, drop the whiteout */
	if (renameat2(u->work_fd, tmp, dirfd, name, RENAME_EXCHANGE) < 0)
		return -errno;
	unlinkat(u->work_fd, tmp, 0);
	return 0;
}

/* The new object, placed: its record, its node (held) and attributes. */
struct made {
	fhmap_object obj;
	struct ufs_node *n;
	struct stat st;
	int fd; /* a created regular file, open */
};

static int make_placed(struct made *m, struct ufs *u, fuse_req_t req, struct nsdir *d, const char *name,
                       int over_whiteout, const char *tmp, mode_t mode)
{
	int updir = d->ref.l->upper_fd, r = set_owner(u, tmp, req, updir, mode);
	uint64_t epoch = ufs_nodes_epoch(u);
	char path[FHMAP_PATH_MAX];
	fhmap_realfh fh;

	if (r == 0)
		r = ufs_proc_at(path, sizeof(path), u->work_fd, tmp);
	if (r == 0 && S_ISDIR(mode) && over_whiteout && lsetxattr(path, UFS_XATTR_OPAQUE, "y", 1, 0) < 0)
		r = -errno;
	if (r == 0)
		r = fhmap_realfh_at(&fh, u->upper.id, u->work_fd, tmp);
	if (r == 0)
		r = fhmap_object_create(&m->obj, NULL, u->map, &fh, d->n->ino, name, mode & S_IFMT);
	if (r < 0)
		return r;
	r = ufs_id_set(u, -1, path, &m->obj, 0);
	if (r == 0 && m->fd < 0 && fstatat(u->work_fd, tmp, &m->st, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	if (r == 0)
		r = place_new(u, tmp, updir, name, over_whiteout, S_ISDIR(mode));
	if (r == 0)
		r = ufs_node_obtain(&m->n, u, &m->obj, epoch);
	if (r < 0) {
		fhmap_unlink(u->map, m->obj.ino); /* never seen by anyone */
		return r;
	}
	m->st.st_ino = m->obj.ino; /* a new directory spans one layer: its own link count */
	ufs_map_changed(u, 0); /* the identity xattr restores it */
	return 0;
}

static int create_entry(struct made *m, struct ufs *u, fuse_req_t req, uint64_t parent, const char *name,
                        mode_t mode, dev_t rdev, const char *link, struct fuse_file_info *fi)
{
	struct ufs_scan s = { 0 };
	struct nsdir d;
	char tmp[64];
	int r;

	memset(m, 0, sizeof(*m));
	m->fd = -1;
	if (S_ISCHR(mode) && rdev == makedev(0, 0))
		return -EPERM; /* would read back as a whiteout, as in overlayfs */
	if (strlen(name) > FHMAP_NAME_MAX)
		return -ENAMETOOLONG;
	r = nsdir_hold(&d, u, parent);
	if (r < 0)
		return r;
	r = nsdir_lock(&d, u);
	if (r == 0 && ufs_is_work_name(u, parent, name))
		r = -EPERM;
	if (r == 0) {
		r = ufs_scan(&s, u, parent, d.ref.l, name, 0);
		r = r == 0 ? -EEXIST : r == -ENOENT ? 0 : r;
	}
	if (r == 0)
		r = ufs_tmp_name(u, tmp, sizeof(tmp), "new");
	if (r == 0 && (r = make_new(u, tmp, mode, rdev, link, fi, &m->fd)) == 0) {
		r = make_placed(m, u, req, &d, name, s.upper_whiteout, tmp, mode);
		if (r < 0)
			ufs_remove_any(u->work_fd, tmp);
	}
	nsdir_put(&d, u);
	if (r == 0 && m->fd >= 0 && fstat(m->fd, &m->st) == 0)
		m->st.st_ino = m->obj.ino;
	if (r < 0 && m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	return r;
}

static void reply_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                         const char *link)
{
	struct ufs *u = ufs_of(req);
	struct made m;
	int r = create_entry(&m, u, req, parent, name, mode, rdev, link, NULL);

	if (r < 0) {
		ufs_reply_err(req, r);
		return;
	}
	ufs_reply_entry(req, u, m.n, m.obj.gen, &m.st);
	ufs_node_put(u, m.n);
}

void ufs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	reply_create(req, parent, name, mode, rdev, NULL);
}

void ufs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	reply_create(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}

void ufs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	reply_create(req, parent, name, S_IFLNK | 0777, 0, link);
}

void ufs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct ufs *u = ufs_of(req);
	struct fuse_entry_param ep;
	struct made m;
	int r = create_entry(&m, u, req, parent, name, S_IFREG | (mode & 07777), 0, NULL, fi);

	if (r == 0 && (r = ufs_file_attach(fi, u, m.n, m.fd, 0)) < 0)
		close(m.fd);
	if (r < 0) {
		if (m.n)
			ufs_node_put(u, m.n);
		ufs_reply_err(req, r);
		return;
	}
	ufs_entry_param(&ep, u, m.obj.ino, m.obj.gen, &m.st);
	ufs_node_lookup(m.n);
	if (fuse_reply_create(req, &ep, fi) != 0) {
		ufs_node_forget(u, m.obj.ino, 1);
		ufs_file_release(u, fi);
	}
	ufs_node_put(u, m.n);
}

/* ------------------------------------------------------------------------ */
/* Links and removal */

/* Links the live file of @n (locked) at @name in @dirfd: directly, or
 * through the work dir over a whiteout. */
static int link_at(struct ufs *u, struct ufs_node *n, int dirfd, const char *name, int over_whiteout)
{
	char tmp[64];
	int fd, owned, r = ufs_node_fd(&fd, &owned, u, n);

	if (r < 0)
		return r;
	if (!over_whiteout) {
		r = linkat(fd, "", dirfd, name, AT_EMPTY_PATH) < 0 ? -errno : 0;
	} else if ((r = ufs_tmp_name(u, tmp, sizeof(tmp), "ln")) == 0) {
		if (linkat(fd, "", u->work_fd, tmp, AT_EMPTY_PATH) < 0)
			r = -errno;
		else if (renameat(u->work_fd, tmp, dirfd, name) < 0) {
			r = -errno;
			unlinkat(u->work_fd, tmp, 0);
		}
	}
	if (owned)
		close(fd);
	return r;
}

void ufs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct ufs *u = ufs_of(req);
	struct ufs_node *n;
	struct ufs_scan s = { 0 };
	struct nsdir d = { 0 };
	fhmap_object obj;
	struct stat st;
	uint32_t gen = 0;
	int r = ufs_node_hold(&n, u, ino);

	if (r < 0) {
		ufs_reply_err(req, r);
		return;
	}
	ufs_node_obj(&obj, n);
	r = obj.type == S_IFDIR ? -EPERM : ufs_copyup(u, n);
	if (r == 0)
		r = nsdir_hold(&d, u, newparent);
	if (r == 0)
		r = nsdir_lock(&d, u);
	if (r == 0 && ufs_is_work_name(u, newparent, newname))
		r = -EPERM;
	if (r == 0) {
		r = ufs_scan(&s, u, newparent, d.ref.l, newname, 0);
		r = r == 0 ? -EEXIST : r == -ENOENT ? 0 : r;
	}
	if (r == 0) {
		ufs_node_wrlock(n);
		r = n->obj.state == FHMAP_STATE_UNLINKED ? -ENOENT : link_at(u, n, d.ref.l->upper_fd, newname,
		                                                             s.upper_whiteout);
		if (r == 0) {
			ufs_links_add(u, n, newparent, newname);
			r = ufs_node_stat(&st, u, n);
			gen = n->obj.gen;
		}
		ufs_node_unlock(n);
	}
	nsdir_put(&d, u);
	if (r < 0)
		ufs_reply_err(req, r);
	else
		ufs_reply_entry(req, u, n, gen, &st);
	ufs_node_put(u, n);
}

/* Removes a name from the union: the upper entry goes, and a whiteout
 * stays where a lower entry would show through. */
static int remove_name(struct ufs *u, int dirfd, const char *name, const struct ufs_scan *s, int is_dir)
{
	char tmp[64];
	int flags = is_dir ? AT_REMOVEDIR : 0, r;

	if (!s->on_upper)
		return whiteout_at(dirfd, name);
	if (is_dir) {
		int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd < 0)
			return -errno;
		r = ufs_clear_whiteouts(fd);
		close(fd);
		if (r < 0)
			return r;
	}
	if (!s->lower_entry)
		return unlinkat(dirfd, name, flags) < 0 ? -errno : 0;
	r = ufs_tmp_name(u, tmp, sizeof(tmp), "rm");
	if (r == 0 && renameat2(dirfd, name, u->work_fd, tmp, RENAME_WHITEOUT) < 0)
		r = -errno;
	if (r == 0)
		unlinkat(u->work_fd, tmp, flags);
	return r;
}

/* One lower name of an object in the index goes (lock held): first, with
 * @name, its count is marked with the name about to be hidden, so that a
 * mount after a crash in between knows which it is (durable.c); once the
 * name is hidden, without, the count drops, which clears the mark. */
static int count_lowerlink(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name)
{
	long lower;
	int fd, owned, r = ufs_node_fd(&fd, &owned, u, n);

	if (r < 0)
		return r;
	r = ufs_lowerlinks(fd, &lower);
	if (r == 0)
		r = name ? ufs_lowerlinks_hiding(fd, lower, parent, name)
		         : ufs_set_lowerlinks(fd, "", lower > 0 ? lower - 1 : 0);
	if (owned)
		close(fd);
	return r;
}

/* The object lost its last union name (lock held exclusively): its index
 * copy goes, and it is forgotten so that its handles become ESTALE. */
static int forget_object(struct ufs *u, struct ufs_node *n, int indexed)
{
	if (indexed) {
		char name[32];

		snprintf(name, sizeof(name), "%" PRIu64, n->ino);
		unlinkat(u->index_fd, name, 0);
	}
	int r = fhmap_unlink(u->map, n->ino);
	if (r == 0) {
		fhmap_object obj = n->obj;

		obj.state = FHMAP_STATE_UNLINKED;
		ufs_node_set_obj(n, &obj);
	}
	return r;
}

/* Resolves @name in the locked directory @d for a removal or a rename;
 * 1: a lower file with several links must be copied into the index first
 * (to keep its union link count), which the caller does unlocked. */
static int resolve_counted(struct ufs_entry *e, struct ufs *u, struct nsdir *d, const char *name)
{
	int r = ufs_resolve(e, u, d->n, d->ref.l, name, 1);

	if (r == 0 && e->obj.type != S_IFDIR && e->obj.state == FHMAP_STATE_ORIGIN && !e->s.on_upper &&
	    e->s.lower_st.st_nlink > 1)
		return 1;
	return r;
}

/* Removes the non-directory @e named @name in @d (locked). */
static int unlink_locked(struct ufs *u, struct nsdir *d, const char *name, struct ufs_entry *e)
{
	long links = 0;
	int indexed = 0, r = ufs_node_links(&links, &indexed, u, e->n);

	if (r == 0 && links <= 1)
		r = ufs_node_keep_fd(u, e->n); /* open files stay usable */
	if (r == 0 && indexed && !e->s.on_upper)
		r = count_lowerlink(u, e->n, d->n->ino, name);
	if (r == 0)
		r = remove_name(u, d->ref.l->upper_fd, name, &e->s, 0);
	if (r == 0 && indexed && !e->s.on_upper)
		r = count_lowerlink(u, e->n, 0, NULL);
	if (r == 0 && links <= 1)
		r = forget_object(u, e->n, indexed);
	else if (r == 0)
		ufs_links_gone(u, e->n, d->n->ino, name);
	return r;
}

/* Is the directory @dir empty in the union (its lock held)? */
static int dir_empty(struct ufs *u, struct ufs_node *dir)
{
	struct ufs_dirref ref;
	struct ufs_names names;
	int r = ufs_dir_get(&ref, u, dir);

	if (r < 0)
		return r;
	r = ufs_names_list(&names, u, dir->ino, ref.l);
	ufs_dir_put(&ref);
	if (r < 0)
		return r;
	r = names.count ? -ENOTEMPTY : 0;
	ufs_names_free(&names);
	return r;
}

/* Removes the directory @e named @name in @d (locked). */
static int rmdir_locked(struct ufs *u, struct nsdir *d, const char *name, struct ufs_entry *e)
{
	int r = dir_empty(u, e->n);

	if (r == 0)
		r = ufs_node_keep_fd(u, e->n);
	if (r == 0)
		r = remove_name(u, d->ref.l->upper_fd, name, &e->s, 1);
	if (r == 0)
		r = forget_object(u, e->n, 0);
	return r;
}

/* unlink and rmdir: the name's object locked under its directory. */
static int do_remove(struct ufs *u, uint64_t parent, const char *name, int is_dir)
{
	struct ufs_entry e = { 0 };
	struct nsdir d;
	int r = nsdir_hold(&d, u, parent);

	while (r == 0) {
		r = nsdir_lock(&d, u);
		if (r == 0)
			r = is_dir ? ufs_resolve(&e, u, d.n, d.ref.l, name, 1) : resolve_counted(&e, u, &d, name);
		if (r == 0 && (e.obj.type == S_IFDIR) != is_dir)
			r = is_dir ? -ENOTDIR : -EISDIR;
		if (r == 0) {
			ufs_node_wrlock(e.n);
			if (e.n->obj.state == FHMAP_STATE_UNLINKED)
				r = -ENOENT;
			else
				r = is_dir ? rmdir_locked(u, &d, name, &e) : unlink_locked(u, &d, name, &e);
			ufs_node_unlock(e.n);
		}
		nsdir_unlock(&d);
		if (r != 1)
			break;
		/* a lower hardlink goes into the index first */
		r = ufs_copyup(u, e.n);
		ufs_entry_put(u, &e);
	}
	ufs_entry_put(u, &e);
	nsdir_put(&d, u);
	return r == 0 ? ufs_map_changed(u, 1) : r;
}

void ufs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ufs_reply_err(req, do_remove(ufs_of(req), parent, name, 0));
}

void ufs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ufs_reply_err(req, do_remove(ufs_of(req), parent, name, 1));
}

/* ------------------------------------------------------------------------ */
/* Rename */

/* Is @a the directory @d or one of its ancestors (by name hints)? */
static int is_ancestor(struct ufs *u, uint64_t a, uint64_t d)
{
	fhmap_object obj;

	for (int depth = 0; d && depth < 4096; depth++) {
		if (d == a)
			return 1;
		if (fhmap_get(&obj, u->map, d) < 0)
			return 0;
		d = obj.parent;
	}
	return 0;
}

struct rename {
	struct ufs *u;
	struct nsdir dirs[2];
	struct nsdir *sd, *dd;          /* source and target directories */
	struct ufs_entry s, t;          /* source and target entries */
	const char *name, *newname;
	unsigned int flags;
	int cross, t_found, locked_rename;
	struct ufs_node *locked[2];     /* objects locked, in number order */
};

static void rename_unlock(struct rename *c)
{
	for (int i = 1; i >= 0; i--)
		if (c->locked[i]) {
			ufs_node_unlock(c->locked[i]);
			c->locked[i] = NULL;
		}
	if (c->cross)
		nsdir_unlock(c->dd);
	nsdir_unlock(c->sd);
	if (c->locked_rename) {
		pthread_mutex_unlock(&c->u->rename_lock);
		c->locked_rename = 0;
	}
	ufs_entry_put(c->u, &c->s);
	ufs_entry_put(c->u, &c->t);
}

/* Locks the two directories: the rename lock first when they differ, then
 * an ancestor before its descendant, else in number order. */
static int rename_lock_dirs(struct rename *c)
{
	struct ufs *u = c->u;
	int r;

	if (!c->cross)
		return nsdir_lock(c->sd, u);
	assert(ufs_locks_held() == 0); /* lock order 1 */
	pthread_mutex_lock(&u->rename_lock);
	c->locked_rename = 1;
	struct nsdir *first = c->sd, *second = c->dd;
	if (is_ancestor(u, c->dd->n->ino, c->sd->n->ino) ||
	    (!is_ancestor(u, c->sd->n->ino, c->dd->n->ino) && c->dd->n->ino < c->sd->n->ino)) {
		first = c->dd;
		second = c->sd;
	}
	r = nsdir_lock(first, u);
	if (r == 0)
		r = nsdir_lock(second, u);
	return r;
}

/* RENAME_EXCHANGE of two objects: the target moves too, so it must be on
 * the upper layer as well and must not move into its own subtree. */
static int exchange_check(struct rename *c)
{
	if (c->t.obj.state != FHMAP_STATE_UPPER)
		return 2;
	if (c->t.obj.type == S_IFDIR && c->cross && is_ancestor(c->u, c->t.obj.ino, c->sd->n->ino))
		return -EINVAL;
	return 0;
}

/* Everything that can refuse the rename, with the directories locked.
 * 1: nothing to do; 2: something must be copied up first. */
static int rename_check(struct rename *c)
{
	struct ufs *u = c->u;
	int r;

	if (ufs_is_work_name(u, c->dd->n->ino, c->newname))
		return -EPERM;
	r = resolve_counted(&c->s, u, c->sd, c->name);
	if (r == 1 || (r == 0 && c->s.obj.state != FHMAP_STATE_UPPER))
		return 2;
	if (r < 0)
		return r;
	int sdir = c->s.obj.type == S_IFDIR;
	/* (a child is never above its own directory) */
	if (sdir && c->cross && is_ancestor(u, c->s.obj.ino, c->dd->n->ino))
		return -EINVAL; /* into its own subtree */
	r = resolve_counted(&c->t, u, c->dd, c->newname);
	if (r == 1)
		return 2;
	if (r < 0 && r != -ENOENT)
		return r;
	c->t_found = r == 0;
	if (!c->t_found)
		return c->flags & RENAME_EXCHANGE ? -ENOENT : 0;
	if (c->flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (c->t.obj.ino == c->s.obj.ino)
		return 1; /* two names of one object */
	if (c->flags & RENAME_EXCHANGE)
		return exchange_check(c);
	if (sdir && c->t.obj.type != S_IFDIR)
		return -ENOTDIR;
	if (!sdir && c->t.obj.type == S_IFDIR)
		return -EISDIR;
	if (c->t.obj.type == S_IFDIR && c->cross && is_ancestor(u, c->t.obj.ino, c->sd->n->ino))
		return -ENOTEMPTY; /* onto a directory above the source */
	return 0;
}

/* Locks the source and target objects in number order. */
static void rename_lock_objects(struct rename *c)
{
	struct ufs_node *a = c->s.n, *b = c->t_found ? c->t.n : NULL;

	if (b && b->ino < a->ino) {
		struct ufs_node *x = a;

		a = b;
		b = x;
	}
	ufs_node_wrlock(a);
	c->locked[0] = a;
	if (b) {
		ufs_node_wrlock(b);
		c->locked[1] = b;
	}
}

/* Marks the source directory so that its new place does not merge with
 * whatever lower directory has that name: a redirect to its own lower
 * path (overlayfs redirect_dir format), or opaque when it has no lower
 * part. */
static int mark_dir_move(struct ufs *u, struct ufs_node *n)
{
	struct ufs_dirref ref;
	char proc[64], path[FHMAP_PATH_MAX + 1], *rel;
	int r = ufs_dir_get(&ref, u, n);

	if (r < 0)
		return r;
	ufs_proc_path(proc, sizeof(proc), ref.l->upper_fd);
	if (ref.l->nlower) {
		r = ufs_layers_lower_path(&rel, u, ref.l);
		if (r == 0) {
			snprintf(path, sizeof(path), "/%s", strcmp(rel, ".") ? rel : "");
			free(rel);
			if (getxattr(proc, UFS_XATTR_REDIRECT, NULL, 0) < 0 &&
			    setxattr(proc, UFS_XATTR_REDIRECT, path, strlen(path), 0) < 0)
				r = -errno;
		}
	} else if (!ref.l->opaque && setxattr(proc, UFS_XATTR_OPAQUE, "y", 1, 0) < 0) {
		r = -errno;
	}
	ufs_dir_put(&ref);
	return r;
}

/* A name of an object in the index whose source name is a lower entry:
 * link the index copy at the new name, white out the old one. */
static int move_indexed(struct rename *c)
{
	struct ufs *u = c->u;
	int r = link_at(u, c->s.n, c->dd->ref.l->upper_fd, c->newname, 1);

	if (r == 0)
		r = count_lowerlink(u, c->s.n, c->sd->n->ino, c->name);
	if (r == 0)
		r = whiteout_at(c->sd->ref.l->upper_fd, c->name);
	if (r == 0)
		r = count_lowerlink(u, c->s.n, 0, NULL);
	return r;
}

static int move_upper(struct rename *c)
{
	int sdir = c->s.obj.type == S_IFDIR, dfd = c->dd->ref.l->upper_fd;

	if (c->t_found && c->t.s.on_upper && c->t.obj.type == S_IFDIR) {
		int fd = openat(dfd, c->newname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int r = fd < 0 ? -errno : ufs_clear_whiteouts(fd);

		if (fd >= 0)
			close(fd);
		if (r < 0)
			return r;
	}
	/* a directory cannot replace a whiteout; it is marked, so drop it */
	if (sdir && !c->t_found && c->t.s.upper_whiteout && unlinkat(dfd, c->newname, 0) < 0)
		return -errno;
	if (renameat2(c->sd->ref.l->upper_fd, c->name, dfd, c->newname, c->s.s.lower_entry ? RENAME_WHITEOUT : 0) < 0)
		return -errno;
	return 0;
}

/* The name @oldp/@oldname of @n (locked exclusively) is now
 * @newp/@newname: its hint follows, in the map and in the node. */
static int rename_record(struct ufs *u, struct ufs_node *n, uint64_t oldp, const char *oldname, uint64_t newp,
                         const char *newname)
{
	int r = fhmap_rename(u->map, n->ino, newp, newname);

	if (r == 0) {
		fhmap_object obj = n->obj;

		obj.parent = newp;
		snprintf(obj.name, sizeof(obj.name), "%s", newname);
		ufs_node_set_obj(n, &obj);
		if (obj.type != S_IFDIR)
			ufs_links_move(u, n, oldp, oldname, newp, newname);
	}
	return r;
}

/* An object in the index seen at a lower name gets an upper entry there
 * (a link to its index copy, which then counts instead of the lower
 * name), so that the name can be exchanged on the upper layer. */
static int exchange_materialize(struct ufs *u, struct ufs_entry *e, struct nsdir *d, const char *name)
{
	int r;

	if (e->s.on_upper)
		return 0;
	r = link_at(u, e->n, d->ref.l->upper_fd, name, 0);
	return r == 0 ? count_lowerlink(u, e->n, 0, NULL) : r;
}

/* RENAME_EXCHANGE with everything locked: both names get upper entries,
 * moved directories are marked as by a rename, the entries are swapped
 * in one step and both hints follow. Lower entries stay covered, so no
 * whiteout is needed. */
static int exchange_locked(struct rename *c)
{
	struct ufs *u = c->u;
	int r = 0;

	if (c->s.n->obj.state != FHMAP_STATE_UPPER || c->t.n->obj.state != FHMAP_STATE_UPPER)
		return -ENOENT; /* changed between the resolution and the lock */
	if (c->s.obj.type == S_IFDIR)
		r = mark_dir_move(u, c->s.n);
	if (r == 0 && c->t.obj.type == S_IFDIR)
		r = mark_dir_move(u, c->t.n);
	if (r == 0)
		r = exchange_materialize(u, &c->s, c->sd, c->name);
	if (r == 0)
		r = exchange_materialize(u, &c->t, c->dd, c->newname);
	if (r == 0 && renameat2(c->sd->ref.l->upper_fd, c->name, c->dd->ref.l->upper_fd, c->newname,
	                        RENAME_EXCHANGE) < 0)
		r = -errno;
	if (r == 0)
		r = rename_record(u, c->s.n, c->sd->n->ino, c->name, c->dd->n->ino, c->newname);
	if (r == 0)
		r = rename_record(u, c->t.n, c->dd->n->ino, c->newname, c->sd->n->ino, c->name);
	return r;
}

/* With everything locked: moves the name, records it, forgets a replaced
 * object that lost its last name. */
static int rename_locked(struct rename *c)
{
	struct ufs *u = c->u;
	long t_links = 0;
	int t_indexed = 0, r = 0;

	if (c->s.n->obj.state != FHMAP_STATE_UPPER || (c->t_found && c->t.n->obj.state == FHMAP_STATE_UNLINKED))
		return -ENOENT; /* changed between the resolution and the lock */
	if (c->t_found && c->t.obj.type == S_IFDIR)
		r = dir_empty(u, c->t.n);
	else if (c->t_found)
		r = ufs_node_links(&t_links, &t_indexed, u, c->t.n);
	if (r == 0 && c->s.obj.type == S_IFDIR)
		r = mark_dir_move(u, c->s.n);
	if (r == 0 && c->t_found && (c->t.obj.type == S_IFDIR || t_links <= 1))
		r = ufs_node_keep_fd(u, c->t.n);
	if (r == 0 && t_indexed && !c->t.s.on_upper)
		r = count_lowerlink(u, c->t.n, c->dd->n->ino, c->newname);
	if (r == 0)
		r = c->s.s.on_upper ? move_upper(c) : move_indexed(c);
	if (r == 0)
		r = rename_record(u, c->s.n, c->sd->n->ino, c->name, c->dd->n->ino, c->newname);
	if (r < 0 || !c->t_found)
		return r;
	if (c->t.obj.type == S_IFDIR)
		return forget_object(u, c->t.n, 0);
	if (t_indexed && !c->t.s.on_upper)
		r = count_lowerlink(u, c->t.n, 0, NULL);
	if (r == 0 && t_links <= 1)
		r = forget_object(u, c->t.n, t_indexed);
	else if (r == 0)
		ufs_links_gone(u, c->t.n, c->dd->n->ino, c->newname);
	return r;
}

static int do_rename(struct rename *c, uint64_t parent, uint64_t newparent)
{
	struct ufs *u = c->u;
	int r;

	c->cross = parent != newparent;
	c->sd = &c->dirs[0];
	c->dd = c->cross ? &c->dirs[1] : c->sd;
	r = nsdir_hold(c->sd, u, parent);
	if (r == 0 && c->cross)
		r = nsdir_hold(c->dd, u, newparent);
	while (r == 0) {
		r = rename_lock_dirs(c);
		if (r == 0)
			r = rename_check(c);
		if (r == 0) {
			rename_lock_objects(c);
			r = c->flags & RENAME_EXCHANGE ? exchange_locked(c) : rename_locked(c);
		}
		if (r != 2) {
			rename_unlock(c);
			break;
		}
		/* copy up the source (a directory, a file, a lower hardlink into
		 * the index) or a lower hardlink it replaces, then again */
		struct ufs_node *s = c->s.n, *t = c->t.n;
		c->s.n = c->t.n = NULL;
		rename_unlock(c);
		r = s ? ufs_copyup(u, s) : 0;
		if (r == 0 && t)
			r = ufs_copyup(u, t);
		if (s)
			ufs_node_put(u, s);
		if (t)
			ufs_node_put(u, t);
	}
	if (c->cross)
		nsdir_put(c->dd, u);
	nsdir_put(c->sd, u);
	return r == 1 ? 0 : r;
}

void ufs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                   const char *newname, unsigned int flags)
{
	struct rename c;
	int r;

	memset(&c, 0, sizeof(c));
	c.u = ufs_of(req);
	c.name = name;
	c.newname = newname;
	c.flags = flags;
	if (flags & ~(unsigned int)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		ufs_reply_err(req, -EINVAL); /* RENAME_WHITEOUT, as overlayfs */
		return;
	}
	r = strlen(newname) > FHMAP_NAME_MAX ? -ENAMETOOLONG : do_rename(&c, parent, newparent);
	if (r == 0)
		r = ufs_map_changed(c.u, 1);
	ufs_reply_err(req, r);
}
