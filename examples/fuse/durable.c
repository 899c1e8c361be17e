/*
 * Durability at the upper filesystem's pace.
 *
 * The map is opened in deferred mode (or lazy) by default: its updates are
 * committed in the background, so a system crash may take the last of
 * them. What it must never cost is a surviving object whose handle goes
 * stale, or a handle that reaches another object. So every object whose
 * file lives on the upper layer carries its identity in the xattr
 * trusted.fhmap.id, written before the file appears under its name:
 *
 *   byte 0      format (1)
 *   byte 1      flags: 1 = copy-up (the origin follows)
 *   bytes 2-17  the map's UUID
 *   bytes 18-25 object number, little-endian
 *   bytes 26-29 generation, little-endian
 *   [origin real handle: layer, type, length (u32 LE each), bytes]
 *
 * On a journaling filesystem the name cannot outlive a crash without the
 * xattr. After a crash that lost map updates (fhmap_recovery_needed) the
 * next mount walks the upper layer and the index: a file whose identity
 * names a record the map lost gets it back with fhmap_object_restore()
 * (its own number and generation); a copy-up the map lost is adopted; a
 * record whose upper file the crash took is forgotten (born on the upper
 * layer) or copied up again from its origin. Anything that conflicts
 * (another map's UUID, a number the map has for another file, two files
 * claiming one identity) is logged and left alone: an entry without a
 * valid identity becomes a new object when it is looked up.
 *
 * A daemon that dies (process crash) loses no map update, but each of its
 * request threads may leave an operation whose upper-layer change (made
 * first) the map did not follow yet. The mark on the work dir tells the
 * next mount, which walks the upper layer the same way and also moves
 * stale name hints, and forgets records whose file a removal took.
 *
 * With -o sync=full, updates the upper layer cannot restore (a lower
 * object's first bind, unlink, rename, link, recovery) are made durable
 * before the reply, so no handle can go stale after a crash at all.
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

#define ID_FORMAT 1
#define ID_ORIGIN 0x1
#define ID_HEAD 30
#define ID_MAX (ID_HEAD + 12 + FHMAP_REALFH_MAX)

struct ident {
	uint64_t ino;
	uint32_t gen;
	int has_origin;
	fhmap_realfh origin;
};

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t id_encode(unsigned char *buf, const struct ufs *u, const fhmap_object *obj, int with_origin)
{
	size_t n = ID_HEAD;

	buf[0] = ID_FORMAT;
	buf[1] = with_origin ? ID_ORIGIN : 0;
	memcpy(buf + 2, u->map_uuid, 16);
	put32(buf + 18, (uint32_t)obj->ino);
	put32(buf + 22, (uint32_t)(obj->ino >> 32));
	put32(buf + 26, obj->gen);
	if (with_origin) {
		put32(buf + n, obj->origin.layer);
		put32(buf + n + 4, (uint32_t)obj->origin.type);
		put32(buf + n + 8, obj->origin.len);
		memcpy(buf + n + 12, obj->origin.data, obj->origin.len);
		n += 12 + obj->origin.len;
	}
	return n;
}

/* -ENOENT: no identity of this map (none, another map's, malformed). */
static int id_decode(struct ident *id, const struct ufs *u, const unsigned char *buf, size_t len)
{
	if (len < ID_HEAD || buf[0] != ID_FORMAT || memcmp(buf + 2, u->map_uuid, 16))
		return -ENOENT;
	memset(id, 0, sizeof(*id));
	id->ino = get32(buf + 18) | (uint64_t)get32(buf + 22) << 32;
	id->gen = get32(buf + 26);
	id->has_origin = buf[1] & ID_ORIGIN;
	if (!id->has_origin)
		return len == ID_HEAD ? 0 : -ENOENT;
	if (len < ID_HEAD + 12)
		return -ENOENT;
	id->origin.layer = get32(buf + ID_HEAD);
	id->origin.type = (int32_t)get32(buf + ID_HEAD + 4);
	id->origin.len = get32(buf + ID_HEAD + 8);
	if (!id->origin.len || id->origin.len > FHMAP_REALFH_MAX || len != ID_HEAD + 12 + id->origin.len)
		return -ENOENT;
	memcpy(id->origin.data, buf + ID_HEAD + 12, id->origin.len);
	return 0;
}

int ufs_id_set(struct ufs *u, int fd, const char *path, const fhmap_object *obj, int with_origin)
{
	unsigned char buf[ID_MAX];
	size_t n = id_encode(buf, u, obj, with_origin);
	int r = path ? lsetxattr(path, UFS_XATTR_ID, buf, n, 0) : fsetxattr(fd, UFS_XATTR_ID, buf, n, 0);

	return r < 0 ? -errno : 0;
}

