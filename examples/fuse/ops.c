/*
 * FUSE low-level operations of fhmap-unionfs.
 *
 * Every nodeid is an object number and goes through libfhmap (ufs_obj_get):
 * an unknown nodeid is ESTALE, never a pointer. File handles (fi->fh) are
 * ours: a struct ufs_file for files, a heap listing for directories.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include "unionfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define UFS_TIMEOUT 1.0

/* Every open file and directory. A RELEASE the kernel still had queued
 * when the daemon stops never comes: ufs_open_free_all() frees those at
 * unmount. */
struct ufs_open {
	struct ufs_open *prev, *next;
	void (*free)(struct ufs_open *);
};

static struct ufs_open open_handles = { &open_handles, &open_handles, NULL };

static void open_track(struct ufs_open *o, void (*free_fn)(struct ufs_open *))
{
	o->free = free_fn;
	o->prev = &open_handles;
	o->next = open_handles.next;
	open_handles.next->prev = o;
	open_handles.next = o;
}

static void open_untrack(struct ufs_open *o)
{
	o->prev->next = o->next;
	o->next->prev = o->prev;
}

void ufs_open_free_all(void)
{
	while (open_handles.next != &open_handles) {
		struct ufs_open *o = open_handles.next;

		open_untrack(o);
		o->free(o);
	}
}

/* An open file. One opened read-only while its object lived on a lower
 * layer switches to the upper copy once the object is copied up (through
 * another open, a link, ...), so it never reads stale lower data. */
struct ufs_file {
	struct ufs_open open;    /* first: the registry frees it as one */
	int fd;
	int flags;               /* open flags, for reopening */
	int on_lower;
	uint64_t ino;
	unsigned long copyups;   /* ufs.copyups when last checked */
};

static struct ufs_file *file_of(const struct fuse_file_info *fi)
{
	return (struct ufs_file *)(uintptr_t)fi->fh;
}

static void file_free(struct ufs_open *o)
{
	struct ufs_file *f = (struct ufs_file *)o;

	close(f->fd);
	free(f);
}

static int file_attach(struct fuse_file_info *fi, int fd, uint64_t ino, int on_lower)
{
	struct ufs_file *f = malloc(sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->fd = fd;
	f->flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC);
	f->on_lower = on_lower;
	f->ino = ino;
	f->copyups = ufs.copyups;
	open_track(&f->open, file_free);
	fi->fh = (uint64_t)(uintptr_t)f;
	return 0;
}

static void file_release(struct fuse_file_info *fi)
{
	struct ufs_file *f = file_of(fi);

	open_untrack(&f->open);
	file_free(&f->open);
}

static int file_read_fd(struct ufs_file *f)
{
	fhmap_object obj;
	int fd;

	if (f->on_lower && f->copyups != ufs.copyups) {
		f->copyups = ufs.copyups;
		if (ufs_obj_get(&obj, f->ino) == 0 && obj.state == FHMAP_STATE_UPPER &&
		    fhmap_open_real(&fd, ufs.map, &obj.upper, f->flags) == 0) {
			close(f->fd);
			f->fd = fd;
			f->on_lower = 0;
		}
	}
	return f->fd;
}

static void reply_entry(fuse_req_t req, const fhmap_object *obj)
{
	struct fuse_entry_param ep;
	int r;

	memset(&ep, 0, sizeof(ep));
	r = ufs_stat(&ep.attr, obj);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	ep.ino = obj->ino;
	ep.generation = obj->gen;
	ep.attr_timeout = UFS_TIMEOUT;
	ep.entry_timeout = UFS_TIMEOUT;
	ufs_node_ref(obj->ino);
	if (fuse_reply_entry(req, &ep) != 0)
		ufs_node_forget(obj->ino, 1);
}

static void reply_obj(fuse_req_t req, uint64_t ino)
{
	fhmap_object obj;
	int r = ufs_obj_get(&obj, ino);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, &obj);
}

static void ufs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	else
		fprintf(stderr, "fhmap-unionfs: kernel lacks FUSE export support: NFS export will not work\n");
}

static void ufs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ufs_dir d;
	struct ufs_entry e;
	fhmap_object obj;
	int r;

	/* NFS file handle decoding: "." of any nodeid ever issued, ".." of a
	 * directory (its name hint's parent). */
	if (!strcmp(name, ".")) {
		reply_obj(req, parent);
		return;
	}
	if (!strcmp(name, "..")) {
		r = ufs_obj_get(&obj, parent);
		if (r == 0 && obj.type != S_IFDIR)
			r = -ENOTDIR;
		if (r < 0)
			fuse_reply_err(req, -r);
		else
			reply_obj(req, obj.parent ? obj.parent : FHMAP_ROOT_INO);
		return;
	}
	r = ufs_dir_open(&d, parent);
	if (r == 0) {
		r = ufs_resolve(&e, &d, name);
		ufs_dir_close(&d);
	}
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, &e.obj);
}

