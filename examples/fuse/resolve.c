/*
 * A name through the layers, in two steps.
 *
 * The scan only reads: the upper layer first, then the lower layers of the
 * directory, topmost first (dir.c has the rules). Its result says what
 * shows at the name and where.
 *
 * The bind gives the entry its object, from libfhmap:
 *   - an upper entry: the object its upper real handle is indexed to
 *     (copied-up objects and objects born on the upper layer); an
 *     unmapped one is, in this order, the object its identity xattr names
 *     (a map update a crash lost), the copy-up of the lower directory it
 *     merges with (made by overlayfs or outside the daemon), or a new
 *     object, whose identity is then written on the file;
 *   - a lower entry: fhmap_object_bind() of its real handle (a read when it
 *     is bound already), so every name of a lower inode is one object.
 * The node (node.c) then holds the object's record: a bind that finds a
 * node uses the node's record, which is never older than the map's.
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

static int scan_lower(struct ufs_scan *s, const struct ufs_layers *l, const char *name)
{
	s->lower_done = 1;
	for (size_t i = 0; i < l->nlower; i++) {
		if (fstatat(l->lower[i].fd, name, &s->lower_st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		if (!ufs_is_whiteout(&s->lower_st)) {
			s->lower_entry = 1;
			s->li = i;
		}
		break;
	}
	return 0;
}

int ufs_scan(struct ufs_scan *s, struct ufs *u, uint64_t dir_ino, const struct ufs_layers *l,
             const char *name, int full)
{
	int r;

	memset(s, 0, sizeof(*s));
	if (strlen(name) > FHMAP_NAME_MAX)
		return -ENAMETOOLONG;
	if (ufs_is_work_name(u, dir_ino, name))
		return -ENOENT;
	if (l->upper_fd >= 0) {
		if (fstatat(l->upper_fd, name, &s->st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (ufs_is_whiteout(&s->st))
				s->upper_whiteout = 1;
			else
				s->on_upper = 1;
		} else if (errno != ENOENT) {
			return -errno;
		}
	}
	if (s->upper_whiteout)
		return -ENOENT;
	if (s->on_upper && !full)
		return 0;
	r = scan_lower(s, l, name);
	if (r < 0)
		return r;
	if (!s->on_upper) {
		if (!s->lower_entry)
			return -ENOENT;
		s->st = s->lower_st;
	}
	return 0;
}

/* Lower directory an unmapped upper directory merges with: the one its
 * overlayfs redirect names (absolute from the layer roots, or a name in
 * the parent's lower directories), else the same name below unless the
 * upper directory is opaque. -ENOENT: it merges with nothing; -EINVAL,
 * -EACCES: a redirect overlayfs refuses too. */
static int upper_dir_origin(fhmap_realfh *origin, struct ufs *u, const struct ufs_layers *l, const char *name,
                            struct ufs_scan *s)
{
	char rd[FHMAP_PATH_MAX];
	struct ufs_walk w;
	struct stat st;
	int fd = openat(l->upper_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), r, opaque;

