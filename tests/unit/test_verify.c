/* FHMAP_OPEN_VERIFY: a map with a damaged LMDB page is refused with
 * -EUCLEAN instead of crashing the caller, and is left as it was; sound,
 * missing and new maps open as without the flag. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

enum { NOBJ = 3000, BATCH = 500 };

/* LMDB 0.9 page layout: a 16-byte header (pgno u64, pad u16, flags u16,
 * lower u16, upper u16), then the u16 offsets of the nodes; nodes (lo u16,
 * hi u16, flags u16, key size u16, key, data) sit at the end of the page,
 * free space between. */
#define PG_FLAGS 10
#define PG_LOWER 12
#define PG_UPPER 14
#define PG_PTRS 16
#define P_LEAF 0x02
#define F_DUPDATA 0x04

static int open_flags(fhmap **m, const char *path, unsigned int flags)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;

	o.flags = flags;
	return fhmap_open(m, path, &o);
}

static void populate(void)
{
	fhmap_realfh fh;
	char name[32];
	uint64_t ino;

	for (uint64_t i = 1; i <= NOBJ; i++) {
		if (i % BATCH == 1)
			CK_OK(fhmap_batch_begin(fx.map));
		snprintf(name, sizeof(name), "f%llu", (unsigned long long)i);
		fh = fx_fake_fh(fx.lower_id, i);
		CK_OK(fhmap_bind(&ino, fx.map, &fh, fx.root, name, S_IFREG));
		if (i % BATCH == 0)
			CK_OK(fhmap_batch_commit(fx.map));
	}
	fhmap_close(fx.map);
	fx.map = NULL;
}

static unsigned char *read_all(const char *path, size_t *size)
{
	unsigned char *buf;
	struct stat st;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	*size = (size_t)st.st_size;
	buf = malloc(*size);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(read(fd, buf, *size), (ssize_t)*size);
	close(fd);
	return buf;
}

static void write_all(const char *path, const unsigned char *buf, size_t size)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, size, 0), (ssize_t)size);
	ck_assert_int_eq(fsync(fd), 0);
	close(fd);
}

static unsigned int u16(const unsigned char *p)
{
	return p[0] | (unsigned int)p[1] << 8;
}