static void ufs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ufs_node_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void ufs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		ufs_node_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void ufs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fhmap_object obj;
	struct stat st;
	int r = ufs_obj_get(&obj, ino);

	(void)fi;
	if (r == 0)
		r = ufs_stat(&st, &obj);
	else if (r == -ESTALE)
		r = ufs_node_kept_stat(&st, ino); /* unlinked but still open */
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, UFS_TIMEOUT);
}

static int apply_setattr(const fhmap_object *obj, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	char proc[64];
	int fd, r = fhmap_open_real(&fd, ufs.map, &obj->upper, O_PATH);

	if (r < 0)
		return r;
	ufs_proc_path(proc, sizeof(proc), fd);
	if ((to_set & FUSE_SET_ATTR_MODE) && obj->type != S_IFLNK && chmod(proc, attr->st_mode & 07777) < 0)
		r = -errno;
	if (!r && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			r = -errno;
	}
	if (!r && (to_set & FUSE_SET_ATTR_SIZE)) {
		if (fi) {
			if (ftruncate(file_of(fi)->fd, attr->st_size) < 0)
				r = -errno;
		} else if (truncate(proc, attr->st_size) < 0) {
			r = -errno;
		}
	}
	if (!r && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(AT_FDCWD, proc, ts, 0) < 0)
			r = -errno;
	}
	close(fd);
	return r;
}

/* setattr of an object that lost its last name but is still open: through
 * the open file, or the inode kept for the kernel. */
static int setattr_unlinked(struct stat *st, uint64_t ino, struct stat *attr, int to_set,
                            struct fuse_file_info *fi)
{
	char proc[64];
	int fd = fi ? file_of(fi)->fd : ufs_node_kept_fd(ino);

	if (fd < 0)
		return -ESTALE;
	ufs_proc_path(proc, sizeof(proc), fd);
	if ((to_set & FUSE_SET_ATTR_SIZE) && truncate(proc, attr->st_size) < 0)
		return -errno;
	if ((to_set & FUSE_SET_ATTR_MODE) && chmod(proc, attr->st_mode & 07777) < 0)
		return -errno;
	if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    chown(proc, (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
	          (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1) < 0)
		return -errno;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (to_set & FUSE_SET_ATTR_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		if (to_set & FUSE_SET_ATTR_MTIME)
			ts[1] = attr->st_mtim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		if (utimensat(AT_FDCWD, proc, ts, 0) < 0)
			return -errno;
	}
	return ufs_node_kept_stat(st, ino);
}

static void ufs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
	fhmap_object obj;
	struct stat st;
	int r = ufs_copyup(&obj, ino);

	if (r == -ESTALE) {
		r = setattr_unlinked(&st, ino, attr, to_set, fi);
		if (r < 0)
			fuse_reply_err(req, -r);
		else
			fuse_reply_attr(req, &st, UFS_TIMEOUT);
		return;
	}
	if (r == 0)
		r = apply_setattr(&obj, attr, to_set, fi);
	if (r == 0)
		r = ufs_stat(&st, &obj);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, UFS_TIMEOUT);
}

static void ufs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	fhmap_object obj;
	char buf[FHMAP_PATH_MAX];
	int fd, r = ufs_obj_get(&obj, ino);

	if (r == 0)
		r = ufs_open_live(&fd, &obj, O_PATH);
	if (r == 0) {
		ssize_t n = readlinkat(fd, "", buf, sizeof(buf) - 1);

		r = n < 0 ? -errno : 0;
		if (n >= 0)
			buf[n] = '\0';
		close(fd);
	}
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, buf);
}

static int whiteout_at(int dirfd, const char *name)
{
	return mknodat(dirfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0 ? -errno : 0;
}

/* Makes the new object as a temp in the work dir, owned by the caller. */
static int make_new(const char *tmp, mode_t mode, dev_t rdev, const char *link, struct fuse_file_info *fi,
                    int *fd)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return mkdirat(ufs.work_fd, tmp, mode & 07777) < 0 ? -errno : 0;
	case S_IFLNK:
		return symlinkat(link, ufs.work_fd, tmp) < 0 ? -errno : 0;
	case S_IFREG:
		if (fi) {
			int flags = (fi->flags | O_CREAT | O_EXCL | O_CLOEXEC) & ~(O_TRUNC | O_NOCTTY);

			*fd = openat(ufs.work_fd, tmp, flags, mode & 07777);
			return *fd < 0 ? -errno : 0;
		}
		/* fall through */
	default:
		return mknodat(ufs.work_fd, tmp, mode, rdev) < 0 ? -errno : 0;
	}
}

