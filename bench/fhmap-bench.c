/* fhmap-bench: measures libfhmap against a raw LMDB floor, an SQLite
 * implementation of the same mapping and kernel overlayfs, all in one run.
 * Results go to stdout as "@kind ..." lines that bench/run.sh turns into
 * docs/benchmarks.md; progress goes to stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define FILES_PER_DIR 1000
#define SAMPLE_NAME 28 /* "file" and a size_t, with room */

/* The synthetic lower layer: object index 0 is the root, then every
 * FILES_PER_DIR + 1 objects a directory followed by its files. Real handles
 * are 8-byte ext4 ones (bench_synth_realfh). */
static int synth_is_dir(size_t idx)
{
	return idx == 0 || (idx - 1) % (FILES_PER_DIR + 1) == 0;
}

static size_t synth_parent(size_t idx)
{
	return synth_is_dir(idx) ? 0 : idx - (idx - 1) % (FILES_PER_DIR + 1);
}

static void synth_name(char *buf, size_t size, size_t idx)
{
	if (idx == 0)
		buf[0] = '\0';
	else if (synth_is_dir(idx))
		snprintf(buf, size, "dir%06zu", idx / (FILES_PER_DIR + 1));
	else
		snprintf(buf, size, "file%07zu", idx);
}

typedef struct scale_run {
	const bench_opts *o;
	char mapdir[FHMAP_PATH_MAX], floordir[2][FHMAP_PATH_MAX], sqlpath[FHMAP_PATH_MAX];
	fhmap *map;
	uint32_t lower, upper;
	uint64_t *inos; /* object number of each synthetic index */
	size_t n;
	size_t vsize;   /* mean object record size, for the floor */
} scale_run;

static void map_open(scale_run *s, fhmap_sync_mode sync, int create)
{
	fhmap_open_options oo = FHMAP_OPEN_OPTIONS_INIT;
	oo.flags = create ? FHMAP_OPEN_CREATE : 0;
	oo.sync = sync;
	/* Sized for the load like a user importing a big tree would; the map
	 * still grows by itself if this is short. */
	oo.map_size = (uint64_t)s->o->scale * 256 + (64u << 20);
	int rc = fhmap_open(&s->map, s->mapdir, &oo);
	if (rc)
		bench_die("fhmap_open", rc);
}

/* Binds objects [from, to) in one batch. Returns 0 or -EAGAIN (redo). */
static int bind_batch(scale_run *s, size_t from, size_t to)
{
	int rc = fhmap_batch_begin(s->map);
	if (rc)
		bench_die("fhmap_batch_begin", rc);
	for (size_t i = from; i < to && !rc; i++) {
		fhmap_realfh fh;
		char name[32];
		bench_synth_realfh(&fh, s->lower, i, 0);
		synth_name(name, sizeof name, i);
		uint64_t parent = i ? s->inos[synth_parent(i)] : 0;
		rc = fhmap_bind(&s->inos[i], s->map, &fh, parent, name, synth_is_dir(i) ? S_IFDIR : S_IFREG);
	}
	if (rc == -EAGAIN) {
		fhmap_batch_abort(s->map);
		return rc;
	}
	if (rc)
		bench_die("fhmap_bind", rc);
	return fhmap_batch_commit(s->map);
}

static void load_fhmap(scale_run *s)
{
	char root[FHMAP_PATH_MAX];
	bench_path_join(root, s->o->dir, "lower-synth");
	int rc = fhmap_layer_add(&s->lower, s->map, FHMAP_LAYER_LOWER, root);
	bench_path_join(root, s->o->dir, "upper-synth");
	if (!rc)
		rc = fhmap_layer_add(&s->upper, s->map, FHMAP_LAYER_UPPER, root);
	if (rc)
		bench_die("fhmap_layer_add", rc);
	int64_t fl0 = bench_disk_flushes(s->mapdir);
	uint64_t w0 = bench_io_written();
	size_t batches = 0, redone = 0;
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < s->n;) {
		size_t to = i + s->o->batch < s->n ? i + s->o->batch : s->n;
		rc = bind_batch(s, i, to);
		if (rc == -EAGAIN) {
			redone++;
			continue;
		}
		if (rc)
			bench_die("fhmap_batch_commit", rc);
		batches++;
		i = to;
	}
	double sec = (double)(bench_now_ns() - t0) / 1e9;
	int64_t fl1 = bench_disk_flushes(s->mapdir);
	printf("@val %s bind_batch_written_per_object %.0f B written (pwrite) per object bound\n",
	       s->o->scale_label, (double)(bench_io_written() - w0) / (double)s->n);
	printf("@val %s bind_batch_objects_per_s %.0f objects/s (synthetic, batch %zu, sync full)\n",
	       s->o->scale_label, (double)s->n / sec, s->o->batch);
	printf("@val %s bind_batch_redone %zu batches (map growth)\n", s->o->scale_label, redone);
	if (fl0 >= 0 && fl1 >= 0)
		printf("@val %s bind_batch_flushes_per_commit %.2f device flushes\n", s->o->scale_label,
		       (double)(fl1 - fl0) / (double)batches);
}

