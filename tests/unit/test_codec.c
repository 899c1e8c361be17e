/* Handle codec: round trips, padding, truncation, bit flips, foreign maps. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static const unsigned int forms[] = { 0, FHMAP_FH_CONNECTABLE, FHMAP_FH_UNSIGNED,
                                      FHMAP_FH_CONNECTABLE | FHMAP_FH_UNSIGNED };
#define NFORMS (sizeof(forms) / sizeof(forms[0]))

static uint64_t dir_ino, file_ino;

static void tree(void)
{
	fx_make("lower/dir/", NULL);
	fx_make("lower/dir/file", "data");
	dir_ino = fx_bind("dir", fx.root, "dir");
	file_ino = fx_bind("dir/file", dir_ino, "file");
}

static size_t enc(unsigned char *fh, uint64_t ino, unsigned int flags)
{
	size_t len = FHMAP_FH_MAX;

	CK_OK(fhmap_encode(fh, &len, fx.map, ino, 0, flags));
	return len;
}

static unsigned int dec_flags(unsigned int form)
{
	return (form & FHMAP_FH_UNSIGNED) ? FHMAP_FH_ALLOW_UNSIGNED : 0;
}

START_TEST(roundtrip_every_form)
{
	static const size_t sizes[] = { FHMAP_FH_SIZE, FHMAP_FH_SIZE_CONNECTABLE, FHMAP_FH_SIZE - 8,
	                                FHMAP_FH_SIZE_CONNECTABLE - 8 };
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_object obj;
	fhmap_decoded d;

	tree();
	CK_OK(fhmap_get(&obj, fx.map, file_ino));
	for (size_t i = 0; i < NFORMS; i++) {
		size_t len = enc(fh, file_ino, forms[i]);

		ck_assert_uint_eq(len, sizes[i]);
		ck_assert_uint_eq(len % 4, 0);
		ck_assert_uint_le(len, (forms[i] & FHMAP_FH_CONNECTABLE) ? 56 : 32);
		ck_assert_uint_eq(fh[1], FHMAP_FH_TYPE_BASE | forms[i]);
		CK_OK(fhmap_decode(&d, fx.map, fh, len, dec_flags(forms[i])));
		ck_assert_int_eq(d.status, FHMAP_FH_OK);
		ck_assert_uint_eq(d.ino, file_ino);
		ck_assert_uint_eq(d.gen, obj.gen);
		ck_assert_uint_eq(d.type, S_IFREG);
		ck_assert_int_eq(d.state, FHMAP_STATE_ORIGIN);
		ck_assert_uint_eq(d.real.len, obj.origin.len);
		ck_assert_mem_eq(d.real.data, obj.origin.data, obj.origin.len);
		ck_assert_int_eq(d.connectable, !!(forms[i] & FHMAP_FH_CONNECTABLE));
		if (d.connectable) {
			ck_assert_uint_eq(d.parent, dir_ino);
			CK_OK(fhmap_decode(&d, fx.map, fh, len, dec_flags(forms[i]) | FHMAP_FH_PARENT));
			ck_assert_uint_eq(d.ino, dir_ino);
			ck_assert_uint_eq(d.type, S_IFDIR);
		} else {
			ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, dec_flags(forms[i]) | FHMAP_FH_PARENT),
			                 -EINVAL);
			ck_assert_int_eq(d.status, FHMAP_FH_NO_PARENT);
		}
	}
}
END_TEST

START_TEST(connectable_with_explicit_parent_and_root)
{
	unsigned char fh[FHMAP_FH_MAX];
	size_t len = sizeof(fh);
	fhmap_decoded d;

	tree();
	CK_OK(fhmap_encode(fh, &len, fx.map, file_ino, fx.root, FHMAP_FH_CONNECTABLE));
	CK_OK(fhmap_decode(&d, fx.map, fh, len, 0));
	ck_assert_uint_eq(d.parent, fx.root);
	len = sizeof(fh);
	ck_assert_int_eq(fhmap_encode(fh, &len, fx.map, fx.root, 0, FHMAP_FH_CONNECTABLE), -EINVAL);
	len = sizeof(fh);
	ck_assert_int_eq(fhmap_encode(fh, &len, fx.map, dir_ino, file_ino, FHMAP_FH_CONNECTABLE), -EINVAL);
	len = 27;
	ck_assert_int_eq(fhmap_encode(fh, &len, fx.map, file_ino, 0, 0), -EOVERFLOW);
	ck_assert_uint_eq(len, FHMAP_FH_SIZE);
	len = sizeof(fh);
	ck_assert_int_eq(fhmap_encode(fh, &len, fx.map, 999, 0, 0), -ENOENT);
	ck_assert_int_eq(fhmap_encode(fh, &len, fx.map, file_ino, 0, 0x80), -EINVAL);
}
END_TEST

START_TEST(padding_accepted)
{
	unsigned char fh[128];
	fhmap_decoded d;

	tree();
	for (size_t i = 0; i < NFORMS; i++) {
		memset(fh, 0, sizeof(fh));
		size_t len = enc(fh, file_ino, forms[i]);

		for (size_t padded = len; padded <= sizeof(fh); padded++) {
			CK_OK(fhmap_decode(&d, fx.map, fh, padded, dec_flags(forms[i])));
			ck_assert_uint_eq(d.ino, file_ino);
		}
		fh[sizeof(fh) - 1] = 1; /* padding must be zero */
		ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, sizeof(fh), dec_flags(forms[i])), -EINVAL);
		ck_assert_int_eq(d.status, FHMAP_FH_MALFORMED);
	}
}
END_TEST