static int set_owner(const char *tmp, fuse_req_t req, int parent_fd, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat pst;
	gid_t gid = ctx->gid;

	if (fstat(parent_fd, &pst) == 0 && (pst.st_mode & S_ISGID)) {
		gid = pst.st_gid; /* BSD group semantics of setgid directories */
		if (S_ISDIR(mode) && fchmodat(ufs.work_fd, tmp, (mode & 07777) | S_ISGID, 0) < 0)
			return -errno;
	}
	return fchownat(ufs.work_fd, tmp, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int set_work_xattr(const char *tmp, const char *name, const char *value)
{
	char proc[64], path[128];

	ufs_proc_path(proc, sizeof(proc), ufs.work_fd);
	snprintf(path, sizeof(path), "%s/%s", proc, tmp);
	return lsetxattr(path, name, value, strlen(value), 0) < 0 ? -errno : 0;
}

/* Moves work/tmp to name in dirfd, replacing a whiteout if there is one. */
static int place_new(const char *tmp, int dirfd, const char *name, int over_whiteout, int is_dir)
{
	if (!over_whiteout)
		return renameat2(ufs.work_fd, tmp, dirfd, name, RENAME_NOREPLACE) < 0 ? -errno : 0;
	if (!is_dir)
		return renameat(ufs.work_fd, tmp, dirfd, name) < 0 ? -errno : 0;
	/* a directory cannot replace a whiteout: swap them, drop the whiteout */
	if (renameat2(ufs.work_fd, tmp, dirfd, name, RENAME_EXCHANGE) < 0)
		return -errno;
	unlinkat(ufs.work_fd, tmp, 0);
	return 0;
}

static int create_entry(fhmap_object *out, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                        dev_t rdev, const char *link, struct fuse_file_info *fi, int *fd)
{
	struct ufs_dir d;
	struct ufs_entry e;
	fhmap_realfh u;
	uint64_t ino;
	char tmp[64];
	int r, placed = 0;

	*fd = -1;
	if (S_ISCHR(mode) && rdev == makedev(0, 0))
		return -EPERM; /* would read back as a whiteout, as in overlayfs */
	r = ufs_dir_open(&d, parent);
	if (r < 0)
		return r;
	if (ufs_is_work_name(&d, name)) {
		r = -EPERM;
		goto out;
	}
	r = ufs_resolve(&e, &d, name);
	if (r != -ENOENT) {
		r = r == 0 ? -EEXIST : r;
		goto out;
	}
	r = ufs_dir_upper(&d);
	if (r == 0)
		r = ufs_tmp_name(tmp, sizeof(tmp), "new");
	if (r == 0)
		r = make_new(tmp, mode, rdev, link, fi, fd);
	if (r < 0)
		goto out;
	r = set_owner(tmp, req, d.upper_fd, mode);
	if (r == 0 && S_ISDIR(mode) && e.upper_whiteout)
		r = set_work_xattr(tmp, UFS_XATTR_OPAQUE, "y");
	if (r == 0)
		r = place_new(tmp, d.upper_fd, name, e.upper_whiteout, S_ISDIR(mode));
	if (r < 0) {
		unlinkat(ufs.work_fd, tmp, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
		goto out;
	}
	placed = 1;
	r = fhmap_realfh_at(&u, ufs.upper.id, d.upper_fd, name);
	if (r == 0)
		r = fhmap_create_upper(&ino, ufs.map, &u, parent, name, mode & S_IFMT);
	if (r == 0)
		r = ufs_obj_get(out, ino);
out:
	if (r < 0 && placed) {
		unlinkat(d.upper_fd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
		if (e.upper_whiteout)
			whiteout_at(d.upper_fd, name);
	}
	if (r < 0 && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	ufs_dir_close(&d);
	return r;
}

static void reply_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                         const char *link)
{
	fhmap_object obj;
	int fd, r = create_entry(&obj, req, parent, name, mode, rdev, link, NULL, &fd);

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, &obj);
}

static void ufs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	reply_create(req, parent, name, mode, rdev, NULL);
}

static void ufs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	reply_create(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}

static void ufs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	reply_create(req, parent, name, S_IFLNK | 0777, 0, link);
}

static void ufs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
	struct fuse_entry_param ep;
	fhmap_object obj;
	int fd, r = create_entry(&obj, req, parent, name, S_IFREG | (mode & 07777), 0, NULL, fi, &fd);

	if (r == 0)
		r = ufs_stat(&ep.attr, &obj);
	if (r == 0)
		r = file_attach(fi, fd, obj.ino, 0);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, -r);
		return;
	}
	ep.ino = obj.ino;
	ep.generation = obj.gen;
	ep.attr_timeout = ep.entry_timeout = UFS_TIMEOUT;
	ufs_node_ref(obj.ino);
	if (fuse_reply_create(req, &ep, fi) != 0) {
		ufs_node_forget(obj.ino, 1);
		file_release(fi);
	}
}

