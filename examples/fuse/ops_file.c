/*
 * Open files: open, read, write, fallocate, fsync, release.
 *
 * There is no flush: a local upper filesystem reports no deferred write
 * error at close, so FLUSH had nothing to tell and cost two requests per
 * `echo x > f`; libfuse answers the first one ENOSYS and the kernel sends
 * no more (it still writes back cached pages at close).
 *
 * An open file keeps its own fd; reads and writes use it without any lock
 * (splice moves the data between /dev/fuse and the file where the kernel
 * can). A file opened read-only while its object lived on a lower layer
 * switches to the upper copy at its next read once the object is copied
 * up (by another open, a link, ...), so it never reads stale lower data:
 * the switch happens once, and the lower fd stays open until release
 * because another read may still be using it.
 *
 * Direct I/O (O_DIRECT) is done by the kernel: it sends every read and
 * write of such a file to the daemon, past its page cache. The layer file
 * is opened without O_DIRECT (ufs_open_flags), as virtiofsd does by
 * default: its buffers are FUSE's, not aligned, and the upper layer's page
 * cache then holds what a write returned, as for any other write (fsync
 * makes it durable; O_DIRECT alone never promised that).
 */
#define _GNU_SOURCE
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ufs_file {
	struct ufs_handle h;
	_Atomic int fd;
	_Atomic int on_lower;  /* opened on a lower layer, not switched yet */
	pthread_mutex_t mu;    /* the switch */
	int old_fd;            /* the lower fd it replaced (protected by mu) */
	int flags;             /* open flags, for the switch (immutable) */
	unsigned int upper_gen;/* the node's upper_gen at open (immutable) */
	struct ufs_node *n;    /* held (immutable) */
};

static struct ufs_file *file_of(struct fuse_file_info *fi)
{
	struct ufs_file *f = (struct ufs_file *)(uintptr_t)fi->fh;

	ufs_handle_enter(&f->h);
	return f;
}

static void file_free(struct ufs *u, struct ufs_handle *h)
{
	struct ufs_file *f = (struct ufs_file *)h;

	close(atomic_load(&f->fd));
	if (f->old_fd >= 0)
		close(f->old_fd);
	ufs_node_put(u, f->n);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

int ufs_file_attach(struct fuse_file_info *fi, struct ufs *u, struct ufs_node *n, int fd, int on_lower)
{
	struct ufs_file *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	atomic_init(&f->fd, fd);
	atomic_init(&f->on_lower, on_lower);
	pthread_mutex_init(&f->mu, NULL);
	f->old_fd = -1;
	f->flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC);
	f->upper_gen = atomic_load(&n->upper_gen);
	f->n = n;
	ufs_node_get(n);
	ufs_handle_track(u, &f->h, file_free);
	fi->fh = (uint64_t)(uintptr_t)f;
	ufs_handle_leave(&f->h);
	return 0;
}

void ufs_file_release(struct ufs *u, struct fuse_file_info *fi)
{
	struct ufs_file *f = file_of(fi);

	ufs_handle_untrack(u, &f->h);
	file_free(u, &f->h);
}

int ufs_file_fd(struct fuse_file_info *fi)
{
	struct ufs_file *f = file_of(fi);
	int fd = atomic_load(&f->fd);

	ufs_handle_leave(&f->h);
	return fd;
}

/* The fd to read from: the upper copy once the object has one. */
static int read_fd(struct ufs *u, struct ufs_file *f)
{
	fhmap_object obj;
	int fd;

	if (!atomic_load(&f->on_lower) || atomic_load(&f->n->upper_gen) == f->upper_gen)
		return atomic_load(&f->fd);
	pthread_mutex_lock(&f->mu);
	if (atomic_load(&f->on_lower)) {
		ufs_node_obj(&obj, f->n);
		if (obj.state == FHMAP_STATE_UPPER &&
		    fhmap_open_real(&fd, u->map, &obj.upper, ufs_open_flags(u, f->flags)) == 0) {
			f->old_fd = atomic_exchange(&f->fd, fd);
			atomic_store(&f->on_lower, 0);
		}
	}
	pthread_mutex_unlock(&f->mu);
	return atomic_load(&f->fd);
}

