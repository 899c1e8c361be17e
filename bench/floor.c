/* The floor: a bare LMDB table with the key format of libfhmap's object
 * table (8-byte big-endian object numbers, default key order) and records of
 * the same size, beside an origin index with libfhmap's keys (real handle ->
 * 8-byte little-endian object number, docs/data-model.md), read the way
 * libfhmap reads: one reusable read transaction per thread, mdb_txn_renew /
 * mdb_get / mdb_txn_reset per operation.
 * The raw floor keeps both in LMDB's main table, the index keys led by the
 * origin table's byte, as libfhmap's format 2 does. The named variant keeps
 * them in named tables of an environment with libfhmap's six tables (format
 * 1): LMDB then looks the table up again in every new read transaction, a
 * cost any multi-table design pays. */
#define _GNU_SOURCE
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct bench_floor {
	MDB_env *env;
	MDB_dbi dbi, idx; /* records, origin index */
	int named;
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

/* The origin index key of libfhmap (lib/record.c): in the main table the
 * origin table's byte 'R', then u16 layer and u32 handle type (big-endian)
 * and the handle's bytes. */
static size_t ikey(unsigned char *key, const fhmap_realfh *fh, int named)
{
	unsigned char *p = key;
	if (!named)
		*p++ = 'R';
	p[0] = (unsigned char)(fh->layer >> 8);
	p[1] = (unsigned char)fh->layer;
	for (int i = 0; i < 4; i++)
		p[2 + i] = (unsigned char)((uint32_t)fh->type >> (24 - 8 * i));
	memcpy(p + 6, fh->data, fh->len);
	return (size_t)(p - key) + 6 + fh->len;
}

static int index_put(bench_floor *f, MDB_txn *txn, const fhmap_realfh *fh, uint64_t ino)
{
	unsigned char key[1 + 6 + FHMAP_REALFH_MAX], val[8];
	for (int i = 0; i < 8; i++)
		val[i] = (unsigned char)(ino >> (8 * i));
	MDB_val k = { ikey(key, fh, f->named), key }, v = { 8, val };
	return mdb_errno(mdb_put(txn, f->idx, &k, &v, 0));
}

static int floor_fill(bench_floor *f, const uint64_t *inos, uint32_t layer, size_t n, size_t vsize)
{
	unsigned char key[8], *val = calloc(1, vsize);
	if (!val)
		return -ENOMEM;
	uint64_t rs = 42;
	int rc = 0;
	for (size_t i = 0; i < n && !rc;) {
		MDB_txn *txn;
		rc = mdb_errno(mdb_txn_begin(f->env, NULL, 0, &txn));
		/* Records by plain puts in ascending order, as libfhmap stores
		 * new objects; their index entries land in random key order,
		 * as a walk of the layer binds them. */
		for (size_t end = i + 100000 < n ? i + 100000 : n; i < end && !rc; i++) {
			be64(key, inos[i]);
			for (size_t b = 0; b + 8 <= vsize; b += 8) {
				uint64_t r = bench_rand(&rs);
				memcpy(val + b, &r, 8);
			}
			MDB_val k = { 8, key }, v = { vsize, val };
			rc = mdb_errno(mdb_put(txn, f->dbi, &k, &v, 0));
			fhmap_realfh fh;
			bench_synth_realfh(&fh, layer, i, 0);
			if (!rc)
				rc = index_put(f, txn, &fh, inos[i]);
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
	f->named = named;
	if (!named) {
		int rc = mdb_errno(mdb_dbi_open(txn, NULL, 0, &f->dbi));
		f->idx = f->dbi;
		return rc;
	}
	for (size_t i = 0; i < sizeof floor_tables / sizeof floor_tables[0]; i++) {
		MDB_dbi d;
		int rc = mdb_errno(mdb_dbi_open(txn, floor_tables[i], MDB_CREATE, &d));
		if (rc)
			return rc;
		if (!strcmp(floor_tables[i], "objects"))
			f->dbi = d;
		else if (!strcmp(floor_tables[i], "origin"))
			f->idx = d;
	}
	return 0;
}

int bench_floor_build(bench_floor **out, const char *dir, const uint64_t *inos, uint32_t layer, size_t n,
                      size_t vsize, int named)
{
	bench_floor *f = calloc(1, sizeof *f);
	int rc = f ? bench_mkdirs(dir) : -ENOMEM;
	if (!rc)
		rc = mdb_errno(mdb_env_create(&f->env));
	if (!rc)
		rc = mdb_errno(mdb_env_set_mapsize(f->env, (size_t)(n * (vsize + 96) * 3 + (64u << 20))));
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
		rc = floor_fill(f, inos, layer, n, vsize);
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

/* The origin index entry of sample @i: its object number, or an error. */
static int index_op(bench_floor_reader *r, size_t i, uint64_t *ino)
{
	unsigned char key[1 + 6 + FHMAP_REALFH_MAX];
	MDB_val k = { ikey(key, &r->origins[i], r->f->named), key }, v;
	int rc = mdb_errno(mdb_get(r->txn, r->f->idx, &k, &v));
	if (rc)
		return rc;
	if (v.mv_size != 8)
		return -EPROTO;
	const unsigned char *p = v.mv_data;
	*ino = 0;
	for (int b = 7; b >= 0; b--)
		*ino = *ino << 8 | p[b];
	return *ino == r->keys[i] ? 0 : -EPROTO;
}

/* A lookup that trusts the index: the index entry alone. */
static int floor_index_op(void *tctx, size_t i)
{
	bench_floor_reader *r = tctx;
	uint64_t ino;
	int rc = mdb_errno(mdb_txn_renew(r->txn));
	if (rc)
		return rc;
	rc = index_op(r, i, &ino);
	mdb_txn_reset(r->txn);
	return rc;
}

/* A lookup that checks the hit: the index entry, then the record it names,
 * copied out as a parse reads it. */
static int floor_lookup_op(void *tctx, size_t i)
{
	bench_floor_reader *r = tctx;
	unsigned char key[8], copy[512];
	uint64_t ino;
	MDB_val k = { 8, key }, v;
	int rc = mdb_errno(mdb_txn_renew(r->txn));
	if (rc)
		return rc;
	if (!(rc = index_op(r, i, &ino))) {
		be64(key, ino);
		rc = mdb_errno(mdb_get(r->txn, r->f->dbi, &k, &v));
	}
	if (!rc)
		memcpy(copy, v.mv_data, v.mv_size < sizeof copy ? v.mv_size : sizeof copy);
	mdb_txn_reset(r->txn);
	__asm__ volatile("" : : "r"(copy) : "memory");
	return rc;
}

const bench_kind bench_floor_get = { "floor_mdb_get", floor_op, floor_tinit, floor_tfini };
const bench_kind bench_floor_index_get = { "floor_index_get", floor_index_op, floor_tinit, floor_tfini };
const bench_kind bench_floor_lookup = { "floor_lookup", floor_lookup_op, floor_tinit, floor_tfini };
const bench_kind bench_floor_named_get = { "floor_named_mdb_get", floor_op, floor_tinit, floor_tfini };
