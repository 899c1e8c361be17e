/* Deferred mode (lib/deferred.c, lib/recovery.c): updates are visible at
 * once in this process, reach other processes with the flush, survive a
 * crash of the process, and after a "system crash" (the overlay of an
 * earlier boot) the map is as its last flush left it, says so, and never
 * hands out a lost number again; restore brings a lost record back. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define LONG_INTERVAL 600000u /* never flushes by itself during a test */

/* Reopens the fixture's map in deferred mode. */
static void deferred(unsigned int interval_ms)
{
	fhmap_close(fx.map);
	fx.map = fx_open_mode(0, FHMAP_SYNC_DEFERRED, interval_ms);
}

static uint64_t bind_fake(uint64_t n, uint64_t parent, const char *name)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, n);
	uint64_t ino;

	CK_OK(fhmap_bind(&ino, fx.map, &fh, parent, name, S_IFREG));
	return ino;
}

/* Runs @fn in a child process and returns its exit status. */
static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Child: 0 if another process sees the fake handle @arg bound, 1 if not. */
static int sees(void *arg)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, *(uint64_t *)arg);
	uint64_t ino;
	fhmap *m;
	int rc;

	o.flags = FHMAP_OPEN_RDONLY;
	if (fhmap_open(&m, fx.db, &o))
		return 2;
	rc = fhmap_lookup_origin(&ino, m, &fh);
	fhmap_close(m);
	return rc == 0 ? 0 : rc == -ENOENT ? 1 : 3;
}

START_TEST(visible_at_once_durable_at_sync)
{
	uint64_t n = 40, a, b;
	fhmap_decoded d;
	fhmap_object o;
	fhmap_map_stats st;
	fhmap_index_entry e;
	unsigned char h[FHMAP_FH_MAX];
	size_t len = sizeof(h);
	int seen = 0;

	deferred(LONG_INTERVAL);
	a = bind_fake(n, fx.root, "a");
	b = bind_fake(n + 1, fx.root, "b");
	CK_OK(fhmap_get(&o, fx.map, a));
	ck_assert_str_eq(o.name, "a");
	CK_OK(fhmap_encode(h, &len, fx.map, a, 0, 0));
	CK_OK(fhmap_decode(&d, fx.map, h, len, 0));
	ck_assert_uint_eq(d.ino, a);
	CK_OK(fhmap_rename(fx.map, a, fx.root, "renamed"));
	CK_OK(fhmap_unlink(fx.map, b));
	ck_assert_int_eq(fhmap_decode(&d, fx.map, h, len, 0), 0);
	CK_OK(fhmap_stats(&st, fx.map));
	ck_assert_uint_eq(st.unlinked, 1);
	ck_assert_uint_eq(st.origin_entries, 2); /* the root and a: b's entry is gone */
	for (int r = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, NULL); r == 0;
	     r = fhmap_index_next(&e, fx.map, FHMAP_INDEX_ORIGIN, &e.fh))
		seen++;
	ck_assert_int_eq(seen, 2);
	/* Another process sees nothing before the commit, all of it after. */
	ck_assert_int_eq(in_child(sees, &n), 1);
	CK_OK(fhmap_sync(fx.map));
	ck_assert_int_eq(in_child(sees, &n), 0);
	fx_reopen();
	CK_OK(fhmap_get(&o, fx.map, a));
	ck_assert_str_eq(o.name, "renamed");
	CK_OK(fhmap_get(&o, fx.map, b));
	ck_assert_int_eq(o.state, FHMAP_STATE_UNLINKED);
	CK_OK(fhmap_decode(&d, fx.map, h, len, 0));
	ck_assert_uint_eq(d.ino, a);
}
END_TEST

START_TEST(flushed_within_the_interval)
{
	uint64_t n = 77;

	deferred(100);
	bind_fake(n, fx.root, "soon");
	for (int i = 0; i < 200 && in_child(sees, &n) != 0; i++)
		usleep(25000);
	ck_assert_int_eq(in_child(sees, &n), 0);
}
END_TEST

static int open_deferred(void *arg)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *m;
	int rc;

	(void)arg;
	o.sync = FHMAP_SYNC_DEFERRED;
	rc = fhmap_open(&m, fx.db, &o);
	fhmap_close(m);
	return rc == -EBUSY ? 0 : 1;
}

START_TEST(one_deferred_process)
{
	deferred(0);
	ck_assert_int_eq(in_child(open_deferred, NULL), 0);
}
END_TEST

