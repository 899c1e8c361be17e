/* Shared pieces of fhmap-bench: timing, result output, the measurement loop,
 * and the alternatives libfhmap is compared with. */
#ifndef FHMAP_BENCH_H
#define FHMAP_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include <fhmap/fhmap.h>

/* ---- util.c ---- */
/* @p out = @p dir "/" @p name (FHMAP_PATH_MAX bytes); dies if too long. */
void bench_path_join(char *out, const char *dir, const char *name);
uint64_t bench_now_ns(void);
uint64_t bench_rand(uint64_t *state);
void bench_die(const char *what, int err) __attribute__((noreturn));
/* Device flush requests completed so far on the disk holding @p path, or -1
 * when /proc/diskstats does not say (then flushes are not reported). */
int64_t bench_disk_flushes(const char *path);
/* Peak and current memory of this process, in KiB. */
typedef struct bench_mem {
	long hwm_kib, rss_anon_kib, rss_file_kib;
} bench_mem;
void bench_mem_get(bench_mem *out);
/* Bytes this process passed to write(2)-family calls so far: for a map
 * load, the LMDB pages it writes at each commit. */
uint64_t bench_io_written(void);
uint64_t bench_file_bytes(const char *path, uint64_t *apparent);
int bench_rmtree(const char *path);
int bench_mkdirs(const char *path);
/* The real handle of object @p idx of a synthetic layer: an 8-byte ext4 one
 * (FILEID_INO32_GEN: 32-bit inode idx + 12 + @p salt, random generation). */
void bench_synth_realfh(fhmap_realfh *fh, uint32_t layer, size_t idx, uint32_t salt);
/* Evicts clean page cache, dentries and inodes (needs root). */
int bench_drop_caches(void);

/* ---- measure.c ---- */
/* One operation of a measured kind; @p i indexes the thread's samples.
 * Returns 0, or an error that aborts the run (a benchmark never counts a
 * failed operation). */
typedef int (*bench_op_fn)(void *tctx, size_t i);
/* Per-thread setup and teardown, run on the measuring thread, untimed. */
typedef int (*bench_tinit_fn)(void *tctx);
typedef void (*bench_tfini_fn)(void *tctx);

typedef struct bench_kind {
	const char *name;
	bench_op_fn op;
	bench_tinit_fn init; /* may be NULL */
	bench_tfini_fn fini; /* may be NULL */
} bench_kind;

typedef struct bench_result {
	double median_ns, p99_ns, ops_s;
} bench_result;

/* Runs @p ops operations on each of @p threads threads twice: once without
 * per-operation clocks (gives ops/s) and once timing each operation (gives
 * median and p99). tctx[t] is thread t's context. */
void bench_measure(bench_result *out, const bench_kind *k, void **tctx, unsigned int threads, size_t ops);
/* Sorts @p lat (ns per operation) and fills median and p99 of @p out. */
void bench_summarize(bench_result *out, uint32_t *lat, size_t n);
/* Times each of @p ops operations once, in order, on this thread. */
void bench_measure_once(bench_result *out, const bench_kind *k, void *tctx, size_t ops);

/* Collects the results of repetitions of one measurement and prints a
 * summary line: "@lat <scale> <name> <threads> <median> <p99> <ops/s>
 * <spread%>" where spread is (max - min) / median of the per-repetition
 * medians. */
#define BENCH_MAX_REPS 16
typedef struct bench_series {
	char name[48];
	unsigned int threads, n;
	bench_result r[BENCH_MAX_REPS];
} bench_series;
void bench_series_add(bench_series *s, const bench_result *r);
double bench_series_median(const bench_series *s, int field);
void bench_series_print(const bench_series *s, const char *scale);
/* Prints "@ratio <scale> <name> <threads> <median> <min> <max>" from the
 * per-repetition ratios of the medians of @p a over @p b. */
void bench_ratio_print(const char *scale, const char *name, const bench_series *a, const bench_series *b);

/* Paired blocks: the per-operation cost of kind @p a over kind @p b. Each
 * of @p threads threads runs both over the same samples in alternating
 * blocks of @p block operations (a b, then b a), after one untimed pass of
 * each; each timed block follows an untimed warm-up block of its own kind,
 * and every pair of blocks gives one ratio of their times. A change of
 * machine speed (another VM, a frequency step) lasts longer than a block
 * pair and so hits both kinds alike. Appends the ratios to @p out (room
 * for threads * ops / block more) and returns how many it added. */
