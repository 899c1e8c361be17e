/*
 * Directory handles: opendir, readdir, readdirplus, releasedir, fsyncdir.
 *
 * opendir takes the merged names of the directory at that moment (with
 * its node lock shared, so no namespace change in it is half seen); the
 * offsets readdir gets are indices into that list, stable whatever happens
 * later. Each readdir call then resolves the names it returns, like
 * lookups, so that every d_ino is the st_ino a lookup gives (the kernel
 * reconnects directory handles by it); a name removed since opendir is
 * left out, one created since is not listed. readdirplus returns the
 * attributes too, and counts a kernel lookup for every entry it returns.
 */
#define _GNU_SOURCE
#include "ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dir_handle {
	struct ufs_handle h;
	struct ufs_names names; /* the listing at opendir */
	struct ufs_node *n;     /* the directory, held */
	uint64_t parent;        /* for ".." */
};

static void dir_free(struct ufs *u, struct ufs_handle *hh)
{
	struct dir_handle *h = (struct dir_handle *)hh;

	ufs_names_free(&h->names);
	ufs_node_put(u, h->n);
	free(h);
}

static struct dir_handle *dir_of(struct fuse_file_info *fi)
{
	struct dir_handle *h = (struct dir_handle *)(uintptr_t)fi->fh;

	ufs_handle_enter(&h->h);
	return h;
}

void ufs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ufs *u = ufs_of(req);
	struct dir_handle *h = calloc(1, sizeof(*h));
	struct ufs_dirref ref;
	int r = h ? ufs_node_hold(&h->n, u, ino) : -ENOMEM;

	if (r == 0) {
		ufs_node_rdlock(h->n);
		r = h->n->obj.state == FHMAP_STATE_UNLINKED ? -ENOENT : ufs_dir_get(&ref, u, h->n);
		if (r == 0) {
			r = ufs_names_list(&h->names, u, ino, ref.l);
			ufs_dir_put(&ref);
		}
		h->parent = h->n->obj.parent ? h->n->obj.parent : FHMAP_ROOT_INO;
		ufs_node_unlock(h->n);
		if (r < 0)
			ufs_node_put(u, h->n);
	}
	if (r < 0) {
		free(h);
		ufs_reply_err(req, r);
		return;
	}
	ufs_handle_track(u, &h->h, dir_free);
	fi->fh = (uint64_t)(uintptr_t)h;
	ufs_handle_leave(&h->h);
	if (fuse_reply_open(req, fi) != 0) {
		ufs_handle_untrack(u, &h->h);
		dir_free(u, &h->h);
	}
}

/* Entries given to the kernel by readdirplus, forgotten again if the reply
 * does not reach it. */
struct given {
	uint64_t *inos;
	size_t count;
};

/* One readdir call filling @buf: the listing from @off, resolved a chunk
 * at a time (one commit for the objects a chunk creates). */
struct fill {
	fuse_req_t req;
	struct ufs *u;
	struct dir_handle *h;
	const struct ufs_layers *l;
	char *buf;
	size_t size, pos;
	int plus, created;
	struct given g;
};

/* Adds one entry; 0 when it does not fit. */
static int add(struct fill *f, const char *name, const struct stat *st, uint64_t ino, uint32_t gen, size_t i)
{
	struct fuse_entry_param ep;
	size_t room = f->size - f->pos, n;

	if (f->plus) {
		ufs_entry_param(&ep, f->u, ino, gen, st); /* ino 0: the kernel makes no entry of it (".", "..") */
		n = fuse_add_direntry_plus(f->req, f->buf + f->pos, room, name, &ep, (off_t)(i + 1));
	} else {
		n = fuse_add_direntry(f->req, f->buf + f->pos, room, name, st, (off_t)(i + 1));
	}
	if (n > room)
		return 0;
	f->pos += n;
	return 1;
}

