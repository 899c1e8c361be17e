/* fhmap-writers: the write path. N writer threads each bind new objects
 * one call at a time, for a bounded time, in one configuration: a sync mode
 * of libfhmap, or SQLite (WAL) with the same durability. Prints one line:
 *
 *   @w <config> <threads> <updates/s> <flushes/update> <p50 ns> <p99 ns>
 *      <updates> <seconds> <libfhmap version>
 *
 * Updates are counted (and their latencies kept) when they end inside the
 * measured window, which starts after a warm-up; device flushes are the
 * disk's completed flush requests in that window (/proc/diskstats: other
 * processes' count too). bench/writers.sh interleaves the configurations
 * and writes docs/benchmarks-write.md.
 *
 * Built against the library of this tree and, for the cost of group commit,
 * against the library before it (bench/writers.sh): the configurations of
 * API added since (deferred mode) are left out of a build against a library
 * older than 0.2. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench.h"

#define HAVE_DEFERRED (FHMAP_VERSION_MAJOR > 0 || FHMAP_VERSION_MINOR >= 2)
#define MAX_WRITERS 64
/* Each writer's objects: synthetic indexes [(t + 1) << 26, (t + 2) << 26). */
#define WRITER_SPAN ((size_t)1 << 26)

typedef enum {
	C_FULL,
	C_LAZY,
	C_DEFERRED_SYNC, /* deferred, fhmap_sync() after each update: durable */
	C_DEFERRED,      /* deferred, no sync: durable within the flush interval */
	C_SQL_FULL,      /* SQLite WAL, synchronous=FULL: durable per commit */
	C_SQL_NORMAL     /* SQLite WAL, synchronous=NORMAL */
} config;

static const struct {
	const char *name;
	config c;
	int deferred;
} configs[] = {
	{ "full", C_FULL, 0 },
	{ "lazy", C_LAZY, 0 },
	{ "deferred-sync", C_DEFERRED_SYNC, 1 },
	{ "deferred", C_DEFERRED, 1 },
	{ "sqlite-full", C_SQL_FULL, 0 },
	{ "sqlite-normal", C_SQL_NORMAL, 0 },
};

typedef struct run {
	config c;
	unsigned int threads;
	unsigned int batch; /* binds per call: > 1 is an explicit batch */
	fhmap *map;
	uint32_t lower;
	char sqlpath[FHMAP_PATH_MAX];
	uint64_t t0, t1; /* the measured window (CLOCK_MONOTONIC ns) */
	pthread_barrier_t bar;
} run;

typedef struct writer {
	run *r;
	unsigned int t;
	uint64_t dir;    /* the writer's directory object */
	bench_sql *sql;  /* its SQLite connection */
	uint32_t *lat;   /* ns of each update that ended in the window */
	size_t n, cap;
	size_t total;    /* calls made, window or not */
	int rc;
} writer;

static int is_sql(config c)
{
	return c == C_SQL_FULL || c == C_SQL_NORMAL;
}

/* Bind number @i of writer @w, a new object. */
static int bind_new(writer *w, size_t i)
{
	fhmap_realfh fh;
	char name[32];
	uint64_t ino;
	bench_synth_realfh(&fh, w->r->lower, (w->t + 1) * WRITER_SPAN + 1 + i, 0);
	snprintf(name, sizeof name, "f%09zu", i);
	return fhmap_bind(&ino, w->r->map, &fh, w->dir, name, S_IFREG);
}

/* Binds @batch new objects in one transaction: what one commit of that
 * many updates costs, without group commit. */
static int bind_batch(writer *w, size_t i)
{
	fhmap *m = w->r->map;
	int rc;
	do {
		rc = fhmap_batch_begin(m);
		for (unsigned int j = 0; j < w->r->batch && !rc; j++)
			rc = bind_new(w, i * w->r->batch + j);
		if (rc == -EAGAIN)
			fhmap_batch_abort(m);
		else
			rc = rc ? rc : fhmap_batch_commit(m);
	} while (rc == -EAGAIN); /* the map grew: the batch again */
	return rc;
}

static int bind_one(writer *w, size_t i)
{
	if (w->r->batch > 1)
		return bind_batch(w, i);
	int rc = bind_new(w, i);
#if HAVE_DEFERRED
	if (!rc && w->r->c == C_DEFERRED_SYNC)
		rc = fhmap_sync(w->r->map);
#endif
	return rc;
}