static int id_get(struct ident *id, struct ufs *u, const char *path)
{
	unsigned char buf[ID_MAX];
	ssize_t n = lgetxattr(path, UFS_XATTR_ID, buf, sizeof(buf));

	if (n < 0)
		return errno == ENODATA || errno == ENOTSUP || errno == ERANGE ? -ENOENT : -errno;
	return id_decode(id, u, buf, (size_t)n);
}

static int fh_equal(const fhmap_realfh *a, const fhmap_realfh *b)
{
	return a->layer == b->layer && a->type == b->type && a->len == b->len && !memcmp(a->data, b->data, a->len);
}

enum claim { CLAIM_NONE, CLAIM_RESTORED, CLAIM_ADOPTED };

/* Makes the map agree with a file that carries identity @id, at @upper,
 * named @name in the directory object @parent. -ENOENT: the identity
 * conflicts with the map (the file is left to become a new object). */
static int id_apply(fhmap_object *out, enum claim *how, struct ufs *u, const struct ident *id,
                    const fhmap_realfh *upper, uint64_t parent, const char *name, uint32_t type)
{
	fhmap_object rec;
	int r = fhmap_get(&rec, u->map, id->ino);

	*how = CLAIM_NONE;
	if (r == -ENOENT) {
		memset(&rec, 0, sizeof(rec));
		rec.ino = id->ino;
		rec.gen = id->gen;
		rec.type = type;
		rec.state = FHMAP_STATE_UPPER;
		rec.has_upper = 1;
		rec.upper = *upper;
		rec.has_origin = id->has_origin;
		rec.origin = id->origin;
		rec.parent = parent;
		snprintf(rec.name, sizeof(rec.name), "%s", name);
		r = fhmap_object_restore(u->map, &rec);
		if (r == 0)
			r = fhmap_get(out, u->map, id->ino);
		*how = CLAIM_RESTORED;
	} else if (r == 0 && (rec.gen != id->gen || rec.type != type)) {
		r = -ENOENT;
	} else if (r == 0 && rec.state == FHMAP_STATE_UPPER) {
		r = fh_equal(&rec.upper, upper) ? 0 : -ENOENT; /* two files claim it */
		*out = rec;
	} else if (r == 0 && (rec.state == FHMAP_STATE_ORIGIN || rec.state == FHMAP_STATE_COPYUP) &&
	           id->has_origin && rec.has_origin && fh_equal(&rec.origin, &id->origin)) {
		r = fhmap_copyup_adopt(out, u->map, id->ino, upper);
		*how = CLAIM_ADOPTED;
	} else if (r == 0) {
		r = -ENOENT; /* unlinked, or not the copy-up of its origin */
	}
	if (r == -EEXIST || r == -EINVAL || r == -ESTALE)
		r = -ENOENT; /* a handle or number the map gives another object */
	return r;
}

int ufs_id_claim(fhmap_object *out, struct ufs *u, int dirfd, const char *name, const fhmap_realfh *upper,
                 uint64_t parent)
{
	char path[FHMAP_PATH_MAX];
	struct ident id;
	struct stat st;
	enum claim how;
	int r = ufs_proc_at(path, sizeof(path), dirfd, name);

	if (r == 0)
		r = id_get(&id, u, path);
	if (r == 0 && lstat(path, &st) < 0)
		r = -errno;
	if (r == 0)
		r = id_apply(out, &how, u, &id, upper, parent, name, st.st_mode & S_IFMT);
	if (r == 0 && how != CLAIM_NONE) {
		ufs_log("object %" PRIu64 " %s from the identity of its upper file", id.ino,
		        how == CLAIM_RESTORED ? "restored" : "copy-up adopted");
		r = ufs_map_changed(u, 1);
	}
	return r;
}

int ufs_map_changed(struct ufs *u, int unrecoverable)
{
	atomic_fetch_add(&u->map_writes, 1);
	return unrecoverable && u->cfg.sync_full ? ufs_map_sync(u) : 0;
}

int ufs_map_sync(struct ufs *u)
{
	unsigned long want = atomic_load(&u->map_writes);
	unsigned long have = atomic_load(&u->map_synced);

	if (have >= want)
		return 0; /* nothing new since the last sync */
	int r = fhmap_sync(u->map);
	while (r == 0 && have < want && !atomic_compare_exchange_weak(&u->map_synced, &have, want))
		;
	return r;
}