START_TEST(every_truncation_rejected)
{
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_decoded d;
	unsigned int tried = 0;

	tree();
	for (size_t i = 0; i < NFORMS; i++) {
		size_t len = enc(fh, file_ino, forms[i]);

		for (size_t cut = 0; cut < len; cut++, tried++) {
			ck_assert_int_eq(fhmap_decode(&d, fx.map, cut ? fh : NULL, cut, dec_flags(forms[i])), -EINVAL);
			ck_assert_int_eq(d.status, FHMAP_FH_TRUNCATED);
		}
	}
	ck_assert_uint_eq(tried, 28 + 40 + 20 + 32);
}
END_TEST

/* Every single-bit flip of a signed handle is refused. An unsigned handle
 * has no MAC: a flip in the words of what is resolved (object, or parent
 * with FHMAP_FH_PARENT) is refused because generations are unique; a flip
 * elsewhere may still resolve, but always to the object that was encoded. */
START_TEST(every_bit_flip_rejected)
{
	unsigned char fh[FHMAP_FH_MAX], bad[FHMAP_FH_MAX];
	fhmap_decoded d;
	unsigned int flips = 0, refused = 0;

	tree();
	for (size_t i = 0; i < NFORMS; i++) {
		size_t len = enc(fh, file_ino, forms[i]);
		int connectable = !!(forms[i] & FHMAP_FH_CONNECTABLE);

		for (size_t bit = 0; bit < len * 8; bit++) {
			for (int parent = 0; parent <= connectable; parent++, flips++) {
				unsigned int fl = dec_flags(forms[i]) | (parent ? FHMAP_FH_PARENT : 0);
				uint64_t want = parent ? dir_ino : file_ino;
				int rc;

				memcpy(bad, fh, len);
				bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
				rc = fhmap_decode(&d, fx.map, bad, len, fl);
				if (rc < 0) {
					refused++;
					ck_assert_int_ne(d.status, FHMAP_FH_OK);
					continue;
				}
				ck_assert_msg(forms[i] & FHMAP_FH_UNSIGNED, "signed form %zu bit %zu accepted", i, bit);
				ck_assert_msg(d.ino == want, "form %zu bit %zu resolved to object %llu, not %llu", i, bit,
				              (unsigned long long)d.ino, (unsigned long long)want);
			}
		}
	}
	ck_assert_uint_eq(flips, (28 + 40 * 2 + 20 + 32 * 2) * 8);
	/* Signed forms: all 28+40*2 bytes' flips refused; unsigned: all but
	 * the flips of the other object's words in connectable handles. */
	ck_assert_uint_eq(refused, flips - (12 * 8) * 2);
}
END_TEST

START_TEST(reasons_are_distinct)
{
	unsigned char fh[FHMAP_FH_MAX], bad[FHMAP_FH_MAX];
	fhmap_decoded d;
	size_t len;

	tree();
	len = enc(fh, file_ino, 0);
	memcpy(bad, fh, len);
	bad[0] = 2;
	ck_assert_int_eq(fhmap_decode(&d, fx.map, bad, len, 0), -EINVAL);
	ck_assert_int_eq(d.status, FHMAP_FH_BAD_VERSION);
	memcpy(bad, fh, len);
	bad[1] = 0x81; /* a FUSE handle type */
	ck_assert_int_eq(fhmap_decode(&d, fx.map, bad, len, 0), -EINVAL);
	ck_assert_int_eq(d.status, FHMAP_FH_MALFORMED);
	memcpy(bad, fh, len);
	bad[20] ^= 0xff; /* MAC */
	ck_assert_int_eq(fhmap_decode(&d, fx.map, bad, len, 0), -EBADMSG);
	ck_assert_int_eq(d.status, FHMAP_FH_BAD_MAC);
	memcpy(bad, fh, len);
	bad[4] ^= 0xff; /* tag */
	ck_assert_int_eq(fhmap_decode(&d, fx.map, bad, len, 0), -ESTALE);
	ck_assert_int_eq(d.status, FHMAP_FH_FOREIGN);

	len = enc(fh, file_ino, FHMAP_FH_UNSIGNED);
	ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, 0), -EBADMSG);
	ck_assert_int_eq(d.status, FHMAP_FH_UNSIGNED_REFUSED);

	/* Unknown object in a well-formed unsigned handle. */
	memcpy(bad, fh, len);
	bad[8] = 0x77;
	ck_assert_int_eq(fhmap_decode(&d, fx.map, bad, len, FHMAP_FH_ALLOW_UNSIGNED), -ESTALE);
	ck_assert_int_eq(d.status, FHMAP_FH_UNKNOWN);

	ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, 0x100), -EINVAL);
	ck_assert_int_eq(fhmap_decode(NULL, fx.map, fh, len, 0), -EINVAL);
	for (int s = FHMAP_FH_OK; s <= FHMAP_FH_STALE_GEN; s++)
		for (int t = s + 1; t <= FHMAP_FH_STALE_GEN; t++)
			ck_assert_str_ne(fhmap_fh_status_str(s), fhmap_fh_status_str(t));
}
END_TEST

