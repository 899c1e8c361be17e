/*
 * Layer scanning and object identity.
 *
 * A name is looked up on the upper layer first, then on the lower layers of
 * its directory, topmost first, overlayfs style: a whiteout (character
 * device 0/0) hides the name in the layers below, a non-directory hides
 * everything below, and an opaque directory (trusted.overlay.opaque = "y")
 * stops the merge. The object of the name comes from libfhmap:
 *   - found on a lower layer: fhmap_bind() of the topmost lower real handle,
 *     so every name of a lower inode (hardlinks) is one object;
 *   - found on the upper layer: fhmap_lookup_upper() of its real handle,
 *     which finds copied-up objects too; an unmapped upper directory that
 *     merges with a lower one is adopted (bound by origin, then committed
 *     as its copy-up); any other unmapped upper entry is a new object.
 * Nodeids are object numbers and are never dereferenced: every operation
 * reads the object record from libfhmap. The node cache below only counts
 * kernel lookups and keeps the immutable lower path of directories.
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

struct ufs_node {
	uint64_t ino;
	uint64_t nlookup;
	char *lpath;     /* lower path of a directory, once computed */
	int kept_fd;     /* O_PATH fd of an unlinked object the kernel holds */
	struct ufs_node *next;
};

static size_t node_bucket(uint64_t ino, size_t nbuckets)
{
	ino *= 0x9E3779B97F4A7C15ull;
	return (size_t)(ino >> 32) & (nbuckets - 1);
}

static struct ufs_node *node_find(uint64_t ino)
{
	if (!ufs.nbuckets)
		return NULL;
	for (struct ufs_node *n = ufs.buckets[node_bucket(ino, ufs.nbuckets)]; n; n = n->next)
		if (n->ino == ino)
			return n;
	return NULL;
}

static void node_grow(void)
{
	size_t nb = ufs.nbuckets ? ufs.nbuckets * 2 : 1024;
	struct ufs_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* keep the old table: the cache is only an optimisation */
	for (size_t i = 0; i < ufs.nbuckets; i++) {
		struct ufs_node *n = ufs.buckets[i], *next;

		for (; n; n = next) {
			size_t h = node_bucket(n->ino, nb);

			next = n->next;
			n->next = b[h];
			b[h] = n;
		}
	}
	free(ufs.buckets);
	ufs.buckets = b;
	ufs.nbuckets = nb;
}

void ufs_node_ref(uint64_t ino)
{
	struct ufs_node *n = node_find(ino);

	if (n) {
		n->nlookup++;
		return;
	}
	if (ufs.nnodes >= ufs.nbuckets)
		node_grow();
	if (!ufs.nbuckets)
		return;
	n = calloc(1, sizeof(*n));
	if (!n)
		return;
	n->ino = ino;
	n->nlookup = 1;
	n->kept_fd = -1;
	size_t h = node_bucket(ino, ufs.nbuckets);
	n->next = ufs.buckets[h];
	ufs.buckets[h] = n;
	ufs.nnodes++;
}

void ufs_node_forget(uint64_t ino, uint64_t nlookup)
{
	if (!ufs.nbuckets)
		return;
	struct ufs_node **pp = &ufs.buckets[node_bucket(ino, ufs.nbuckets)];

	for (; *pp; pp = &(*pp)->next) {
		struct ufs_node *n = *pp;

		if (n->ino != ino)
			continue;
		n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
		if (!n->nlookup) {
			*pp = n->next;
			if (n->kept_fd >= 0)
				close(n->kept_fd);
			free(n->lpath);
			free(n);
			ufs.nnodes--;
		}
		return;
	}
}

void ufs_nodes_free(void)
{
	for (size_t i = 0; i < ufs.nbuckets; i++) {
		struct ufs_node *n = ufs.buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			if (n->kept_fd >= 0)
				close(n->kept_fd);
			free(n->lpath);
			free(n);
		}
	}
	free(ufs.buckets);
	ufs.buckets = NULL;
	ufs.nbuckets = ufs.nnodes = 0;
}

/* An object losing its last name may still be open through the kernel:
 * keep its real inode reachable for getattr until the kernel forgets it
 * (opening it by handle once its link count is 0 would fail). */
