/* fhmap-commitpair: what group commit costs a single FULL writer. One
 * thread binds new objects into two maps, one opened with this library and
 * one with an earlier one (loaded with dlopen), in alternating blocks of
 * updates: A B, then B A, and so on, each block timed. The flush latency of
 * a shared disk drifts by several times within seconds; a block pair lasts
 * tens of milliseconds, so the drift hits both libraries of a pair alike.
 * Prints
 *
 *   @gcpair <median new/old time> <its 95 % interval> <p10> <p90> <pairs>
 *           <old updates/s> <new updates/s> <old version> <new version>
 *
 * (the interval from order statistics: ranks n/2 -+ 0.98 sqrt(n)).
 * Only API both libraries have: fhmap_open (options version 1), fhmap_close,
 * fhmap_layer_add, fhmap_bind in FHMAP_SYNC_FULL. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

/* One library: its entry points, resolved in it (RTLD_DEEPBIND: its own
 * calls between its functions stay inside it too). */
typedef struct lib {
	const char *path;
	const char *(*version)(void);
	int (*open)(fhmap **, const char *, const fhmap_open_options *);
	void (*close)(fhmap *);
	int (*layer_add)(uint32_t *, fhmap *, fhmap_layer_role, const char *);
	int (*bind)(uint64_t *, fhmap *, const fhmap_realfh *, uint64_t, const char *, uint32_t);
	fhmap *map;
	uint32_t lower;
	uint64_t root;
	size_t next;     /* objects bound so far */
	uint64_t ns;     /* time in timed blocks */
	size_t timed;    /* updates in timed blocks */
} lib;

static void *sym(void *h, const char *path, const char *name)
{
	void *p = dlsym(h, name);
	if (!p) {
		fprintf(stderr, "fhmap-commitpair: %s: no %s\n", path, name);
		exit(1);
	}
	return p;
}

static void lib_load(lib *l)
{
	void *h = dlopen(l->path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!h) {
		fprintf(stderr, "fhmap-commitpair: %s\n", dlerror());
		exit(1);
	}
	*(void **)&l->version = sym(h, l->path, "fhmap_version");
	*(void **)&l->open = sym(h, l->path, "fhmap_open");
	*(void **)&l->close = sym(h, l->path, "fhmap_close");
	*(void **)&l->layer_add = sym(h, l->path, "fhmap_layer_add");
	*(void **)&l->bind = sym(h, l->path, "fhmap_bind");
}

static void lib_setup(lib *l, const char *dir, const char *name)
{
	char path[FHMAP_PATH_MAX], sub[64];
	/* Version 1 of the options: both libraries know it. */
	fhmap_open_options oo = FHMAP_OPEN_OPTIONS_INIT;
	oo.version = 1;
	oo.flags = FHMAP_OPEN_CREATE;
	oo.sync = FHMAP_SYNC_FULL;
	oo.map_size = 1ull << 30;
	snprintf(sub, sizeof sub, "map-%s", name);
	bench_path_join(path, dir, sub);
	int rc = l->open(&l->map, path, &oo);
	bench_path_join(path, dir, "lower");
	if (!rc)
		rc = l->layer_add(&l->lower, l->map, FHMAP_LAYER_LOWER, path);
	fhmap_realfh fh;
	bench_synth_realfh(&fh, l->lower, 0, 0);
	if (!rc)
		rc = l->bind(&l->root, l->map, &fh, 0, "", S_IFDIR);
	if (rc)
		bench_die(l->path, rc);
}

/* Binds @n new objects, one call each; returns the time they took. */
static uint64_t block(lib *l, size_t n)
{
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++, l->next++) {
		fhmap_realfh fh;
		char name[32];
		uint64_t ino;
		bench_synth_realfh(&fh, l->lower, 1 + l->next, 0);
		snprintf(name, sizeof name, "f%09zu", l->next);
		int rc = l->bind(&ino, l->map, &fh, l->root, name, S_IFREG);
		if (rc)
			bench_die(l->path, rc);
	}
	return bench_now_ns() - t0;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "dir", 1, NULL, 'd' },     { "old", 1, NULL, 'o' },
		                            { "new", 1, NULL, 'n' },     { "seconds", 1, NULL, 's' },
		                            { "block", 1, NULL, 'b' },   { NULL, 0, NULL, 0 } };
	const char *dir = NULL;
	lib libs[2] = { { 0 } }; /* old, new */
	double seconds = 20;
	size_t bsize = 10;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'o': libs[0].path = optarg; break;
		case 'n': libs[1].path = optarg; break;
		case 's': seconds = strtod(optarg, NULL); break;
		case 'b': bsize = strtoul(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (!dir || dir[0] != '/' || !libs[0].path || !libs[1].path || !(seconds > 0) || !bsize || optind != argc)
		goto usage;
	int rc = bench_rmtree(dir);
	if (!rc)
		rc = bench_mkdirs(dir);
	if (rc)
		bench_die(dir, rc);
	for (int j = 0; j < 2; j++) {
		lib_load(&libs[j]);
		lib_setup(&libs[j], dir, j ? "new" : "old");
		block(&libs[j], bsize); /* warm-up */
	}
	size_t cap = 1024, n = 0;
	double *ratio = malloc(cap * sizeof *ratio);
	uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
	while (ratio && bench_now_ns() < end) {
		uint64_t ns[2];
		int first = n & 1; /* alternate: neither library always runs second */
		ns[first] = block(&libs[first], bsize);
		ns[!first] = block(&libs[!first], bsize);
		for (int j = 0; j < 2; j++) {
			libs[j].ns += ns[j];
			libs[j].timed += bsize;
		}
		if (n == cap && !(ratio = realloc(ratio, (cap *= 2) * sizeof *ratio)))
			break;
		ratio[n++] = (double)ns[1] / (double)ns[0];
	}
	if (!ratio || !n)
		bench_die("out of memory, or no block pair", -ENOMEM);
	qsort(ratio, n, sizeof *ratio, cmp_dbl);
	size_t half = (size_t)(0.98 * sqrt((double)n));
	printf("@gcpair %.4f %.4f %.4f %.4f %.4f %zu %.1f %.1f %s %s\n", ratio[n / 2], ratio[n / 2 > half ? n / 2 - half : 0],
	       ratio[n / 2 + half < n ? n / 2 + half : n - 1], ratio[n / 10], ratio[n - 1 - n / 10], n,
	       (double)libs[0].timed * 1e9 / (double)libs[0].ns, (double)libs[1].timed * 1e9 / (double)libs[1].ns,
	       libs[0].version(), libs[1].version());
	for (int j = 0; j < 2; j++)
		libs[j].close(libs[j].map);
	free(ratio);
	bench_rmtree(dir);
	return 0;
usage:
	fprintf(stderr, "usage: fhmap-commitpair --dir DIR --old LIBFHMAP.so --new LIBFHMAP.so [--seconds S] [--block N]\n"
	                "  --dir      work directory on the disk to measure (created; emptied first)\n"
	                "  --old/new  the two libraries (paths)\n"
	                "  --seconds  how long to alternate (20), --block updates per block (10)\n");
	return 2;
}
