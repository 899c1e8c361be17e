/* Objects: binding, hardlinks, name hints, rename, unlink, repair,
 * indexes, iteration, statistics. */
#define _GNU_SOURCE
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

START_TEST(hardlinks_bind_to_one_object)
{
	char a[600], b[600];
	fhmap_object obj;
	uint64_t x, y, z;

	fx_make("lower/a", "shared");
	fx_path(a, sizeof(a), "lower/a");
	fx_path(b, sizeof(b), "lower/b");
	ck_assert_int_eq(link(a, b), 0);
	fx_make("lower/c", "other");
	x = fx_bind("a", fx.root, "a");
	y = fx_bind("b", fx.root, "b");
	z = fx_bind("c", fx.root, "c");
	ck_assert_uint_eq(x, y);
	ck_assert_uint_ne(x, z);
	CK_OK(fhmap_get(&obj, fx.map, y));
	ck_assert_str_eq(obj.name, "a"); /* the first link stays the primary one */
	ck_assert_int_eq(obj.state, FHMAP_STATE_ORIGIN);
	ck_assert(obj.has_origin && !obj.has_upper);
	ck_assert_uint_eq(obj.type, S_IFREG);
	CK_OK(fhmap_lookup_origin(&z, fx.map, &obj.origin));
	ck_assert_uint_eq(z, x);
}
END_TEST

START_TEST(bind_validates)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 9), bad;
	uint64_t ino, file;
	char longname[FHMAP_NAME_MAX + 2];

	fx_make("lower/f", "x");
	file = fx_bind("f", fx.root, "f");
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, fx.root, longname, S_IFREG), -ENAMETOOLONG);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, fx.root, "a/b", S_IFREG), -EINVAL);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, fx.root, "..", S_IFREG), -EINVAL);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, fx.root, "", S_IFREG), -EINVAL);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, fx.root, "x", 0777), -EINVAL);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, 999, "x", S_IFREG), -ENOENT);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, file, "x", S_IFREG), -ENOTDIR);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, 0, "", S_IFDIR), -EEXIST); /* a second root */
	bad = fh;
	bad.layer = 77;
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &bad, fx.root, "x", S_IFREG), -ENXIO);
	bad.layer = fx.upper_id; /* origins live on lower layers */
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &bad, fx.root, "x", S_IFREG), -ENXIO);
	ck_assert_int_eq(fhmap_create_upper(&ino, fx.map, &fh, fx.root, "x", S_IFREG), -ENXIO);
	bad = fh;
	bad.len = 0;
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &bad, fx.root, "x", S_IFREG), -EINVAL);
	bad.len = FHMAP_REALFH_MAX + 1;
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &bad, fx.root, "x", S_IFREG), -EINVAL);
	/* The same handle bound as another type: the map refuses to mix them. */
	CK_OK(fhmap_bind(&ino, fx.map, &fh, fx.root, "x", S_IFREG));
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, fx.root, "x", S_IFDIR), -EINVAL);
	CK_OK(fhmap_unlink(fx.map, file));
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, file, "x", S_IFREG), 0); /* existing: no parent check */
	fh = fx_fake_fh(fx.lower_id, 10);
	ck_assert_int_eq(fhmap_bind(&ino, fx.map, &fh, file, "y", S_IFREG), -ESTALE);
}
END_TEST