/* Whether the kernel may keep what it cached of the file: its size and
 * mtime are those it had when last opened or written through the union. */
static int cache_still_valid(struct ufs_node *n, int fd)
{
	struct stat st;
	int keep;

	if (fstat(fd, &st) < 0)
		return 0;
	pthread_mutex_lock(&n->mu);
	keep = n->cache_known && n->cache_size == st.st_size && n->cache_mtime.tv_sec == st.st_mtim.tv_sec &&
	       n->cache_mtime.tv_nsec == st.st_mtim.tv_nsec;
	n->cache_known = 1;
	n->cache_size = st.st_size;
	n->cache_mtime = st.st_mtim;
	pthread_mutex_unlock(&n->mu);
	return keep;
}

void ufs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ufs *u = ufs_of(req);
	struct ufs_node *n;
	fhmap_object obj;
	char proc[64];
	int writing = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
	int pfd, owned, fd = -1, on_lower = 0, r = ufs_node_hold(&n, u, ino);

	if (r < 0) {
		ufs_reply_err(req, r);
		return;
	}
	ufs_node_obj(&obj, n);
	if (obj.type == S_IFDIR)
		r = -EISDIR;
	if (r == 0 && writing && obj.state != FHMAP_STATE_UNLINKED)
		r = ufs_copyup(u, n);
	if (r == 0) {
		ufs_node_rdlock(n);
		r = ufs_node_fd(&pfd, &owned, u, n); /* also of an unlinked file */
		if (r == 0) {
			ufs_proc_path(proc, sizeof(proc), pfd);
			fd = open(proc, ufs_open_flags(u, fi->flags));
			r = fd < 0 ? -errno : 0;
			if (owned)
				close(pfd);
		}
		on_lower = n->obj.state == FHMAP_STATE_ORIGIN;
		if (r == 0 && (r = ufs_file_attach(fi, u, n, fd, on_lower)) < 0)
			close(fd);
		if (r == 0)
			fi->keep_cache = cache_still_valid(n, fd);
		ufs_node_unlock(n);
	}
	ufs_node_put(u, n);
	if (r < 0)
		ufs_reply_err(req, r);
	else if (fuse_reply_open(req, fi) != 0)
		ufs_file_release(u, fi);
}

void ufs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	struct ufs_file *f = file_of(fi);

	(void)ino;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = read_fd(ufs_of(req), f);
	buf.buf[0].pos = off;
	ufs_handle_leave(&f->h);
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void ufs_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                      struct fuse_file_info *fi)
{
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
	struct ufs_file *f = file_of(fi);

	(void)ino;
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = atomic_load(&f->fd);
	out.buf[0].pos = off;
	ssize_t n = fuse_buf_copy(&out, in, 0);
	ufs_handle_leave(&f->h);
	if (n < 0)
		ufs_reply_err(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

void ufs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ufs_file *f = file_of(fi);

	(void)ino;
	/* what it wrote is what the kernel has cached */
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		cache_still_valid(f->n, atomic_load(&f->fd));
	ufs_handle_leave(&f->h);
	ufs_file_release(ufs_of(req), fi);
	fuse_reply_err(req, 0);
}

void ufs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ufs_file *f = file_of(fi);
	int fd = atomic_load(&f->fd);
	int r = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;

	(void)ino;
	ufs_handle_leave(&f->h);
	if (r == 0)
		r = ufs_map_sync(ufs_of(req));
	ufs_reply_err(req, r);
}

/* The file is open for writing, so it lives on the upper layer already
 * (open copied it up). The kernel passes on only the modes FUSE knows
 * (default, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE); the upper filesystem's
 * answer is the reply, except ENOSYS, after which the kernel would send no
 * fallocate again for any file. */
void ufs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                      struct fuse_file_info *fi)
{
	int r = fallocate(ufs_file_fd(fi), mode, off, len) < 0 ? -errno : 0;

	(void)ino;
	ufs_reply_err(req, r == -ENOSYS ? -EOPNOTSUPP : r);
}
