/*
 * Declarations shared by the FUSE operation files (ops*.c, readdir.c).
 * Every handler gets the daemon's state from fuse_req_userdata() and
 * replies with the negative errno its helpers return (ufs_reply_err).
 */
#ifndef FHMAP_UNIONFS_OPS_H
#define FHMAP_UNIONFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "unionfs.h"

static inline struct ufs *ufs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Replies -r (r <= 0; 0 is success for operations without data). */
void ufs_reply_err(fuse_req_t req, int r);
/* Replies an entry of node @n (one kernel lookup more). */
void ufs_reply_entry(fuse_req_t req, struct ufs *u, struct ufs_node *n, uint32_t gen, const struct stat *st);
void ufs_entry_param(struct fuse_entry_param *ep, const struct ufs *u, uint64_t ino, uint32_t gen,
                     const struct stat *st);

/* A handle (fi->fh) passed between threads through the kernel: enter
 * before using it, leave after, so that what one request did to it is
 * seen by the next (and by the thread that frees it). Open handles are
 * kept on a list for unmount (ufs_handles_free). */
struct ufs_handle {
	atomic_uint seq;
	struct ufs_handle *prev, *next;                 /* protected by handles_lock */
	void (*free)(struct ufs *u, struct ufs_handle *h); /* immutable */
};
void ufs_handle_enter(struct ufs_handle *h);
void ufs_handle_leave(struct ufs_handle *h);
void ufs_handle_track(struct ufs *u, struct ufs_handle *h, void (*free_fn)(struct ufs *, struct ufs_handle *));
void ufs_handle_untrack(struct ufs *u, struct ufs_handle *h);
/* At unmount, no request running: frees the handles never released. */
void ufs_handles_free(struct ufs *u);

/* Open files (ops_file.c). */
int ufs_file_attach(struct fuse_file_info *fi, struct ufs *u, struct ufs_node *n, int fd, int on_lower);
void ufs_file_release(struct ufs *u, struct fuse_file_info *fi);
int ufs_file_fd(struct fuse_file_info *fi);
int ufs_open_flags(const struct ufs *u, int flags);

/* ops_node.c */
void ufs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void ufs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void ufs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void ufs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ufs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi);
void ufs_op_readlink(fuse_req_t req, fuse_ino_t ino);
void ufs_op_statfs(fuse_req_t req, fuse_ino_t ino);
void ufs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void ufs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void ufs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                     int flags);
void ufs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* ops_ns.c */
void ufs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void ufs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void ufs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void ufs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi);
void ufs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void ufs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void ufs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void ufs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                   const char *newname, unsigned int flags);

/* ops_file.c */
void ufs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ufs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ufs_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                      struct fuse_file_info *fi);
void ufs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ufs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                      struct fuse_file_info *fi);
void ufs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* identity.c: answers a getxattr of UFS_XATTR_MAP_UUID. */
void ufs_reply_map_uuid(fuse_req_t req, size_t size);

/* readdir.c */
void ufs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ufs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ufs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ufs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ufs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

#endif
