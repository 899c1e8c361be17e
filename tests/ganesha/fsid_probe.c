/*
 * fsid-probe PATH: prints the filesystem id that each of statfs, statfs64,
 * fstatfs, fstatfs64, statvfs, statvfs64, fstatvfs and fstatvfs64 reports
 * for PATH, as "NAME VAL0 VAL1" (the two 32-bit words, hex), so that
 * tests/ganesha/fsid_preload.sh can compare them with and without
 * libfhmap-fsid.so preloaded. A call that fails, or that changes errno
 * although it succeeded, makes the probe exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define ERRNO_MARK 4242

static int report(const char *name, int r, uint32_t v0, uint32_t v1)
{
	if (r != 0) {
		fprintf(stderr, "fsid-probe: %s: %s\n", name, strerror(errno));
		return 1;
	}
	if (errno != ERRNO_MARK) {
		fprintf(stderr, "fsid-probe: %s succeeded but changed errno to %d\n", name, errno);
		return 1;
	}
	printf("%s %08x %08x\n", name, v0, v1);
	return 0;
}

/* statvfs packs the two words into one unsigned long (glibc: val0 low). */
static int report_vfs(const char *name, int r, unsigned long fsid)
{
	return report(name, r, (uint32_t)fsid, (uint32_t)(fsid >> 32));
}

int main(int argc, char **argv)
{
	struct statfs a;
	struct statfs64 b;
	struct statvfs c;
	struct statvfs64 d;
	int fd, r, bad = 0;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	if (argc != 2) {
		fputs("usage: fsid-probe PATH\n", stderr);
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "fsid-probe: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* Each call runs with errno set to the mark. */
#define PROBE(call) (errno = ERRNO_MARK, (call))
	r = PROBE(statfs(argv[1], &a));
	bad |= report("statfs", r, (uint32_t)a.f_fsid.__val[0], (uint32_t)a.f_fsid.__val[1]);
	r = PROBE(statfs64(argv[1], &b));
	bad |= report("statfs64", r, (uint32_t)b.f_fsid.__val[0], (uint32_t)b.f_fsid.__val[1]);
	r = PROBE(fstatfs(fd, &a));
	bad |= report("fstatfs", r, (uint32_t)a.f_fsid.__val[0], (uint32_t)a.f_fsid.__val[1]);
	r = PROBE(fstatfs64(fd, &b));
	bad |= report("fstatfs64", r, (uint32_t)b.f_fsid.__val[0], (uint32_t)b.f_fsid.__val[1]);
	r = PROBE(statvfs(argv[1], &c));
	bad |= report_vfs("statvfs", r, c.f_fsid);
	r = PROBE(statvfs64(argv[1], &d));
	bad |= report_vfs("statvfs64", r, d.f_fsid);
	r = PROBE(fstatvfs(fd, &c));
	bad |= report_vfs("fstatvfs", r, c.f_fsid);
	r = PROBE(fstatvfs64(fd, &d));
	bad |= report_vfs("fstatvfs64", r, d.f_fsid);
	close(fd);
	return bad;
}