/* ------------------------------------------------------------------------ */
/* Recovery after a system crash */

struct recovery {
	struct ufs *u;
	int system; /* the system went down: the map may be ahead of the upper layer */
	unsigned long restored, adopted, forgotten, again, conflicts, hints;
};

/* The name hint of @rec names the upper file @st (in its parent's upper
 * directory). */
static int hint_names(struct ufs *u, const fhmap_object *rec, const struct stat *st)
{
	fhmap_object parent;
	struct stat hs;
	int fd, same;

	if (fhmap_get(&parent, u->map, rec->parent) < 0 || !parent.has_upper ||
	    fhmap_open_real(&fd, u->map, &parent.upper, O_RDONLY | O_DIRECTORY) < 0)
		return 0;
	same = fstatat(fd, rec->name, &hs, AT_SYMLINK_NOFOLLOW) == 0 && hs.st_dev == st->st_dev &&
	       hs.st_ino == st->st_ino;
	close(fd);
	return same;
}

/* A rename that reached the upper layer and not the map leaves the hint at
 * the old name, which ".." of a directory handle follows (to a directory
 * that does not list it: ESTALE), as fhmapctl does. A directory has one
 * name; a file keeps a hint that still names it. */
static void hint_fix(struct recovery *rc, uint64_t ino, const char *name, uint64_t parent,
                     const struct stat *st)
{
	struct ufs *u = rc->u;
	fhmap_object rec;

	if (ino == FHMAP_ROOT_INO || fhmap_get(&rec, u->map, ino) < 0 ||
	    (rec.parent == parent && !strcmp(rec.name, name)) ||
	    (!S_ISDIR(st->st_mode) && hint_names(u, &rec, st)))
		return;
	if (fhmap_rename(u->map, ino, parent, name) == 0)
		rc->hints++;
}

/* One upper entry: an unmapped file with an identity of this map, or a
 * mapped one whose hint is stale (@parent 0: in the index, no name of the
 * union). Gives the object of a directory to walk into (0: none known). */
static uint64_t recover_entry(struct recovery *rc, int dirfd, const char *name, uint64_t parent,
                              const struct stat *st)
{
	struct ufs *u = rc->u;
	char path[FHMAP_PATH_MAX];
	fhmap_realfh fh;
	fhmap_object obj;
	struct ident id;
	enum claim how;
	uint64_t ino = 0;

	if (fhmap_realfh_at(&fh, u->upper.id, dirfd, name) < 0)
		return 0;
	if (fhmap_lookup_upper(&ino, u->map, &fh) == 0) {
		if (parent)
			hint_fix(rc, ino, name, parent, st);
		return ino;
	}
	if (ufs_proc_at(path, sizeof(path), dirfd, name) < 0 || id_get(&id, u, path) < 0)
		return 0; /* no identity: it becomes an object when looked up */
	int r = id_apply(&obj, &how, u, &id, &fh, parent ? parent : FHMAP_ROOT_INO, name,
	                 st->st_mode & S_IFMT);
	if (r < 0) {
		char shown[256];

		rc->conflicts++;
		ufs_log("recovery: '%s' (in directory object %" PRIu64 ") claims object %" PRIu64
		        " which the map gives another file: left alone (%s)",
		        ufs_printable(shown, sizeof(shown), name), parent, id.ino, fhmap_strerror(r));
		return 0;
	}
	rc->restored += how == CLAIM_RESTORED;
	rc->adopted += how == CLAIM_ADOPTED;
	return obj.ino;
}

static void recover_dir(struct recovery *rc, int dirfd, uint64_t dir_ino, int depth)
{
	struct dirent *de;
	DIR *dir;

	if (depth > 4096 || ufs_opendir_at(&dir, dirfd) < 0)
		return;
	while ((de = readdir(dir))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    ufs_is_work_name(rc->u, dir_ino, de->d_name) ||
		    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || ufs_is_whiteout(&st))
			continue;
		uint64_t ino = recover_entry(rc, dirfd, de->d_name, dir_ino, &st);
		if (!S_ISDIR(st.st_mode) || !ino)
			continue;
		int fd = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			recover_dir(rc, fd, ino, depth + 1);
			close(fd);
		}
	}
	closedir(dir);
}

/* A count marked while a lower name was being hidden (ops_ns.c): the
 * name is hidden once anything is at it on the upper layer (nothing was,
 * or the name would not have shown the object), and the count drops. */
