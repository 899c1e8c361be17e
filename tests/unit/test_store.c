/* Store: opening, persistence, read-only, foreign and newer maps, growth,
 * batches, backup, error texts. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static int open_at(fhmap **m, const char *path, unsigned int flags)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;

	o.flags = flags;
	return fhmap_open(m, path, &o);
}

START_TEST(persists_across_reopen)
{
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_info before, after;
	fhmap_object obj;
	fhmap_decoded d;
	uint64_t dir, file;
	size_t len = sizeof(fh);

	fx_make("lower/d/", NULL);
	fx_make("lower/d/f", "x");
	dir = fx_bind("d", fx.root, "d");
	file = fx_bind("d/f", dir, "f");
	CK_OK(fhmap_encode(fh, &len, fx.map, file, 0, 0));
	CK_OK(fhmap_info_get(&before, fx.map));
	fx_reopen();
	CK_OK(fhmap_info_get(&after, fx.map));
	ck_assert_mem_eq(before.uuid, after.uuid, 16);
	ck_assert_uint_eq(before.gen_base, after.gen_base);
	ck_assert_uint_eq(after.next_ino, file + 1);
	CK_OK(fhmap_decode(&d, fx.map, fh, len, 0));
	ck_assert_uint_eq(d.ino, file);
	CK_OK(fhmap_get(&obj, fx.map, file));
	ck_assert_str_eq(obj.name, "f");
	ck_assert_uint_eq(obj.parent, dir);
	/* Binding again after the restart gives the same objects. */
	ck_assert_uint_eq(fx_bind("d/f", dir, "f"), file);
}
END_TEST

START_TEST(object_numbers_never_reused)
{
	uint64_t a, b;

	fx_make("lower/a", "a");
	fx_make("lower/b", "b");
	a = fx_bind("a", fx.root, "a");
	CK_OK(fhmap_unlink(fx.map, a));
	CK_OK(fhmap_purge(fx.map, a));
	fx_reopen();
	b = fx_bind("b", fx.root, "b");
	ck_assert_uint_gt(b, a);
	/* The same lower inode bound after its object was forgotten is a new object. */
	ck_assert_uint_gt(fx_bind("a", fx.root, "a"), b);
}
END_TEST

START_TEST(generation_base_differs)
{
	fhmap_info a, b;
	char db2[600];
	fhmap *m2;

	fx_path(db2, sizeof(db2), "map2");
	CK_OK(open_at(&m2, db2, FHMAP_OPEN_CREATE));
	CK_OK(fhmap_info_get(&a, fx.map));
	CK_OK(fhmap_info_get(&b, m2));
	ck_assert_uint_ne(a.gen_base, b.gen_base);
	ck_assert_mem_ne(a.uuid, b.uuid, 16);
	fhmap_close(m2);
}
END_TEST

START_TEST(read_only_refuses_writes)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 7);
	uint64_t ino, file;
	uint32_t id;
	fhmap_object obj;
	fhmap *ro;

	fx_make("lower/f", "x");
	file = fx_bind("f", fx.root, "f");
	ck_assert_int_eq(fhmap_open(&ro, fx.db, NULL), -EBUSY); /* once per process */
	fhmap_close(fx.map);
	ro = fx_open(FHMAP_OPEN_RDONLY);
	CK_OK(fhmap_get(&obj, ro, file));
	ck_assert_int_eq(fhmap_bind(&ino, ro, &fh, fx.root, "n", S_IFREG), -EROFS);
	ck_assert_int_eq(fhmap_create_upper(&ino, ro, &fh, fx.root, "n", S_IFREG), -EROFS);
	ck_assert_int_eq(fhmap_layer_add(&id, ro, FHMAP_LAYER_LOWER, "/elsewhere"), -EROFS);
	ck_assert_int_eq(fhmap_layer_set_root(ro, fx.lower_id, "/elsewhere"), -EROFS);
	ck_assert_int_eq(fhmap_rename(ro, file, fx.root, "g"), -EROFS);
	ck_assert_int_eq(fhmap_unlink(ro, file), -EROFS);
	ck_assert_int_eq(fhmap_purge(ro, file), -EROFS);
	ck_assert_int_eq(fhmap_gen_bump(NULL, ro, file), -EROFS);
	ck_assert_int_eq(fhmap_copyup_begin(ro, file, fx.upper_id), -EROFS);
	ck_assert_int_eq(fhmap_copyup_commit(ro, file, &fh), -EROFS);
	ck_assert_int_eq(fhmap_copyup_abort(ro, file), -EROFS);
	ck_assert_int_eq(fhmap_object_update(ro, &obj), -EROFS);
	ck_assert_int_eq(fhmap_index_remove(ro, FHMAP_INDEX_ORIGIN, &obj.origin), -EROFS);
	ck_assert_int_eq(fhmap_batch_begin(ro), -EROFS);
	CK_OK(fhmap_sync(ro));
	fhmap_close(ro);
	fx.map = fx_open(0);
	/* Nothing changed. */
	CK_OK(fhmap_get(&obj, fx.map, file));
	ck_assert_str_eq(obj.name, "f");
	ck_assert_int_eq(obj.state, FHMAP_STATE_ORIGIN);
}
END_TEST

