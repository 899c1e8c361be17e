/*
 * Connection setup, the operations table and the reply helpers of the
 * FUSE low-level operations (ops_node.c, ops_ns.c, ops_file.c, readdir.c).
 */
#define _GNU_SOURCE
#include "ops.h"

#include <errno.h>
#include <string.h>

void ufs_reply_err(fuse_req_t req, int r)
{
	fuse_reply_err(req, -r);
}

void ufs_entry_param(struct fuse_entry_param *ep, const struct ufs *u, uint64_t ino, uint32_t gen,
                     const struct stat *st)
{
	memset(ep, 0, sizeof(*ep));
	ep->ino = ino;
	ep->generation = gen;
	ep->attr = *st;
	ep->attr_timeout = u->cfg.attr_timeout;
	ep->entry_timeout = u->cfg.entry_timeout;
}

void ufs_reply_entry(fuse_req_t req, struct ufs *u, struct ufs_node *n, uint32_t gen, const struct stat *st)
{
	struct fuse_entry_param ep;

	ufs_entry_param(&ep, u, n->ino, gen, st);
	ufs_node_lookup(n);
	if (fuse_reply_entry(req, &ep) != 0)
		ufs_node_forget(u, n->ino, 1);
}

void ufs_handle_enter(struct ufs_handle *h)
{
	(void)atomic_load_explicit(&h->seq, memory_order_acquire);
}

void ufs_handle_leave(struct ufs_handle *h)
{
	atomic_fetch_add_explicit(&h->seq, 1, memory_order_release);
}

void ufs_handle_track(struct ufs *u, struct ufs_handle *h, void (*free_fn)(struct ufs *, struct ufs_handle *))
{
	h->free = free_fn;
	h->prev = NULL;
	pthread_mutex_lock(&u->handles_lock);
	h->next = u->handles;
	if (u->handles)
		u->handles->prev = h;
	u->handles = h;
	pthread_mutex_unlock(&u->handles_lock);
}

void ufs_handle_untrack(struct ufs *u, struct ufs_handle *h)
{
	pthread_mutex_lock(&u->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		u->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&u->handles_lock);
}

void ufs_handles_free(struct ufs *u)
{
	while (u->handles) {
		struct ufs_handle *h = u->handles;

		ufs_handle_untrack(u, h);
		h->free(u, h);
	}
}

static void ufs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ufs *u = userdata;

	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	else
		ufs_log("kernel lacks FUSE export support: NFS export will not work");
	/* lookups and listings of one directory run in parallel (node locks) */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (u->cfg.splice)
		conn->want |= conn->capable & (FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	else
		conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* readdir resolves every entry it returns anyway (d_ino is the object
	 * number): readdirplus gives the kernel its attributes as well, and
	 * spares the lookup that usually follows */
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (u->cfg.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		atomic_store(&u->writeback, 1);
	}
	/* requests up to 1 MiB (libfuse's buffer), and read-ahead as large */
	conn->max_readahead = conn->max_write;
}

const struct fuse_lowlevel_ops ufs_ops = {
	.init = ufs_init,
	.lookup = ufs_op_lookup,
	.forget = ufs_op_forget,
	.forget_multi = ufs_op_forget_multi,
	.getattr = ufs_op_getattr,
	.setattr = ufs_op_setattr,
	.readlink = ufs_op_readlink,
	.mknod = ufs_op_mknod,
	.mkdir = ufs_op_mkdir,
	.symlink = ufs_op_symlink,
	.unlink = ufs_op_unlink,
	.rmdir = ufs_op_rmdir,
	.rename = ufs_op_rename,
	.link = ufs_op_link,
	.open = ufs_op_open,
	.read = ufs_op_read,
	.write_buf = ufs_op_write_buf,
	.release = ufs_op_release,
	.fsync = ufs_op_fsync,
	.fallocate = ufs_op_fallocate,
	.opendir = ufs_op_opendir,
	.readdir = ufs_op_readdir,
	.readdirplus = ufs_op_readdirplus,
	.releasedir = ufs_op_releasedir,
	.fsyncdir = ufs_op_fsyncdir,
	.statfs = ufs_op_statfs,
	.create = ufs_op_create,
	.getxattr = ufs_op_getxattr,
	.listxattr = ufs_op_listxattr,
	.setxattr = ufs_op_setxattr,
	.removexattr = ufs_op_removexattr,
};
