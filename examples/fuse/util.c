/* Small helpers shared by the daemon's files. */
#define _GNU_SOURCE
#include "unionfs.h"

#include <dirent.h>
#include <errno.h>
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

/* @fd may be an O_PATH fd: its /proc path reaches the file. */
int ufs_lowerlinks(int fd, long *out)
{
	char path[64], val[32], *end;

	ufs_proc_path(path, sizeof(path), fd);
	ssize_t n = getxattr(path, UFS_XATTR_LOWERLINKS, val, sizeof(val) - 1);
	if (n < 0)
		return -errno;
	val[n] = '\0';
	long v = strtol(val, &end, 10);
	if (end == val || *end || v < 0)
		return -EUCLEAN;
	*out = v;
	return 0;
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
