/*
 * Copy-up, crash-safe through libfhmap's intent/commit:
 *   1. fhmap_copyup_begin() records the intent;
 *   2. the copy (data, mode, owner, times, xattrs) is made as
 *      work/cu-<ino> on the upper filesystem and fsynced;
 *   3. it is renamed into place (never replacing anything);
 *   4. its upper real handle is committed with fhmap_copyup_commit().
 * A crash before 3 leaves a temp file and an intent: the next mount aborts
 * the intent and removes the temp. A crash between 3 and 4 leaves the copy
 * in place: the next mount finds it and rolls the intent forward.
 *
 * Where the copy goes: a directory or a lower file with one link goes to
 * its name (the object's name hint) in its parent's upper directory, as in
 * overlayfs. A lower file with several links goes to work/index/<ino>
 * instead and keeps, in trusted.fhmap.lowerlinks, how many of its lower
 * names are still visible: every name keeps resolving (through the origin
 * handle) to the one object, whose data now lives in the index, so all
 * names see the new content, and the union link count stays exact.
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

int ufs_tmp_name(char *buf, size_t size, const char *prefix)
{
	int n = snprintf(buf, size, "%s-%ld-%lu", prefix, (long)getpid(), ++ufs.tmp_seq);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

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

/* Makes work/<tmp> a copy of the origin object src (opened O_PATH). */
static int make_copy(const fhmap_object *obj, int src, const struct stat *st, const char *tmp)
{
	char wpath[FHMAP_PATH_MAX + 64], proc[64];
	int r = 0;

	if (S_ISREG(st->st_mode)) {
		int in, out;

		r = fhmap_open_real(&in, ufs.map, &obj->origin, O_RDONLY);
		if (r < 0)
			return r;
		out = openat(ufs.work_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0) {
			r = -errno;
			close(in);
			return r;
		}
		r = copy_data(in, out);
		if (!r && fsync(out) < 0)
			r = -errno;
		close(in);
		close(out);
	} else if (S_ISDIR(st->st_mode)) {
		if (mkdirat(ufs.work_fd, tmp, 0700) < 0)
			r = -errno;
	} else if (S_ISLNK(st->st_mode)) {
		char target[FHMAP_PATH_MAX];
		ssize_t n = readlinkat(src, "", target, sizeof(target) - 1);

		if (n < 0)
			return -errno;
		target[n] = '\0';
		if (symlinkat(target, ufs.work_fd, tmp) < 0)
			r = -errno;
	} else if (mknodat(ufs.work_fd, tmp, st->st_mode & (S_IFMT | 07777), st->st_rdev) < 0) {
		r = -errno;
	}
	if (r < 0)
		return r;
	ufs_proc_path(proc, sizeof(proc), ufs.work_fd);
	snprintf(wpath, sizeof(wpath), "%s/%s", proc, tmp);
	r = copy_xattrs(src, wpath);
	if (!r && fchownat(ufs.work_fd, tmp, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	if (!r && !S_ISLNK(st->st_mode) && fchmodat(ufs.work_fd, tmp, st->st_mode & 07777, 0) < 0)
		r = -errno;
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (!r && utimensat(ufs.work_fd, tmp, ts, AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	return r;
}

static void remove_any(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) < 0 && (errno == EISDIR || errno == EPERM))
		unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* Where the copy of obj goes: its index slot or its name in the parent's
 * upper directory (copied up first). */
static int copy_dest(int *dirfd, char *name, size_t size, const fhmap_object *obj, int to_index)
{
	fhmap_object parent;
	int r;

	if (to_index) {
		*dirfd = dup(ufs.index_fd);
		if (*dirfd < 0)
			return -errno;
		snprintf(name, size, "%" PRIu64, obj->ino);
		return 0;
	}
	r = ufs_copyup(&parent, obj->parent);
	if (r == 0)
		r = fhmap_open_real(dirfd, ufs.map, &parent.upper, O_RDONLY | O_DIRECTORY);
	if (r == 0)
		snprintf(name, size, "%s", obj->name);
	return r;
}

int ufs_copyup(fhmap_object *out, uint64_t ino)
{
	fhmap_object obj;
	struct stat st;
	char tmp[64], dname[FHMAP_NAME_MAX + 1];
	int src = -1, dirfd = -1, placed = 0, r;

	r = ufs_obj_get(&obj, ino);
	if (r < 0 || obj.state == FHMAP_STATE_UPPER) {
		if (r == 0 && out)
			*out = obj;
		return r;
	}
	if (obj.state != FHMAP_STATE_ORIGIN || !obj.has_origin || ino == FHMAP_ROOT_INO)
		return -EIO; /* an intent this process did not resolve */
	r = fhmap_open_real(&src, ufs.map, &obj.origin, O_PATH);
	if (r < 0)
		return r;
	if (fstat(src, &st) < 0) {
		r = -errno;
		goto out;
	}
	int to_index = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
	r = copy_dest(&dirfd, dname, sizeof(dname), &obj, to_index);
	if (r < 0)
		goto out;
	r = fhmap_copyup_begin(ufs.map, ino, ufs.upper.id);
	if (r < 0)
		goto out;
	snprintf(tmp, sizeof(tmp), "cu-%" PRIu64, ino);
	remove_any(ufs.work_fd, tmp);
	r = make_copy(&obj, src, &st, tmp);
	if (!r && to_index) {
		int fd = openat(ufs.work_fd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);

		r = fd < 0 ? -errno : ufs_set_lowerlinks(fd, (long)st.st_nlink);
		if (fd >= 0)
			close(fd);
	}
	if (!r && renameat2(ufs.work_fd, tmp, dirfd, dname, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0) {
		remove_any(ufs.work_fd, tmp);
		fhmap_copyup_abort(ufs.map, ino);
		goto out;
	}
	placed = 1;
	if (fsync(dirfd) < 0)
		r = -errno;
	fhmap_realfh u;
	if (!r)
		r = fhmap_realfh_at(&u, ufs.upper.id, dirfd, dname);
	if (!r)
		r = fhmap_copyup_commit(ufs.map, ino, &u);
	if (!r) {
		ufs.copyups++;
		/* what the commit changed: no need to read the object again */
		obj.state = FHMAP_STATE_UPPER;
		obj.has_upper = 1;
		obj.upper = u;
		if (out)
			*out = obj;
	}
	if (r < 0) {
		if (placed)
			remove_any(dirfd, dname);
		fhmap_copyup_abort(ufs.map, ino);
	}
out:
	if (r < 0)
		fprintf(stderr, "fhmap-unionfs: copy-up of object %" PRIu64 " failed: %s\n", ino,
		        fhmap_strerror(r));
	if (src >= 0)
		close(src);
	if (dirfd >= 0)
		close(dirfd);
	return r;
}

/* Finds the copy an interrupted copy-up already put in place. */
static int pending_find(int *dirfd, char *name, size_t size, const fhmap_object *obj)
{
	fhmap_object parent;
	struct stat st;

	snprintf(name, size, "%" PRIu64, obj->ino);
	if (fstatat(ufs.index_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		*dirfd = dup(ufs.index_fd);
		return *dirfd < 0 ? -errno : 0;
	}
	if (fhmap_get(&parent, ufs.map, obj->parent) < 0 || parent.state != FHMAP_STATE_UPPER)
		return -ENOENT;
	int r = fhmap_open_real(dirfd, ufs.map, &parent.upper, O_RDONLY | O_DIRECTORY);
	if (r < 0)
		return r;
	snprintf(name, size, "%s", obj->name);
	if (fstatat(*dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !ufs_is_whiteout(&st) &&
	    (uint32_t)(st.st_mode & S_IFMT) == obj->type)
		return 0;
	close(*dirfd);
	return -ENOENT;
}

static void pending_resolve(const fhmap_copyup_intent *in)
{
	fhmap_object obj;
	fhmap_realfh u;
	char tmp[64], name[FHMAP_NAME_MAX + 1];
	uint64_t other;
	int dirfd, r;

	snprintf(tmp, sizeof(tmp), "cu-%" PRIu64, in->ino);
	remove_any(ufs.work_fd, tmp);
	r = fhmap_get(&obj, ufs.map, in->ino);
	if (r == 0)
		r = pending_find(&dirfd, name, sizeof(name), &obj);
	if (r == 0) {
		r = fhmap_realfh_at(&u, ufs.upper.id, dirfd, name);
		close(dirfd);
		if (r == 0 && fhmap_lookup_upper(&other, ufs.map, &u) != -ENOENT)
			r = -EEXIST; /* that upper file belongs to another object */
		if (r == 0)
			r = fhmap_copyup_commit(ufs.map, in->ino, &u);
		if (r == 0) {
			fprintf(stderr, "fhmap-unionfs: interrupted copy-up of object %" PRIu64
			        " (pid %" PRIu32 ") completed\n", in->ino, in->pid);
			return;
		}
	}
	r = fhmap_copyup_abort(ufs.map, in->ino);
	fprintf(stderr, "fhmap-unionfs: interrupted copy-up of object %" PRIu64 " (pid %" PRIu32
	        ") rolled back%s%s\n", in->ino, in->pid, r ? ": " : "", r ? fhmap_strerror(r) : "");
}

int ufs_recover_pending(void)
{
	fhmap_copyup_intent *in;
	size_t n = 0;
	int r = fhmap_copyup_pending(NULL, 0, &n, ufs.map);

	if (r < 0 || n == 0)
		return r;
	in = calloc(n, sizeof(*in));
	if (!in)
		return -ENOMEM;
	r = fhmap_copyup_pending(in, n, &n, ufs.map);
	for (size_t i = 0; r == 0 && i < n; i++)
		pending_resolve(&in[i]);
	free(in);
	return r;
}

/* Removes temporaries left in the work dir by an earlier run (after the
 * intents were resolved). */
int ufs_work_clean(void)
{
	struct dirent *de;
	int r = 0;
	DIR *dir = ufs_opendir_at(ufs.work_fd, &r);

	if (!dir)
		return r;
	while ((de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, UFS_INDEX_NAME))
			continue;
		if (de->d_type == DT_DIR) {
			int fd = openat(ufs.work_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd >= 0) {
				ufs_clear_whiteouts(fd);
				close(fd);
			}
		}
		remove_any(ufs.work_fd, de->d_name);
	}
	closedir(dir);
	return 0;
}
