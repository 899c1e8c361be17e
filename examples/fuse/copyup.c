/*
 * Copy-up: an object on a lower layer gets its upper copy before anything
 * changes it.
 *
 * Once per object: the first caller marks the node "copying" and does the
 * work; callers that come meanwhile wait for it and then find the object
 * upper (or, if it failed, try themselves). The copy is built with no lock
 * held, as work/cu-<ino> on the upper filesystem: data (fsynced: a name
 * that survives a crash has its data), mode, owner, times, xattrs, and the
 * object's identity xattr, which names its origin (durable.c). Then, with
 * the parent directory and the object locked, and the object's name hint
 * checked against the parent (a rename moves it under the same locks), it
 * is renamed into place, never replacing anything, and
 * fhmap_copyup_adopt() records it in one step. A crash before the rename
 * leaves a temporary the next mount removes; after it, the identity xattr
 * lets the next mount adopt the copy if the map lost the update.
 *
 * Where the copy goes: a directory or a lower file with one link goes to
 * its name in its parent's upper directory (the parent is copied up first),
 * as in overlayfs. A lower file with several links goes to work/index/<ino>
 * instead and keeps, in trusted.fhmap.lowerlinks, how many of its lower
 * names are still visible: every name keeps resolving (through the origin
 * handle) to the one object, whose data now lives in the index, so all
 * names see the new content, and the union link count stays exact.
 *
 * Interrupted copy-ups of earlier versions (intents with
 * fhmap_copyup_begin) are rolled forward or back at mount.
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

int ufs_xattr_private(const char *name)
{
	return !strncmp(name, "trusted.overlay.", 16) || !strncmp(name, "trusted.fhmap.", 14);
}

static int copy_data(int in, int out)
{
	char buf[65536];

	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

		if (n == 0)
			return 0;
		if (n > 0)
			continue;
		if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS)
			return -errno;
		break;
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			off += w;
		}
	}
}

/* Copies the xattrs of src (any fd) to dst (a path, not followed), except
 * the union's own markers. */
static int copy_xattrs(int src, const char *dst)
{
	char sp[64], *names = NULL, *val = NULL;
	ssize_t len;
	int r = 0;

	ufs_proc_path(sp, sizeof(sp), src);
	len = listxattr(sp, NULL, 0);
	if (len <= 0)
		return len < 0 && errno != ENOTSUP ? -errno : 0;
	names = malloc((size_t)len);
	val = malloc(65536);
	if (!names || !val) {
		r = -ENOMEM;
		goto out;
	}
	len = listxattr(sp, names, (size_t)len);
	if (len < 0) {
		r = -errno;
		goto out;
	}
	for (char *n = names; n < names + len; n += strlen(n) + 1) {
		if (ufs_xattr_private(n))
			continue;
		ssize_t vl = getxattr(sp, n, val, 65536);
		if (vl < 0) {
			r = -errno;
			break;
		}
		if (lsetxattr(dst, n, val, (size_t)vl, 0) < 0 && errno != ENOTSUP && errno != EPERM) {
			r = -errno;
			break;
		}
	}
out:
	free(names);
	free(val);
	return r;
}

/* Opens the origin of @obj: for reading if it is a regular file. */
static int open_origin(int *fd, struct ufs *u, const fhmap_object *obj)
{
	return fhmap_open_real(fd, u->map, &obj->origin, obj->type == S_IFREG ? O_RDONLY : O_PATH);
}

/* Makes work/<tmp> a copy of the origin object src (open_origin);
 * -EEXIST when a temporary of that name is left. */