START_TEST(rename_updates_hints_and_paths)
{
	uint64_t g, p, c, f, other;
	char path[FHMAP_PATH_MAX];

	fx_make("lower/g/", NULL);
	fx_make("lower/g/p/", NULL);
	fx_make("lower/g/p/c/", NULL);
	fx_make("lower/g/p/c/f", "x");
	fx_make("lower/other/", NULL);
	g = fx_bind("g", fx.root, "g");
	p = fx_bind("g/p", g, "p");
	c = fx_bind("g/p/c", p, "c");
	f = fx_bind("g/p/c/f", c, "f");
	other = fx_bind("other", fx.root, "other");
	CK_OK(fhmap_path(path, sizeof(path), fx.map, f));
	ck_assert_str_eq(path, "/g/p/c/f");
	CK_OK(fhmap_path(path, sizeof(path), fx.map, fx.root));
	ck_assert_str_eq(path, "/");

	CK_OK(fhmap_rename(fx.map, f, c, "f2"));
	CK_OK(fhmap_rename(fx.map, p, g, "p2"));
	CK_OK(fhmap_rename(fx.map, g, other, "g2")); /* grandparent moves to a new parent */
	CK_OK(fhmap_path(path, sizeof(path), fx.map, f));
	ck_assert_str_eq(path, "/other/g2/p2/c/f2");
	/* The origins stay where they were on the lower layer. */
	CK_OK(fhmap_origin_path(path, sizeof(path), fx.map, f));
	ck_assert_str_eq(path, "/g/p/c/f");
	CK_OK(fhmap_rename(fx.map, f, other, "f3")); /* a second rename keeps the first place */
	fx_reopen();
	CK_OK(fhmap_path(path, sizeof(path), fx.map, f));
	ck_assert_str_eq(path, "/other/f3");
	CK_OK(fhmap_origin_path(path, sizeof(path), fx.map, f));
	ck_assert_str_eq(path, "/g/p/c/f");
	CK_OK(fhmap_origin_path(path, sizeof(path), fx.map, c));
	ck_assert_str_eq(path, "/g/p/c");
	CK_OK(fhmap_origin_path(path, sizeof(path), fx.map, other));
	ck_assert_str_eq(path, "/other");
	CK_OK(fhmap_rename(fx.map, f, c, "f2"));

	ck_assert_int_eq(fhmap_path(path, 8, fx.map, f), -ERANGE);
	ck_assert_int_eq(fhmap_rename(fx.map, g, c, "loop"), -EINVAL);  /* below itself */
	ck_assert_int_eq(fhmap_rename(fx.map, g, g, "loop"), -EINVAL);
	ck_assert_int_eq(fhmap_rename(fx.map, fx.root, g, "r"), -EINVAL);
	ck_assert_int_eq(fhmap_rename(fx.map, c, f, "x"), -ENOTDIR);
	ck_assert_int_eq(fhmap_rename(fx.map, c, 999, "x"), -ENOENT);
	ck_assert_int_eq(fhmap_rename(fx.map, c, p, "a/b"), -EINVAL);
	CK_OK(fhmap_unlink(fx.map, f));
	ck_assert_int_eq(fhmap_rename(fx.map, f, c, "back"), -ESTALE);
	ck_assert_int_eq(fhmap_path(path, sizeof(path), fx.map, f), -ESTALE);
}
END_TEST

