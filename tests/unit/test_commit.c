/* The write path (lib/commit.c, lib/gen.c): updates of concurrent threads
 * share one commit, a failing member leaves the others alone, a poisoned
 * group is run again without its poison, and object numbers come from
 * ranges that no crash or second process makes repeat. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

enum { GROUP = 8 };

struct writer {
	pthread_t t;
	uint64_t parent;
	uint64_t n;      /* fake handle number */
	uint64_t ino;
	int rc;
};

static void *bind_one(void *arg)
{
	struct writer *w = arg;
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, w->n);
	char name[32];

	snprintf(name, sizeof(name), "g%llu", (unsigned long long)w->n);
	w->rc = fhmap_bind(&w->ino, fx.map, &fh, w->parent, name, S_IFREG);
	return NULL;
}

/* Holds a batch (the writer role) while GROUP threads queue one bind each,
 * then ends it: the queued binds go into one commit. */
static uint64_t queued_group(struct writer *w, uint64_t bad_parent)
{
	uint64_t before;

	CK_OK(fhmap_batch_begin(fx.map));
	before = fx_txnid();
	for (int i = 0; i < GROUP; i++) {
		w[i].parent = i == 3 && bad_parent ? bad_parent : fx.root;
		w[i].n = 100 + (uint64_t)i;
		ck_assert_int_eq(pthread_create(&w[i].t, NULL, bind_one, &w[i]), 0);
	}
	fx_wait_sleepers(GROUP);
	CK_OK(fhmap_batch_commit(fx.map)); /* empty: LMDB commits nothing */
	for (int i = 0; i < GROUP; i++)
		ck_assert_int_eq(pthread_join(w[i].t, NULL), 0);
	return fx_txnid() - before;
}

START_TEST(concurrent_updates_share_a_commit)
{
	struct writer w[GROUP];
	uint64_t commits = queued_group(w, 0);

	/* One commit for all eight binds. */
	ck_assert_uint_eq(commits, 1);
	for (int i = 0; i < GROUP; i++) {
		fhmap_object o;

		CK_OK(w[i].rc);
		CK_OK(fhmap_get(&o, fx.map, w[i].ino));
		ck_assert_uint_eq(o.parent, fx.root);
		for (int j = 0; j < i; j++)
			ck_assert_uint_ne(w[i].ino, w[j].ino);
	}
	fx_reopen();
	for (int i = 0; i < GROUP; i++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, w[i].n);
		uint64_t ino;

		CK_OK(fhmap_lookup_origin(&ino, fx.map, &fh));
		ck_assert_uint_eq(ino, w[i].ino);
	}
}
END_TEST

START_TEST(failing_member_leaves_the_group_alone)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 7);
	struct writer w[GROUP];
	uint64_t file, commits;

	CK_OK(fhmap_bind(&file, fx.map, &fh, fx.root, "file", S_IFREG));
	commits = queued_group(w, file); /* one thread binds below a file */
	ck_assert_uint_eq(commits, 1);
	for (int i = 0; i < GROUP; i++) {
		fhmap_object o;

		if (i == 3) {
			ck_assert_int_eq(w[i].rc, -ENOTDIR);
			continue;
		}
		CK_OK(w[i].rc);
		CK_OK(fhmap_get(&o, fx.map, w[i].ino));
	}
}
END_TEST

struct filler {
	pthread_t t;
	int id, ok, rc;
	uint64_t ino[4096];
};

static void *fill(void *arg)
{
	struct filler *f = arg;
	char name[64];

	for (f->ok = 0; f->ok < 4096; f->ok++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 1000000u * (uint64_t)(f->id + 1) + (uint64_t)f->ok);

		/* Long names: the map fills after a few hundred. */
		snprintf(name, sizeof(name), "%d-%d-%040d", f->id, f->ok, 0);
		if ((f->rc = fhmap_bind(&f->ino[f->ok], fx.map, &fh, fx.root, name, S_IFREG)) != 0)
			break;
	}
	return NULL;
}

