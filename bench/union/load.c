/*
 * union-load: the parts of bench/union/run.sh that a shell loop would time
 * instead of the filesystem.
 *
 *   union-load tree DIR NDIRS NFILES SIZE
 *       DIR/dNNNN/fNNNNN: NDIRS directories of NFILES files of SIZE bytes.
 *   union-load meta DIR NFILES NTHREADS
 *       NTHREADS threads, each in its own directory DIR/tK with
 *       NFILES/NTHREADS files, run four phases one after the other (create,
 *       stat, rename, unlink); prints "PHASE SECONDS" per phase, the time
 *       from the start of the phase until the last thread finished it.
 *
 * Exit status: 0, 1 when a system call fails (named on stderr), 2 for bad
 * usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { PHASE_CREATE, PHASE_STAT, PHASE_RENAME, PHASE_UNLINK, PHASES };

static const char *const phase_name[PHASES] = { "create", "stat", "rename", "unlink" };

struct worker {
	pthread_t thread;
	pthread_barrier_t *barrier;
	char dir[PATH_MAX];
	unsigned long nfiles;
	int err;          /* errno of the first failure, 0 if none */
	char what[PATH_MAX + 16];
};

_Noreturn static void usage(void)
{
	fprintf(stderr, "usage: union-load tree DIR NDIRS NFILES SIZE\n"
	                "       union-load meta DIR NFILES NTHREADS\n");
	exit(2);
}

static unsigned long number(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > UINT_MAX)
		usage();
	return v;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

_Noreturn static void die(const char *what)
{
	fprintf(stderr, "union-load: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void path(char *out, size_t n, const char *dir, char kind, unsigned long i)
{
	if ((size_t)snprintf(out, n, "%s/%c%05lu", dir, kind, i) >= n) {
		errno = ENAMETOOLONG;
		die(dir);
	}
}

static int mkdir_new(const char *p)
{
	return mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static int tree(const char *dir, unsigned long ndirs, unsigned long nfiles, unsigned long size)
{
	char *buf = malloc(size ? size : 1);
	char d[PATH_MAX], f[PATH_MAX];

	if (!buf)
		die("malloc");
	for (unsigned long i = 0; i < size; i++)
		buf[i] = (char)('a' + i % 26);
	if (mkdir_new(dir) < 0)
		die(dir);
	for (unsigned long i = 0; i < ndirs; i++) {
		path(d, sizeof(d), dir, 'd', i);
		if (mkdir_new(d) < 0)
			die(d);
		for (unsigned long j = 0; j < nfiles; j++) {
			path(f, sizeof(f), d, 'f', j);
			int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

			if (fd < 0 || write(fd, buf, size) != (ssize_t)size || close(fd) < 0)
				die(f);
		}
	}
	free(buf);
	return 0;
}

/* One phase on every file of the worker's directory; 0 or -1 (err, what set). */
static int run_phase(struct worker *w, int phase)
{
	char a[PATH_MAX], b[PATH_MAX];
	struct stat st;

	for (unsigned long i = 0; i < w->nfiles; i++) {
		int r = 0, fd;

		path(a, sizeof(a), w->dir, 'f', i);
		path(b, sizeof(b), w->dir, 'r', i);
		switch (phase) {
		case PHASE_CREATE:
			fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			r = fd < 0 ? -1 : close(fd);
			break;
		case PHASE_STAT:
			r = stat(a, &st);
			break;
		case PHASE_RENAME:
			r = rename(a, b);
			break;
		default:
			r = unlink(b);
			break;
		}
		if (r < 0) {
			w->err = errno;
			snprintf(w->what, sizeof(w->what), "%s %s", phase_name[phase], a);
			return -1;
		}
	}
	return 0;
}

/* Every phase starts and ends at a barrier shared with the timing thread;
 * a failed worker keeps meeting the barriers so that nobody hangs. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int p = 0; p < PHASES; p++) {
		pthread_barrier_wait(w->barrier);
		if (!w->err)
			run_phase(w, p);
		pthread_barrier_wait(w->barrier);
	}
	return NULL;
}

static int meta(const char *dir, unsigned long nfiles, unsigned long nthreads)
{
	struct worker *w = calloc(nthreads, sizeof(*w));
	pthread_barrier_t barrier;
	double t[PHASES];
	int failed = 0;

	if (!w)
		die("calloc");
	if (mkdir_new(dir) < 0)
		die(dir);
	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
	for (unsigned long k = 0; k < nthreads; k++) {
		path(w[k].dir, sizeof(w[k].dir), dir, 't', k);
		if (mkdir_new(w[k].dir) < 0)
			die(w[k].dir);
		w[k].barrier = &barrier;
		w[k].nfiles = nfiles / nthreads + (k < nfiles % nthreads);
		errno = pthread_create(&w[k].thread, NULL, worker_main, &w[k]);
		if (errno)
			die("pthread_create");
	}
	for (int p = 0; p < PHASES; p++) {
		pthread_barrier_wait(&barrier);
		t[p] = now();
		pthread_barrier_wait(&barrier);
		t[p] = now() - t[p];
	}
	for (unsigned long k = 0; k < nthreads; k++) {
		pthread_join(w[k].thread, NULL);
		if (w[k].err) {
			fprintf(stderr, "union-load: %s: %s\n", w[k].what, strerror(w[k].err));
			failed = 1;
		}
	}
	pthread_barrier_destroy(&barrier);
	free(w);
	if (failed)
		return 1;
	for (int p = 0; p < PHASES; p++)
		printf("%s %.6f\n", phase_name[p], t[p]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "tree"))
		return tree(argv[2], number(argv[3]), number(argv[4]), number(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "meta")) {
		unsigned long threads = number(argv[4]);

		if (!threads)
			usage();
		return meta(argv[2], number(argv[3]), threads);
	}
	usage();
}