/* Union link count of a non-directory before one of its names goes, and
 * whether it lives in the index. */
static int union_links(long *links, int *indexed, const struct ufs_entry *e)
{
	struct stat st;
	long lower;
	int fd, r;

	*indexed = 0;
	if (e->obj.state != FHMAP_STATE_UPPER) {
		*links = 1; /* lower files with more links are copied up first */
		return 0;
	}
	r = fhmap_open_real(&fd, ufs.map, &e->obj.upper, O_PATH);
	if (r < 0)
		return r;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (ufs_lowerlinks(fd, &lower) == 0) {
		*indexed = 1;
		*links = lower + (long)st.st_nlink - 1;
	} else {
		*links = (long)st.st_nlink;
	}
	close(fd);
	return r;
}

static int drop_lowerlink(const fhmap_object *obj)
{
	long lower;
	int fd, r = fhmap_open_real(&fd, ufs.map, &obj->upper, O_PATH);

	if (r < 0)
		return r;
	r = ufs_lowerlinks(fd, &lower);
	if (r == 0)
		r = ufs_set_lowerlinks(fd, lower > 0 ? lower - 1 : 0);
	close(fd);
	return r;
}

/* The object lost its last union link: drop its index copy, tombstone it
 * so its handles become ESTALE. */
static int forget_object(uint64_t ino, int indexed)
{
	if (indexed) {
		char name[32];

		snprintf(name, sizeof(name), "%" PRIu64, ino);
		unlinkat(ufs.index_fd, name, 0);
	}
	return fhmap_unlink(ufs.map, ino);
}

/* Removes a name from the union: the upper entry goes, and a whiteout
 * stays where a lower entry would show through. */
static int remove_name(struct ufs_dir *d, const char *name, const struct ufs_entry *e, int is_dir)
{
	char tmp[64];
	int flags = is_dir ? AT_REMOVEDIR : 0, r = ufs_dir_upper(d);

	if (r < 0)
		return r;
	if (!e->on_upper)
		return whiteout_at(d->upper_fd, name);
	if (is_dir) {
		int fd = openat(d->upper_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd < 0)
			return -errno;
		r = ufs_clear_whiteouts(fd);
		close(fd);
		if (r < 0)
			return r;
	}
	if (!e->lower_entry)
		return unlinkat(d->upper_fd, name, flags) < 0 ? -errno : 0;
	r = ufs_tmp_name(tmp, sizeof(tmp), "rm");
	if (r == 0 && renameat2(d->upper_fd, name, ufs.work_fd, tmp, RENAME_WHITEOUT) < 0)
		r = -errno;
	if (r == 0)
		unlinkat(ufs.work_fd, tmp, flags);
	return r;
}

/* Resolves name, copying a lower file with several links into the index
 * first so that its union link count can be kept. */
static int resolve_counted(struct ufs_entry *e, const struct ufs_dir *d, const char *name)
{
	int r = ufs_resolve(e, d, name);

	if (r == 0 && e->obj.type != S_IFDIR && e->obj.state == FHMAP_STATE_ORIGIN && !e->on_upper &&
	    e->lower_st.st_nlink > 1) {
		r = ufs_copyup(NULL, e->obj.ino);
		if (r == 0)
			r = ufs_resolve(e, d, name);
	}
	return r;
}

static void ufs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ufs_dir d;
	struct ufs_entry e;
	long links = 0;
	int indexed = 0, r = ufs_dir_open(&d, parent);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = resolve_counted(&e, &d, name);
	if (r == 0 && e.obj.type == S_IFDIR)
		r = -EISDIR;
	if (r == 0)
		r = union_links(&links, &indexed, &e);
	if (r == 0 && links <= 1)
		ufs_node_keep(&e.obj);
	if (r == 0)
		r = remove_name(&d, name, &e, 0);
	if (r == 0 && indexed && !e.on_upper)
		r = drop_lowerlink(&e.obj);
	if (r == 0 && links <= 1)
		r = forget_object(e.obj.ino, indexed);
	ufs_dir_close(&d);
	fuse_reply_err(req, -r);
}

