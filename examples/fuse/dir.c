/*
 * A directory's layers and its merged names, overlayfs style: the upper
 * part first, then the lower parts topmost first. A whiteout (character
 * device 0/0) hides a name in the layers below, a non-directory hides
 * everything below, and an opaque directory (trusted.overlay.opaque = "y")
 * stops the merge.
 *
 * A directory object opens its upper part by its upper handle and its
 * lower part by its origin handle; the path of the origin below its layer
 * root (read from /proc/self/fd of the connected directory fd), looked up
 * as overlayfs does (lowers.c), gives the directories of the layers below.
 * That path never changes, so a renamed lower directory keeps merging with
 * its lower directories.
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

int ufs_is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

int ufs_fd_opaque(int fd)
{
	char v[2];
	ssize_t n = fgetxattr(fd, UFS_XATTR_OPAQUE, v, sizeof(v));

	return n == 1 && v[0] == 'y';
}

int ufs_is_work_name(const struct ufs *u, uint64_t dir_ino, const char *name)
{
	return u->hide_work && dir_ino == FHMAP_ROOT_INO && !strcmp(name, UFS_WORK_NAME);
}

static int layer_index(const struct ufs *u, uint32_t id, size_t *out)
{
	for (size_t i = 0; i < u->nlowers; i++)
		if (u->lowers[i].id == id) {
			*out = i;
			return 0;
		}
	return -ENXIO;
}

/* Path of a directory below its lower layer root, from a connected fd of
 * it: a directory opened by handle is always connected. */
static int lower_path(char **out, int fd, const struct ufs_layer *l)
{
	char proc[64], buf[FHMAP_PATH_MAX];

	if (ufs_proc_path(proc, sizeof(proc), fd))
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
	return *out ? 0 : -ENOMEM;
}

/* Opens the lower stack of a directory object: its origin, then the
 * directories overlayfs merges with it on the layers below (lowers.c). */
static int open_lowers(struct ufs_layers *l, struct ufs *u, const fhmap_object *obj)
{
	struct ufs_walk w;
	size_t first;
	int fd, r = layer_index(u, obj->origin.layer, &first);

	if (r < 0)
		return r;
	r = fhmap_open_real(&fd, u->map, &obj->origin, O_RDONLY | O_DIRECTORY);
	if (r < 0)
		return r;
	l->lower[l->nlower].id = u->lowers[first].id;
	l->lower[l->nlower++].fd = fd;
	if (first + 1 == u->nlowers)
		return 0; /* nothing below to merge with */
	r = lower_path(&l->lpath, fd, &u->lowers[first]);
	if (r == 0)
		r = ufs_walk_init(&w, l->lpath);
	/* the origin's own layer: for the markers on its path */
	if (r == 0 && (r = ufs_walk_layer(&fd, &w, u, first)) == 0)
		close(fd);
	for (size_t i = first + 1; r == 0 && !w.stop && i < u->nlowers; i++) {
		r = ufs_walk_layer(&fd, &w, u, i);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r == 0) {
			l->lower[l->nlower].id = u->lowers[i].id;
			l->lower[l->nlower++].fd = fd;
		}
	}
	return r == -ENOENT ? 0 : r;
}

int ufs_layers_open(struct ufs_layers **out, struct ufs *u, const fhmap_object *obj)
{
	struct ufs_layers *l = calloc(1, sizeof(*l) + (u->nlowers + 1) * sizeof(l->lower[0]));
	int r = 0;

	if (!l)
		return -ENOMEM;
	l->upper_fd = -1;
	if (obj->state == FHMAP_STATE_UPPER && obj->has_upper) {
		r = fhmap_open_real(&l->upper_fd, u->map, &obj->upper, O_RDONLY | O_DIRECTORY);
		if (r == 0)
			l->opaque = ufs_fd_opaque(l->upper_fd);
	}
	if (r == 0 && obj->has_origin && !l->opaque)
		r = open_lowers(l, u, obj);
	if (r < 0) {
		ufs_layers_close(l);
		return r;
	}
	*out = l;
	return 0;
}