/* Resolves and adds entries [from, to) of the listing; 0 once full. */
static int add_chunk(struct fill *f, size_t from, size_t to)
{
	size_t n = to - from;
	struct ufs_entry *e = calloc(n, sizeof(*e));
	int *rc = calloc(n, sizeof(*rc)), room = 1;
	char **names = calloc(n, sizeof(*names));

	if (!e || !rc || !names) {
		free(e);
		free(rc);
		free(names);
		return 0;
	}
	for (size_t k = 0; k < n; k++)
		names[k] = f->h->names.ents[from + k - 2].name;
	if (ufs_resolve_many(e, rc, f->u, f->h->n, f->l, names, n, 0) < 0)
		room = 0;
	for (size_t k = 0; k < n; k++) {
		struct stat st = { 0 };

		if (rc[k] < 0)
			continue; /* gone since opendir, or cannot be resolved */
		f->created |= e[k].created;
		st.st_ino = e[k].obj.ino;
		st.st_mode = e[k].obj.type;
		/* an entry whose attributes fail (a directory with a redirect
		 * overlayfs refuses) is listed without them: its lookup fails */
		int attrs = room && (!f->plus || ufs_entry_attr(&st, f->u, &e[k]) == 0);
		if (room && (room = add(f, names[k], &st, attrs ? e[k].obj.ino : 0, e[k].obj.gen, from + k)) &&
		    f->plus && attrs) {
			if (!e[k].s.on_upper) /* the kernel learns the name as from a lookup */
				ufs_links_seen(f->u, e[k].n, f->h->n->ino, names[k]);
			ufs_node_lookup(e[k].n);
			f->g.inos[f->g.count++] = e[k].obj.ino;
		}
		ufs_entry_put(f->u, &e[k]);
	}
	free(e);
	free(rc);
	free(names);
	return room;
}

/* How many entries from @i may fit in the room left (at least one). */
static size_t chunk_end(struct fill *f, size_t i, size_t total)
{
	size_t room = f->size - f->pos, j = i;

	while (j < total) {
		size_t need = f->plus ? fuse_add_direntry_plus(f->req, NULL, 0, f->h->names.ents[j - 2].name, NULL, 0)
		                      : fuse_add_direntry(f->req, NULL, 0, f->h->names.ents[j - 2].name, NULL, 0);
		if (need > room && j > i)
			break;
		room -= need < room ? need : room;
		j++;
	}
	return j;
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, int plus)
{
	struct fill f = { .req = req, .u = ufs_of(req), .h = dir_of(fi), .size = size, .plus = plus };
	struct ufs *u = f.u;
	struct ufs_dirref ref;
	size_t i = off < 0 ? 0 : (size_t)off, total = f.h->names.count + 2;
	int r = (f.buf = malloc(size ? size : 1)) ? 0 : -ENOMEM;

	if (r == 0 && plus && !(f.g.inos = malloc(total * sizeof(*f.g.inos))))
		r = -ENOMEM;
	if (r == 0) {
		ufs_node_rdlock(f.h->n);
		r = ufs_dir_get(&ref, u, f.h->n);
		if (r == 0) {
			int room = 1;

			f.l = ref.l;
			for (; room && i < 2; i++) {
				struct stat st = { .st_ino = i ? f.h->parent : f.h->n->ino, .st_mode = S_IFDIR };

				room = add(&f, i ? ".." : ".", &st, 0, 0, i);
			}
			while (room && i < total) {
				size_t j = chunk_end(&f, i, total);

				if (!add_chunk(&f, i, j))
					break;
				i = j;
			}
			ufs_dir_put(&ref);
		} else if (r == -ESTALE) {
			r = 0; /* removed since opendir: the rest of the listing is gone */
		}
		ufs_node_unlock(f.h->n);
	}
	ufs_handle_leave(&f.h->h);
	if (r == 0 && f.created)
		r = ufs_map_changed(u, 1);
	if (r < 0 || (r = fuse_reply_buf(req, f.buf, f.pos)) != 0) {
		if (r < 0)
			ufs_reply_err(req, r);
		for (size_t k = 0; k < f.g.count; k++)
			ufs_node_forget(u, f.g.inos[k], 1);
	}
	free(f.g.inos);
	free(f.buf);
}

void ufs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, 0);
}

void ufs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, 1);
}

void ufs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *h = dir_of(fi);

	(void)ino;
	ufs_handle_untrack(ufs_of(req), &h->h);
	dir_free(ufs_of(req), &h->h);
	fuse_reply_err(req, 0);
}

void ufs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ufs *u = ufs_of(req);
	struct ufs_dirref ref;
	struct ufs_node *n;
	int r = ufs_node_hold(&n, u, ino);

	(void)datasync;
	(void)fi;
	if (r == 0) {
		ufs_node_rdlock(n);
		if (n->obj.state == FHMAP_STATE_UPPER && (r = ufs_dir_get(&ref, u, n)) == 0) {
			r = fsync(ref.l->upper_fd) < 0 ? -errno : 0;
			ufs_dir_put(&ref);
		}
		ufs_node_unlock(n);
		ufs_node_put(u, n);
	}
	if (r == 0)
		r = ufs_map_sync(u);
	ufs_reply_err(req, r);
}