/* The tables of a map: all in LMDB's main table, each key led by its
 * table byte (docs/data-model.md). */
static const struct {
	char byte;
	const char *name;
} map_tables[] = { { 'L', "layers" }, { 'M', "meta" },  { 'P', "pending" },
		   { 'R', "origin" }, { 'U', "upper" }, { 'o', "objects" } };

/* Per-table figures straight from LMDB (the map must be closed): entries,
 * mean key and value sizes (without the table byte) and the bytes of
 * their leaf nodes (LMDB: 8-byte node header + 2-byte slot + key +
 * value); then the whole LMDB table's pages and depth. Sets s->vsize to
 * the mean object record size. */
static void table_breakdown(scale_run *s)
{
	enum { NT = sizeof map_tables / sizeof map_tables[0] };
	size_t cnt[NT] = { 0 }, ksum[NT] = { 0 }, vsum[NT] = { 0 };
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_stat st;
	MDB_val k, v;
	if (mdb_env_create(&env) || mdb_env_open(env, s->mapdir, MDB_RDONLY | MDB_NOTLS, 0) ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, NULL, 0, &dbi) ||
	    mdb_stat(txn, dbi, &st) || mdb_cursor_open(txn, dbi, &cur))
		bench_die("reading the map with LMDB", -EIO);
	for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT)
		for (size_t t = 0; t < NT; t++)
			if (k.mv_size && *(const char *)k.mv_data == map_tables[t].byte) {
				cnt[t]++;
				ksum[t] += k.mv_size - 1;
				vsum[t] += v.mv_size;
			}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	for (size_t t = 0; t < NT; t++) {
		double kavg = cnt[t] ? (double)ksum[t] / cnt[t] : 0, vavg = cnt[t] ? (double)vsum[t] / cnt[t] : 0;
		printf("@table %s %s %zu %.1f %.1f %.1f\n", s->o->scale_label, map_tables[t].name, cnt[t], kavg,
		       vavg, cnt[t] ? 11 + kavg + vavg : 0.0);
		if (map_tables[t].byte == 'o')
			s->vsize = (size_t)(vavg + 0.5);
	}
	uint64_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
	printf("@lmdb %s %zu %" PRIu64 " %" PRIu64 " %" PRIu64 " %u\n", s->o->scale_label, (size_t)st.ms_entries,
	       (uint64_t)st.ms_branch_pages, (uint64_t)st.ms_leaf_pages, pages, st.ms_depth);
}

static void report_size(scale_run *s)
{
	fhmap_map_stats st;
	int rc = fhmap_stats(&st, s->map);
	if (rc)
		bench_die("fhmap_stats", rc);
	char data[FHMAP_PATH_MAX];
	bench_path_join(data, s->mapdir, "data.mdb");
	uint64_t apparent, blocks = bench_file_bytes(data, &apparent);
	const char *sc = s->o->scale_label;
	printf("@size %s fhmap_used %.1f B/object (%" PRIu64 " objects, %" PRIu64 " B in use, depth %u)\n", sc,
	       (double)st.used_bytes / (double)st.objects, st.objects, st.used_bytes, st.depth);
	printf("@size %s fhmap_file %.1f B/object (data.mdb: %" PRIu64 " B allocated, %" PRIu64 " B apparent)\n",
	       sc, (double)blocks / (double)st.objects, blocks, apparent);
}