/* Rewrites the meta "format" key (table byte 'M') in the store directly,
 * as a newer library would. */
static void forge_format(uint32_t version)
{
	unsigned char v[4] = { (unsigned char)version, (unsigned char)(version >> 8), (unsigned char)(version >> 16),
	                       (unsigned char)(version >> 24) },
	              old[4];

	ck_assert_uint_eq(fx_raw_get("Mformat", 7, old, sizeof(old)), 4); /* replaces the real key */
	fx_raw_put("Mformat", 7, v, 4);
}

static char last_log[512];

static void keep_log(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= FHMAP_LOG_WARN)
		snprintf(last_log, sizeof(last_log), "%s", msg);
}

START_TEST(newer_format_refused)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *m = (fhmap *)1;
	char want[64];

	fhmap_close(fx.map);
	fx.map = NULL;
	forge_format(FHMAP_FORMAT_VERSION + 1);
	o.log = keep_log;
	ck_assert_int_eq(fhmap_open(&m, fx.db, &o), -EPROTONOSUPPORT);
	ck_assert_ptr_null(m);
	snprintf(want, sizeof(want), "format version %u;", FHMAP_FORMAT_VERSION + 1);
	ck_assert_msg(strstr(last_log, want) != NULL, "log: %s", last_log);
	o.flags = FHMAP_OPEN_CREATE; /* create never overwrites an existing map */
	ck_assert_int_eq(fhmap_open(&m, fx.db, &o), -EPROTONOSUPPORT);
	forge_format(FHMAP_FORMAT_VERSION);
	CK_OK(fhmap_open(&m, fx.db, NULL));
	fhmap_close(m);
}
END_TEST

/* A map of format 1 (tables as named LMDB tables) is refused by name. */
START_TEST(format_1_refused)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	unsigned char one[4] = { 1, 0, 0, 0 };
	MDB_val k = { 6, "format" }, v = { 4, one };
	char p[600];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	fhmap *m = (fhmap *)1;

	fx_path(p, sizeof(p), "old/");
	fx_make("old/", NULL);
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, p, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi), 0);
	ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	o.log = keep_log;
	last_log[0] = '\0';
	ck_assert_int_eq(fhmap_open(&m, p, &o), -EPROTONOSUPPORT);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(last_log, "format version 1;") != NULL, "log: %s", last_log);
	o.flags = FHMAP_OPEN_CREATE;
	ck_assert_int_eq(fhmap_open(&m, p, &o), -EPROTONOSUPPORT);
	o.flags = FHMAP_OPEN_RDONLY;
	ck_assert_int_eq(fhmap_open(&m, p, &o), -EPROTONOSUPPORT);
}
END_TEST

