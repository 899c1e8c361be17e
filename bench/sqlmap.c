/* The mapping a user would otherwise build, as Ganesha's FSAL_PROXY did: an
 * SQLite database in WAL mode with prepared statements. Tables: object
 * (object number -> generation, type, state, origin/upper handles, parent,
 * name) and origin / upper (real handle -> object number). Handles carry the
 * same 28-byte signed layout as libfhmap's, checked with the same SipHash-2-4
 * MAC, so a decode does the same work apart from the store. */
#define _GNU_SOURCE
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* libfhmap's own MAC: lib/siphash.c is compiled into the bench. */
uint64_t fhmap__siphash24(const uint64_t key[2], const void *data, size_t len);

struct bench_sql {
	char path[FHMAP_PATH_MAX];
	sqlite3 *db;
	sqlite3_stmt *ins_obj, *ins_origin;
	uint64_t key[2];
	uint32_t tag;
};

static int sql_err(sqlite3 *db, const char *what)
{
	fprintf(stderr, "fhmap-bench: sqlite: %s: %s\n", what, sqlite3_errmsg(db));
	return -EIO;
}

static int sql_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	fprintf(stderr, "fhmap-bench: sqlite: %s: %s\n", sql, msg ? msg : "?");
	sqlite3_free(msg);
	return -EIO;
}

/* Read tuning a careful user would pick: map the file like LMDB does and
 * keep a large page cache, so the comparison is with SQLite at its best.
 * @sync is the synchronous setting: FULL flushes the WAL at every commit
 * (durable), NORMAL only at checkpoints. Writers of other connections are
 * waited for (busy timeout), as a multi-threaded user would. */
static int sql_open(sqlite3 **out, const char *path, int create, const char *sync)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	char pragmas[160];
	if (sqlite3_open_v2(path, out, flags, NULL) != SQLITE_OK) {
		int rc = sql_err(*out, path);
		sqlite3_close(*out);
		return rc;
	}
	sqlite3_busy_timeout(*out, 60000);
	snprintf(pragmas, sizeof pragmas, "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
	                                  "PRAGMA mmap_size=68719476736; PRAGMA cache_size=-262144;", sync);
	return sql_exec(*out, pragmas);
}

static const char sql_schema[] =
	"CREATE TABLE object(ino INTEGER PRIMARY KEY, gen INTEGER NOT NULL, type INTEGER NOT NULL,"
	" state INTEGER NOT NULL, origin BLOB, upper BLOB, parent INTEGER NOT NULL, name TEXT NOT NULL);"
	"CREATE TABLE origin(fh BLOB PRIMARY KEY, ino INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE upper(fh BLOB PRIMARY KEY, ino INTEGER NOT NULL) WITHOUT ROWID;";

/* A connection with the insert statements; @create makes the database
 * and its schema. */