START_TEST(unlink_tombstones)
{
	fhmap_object before, after;
	uint64_t f, again;

	fx_make("lower/f", "x");
	f = fx_bind("f", fx.root, "f");
	CK_OK(fhmap_copyup_begin(fx.map, f, fx.upper_id));
	CK_OK(fhmap_get(&before, fx.map, f));
	CK_OK(fhmap_unlink(fx.map, f));
	CK_OK(fhmap_get(&after, fx.map, f));
	ck_assert_int_eq(after.state, FHMAP_STATE_UNLINKED);
	ck_assert_uint_ne(after.gen, before.gen);
	ck_assert_int_eq(fhmap_lookup_origin(&again, fx.map, &before.origin), -ENOENT);
	size_t n = 1;
	CK_OK(fhmap_copyup_pending(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(fhmap_unlink(fx.map, f), -ESTALE);
	ck_assert_int_eq(fhmap_gen_bump(NULL, fx.map, f), -ESTALE);
	ck_assert_int_eq(fhmap_unlink(fx.map, fx.root), -EINVAL);
	ck_assert_int_eq(fhmap_unlink(fx.map, 4242), -ENOENT);
	ck_assert_int_eq(fhmap_purge(fx.map, fx.root), -EBUSY);
	CK_OK(fhmap_purge(fx.map, f));
	ck_assert_int_eq(fhmap_get(&after, fx.map, f), -ENOENT);
}
END_TEST

START_TEST(create_upper_objects)
{
	fhmap_object obj;
	fhmap_realfh fh;
	uint64_t d, f, again;
	char path[256];

	fx_make("upper/newdir/", NULL);
	fx_make("upper/newdir/new", "born upstairs");
	fh = fx_realfh(fx.upper_id, "newdir");
	CK_OK(fhmap_create_upper(&d, fx.map, &fh, fx.root, "newdir", S_IFDIR));
	fh = fx_realfh(fx.upper_id, "newdir/new");
	CK_OK(fhmap_create_upper(&f, fx.map, &fh, d, "new", S_IFREG));
	CK_OK(fhmap_create_upper(&again, fx.map, &fh, d, "new", S_IFREG));
	ck_assert_uint_eq(again, f);
	CK_OK(fhmap_get(&obj, fx.map, f));
	ck_assert_int_eq(obj.state, FHMAP_STATE_UPPER);
	ck_assert(!obj.has_origin && obj.has_upper);
	CK_OK(fhmap_lookup_upper(&again, fx.map, &fh));
	ck_assert_uint_eq(again, f);
	ck_assert_int_eq(fhmap_lookup_origin(&again, fx.map, &fh), -ENOENT);
	CK_OK(fhmap_path(path, sizeof(path), fx.map, f));
	ck_assert_str_eq(path, "/newdir/new");
	ck_assert_int_eq(fhmap_copyup_begin(fx.map, f, fx.upper_id), -EEXIST);
}
END_TEST

/* Repair: a lost index entry comes back, a layer copied elsewhere gets its
 * new handles, dangling entries can be dropped, valid ones cannot. */
START_TEST(update_and_index_repair)
{
	fhmap_index_entry e;
	fhmap_object obj;
	fhmap_realfh old, moved = fx_fake_fh(fx.lower_id, 555);
	uint64_t f, g, ino;
	unsigned int entries = 0;
	int rc;

	fx_make("lower/f", "x");
	fx_make("lower/g", "y");
	f = fx_bind("f", fx.root, "f");
	g = fx_bind("g", fx.root, "g");
	CK_OK(fhmap_get(&obj, fx.map, f));
	old = obj.origin;
	for (rc = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, NULL); rc == 0;
	     rc = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, &e.fh))
		entries++;
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_uint_eq(entries, 3);
	ck_assert_int_eq(fhmap_index_remove(fx.map, FHMAP_INDEX_ORIGIN, &old), -EBUSY);

	obj.origin = moved; /* as after a rebase */
	strcpy(obj.name, "f-renamed");
	CK_OK(fhmap_object_update(fx.map, &obj));
	CK_OK(fhmap_lookup_origin(&ino, fx.map, &moved));
	ck_assert_uint_eq(ino, f);
	ck_assert_int_eq(fhmap_lookup_origin(&ino, fx.map, &old), -ENOENT);
	CK_OK(fhmap_get(&obj, fx.map, f));
	ck_assert_str_eq(obj.name, "f-renamed");

	/* Another object's handle cannot be taken over. */
	CK_OK(fhmap_get(&obj, fx.map, g));
	obj.origin = moved;
	ck_assert_int_eq(fhmap_object_update(fx.map, &obj), -EEXIST);
	obj.has_origin = 0;
	ck_assert_int_eq(fhmap_object_update(fx.map, &obj), -EINVAL);

	/* Promote to upper by repair (crashed copy-up rolled forward). */
	CK_OK(fhmap_get(&obj, fx.map, g));
	obj.has_upper = 1;
	obj.upper = fx_fake_fh(fx.upper_id, 777);
	CK_OK(fhmap_object_update(fx.map, &obj));
	CK_OK(fhmap_get(&obj, fx.map, g));
	ck_assert_int_eq(obj.state, FHMAP_STATE_UPPER);
	CK_OK(fhmap_lookup_upper(&ino, fx.map, &obj.upper));
	ck_assert_uint_eq(ino, g);
	CK_OK(fhmap_index_next(&e, fx.map, FHMAP_INDEX_UPPER, NULL));
	ck_assert_uint_eq(e.ino, g);
	ck_assert_int_eq(fhmap_index_next(&e, fx.map, FHMAP_INDEX_UPPER, &e.fh), -ENOENT);
	ck_assert_int_eq(fhmap_index_remove(fx.map, FHMAP_INDEX_UPPER, &old), -ENOENT);
}
END_TEST

/* Truncates the value of every origin index entry in the store directly
 * (docs/data-model.md: one key space, keys led by a table byte). */
static void damage_origin_index(void)
{
	fhmap_close(fx.map);
	fx.map = NULL;
	fx_raw_set_table('R', "bad", 3); /* the origin index's table byte */
	fx.map = fx_open(0);
}

/* A damaged index entry is reported with its key: the walk goes past it,
 * and it can be removed and rebuilt. */