/* ---- the read-side measurements ---- */
typedef struct fh_reader {
	fhmap *map;
	const uint64_t *inos;
	unsigned char *fhs;
	const fhmap_realfh *origins;
	const uint64_t *parents;
	const char (*names)[SAMPLE_NAME];
	const uint32_t *types;
} fh_reader;

static int op_encode(void *tctx, size_t i)
{
	fh_reader *r = tctx;
	size_t len = FHMAP_FH_SIZE;
	int rc = fhmap_encode(r->fhs + i * FHMAP_FH_SIZE, &len, r->map, r->inos[i], 0, 0);
	return rc ? rc : len == FHMAP_FH_SIZE ? 0 : -EPROTO;
}

static int op_decode(void *tctx, size_t i)
{
	fh_reader *r = tctx;
	fhmap_decoded d;
	int rc = fhmap_decode(&d, r->map, r->fhs + i * FHMAP_FH_SIZE, FHMAP_FH_SIZE, 0);
	return rc ? rc : d.ino == r->inos[i] && d.status == FHMAP_FH_OK ? 0 : -EPROTO;
}

static int op_lookup_origin(void *tctx, size_t i)
{
	fh_reader *r = tctx;
	uint64_t ino;
	int rc = fhmap_lookup_origin(&ino, r->map, &r->origins[i]);
	return rc ? rc : ino == r->inos[i] ? 0 : -EPROTO;
}

/* fhmap_bind of an origin bound already: a read since group commit. */
static int op_bind_bound(void *tctx, size_t i)
{
	fh_reader *r = tctx;
	uint64_t ino;
	int rc = fhmap_bind(&ino, r->map, &r->origins[i], r->parents[i], r->names[i], r->types[i]);
	return rc ? rc : ino == r->inos[i] ? 0 : -EPROTO;
}

static const bench_kind k_encode = { "fhmap_encode", op_encode, NULL, NULL };
static const bench_kind k_decode = { "fhmap_decode", op_decode, NULL, NULL };
static const bench_kind k_lookup = { "fhmap_lookup_origin", op_lookup_origin, NULL, NULL };
static const bench_kind k_bind_bound = { "fhmap_bind_bound", op_bind_bound, NULL, NULL };

/* Per-thread samples: random objects, with what a bind of each passes. */
typedef struct samples {
	uint64_t *inos, *parents;
	fhmap_realfh *origins;
	char (*names)[SAMPLE_NAME];
	uint32_t *types;
	unsigned char *sqlfhs;
} samples;

static void samples_make(samples *sm, scale_run *s, bench_sql *sql, uint64_t seed)
{
	size_t ops = s->o->ops;
	sm->inos = malloc(ops * sizeof *sm->inos);
	sm->parents = malloc(ops * sizeof *sm->parents);
	sm->origins = malloc(ops * sizeof *sm->origins);
	sm->names = malloc(ops * sizeof *sm->names);
	sm->types = malloc(ops * sizeof *sm->types);
	sm->sqlfhs = malloc(ops * FHMAP_FH_SIZE);
	if (!sm->inos || !sm->parents || !sm->origins || !sm->names || !sm->types || !sm->sqlfhs)
		bench_die("samples: out of memory", -ENOMEM);
	for (size_t i = 0; i < ops; i++) {
		/* Not the root: a bind of the root takes no parent. */
		size_t idx = 1 + (size_t)(bench_rand(&seed) % (s->n - 1));
		sm->inos[i] = s->inos[idx];
		sm->parents[i] = s->inos[synth_parent(idx)];
		synth_name(sm->names[i], sizeof sm->names[i], idx);
		sm->types[i] = synth_is_dir(idx) ? S_IFDIR : S_IFREG;
		bench_synth_realfh(&sm->origins[i], s->lower, idx, 0);
		if (sql)
			bench_sql_encode(sql, sm->sqlfhs + i * FHMAP_FH_SIZE, s->inos[idx], (uint32_t)idx);
	}
}

static void samples_free(samples *sm)
{
	free(sm->inos);
	free(sm->parents);
	free(sm->origins);
	free(sm->names);
	free(sm->types);
	free(sm->sqlfhs);
}