/* Child: binds @arg objects in deferred mode and dies without closing. */
static int bind_and_die(void *arg)
{
	fhmap *m = fx_open_mode(0, FHMAP_SYNC_DEFERRED, LONG_INTERVAL);
	uint64_t n = *(uint64_t *)arg, ino;

	for (uint64_t i = 0; i < n; i++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 1000 + i);
		char name[32];

		snprintf(name, sizeof(name), "lost%llu", (unsigned long long)i);
		if (fhmap_bind(&ino, m, &fh, fx.root, name, S_IFREG))
			return 2;
	}
	return 0; /* _exit: no close, no flush */
}

static int deferred_files(void)
{
	DIR *d = opendir(fx.db);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, "deferred-", 9) == 0;
	closedir(d);
	return n;
}

START_TEST(process_crash_loses_nothing)
{
	uint64_t n = 50;
	fhmap_realfh fh;
	uint64_t ino;

	fhmap_close(fx.map);
	fx.map = NULL;
	ck_assert_int_eq(in_child(bind_and_die, &n), 0);
	ck_assert_int_eq(deferred_files(), 2); /* the overlay and its lock file */
	fx.map = fx_open(0); /* any writable open commits it */
	ck_assert_int_eq(deferred_files(), 0);
	for (uint64_t i = 0; i < n; i++) {
		fh = fx_fake_fh(fx.lower_id, 1000 + i);
		CK_OK(fhmap_lookup_origin(&ino, fx.map, &fh));
	}
	ck_assert_int_eq(fhmap_recovery_needed(fx.map), 0);
}
END_TEST

/* The overlay of the crashed child, renamed to another boot's: what a
 * system crash leaves (the map itself holds its last durable state). */
static void age_overlay(void)
{
	DIR *d = opendir(fx.db);
	struct dirent *de;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		char from[600], to[600];

		if (strncmp(de->d_name, "deferred-", 9))
			continue;
		snprintf(from, sizeof(from), "%s/%s", fx.db, de->d_name);
		snprintf(to, sizeof(to), "%s/deferred-00000000-0000-4000-8000-000000000000%s", fx.db,
		         de->d_name + 9 + 36);
		ck_assert_int_eq(rename(from, to), 0);
	}
	closedir(d);
}

struct lost {
	uint64_t ino;
	uint32_t gen;
	unsigned char h[FHMAP_FH_MAX];
	size_t len;
};

/* Child: one object in deferred mode, its identity and handle to @arg. */
static int bind_one_and_die(void *arg)
{
	fhmap *m = fx_open_mode(0, FHMAP_SYNC_DEFERRED, LONG_INTERVAL);
	fhmap_realfh fh = fx_fake_fh(fx.upper_id, 4242);
	struct lost *l = arg;
	fhmap_object o;

	if (fhmap_object_create(&o, NULL, m, &fh, fx.root, "lost", S_IFREG))
		return 2;
	l->ino = o.ino;
	l->gen = o.gen;
	l->len = sizeof(l->h);
	return fhmap_encode(l->h, &l->len, m, o.ino, 0, 0) ? 3 : 0;
}

START_TEST(system_crash_loses_the_window_only)
{
	fhmap_realfh fh = fx_fake_fh(fx.upper_id, 4242);
	struct lost *l;
	fhmap_decoded d;
	fhmap_object o;
	uint64_t kept, ino;

	kept = bind_fake(31, fx.root, "kept"); /* durable: full mode */
	fhmap_close(fx.map);
	fx.map = NULL;
	/* The child's record reaches the parent through shared memory. */
	l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(l, MAP_FAILED);
	ck_assert_int_eq(in_child(bind_one_and_die, l), 0);
	age_overlay();
	fx.map = fx_open(0);
	ck_assert_int_eq(deferred_files(), 0);
	ck_assert_int_eq(fhmap_recovery_needed(fx.map), 1);
	CK_OK(fhmap_get(&o, fx.map, kept));
	ck_assert_int_eq(fhmap_get(&o, fx.map, l->ino), -ENOENT);
	ck_assert_int_eq(fhmap_decode(&d, fx.map, l->h, l->len, 0), -ESTALE);
	/* Nothing handed out afterwards repeats the lost number. */
	ino = bind_fake(32, fx.root, "new");
	ck_assert_uint_gt(ino, l->ino);
	/* The identity kept elsewhere brings the object back. */
	memset(&o, 0, sizeof(o));
	o.ino = l->ino;
	o.gen = l->gen;
	o.type = S_IFREG;
	o.state = FHMAP_STATE_UPPER;
	o.has_upper = 1;
	o.upper = fh;
	o.parent = fx.root;
	strcpy(o.name, "lost");
	CK_OK(fhmap_object_restore(fx.map, &o));
	ck_assert_int_eq(fhmap_object_restore(fx.map, &o), -EEXIST);
	CK_OK(fhmap_decode(&d, fx.map, l->h, l->len, 0));
	ck_assert_uint_eq(d.ino, l->ino);
	CK_OK(fhmap_lookup_upper(&ino, fx.map, &fh));
	ck_assert_uint_eq(ino, l->ino);
	CK_OK(fhmap_recovery_done(fx.map));
	ck_assert_int_eq(fhmap_recovery_needed(fx.map), 0);
	fx_reopen();
	ck_assert_int_eq(fhmap_recovery_needed(fx.map), 0);
}
END_TEST

