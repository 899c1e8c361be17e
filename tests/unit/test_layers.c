/* Layers and real handles. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

START_TEST(add_get_list)
{
	fhmap_layer l, all[4];
	uint32_t id;
	size_t n;
	char p[600];

	CK_OK(fhmap_layer_get(&l, fx.map, fx.lower_id));
	ck_assert_int_eq(l.role, FHMAP_LAYER_LOWER);
	ck_assert_str_eq(l.root, fx.lower);
	CK_OK(fhmap_layer_get(&l, fx.map, fx.upper_id));
	ck_assert_int_eq(l.role, FHMAP_LAYER_UPPER);
	ck_assert_int_eq(fhmap_layer_get(&l, fx.map, 99), -ENXIO);
	ck_assert_int_eq(fhmap_layer_get(&l, fx.map, 0), -ENXIO);

	fx_path(p, sizeof(p), "lower2//");
	CK_OK(fhmap_layer_add(&id, fx.map, FHMAP_LAYER_LOWER, p));
	ck_assert_uint_eq(id, 3);
	ck_assert_int_eq(fhmap_layer_add(&id, fx.map, FHMAP_LAYER_LOWER, p), -EEXIST); /* same root */
	ck_assert_int_eq(fhmap_layer_add(&id, fx.map, FHMAP_LAYER_UPPER, "/another"), -EEXIST);
	ck_assert_int_eq(fhmap_layer_add(&id, fx.map, FHMAP_LAYER_LOWER, "relative"), -EINVAL);
	ck_assert_int_eq(fhmap_layer_add(&id, fx.map, 7, "/x"), -EINVAL);

	CK_OK(fhmap_layer_list(all, 4, &n, fx.map));
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(all[2].id, 3);
	fx_path(p, sizeof(p), "lower2");
	ck_assert_str_eq(all[2].root, p); /* trailing slashes dropped */
	ck_assert_mem_ne(all[0].uuid, all[1].uuid, 16);
	CK_OK(fhmap_layer_list(all, 1, &n, fx.map));
	ck_assert_uint_eq(n, 3);
	CK_OK(fhmap_layer_list(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 3);
}
END_TEST