START_TEST(damaged_index_entries_walkable)
{
	fhmap_index_entry e;
	fhmap_object obj;
	uint64_t f, ino;
	unsigned int damaged = 0;
	int rc;

	fx_make("lower/f", "x");
	f = fx_bind("f", fx.root, "f");
	damage_origin_index();
	CK_OK(fhmap_get(&obj, fx.map, f));
	ck_assert_int_eq(fhmap_lookup_origin(&ino, fx.map, &obj.origin), -EUCLEAN);
	for (rc = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, NULL); rc == 0 || rc == -EUCLEAN;
	     rc = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, &e.fh)) {
		ck_assert_int_eq(rc, -EUCLEAN);
		ck_assert_uint_eq(e.ino, 0);
		ck_assert_uint_eq(e.fh.layer, fx.lower_id);
		damaged++;
		CK_OK(fhmap_index_remove(fx.map, FHMAP_INDEX_ORIGIN, &e.fh));
	}
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_uint_eq(damaged, 2); /* the root's and f's */
	CK_OK(fhmap_object_update(fx.map, &obj)); /* rebuilds f's entry */
	CK_OK(fhmap_lookup_origin(&ino, fx.map, &obj.origin));
	ck_assert_uint_eq(ino, f);
}
END_TEST

/* Rewrites the record of @ino (under @new_ino) with byte @at XORed by
 * @mask, in the store directly; returns the record's size. */
static size_t damage_record(uint64_t ino, uint64_t new_ino, size_t at, unsigned char mask)
{
	unsigned char key[9] = { 'o' }, nkey[9] = { 'o' }, buf[1024];
	size_t n;

	for (int i = 0; i < 8; i++) {
		key[1 + i] = (unsigned char)(ino >> (56 - 8 * i));
		nkey[1 + i] = (unsigned char)(new_ino >> (56 - 8 * i));
	}
	n = fx_raw_get(key, 9, buf, sizeof(buf));
	ck_assert_uint_gt(n, 0);
	buf[at % n] ^= mask;
	fx_raw_put(nkey, 9, buf, n);
	return n;
}

/* Every damaged byte of an object record, and a record under the wrong
 * object number, is refused (-EUCLEAN) instead of answered. */
/* Points the origin index entry of @from's handle at object @to, in the
 * store directly: an entry that names an object without that handle. */
static void misdirect_origin(const fhmap_realfh *from, uint64_t to)
{
	unsigned char key[1 + 6 + FHMAP_REALFH_MAX], val[8], old[8];

	key[0] = 'R'; /* the origin index's table byte, then u16 layer, u32 type (big-endian), bytes */
	key[1] = (unsigned char)(from->layer >> 8);
	key[2] = (unsigned char)from->layer;
	for (int i = 0; i < 4; i++)
		key[3 + i] = (unsigned char)((uint32_t)from->type >> (24 - 8 * i));
	memcpy(key + 7, from->data, from->len);
	for (int i = 0; i < 8; i++)
		val[i] = (unsigned char)(to >> (8 * i));
	fhmap_close(fx.map);
	fx.map = NULL;
	ck_assert_uint_eq(fx_raw_get(key, 7 + from->len, old, sizeof(old)), 8); /* the entry exists */
	fx_raw_put(key, 7 + from->len, val, 8);
	fx.map = fx_open(0);
}

START_TEST(bind_hands_back_the_record)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 11), up = fx_fake_fh(fx.upper_id, 12);
	fhmap_object o, again, got;
	int created = -1;

	CK_OK(fhmap_object_bind(&o, &created, fx.map, &fh, fx.root, "eleven", S_IFREG));
	ck_assert_int_eq(created, 1);
	CK_OK(fhmap_get(&got, fx.map, o.ino));
	ck_assert_mem_eq(&o, &got, sizeof(o));
	CK_OK(fhmap_object_bind(&again, &created, fx.map, &fh, fx.root, "other-name", S_IFREG));
	ck_assert_int_eq(created, 0);
	ck_assert_mem_eq(&again, &got, sizeof(o));
	ck_assert_int_eq(fhmap_object_bind(&again, NULL, fx.map, &fh, fx.root, "eleven", S_IFDIR), -EINVAL);
	ck_assert_int_eq(fhmap_object_bind(NULL, NULL, fx.map, &fh, fx.root, "eleven", S_IFREG), -EINVAL);
	CK_OK(fhmap_object_create(&o, &created, fx.map, &up, fx.root, "twelve", S_IFDIR));
	ck_assert_int_eq(created, 1);
	ck_assert_int_eq(o.state, FHMAP_STATE_UPPER);
	CK_OK(fhmap_get(&got, fx.map, o.ino));
	ck_assert_mem_eq(&o, &got, sizeof(o));
	ck_assert_int_eq(fhmap_object_create(&o, NULL, fx.map, &fh, fx.root, "x", S_IFREG), -ENXIO);
	/* Looked up again by either handle, in one read. */
	CK_OK(fhmap_object_lookup(&again, fx.map, FHMAP_INDEX_UPPER, &up));
	ck_assert_mem_eq(&again, &got, sizeof(got));
	CK_OK(fhmap_object_lookup(&again, fx.map, FHMAP_INDEX_ORIGIN, &fh));
	ck_assert_str_eq(again.name, "eleven");
	ck_assert_int_eq(fhmap_object_lookup(&again, fx.map, FHMAP_INDEX_UPPER, &fh), -ENOENT);
	ck_assert_int_eq(fhmap_object_lookup(&again, fx.map, 3, &fh), -EINVAL);
}
END_TEST