static void put_u16(unsigned char *p, unsigned int v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

/* A live leaf page of LMDB's main table (DBI 1) with room for a planted
 * node: where a cursor finds its keys in the map, confirmed by the page
 * header in @img. Stale copies of pages, which no walk reaches, are never
 * picked. */
static size_t main_leaf(const unsigned char *img, size_t size, size_t *psize)
{
	MDB_stat st;
	MDB_env *env;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	size_t found = 0;

	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_open(env, fx.db, MDB_RDONLY, 0600), 0);
	mdb_env_stat(env, &st);
	*psize = st.ms_psize;
	ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	ck_assert_int_eq(mdb_cursor_open(txn, 1, &c), 0);
	while (!found && mdb_cursor_get(c, &k, &v, MDB_NEXT) == 0) {
		/* The map is page-aligned, a page starts with its number. */
		const unsigned char *mapped = (const unsigned char *)((uintptr_t)k.mv_data & ~(uintptr_t)(*psize - 1));
		size_t pg = (size_t)le64toh(*(const uint64_t *)mapped);
		const unsigned char *p = img + pg * *psize;

		ck_assert_uint_le((pg + 1) * *psize, size);
		ck_assert_mem_eq(p, mapped, *psize);
		if ((u16(p + PG_FLAGS) & P_LEAF) && u16(p + PG_UPPER) - u16(p + PG_LOWER) >= 32)
			found = pg;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	ck_assert_uint_gt(found, 1);
	return found;
}

/* Damages page @pg as the fuzzer's lmdb-leaf-node-offset finding does: the
 * first node offset now points elsewhere. It points into the page's free
 * space, at a planted node marked as holding duplicates in a table that has
 * none, so that the outcome does not depend on what bytes a random offset
 * happens to hit: LMDB 0.9 follows such a node into a sub-cursor that does
 * not exist. */
static void damage_leaf(unsigned char *img, size_t pg, size_t psize)
{
	unsigned char *p = img + pg * psize;
	unsigned int lower = u16(p + PG_LOWER), node = (lower + 1) & ~1u;

	put_u16(p + node, 8);         /* data size, low half */
	put_u16(p + node + 2, 0);     /* data size, high half */
	put_u16(p + node + 4, F_DUPDATA);
	put_u16(p + node + 6, 8);     /* key size */
	memset(p + node + 8, 0xee, 16); /* key and data */
	put_u16(p + PG_PTRS, node);
}

/* File offset of the first page number on LMDB's free list (DBI 0: per
 * transaction id, a count and that many page numbers). */
static size_t free_list_entry(size_t *psize)
{
	MDB_stat st;
	MDB_env *env;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t count;
	size_t off;

	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_open(env, fx.db, MDB_RDONLY, 0600), 0);
	mdb_env_stat(env, &st);
	*psize = st.ms_psize;
	ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	ck_assert_int_eq(mdb_cursor_open(txn, 0, &c), 0);
	ck_assert_int_eq(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
	memcpy(&count, v.mv_data, 8);
	ck_assert_uint_gt(count, 0);
	{
		const unsigned char *mapped = (const unsigned char *)((uintptr_t)v.mv_data & ~(uintptr_t)(*psize - 1));

		off = (size_t)le64toh(*(const uint64_t *)mapped) * *psize +
		      (size_t)((const unsigned char *)v.mv_data - mapped) + 8;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return off;
}

/* Opens @path without verification and reads everything in a child;
 * returns its wait status (exit 0: every call succeeded). */
static int use_unverified(const char *path)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fhmap_map_stats st;
		fhmap_layer layers[4];
		fhmap_object o;
		fhmap_iter *it;
		fhmap *m;
		size_t n;
		int rc = open_flags(&m, path, FHMAP_OPEN_RDONLY);

		if (rc == 0 && (rc = fhmap_stats(&st, m)) == 0 && (rc = fhmap_layer_list(layers, 4, &n, m)) == 0 &&
		    (rc = fhmap_iter_new(&it, m, 0)) == 0) {
			while ((rc = fhmap_iter_next(&o, it)) == 0)
				;
			rc = rc == -ENOENT ? 0 : rc;
			fhmap_iter_free(it);
		}
		_exit(rc == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

START_TEST(damaged_page_refused)
{
	unsigned char *img, *after;
	size_t size, size2, pg, psize;
	char data[600];
	fhmap *m = NULL;
	int status;

	populate();
	snprintf(data, sizeof(data), "%s/data.mdb", fx.db);
	/* Sound: verified, and opens as it did. */
	CK_OK(open_flags(&m, fx.db, FHMAP_OPEN_VERIFY));
	fhmap_close(m);
	CK_OK(open_flags(&m, fx.db, FHMAP_OPEN_RDONLY | FHMAP_OPEN_VERIFY));
	fhmap_close(m);
	img = read_all(data, &size);
	pg = main_leaf(img, size, &psize);
	damage_leaf(img, pg, psize);
	write_all(data, img, size);
	/* The damage is real: without the flag, reading the map crashes the
	 * process (LMDB 0.9 follows the planted node). */
	status = use_unverified(fx.db);
	ck_assert_msg(WIFSIGNALED(status), "damaged map read without a crash (status %#x)", status);
	/* With it, a clean error in this process, read-only or not. */
	m = NULL;
	ck_assert_int_eq(open_flags(&m, fx.db, FHMAP_OPEN_VERIFY), -EUCLEAN);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(open_flags(&m, fx.db, FHMAP_OPEN_RDONLY | FHMAP_OPEN_VERIFY), -EUCLEAN);
	ck_assert_ptr_null(m);
	/* Verification wrote nothing. */
	after = read_all(data, &size2);
	ck_assert_uint_eq(size2, size);
	ck_assert_mem_eq(after, img, size);
	free(after);
	free(img);
}
END_TEST

START_TEST(damaged_free_list_refused)
{
	unsigned char *img, *after;
	uint64_t wild = 0x7fffffff;
	size_t size, size2, psize, off;
	char data[600];
	fhmap *m = NULL;

	populate(); /* its batches leave pages on the free list */
	snprintf(data, sizeof(data), "%s/data.mdb", fx.db);
	CK_OK(open_flags(&m, fx.db, FHMAP_OPEN_VERIFY));
	fhmap_close(m);
	m = NULL;
	img = read_all(data, &size);
	off = free_list_entry(&psize);
	ck_assert_uint_le(off + 8, size);
	/* A page far outside the file: a later update would reuse it. */
	memcpy(img + off, &wild, 8);
	write_all(data, img, size);
	ck_assert_int_eq(open_flags(&m, fx.db, FHMAP_OPEN_VERIFY), -EUCLEAN);
	ck_assert_ptr_null(m);
	after = read_all(data, &size2);
	ck_assert_uint_eq(size2, size);
	ck_assert_mem_eq(after, img, size);
	free(after);
	free(img);
}
END_TEST

START_TEST(missing_and_new_maps)
{
	char p[600];
	fhmap *m = NULL;

	/* The verifying child exits without freeing the map it inherits:
	 * under valgrind that is a leak, and the child's exit status 99. */
	fhmap_close(fx.map);
	fx.map = NULL;
	fx_path(p, sizeof(p), "nothing-here");
	ck_assert_int_eq(open_flags(&m, p, FHMAP_OPEN_VERIFY), -ENOENT);
	ck_assert_int_eq(open_flags(&m, p, FHMAP_OPEN_RDONLY | FHMAP_OPEN_VERIFY), -ENOENT);
	ck_assert_ptr_null(m);
	/* Nothing to verify yet: a new map is created as without the flag. */
	CK_OK(open_flags(&m, p, FHMAP_OPEN_CREATE | FHMAP_OPEN_VERIFY));
	fhmap_close(m);
	CK_OK(open_flags(&m, p, FHMAP_OPEN_VERIFY));
	fhmap_close(m);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("verify", &tc);

	tcase_add_test(tc, damaged_page_refused);
	tcase_add_test(tc, damaged_free_list_refused);
	tcase_add_test(tc, missing_and_new_maps);
	return fx_run(s);
}