void ufs_node_keep(const fhmap_object *obj)
{
	struct ufs_node *n = node_find(obj->ino);
	int fd;

	if (n && n->kept_fd < 0 && ufs_open_live(&fd, obj, O_PATH) == 0)
		n->kept_fd = fd;
}

int ufs_node_kept_fd(uint64_t ino)
{
	struct ufs_node *n = node_find(ino);

	return n ? n->kept_fd : -1;
}

int ufs_node_kept_stat(struct stat *st, uint64_t ino)
{
	struct ufs_node *n = node_find(ino);

	if (!n || n->kept_fd < 0)
		return -ESTALE;
	if (fstat(n->kept_fd, st) < 0)
		return -errno;
	st->st_ino = ino;
	st->st_nlink = 0;
	return 0;
}

int ufs_obj_get(fhmap_object *obj, uint64_t ino)
{
	int r = fhmap_get(obj, ufs.map, ino);

	if (r == -ENOENT)
		return -ESTALE; /* a nodeid we never issued */
	if (r < 0)
		return r;
	if (obj->state == FHMAP_STATE_UNLINKED)
		return -ESTALE;
	return 0;
}

int ufs_open_live(int *fd, const fhmap_object *obj, int flags)
{
	if (obj->state == FHMAP_STATE_UPPER && obj->has_upper)
		return fhmap_open_real(fd, ufs.map, &obj->upper, flags);
	if (obj->has_origin)
		return fhmap_open_real(fd, ufs.map, &obj->origin, flags);
	return -EIO;
}

/* A directory stream over the directory @fd names; @fd stays open. */
DIR *ufs_opendir_at(int fd, int *err)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = dfd < 0 ? NULL : fdopendir(dfd);

	if (!dir) {
		*err = -errno;
		if (dfd >= 0)
			close(dfd);
	}
	return dir;
}

int ufs_proc_path(char *buf, size_t size, int fd)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d", fd);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int ufs_lowerlinks(int fd, long *out)
{
	char path[64], val[32];

	if (ufs_proc_path(path, sizeof(path), fd))
		return -ENAMETOOLONG;
	ssize_t n = getxattr(path, UFS_XATTR_LOWERLINKS, val, sizeof(val) - 1);
	if (n < 0)
		return -errno;
	val[n] = '\0';
	char *end;
	long v = strtol(val, &end, 10);
	if (end == val || *end || v < 0)
		return -EUCLEAN;
	*out = v;
	return 0;
}

int ufs_set_lowerlinks(int fd, long value)
{
	char path[64], val[32];

	if (ufs_proc_path(path, sizeof(path), fd))
		return -ENAMETOOLONG;
	int n = snprintf(val, sizeof(val), "%ld", value);
	if (setxattr(path, UFS_XATTR_LOWERLINKS, val, (size_t)n, 0) < 0)
		return -errno;
	return 0;
}