static int dir_is_empty(uint64_t ino)
{
	struct ufs_dir d;
	struct ufs_list l;
	int r = ufs_dir_open(&d, ino);

	if (r < 0)
		return r;
	r = ufs_list_merged(&l, &d, 0);
	ufs_dir_close(&d);
	if (r < 0)
		return r;
	r = l.count ? -ENOTEMPTY : 0;
	ufs_list_free(&l);
	return r;
}

static void ufs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ufs_dir d;
	struct ufs_entry e;
	int r = ufs_dir_open(&d, parent);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = ufs_resolve(&e, &d, name);
	if (r == 0 && e.obj.type != S_IFDIR)
		r = -ENOTDIR;
	if (r == 0)
		r = dir_is_empty(e.obj.ino);
	if (r == 0) {
		ufs_node_keep(&e.obj);
		r = remove_name(&d, name, &e, 1);
	}
	if (r == 0)
		r = fhmap_unlink(ufs.map, e.obj.ino);
	ufs_dir_close(&d);
	fuse_reply_err(req, -r);
}

static void ufs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct ufs_dir d;
	struct ufs_entry e;
	fhmap_object obj;
	char tmp[64];
	int fd = -1, r = ufs_obj_get(&obj, ino);

	if (r == 0 && obj.type == S_IFDIR)
		r = -EPERM;
	if (r == 0)
		r = ufs_copyup(&obj, ino);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = ufs_dir_open(&d, newparent);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = ufs_is_work_name(&d, newname) ? -EPERM : ufs_resolve(&e, &d, newname);
	if (r != -ENOENT)
		r = r == 0 ? -EEXIST : r;
	else
		r = ufs_dir_upper(&d);
	if (r == 0)
		r = fhmap_open_real(&fd, ufs.map, &obj.upper, O_PATH);
	if (r == 0 && !e.upper_whiteout && linkat(fd, "", d.upper_fd, newname, AT_EMPTY_PATH) < 0)
		r = -errno;
	if (r == 0 && e.upper_whiteout) {
		r = ufs_tmp_name(tmp, sizeof(tmp), "ln");
		if (r == 0 && linkat(fd, "", ufs.work_fd, tmp, AT_EMPTY_PATH) < 0)
			r = -errno;
		if (r == 0 && renameat(ufs.work_fd, tmp, d.upper_fd, newname) < 0) {
			r = -errno;
			unlinkat(ufs.work_fd, tmp, 0);
		}
	}
	if (fd >= 0)
		close(fd);
	ufs_dir_close(&d);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, &obj);
}

/* Is ancestor equal to dir or one of its ancestors (by name hints)? */
static int is_ancestor(uint64_t ancestor, uint64_t dir)
{
	fhmap_object obj;

	for (int depth = 0; dir && depth < 4096; depth++) {
		if (dir == ancestor)
			return 1;
		if (fhmap_get(&obj, ufs.map, dir) < 0)
			return 0;
		dir = obj.parent;
	}
	return 0;
}

/* Gets the source directory ready to move: on the upper layer, and marked
 * so that its new place does not merge with whatever lower directory has
 * that name: a redirect to its own lower path (overlayfs redirect_dir
 * format), or opaque when it has no lower part. */
static int prepare_dir_move(uint64_t ino)
{
	struct ufs_dir d;
	char proc[64], path[FHMAP_PATH_MAX + 1];
	int r = ufs_copyup(NULL, ino);

	if (r == 0)
		r = ufs_dir_open(&d, ino);
	if (r < 0)
		return r;
	ufs_proc_path(proc, sizeof(proc), d.upper_fd);
	if (d.nlower) {
		char *rel;

		r = ufs_dir_lower_path(&rel, &d);
		if (r == 0) {
			snprintf(path, sizeof(path), "/%s", strcmp(rel, ".") ? rel : "");
			free(rel);
			if (getxattr(proc, UFS_XATTR_REDIRECT, NULL, 0) < 0 &&
			    setxattr(proc, UFS_XATTR_REDIRECT, path, strlen(path), 0) < 0)
				r = -errno;
		}
	} else if (!d.opaque && setxattr(proc, UFS_XATTR_OPAQUE, "y", 1, 0) < 0) {
		r = -errno;
	}
	ufs_dir_close(&d);
	return r;
}

struct rename_ctx {
	struct ufs_dir sd, dd;
	struct ufs_entry s, t;
	int t_found;
};

