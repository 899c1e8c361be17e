/* Small helpers shared by the daemon's files. */
#define _GNU_SOURCE
#include "unionfs.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

void ufs_log(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "fhmap-unionfs: %s\n", msg);
}

int ufs_tmp_name(struct ufs *u, char *buf, size_t size, const char *prefix)
{
	unsigned long seq = atomic_fetch_add(&u->tmp_seq, 1) + 1;
	int n = snprintf(buf, size, "%s-%ld-%lu", prefix, u->pid, seq);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int ufs_proc_path(char *buf, size_t size, int fd)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d", fd);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int ufs_proc_at(char *buf, size_t size, int dirfd, const char *name)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d/%s", dirfd, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

const char *ufs_printable(char *out, size_t size, const char *in)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < size; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", *p);
	}
	out[o] = '\0';
	return out;
}

void ufs_remove_any(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) < 0 && (errno == EISDIR || errno == EPERM))
		unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* A directory stream over the directory @fd names; @fd stays open (and
 * its file offset untouched: other threads list it too). */
int ufs_opendir_at(DIR **dir, int fd)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r;

	*dir = dfd < 0 ? NULL : fdopendir(dfd);
	if (*dir)
		return 0;
	r = -errno;
	if (dfd >= 0)
		close(dfd);
	return r;
}

/* @fd may be an O_PATH fd: its /proc path reaches the file. The value is
 * the count, or "COUNT -PARENT NAME" while the lower name PARENT/NAME is
 * being hidden (ufs_lowerlinks_hiding), which counts COUNT until then. */
int ufs_lowerlinks_get(int fd, long *out, uint64_t *parent, char *name, size_t size)
{
	char path[64], val[64 + FHMAP_NAME_MAX], *end;
	int used = 0;

	ufs_proc_path(path, sizeof(path), fd);
	ssize_t n = getxattr(path, UFS_XATTR_LOWERLINKS, val, sizeof(val) - 1);
	if (n < 0)
		return -errno;
	val[n] = '\0';
	long v = strtol(val, &end, 10);
	if (end == val || v < 0)
		return -EUCLEAN;
	*out = v;
	if (!*end)
		return 0;
	if (!parent)
		return 0;
	if (sscanf(end, " -%" SCNu64 " %n", parent, &used) != 1 || !used || !end[used] ||
	    strlen(end + used) >= size)
		return -EUCLEAN;
	snprintf(name, size, "%s", end + used); /* a name may hold spaces */
	return 1;
}

int ufs_lowerlinks(int fd, long *out)
{
	int r = ufs_lowerlinks_get(fd, out, NULL, NULL, 0);

	return r < 0 ? r : 0;
}

int ufs_lowerlinks_hiding(int fd, long value, uint64_t parent, const char *name)
{
	char path[64], val[64 + FHMAP_NAME_MAX];
	int n = snprintf(val, sizeof(val), "%ld -%" PRIu64 " %s", value, parent, name);

	ufs_proc_path(path, sizeof(path), fd);
	return setxattr(path, UFS_XATTR_LOWERLINKS, val, (size_t)n, 0) < 0 ? -errno : 0;
}

int ufs_set_lowerlinks(int fd, const char *name, long value)
{
	char path[FHMAP_PATH_MAX], val[32];
	int n = snprintf(val, sizeof(val), "%ld", value);
	int r = name[0] ? ufs_proc_at(path, sizeof(path), fd, name) : ufs_proc_path(path, sizeof(path), fd);

	if (r < 0)
		return r;
	/* an entry itself, not what a symlink names; or, through its /proc
	 * link, the file of @fd */
	r = name[0] ? lsetxattr(path, UFS_XATTR_LOWERLINKS, val, (size_t)n, 0)
	            : setxattr(path, UFS_XATTR_LOWERLINKS, val, (size_t)n, 0);
	return r < 0 ? -errno : 0;
}