size_t bench_measure_paired(double *out, const bench_kind *a, void **ta, const bench_kind *b, void **tb,
                            unsigned int threads, size_t ops, size_t block);
/* Prints "@ratio <scale> <name> <threads> <median> <p10> <p90>" of @p n
 * block-pair ratios (sorts them). */
void bench_pairs_print(const char *scale, const char *name, unsigned int threads, double *v, size_t n);

/* ---- floor.c: raw LMDB with the layout of libfhmap's object table ---- */
typedef struct bench_floor bench_floor;
/* Records of @p vsize bytes under object numbers @p inos, and an origin
 * index entry for each: the handle of synthetic object i on @p layer
 * (bench_synth_realfh) -> inos[i]. @named: in named tables beside four
 * others, as in libfhmap's format 1 (format 2 keeps all tables in the main
 * table, like the raw floor). */
int bench_floor_build(bench_floor **out, const char *dir, const uint64_t *inos, uint32_t layer, size_t n,
                      size_t vsize, int named);
void bench_floor_close(bench_floor *f);
/* A per-thread reader; keys are the sample object numbers. */
typedef struct bench_floor_reader {
	bench_floor *f;
	const uint64_t *keys;
	const fhmap_realfh *origins; /* origin of each key, for the lookups */
	void *txn;
	size_t vsize;
} bench_floor_reader;
/* renew, get the record, copy, reset: the single-get read floor */
extern const bench_kind bench_floor_get;
extern const bench_kind bench_floor_named_get;
/* renew, get the origin index entry, reset: a lookup trusting the index */
extern const bench_kind bench_floor_index_get;
/* renew, get the index entry, get the record it names, copy, reset: the
 * lookup floor (a lookup that checks its hit against the record) */
extern const bench_kind bench_floor_lookup;

/* ---- sqlmap.c: the same mapping in SQLite (WAL, prepared statements) ---- */
typedef struct bench_sql bench_sql;
typedef struct bench_sql_obj {
	uint64_t ino;
	uint32_t gen, type, state;
	uint64_t parent;
	const char *name;
	const fhmap_realfh *origin;
} bench_sql_obj;
int bench_sql_create(bench_sql **out, const char *path);
/* Another connection to the database @p path made by bench_sql_create(),
 * for inserts, with synchronous=FULL (@p full: every commit durable) or
 * NORMAL (WAL flushed at checkpoints only). */
int bench_sql_open_writer(bench_sql **out, const char *path, int full);
int bench_sql_begin(bench_sql *s);
int bench_sql_insert(bench_sql *s, const bench_sql_obj *o);
int bench_sql_commit(bench_sql *s);
void bench_sql_close(bench_sql *s);
/* Encodes the 28-byte signed handle of the SQLite variant (same layout and
 * MAC as libfhmap's non-connectable handle). */
void bench_sql_encode(const bench_sql *s, unsigned char out[FHMAP_FH_SIZE], uint64_t ino, uint32_t gen);
typedef struct bench_sql_reader {
	bench_sql *s;
	void *db, *by_ino, *by_origin;
	const unsigned char *fhs;   /* decode samples, FHMAP_FH_SIZE each */
	const fhmap_realfh *origins;/* origin lookup samples */
	const uint64_t *expect;     /* expected object numbers */
} bench_sql_reader;
extern const bench_kind bench_sql_decode;
extern const bench_kind bench_sql_lookup_origin;

/* ---- e2e.c: resolving real files ---- */
typedef struct bench_opts {
	const char *dir;
	const char *scale_label;
	size_t scale, ops, batch, commits, files, cold;
	unsigned int reps, max_threads;
	size_t vsize;
	uint64_t seed;
	int parts;
	const char *kinds; /* read-side kinds to run (comma-separated), or NULL: all */
} bench_opts;
enum { BENCH_CORE = 1, BENCH_SQLITE = 2, BENCH_COPYUP = 4, BENCH_E2E = 8 };
void bench_e2e_run(const bench_opts *o);

#endif