static void settle_lowerlinks(struct ufs *u, const char *name)
{
	char hidden[FHMAP_NAME_MAX + 1];
	fhmap_object dir;
	uint64_t parent;
	struct stat st;
	long lower;
	int fd = openat(u->index_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC), dfd, gone = 0;

	if (fd < 0)
		return;
	if (ufs_lowerlinks_get(fd, &lower, &parent, hidden, sizeof(hidden)) == 1) {
		if (fhmap_get(&dir, u->map, parent) == 0 && dir.has_upper &&
		    fhmap_open_real(&dfd, u->map, &dir.upper, O_PATH | O_DIRECTORY) == 0) {
			gone = fstatat(dfd, hidden, &st, AT_SYMLINK_NOFOLLOW) == 0;
			close(dfd);
		}
		ufs_set_lowerlinks(fd, "", gone && lower > 0 ? lower - 1 : lower);
	}
	close(fd);
}

/* A copy in the index with no union name left, no lower name counted and
 * no upper link: a removal of its last name (a rename over it) reached
 * the upper layer and the daemon died before it removed the copy. */
static void forget_nameless(struct recovery *rc, uint64_t ino, const char *name, const struct stat *st)
{
	struct ufs *u = rc->u;
	long lower;
	int fd;

	if (!ino || st->st_nlink != 1 ||
	    (fd = openat(u->index_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return;
	int nameless = ufs_lowerlinks(fd, &lower) == 0 && lower == 0;
	close(fd);
	if (nameless && fhmap_unlink(u->map, ino) == 0) {
		unlinkat(u->index_fd, name, 0);
		rc->forgotten++;
	}
}

/* Copied-up lower hardlinks: their hint cannot be known here; the root
 * stands in for the parent. */
static void recover_index(struct recovery *rc)
{
	struct dirent *de;
	DIR *dir;

	if (ufs_opendir_at(&dir, rc->u->index_fd) < 0)
		return;
	while ((de = readdir(dir))) {
		struct stat st;

		if (de->d_name[0] == '.' ||
		    fstatat(rc->u->index_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		uint64_t ino = recover_entry(rc, rc->u->index_fd, de->d_name, 0, &st);
		settle_lowerlinks(rc->u, de->d_name);
		if (!rc->system)
			forget_nameless(rc, ino, de->d_name, &st);
	}
	closedir(dir);
}

/* A lower object that a removal (unlink, rmdir, rename over it) hid on
 * the upper layer, a whiteout or another file now at its name, before the
 * daemon died: the map still has it (a lower file with several names is
 * left alone: the others may still show it). */
static int origin_hidden(struct ufs *u, const fhmap_object *obj)
{
	fhmap_object parent;
	struct stat st, ost;
	int fd, hidden;

	if (fhmap_get(&parent, u->map, obj->parent) < 0 || !parent.has_upper ||
	    fhmap_open_real(&fd, u->map, &parent.upper, O_RDONLY | O_DIRECTORY) < 0)
		return 0;
	hidden = fstatat(fd, obj->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	         (ufs_is_whiteout(&st) || !S_ISDIR(st.st_mode));
	close(fd);
	if (hidden && obj->type != S_IFDIR && fhmap_open_real(&fd, u->map, &obj->origin, O_PATH) == 0) {
		hidden = fstat(fd, &ost) == 0 && ost.st_nlink == 1;
		close(fd);
	}
	return hidden;
}

/* Records whose upper file is gone. After a daemon crash the upper layer
 * is never behind the map (it is changed first): a removal that had not
 * reached the map, the object is gone. After a system crash the map's
 * commit may have come before the upper filesystem's: born on the upper
 * layer, the object is gone; copied up, its origin is copied up again. */
static void recover_records(struct recovery *rc)
{
	struct ufs *u = rc->u;
	fhmap_object *todo = NULL, obj;
	size_t n = 0, cap = 0;
	fhmap_iter *it;

	if (fhmap_iter_new(&it, u->map, 0) < 0)
		return;
	while (fhmap_iter_next(&obj, it) != -ENOENT) {
		int fd;

		if (obj.state == FHMAP_STATE_ORIGIN && !rc->system && origin_hidden(u, &obj)) {
			rc->forgotten += fhmap_unlink(u->map, obj.ino) == 0;
			continue;
		}
		if (obj.state != FHMAP_STATE_UPPER || !obj.has_upper || obj.ino == FHMAP_ROOT_INO)
			continue;
		if (fhmap_open_real(&fd, u->map, &obj.upper, O_PATH) == 0) {
			close(fd);
			continue;
		}
		if (!obj.has_origin || !rc->system) {
			rc->forgotten += fhmap_unlink(u->map, obj.ino) == 0;
			continue;
		}
		if (n == cap) {
			fhmap_object *g = realloc(todo, (cap = cap ? 2 * cap : 16) * sizeof(*g));
			if (!g)
				break;
			todo = g;
		}
		todo[n++] = obj;
	}
	fhmap_iter_free(it);
	/* parents first: repeat while a round makes progress */
	for (int progress = 1; n && progress;) {
		size_t keep = 0;

		progress = 0;
		for (size_t i = 0; i < n; i++) {
			if (ufs_copy_again(u, &todo[i]) == 0) {
				rc->again++;
				progress = 1;
			} else {
				todo[keep++] = todo[i];
			}
		}
		n = keep;
	}
	for (size_t i = 0; i < n; i++)
		ufs_log("recovery: object %" PRIu64 " lost its upper copy and cannot be copied up again",
		        todo[i].ino);
	rc->conflicts += n;
	free(todo);
}

int ufs_recover_crash(struct ufs *u, int died)
{
	struct recovery rc = { .u = u };
	int r = fhmap_recovery_needed(u->map);

	if (r < 0 || (!r && !died))
		return r;
	rc.system = r;
	ufs_log(rc.system
	            ? "the system went down while the map had updates to commit: recovering them from the "
	              "upper layer"
	            : "the last daemon died: finishing the operations it had begun on the upper layer");
	recover_dir(&rc, u->upper.fd, FHMAP_ROOT_INO, 0);
	recover_index(&rc);
	recover_records(&rc);
	r = fhmap_sync(u->map);
	if (r == 0 && rc.system)
		r = fhmap_recovery_done(u->map);
	ufs_log(
	    "recovery: %lu objects restored, %lu copy-ups adopted, %lu lost objects forgotten, %lu copied up "
	    "again, %lu name hints moved, %lu left alone%s%s",
	    rc.restored, rc.adopted, rc.forgotten, rc.again, rc.hints, rc.conflicts, r ? ": " : "",
	    r ? fhmap_strerror(r) : "");
	return r;
}

/* The work dir is marked while a daemon serves: a mark left behind is a
 * daemon that died, whose last operations (at most one a request thread)
 * may have changed the upper layer and not the map, which comes second. */
int ufs_run_begin(struct ufs *u, int *died)
{
	*died = fgetxattr(u->work_fd, UFS_XATTR_RUNNING, NULL, 0) >= 0;
	if (fsetxattr(u->work_fd, UFS_XATTR_RUNNING, "", 0, 0) < 0)
		return -errno;
	return 0;
}

void ufs_run_end(struct ufs *u)
{
	if (fremovexattr(u->work_fd, UFS_XATTR_RUNNING) < 0)
		ufs_log("work dir: %s: %s", UFS_XATTR_RUNNING, strerror(errno));
}

/* ------------------------------------------------------------------------ */
/* Temporaries */

/* A temporary whose identity names a record that points at it was never
 * placed (or was being removed): its object is forgotten. A hardlink of a
 * live file (st_nlink > 1) or a copy-up in progress (the record still on
 * its origin) is not. */
static void temp_forget(struct ufs *u, const char *path, const struct stat *st)
{
	fhmap_object rec;
	fhmap_realfh fh;
	struct ident id;

	if (id_get(&id, u, path) < 0 || (!S_ISDIR(st->st_mode) && st->st_nlink > 1) ||
	    fhmap_realfh_at(&fh, u->upper.id, AT_FDCWD, path) < 0 || fhmap_get(&rec, u->map, id.ino) < 0)
		return;
	if (rec.state == FHMAP_STATE_UPPER && rec.gen == id.gen && fh_equal(&rec.upper, &fh) &&
	    fhmap_unlink(u->map, id.ino) == 0)
		ufs_map_changed(u, 1);
}

int ufs_work_clean(struct ufs *u)
{
	struct dirent *de;
	DIR *dir;
	int r = ufs_opendir_at(&dir, u->work_fd);

	if (r < 0)
		return r;
	while ((de = readdir(dir))) {
		char path[FHMAP_PATH_MAX];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, UFS_INDEX_NAME) ||
		    fstatat(u->work_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (ufs_proc_at(path, sizeof(path), u->work_fd, de->d_name) == 0)
			temp_forget(u, path, &st);
		if (S_ISDIR(st.st_mode)) {
			int fd = openat(u->work_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd >= 0) {
				ufs_clear_whiteouts(fd);
				close(fd);
			}
		}
		ufs_remove_any(u->work_fd, de->d_name);
	}
	closedir(dir);
	return 0;
}