static void load_sqlite(scale_run *s, bench_sql **out)
{
	const char *path = s->sqlpath;
	int rc = bench_sql_create(out, path);
	if (rc)
		bench_die("sqlite create", rc);
	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < s->n && !rc;) {
		rc = bench_sql_begin(*out);
		for (size_t end = i + s->o->batch < s->n ? i + s->o->batch : s->n; i < end && !rc; i++) {
			fhmap_realfh fh;
			char name[32];
			bench_synth_realfh(&fh, s->lower, i, 0);
			synth_name(name, sizeof name, i);
			bench_sql_obj o = { .ino = s->inos[i], .gen = (uint32_t)i,
			                    .type = synth_is_dir(i) ? S_IFDIR : S_IFREG,
			                    .state = FHMAP_STATE_ORIGIN,
			                    .parent = i ? s->inos[synth_parent(i)] : 0, .name = name, .origin = &fh };
			rc = bench_sql_insert(*out, &o);
		}
		if (!rc)
			rc = bench_sql_commit(*out);
	}
	if (rc)
		bench_die("sqlite load", rc);
	double sec = (double)(bench_now_ns() - t0) / 1e9;
	printf("@val %s sqlite_insert_objects_per_s %.0f objects/s (batch %zu, synchronous=NORMAL)\n",
	       s->o->scale_label, (double)s->n / sec, s->o->batch);
	char wal[FHMAP_PATH_MAX + 8];
	snprintf(wal, sizeof wal, "%s-wal", path);
	uint64_t bytes = bench_file_bytes(path, NULL) + bench_file_bytes(wal, NULL);
	printf("@size %s sqlite_file %.1f B/object (database + WAL)\n", s->o->scale_label,
	       (double)bytes / (double)s->n);
}

enum {
	K_ENCODE,
	K_DECODE,
	K_FLOOR,
	K_FLOOR_NAMED,
	K_SQLDEC,
	K_LOOKUP,
	K_SQLLOOK,
	K_BIND,
	K_FLOOR_LOOKUP,
	K_FLOOR_INDEX,
	K_COUNT
};
#define PAIR_BLOCK 10000 /* operations per block of a paired measurement */

/* The ratios the report's targets use: the cost of kind a over kind b. */
static const struct {
	const char *name;
	int a, b;
} pair_specs[] = {
	{ "decode_over_floor", K_DECODE, K_FLOOR },
	{ "decode_over_named_floor", K_DECODE, K_FLOOR_NAMED },
	{ "sqlite_decode_over_decode", K_SQLDEC, K_DECODE },
	{ "sqlite_lookup_over_lookup", K_SQLLOOK, K_LOOKUP },
	{ "bind_bound_over_floor", K_BIND, K_FLOOR },
	{ "bind_bound_over_lookup_floor", K_BIND, K_FLOOR_LOOKUP },
	{ "lookup_over_lookup_floor", K_LOOKUP, K_FLOOR_LOOKUP },
	{ "lookup_over_index_floor", K_LOOKUP, K_FLOOR_INDEX },
	{ "lookup_floor_over_index_floor", K_FLOOR_LOOKUP, K_FLOOR_INDEX },
};
#define NPAIRS (int)(sizeof pair_specs / sizeof pair_specs[0])

static int is_sql(int k)
{
	return k == K_SQLDEC || k == K_SQLLOOK;
}

/* Whether --kinds (a comma-separated list; all if not given) names @name. */
static int kind_on(const bench_opts *o, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = o->kinds; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, name, n) && (p[n] == ',' || !p[n]))
			return 1;
	return !o->kinds;
}