static int make_copy(struct ufs *u, const fhmap_object *obj, int src, const struct stat *st, const char *tmp)
{
	char wpath[FHMAP_PATH_MAX];
	int r = 0;

	if (S_ISREG(st->st_mode)) {
		int out = openat(u->work_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

		if (out < 0)
			return -errno;
		r = copy_data(src, out);
		/* a name that survives a crash has its data, as in overlayfs */
		if (!r && fsync(out) < 0)
			r = -errno;
		close(out);
	} else if (S_ISDIR(st->st_mode)) {
		if (mkdirat(u->work_fd, tmp, 0700) < 0)
			r = -errno;
	} else if (S_ISLNK(st->st_mode)) {
		char target[FHMAP_PATH_MAX];
		ssize_t n = readlinkat(src, "", target, sizeof(target) - 1);

		if (n < 0)
			return -errno;
		target[n] = '\0';
		if (symlinkat(target, u->work_fd, tmp) < 0)
			r = -errno;
	} else if (mknodat(u->work_fd, tmp, st->st_mode & (S_IFMT | 07777), st->st_rdev) < 0) {
		r = -errno;
	}
	if (r < 0)
		return r;
	r = ufs_proc_at(wpath, sizeof(wpath), u->work_fd, tmp);
	if (!r)
		r = copy_xattrs(src, wpath);
	if (!r && fchownat(u->work_fd, tmp, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	if (!r && !S_ISLNK(st->st_mode) && fchmodat(u->work_fd, tmp, st->st_mode & 07777, 0) < 0)
		r = -errno;
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (!r && utimensat(u->work_fd, tmp, ts, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	if (!r)
		r = ufs_id_set(u, -1, wpath, obj, 1);
	if (!r && !S_ISDIR(st->st_mode) && st->st_nlink > 1)
		r = ufs_set_lowerlinks(u->work_fd, tmp, (long)st->st_nlink);
	return r;
}

/* Moves work/<tmp> into place and records it, with the parent (unless the
 * copy goes to the index) and the object locked. -EAGAIN: the object's
 * name hint moved meanwhile; the caller starts again. */
static int place_copy(struct ufs *u, struct ufs_node *n, struct ufs_node *parent, const char *tmp,
                      const fhmap_realfh *fh)
{
	struct ufs_dirref pd = { 0 };
	fhmap_object rec;
	char name[FHMAP_NAME_MAX + 1];
	int dirfd = u->index_fd, r = 0;

	if (parent) {
		ufs_node_wrlock(parent);
		r = ufs_dir_get(&pd, u, parent);
		dirfd = r == 0 ? pd.l->upper_fd : -1;
		if (r == 0 && dirfd < 0)
			r = -EIO; /* copied up before, never goes back */
	}
	ufs_node_wrlock(n);
	if (parent)
		snprintf(name, sizeof(name), "%s", n->obj.name);
	else
		snprintf(name, sizeof(name), "%" PRIu64, n->ino);
	if (r == 0 && n->obj.state == FHMAP_STATE_UNLINKED)
		r = -ESTALE; /* its last name went while it was copied */
	else if (r == 0 && parent && n->obj.parent != parent->ino)
		r = -EAGAIN;
	if (r == 0 && renameat2(u->work_fd, tmp, dirfd, name, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r == 0) {
		r = fhmap_copyup_adopt(&rec, u->map, n->ino, fh);
		if (r < 0)
			ufs_remove_any(dirfd, name);
	}
	if (r == 0) {
		ufs_node_set_obj(n, &rec);
		ufs_node_reset_fds(u, n); /* the live file moved */
		pthread_mutex_lock(&n->mu);
		n->indexed = !parent;
		pthread_mutex_unlock(&n->mu);
		atomic_fetch_add(&n->upper_gen, 1);
	}
	ufs_node_unlock(n);
	if (parent) {
		ufs_dir_put(&pd);
		ufs_node_unlock(parent);
	}
	return r;
}

/* Makes sure the directory @n (held) lives on the upper layer, copying
 * its ancestors that do not first, from the top: each copy then finds its
 * parent upper, so the stack does not grow with the depth of the tree
 * (a lower tree can be far deeper than a recursion fits in a thread's
 * stack). */
static int copyup_chain(struct ufs *u, struct ufs_node *n)
{
	struct ufs_node **chain = NULL, **grown;
	size_t len = 0, cap = 0;
	fhmap_object obj;
	int r = 0;

	ufs_node_get(n);
	for (;;) {
		ufs_node_obj(&obj, n);
		if (obj.state == FHMAP_STATE_UPPER || !obj.parent) {
			ufs_node_put(u, n);
			break;
		}
		if (len == cap) {
			grown = realloc(chain, (cap ? 2 * cap : 64) * sizeof(*chain));
			if (!grown) {
				ufs_node_put(u, n);
				r = -ENOMEM;
				break;
			}
			chain = grown;
			cap = cap ? 2 * cap : 64;
		}
		chain[len++] = n;
		if ((r = ufs_node_hold(&n, u, obj.parent)) < 0)
			break;
	}
	while (len > 0) {
		if (r == 0)
			r = ufs_copyup(u, chain[len - 1]);
		ufs_node_put(u, chain[--len]);
	}
	free(chain);
	return r;
}

/* One copy-up of @n, whose node is marked copying. */
static int copy_once(struct ufs *u, struct ufs_node *n)
{
	struct ufs_node *parent = NULL;
	fhmap_object obj;
	fhmap_realfh fh;
	struct stat st;
	char tmp[64];
	int src = -1, r;

again:
	ufs_node_obj(&obj, n);
	if (obj.state == FHMAP_STATE_UPPER)
		return 0; /* another caller finished it before we marked it */
	if (obj.state != FHMAP_STATE_ORIGIN || !obj.has_origin || obj.ino == FHMAP_ROOT_INO)
		return -EIO; /* an intent of another process */
	r = open_origin(&src, u, &obj);
	if (r < 0)
		return r;
	if (fstat(src, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode) || st.st_nlink == 1) {
		r = ufs_node_hold(&parent, u, obj.parent);
		if (r == 0)
			r = copyup_chain(u, parent);
		if (r < 0)
			goto out;
	}
	snprintf(tmp, sizeof(tmp), "cu-%" PRIu64, obj.ino);
	r = make_copy(u, &obj, src, &st, tmp);
	if (r == -EEXIST) { /* left by a failed copy-up */
		ufs_remove_any(u->work_fd, tmp);
		r = make_copy(u, &obj, src, &st, tmp);
	}
	if (r == 0)
		r = fhmap_realfh_at(&fh, u->upper.id, u->work_fd, tmp);
	if (r == 0)
		r = place_copy(u, n, parent, tmp, &fh);
	if (r < 0)
		ufs_remove_any(u->work_fd, tmp);
	if (r == 0)
		ufs_map_changed(u, 0); /* the identity xattr restores it */
out:
	close(src);
	src = -1;
	if (parent)
		ufs_node_put(u, parent);
	parent = NULL;
	if (r == -EAGAIN)
		goto again;
	if (r < 0)
		ufs_log("copy-up of object %" PRIu64 " failed: %s", obj.ino, fhmap_strerror(r));
	return r;
}

int ufs_copyup(struct ufs *u, struct ufs_node *n)
{
	int r;

	assert(ufs_locks_held() == 0); /* the copier locks parents and waits */
	if (u->upper.fd < 0)
		return -EROFS; /* a union of lower layers only */
	for (;;) {
		ufs_node_rdlock(n);
		fhmap_state state = n->obj.state;
		ufs_node_unlock(n);
		if (state == FHMAP_STATE_UPPER)
			return 0;
		if (state == FHMAP_STATE_UNLINKED)
			return -ESTALE;
		pthread_mutex_lock(&n->mu);
		if (!n->copying) {
			n->copying = 1;
			pthread_mutex_unlock(&n->mu);
			break;
		}
		while (n->copying)
			pthread_cond_wait(&n->copied, &n->mu);
		pthread_mutex_unlock(&n->mu);
	}
	r = copy_once(u, n);
	pthread_mutex_lock(&n->mu);
	n->copying = 0;
	pthread_cond_broadcast(&n->copied);
	pthread_mutex_unlock(&n->mu);
	return r;
}

/* Finds the copy an interrupted copy-up already put in place. */
static int pending_find(int *dirfd, char *name, size_t size, struct ufs *u, const fhmap_object *obj)
{
	fhmap_object parent;
	struct stat st;

	snprintf(name, size, "%" PRIu64, obj->ino);
	if (fstatat(u->index_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		*dirfd = dup(u->index_fd);
		return *dirfd < 0 ? -errno : 0;
	}
	if (fhmap_get(&parent, u->map, obj->parent) < 0 || parent.state != FHMAP_STATE_UPPER)
		return -ENOENT;
	int r = fhmap_open_real(dirfd, u->map, &parent.upper, O_RDONLY | O_DIRECTORY);
	if (r < 0)
		return r;
	snprintf(name, size, "%s", obj->name);
	if (fstatat(*dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !ufs_is_whiteout(&st) &&
	    (uint32_t)(st.st_mode & S_IFMT) == obj->type)
		return 0;
	close(*dirfd);
	return -ENOENT;
}

static void pending_resolve(struct ufs *u, const fhmap_copyup_intent *in)
{
	fhmap_object obj;
	fhmap_realfh fh;
	char tmp[64], name[FHMAP_NAME_MAX + 1];
	uint64_t other;
	int dirfd, r;

	snprintf(tmp, sizeof(tmp), "cu-%" PRIu64, in->ino);
	ufs_remove_any(u->work_fd, tmp);
	r = fhmap_get(&obj, u->map, in->ino);
	if (r == 0)
		r = pending_find(&dirfd, name, sizeof(name), u, &obj);
	if (r == 0) {
		r = fhmap_realfh_at(&fh, u->upper.id, dirfd, name);
		close(dirfd);
		if (r == 0 && fhmap_lookup_upper(&other, u->map, &fh) != -ENOENT)
			r = -EEXIST; /* that upper file belongs to another object */
		if (r == 0)
			r = fhmap_copyup_commit(u->map, in->ino, &fh);
		if (r == 0) {
			ufs_log("interrupted copy-up of object %" PRIu64 " (pid %" PRIu32 ") completed", in->ino,
			        in->pid);
			return;
		}
	}
	r = fhmap_copyup_abort(u->map, in->ino);
	ufs_log("interrupted copy-up of object %" PRIu64 " (pid %" PRIu32 ") rolled back%s%s", in->ino, in->pid,
	        r ? ": " : "", r ? fhmap_strerror(r) : "");
}

int ufs_recover_pending(struct ufs *u)
{
	fhmap_copyup_intent *in;
	size_t n = 0;
	int r = fhmap_copyup_pending(NULL, 0, &n, u->map);

	if (r < 0 || n == 0)
		return r;
	in = calloc(n, sizeof(*in));
	if (!in)
		return -ENOMEM;
	r = fhmap_copyup_pending(in, n, &n, u->map);
	for (size_t i = 0; r == 0 && i < n; i++)
		pending_resolve(u, &in[i]);
	free(in);
	return r;
}

int ufs_copy_again(struct ufs *u, const fhmap_object *obj)
{
	fhmap_object parent, upd = *obj;
	struct stat st;
	char tmp[64], name[FHMAP_NAME_MAX + 1];
	int src, dirfd = -1, r = open_origin(&src, u, obj);

	if (r < 0)
		return r;
	if (fstat(src, &st) < 0) {
		r = -errno;
	} else if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
		dirfd = dup(u->index_fd);
		r = dirfd < 0 ? -errno : 0;
		snprintf(name, sizeof(name), "%" PRIu64, obj->ino);
	} else if ((r = fhmap_get(&parent, u->map, obj->parent)) == 0) {
		r = parent.state == FHMAP_STATE_UPPER
		            ? fhmap_open_real(&dirfd, u->map, &parent.upper, O_RDONLY | O_DIRECTORY)
		            : -EAGAIN; /* its parent first */
		snprintf(name, sizeof(name), "%s", obj->name);
	}
	snprintf(tmp, sizeof(tmp), "cu-%" PRIu64, obj->ino);
	if (r == 0) {
		ufs_remove_any(u->work_fd, tmp);
		r = make_copy(u, obj, src, &st, tmp);
	}
	if (r == 0)
		r = fhmap_realfh_at(&upd.upper, u->upper.id, u->work_fd, tmp);
	if (r == 0 && renameat2(u->work_fd, tmp, dirfd, name, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r == 0 && (r = fhmap_object_update(u->map, &upd)) < 0)
		ufs_remove_any(dirfd, name);
	if (r < 0)
		ufs_remove_any(u->work_fd, tmp);
	close(src);
	if (dirfd >= 0)
		close(dirfd);
	return r;
}
