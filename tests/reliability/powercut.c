/*
 * A power cut, recorded: preloaded (LD_PRELOAD) into a process writing a
 * map, this library copies the map's data.mdb to $FHMAP_POWERCUT_SNAPSHOT
 * each time a write to it becomes durable: after fdatasync()/fsync() of
 * the file, and after a write through a descriptor opened with O_DSYNC
 * (LMDB's meta page in full sync mode). The copy is what the disk holds
 * at that moment; everything written after it is what a power cut would
 * take away (at worst). rel_powercut kills the process, puts the copy in
 * place of data.mdb and checks what the map promised.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The path of @fd if it is a file named data.mdb. */
static int map_path(int fd, char *path, size_t size)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, size - 1)) <= 0)
		return 0;
	path[n] = '\0';
	return n >= 9 && strcmp(path + n - 9, "/data.mdb") == 0;
}

/* Copies the file behind @fd (LMDB's meta descriptor is write-only: read
 * it by its path) to the snapshot path, atomically. */
static void snapshot(int fd)
{
	const char *to = getenv("FHMAP_POWERCUT_SNAPSHOT");
	char path[PATH_MAX], tmp[PATH_MAX], buf[1 << 16];
	ssize_t n = -1;
	int in, out;

	if (!to || !map_path(fd, path, sizeof(path)))
		return;
	pthread_mutex_lock(&lock);
	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	if ((in = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0) {
			while ((n = read(in, buf, sizeof(buf))) > 0 && write(out, buf, (size_t)n) == n)
				;
			if (close(out) == 0 && n == 0)
				rename(tmp, to);
		}
		close(in);
	}
	pthread_mutex_unlock(&lock);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	int rc;

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if ((rc = real(fd)) == 0)
		snapshot(fd);
	return rc;
}

int fsync(int fd)
{
	static int (*real)(int);
	int rc;

	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	if ((rc = real(fd)) == 0)
		snapshot(fd);
	return rc;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);
	ssize_t rc;
	int fl;

	if (!real)
		real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
	rc = real(fd, buf, n, off);
	if (rc > 0 && (fl = fcntl(fd, F_GETFL)) >= 0 && (fl & O_DSYNC))
		snapshot(fd);
	return rc;
}