/* An index entry naming an object that does not carry its handle never
 * answers a lookup or a bind with that object. */
START_TEST(misdirected_index_entry_refused)
{
	fhmap_realfh a = fx_fake_fh(fx.lower_id, 21), b = fx_fake_fh(fx.lower_id, 22);
	fhmap_index_entry e;
	fhmap_object o;
	uint64_t ia, ib, got;
	int rc, seen = 0;

	CK_OK(fhmap_bind(&ia, fx.map, &a, fx.root, "a", S_IFREG));
	CK_OK(fhmap_bind(&ib, fx.map, &b, fx.root, "b", S_IFREG));
	misdirect_origin(&a, ib);
	ck_assert_int_eq(fhmap_lookup_origin(&got, fx.map, &a), -EUCLEAN);
	ck_assert_int_eq(fhmap_bind(&got, fx.map, &a, fx.root, "a", S_IFREG), -EUCLEAN);
	ck_assert_int_eq(fhmap_object_bind(&o, NULL, fx.map, &a, fx.root, "a", S_IFREG), -EUCLEAN);
	ck_assert_int_eq(fhmap_object_lookup(&o, fx.map, FHMAP_INDEX_ORIGIN, &a), -EUCLEAN);
	CK_OK(fhmap_lookup_origin(&got, fx.map, &b));
	ck_assert_uint_eq(got, ib);
	/* Repair sees the raw entry and may drop it; the record then
	 * indexes again. */
	for (rc = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, NULL); rc == 0;
	     rc = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, &e.fh))
		seen += e.fh.len == a.len && !memcmp(e.fh.data, a.data, a.len) && e.ino == ib;
	ck_assert_int_eq(seen, 1);
	CK_OK(fhmap_index_remove(fx.map, FHMAP_INDEX_ORIGIN, &a));
	CK_OK(fhmap_get(&o, fx.map, ia));
	CK_OK(fhmap_object_update(fx.map, &o));
	CK_OK(fhmap_lookup_origin(&got, fx.map, &a));
	ck_assert_uint_eq(got, ia);
}
END_TEST

START_TEST(restore_takes_only_lost_identities)
{
	fhmap_realfh up = fx_fake_fh(fx.upper_id, 31), other = fx_fake_fh(fx.upper_id, 32);
	fhmap_realfh bound = fx_fake_fh(fx.lower_id, 33);
	fhmap_object o, kept;
	fhmap_info info;
	uint64_t file;

	CK_OK(fhmap_object_create(&kept, NULL, fx.map, &up, fx.root, "kept", S_IFREG));
	fx_reopen(); /* the unused rest of the range goes back */
	CK_OK(fhmap_info_get(&info, fx.map));
	memset(&o, 0, sizeof(o));
	o.ino = kept.ino;
	o.gen = kept.gen;
	o.type = S_IFREG;
	o.state = FHMAP_STATE_UPPER;
	o.has_upper = 1;
	o.upper = other;
	o.parent = fx.root;
	strcpy(o.name, "again");
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EEXIST); /* the number is known */
	o.ino = info.next_ino;
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EINVAL); /* never handed out */
	/* A number this process reserved and still holds for later. */
	CK_OK(fhmap_bind(&file, fx.map, &bound, fx.root, "bound", S_IFREG));
	o.ino = file + 1;
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EINVAL);
	/* Bad records. */
	o.ino = FHMAP_ROOT_INO;
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EINVAL);
	o.ino = kept.ino;
	o.state = FHMAP_STATE_COPYUP;
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EINVAL);
	o.state = FHMAP_STATE_UPPER;
	o.has_upper = 0;
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EINVAL);
}
END_TEST

