/* fhmap-pgbench: decode, lookup and bind on a PostgreSQL map next to an
 * LMDB map, in one run (bench/pg/run.sh starts the server). Prints one
 * line per backend and operation: operations, seconds, operations per
 * second, mean microseconds per operation. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <fhmap/fhmap.h>

#define THREADS 4

static size_t n_objects = 2000;
static uint32_t layer;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static fhmap_realfh fake(size_t n)
{
	fhmap_realfh fh;

	memset(&fh, 0, sizeof(fh));
	fh.layer = layer;
	fh.type = 1;
	fh.len = 8;
	memcpy(fh.data, &n, 8);
	return fh;
}

static void check(int rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "fhmap-pgbench: %s: %s\n", what, fhmap_strerror(rc));
		exit(1);
	}
}

static void report(const char *backend, const char *op, size_t ops, double secs)
{
	printf("%-10s %-14s %8zu ops %8.3f s %10.0f ops/s %9.1f us/op\n", backend, op, ops, secs, (double)ops / secs,
	       secs * 1e6 / (double)ops);
	fflush(stdout);
}

struct binder {
	fhmap *m;
	size_t from, to;
	uint64_t *inos;
};

static void *bind_range(void *arg)
{
	struct binder *b = arg;

	for (size_t i = b->from; i < b->to; i++) {
		fhmap_realfh fh = fake(i);

		check(fhmap_bind(&b->inos[i], b->m, &fh, FHMAP_ROOT_INO, "f", S_IFREG), "bind");
	}
	return NULL;
}

/* Binds [from, to) with @threads threads; returns the seconds taken. */
static double bind_all(fhmap *m, uint64_t *inos, size_t from, size_t to, unsigned int threads)
{
	struct binder b[THREADS];
	pthread_t t[THREADS];
	double start = now();
	size_t per = (to - from) / threads;

	for (unsigned int i = 0; i < threads; i++) {
		b[i] = (struct binder){ m, from + i * per, i + 1 == threads ? to : from + (i + 1) * per, inos };
		pthread_create(&t[i], NULL, bind_range, &b[i]);
	}
	for (unsigned int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return now() - start;
}

static void run(const char *backend, const char *location, const char *lower)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	size_t half = n_objects / 2;
	uint64_t *inos = calloc(n_objects, sizeof(*inos)), root;
	unsigned char (*handles)[FHMAP_FH_MAX] = malloc(n_objects * FHMAP_FH_MAX);
	size_t *lens = calloc(n_objects, sizeof(*lens));
	fhmap_realfh rootfh;
	unsigned int seed = 1;
	double start;
	fhmap *m;

	o.flags = FHMAP_OPEN_CREATE;
	check(fhmap_open(&m, location, &o), location);
	check(fhmap_layer_add(&layer, m, FHMAP_LAYER_LOWER, lower), "layer");
	rootfh = fake((size_t)-1);
	check(fhmap_bind(&root, m, &rootfh, 0, "", S_IFDIR), "root");
	report(backend, "bind 1 thread", half, bind_all(m, inos, 0, half, 1));
	report(backend, "bind 4 threads", n_objects - half, bind_all(m, inos, half, n_objects, THREADS));
	for (size_t i = 0; i < n_objects; i++) {
		lens[i] = FHMAP_FH_MAX;
		check(fhmap_encode(handles[i], &lens[i], m, inos[i], 0, 0), "encode");
	}
	start = now();
	for (size_t i = 0; i < n_objects; i++) {
		fhmap_realfh fh = fake((size_t)rand_r(&seed) % n_objects);
		uint64_t ino;

		check(fhmap_lookup_origin(&ino, m, &fh), "lookup");
	}
	report(backend, "lookup", n_objects, now() - start);
	start = now();
	for (size_t i = 0; i < n_objects; i++) {
		size_t k = (size_t)rand_r(&seed) % n_objects;
		fhmap_decoded d;

		check(fhmap_decode(&d, m, handles[k], lens[k], 0), "decode");
	}
	report(backend, "decode", n_objects, now() - start);
	start = now();
	for (size_t i = 0; i < n_objects; i++) {
		fhmap_realfh fh = fake((size_t)rand_r(&seed) % n_objects);
		uint64_t ino;

		check(fhmap_bind(&ino, m, &fh, FHMAP_ROOT_INO, "f", S_IFREG), "rebind");
	}
	report(backend, "bind (found)", n_objects, now() - start);
	fhmap_close(m);
	free(inos);
	free(handles);
	free(lens);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fhmap-pgbench LMDB_DIR POSTGRESQL_LOCATION LOWER_DIR [OBJECTS]\n");
		return 2;
	}
	if (argc > 4)
		n_objects = strtoul(argv[4], NULL, 10);
	if (n_objects < 2 * THREADS)
		n_objects = 2 * THREADS;
	run("lmdb", argv[1], argv[3]);
	run("postgresql", argv[2], argv[3]);
	return 0;
}