static int rename_check(struct rename_ctx *c, const char *name, fuse_ino_t newparent, const char *newname,
                        unsigned int flags)
{
	int r = ufs_resolve(&c->s, &c->sd, name);

	if (r < 0)
		return r;
	if (ufs_is_work_name(&c->dd, newname))
		return -EPERM;
	r = resolve_counted(&c->t, &c->dd, newname);
	if (r < 0 && r != -ENOENT)
		return r;
	c->t_found = r == 0;
	int sdir = c->s.obj.type == S_IFDIR;
	if (sdir && is_ancestor(c->s.obj.ino, newparent))
		return -EINVAL;
	if (!c->t_found)
		return 0;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (c->t.obj.ino == c->s.obj.ino)
		return 1; /* two names of one object: nothing to do */
	if (sdir && c->t.obj.type != S_IFDIR)
		return -ENOTDIR;
	if (!sdir && c->t.obj.type == S_IFDIR)
		return -EISDIR;
	return c->t.obj.type == S_IFDIR ? dir_is_empty(c->t.obj.ino) : 0;
}

/* Moves a name of an object that lives in the index but whose source name
 * is a lower entry: link the index copy at the new name, white out the old. */
static int rename_indexed(struct rename_ctx *c, const char *name, const char *newname)
{
	char tmp[64];
	int fd, r = fhmap_open_real(&fd, ufs.map, &c->s.obj.upper, O_PATH);

	if (r < 0)
		return r;
	r = ufs_tmp_name(tmp, sizeof(tmp), "ln");
	if (r == 0 && linkat(fd, "", ufs.work_fd, tmp, AT_EMPTY_PATH) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(ufs.work_fd, tmp, c->dd.upper_fd, newname) < 0) {
		r = -errno;
		unlinkat(ufs.work_fd, tmp, 0);
	}
	if (r == 0)
		r = whiteout_at(c->sd.upper_fd, name);
	if (r == 0)
		r = drop_lowerlink(&c->s.obj);
	return r;
}

static int rename_upper(struct rename_ctx *c, const char *name, const char *newname)
{
	int sdir = c->s.obj.type == S_IFDIR;

	if (c->t_found && c->t.on_upper && c->t.obj.type == S_IFDIR) {
		int fd = openat(c->dd.upper_fd, newname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int r = fd < 0 ? -errno : ufs_clear_whiteouts(fd);

		if (fd >= 0)
			close(fd);
		if (r < 0)
			return r;
	}
	/* a directory cannot replace a whiteout; it is marked, so drop it */
	if (sdir && !c->t_found && c->t.upper_whiteout && unlinkat(c->dd.upper_fd, newname, 0) < 0)
		return -errno;
	if (renameat2(c->sd.upper_fd, name, c->dd.upper_fd, newname, c->s.lower_entry ? RENAME_WHITEOUT : 0) < 0)
		return -errno;
	return 0;
}

static int do_rename(struct rename_ctx *c, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
	long t_links = 0;
	int t_indexed = 0, r = rename_check(c, name, newparent, newname, flags);

	if (r != 0)
		return r > 0 ? 0 : r;
	r = c->s.obj.type == S_IFDIR ? prepare_dir_move(c->s.obj.ino) : ufs_copyup(NULL, c->s.obj.ino);
	/* copy-ups may have created upper directories: look again */
	ufs_dir_close(&c->sd);
	ufs_dir_close(&c->dd);
	if (r == 0)
		r = ufs_dir_open(&c->sd, parent);
	if (r == 0)
		r = ufs_dir_open(&c->dd, newparent);
	if (r == 0)
		r = ufs_dir_upper(&c->sd);
	if (r == 0)
		r = ufs_dir_upper(&c->dd);
	if (r == 0)
		r = ufs_resolve(&c->s, &c->sd, name);
	if (r == 0 && c->t_found) {
		r = ufs_resolve(&c->t, &c->dd, newname);
		if (r == 0 && c->t.obj.type != S_IFDIR)
			r = union_links(&t_links, &t_indexed, &c->t);
	} else if (r == 0) {
		struct ufs_entry probe;

		ufs_resolve(&probe, &c->dd, newname);
		c->t.upper_whiteout = probe.upper_whiteout;
	}
	if (r < 0)
		return r;
	if (c->t_found && (c->t.obj.type == S_IFDIR || t_links <= 1))
		ufs_node_keep(&c->t.obj);
	r = c->s.on_upper ? rename_upper(c, name, newname) : rename_indexed(c, name, newname);
	if (r == 0)
		r = fhmap_rename(ufs.map, c->s.obj.ino, newparent, newname);
	if (r < 0 || !c->t_found)
		return r;
	if (c->t.obj.type == S_IFDIR)
		return fhmap_unlink(ufs.map, c->t.obj.ino);
	if (t_indexed && !c->t.on_upper)
		r = drop_lowerlink(&c->t.obj);
	if (r == 0 && t_links <= 1)
		r = forget_object(c->t.obj.ino, t_indexed);
	return r;
}

static void ufs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                       const char *newname, unsigned int flags)
{
	struct rename_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	c.sd.upper_fd = c.dd.upper_fd = -1;
	if (flags & ~(unsigned int)RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL); /* RENAME_EXCHANGE and RENAME_WHITEOUT */
		return;
	}
	r = ufs_dir_open(&c.sd, parent);
	if (r == 0)
		r = ufs_dir_open(&c.dd, newparent);
	if (r == 0)
		r = do_rename(&c, parent, name, newparent, newname, flags);
	ufs_dir_close(&c.sd);
	ufs_dir_close(&c.dd);
	fuse_reply_err(req, -r);
}