START_TEST(many_layers)
{
	uint32_t id = 0;
	size_t n;
	char p[64];

	for (int i = 0; i < 500; i++) {
		snprintf(p, sizeof(p), "/layers/l%d", i);
		CK_OK(fhmap_layer_add(&id, fx.map, FHMAP_LAYER_LOWER, p));
	}
	ck_assert_uint_eq(id, 502);
	CK_OK(fhmap_layer_list(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 502);
}
END_TEST

START_TEST(real_handles_open_and_go_stale)
{
	fhmap_realfh fh, fh2, fh3;
	char p[600], buf[16] = "";
	int fd, dfd;

	fx_make("lower/f", "content");
	fh = fx_realfh(fx.lower_id, "f");
	fx_path(p, sizeof(p), "lower/f");
	CK_OK(fhmap_realfh_from_path(&fh2, fx.map, fx.lower_id, p)); /* absolute */
	ck_assert_mem_eq(fh.data, fh2.data, fh.len);
	dfd = open(fx.lower, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dfd, 0);
	CK_OK(fhmap_realfh_at(&fh3, fx.lower_id, dfd, "f"));
	ck_assert_mem_eq(fh.data, fh3.data, fh.len);
	fd = open(p, O_RDONLY);
	CK_OK(fhmap_realfh_at(&fh3, fx.lower_id, fd, ""));
	ck_assert_mem_eq(fh.data, fh3.data, fh.len);
	close(fd);
	close(dfd);

	CK_OK(fhmap_open_real(&fd, fx.map, &fh, O_RDONLY));
	ck_assert_int_eq(read(fd, buf, sizeof(buf) - 1), 7);
	ck_assert_str_eq(buf, "content");
	close(fd);
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(fhmap_open_real(&fd, fx.map, &fh, O_RDONLY), -ESTALE);
	ck_assert_int_eq(fd, -1);
	fh.layer = 42;
	ck_assert_int_eq(fhmap_open_real(&fd, fx.map, &fh, O_RDONLY), -ENXIO);
	ck_assert_int_eq(fhmap_realfh_from_path(&fh, fx.map, fx.lower_id, "missing"), -ENOENT);
	ck_assert_int_eq(fhmap_realfh_from_path(&fh, fx.map, 42, "f"), -ENXIO);
}
END_TEST

/* A layer copied elsewhere: set_root points the map at the copy. */
START_TEST(set_root_moves_layer)
{
	fhmap_layer l;
	char p[600];

	fx_path(p, sizeof(p), "lower-moved");
	CK_OK(fhmap_layer_set_root(fx.map, fx.lower_id, p));
	CK_OK(fhmap_layer_get(&l, fx.map, fx.lower_id));
	ck_assert_str_eq(l.root, p);
	ck_assert_int_eq(l.role, FHMAP_LAYER_LOWER);
	ck_assert_int_eq(fhmap_layer_set_root(fx.map, fx.lower_id, fx.upper), -EEXIST);
	ck_assert_int_eq(fhmap_layer_set_root(fx.map, 99, "/x"), -ENXIO);
	fx_reopen();
	CK_OK(fhmap_layer_get(&l, fx.map, fx.lower_id));
	ck_assert_str_eq(l.root, p);
}
END_TEST

/* A union of lower layers only (fhmap-unionfs without upperdir=) gets its
 * upper layer at a later mount: the objects bound before keep their
 * numbers, generations and handles, and are copied up as any other. */
START_TEST(upper_added_later)
{
	fhmap_object f, again;
	fhmap_decoded d;
	fhmap_realfh fh, up;
	unsigned char h[FHMAP_FH_MAX];
	size_t hlen = sizeof(h);
	uint64_t root;
	uint32_t lower, upper;
	int created;

	fx_close();
	fx_path(fx.db, sizeof(fx.db), "lower-only-map");
	fx.map = fx_open(FHMAP_OPEN_CREATE);
	CK_OK(fhmap_layer_add(&lower, fx.map, FHMAP_LAYER_LOWER, fx.lower));
	fh = fx_realfh(lower, "");
	CK_OK(fhmap_bind(&root, fx.map, &fh, 0, "", S_IFDIR));
	fx_make("lower/f", "x");
	fh = fx_realfh(lower, "f");
	CK_OK(fhmap_object_bind(&f, NULL, fx.map, &fh, root, "f", S_IFREG));
	CK_OK(fhmap_encode(h, &hlen, fx.map, f.ino, 0, 0));
	fx_make("upper/f", "y");
	ck_assert_int_eq(fhmap_copyup_adopt(NULL, fx.map, f.ino, &fh), -ENXIO); /* no upper layer */
	fx_reopen();

	CK_OK(fhmap_layer_add(&upper, fx.map, FHMAP_LAYER_UPPER, fx.upper));
	ck_assert_uint_eq(upper, lower + 1); /* as if registered at once */
	ck_assert_int_eq(fhmap_layer_add(NULL, fx.map, FHMAP_LAYER_UPPER, "/another"), -EEXIST);
	CK_OK(fhmap_object_bind(&again, &created, fx.map, &fh, root, "f", S_IFREG));
	ck_assert_int_eq(created, 0);
	ck_assert_uint_eq(again.ino, f.ino);
	ck_assert_uint_eq(again.gen, f.gen);
	up = fx_realfh(upper, "f");
	CK_OK(fhmap_copyup_adopt(&again, fx.map, f.ino, &up));
	ck_assert_int_eq(again.state, FHMAP_STATE_UPPER);
	CK_OK(fhmap_decode(&d, fx.map, h, hlen, 0));
	ck_assert_uint_eq(d.ino, f.ino);
	ck_assert_uint_eq(d.gen, f.gen);
	ck_assert_uint_eq(d.real.layer, upper);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("layers", &tc);

	tcase_add_test(tc, add_get_list);
	tcase_add_test(tc, many_layers);
	tcase_add_test(tc, set_root_moves_layer);
	tcase_add_test(tc, upper_added_later);
	if (geteuid() == 0)
		tcase_add_test(tc, real_handles_open_and_go_stale);
	else
		printf("SKIP real_handles_open_and_go_stale: open_by_handle_at needs CAP_DAC_READ_SEARCH (run as root)\n");
	return fx_run(s);
}