static void read_side(scale_run *s, bench_sql *sql, bench_floor *fl, bench_floor *fln)
{
	unsigned int tmax = s->o->max_threads;
	samples sm[8];
	fh_reader fr[8];
	/* One reader (transaction) per floor kind: a pair of kinds inits both. */
	bench_floor_reader flr[8], fln_r[8], flk[8], fli[8];
	bench_sql_reader sr[8];
	for (unsigned int t = 0; t < tmax; t++) {
		samples_make(&sm[t], s, sql, s->o->seed + 1000u * t);
		fr[t] = (fh_reader){ s->map,          sm[t].inos,  malloc(s->o->ops * FHMAP_FH_SIZE),
			             sm[t].origins,   sm[t].parents, (const char(*)[SAMPLE_NAME])sm[t].names,
			             sm[t].types };
		if (!fr[t].fhs)
			bench_die("out of memory", -ENOMEM);
		flr[t] = (bench_floor_reader){ .f = fl, .keys = sm[t].inos, .origins = sm[t].origins };
		flk[t] = fli[t] = flr[t];
		fln_r[t] = (bench_floor_reader){ .f = fln, .keys = sm[t].inos };
		sr[t] = (bench_sql_reader){ .s = sql, .fhs = sm[t].sqlfhs, .origins = sm[t].origins,
		                            .expect = sm[t].inos };
	}
	const bench_kind *kinds[K_COUNT] = { &k_encode,
		                             &k_decode,
		                             &bench_floor_get,
		                             &bench_floor_named_get,
		                             &bench_sql_decode,
		                             &k_lookup,
		                             &bench_sql_lookup_origin,
		                             &k_bind_bound,
		                             &bench_floor_lookup,
		                             &bench_floor_index_get };
	void *ctx[K_COUNT][8];
	for (unsigned int t = 0; t < tmax; t++) {
		ctx[K_ENCODE][t] = ctx[K_DECODE][t] = ctx[K_LOOKUP][t] = ctx[K_BIND][t] = &fr[t];
		ctx[K_FLOOR][t] = &flr[t];
		ctx[K_FLOOR_LOOKUP][t] = &flk[t];
		ctx[K_FLOOR_INDEX][t] = &fli[t];
		ctx[K_FLOOR_NAMED][t] = &fln_r[t];
		ctx[K_SQLDEC][t] = ctx[K_SQLLOOK][t] = &sr[t];
	}
	bench_series ser[K_COUNT][8];
	memset(ser, 0, sizeof ser);
	/* The ratios, from paired blocks, per thread count. */
	size_t block = s->o->ops < PAIR_BLOCK ? s->o->ops : PAIR_BLOCK;
	size_t per = (s->o->ops / block) * tmax * s->o->reps, npair[NPAIRS][8] = { { 0 } };
	double *pairs[NPAIRS][8];
	for (int f = 0; f < NPAIRS; f++)
		for (unsigned int t = 0; t < tmax; t++)
			if (!(pairs[f][t] = malloc(per * sizeof(double))))
				bench_die("out of memory", -ENOMEM);
	/* Repetitions interleave every kind, so machine noise hits all alike. */
	for (unsigned int rep = 0; rep < s->o->reps; rep++) {
		fprintf(stderr, "  [%s] read side, repetition %u/%u\n", s->o->scale_label, rep + 1, s->o->reps);
		for (unsigned int t = 1; t <= tmax; t++) {
			for (int k = 0; k < K_COUNT; k++) {
				/* Decode reads the handles encode writes. */
				int on = kind_on(s->o, kinds[k]->name) ||
				         (k == K_ENCODE && kind_on(s->o, k_decode.name));
				if ((!sql && is_sql(k)) || !on)
					continue;
				bench_result r;
				bench_measure(&r, kinds[k], ctx[k], t, s->o->ops);
				snprintf(ser[k][t - 1].name, sizeof ser[k][t - 1].name, "%s", kinds[k]->name);
				ser[k][t - 1].threads = t;
				bench_series_add(&ser[k][t - 1], &r);
			}
			for (int f = 0; f < NPAIRS; f++) {
				int a = pair_specs[f].a, b = pair_specs[f].b;
				if ((!sql && (is_sql(a) || is_sql(b))) || !kind_on(s->o, kinds[a]->name) ||
				    !kind_on(s->o, kinds[b]->name))
					continue;
				npair[f][t - 1] += bench_measure_paired(pairs[f][t - 1] + npair[f][t - 1], kinds[a],
				                                        ctx[a], kinds[b], ctx[b], t, s->o->ops, block);
			}
		}
	}
	const char *sc = s->o->scale_label;
	for (unsigned int t = 1; t <= tmax; t++) {
		for (int k = 0; k < K_COUNT; k++)
			if (ser[k][t - 1].n)
				bench_series_print(&ser[k][t - 1], sc);
		for (int f = 0; f < NPAIRS; f++)
			bench_pairs_print(sc, pair_specs[f].name, t, pairs[f][t - 1], npair[f][t - 1]);
	}
	for (unsigned int t = 0; t < tmax; t++) {
		free(fr[t].fhs);
		for (int f = 0; f < NPAIRS; f++)
			free(pairs[f][t]);
		samples_free(&sm[t]);
	}
}