START_TEST(damaged_records_refused)
{
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_decoded d;
	fhmap_object obj;
	size_t len = sizeof(fh), n;
	uint64_t f;

	fx_make("lower/file-with-a-name", "x");
	f = fx_bind("file-with-a-name", fx.root, "file-with-a-name");
	CK_OK(fhmap_encode(fh, &len, fx.map, f, 0, 0));
	fhmap_close(fx.map);
	n = damage_record(f, f, 0, 0); /* size only */
	for (size_t at = 0; at < n; at++) {
		damage_record(f, f, at, 0x10);
		fx.map = fx_open(0);
		ck_assert_msg(fhmap_get(&obj, fx.map, f) == -EUCLEAN, "byte %zu", at);
		ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, 0), -EUCLEAN);
		fhmap_close(fx.map);
		damage_record(f, f, at, 0x10); /* restore */
	}
	damage_record(f, f + 1, 0, 0); /* the same record under another number */
	fx.map = fx_open(0);
	CK_OK(fhmap_decode(&d, fx.map, fh, len, 0));
	ck_assert_int_eq(fhmap_get(&obj, fx.map, f + 1), -EUCLEAN);
}
END_TEST

START_TEST(iterate_and_count)
{
	fhmap_map_stats st;
	fhmap_object obj;
	fhmap_iter *it;
	uint64_t f[5], seen = 0, last = 0;
	int rc;

	for (int i = 0; i < 5; i++) {
		char rel[32], name[8];

		snprintf(name, sizeof(name), "f%d", i);
		snprintf(rel, sizeof(rel), "lower/%s", name);
		fx_make(rel, "x");
		f[i] = fx_bind(name, fx.root, name);
	}
	CK_OK(fhmap_unlink(fx.map, f[1]));
	CK_OK(fhmap_copyup_begin(fx.map, f[2], fx.upper_id));
	CK_OK(fhmap_iter_new(&it, fx.map, 0));
	while ((rc = fhmap_iter_next(&obj, it)) == 0) {
		ck_assert_uint_gt(obj.ino, last);
		last = obj.ino;
		seen++;
		if (obj.ino == f[3]) /* updates while iterating are fine */
			CK_OK(fhmap_rename(fx.map, f[4], fx.root, "renamed"));
	}
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_int_eq(fhmap_iter_next(&obj, it), -ENOENT);
	fhmap_iter_free(it);
	ck_assert_uint_eq(seen, 6);
	CK_OK(fhmap_iter_new(&it, fx.map, f[3]));
	CK_OK(fhmap_iter_next(&obj, it));
	ck_assert_uint_eq(obj.ino, f[3]);
	fhmap_iter_free(it);
	fhmap_iter_free(NULL);

	CK_OK(fhmap_stats(&st, fx.map));
	ck_assert_uint_eq(st.objects, 6);
	ck_assert_uint_eq(st.origin_only, 4);
	ck_assert_uint_eq(st.copying, 1);
	ck_assert_uint_eq(st.unlinked, 1);
	ck_assert_uint_eq(st.upper, 0);
	ck_assert_uint_eq(st.origin_entries, 5);
	ck_assert_uint_eq(st.pending, 1);
	ck_assert_uint_eq(st.layers, 2);
	ck_assert_uint_gt(st.leaf_pages, 0);
	ck_assert_uint_ge(st.map_size, st.used_bytes);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("objects", &tc);

	tcase_add_test(tc, hardlinks_bind_to_one_object);
	tcase_add_test(tc, bind_validates);
	tcase_add_test(tc, rename_updates_hints_and_paths);
	tcase_add_test(tc, unlink_tombstones);
	tcase_add_test(tc, create_upper_objects);
	tcase_add_test(tc, update_and_index_repair);
	tcase_add_test(tc, damaged_index_entries_walkable);
	tcase_add_test(tc, damaged_records_refused);
	tcase_add_test(tc, bind_hands_back_the_record);
	tcase_add_test(tc, misdirected_index_entry_refused);
	tcase_add_test(tc, restore_takes_only_lost_identities);
	tcase_add_test(tc, iterate_and_count);
	return fx_run(s);
}
