/*
 * A directory path through the lower layers, as overlayfs looks it up
 * (fs/overlayfs/namei.c), so that layers overlayfs wrote with three or
 * more layers read back the same:
 *   - each layer's path is walked one name at a time and never through a
 *     symlink: a missing name means "not on this layer", a whiteout or a
 *     non-directory on the way ends the stack there;
 *   - an opaque directory on the way ends the stack after this layer;
 *   - a redirect (trusted.overlay.redirect) on the way changes the path
 *     looked up on the layers below: a name replaces the one it is on, an
 *     absolute path replaces everything up to it (and lifts an opaque
 *     ancestor's stop);
 *   - the last layer's markers are not read (nothing below to merge).
 * A redirect is a path inside the layers, never out of them: overlayfs
 * refuses "." and ".." where they are looked up (EACCES, as lookup_one_len
 * does) and a malformed value (EINVAL), and so does this.
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

static atomic_uint redirects_logged;

int ufs_redirect_get(char *buf, size_t size, int fd)
{
	ssize_t n = fgetxattr(fd, UFS_XATTR_REDIRECT, buf, size - 1);

	if (n < 0 && errno == ENODATA)
		return 0;
	if (n < 0 && errno != ERANGE)
		return -errno;
	buf[n < 0 ? 0 : n] = '\0';
	/* a NUL inside ends the value, as overlayfs reads it (a C string) */
	n = n < 0 ? n : (ssize_t)strlen(buf);
	int bad = n <= 0 || (buf[0] != '/' && strchr(buf, '/'));
	for (const char *s = buf; !bad && buf[0] == '/' && *s; s++)
		bad = *s == '/' && (s[1] == '/' || !s[1]); /* an empty name */
	if (!bad)
		return (int)n;
	unsigned int k = atomic_fetch_add(&redirects_logged, 1);
	char shown[256];

	if (k < 8) /* not a flood: every lookup finds it again */
		ufs_log("invalid redirect (%s)%s", ufs_printable(shown, sizeof(shown), buf),
		        k == 7 ? "; no more of these are logged" : "");
	return -EINVAL;
}

int ufs_lookup_name_ok(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..") ? -EACCES : 0;
}

int ufs_walk_init(struct ufs_walk *w, const char *path)
{
	while (*path == '/')
		path++;
	if (!strcmp(path, "."))
		path = "";
	w->stop = 0;
	if (strlen(path) >= sizeof(w->path))
		return -ENAMETOOLONG;
	strcpy(w->path, path);
	return 0;
}

/* The redirect @rd of a name on the way, which with the rest of the path
 * is the last @tail bytes of w->path: the path for the layers below. */
static int walk_redirect(struct ufs_walk *w, const char *rd, size_t tail, const char *post)
{
	char next[FHMAP_PATH_MAX];
	size_t keep = strlen(w->path) - tail;
	int n;

	if (rd[0] == '/') {
		w->stop = 0;
		keep = 0;
		rd++;
	}
	n = snprintf(next, sizeof(next), "%.*s%s%s", (int)keep, w->path, rd, post);
	if (n < 0 || (size_t)n >= sizeof(next))
		return -ENAMETOOLONG;
	memcpy(w->path, next, (size_t)n + 1);
	return 0;
}

/* One directory of the walk, opened below @fd; -ENOENT when it is not
 * there, or not a directory (w->stop set then). */
static int walk_step(int *out, struct ufs_walk *w, int fd, const char *name, int last_layer, size_t tail,
                     const char *post)
{
	char rd[FHMAP_PATH_MAX];
	int r = ufs_lookup_name_ok(name);

	*out = -1;
	if (r < 0)
		return r;
	*out = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*out < 0) {
		if (errno != ENOTDIR && errno != ELOOP)
			return -errno;
		w->stop = 1; /* a whiteout, a file, a symlink: hides what is below */
		return -ENOENT;
	}
	if (last_layer)
		return 0;
	if (ufs_fd_opaque(*out)) {
		w->stop = 1; /* and its redirect does not count */
		return 0;
	}
	r = ufs_redirect_get(rd, sizeof(rd), *out);
	if (r > 0)
		r = walk_redirect(w, rd, tail, post);
	if (r < 0) {
		close(*out);
		*out = -1;
		return r;
	}
	return 0;
}

int ufs_walk_layer(int *fd, struct ufs_walk *w, struct ufs *u, size_t i)
{
	char path[FHMAP_PATH_MAX], name[FHMAP_NAME_MAX + 1];
	int last_layer = i + 1 == u->nlowers, cur = dup(u->lowers[i].fd), r = 0;

	if (cur < 0)
		return -errno;
	memcpy(path, w->path, sizeof(path)); /* this layer walks the path as it came */
	for (const char *p = path, *post; r == 0 && *p; p = *post ? post + 1 : post) {
		int next = -1;

		post = strchrnul(p, '/');
		if ((size_t)(post - p) > FHMAP_NAME_MAX) {
			r = -ENOENT; /* a redirect's name no layer can hold: found nowhere, as in overlayfs */
			w->stop = 1;
		} else {
			memcpy(name, p, (size_t)(post - p));
			name[post - p] = '\0';
			r = walk_step(&next, w, cur, name, last_layer, strlen(p), post);
		}
		close(cur);
		cur = next;
	}
	if (r < 0)
		return r;
	*fd = cur;
	return 0;
}
