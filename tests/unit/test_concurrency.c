/* Concurrency: reader threads while a writer grows the map; a second
 * process reading while this one writes. Readers must never fail and never
 * see a half-applied copy-up. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

enum { BASE = 2000, WRITES = 1500, READERS = 4 };

struct fh { unsigned char b[FHMAP_FH_MAX]; size_t len; uint64_t ino; };

static struct fh handles[BASE];
static atomic_int writer_done;
static atomic_ulong reads, problems;

/* Binds the BASE objects in one batch; -EAGAIN when it was rolled back. */
static int bind_all(void)
{
	fhmap_realfh fh;
	int rc = 0;

	CK_OK(fhmap_batch_begin(fx.map));
	for (int i = 0; i < BASE && rc == 0; i++) {
		char name[32];

		snprintf(name, sizeof(name), "f%d", i);
		fh = fx_fake_fh(fx.lower_id, 1000 + i);
		rc = fhmap_bind(&handles[i].ino, fx.map, &fh, fx.root, name, S_IFREG);
	}
	if (rc == 0)
		rc = fhmap_batch_commit(fx.map);
	else
		CK_OK(fhmap_batch_abort(fx.map));
	ck_assert_msg(rc == 0 || rc == -EAGAIN, "batch: %s", fhmap_strerror(rc));
	return rc;
}

/* Map with BASE objects, a small initial size so the writer must grow it. */
static void populate(void)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;

	fhmap_close(fx.map);
	o.map_size = 256 * 1024;
	o.sync = FHMAP_SYNC_LAZY;
	CK_OK(fhmap_open(&fx.map, fx.db, &o));
	while (bind_all() == -EAGAIN) /* redo when the map had to grow */
		;
	for (int i = 0; i < BASE; i++) {
		handles[i].len = sizeof(handles[i].b);
		CK_OK(fhmap_encode(handles[i].b, &handles[i].len, fx.map, handles[i].ino, 0, 0));
	}
}

/* One decode, checked: right object, and a copied-up object is complete. */
static int check_one(fhmap *m, unsigned int *seed)
{
	const struct fh *h = &handles[rand_r(seed) % BASE];
	fhmap_decoded d;
	uint64_t back;

	if (fhmap_decode(&d, m, h->b, h->len, 0) != 0 || d.ino != h->ino)
		return 1;
	if (d.state == FHMAP_STATE_UPPER)
		return d.real.layer != fx.upper_id || fhmap_lookup_upper(&back, m, &d.real) != 0 || back != h->ino;
	return d.real.layer != fx.lower_id;
}

static void *reader(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	for (unsigned long n = 1; !atomic_load(&writer_done); n++) {
		if (check_one(fx.map, &seed))
			atomic_fetch_add(&problems, 1);
		atomic_fetch_add(&reads, 1);
		if (n % 64 == 0)
			sched_yield(); /* let the writer run where threads are serialized (valgrind) */
	}
	return NULL;
}

/* New objects, copy-ups of existing ones, renames: enough to grow the map. */
static void write_load(void)
{
	for (int i = 0; i < WRITES; i++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 100000 + i), up;
		uint64_t ino;
		char name[64];

		snprintf(name, sizeof(name), "new-file-with-a-longish-name-%d", i);
		CK_OK(fhmap_bind(&ino, fx.map, &fh, fx.root, name, S_IFREG));
		if (i < BASE) {
			CK_OK(fhmap_copyup_begin(fx.map, handles[i].ino, fx.upper_id));
			up = fx_fake_fh(fx.upper_id, 500000 + i);
			CK_OK(fhmap_copyup_commit(fx.map, handles[i].ino, &up));
			CK_OK(fhmap_rename(fx.map, handles[i].ino, fx.root, name + 4));
		}
	}
}

START_TEST(threads_read_while_one_writes)
{
	pthread_t t[READERS];
	fhmap_map_stats st;

	populate();
	for (int i = 0; i < READERS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)(i + 1)), 0);
	write_load();
	atomic_store(&writer_done, 1);
	for (int i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	CK_OK(fhmap_stats(&st, fx.map));
	printf("threads: %lu reads by %d threads during %d write rounds, map grew to %llu bytes, %lu problems\n",
	       atomic_load(&reads), READERS, WRITES, (unsigned long long)st.map_size, atomic_load(&problems));
	ck_assert_uint_eq(atomic_load(&problems), 0);
	ck_assert_uint_gt(atomic_load(&reads), READERS);
	ck_assert_uint_gt(st.map_size, 256 * 1024); /* it really grew under the readers */
	ck_assert_uint_eq(st.upper, WRITES);
}
END_TEST

START_TEST(second_process_reads_while_first_writes)
{
	int go[2], done[2], status;
	pid_t pid;
	char c;

	populate();
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	/* The child must not inherit an open map (an LMDB rule). */
	fhmap_close(fx.map);
	fx.map = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
		unsigned long n = 0, bad = 0;
		unsigned int seed = 7;
		fhmap *m;

		close(go[0]);
		close(done[1]);
		fcntl(done[0], F_SETFL, O_NONBLOCK);
		o.flags = FHMAP_OPEN_RDONLY;
		if (fhmap_open(&m, fx.db, &o) != 0)
			_exit(3);
		if (write(go[1], "g", 1) != 1)
			_exit(3);
		/* Read until the writer closes its end, then a last full pass. */
		while (read(done[0], &c, 1) != 0 || n % BASE) {
			bad += check_one(m, &seed);
			n++;
		}
		fhmap_close(m);
		printf("second process: %lu reads, %lu problems\n", n, bad);
		fflush(stdout);
		_exit(bad ? 1 : (n ? 0 : 2));
	}
	close(go[1]);
	close(done[0]);
	fx.map = fx_open(0);
	ck_assert_int_eq(read(go[0], &c, 1), 1);
	write_load();
	close(done[1]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader process failed: status %d", status);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("concurrency", &tc);

	tcase_add_test(tc, threads_read_while_one_writes);
	tcase_add_test(tc, second_process_reads_while_first_writes);
	return fx_run(s);
}