START_TEST(unlink_and_bump_make_stale)
{
	unsigned char fh[FHMAP_FH_MAX], fh2[FHMAP_FH_MAX];
	fhmap_decoded d;
	size_t len, len2;
	uint32_t gen;

	tree();
	len = enc(fh, file_ino, 0);
	len2 = enc(fh2, file_ino, FHMAP_FH_CONNECTABLE);
	CK_OK(fhmap_gen_bump(&gen, fx.map, file_ino));
	ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, 0), -ESTALE);
	ck_assert_int_eq(d.status, FHMAP_FH_STALE_GEN);
	len = enc(fh, file_ino, 0);
	CK_OK(fhmap_decode(&d, fx.map, fh, len, 0));
	ck_assert_uint_eq(d.gen, gen);

	CK_OK(fhmap_unlink(fx.map, file_ino));
	ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, 0), -ESTALE);
	ck_assert_int_eq(d.status, FHMAP_FH_FORGOTTEN);
	ck_assert_int_eq(fhmap_decode(&d, fx.map, fh2, len2, 0), -ESTALE);
	ck_assert_int_eq(fhmap_encode(fh, &len, fx.map, file_ino, 0, 0), -ESTALE);
	/* The parent stays resolvable through a connectable child's handle. */
	CK_OK(fhmap_decode(&d, fx.map, fh2, len2, FHMAP_FH_PARENT));
	ck_assert_uint_eq(d.ino, dir_ino);

	CK_OK(fhmap_purge(fx.map, file_ino));
	ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, 0), -ESTALE);
	ck_assert_int_eq(d.status, FHMAP_FH_UNKNOWN);
}
END_TEST

START_TEST(foreign_map_rejected)
{
	unsigned char fh[FHMAP_FH_MAX];
	char other_db[600];
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *other;
	fhmap_realfh root;
	fhmap_decoded d;
	uint32_t lower;
	uint64_t ino;
	size_t len;

	tree();
	fx_path(other_db, sizeof(other_db), "other");
	o.flags = FHMAP_OPEN_CREATE;
	CK_OK(fhmap_open(&other, other_db, &o));
	CK_OK(fhmap_layer_add(&lower, other, FHMAP_LAYER_LOWER, fx.lower));
	root = fx_realfh(fx.lower_id, "");
	CK_OK(fhmap_bind(&ino, other, &root, 0, "", S_IFDIR));
	for (size_t i = 0; i < NFORMS; i++) {
		len = sizeof(fh);
		CK_OK(fhmap_encode(fh, &len, other, ino, 0, forms[i] & FHMAP_FH_UNSIGNED));
		ck_assert_int_eq(fhmap_decode(&d, fx.map, fh, len, FHMAP_FH_ALLOW_UNSIGNED), -ESTALE);
		ck_assert_int_eq(d.status, FHMAP_FH_FOREIGN);
	}
	fhmap_close(other);
}
END_TEST

START_TEST(decode_follows_copyup)
{
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_realfh up;
	fhmap_decoded d;
	size_t len;

	tree();
	len = enc(fh, file_ino, 0);
	CK_OK(fhmap_copyup_begin(fx.map, file_ino, fx.upper_id));
	CK_OK(fhmap_decode(&d, fx.map, fh, len, 0));
	ck_assert_uint_eq(d.real.layer, fx.lower_id); /* not committed yet */
	ck_assert_int_eq(d.state, FHMAP_STATE_COPYUP);
	fx_make("upper/file", "new");
	up = fx_realfh(fx.upper_id, "file");
	CK_OK(fhmap_copyup_commit(fx.map, file_ino, &up));
	CK_OK(fhmap_decode(&d, fx.map, fh, len, 0));
	ck_assert_uint_eq(d.real.layer, fx.upper_id);
	ck_assert_mem_eq(d.real.data, up.data, up.len);
	ck_assert_int_eq(d.state, FHMAP_STATE_UPPER);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("codec", &tc);

	tcase_add_test(tc, roundtrip_every_form);
	tcase_add_test(tc, connectable_with_explicit_parent_and_root);
	tcase_add_test(tc, padding_accepted);
	tcase_add_test(tc, every_truncation_rejected);
	tcase_add_test(tc, every_bit_flip_rejected);
	tcase_add_test(tc, reasons_are_distinct);
	tcase_add_test(tc, unlink_and_bump_make_stale);
	tcase_add_test(tc, foreign_map_rejected);
	tcase_add_test(tc, decode_follows_copyup);
	return fx_run(s);
}