START_TEST(full_map_poisons_only_its_update)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	static struct filler f[4];

	fx_close();
	o.map_size = 64 * 1024;
	o.max_map_size = 256 * 1024;
	CK_OK(fhmap_open(&fx.map, fx.db, &o));
	for (int i = 0; i < 4; i++) {
		f[i].id = i;
		ck_assert_int_eq(pthread_create(&f[i].t, NULL, fill, &f[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(f[i].t, NULL), 0);
		ck_assert_msg(f[i].rc == -ENOSPC, "writer %d stopped with %s", i, fhmap_strerror(f[i].rc));
		ck_assert_int_gt(f[i].ok, 0);
	}
	fx_reopen();
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < f[i].ok; k++) {
			fhmap_object ob;

			CK_OK(fhmap_get(&ob, fx.map, f[i].ino[k]));
			ck_assert_uint_eq(ob.parent, fx.root);
		}
}
END_TEST

START_TEST(batch_holds_back_group_writers)
{
	struct writer w = { .parent = 0, .n = 5 };
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 6);
	uint64_t ino;

	w.parent = fx.root;
	CK_OK(fhmap_batch_begin(fx.map));
	CK_OK(fhmap_bind(&ino, fx.map, &fh, fx.root, "in-batch", S_IFREG));
	ck_assert_int_eq(pthread_create(&w.t, NULL, bind_one, &w), 0);
	fx_wait_sleepers(1);
	CK_OK(fhmap_batch_abort(fx.map));
	ck_assert_int_eq(pthread_join(w.t, NULL), 0);
	CK_OK(w.rc);
	/* The aborted batch's number is handed out again, to the writer. */
	ck_assert_uint_eq(w.ino, ino);
	ck_assert_int_eq(fhmap_lookup_origin(&ino, fx.map, &fh), -ENOENT);
}
END_TEST

START_TEST(close_gives_unused_numbers_back)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 9);
	fhmap_info info;
	uint64_t ino;

	CK_OK(fhmap_bind(&ino, fx.map, &fh, fx.root, "nine", S_IFREG));
	CK_OK(fhmap_info_get(&info, fx.map));
	ck_assert_uint_ge(info.next_ino, ino + 1); /* a range is reserved */
	fx_reopen();
	CK_OK(fhmap_info_get(&info, fx.map));
	ck_assert_uint_eq(info.next_ino, ino + 1);
}
END_TEST

/* A lazy writer dies without closing: the numbers it handed out (and its
 * range) are never handed out again, and no pair repeats. */
START_TEST(lazy_crash_never_repeats_numbers)
{
	uint64_t got[2 * 64];
	int pfd[2], status;
	size_t n = 0;
	pid_t pid;

	fx_close();
	ck_assert_int_eq(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fhmap *m = fx_open_mode(0, FHMAP_SYNC_LAZY, 0);

		for (uint64_t i = 0; i < 64; i++) {
			fhmap_realfh fh = fx_fake_fh(fx.lower_id, 500 + i);
			char name[16];
			uint64_t rec[2];
			fhmap_object o;

			snprintf(name, sizeof(name), "c%llu", (unsigned long long)i);
			if (fhmap_object_bind(&o, NULL, m, &fh, fx.root, name, S_IFREG))
				_exit(2);
			rec[0] = o.ino;
			rec[1] = o.gen;
			if (write(pfd[1], rec, sizeof(rec)) != sizeof(rec))
				_exit(3);
		}
		fx_crash(); /* no close */
	}
	close(pfd[1]);
	while (n < 2 * 64 && read(pfd[0], &got[n], 2 * sizeof(uint64_t)) == 2 * sizeof(uint64_t))
		n += 2;
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ck_assert_uint_eq(n, 2 * 64);
	fx.map = fx_open_mode(0, FHMAP_SYNC_LAZY, 0);
	for (uint64_t i = 0; i < 64; i++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 900 + i);
		char name[16];
		fhmap_object o;

		snprintf(name, sizeof(name), "d%llu", (unsigned long long)i);
		CK_OK(fhmap_object_bind(&o, NULL, fx.map, &fh, fx.root, name, S_IFREG));
		for (size_t k = 0; k < n; k += 2) {
			ck_assert_uint_gt(o.ino, got[k]);
			ck_assert_uint_ne(o.gen, (uint32_t)got[k + 1]);
		}
	}
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("commit", &tc);

	FX_LMDB_TEST(tc, concurrent_updates_share_a_commit);
	FX_LMDB_TEST(tc, failing_member_leaves_the_group_alone);
	FX_LMDB_TEST(tc, full_map_poisons_only_its_update);
	tcase_add_test(tc, batch_holds_back_group_writers);
	tcase_add_test(tc, close_gives_unused_numbers_back);
	tcase_add_test(tc, lazy_crash_never_repeats_numbers);
	return fx_run(s);
}