static int insert_one(writer *w, size_t i)
{
	fhmap_realfh fh;
	char name[32];
	size_t idx = (w->t + 1) * WRITER_SPAN + 1 + i;
	bench_synth_realfh(&fh, w->r->lower, idx, 0);
	snprintf(name, sizeof name, "f%09zu", i);
	/* One object a transaction: its row and its origin index row. */
	bench_sql_obj o = { .ino = idx, .gen = 1, .type = S_IFREG, .state = FHMAP_STATE_ORIGIN,
		            .parent = w->dir, .name = name, .origin = &fh };
	int rc = bench_sql_begin(w->sql);
	if (!rc)
		rc = bench_sql_insert(w->sql, &o);
	if (!rc)
		rc = bench_sql_commit(w->sql);
	return rc;
}

static int lat_add(writer *w, uint64_t ns)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		uint32_t *p = realloc(w->lat, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		w->lat = p;
		w->cap = cap;
	}
	w->lat[w->n++] = (uint32_t)(ns > UINT32_MAX ? UINT32_MAX : ns);
	return 0;
}

static void *writer_main(void *arg)
{
	writer *w = arg;
	run *r = w->r;
	pthread_barrier_wait(&r->bar);
	int rc = 0;
	for (size_t i = 0; !rc; i++) {
		uint64_t a = bench_now_ns();
		if (a >= r->t1)
			break;
		rc = is_sql(r->c) ? insert_one(w, i) : bind_one(w, i);
		uint64_t b = bench_now_ns();
		w->total++;
		if (!rc && b >= r->t0 && b < r->t1)
			rc = lat_add(w, b - a);
	}
	w->rc = rc;
	return NULL;
}