/* ---- durable single copy-ups ---- */
static void copyups(scale_run *s, const char *mode, uint64_t *rs)
{
	size_t k = s->o->commits;
	uint32_t *lb = calloc(k, sizeof *lb), *lc = calloc(k, sizeof *lc);
	if (!lb || !lc)
		bench_die("out of memory", -ENOMEM);
	int64_t fl0 = bench_disk_flushes(s->mapdir);
	uint64_t t0 = bench_now_ns();
	for (size_t j = 0; j < k; j++) {
		size_t idx;
		fhmap_object obj;
		do {
			idx = (size_t)(bench_rand(rs) % s->n);
		} while (synth_is_dir(idx) || fhmap_get(&obj, s->map, s->inos[idx]) != 0 ||
		         obj.state != FHMAP_STATE_ORIGIN);
		fhmap_realfh up;
		bench_synth_realfh(&up, s->upper, idx, 0x40000000u);
		uint64_t a = bench_now_ns();
		int rc = fhmap_copyup_begin(s->map, s->inos[idx], s->upper);
		uint64_t b = bench_now_ns();
		if (!rc)
			rc = fhmap_copyup_commit(s->map, s->inos[idx], &up);
		uint64_t c = bench_now_ns();
		if (rc)
			bench_die("copy-up", rc);
		lb[j] = (uint32_t)(b - a);
		lc[j] = (uint32_t)(c - b);
	}
	double sec = (double)(bench_now_ns() - t0) / 1e9;
	int64_t fl1 = bench_disk_flushes(s->mapdir);
	const char *sc = s->o->scale_label;
	bench_series sb = { .threads = 1 }, scm = { .threads = 1 };
	snprintf(sb.name, sizeof sb.name, "copyup_begin_%s", mode);
	snprintf(scm.name, sizeof scm.name, "copyup_commit_%s", mode);
	bench_result r;
	/* Each call is one durable LMDB commit. */
	bench_summarize(&r, lb, k);
	r.ops_s = (double)k / sec;
	bench_series_add(&sb, &r);
	bench_summarize(&r, lc, k);
	r.ops_s = (double)k / sec;
	bench_series_add(&scm, &r);
	bench_series_print(&sb, sc);
	bench_series_print(&scm, sc);
	printf("@val %s copyups_per_s_%s %.1f copy-ups/s (begin + commit, %zu copy-ups)\n", sc, mode,
	       (double)k / sec, k);
	if (fl0 >= 0 && fl1 >= 0)
		printf("@val %s flushes_per_commit_%s %.2f device flushes per durable commit\n", sc, mode,
		       (double)(fl1 - fl0) / (2.0 * (double)k));
	free(lb);
	free(lc);
}

static void report_mem(const char *sc)
{
	bench_mem m;
	bench_mem_get(&m);
	printf("@mem %s %ld %ld %ld\n", sc, m.hwm_kib, m.rss_anon_kib, m.rss_file_kib);
}

/* Removes what an earlier run left in the work directory. */
static void scale_clean(const scale_run *s)
{
	static const char *const sqlfiles[] = { "", "-wal", "-shm" };
	bench_rmtree(s->mapdir);
	bench_rmtree(s->floordir[0]);
	bench_rmtree(s->floordir[1]);
	for (size_t i = 0; i < 3; i++) {
		char p[FHMAP_PATH_MAX + 8];
		snprintf(p, sizeof p, "%s%s", s->sqlpath, sqlfiles[i]);
		unlink(p);
	}
}

/* Binds the synthetic layer, reports its size and table layout, and
 * reopens the map for the measurements. */