void ufs_layers_close(struct ufs_layers *l)
{
	if (!l)
		return;
	if (l->upper_fd >= 0)
		close(l->upper_fd);
	for (size_t i = 0; i < l->nlower; i++)
		close(l->lower[i].fd);
	free(l->lpath);
	free(l);
}

int ufs_layers_nfds(const struct ufs_layers *l)
{
	return (l->upper_fd >= 0) + (int)l->nlower;
}

int ufs_layers_lower_path(char **out, struct ufs *u, const struct ufs_layers *l)
{
	size_t i;
	int r;

	if (!l->nlower)
		return -ENOENT;
	if (l->lpath) {
		*out = strdup(l->lpath);
		return *out ? 0 : -ENOMEM;
	}
	r = layer_index(u, l->lower[0].id, &i);
	return r ? r : lower_path(out, l->lower[0].fd, &u->lowers[i]);
}

/* Set of names already seen while merging a directory (open addressing). */
struct name_set {
	char **slots;
	size_t cap, used;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* Returns 1 if added, 0 if already present, -ENOMEM. The set points at
 * names it does not own. */
static int name_set_add(struct name_set *set, char *name)
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
	set->slots[j] = name;
	set->used++;
	return 1;
}

/* Appends a name; whiteouts (type 0) are kept so that they hide the name
 * below, and dropped when the listing is complete. */
static int names_add(struct ufs_names *l, const char *name, mode_t type)
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
	l->ents[l->count++].type = type;
	return 0;
}

void ufs_names_free(struct ufs_names *l)
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
static int list_layer(struct ufs_names *out, struct name_set *seen, struct ufs *u, uint64_t dir_ino, int fd,
                      int is_upper)
{
	struct dirent *de;
	DIR *dir;
	int r = ufs_opendir_at(&dir, fd);

	if (r < 0)
		return r;
	while ((errno = 0, de = readdir(dir))) {
		const char *n = de->d_name;
		mode_t type = dtype_mode(de->d_type);

		if (!strcmp(n, ".") || !strcmp(n, ".."))
			continue;
		if (is_upper && ufs_is_work_name(u, dir_ino, n))
			continue;
		if (!type || type == S_IFCHR) {
			struct stat st;

			if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue; /* vanished meanwhile */
			type = ufs_is_whiteout(&st) ? 0 : st.st_mode & S_IFMT;
		}
		r = names_add(out, n, type);
		if (r == 0)
			r = name_set_add(seen, out->ents[out->count - 1].name);
		if (r < 0)
			break;
		if (r == 0) { /* a layer above showed or hid it */
			free(out->ents[--out->count].name);
		}
		r = 0;
	}
	if (!r && errno)
		r = -errno;
	closedir(dir);
	return r;
}

int ufs_names_list(struct ufs_names *out, struct ufs *u, uint64_t dir_ino, const struct ufs_layers *l)
{
	struct name_set seen = { 0 };
	int r = 0;
	size_t keep = 0;

	memset(out, 0, sizeof(*out));
	if (l->upper_fd >= 0)
		r = list_layer(out, &seen, u, dir_ino, l->upper_fd, 1);
	for (size_t i = 0; !r && i < l->nlower; i++)
		r = list_layer(out, &seen, u, dir_ino, l->lower[i].fd, 0);
	free(seen.slots);
	if (r < 0) {
		ufs_names_free(out);
		return r;
	}
	for (size_t i = 0; i < out->count; i++) {
		if (out->ents[i].type)
			out->ents[keep++] = out->ents[i];
		else
			free(out->ents[i].name);
	}
	out->count = keep;
	return 0;
}

int ufs_clear_whiteouts(int dirfd)
{
	struct dirent *de;
	DIR *dir;
	int r = ufs_opendir_at(&dir, dirfd);

	if (r < 0)
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