START_TEST(foreign_and_garbage_refused)
{
	char p[600], data[700];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 3, "key" }, v = { 5, "value" };
	fhmap *m = NULL;
	int fd;

	/* Another application's LMDB environment. */
	fx_path(p, sizeof(p), "foreign/");
	fx_make("foreign/", NULL);
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_open(env, p, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	ck_assert_int_eq(open_at(&m, p, 0), -EMEDIUMTYPE);
	ck_assert_int_eq(open_at(&m, p, FHMAP_OPEN_CREATE), -EMEDIUMTYPE);
	ck_assert_int_eq(open_at(&m, p, FHMAP_OPEN_RDONLY), -EMEDIUMTYPE);

	/* A data file that is not LMDB at all. */
	fx_make("garbage/", NULL);
	fx_path(data, sizeof(data), "garbage/data.mdb");
	fd = open(data, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(write(fd, "not an lmdb file, not a map, ", 29), 29);
	close(fd);
	fx_path(p, sizeof(p), "garbage");
	ck_assert_int_eq(open_at(&m, p, 0), -EMEDIUMTYPE);

	/* A regular file, a missing map, bad options. */
	ck_assert_int_eq(open_at(&m, data, 0), -EMEDIUMTYPE);
	fx_path(p, sizeof(p), "missing");
	ck_assert_int_eq(open_at(&m, p, 0), -ENOENT);
	ck_assert_int_eq(open_at(&m, p, FHMAP_OPEN_RDONLY), -ENOENT);
	ck_assert_int_eq(open_at(&m, p, FHMAP_OPEN_CREATE | FHMAP_OPEN_RDONLY), -EINVAL);
	ck_assert_int_eq(open_at(&m, p, 0x100), -EINVAL);
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	o.version = 99;
	ck_assert_int_eq(fhmap_open(&m, p, &o), -EINVAL);
	ck_assert_int_eq(fhmap_open(NULL, p, NULL), -EINVAL);
	ck_assert_int_eq(fhmap_open(&m, "", NULL), -EINVAL);
	ck_assert_ptr_null(m);
	fhmap_close(NULL);
}
END_TEST

/* A tiny initial map grows by itself to hundreds of thousands of objects,
 * through single updates and batches alike; no MDB_MAP_FULL reaches us. */
START_TEST(grows_from_tiny_map)
{
	enum { SINGLE = 300, BATCH = 2000, N = SINGLE + 150 * BATCH };
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap_map_stats st;
	char p[600];
	fhmap *m;
	uint32_t lower;
	uint64_t root, ino, done = 0, again = 0;
	fhmap_realfh fh;

	fx_path(p, sizeof(p), "tiny");
	o.flags = FHMAP_OPEN_CREATE;
	o.map_size = 32 * 1024;
	CK_OK(fhmap_open(&m, p, &o));
	CK_OK(fhmap_layer_add(&lower, m, FHMAP_LAYER_LOWER, fx.lower));
	fh = fx_fake_fh(lower, 0);
	CK_OK(fhmap_bind(&root, m, &fh, 0, "", S_IFDIR));
	for (uint64_t i = 1; i <= SINGLE; i++) { /* single updates */
		char name[32];

		snprintf(name, sizeof(name), "s%llu", (unsigned long long)i);
		fh = fx_fake_fh(lower, i);
		CK_OK(fhmap_bind(&ino, m, &fh, root, name, S_IFREG));
	}
	done = SINGLE;
	while (done < N) {
		int rc = 0;

		CK_OK(fhmap_batch_begin(m));
		for (uint64_t i = done + 1; i <= done + BATCH; i++) {
			char name[32];

			snprintf(name, sizeof(name), "file-%llu", (unsigned long long)i);
			fh = fx_fake_fh(lower, i);
			if ((rc = fhmap_bind(&ino, m, &fh, root, name, S_IFREG)) != 0)
				break;
			ck_assert_uint_eq(ino, i + 1);
		}
		if (rc == 0)
			rc = fhmap_batch_commit(m);
		else
			CK_OK(fhmap_batch_abort(m));
		ck_assert_msg(rc == 0 || rc == -EAGAIN, "batch: %s", fhmap_strerror(rc));
		if (rc == -EAGAIN)
			again++;
		else
			done += BATCH;
	}
	CK_OK(fhmap_stats(&st, m));
	ck_assert_uint_eq(st.objects, N + 1);
	ck_assert_uint_eq(st.origin_entries, N + 1);
	ck_assert_uint_gt(st.map_size, 16 * 1024 * 1024);
	fhmap_close(m);
	CK_OK(fhmap_open(&m, p, NULL));
	fh = fx_fake_fh(lower, N / 2);
	CK_OK(fhmap_lookup_origin(&ino, m, &fh));
	ck_assert_uint_eq(ino, N / 2 + 1);
	fhmap_close(m);
	/* The map started at 32 KiB: batches had to be redone after growth. */
	ck_assert_uint_gt(again, 0);
}
END_TEST

START_TEST(max_map_size_gives_enospc)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap_realfh fh;
	char p[600];
	fhmap *m;
	uint32_t lower;
	uint64_t root, ino, i;
	int rc = 0;

	fx_path(p, sizeof(p), "capped");
	o.flags = FHMAP_OPEN_CREATE;
	o.map_size = 64 * 1024;
	o.max_map_size = 256 * 1024;
	o.sync = FHMAP_SYNC_LAZY; /* this test is about space, not durability */
	CK_OK(fhmap_open(&m, p, &o));
	CK_OK(fhmap_layer_add(&lower, m, FHMAP_LAYER_LOWER, fx.lower));
	fh = fx_fake_fh(lower, 0);
	CK_OK(fhmap_bind(&root, m, &fh, 0, "", S_IFDIR));
	for (i = 1; i < 100000 && rc == 0; i++) {
		fh = fx_fake_fh(lower, i);
		rc = fhmap_bind(&ino, m, &fh, root, "a-reasonably-long-file-name", S_IFREG);
	}
	ck_assert_int_eq(rc, -ENOSPC);
	/* Still usable and consistent: everything bound before is there. */
	fh = fx_fake_fh(lower, i - 2);
	CK_OK(fhmap_lookup_origin(&ino, m, &fh));
	ck_assert_uint_eq(ino, i - 1);
	fhmap_close(m);
}
END_TEST