static void sleep_until(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void map_setup(run *r, const char *dir, writer *w)
{
	char path[FHMAP_PATH_MAX];
	fhmap_open_options oo = FHMAP_OPEN_OPTIONS_INIT;
	oo.flags = FHMAP_OPEN_CREATE;
	oo.sync = r->c == C_LAZY ? FHMAP_SYNC_LAZY : FHMAP_SYNC_FULL;
#if HAVE_DEFERRED
	if (r->c == C_DEFERRED || r->c == C_DEFERRED_SYNC)
		oo.sync = FHMAP_SYNC_DEFERRED;
#endif
	/* Room for the whole run: no growth inside the window. */
	oo.map_size = 1ull << 30;
	bench_path_join(path, dir, "map");
	int rc = fhmap_open(&r->map, path, &oo);
	bench_path_join(path, dir, "lower");
	if (!rc)
		rc = fhmap_layer_add(&r->lower, r->map, FHMAP_LAYER_LOWER, path);
	if (rc)
		bench_die("fhmap_open", rc);
	fhmap_realfh fh;
	uint64_t root;
	bench_synth_realfh(&fh, r->lower, 0, 0);
	if ((rc = fhmap_bind(&root, r->map, &fh, 0, "", S_IFDIR)) != 0)
		bench_die("fhmap_bind (root)", rc);
	for (unsigned int t = 0; t < r->threads; t++) {
		char name[32];
		snprintf(name, sizeof name, "w%02u", t);
		bench_synth_realfh(&fh, r->lower, (t + 1) * WRITER_SPAN, 0);
		if ((rc = fhmap_bind(&w[t].dir, r->map, &fh, root, name, S_IFDIR)) != 0)
			bench_die("fhmap_bind (directory)", rc);
	}
}

/* Every update made must be in the map: a benchmark that lost some would
 * flatter itself. */
static void map_check(run *r, const writer *w)
{
	fhmap_map_stats st;
	uint64_t want = 1 + r->threads;
	for (unsigned int t = 0; t < r->threads; t++)
		want += w[t].total * r->batch;
	int rc = fhmap_stats(&st, r->map);
	if (rc)
		bench_die("fhmap_stats", rc);
	if (st.objects != want) {
		fprintf(stderr, "fhmap-writers: %" PRIu64 " objects in the map, %" PRIu64 " bound\n", st.objects,
		        want);
		exit(1);
	}
}

static void sql_setup(run *r, const char *dir, writer *w)
{
	bench_sql *s;
	bench_path_join(r->sqlpath, dir, "writers.db");
	int rc = bench_sql_create(&s, r->sqlpath);
	if (rc)
		bench_die("sqlite create", rc);
	bench_sql_close(s);
	for (unsigned int t = 0; t < r->threads; t++) {
		w[t].dir = t + 2;
		if ((rc = bench_sql_open_writer(&w[t].sql, r->sqlpath, r->c == C_SQL_FULL)) != 0)
			bench_die("sqlite open", rc);
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Runs the writers, prints the line. */
static void measure(run *r, writer *w, const char *name, const char *dir, double seconds, double warmup)
{
	pthread_t tid[MAX_WRITERS];
	pthread_barrier_init(&r->bar, NULL, r->threads + 1);
	for (unsigned int t = 0; t < r->threads; t++)
		if (pthread_create(&tid[t], NULL, writer_main, &w[t]) != 0)
			bench_die("pthread_create", 0);
	uint64_t start = bench_now_ns();
	r->t0 = start + (uint64_t)(warmup * 1e9);
	r->t1 = r->t0 + (uint64_t)(seconds * 1e9);
	pthread_barrier_wait(&r->bar);
	sleep_until(r->t0);
	int64_t f0 = bench_disk_flushes(dir);
	sleep_until(r->t1);
	int64_t f1 = bench_disk_flushes(dir);
	size_t n = 0;
	for (unsigned int t = 0; t < r->threads; t++) {
		pthread_join(tid[t], NULL);
		if (w[t].rc)
			bench_die(name, w[t].rc);
		n += w[t].n;
	}
	pthread_barrier_destroy(&r->bar);
	uint32_t *all = malloc((n ? n : 1) * sizeof *all);
	if (!all || !n)
		bench_die("no update ended in the window, or out of memory", 0);
	size_t at = 0;
	for (unsigned int t = 0; t < r->threads; at += w[t].n, t++)
		memcpy(all + at, w[t].lat, w[t].n * sizeof *all);
	qsort(all, n, sizeof *all, cmp_u32);
	/* A batch counts its binds; its latency is the whole batch's. */
	double updates = (double)n * r->batch, flushes = f0 >= 0 && f1 >= 0 ? (double)(f1 - f0) / updates : -1;
	char label[64];
	snprintf(label, sizeof label, r->batch > 1 ? "%s-batch%u" : "%s", name, r->batch);
	printf("@w %s %u %.1f %.3f %u %u %.0f %.2f %s\n", label, r->threads, updates / seconds, flushes, all[n / 2],
	       all[(size_t)((double)n * 0.99)], updates, seconds, fhmap_version());
	fflush(stdout);
	free(all);
}

static void usage(void)
{
	fprintf(stderr, "usage: fhmap-writers --dir DIR --config NAME [--threads N] [--seconds S] [--warmup S]\n"
	                "                     [--batch N]\n"
	                "  --dir      work directory on the disk to measure (created; emptied first)\n"
	                "  --config   full, lazy, ");
#if HAVE_DEFERRED
	fprintf(stderr, "deferred-sync, deferred, ");
#endif
	fprintf(stderr, "sqlite-full, sqlite-normal\n"
	                "  --threads  writer threads (1..%d, default 1)\n"
	                "  --seconds  measured window (default 3)\n"
	                "  --warmup   seconds before the window (default 0.5)\n"
	                "  --batch    full and lazy: N binds per call, in one fhmap_batch (default 1)\n",
	        MAX_WRITERS);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "dir", 1, NULL, 'd' },     { "config", 1, NULL, 'c' },
		                            { "threads", 1, NULL, 't' }, { "seconds", 1, NULL, 's' },
		                            { "warmup", 1, NULL, 'W' },  { "batch", 1, NULL, 'b' },
		                            { "help", 0, NULL, 'h' },    { NULL, 0, NULL, 0 } };
	const char *dir = NULL, *cname = NULL;
	unsigned int threads = 1, batch = 1;
	double seconds = 3, warmup = 0.5;
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'c': cname = optarg; break;
		case 't': threads = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 's': seconds = strtod(optarg, NULL); break;
		case 'W': warmup = strtod(optarg, NULL); break;
		case 'b': batch = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	run r = { .threads = threads, .batch = batch };
	int found = 0;
	for (size_t i = 0; cname && i < sizeof configs / sizeof configs[0]; i++)
		if (!strcmp(cname, configs[i].name) && (HAVE_DEFERRED || !configs[i].deferred)) {
			r.c = configs[i].c;
			found = 1;
		}
	if (!dir || dir[0] != '/' || !found || !threads || threads > MAX_WRITERS || !(seconds > 0) ||
	    !(warmup >= 0) || optind != argc || !batch || batch > 100000 ||
	    (batch > 1 && r.c != C_FULL && r.c != C_LAZY)) {
		fprintf(stderr, "fhmap-writers: bad arguments (--dir must be an absolute path)\n");
		usage();
		return 2;
	}
	int rc = bench_rmtree(dir);
	if (!rc)
		rc = bench_mkdirs(dir);
	if (rc)
		bench_die(dir, rc);
	writer w[MAX_WRITERS];
	memset(w, 0, sizeof w);
	for (unsigned int t = 0; t < threads; t++) {
		w[t].r = &r;
		w[t].t = t;
	}
	if (is_sql(r.c))
		sql_setup(&r, dir, w);
	else
		map_setup(&r, dir, w);
	measure(&r, w, cname, dir, seconds, warmup);
	if (!is_sql(r.c)) {
		map_check(&r, w);
		fhmap_close(r.map);
	}
	for (unsigned int t = 0; t < threads; t++) {
		bench_sql_close(w[t].sql);
		free(w[t].lat);
	}
	bench_rmtree(dir);
	return 0;
}
