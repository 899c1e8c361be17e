#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_rand(uint64_t *state)
{
	/* splitmix64: fast, and good enough to pick random objects. */
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

void bench_die(const char *what, int err)
{
	fprintf(stderr, "fhmap-bench: %s: %s\n", what, err ? fhmap_strerror(err) : "failed");
	exit(1);
}

void bench_path_join(char *out, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, FHMAP_PATH_MAX, "%s/%s", dir, name) >= FHMAP_PATH_MAX)
		bench_die("path too long", -ENAMETOOLONG);
}

int64_t bench_disk_flushes(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	FILE *f = fopen("/proc/diskstats", "r");
	if (!f)
		return -1;
	char line[512];
	int64_t flushes = -1;
	while (fgets(line, sizeof line, f)) {
		unsigned int maj, min;
		char name[64];
		uint64_t v[17];
		int n = sscanf(line, "%u %u %63s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
		               " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
		               " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
		               &maj, &min, name, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
		               &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16]);
		/* Field 15 after the name is "flush requests completed". */
		if (n >= 3 + 16 && maj == major(st.st_dev) && min == minor(st.st_dev))
			flushes = (int64_t)v[15];
	}
	fclose(f);
	return flushes;
}

void bench_mem_get(bench_mem *out)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		sscanf(line, "VmHWM: %ld", &out->hwm_kib);
		sscanf(line, "RssAnon: %ld", &out->rss_anon_kib);
		sscanf(line, "RssFile: %ld", &out->rss_file_kib);
	}
	fclose(f);
}

uint64_t bench_io_written(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	if (!f)
		return 0;
	char line[128];
	uint64_t v = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "wchar: %" SCNu64, &v) == 1)
			break;
	fclose(f);
	return v;
}

uint64_t bench_file_bytes(const char *path, uint64_t *apparent)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		if (apparent)
			*apparent = 0;
		return 0;
	}
	if (apparent)
		*apparent = (uint64_t)st.st_size;
	return (uint64_t)st.st_blocks * 512u;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -errno;
}

int bench_rmtree(const char *path)
{
	if (access(path, F_OK) != 0)
		return 0;
	return nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int bench_mkdirs(const char *path)
{
	char buf[FHMAP_PATH_MAX];
	if (strlen(path) >= sizeof buf)
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

void bench_synth_realfh(fhmap_realfh *fh, uint32_t layer, size_t idx, uint32_t salt)
{
	uint64_t rs = idx * 2654435761u + salt;
	uint32_t ino32 = (uint32_t)idx + 12 + salt, gen = (uint32_t)bench_rand(&rs);
	memset(fh, 0, offsetof(fhmap_realfh, data));
	fh->layer = layer;
	fh->type = 1;
	fh->len = 8;
	memcpy(fh->data, &ino32, 4);
	memcpy(fh->data + 4, &gen, 4);
}

int bench_drop_caches(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = write(fd, "3", 1) == 1 ? 0 : -errno;
	close(fd);
	return rc;
}