START_TEST(batch_commit_abort_and_visibility)
{
	fhmap_realfh fh;
	fhmap_object obj;
	uint64_t a, b;

	fh = fx_fake_fh(fx.lower_id, 100);
	CK_OK(fhmap_batch_begin(fx.map));
	ck_assert_int_eq(fhmap_batch_begin(fx.map), -EBUSY);
	CK_OK(fhmap_bind(&a, fx.map, &fh, fx.root, "a", S_IFREG));
	CK_OK(fhmap_get(&obj, fx.map, a)); /* this thread sees its batch */
	ck_assert_int_eq(fhmap_bind(&b, fx.map, &fh, 12345, "x", S_IFREG), 0); /* existing: same object */
	ck_assert_uint_eq(b, a);
	fh = fx_fake_fh(fx.lower_id, 101);
	ck_assert_int_eq(fhmap_bind(&b, fx.map, &fh, 12345, "x", S_IFREG), -ENOENT); /* batch goes on */
	CK_OK(fhmap_batch_abort(fx.map));
	ck_assert_int_eq(fhmap_get(&obj, fx.map, a), -ENOENT);
	ck_assert_int_eq(fhmap_batch_commit(fx.map), -EINVAL);
	ck_assert_int_eq(fhmap_batch_abort(fx.map), -EINVAL);

	CK_OK(fhmap_batch_begin(fx.map));
	CK_OK(fhmap_bind(&b, fx.map, &fh, fx.root, "b", S_IFREG));
	CK_OK(fhmap_batch_commit(fx.map));
	fx_reopen();
	CK_OK(fhmap_get(&obj, fx.map, b));
	ck_assert_str_eq(obj.name, "b");
	/* Numbers handed out in an aborted batch were never published: the
	 * documented contract is that they are handed out again. */
	ck_assert_uint_eq(b, a);
}
END_TEST

START_TEST(lazy_sync_and_backup)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_decoded d;
	char bk[600];
	fhmap *lazy, *copy;
	uint64_t f;
	size_t len = sizeof(fh);

	fhmap_close(fx.map);
	o.sync = FHMAP_SYNC_LAZY;
	CK_OK(fhmap_open(&lazy, fx.db, &o));
	fx.map = lazy;
	fx_make("lower/f", "x");
	f = fx_bind("f", fx.root, "f");
	CK_OK(fhmap_sync(lazy));
	CK_OK(fhmap_encode(fh, &len, lazy, f, 0, 0));
	fx_path(bk, sizeof(bk), "backup");
	CK_OK(fhmap_backup(lazy, bk));
	ck_assert_int_eq(fhmap_backup(lazy, bk), -EEXIST);
	CK_OK(fhmap_open(&copy, bk, NULL));
	CK_OK(fhmap_decode(&d, copy, fh, len, 0)); /* same identity and secret */
	ck_assert_uint_eq(d.ino, f);
	fhmap_close(copy);
}
END_TEST

START_TEST(strerror_covers_codes)
{
	static const int codes[] = { -EINVAL, -ESTALE, -EBADMSG, -ENOENT, -EEXIST, -EROFS, -ENOSPC, -EAGAIN,
	                             -EMEDIUMTYPE, -EPROTONOSUPPORT, -EUCLEAN, -ENXIO, -EBUSY, -EUSERS, -E2BIG,
	                             -EOVERFLOW, -ERANGE, -ELOOP, -ENOTDIR, -ENAMETOOLONG, -EOPNOTSUPP, -EPERM,
	                             -EACCES, -ENOMEM, -EIO };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		ck_assert_str_ne(fhmap_strerror(codes[i]), "unknown error");
	ck_assert_str_eq(fhmap_strerror(0), "success");
	ck_assert_str_eq(fhmap_strerror(12345), "unknown error");
	ck_assert_str_eq(fhmap_version(), "0.2.0");
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("store", &tc);

	tcase_add_test(tc, persists_across_reopen);
	tcase_add_test(tc, object_numbers_never_reused);
	tcase_add_test(tc, generation_base_differs);
	FX_LMDB_TEST(tc, read_only_refuses_writes);
	tcase_add_test(tc, newer_format_refused);
	FX_LMDB_TEST(tc, format_1_refused);
	FX_LMDB_TEST(tc, foreign_and_garbage_refused);
	FX_LMDB_TEST(tc, grows_from_tiny_map);
	FX_LMDB_TEST(tc, max_map_size_gives_enospc);
	tcase_add_test(tc, batch_commit_abort_and_visibility);
	tcase_add_test(tc, lazy_sync_and_backup);
	tcase_add_test(tc, strerror_covers_codes);
	return fx_run(s);
}