static void scale_load(scale_run *s)
{
	const char *sc = s->o->scale_label;
	fprintf(stderr, "[%s] binding %zu synthetic objects\n", sc, s->n);
	map_open(s, FHMAP_SYNC_FULL, 1);
	load_fhmap(s);
	report_size(s);
	fhmap_close(s->map);
	size_t forced = s->vsize;
	s->vsize = 0;
	table_breakdown(s);
	if (!s->vsize && !forced)
		bench_die("no table of 8-byte keys in the map: give --value-size", -EIO);
	printf("@val %s object_record_bytes %zu B (mean; the floor uses %zu)\n", sc, s->vsize,
	       forced ? forced : s->vsize);
	if (forced)
		s->vsize = forced;
	map_open(s, FHMAP_SYNC_FULL, 0);
}

static void floors_build(scale_run *s, bench_floor **raw, bench_floor **named)
{
	fprintf(stderr, "[%s] building the LMDB floors\n", s->o->scale_label);
	int rc = bench_floor_build(raw, s->floordir[0], s->inos, s->lower, s->n, s->vsize, 0);
	if (!rc)
		rc = bench_floor_build(named, s->floordir[1], s->inos, s->lower, s->n, s->vsize, 1);
	if (rc)
		bench_die("floor build", rc);
	char data[FHMAP_PATH_MAX];
	bench_path_join(data, s->floordir[0], "data.mdb");
	printf("@size %s floor_file %.1f B/object\n", s->o->scale_label,
	       (double)bench_file_bytes(data, NULL) / (double)s->n);
}

/* Single durable copy-ups in full, then lazy sync mode. The progress lines
 * also mark the phases for bench/strace-count.awk. */
static void copyup_phase(scale_run *s)
{
	const char *sc = s->o->scale_label;
	uint64_t rs = s->o->seed ^ 0xc0;
	fprintf(stderr, "[%s] copy-ups, sync full\n", sc);
	copyups(s, "full", &rs);
	fhmap_close(s->map);
	map_open(s, FHMAP_SYNC_LAZY, 0);
	fprintf(stderr, "[%s] copy-ups, sync lazy\n", sc);
	copyups(s, "lazy", &rs);
	int rc = fhmap_sync(s->map);
	if (rc)
		bench_die("fhmap_sync", rc);
	fprintf(stderr, "[%s] copy-ups done\n", sc);
}

static void run_scale(const bench_opts *o)
{
	scale_run s = { .o = o, .n = o->scale, .vsize = o->vsize };
	bench_path_join(s.mapdir, o->dir, "fhmap");
	bench_path_join(s.floordir[0], o->dir, "floor");
	bench_path_join(s.floordir[1], o->dir, "floor-named");
	bench_path_join(s.sqlpath, o->dir, "sqlite.db");
	scale_clean(&s);
	s.inos = malloc(s.n * sizeof *s.inos);
	if (!s.inos || s.n < 2)
		bench_die("scale: need at least 2 objects, or out of memory", -EINVAL);
	scale_load(&s);
	bench_floor *fl, *fln;
	floors_build(&s, &fl, &fln);
	bench_sql *sql = NULL;
	if (o->parts & BENCH_SQLITE) {
		fprintf(stderr, "[%s] loading SQLite\n", o->scale_label);
		load_sqlite(&s, &sql);
	}
	report_mem(o->scale_label);
	read_side(&s, sql, fl, fln);
	report_mem(o->scale_label);
	bench_sql_close(sql);
	bench_floor_close(fl);
	bench_floor_close(fln);
	if (o->parts & BENCH_COPYUP)
		copyup_phase(&s);
	fhmap_close(s.map);
	free(s.inos);
}