static void ufs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fhmap_object obj;
	int fd, r = ufs_obj_get(&obj, ino);
	int writing = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);

	if (r == 0 && obj.type == S_IFDIR)
		r = -EISDIR;
	if (r == 0 && writing)
		r = ufs_copyup(&obj, ino);
	if (r == 0)
		r = ufs_open_live(&fd, &obj, fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY));
	if (r == -ESTALE && ufs_node_kept_fd(ino) >= 0) {
		char proc[64]; /* reopened through /proc/PID/fd after its last unlink */

		ufs_proc_path(proc, sizeof(proc), ufs_node_kept_fd(ino));
		fd = open(proc, (fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) | O_CLOEXEC);
		r = fd < 0 ? -errno : 0;
		obj.state = FHMAP_STATE_UNLINKED;
	}
	if (r == 0) {
		r = file_attach(fi, fd, ino, obj.state == FHMAP_STATE_ORIGIN);
		if (r < 0)
			close(fd);
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		file_release(fi);
}

static void ufs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	(void)ino;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = file_read_fd(file_of(fi));
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void ufs_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
	ssize_t n = pwrite(file_of(fi)->fd, data, size, off);

	(void)ino;
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)n);
}

static void ufs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int fd = dup(file_of(fi)->fd);

	(void)ino;
	/* closing a duplicate reports deferred write errors without closing */
	fuse_reply_err(req, fd < 0 ? errno : (close(fd) < 0 ? errno : 0));
}

static void ufs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	file_release(fi);
	fuse_reply_err(req, 0);
}

static void ufs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	int fd = file_of(fi)->fd;
	int r = datasync ? fdatasync(fd) : fsync(fd);

	(void)ino;
	fuse_reply_err(req, r < 0 ? errno : 0);
}

struct dir_handle {
	struct ufs_open open;    /* first: the registry frees it as one */
	struct ufs_list list;
	uint64_t self, parent;
};

static void dir_handle_free(struct ufs_open *o)
{
	struct dir_handle *h = (struct dir_handle *)o;

	ufs_list_free(&h->list);
	free(h);
}

static void ufs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *h = calloc(1, sizeof(*h));
	struct ufs_dir d;
	int r = h ? ufs_dir_open(&d, ino) : -ENOMEM;

	if (r == 0) {
		r = ufs_list_merged(&h->list, &d, 1);
		h->self = ino;
		h->parent = d.obj.parent ? d.obj.parent : FHMAP_ROOT_INO;
		ufs_dir_close(&d);
	}
	if (r < 0) {
		free(h);
		fuse_reply_err(req, -r);
		return;
	}
	open_track(&h->open, dir_handle_free);
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0) {
		open_untrack(&h->open);
		dir_handle_free(&h->open);
	}
}

static void ufs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	size_t pos = 0;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = off < 0 ? 0 : (size_t)off; i < h->list.count + 2; i++) {
		struct stat st = { 0 };
		const char *name;

		if (i < 2) {
			name = i ? ".." : ".";
			st.st_ino = i ? h->parent : h->self;
			st.st_mode = S_IFDIR;
		} else {
			const struct ufs_dirent *de = &h->list.ents[i - 2];

			if (!de->ino)
				continue; /* could not be resolved */
			name = de->name;
			st.st_ino = de->ino;
			st.st_mode = de->type;
		}
		size_t n = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(i + 1));
		if (n > size - pos)
			break;
		pos += n;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void ufs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;

	(void)ino;
	open_untrack(&h->open);
	dir_handle_free(&h->open);
	fuse_reply_err(req, 0);
}