/* Writers bind while the flusher commits every few milliseconds; readers
 * decode what the writers published, and must always find it: an entry
 * leaves the overlay only once the map has it. */
enum { STRESS_WRITERS = 3, STRESS_READERS = 3, STRESS_EACH = 1500 };

struct published {
	unsigned char h[FHMAP_FH_MAX];
	size_t len;
	uint64_t ino;
	atomic_int ready; /* the rest is filled in */
};

static struct published pub[STRESS_WRITERS * STRESS_EACH];
static atomic_uint npub;
static atomic_int writers_left;
static atomic_ulong misses, decodes;

static void *stress_writer(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;

	for (uint64_t i = 0; i < STRESS_EACH; i++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 100000 * (id + 1) + i);
		struct published *p = &pub[atomic_fetch_add(&npub, 1)];
		char name[32];

		snprintf(name, sizeof(name), "s%llu-%llu", (unsigned long long)id, (unsigned long long)i);
		ck_assert_int_eq(fhmap_bind(&p->ino, fx.map, &fh, fx.root, name, S_IFREG), 0);
		p->len = sizeof(p->h);
		ck_assert_int_eq(fhmap_encode(p->h, &p->len, fx.map, p->ino, 0, 0), 0);
		atomic_store_explicit(&p->ready, 1, memory_order_release); /* the bind returned */
	}
	atomic_fetch_sub(&writers_left, 1);
	return NULL;
}

static void *stress_reader(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (atomic_load(&writers_left) > 0) {
		unsigned int n = atomic_load(&npub);
		const struct published *p;
		fhmap_decoded d;

		if (n == 0)
			continue;
		p = &pub[rand_r(&seed) % n];
		if (!atomic_load_explicit(&p->ready, memory_order_acquire))
			continue;
		if (fhmap_decode(&d, fx.map, p->h, p->len, 0) != 0 || d.ino != p->ino)
			atomic_fetch_add(&misses, 1);
		atomic_fetch_add(&decodes, 1);
	}
	return NULL;
}

START_TEST(readers_never_miss_during_flushes)
{
	pthread_t w[STRESS_WRITERS], r[STRESS_READERS];

	deferred(3);
	atomic_store(&writers_left, STRESS_WRITERS);
	for (uintptr_t i = 0; i < STRESS_WRITERS; i++)
		ck_assert_int_eq(pthread_create(&w[i], NULL, stress_writer, (void *)i), 0);
	for (uintptr_t i = 0; i < STRESS_READERS; i++)
		ck_assert_int_eq(pthread_create(&r[i], NULL, stress_reader, (void *)(i + 1)), 0);
	for (int i = 0; i < STRESS_WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < STRESS_READERS; i++)
		pthread_join(r[i], NULL);
	ck_assert_uint_eq(atomic_load(&misses), 0);
	ck_assert_uint_gt(atomic_load(&decodes), 0);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("deferred", &tc);

	tcase_add_test(tc, visible_at_once_durable_at_sync);
	tcase_add_test(tc, flushed_within_the_interval);
	tcase_add_test(tc, one_deferred_process);
	tcase_add_test(tc, process_crash_loses_nothing);
	tcase_add_test(tc, system_crash_loses_the_window_only);
	tcase_add_test(tc, readers_never_miss_during_flushes);
	return fx_run(s);
}