int ufs_stat(struct stat *st, const fhmap_object *obj)
{
	int fd, r = ufs_open_live(&fd, obj, O_PATH);

	if (r < 0)
		return r;
	if (fstat(fd, st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	long lower = 0;
	if (S_ISDIR(st->st_mode))
		st->st_nlink = 1; /* merged directories: "unknown" as on btrfs */
	else if (obj->state == FHMAP_STATE_UPPER && ufs_lowerlinks(fd, &lower) == 0)
		st->st_nlink = (nlink_t)lower + st->st_nlink - 1; /* minus the index link */
	close(fd);
	st->st_ino = obj->ino;
	return 0;
}

int ufs_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static int fd_is_opaque(int fd)
{
	char v[2];
	ssize_t n = fgetxattr(fd, UFS_XATTR_OPAQUE, v, sizeof(v));

	return n == 1 && v[0] == 'y';
}

int ufs_is_work_name(const struct ufs_dir *d, const char *name)
{
	return ufs.hide_work && d->obj.ino == FHMAP_ROOT_INO && !strcmp(name, UFS_WORK_NAME);
}

/* Path of a directory on the lower layers, from its origin handle: a
 * directory opened by handle is always connected, so /proc gives its path. */
static int lower_path(char **out, const fhmap_object *obj, int origin_fd, const struct ufs_layer *l)
{
	struct ufs_node *n = node_find(obj->ino);
	char proc[64], buf[FHMAP_PATH_MAX];

	if (n && n->lpath) {
		*out = strdup(n->lpath);
		return *out ? 0 : -ENOMEM;
	}
	if (ufs_proc_path(proc, sizeof(proc), origin_fd))
		return -ENAMETOOLONG;
	ssize_t len = readlink(proc, buf, sizeof(buf) - 1);
	if (len < 0)
		return -errno;
	buf[len] = '\0';
	size_t rl = strlen(l->root);
	if (strncmp(buf, l->root, rl) || (buf[rl] && buf[rl] != '/'))
		return -EIO; /* the origin is not below its layer root */
	const char *rel = buf + rl;
	while (*rel == '/')
		rel++;
	*out = strdup(*rel ? rel : ".");
	if (!*out)
		return -ENOMEM;
	if (n)
		n->lpath = strdup(*out);
	return 0;
}

static int layer_index(uint32_t id, size_t *out)
{
	for (size_t i = 0; i < ufs.nlowers; i++)
		if (ufs.lowers[i].id == id) {
			*out = i;
			return 0;
		}
	return -ENXIO;
}

int ufs_dir_lower_path(char **out, const struct ufs_dir *d)
{
	size_t i;
	int r = d->nlower ? layer_index(d->lower_id[0], &i) : -ENOENT;

	return r ? r : lower_path(out, &d->obj, d->lower_fd[0], &ufs.lowers[i]);
}

/* Opens the lower stack of a directory object: its origin, then the same
 * path on every lower layer below, up to a non-directory, whiteout or
 * opaque directory. */
static int dir_open_lowers(struct ufs_dir *d)
{
	size_t first;
	int fd, r = layer_index(d->obj.origin.layer, &first);
	char *lpath = NULL;

	if (r < 0)
		return r;
	r = fhmap_open_real(&fd, ufs.map, &d->obj.origin, O_RDONLY | O_DIRECTORY);
	if (r < 0)
		return r;
	d->lower_id[d->nlower] = ufs.lowers[first].id;
	d->lower_fd[d->nlower++] = fd;
	if (fd_is_opaque(fd))
		return 0;
	r = lower_path(&lpath, &d->obj, fd, &ufs.lowers[first]);
	if (r < 0)
		return r;
	for (size_t i = first + 1; i < ufs.nlowers; i++) {
		struct stat st;

		if (fstatat(ufs.lowers[i].fd, lpath, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			r = -errno;
			break;
		}
		if (!S_ISDIR(st.st_mode))
			break;
		fd = openat(ufs.lowers[i].fd, lpath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			break;
		}
		d->lower_id[d->nlower] = ufs.lowers[i].id;
		d->lower_fd[d->nlower++] = fd;
		if (fd_is_opaque(fd))
			break;
	}
	free(lpath);
	return r;
}

int ufs_dir_open(struct ufs_dir *d, uint64_t ino)
{
	int r;

	d->upper_fd = -1;
	d->opaque = 0;
	d->nlower = 0;
	d->lower_fd = calloc(ufs.nlowers ? ufs.nlowers : 1, sizeof(int));
	d->lower_id = calloc(ufs.nlowers ? ufs.nlowers : 1, sizeof(uint32_t));
	if (!d->lower_fd || !d->lower_id) {
		free(d->lower_fd);
		free(d->lower_id);
		d->lower_fd = NULL;
		d->lower_id = NULL;
		return -ENOMEM;
	}
	r = ufs_obj_get(&d->obj, ino);
	if (r < 0)
		goto fail;
	if (d->obj.type != S_IFDIR) {
		r = -ENOTDIR;
		goto fail;
	}
	if (d->obj.state == FHMAP_STATE_UPPER && d->obj.has_upper) {
		r = fhmap_open_real(&d->upper_fd, ufs.map, &d->obj.upper, O_RDONLY | O_DIRECTORY);
		if (r < 0)
			goto fail;
		d->opaque = fd_is_opaque(d->upper_fd);
	}
	if (d->obj.has_origin && !d->opaque) {
		r = dir_open_lowers(d);
		if (r < 0)
			goto fail;
	}
	return 0;
fail:
	ufs_dir_close(d);
	return r;
}

void ufs_dir_close(struct ufs_dir *d)
{
	if (d->upper_fd >= 0)
		close(d->upper_fd);
	d->upper_fd = -1;
	for (size_t i = 0; i < d->nlower; i++)
		close(d->lower_fd[i]);
	d->nlower = 0;
	free(d->lower_fd);
	free(d->lower_id);
	d->lower_fd = NULL;
	d->lower_id = NULL;
}

/* Makes sure the directory exists on the upper layer (copying it and its
 * ancestors up) and opens that part. */
int ufs_dir_upper(struct ufs_dir *d)
{
	if (d->upper_fd >= 0)
		return 0;
	int r = ufs_copyup(&d->obj, d->obj.ino);
	if (r < 0)
		return r;
	return fhmap_open_real(&d->upper_fd, ufs.map, &d->obj.upper, O_RDONLY | O_DIRECTORY);
}

/* An upper directory nobody mapped that merges with a lower one (made
 * outside the daemon, by overlayfs, or left by a crash): bind its origin,
 * record the upper directory as its copy-up. */
static int adopt_dir(uint64_t *ino, const struct ufs_dir *d, const char *name, const fhmap_realfh *origin,
                     const fhmap_realfh *upper)
{
	fhmap_object obj;
	int r = fhmap_bind(ino, ufs.map, origin, d->obj.ino, name, S_IFDIR);

	if (r == 0)
		r = fhmap_get(&obj, ufs.map, *ino);
	if (r == 0 && obj.state == FHMAP_STATE_ORIGIN) {
		r = fhmap_copyup_begin(ufs.map, *ino, ufs.upper.id);
		if (r == 0) {
			r = fhmap_copyup_commit(ufs.map, *ino, upper);
			if (r < 0)
				fhmap_copyup_abort(ufs.map, *ino);
		}
	}
	return r;
}

/* Lower directory an unmapped upper directory merges with: the one its
 * overlayfs redirect names (absolute from the layer roots, or a name in
 * the parent's lower directories), else the same name below unless the
 * upper directory is opaque. -ENOENT: it merges with nothing. */
static int upper_dir_origin(fhmap_realfh *origin, const struct ufs_dir *d, const char *name,
                            const struct ufs_entry *e, size_t li)
{
	char rd[FHMAP_PATH_MAX];
	struct stat st;
	int fd = openat(d->upper_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = fgetxattr(fd, UFS_XATTR_REDIRECT, rd, sizeof(rd) - 1);
	int opaque = fd_is_opaque(fd);
	close(fd);
	if (n <= 0) {
		if (opaque || !e->lower_entry || !S_ISDIR(e->lower_st.st_mode))
			return -ENOENT;
		return fhmap_realfh_at(origin, d->lower_id[li], d->lower_fd[li], name);
	}
	rd[n] = '\0';
	if (rd[0] == '/') {
		const char *rel = rd;

		while (*rel == '/')
			rel++;
		if (!*rel)
			rel = ".";
		for (size_t i = 0; i < ufs.nlowers; i++)
			if (fstatat(ufs.lowers[i].fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
				return fhmap_realfh_at(origin, ufs.lowers[i].id, ufs.lowers[i].fd, rel);
		return -ENOENT;
	}
	for (size_t i = 0; i < d->nlower; i++) {
		if (fstatat(d->lower_fd[i], rd, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		if (!S_ISDIR(st.st_mode))
			break;
		return fhmap_realfh_at(origin, d->lower_id[i], d->lower_fd[i], rd);
	}
	return -ENOENT;
}

int ufs_resolve(struct ufs_entry *e, const struct ufs_dir *d, const char *name)
{
	struct stat ust = { 0 };
	size_t li = 0;
	uint64_t ino;
	int r;

	memset(e, 0, sizeof(*e));
	if (strlen(name) > FHMAP_NAME_MAX)
		return -ENAMETOOLONG;
	if (ufs_is_work_name(d, name))
		return -ENOENT;
	if (d->upper_fd >= 0) {
		if (fstatat(d->upper_fd, name, &ust, AT_SYMLINK_NOFOLLOW) == 0) {
			if (ufs_is_whiteout(&ust))
				e->upper_whiteout = 1;
			else
				e->on_upper = 1;
		} else if (errno != ENOENT) {
			return -errno;
		}
	}
	if (e->upper_whiteout)
		return -ENOENT;
	for (size_t i = 0; i < d->nlower; i++) {
		if (fstatat(d->lower_fd[i], name, &e->lower_st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		if (!ufs_is_whiteout(&e->lower_st)) {
			e->lower_entry = 1;
			li = i;
		}
		break;
	}
	if (e->on_upper) {
		fhmap_realfh u;

		r = fhmap_realfh_at(&u, ufs.upper.id, d->upper_fd, name);
		if (r < 0)
			return r;
		r = fhmap_lookup_upper(&ino, ufs.map, &u);
		if (r == -ENOENT) {
			fhmap_realfh o;

			if (S_ISDIR(ust.st_mode) && upper_dir_origin(&o, d, name, e, li) == 0)
				r = adopt_dir(&ino, d, name, &o, &u);
			else
				r = fhmap_create_upper(&ino, ufs.map, &u, d->obj.ino, name,
				                       ust.st_mode & S_IFMT);
		}
	} else if (e->lower_entry) {
		fhmap_realfh o;
		uint32_t layer = d->lower_id[li];

		r = fhmap_realfh_at(&o, layer, d->lower_fd[li], name);
		if (r < 0)
			return r;
		r = fhmap_bind(&ino, ufs.map, &o, d->obj.ino, name, e->lower_st.st_mode & S_IFMT);
	} else {
		return -ENOENT;
	}
	if (r < 0)
		return r;
	r = ufs_obj_get(&e->obj, ino);
	/* A directory has exactly one name: if its hint disagrees (a crash
	 * between a rename and fhmap_rename, a rename made outside the daemon),
	 * correct it, since ".." and copy-ups below it follow the hint. */
	if (r == 0 && e->obj.type == S_IFDIR && (e->obj.parent != d->obj.ino || strcmp(e->obj.name, name))) {
		r = fhmap_rename(ufs.map, ino, d->obj.ino, name);
		if (r == 0)
			r = ufs_obj_get(&e->obj, ino);
	}
	return r;
}

/* Set of names already seen while merging a directory (open addressing). */
struct name_set {
	char **slots;
	size_t cap;
	size_t used;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* Returns 1 if added, 0 if already present, -ENOMEM. */
static int name_set_add(struct name_set *set, const char *name)
{
	if (2 * (set->used + 1) > set->cap) {
		size_t nc = set->cap ? set->cap * 2 : 64;
		char **ns = calloc(nc, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		for (size_t i = 0; i < set->cap; i++) {
			if (!set->slots[i])
				continue;
			size_t j = name_hash(set->slots[i]) & (nc - 1);
			while (ns[j])
				j = (j + 1) & (nc - 1);
			ns[j] = set->slots[i];
		}
		free(set->slots);
		set->slots = ns;
		set->cap = nc;
	}
	size_t j = name_hash(name) & (set->cap - 1);
	for (; set->slots[j]; j = (j + 1) & (set->cap - 1))
		if (!strcmp(set->slots[j], name))
			return 0;
	set->slots[j] = strdup(name);
	if (!set->slots[j])
		return -ENOMEM;
	set->used++;
	return 1;
}

static void name_set_free(struct name_set *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->slots[i]);
	free(set->slots);
}

static int list_add(struct ufs_list *l, const char *name, uint64_t ino, mode_t type)
{
	if (l->count == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 32;
		struct ufs_dirent *ne = realloc(l->ents, nc * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		l->ents = ne;
		l->cap = nc;
	}
	l->ents[l->count].name = strdup(name);
	if (!l->ents[l->count].name)
		return -ENOMEM;
	l->ents[l->count].ino = ino;
	l->ents[l->count].type = type;
	l->count++;
	return 0;
}

void ufs_list_free(struct ufs_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->ents[i].name);
	free(l->ents);
	memset(l, 0, sizeof(*l));
}

static mode_t dtype_mode(unsigned char t)
{
	switch (t) {
	case DT_DIR: return S_IFDIR;
	case DT_REG: return S_IFREG;
	case DT_LNK: return S_IFLNK;
	case DT_CHR: return S_IFCHR;
	case DT_BLK: return S_IFBLK;
	case DT_FIFO: return S_IFIFO;
	case DT_SOCK: return S_IFSOCK;
	default: return 0;
	}
}

/* Adds the names of one real directory that no layer above has shown or
 * whited out. */
static int list_layer(struct ufs_list *out, struct name_set *seen, const struct ufs_dir *d, int fd,
                      int is_upper)
{
	struct dirent *de;
	int r = 0;
	DIR *dir = ufs_opendir_at(fd, &r);

	if (!dir)
		return r;
	while ((errno = 0, de = readdir(dir))) {
		const char *n = de->d_name;
		mode_t type = dtype_mode(de->d_type);

		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (is_upper && ufs_is_work_name(d, n))
			continue;
		if (!type || type == S_IFCHR) {
			struct stat st;

			if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue; /* vanished meanwhile */
			type = st.st_mode & S_IFMT;
			if (ufs_is_whiteout(&st))
				type = 0;
		}
		r = name_set_add(seen, n);
		if (r < 0)
			break;
		/* the first layer showing a name decides; whiteouts only hide */
		if (r == 1 && type) {
			r = list_add(out, n, 0, type);
			if (r < 0)
				break;
		}
		r = 0;
	}
	if (!r && errno)
		r = -errno;
	closedir(dir);
	return r;
}

/* Resolves entries [from, to) in one batch; -EAGAIN: redo it. */
static int list_resolve_batch(struct ufs_list *l, const struct ufs_dir *d, size_t from, size_t to)
{
	int r = fhmap_batch_begin(ufs.map);

	if (r < 0)
		return r;
	for (size_t i = from; i < to; i++) {
		struct ufs_entry e;

		r = ufs_resolve(&e, d, l->ents[i].name);
		if (r == -EAGAIN) {
			fhmap_batch_abort(ufs.map);
			return r;
		}
		/* an entry that vanished or cannot be resolved is left out */
		l->ents[i].ino = r == 0 ? e.obj.ino : 0;
		if (r == 0)
			l->ents[i].type = e.obj.type;
	}
	return fhmap_batch_commit(ufs.map);
}

/* Gives every listed name its object (readdir's d_ino is the st_ino a
 * lookup returns: the kernel reconnects directory handles by it). New
 * objects are bound in batches of UFS_BATCH, one commit each. */
#define UFS_BATCH 1000
static int list_resolve(struct ufs_list *l, const struct ufs_dir *d)
{
	for (size_t from = 0; from < l->count; from += UFS_BATCH) {
		size_t to = l->count - from > UFS_BATCH ? from + UFS_BATCH : l->count;
		int r = -EAGAIN;

		/* -EAGAIN: the map grew during the batch; it is redone */
		for (int attempt = 0; attempt < 3 && r == -EAGAIN; attempt++)
			r = list_resolve_batch(l, d, from, to);
		if (r < 0)
			return r;
	}
	return 0;
}

int ufs_list_merged(struct ufs_list *out, const struct ufs_dir *d, int resolve)
{
	struct name_set seen = { 0 };
	int r = 0;

	memset(out, 0, sizeof(*out));
	if (d->upper_fd >= 0)
		r = list_layer(out, &seen, d, d->upper_fd, 1);
	for (size_t i = 0; !r && i < d->nlower; i++)
		r = list_layer(out, &seen, d, d->lower_fd[i], 0);
	name_set_free(&seen);
	if (!r && resolve)
		r = list_resolve(out, d);
	if (r < 0)
		ufs_list_free(out);
	return r;
}

int ufs_clear_whiteouts(int dirfd)
{
	struct dirent *de;
	int r = 0;
	DIR *dir = ufs_opendir_at(dirfd, &r);

	if (!dir)
		return r;
	while ((de = readdir(dir))) {
		struct stat st;

		if (de->d_type != DT_CHR && de->d_type != DT_UNKNOWN)
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && ufs_is_whiteout(&st) &&
		    unlinkat(dirfd, de->d_name, 0) < 0) {
			r = -errno;
			break;
		}
	}
	closedir(dir);
	return r;
}