static void ufs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fhmap_object obj;
	int fd, r = ufs_obj_get(&obj, ino);

	(void)datasync;
	(void)fi;
	if (r == 0 && obj.state == FHMAP_STATE_UPPER) {
		r = fhmap_open_real(&fd, ufs.map, &obj.upper, O_RDONLY | O_DIRECTORY);
		if (r == 0) {
			r = fsync(fd) < 0 ? -errno : 0;
			close(fd);
		}
	}
	fuse_reply_err(req, -r);
}

static void ufs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	if (fstatvfs(ufs.upper.fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static void ufs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fhmap_object obj;
	char proc[64], *buf = NULL;
	int fd, r;
	ssize_t n = 0;

	if (!strcmp(name, UFS_XATTR_MAP_UUID)) {
		ufs_reply_map_uuid(req, size);
		return;
	}
	r = ufs_xattr_private(name) ? -ENODATA : ufs_obj_get(&obj, ino);
	if (r == 0)
		r = ufs_open_live(&fd, &obj, O_PATH);
	if (r == 0) {
		ufs_proc_path(proc, sizeof(proc), fd);
		buf = size ? malloc(size) : NULL;
		if (size && !buf)
			r = -ENOMEM;
		else if ((n = getxattr(proc, name, buf, size)) < 0)
			r = -errno;
		close(fd);
	}
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)n);
	else
		fuse_reply_xattr(req, (size_t)n);
	free(buf);
}

static void ufs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fhmap_object obj;
	char proc[64], *all = NULL, *out = NULL;
	int fd, r = ufs_obj_get(&obj, ino);
	ssize_t n = 0;
	size_t len = 0;

	if (r == 0)
		r = ufs_open_live(&fd, &obj, O_PATH);
	if (r == 0) {
		ufs_proc_path(proc, sizeof(proc), fd);
		n = listxattr(proc, NULL, 0);
		all = n > 0 ? malloc((size_t)n) : NULL;
		out = n > 0 ? malloc((size_t)n) : NULL;
		if (n < 0)
			r = -errno;
		else if (n > 0 && (!all || !out))
			r = -ENOMEM;
		else if (n > 0 && (n = listxattr(proc, all, (size_t)n)) < 0)
			r = -errno;
		close(fd);
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
		fuse_reply_err(req, -r);
	else if (size)
		fuse_reply_buf(req, out, len);
	else
		fuse_reply_xattr(req, len);
	free(all);
	free(out);
}

/* Opens the upper copy of @ino (copied up by now) by handle for an xattr
 * change, and gives its /proc path; the daemon's private names are refused. */
static int xattr_target(int *fd, char *proc, size_t size, fuse_ino_t ino, const char *name)
{
	fhmap_object obj;
	int r = ufs_xattr_private(name) ? -EPERM : ufs_copyup(&obj, ino);

	if (r == 0)
		r = fhmap_open_real(fd, ufs.map, &obj.upper, O_PATH);
	if (r == 0)
		ufs_proc_path(proc, size, *fd);
	return r;
}

static void ufs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                         int flags)
{
	char proc[64];
	int fd, r = xattr_target(&fd, proc, sizeof(proc), ino, name);

	if (r == 0) {
		if (setxattr(proc, name, value, size, flags) < 0)
			r = -errno;
		close(fd);
	}
	fuse_reply_err(req, -r);
}

static void ufs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char proc[64];
	int fd, r = xattr_target(&fd, proc, sizeof(proc), ino, name);

	if (r == 0) {
		if (removexattr(proc, name) < 0)
			r = -errno;
		close(fd);
	}
	fuse_reply_err(req, -r);
}

const struct fuse_lowlevel_ops ufs_ops = {
	.init = ufs_init,
	.lookup = ufs_lookup,
	.forget = ufs_forget,
	.forget_multi = ufs_forget_multi,
	.getattr = ufs_getattr,
	.setattr = ufs_setattr,
	.readlink = ufs_readlink,
	.mknod = ufs_mknod,
	.mkdir = ufs_mkdir,
	.symlink = ufs_symlink,
	.unlink = ufs_unlink,
	.rmdir = ufs_rmdir,
	.rename = ufs_rename,
	.link = ufs_link,
	.open = ufs_open,
	.read = ufs_read,
	.write = ufs_write,
	.flush = ufs_flush,
	.release = ufs_release,
	.fsync = ufs_fsync,
	.opendir = ufs_opendir,
	.readdir = ufs_readdir,
	.releasedir = ufs_releasedir,
	.fsyncdir = ufs_fsyncdir,
	.statfs = ufs_statfs,
	.create = ufs_create,
	.getxattr = ufs_getxattr,
	.listxattr = ufs_listxattr,
	.setxattr = ufs_setxattr,
	.removexattr = ufs_removexattr,
};