	if (fd < 0)
		return -errno;
	opaque = ufs_fd_opaque(fd); /* overlayfs reads no redirect then */
	r = opaque ? 0 : ufs_redirect_get(rd, sizeof(rd), fd);
	close(fd);
	if (r < 0)
		return r;
	if (r == 0) {
		if (opaque)
			return -ENOENT;
		if (!s->lower_done && (r = scan_lower(s, l, name)) < 0)
			return r;
		if (!s->lower_entry || !S_ISDIR(s->lower_st.st_mode))
			return -ENOENT;
		return fhmap_realfh_at(origin, l->lower[s->li].id, l->lower[s->li].fd, name);
	}
	if (rd[0] == '/') {
		r = ufs_walk_init(&w, rd);
		for (size_t i = 0; r == 0 && i < u->nlowers; i++) {
			if ((r = ufs_walk_layer(&fd, &w, u, i)) == 0) {
				r = fhmap_realfh_at(origin, u->lowers[i].id, fd, "");
				close(fd);
				return r;
			}
			if (r == -ENOENT && !w.stop)
				r = 0;
		}
		return r ? r : -ENOENT;
	}
	if ((r = ufs_lookup_name_ok(rd)) < 0)
		return r;
	for (size_t i = 0; i < l->nlower; i++) {
		if (fstatat(l->lower[i].fd, rd, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		if (!S_ISDIR(st.st_mode))
			break;
		return fhmap_realfh_at(origin, l->lower[i].id, l->lower[i].fd, rd);
	}
	return -ENOENT;
}

/* The upper directory becomes the copy-up of the lower one it merges
 * with; -EEXIST when that lower directory lives elsewhere already. */
static int adopt_dir(fhmap_object *obj, struct ufs *u, uint64_t parent, const char *name,
                     const fhmap_realfh *origin, const fhmap_realfh *upper)
{
	int r = fhmap_object_bind(obj, NULL, u->map, origin, parent, name, S_IFDIR);

	if (r == 0 && obj->state != FHMAP_STATE_UPPER)
		r = fhmap_copyup_adopt(obj, u->map, obj->ino, upper);
	else if (r == 0 && !(obj->upper.len == upper->len && !memcmp(obj->upper.data, upper->data, upper->len)))
		r = -EEXIST;
	return r;
}

/* An upper entry no object carries. */
static int bind_unmapped(fhmap_object *obj, struct ufs *u, uint64_t parent, const struct ufs_layers *l,
                         const char *name, struct ufs_scan *s, const fhmap_realfh *fh)
{
	char path[FHMAP_PATH_MAX];
	fhmap_realfh o;
	int r = ufs_id_claim(obj, u, l->upper_fd, name, fh, parent);

	if (r != -ENOENT)
		return r;
	/* any other error (a redirect overlayfs refuses) fails the lookup */
	if (S_ISDIR(s->st.st_mode) && (r = upper_dir_origin(&o, u, l, name, s)) == 0)
		r = adopt_dir(obj, u, parent, name, &o, fh);
	if (r == -ENOENT || r == -EEXIST)
		r = fhmap_object_create(obj, NULL, u->map, fh, parent, name, s->st.st_mode & S_IFMT);
	if (r == 0 && ufs_proc_at(path, sizeof(path), l->upper_fd, name) == 0)
		ufs_id_set(u, -1, path, obj, obj->has_origin); /* best effort: it is mapped now */
	return r;
}

/* Directories have one name: a hint that disagrees with where it was found
 * (a rename the map lost in a crash, one made outside the daemon) is
 * corrected, since ".." and copy-ups below follow it. The correction
 * changes the tree, so it needs the rename lock, which comes before the
 * directory lock the caller holds: it is only tried. */
static void dir_hint_fix(struct ufs *u, struct ufs_entry *e, uint64_t parent, const char *name)
{
	if (e->obj.type != S_IFDIR || (e->obj.parent == parent && !strcmp(e->obj.name, name)) ||
	    pthread_mutex_trylock(&u->rename_lock) != 0)
		return;
	ufs_node_wrlock(e->n);
	if ((e->n->obj.parent != parent || strcmp(e->n->obj.name, name)) &&
	    fhmap_rename(u->map, e->n->ino, parent, name) == 0) {
		fhmap_object obj = e->n->obj;

		obj.parent = parent;
		snprintf(obj.name, sizeof(obj.name), "%s", name);
		ufs_node_set_obj(e->n, &obj);
		ufs_map_changed(u, 0);
	}
	e->obj = e->n->obj;
	ufs_node_unlock(e->n);
	pthread_mutex_unlock(&u->rename_lock);
}

/* The object of an upper entry (its real handle @fh). */
static int bind_upper(struct ufs_entry *e, struct ufs *u, struct ufs_node *d, const struct ufs_layers *l,
                      const char *name, const fhmap_realfh *fh, uint64_t epoch)
{
	fhmap_object obj;
	uint64_t ino;
	int r = fhmap_lookup_upper(&ino, u->map, fh);

	if (r == 0)
		return ufs_node_hold(&e->n, u, ino);
	if (r != -ENOENT || (r = bind_unmapped(&obj, u, d->ino, l, name, &e->s, fh)) < 0)
		return r;
	e->created = 1;
	return ufs_node_obtain(&e->n, u, &obj, epoch);
}

/* Binds the lower entries (rc[i] == 1) in one batch: one commit for all
 * the objects it creates. 0: the batch committed and rc[i] holds each
 * result; else nothing was bound and the caller binds them one by one.
 * Nothing is published before the commit: numbers handed out in a batch
 * that rolls back are handed out again. */
static int bind_lower_batch(struct ufs_entry *e, int *rc, fhmap_object *objs, const fhmap_realfh *fhs,
                            struct ufs *u, uint64_t parent, char *const *names, size_t n)
{
	int *brc = malloc(n * sizeof(*brc)), r = -ENOMEM;

	for (int attempt = 0; brc && attempt < 3; attempt++) {
		r = fhmap_batch_begin(u->map);
		for (size_t i = 0; r == 0 && i < n; i++) {
			if (rc[i] == 1)
				brc[i] = fhmap_object_bind(&objs[i], &e[i].created, u->map, &fhs[i], parent, names[i],
				                           e[i].s.st.st_mode & S_IFMT);
			if (rc[i] == 1 && brc[i] == -EAGAIN)
				r = -EAGAIN; /* the map grew: the batch is redone */
		}
		if (r == 0 && (r = fhmap_batch_commit(u->map)) == 0) {
			for (size_t i = 0; i < n; i++)
				if (rc[i] == 1)
					rc[i] = brc[i];
			break;
		}
		if (r == -EAGAIN)
			fhmap_batch_abort(u->map); /* -EINVAL if the commit ended it: harmless */
		if (r != -EAGAIN)
			break;
	}
	free(brc);
	return r;
}

/* The scan of @name and the real handle of the entry it saw. A layer can
 * change under the daemon (a lower layer someone else writes to): an entry
 * replaced between the scan and the handle, by a symlink or another file,
 * would bind the new inode with the old one's type (the kernel then sees a
 * node change type: EIO, and the map keeps the wrong type). So the handle
 * and the attributes are taken from one open (O_PATH) of the entry, and an
 * entry of another type than the scan saw is scanned again. */
static int scan_handle(struct ufs_entry *e, fhmap_realfh *fh, struct ufs *u, uint64_t dir_ino,
                       const struct ufs_layers *l, const char *name, int full)
{
	struct stat st;
	int r = -ESTALE;

	for (int attempt = 0; attempt < 8 && r == -ESTALE; attempt++) {
		memset(e, 0, sizeof(*e));
		r = ufs_scan(&e->s, u, dir_ino, l, name, full);
		if (r < 0)
			break;
		int fd = openat(e->s.on_upper ? l->upper_fd : l->lower[e->s.li].fd, name,
		                O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = errno == ENOENT ? -ESTALE : -errno; /* gone meanwhile: scanned again */
			continue;
		}
		if (fstat(fd, &st) < 0)
			r = -errno;
		else if ((st.st_mode ^ e->s.st.st_mode) & S_IFMT)
			r = -ESTALE; /* replaced meanwhile */
		else
			r = fhmap_realfh_at(fh, e->s.on_upper ? u->upper.id : l->lower[e->s.li].id, fd, "");
		close(fd);
		if (r == 0 && e->s.on_upper)
			e->s.st = st;
		else if (r == 0)
			e->s.st = e->s.lower_st = st;
	}
	return r;
}

int ufs_resolve_many(struct ufs_entry *e, int *rc, struct ufs *u, struct ufs_node *d, const struct ufs_layers *l,
                     char *const *names, size_t n, int full)
{
	uint64_t epoch = ufs_nodes_epoch(u);
	fhmap_object *objs = NULL;
	fhmap_realfh *fhs = malloc(n * sizeof(*fhs));
	size_t nlower = 0;

	if (!fhs || !(objs = malloc(n * sizeof(*objs)))) {
		free(fhs);
		return -ENOMEM;
	}
	/* 1 below: a lower entry that still has to be bound */
	for (size_t i = 0; i < n; i++) {
		rc[i] = scan_handle(&e[i], &fhs[i], u, d->ino, l, names[i], full);
		if (rc[i] == 0 && !e[i].s.on_upper) {
			rc[i] = 1;
			nlower++;
		}
	}
	if (nlower > 1)
		bind_lower_batch(e, rc, objs, fhs, u, d->ino, names, n);
	for (size_t i = 0; i < n; i++) {
		if (rc[i] == 1) /* not in a batch */
			rc[i] = fhmap_object_bind(&objs[i], &e[i].created, u->map, &fhs[i], d->ino, names[i],
			                          e[i].s.st.st_mode & S_IFMT);
		if (rc[i] == 0)
			rc[i] = e[i].s.on_upper ? bind_upper(&e[i], u, d, l, names[i], &fhs[i], epoch)
			                        : ufs_node_obtain(&e[i].n, u, &objs[i], epoch);
		if (rc[i] < 0)
			continue;
		ufs_node_obj(&e[i].obj, e[i].n);
		dir_hint_fix(u, &e[i], d->ino, names[i]);
	}
	free(fhs);
	free(objs);
	return 0;
}

int ufs_resolve(struct ufs_entry *e, struct ufs *u, struct ufs_node *d, const struct ufs_layers *l,
                const char *name, int full)
{
	char *names[1] = { (char *)name };
	int rc, r = ufs_resolve_many(e, &rc, u, d, l, names, 1, full);

	return r < 0 ? r : rc;
}

void ufs_entry_put(struct ufs *u, struct ufs_entry *e)
{
	if (e->n)
		ufs_node_put(u, e->n);
	e->n = NULL;
}

int ufs_entry_attr(struct stat *st, struct ufs *u, struct ufs_entry *e)
{
	int r = 0;

	/* the scan saw the live file, unless the object lives in the index
	 * (a copied-up lower hardlink found at a lower name, or an upper
	 * name of it that counts its lower links too) */
	if (e->obj.state == FHMAP_STATE_UPPER && e->obj.type != S_IFDIR &&
	    (!e->s.on_upper || (e->obj.has_origin && e->s.st.st_nlink > 1))) {
		ufs_node_rdlock(e->n);
		r = ufs_node_stat(st, u, e->n);
		ufs_node_unlock(e->n);
		return r;
	}
	*st = e->s.st;
	st->st_ino = e->obj.ino;
	if (S_ISDIR(st->st_mode)) { /* below the directory the caller holds */
		ufs_node_rdlock(e->n);
		r = ufs_dir_nlink(st, u, e->n);
		ufs_node_unlock(e->n);
	}
	return r;
}