static int parse_parts(const char *arg)
{
	int parts = 0;
	char buf[128];
	snprintf(buf, sizeof buf, "%s", arg);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "core"))
			parts |= BENCH_CORE;
		else if (!strcmp(t, "sqlite"))
			parts |= BENCH_SQLITE;
		else if (!strcmp(t, "copyup"))
			parts |= BENCH_COPYUP;
		else if (!strcmp(t, "e2e"))
			parts |= BENCH_E2E;
		else
			return -1;
	}
	return parts;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: fhmap-bench --dir DIR [--scale N] [--label L] [--parts core,sqlite,copyup,e2e]\n"
	        "                   [--ops N] [--reps N] [--threads N] [--batch N] [--commits N]\n"
	        "                   [--files N] [--cold N] [--value-size N] [--seed N] [--kinds K,...]\n"
	        "  --dir      work directory (created; holds the maps, databases, files)\n"
	        "  --parts    core: encode/decode/lookup vs the LMDB floors (always run with\n"
	        "             sqlite or copyup); sqlite: the SQLite mapping; copyup: durable\n"
	        "             single copy-ups; e2e: real files, ext4 and overlayfs (root)\n"
	        "  --scale    objects in the synthetic layer for core/sqlite/copyup (100000)\n"
	        "  --ops      operations per thread per repetition (200000)\n"
	        "  --reps     interleaved repetitions of every read measurement (3)\n"
	        "  --threads  up to this many reader threads (2)\n"
	        "  --batch    binds per batch commit (1000)\n"
	        "  --commits  single copy-ups per sync mode (100)\n"
	        "  --files    real files for the walk and end-to-end parts (20000)\n"
	        "  --cold     resolves per method after drop_caches (2000)\n"
	        "  --kinds    only these read-side kinds (and the ratios among them), comma-\n"
	        "             separated: fhmap_decode,floor_mdb_get,... (for profiles)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", 1, NULL, 'd' },     { "scale", 1, NULL, 's' }, { "label", 1, NULL, 'l' },
		{ "parts", 1, NULL, 'p' },   { "ops", 1, NULL, 'o' },   { "reps", 1, NULL, 'r' },
		{ "threads", 1, NULL, 't' }, { "batch", 1, NULL, 'b' }, { "commits", 1, NULL, 'c' },
		{ "files", 1, NULL, 'f' },   { "cold", 1, NULL, 'C' },  { "value-size", 1, NULL, 'v' },
		{ "seed", 1, NULL, 'S' },    { "kinds", 1, NULL, 'k' }, { "help", 0, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	bench_opts o = { .scale = 100000, .ops = 200000, .batch = 1000, .commits = 100, .files = 20000,
		         .cold = 2000, .reps = 3, .max_threads = 2, .seed = 1,
		         .parts = BENCH_CORE | BENCH_SQLITE | BENCH_COPYUP | BENCH_E2E };
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *end = NULL;
		unsigned long long v = optarg ? strtoull(optarg, &end, 10) : 0;
		int num = optarg && *optarg && end && !*end;
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 'l': o.scale_label = optarg; break;
		case 'p': o.parts = parse_parts(optarg); break;
		case 's': o.scale = num ? v : 0; break;
		case 'o': o.ops = num ? v : 0; break;
		case 'r': o.reps = num && v <= BENCH_MAX_REPS ? (unsigned int)v : 0; break;
		case 't': o.max_threads = num && v <= 8 ? (unsigned int)v : 0; break;
		case 'b': o.batch = num ? v : 0; break;
		case 'c': o.commits = num ? v : 0; break;
		case 'f': o.files = num ? v : (size_t)-1; break;
		case 'C': o.cold = num ? v : 0; break;
		case 'v': o.vsize = num && v <= 512 ? v : (size_t)-1; break;
		case 'S': o.seed = num ? v : 0; break;
		case 'k': o.kinds = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (!o.dir || o.dir[0] != '/' || optind != argc || o.parts < 0 || !o.scale || !o.ops || !o.reps ||
	    !o.max_threads || !o.batch || !o.commits || o.files == (size_t)-1 || o.vsize == (size_t)-1 ||
	    !o.cold) {
		fprintf(stderr, "fhmap-bench: bad arguments (--dir must be an absolute path)\n");
		usage();
		return 2;
	}
	char label[32];
	if (!o.scale_label) {
		snprintf(label, sizeof label, "%zu", o.scale);
		o.scale_label = label;
	}
	int rc = bench_mkdirs(o.dir);
	if (rc)
		bench_die(o.dir, rc);
	printf("@info %s libfhmap %s, scale %zu, ops %zu x %u reps, threads 1..%u\n", o.scale_label,
	       fhmap_version(), o.scale, o.ops, o.reps, o.max_threads);
	if (o.parts & (BENCH_CORE | BENCH_SQLITE | BENCH_COPYUP))
		run_scale(&o);
	if (o.parts & BENCH_E2E)
		bench_e2e_run(&o);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("@peak %s %ld\n", o.scale_label, ru.ru_maxrss);
	return 0;
}