static int sql_new(bench_sql **out, const char *path, int create, const char *sync)
{
	bench_sql *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	snprintf(s->path, sizeof s->path, "%s", path);
	uint64_t rs = (uint64_t)bench_now_ns();
	s->key[0] = bench_rand(&rs);
	s->key[1] = bench_rand(&rs);
	s->tag = (uint32_t)bench_rand(&rs);
	int rc = sql_open(&s->db, path, create, sync);
	if (!rc && create)
		rc = sql_exec(s->db, sql_schema);
	if (!rc && (sqlite3_prepare_v2(s->db, "INSERT INTO object VALUES(?1,?2,?3,?4,?5,NULL,?6,?7)", -1,
	                               &s->ins_obj, NULL) != SQLITE_OK ||
	            sqlite3_prepare_v2(s->db, "INSERT INTO origin VALUES(?1,?2)", -1, &s->ins_origin, NULL) !=
	                    SQLITE_OK))
		rc = sql_err(s->db, "prepare");
	if (rc) {
		bench_sql_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int bench_sql_create(bench_sql **out, const char *path)
{
	return sql_new(out, path, 1, "NORMAL");
}

int bench_sql_open_writer(bench_sql **out, const char *path, int full)
{
	return sql_new(out, path, 0, full ? "FULL" : "NORMAL");
}

/* IMMEDIATE: the write lock at once, so a writer waits (busy timeout)
 * instead of failing on a snapshot another connection made stale. */
int bench_sql_begin(bench_sql *s)
{
	return sql_exec(s->db, "BEGIN IMMEDIATE");
}

int bench_sql_commit(bench_sql *s)
{
	return sql_exec(s->db, "COMMIT");
}

static size_t fh_blob(unsigned char *buf, const fhmap_realfh *fh)
{
	memcpy(buf, &fh->layer, 4);
	memcpy(buf + 4, &fh->type, 4);
	memcpy(buf + 8, fh->data, fh->len);
	return 8 + fh->len;
}

int bench_sql_insert(bench_sql *s, const bench_sql_obj *o)
{
	unsigned char blob[8 + FHMAP_REALFH_MAX];
	size_t blen = fh_blob(blob, o->origin);
	sqlite3_stmt *a = s->ins_obj, *b = s->ins_origin;
	sqlite3_bind_int64(a, 1, (sqlite3_int64)o->ino);
	sqlite3_bind_int64(a, 2, o->gen);
	sqlite3_bind_int(a, 3, (int)o->type);
	sqlite3_bind_int(a, 4, (int)o->state);
	sqlite3_bind_blob(a, 5, blob, (int)blen, SQLITE_STATIC);
	sqlite3_bind_int64(a, 6, (sqlite3_int64)o->parent);
	sqlite3_bind_text(a, 7, o->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(b, 1, blob, (int)blen, SQLITE_STATIC);
	sqlite3_bind_int64(b, 2, (sqlite3_int64)o->ino);
	int ok = sqlite3_step(a) == SQLITE_DONE && sqlite3_step(b) == SQLITE_DONE;
	sqlite3_reset(a);
	sqlite3_reset(b);
	return ok ? 0 : sql_err(s->db, "insert");
}

void bench_sql_close(bench_sql *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->ins_obj);
	sqlite3_finalize(s->ins_origin);
	sqlite3_close(s->db);
	free(s);
}

/* ---- SipHash-2-4 (Aumasson and Bernstein), 64-bit output ---- */
static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

void bench_sql_encode(const bench_sql *s, unsigned char out[FHMAP_FH_SIZE], uint64_t ino, uint32_t gen)
{
	out[0] = 1;
	out[1] = FHMAP_FH_TYPE_BASE;
	out[2] = FHMAP_FH_SIZE / 4;
	out[3] = 0;
	put_le(out + 4, s->tag, 4);
	put_le(out + 8, ino, 8);
	put_le(out + 16, gen, 4);
	put_le(out + 20, fhmap__siphash24(s->key, out, 20), 8);
}

/* ---- readers ---- */
static int sql_tinit(void *tctx)
{
	bench_sql_reader *r = tctx;
	sqlite3 *db;
	int rc = sql_open(&db, r->s->path, 0, "NORMAL");
	if (rc)
		return rc;
	sqlite3_stmt *a = NULL, *b = NULL;
	if (sqlite3_prepare_v2(db, "SELECT gen, type, state, origin, upper FROM object WHERE ino=?1", -1, &a,
	                       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT ino FROM origin WHERE fh=?1", -1, &b, NULL) != SQLITE_OK) {
		rc = sql_err(db, "prepare");
		sqlite3_finalize(a);
		sqlite3_close(db);
		return rc;
	}
	r->db = db;
	r->by_ino = a;
	r->by_origin = b;
	return 0;
}

static void sql_tfini(void *tctx)
{
	bench_sql_reader *r = tctx;
	sqlite3_finalize(r->by_ino);
	sqlite3_finalize(r->by_origin);
	sqlite3_close(r->db);
}

static void blob_realfh(fhmap_realfh *out, const unsigned char *p, int n)
{
	memcpy(&out->layer, p, 4);
	memcpy(&out->type, p + 4, 4);
	out->len = (uint32_t)n - 8;
	memcpy(out->data, p + 8, out->len);
}

static int sql_decode_op(void *tctx, size_t i)
{
	bench_sql_reader *r = tctx;
	const unsigned char *fh = r->fhs + i * FHMAP_FH_SIZE;
	if (fh[0] != 1 || fh[1] != FHMAP_FH_TYPE_BASE || fh[2] != FHMAP_FH_SIZE / 4 || fh[3])
		return -EINVAL;
	if ((uint32_t)le64(fh + 4) != r->s->tag)
		return -ESTALE;
	uint64_t mac = fhmap__siphash24(r->s->key, fh, 20) ^ le64(fh + 20);
	if (mac)
		return -EBADMSG;
	uint64_t ino = le64(fh + 8);
	uint32_t gen = (uint32_t)le64(fh + 16);
	sqlite3_stmt *st = r->by_ino;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)ino);
	int rc = -ESTALE;
	if (sqlite3_step(st) == SQLITE_ROW && (uint32_t)sqlite3_column_int64(st, 0) == gen) {
		fhmap_realfh real;
		int col = sqlite3_column_type(st, 4) == SQLITE_NULL ? 3 : 4;
		blob_realfh(&real, sqlite3_column_blob(st, col), sqlite3_column_bytes(st, col));
		rc = ino == r->expect[i] && sqlite3_column_int(st, 2) != FHMAP_STATE_UNLINKED ? 0 : -ESTALE;
	}
	sqlite3_reset(st);
	return rc;
}

static int sql_lookup_op(void *tctx, size_t i)
{
	bench_sql_reader *r = tctx;
	unsigned char blob[8 + FHMAP_REALFH_MAX];
	size_t blen = fh_blob(blob, &r->origins[i]);
	sqlite3_stmt *st = r->by_origin;
	sqlite3_bind_blob(st, 1, blob, (int)blen, SQLITE_STATIC);
	int rc = sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) == r->expect[i]
	                 ? 0
	                 : -ENOENT;
	sqlite3_reset(st);
	return rc;
}

const bench_kind bench_sql_decode = { "sqlite_decode", sql_decode_op, sql_tinit, sql_tfini };
const bench_kind bench_sql_lookup_origin = { "sqlite_lookup_origin", sql_lookup_op, sql_tinit, sql_tfini };
