/* The floor: a bare LMDB table with the key format of libfhmap's object
 * table (8-byte big-endian object numbers, default key order) and records of
 * the same size, read the way libfhmap reads: one reusable read transaction
 * per thread, mdb_txn_renew / mdb_get / mdb_txn_reset per operation.
 * The raw floor keeps the records in LMDB's main table. The named variant
 * keeps them in a named table of an environment with libfhmap's six tables:
 * LMDB then looks the table up again in every new read transaction, a cost
 * any multi-table design pays. */
#define _GNU_SOURCE
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct bench_floor {
	MDB_env *env;
	MDB_dbi dbi;
};

static int mdb_errno(int rc)
{
	return rc == 0 ? 0 : rc > 0 ? -rc : -EIO;
}

static void be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static int floor_fill(bench_floor *f, const uint64_t *inos, size_t n, size_t vsize)
{
	unsigned char key[8], *val = calloc(1, vsize);
	if (!val)
		return -ENOMEM;
	uint64_t rs = 42;
	int rc = 0;
	for (size_t i = 0; i < n && !rc;) {
		MDB_txn *txn;
		rc = mdb_errno(mdb_txn_begin(f->env, NULL, 0, &txn));
		/* Plain puts in ascending order, as libfhmap stores new objects. */
		for (size_t end = i + 100000 < n ? i + 100000 : n; i < end && !rc; i++) {
			be64(key, inos[i]);
			for (size_t b = 0; b + 8 <= vsize; b += 8) {
				uint64_t r = bench_rand(&rs);
				memcpy(val + b, &r, 8);
			}
			MDB_val k = { 8, key }, v = { vsize, val };
			rc = mdb_errno(mdb_put(txn, f->dbi, &k, &v, 0));
		}
		if (rc)
			mdb_txn_abort(txn);
		else
			rc = mdb_errno(mdb_txn_commit(txn));
	}
	free(val);
	return rc;
}

static const char *const floor_tables[] = { "meta", "layers", "objects", "origin", "upper", "pending" };

static int floor_tables_open(bench_floor *f, MDB_txn *txn, int named)
{
	if (!named)
		return mdb_errno(mdb_dbi_open(txn, NULL, 0, &f->dbi));
	for (size_t i = 0; i < sizeof floor_tables / sizeof floor_tables[0]; i++) {
		MDB_dbi d;
		int rc = mdb_errno(mdb_dbi_open(txn, floor_tables[i], MDB_CREATE, &d));
		if (rc)
			return rc;
		if (!strcmp(floor_tables[i], "objects"))
			f->dbi = d;
	}
	return 0;
}

int bench_floor_build(bench_floor **out, const char *dir, const uint64_t *inos, size_t n, size_t vsize, int named)
{
	bench_floor *f = calloc(1, sizeof *f);
	int rc = f ? bench_mkdirs(dir) : -ENOMEM;
	if (!rc)
		rc = mdb_errno(mdb_env_create(&f->env));
	if (!rc)
		rc = mdb_errno(mdb_env_set_mapsize(f->env, (size_t)(n * (vsize + 64) * 3 + (64u << 20))));
	if (!rc)
		rc = mdb_errno(mdb_env_set_maxdbs(f->env, 8));
	if (!rc)
		rc = mdb_errno(mdb_env_open(f->env, dir, MDB_NOTLS | MDB_NOSYNC, 0644));
	if (!rc) {
		MDB_txn *txn;
		rc = mdb_errno(mdb_txn_begin(f->env, NULL, 0, &txn));
		if (!rc)
			rc = floor_tables_open(f, txn, named);
		if (!rc)
			rc = mdb_errno(mdb_txn_commit(txn));
	}
	if (!rc)
		rc = floor_fill(f, inos, n, vsize);
	if (!rc)
		rc = mdb_errno(mdb_env_sync(f->env, 1));
	if (rc) {
		bench_floor_close(f);
		return rc;
	}
	*out = f;
	return 0;
}

void bench_floor_close(bench_floor *f)
{
	if (!f)
		return;
	if (f->env)
		mdb_env_close(f->env);
	free(f);
}

static int floor_tinit(void *tctx)
{
	bench_floor_reader *r = tctx;
	MDB_txn *txn;
	int rc = mdb_errno(mdb_txn_begin(r->f->env, NULL, MDB_RDONLY, &txn));
	if (rc)
		return rc;
	mdb_txn_reset(txn);
	r->txn = txn;
	return 0;
}

static void floor_tfini(void *tctx)
{
	bench_floor_reader *r = tctx;
	mdb_txn_abort(r->txn);
	r->txn = NULL;
}

static int floor_op(void *tctx, size_t i)
{
	bench_floor_reader *r = tctx;
	MDB_txn *txn = r->txn;
	unsigned char key[8], copy[512];
	be64(key, r->keys[i]);
	MDB_val k = { 8, key }, v;
	int rc = mdb_errno(mdb_txn_renew(txn));
	if (rc)
		return rc;
	rc = mdb_errno(mdb_get(txn, r->f->dbi, &k, &v));
	/* Copy the record out, as a decode unpacks it, before the reset. */
	if (!rc)
		memcpy(copy, v.mv_data, v.mv_size < sizeof copy ? v.mv_size : sizeof copy);
	mdb_txn_reset(txn);
	__asm__ volatile("" : : "r"(copy) : "memory");
	return rc;
}

const bench_kind bench_floor_get = { "floor_mdb_get", floor_op, floor_tinit, floor_tfini };
const bench_kind bench_floor_named_get = { "floor_named_mdb_get", floor_op, floor_tinit, floor_tfini };
