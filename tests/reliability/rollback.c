/*
 * Power cuts: a writer process (four threads binding objects and bumping
 * generations, each logging every (object, generation) a call returned)
 * runs with the powercut shim, which keeps a copy of data.mdb as it was at
 * the last moment a write became durable. The harness kills it at a random
 * moment and puts that copy in place, as a power cut at that moment would
 * leave the disk at worst (in deferred mode the overlay, never flushed, is
 * an earlier boot's by then), and checks what each sync mode promises
 * (every third cut comes right after the writer's first commits, when its
 * numbers were just reserved):
 *   - full: every logged update is in the map;
 *   - every fourth kill is a process crash alone (no copy put in place):
 *     every logged update is in the map, in every mode;
 *   - lazy, deferred: updates may be lost, but nothing the map hands out
 *     afterwards repeats an (object, generation) pair or an object number
 *     handed out before; deferred mode reports the loss
 *     (fhmap_recovery_needed());
 *   - all: the map is consistent (rel_check_map).
 *
 * Usage: rel_rollback --shim PATH [--rounds N] (default $FHMAP_ROLLBACK_ROUNDS, 12 per mode)
 */
#define _GNU_SOURCE
#include "rel.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define MAX_RECS (1u << 20)

/* One record on the pipe: what a call returned. */
struct rb_rec {
	uint64_t ino;
	uint32_t gen;
	uint32_t bump; /* 0: a new object; 1: a generation bump */
};

struct rb_writer {
	fhmap *map;
	uint32_t lower_id;
	uint64_t base;
	int fd;
};

static void *rb_thread(void *arg)
{
	struct rb_writer *w = arg;
	uint64_t rng = w->base, last = 0;

	for (uint64_t i = 0;; i++) {
		fhmap_realfh fh;
		struct rb_rec r = { 0, 0, 0 };
		fhmap_object o;
		char name[48];

		memset(&fh, 0, sizeof(fh));
		fh.layer = w->lower_id;
		fh.type = 1;
		fh.len = 16;
		memcpy(fh.data, &w->base, 8);
		memcpy(fh.data + 8, &i, 8);
		snprintf(name, sizeof(name), "w%llx-%llu", (unsigned long long)w->base, (unsigned long long)i);
		if (last && rel_rand(&rng) % 4 == 0) {
			if (fhmap_gen_bump(&r.gen, w->map, last) != 0)
				_exit(4);
			r.ino = last;
			r.bump = 1;
		} else {
			if (fhmap_object_bind(&o, NULL, w->map, &fh, FHMAP_ROOT_INO, name, S_IFREG) != 0)
				_exit(3);
			r.ino = last = o.ino;
			r.gen = o.gen;
		}
		if (write(w->fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(5);
	}
	return NULL;
}

/* The writer process (exec'd with the shim preloaded). */
static int rb_writer_main(const char *mapdir, fhmap_sync_mode sync, uint32_t lower_id, uint64_t round)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	struct rb_writer w[THREADS];
	pthread_t t[THREADS];
	fhmap *map;

	o.sync = sync;
	o.flush_interval_ms = 20;
	o.map_size = 256 * 1024; /* grows during the run */
	if (fhmap_open(&map, mapdir, &o) != 0)
		return 2;
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct rb_writer){ map, lower_id, (round << 8) | (uint64_t)(i + 1), 1 };
		if (pthread_create(&t[i], NULL, rb_thread, &w[i]) != 0)
			return 2;
	}
	pause(); /* killed */
	return 0;
}

struct rb_state {
	struct rb_rec *recs;  /* everything ever handed out */
	size_t n;
	uint64_t kills, cuts, logged, lost, handed_after;
};

/* Reads the writer's records and kills it @delay µs after the first one
 * (0: at once, right after its first commits). Counting from the first
 * record, not from the start, a slow start on a loaded machine cannot
 * end a round before anything was made durable. */
static void rb_collect(struct rb_state *s, int fd, uint64_t delay, pid_t pid)
{
	size_t first = s->n;
	uint64_t deadline = 0;

	struct pollfd p = { fd, POLLIN, 0 };
	char buf[sizeof(struct rb_rec) * 256];
	size_t have = 0;
	int killed = 0;

	for (;;) {
		ssize_t n;

		if (!deadline && s->n > first)
			deadline = rel_now_us() + delay;
		if (!killed && deadline && rel_now_us() >= deadline) {
			kill(pid, SIGKILL);
			killed = 1;
		}
		if (!killed && poll(&p, 1, 5) <= 0)
			continue;
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		for (size_t off = 0; off + sizeof(struct rb_rec) <= have; off += sizeof(struct rb_rec)) {
			REL_ASSERT(s->n < MAX_RECS, "too many records");
			memcpy(&s->recs[s->n++], buf + off, sizeof(struct rb_rec));
			s->logged++;
		}
		have %= sizeof(struct rb_rec);
		memmove(buf, buf + (size_t)n - have, have);
	}
}

/* The disk after the power cut: the last durable data.mdb, no lock file,
 * and the overlay (never flushed) of what is by then an earlier boot. */
static void rb_power_cut(const char *mapdir, const char *snap)
{
	char *data = rel_join(mapdir, "data.mdb"), *lock = rel_join(mapdir, "lock.mdb");
	struct dirent *de;
	DIR *d;

	REL_ASSERT(rename(snap, data) == 0, "no durable copy of the map was made");
	unlink(lock);
	REL_ASSERT((d = opendir(mapdir)) != NULL, "opendir");
	while ((de = readdir(d)) != NULL) {
		char to[64], *from, *dest;

		if (strncmp(de->d_name, "deferred-", 9) || strlen(de->d_name) < 45)
			continue;
		snprintf(to, sizeof(to), "deferred-00000000-0000-4000-8000-000000000000%s", de->d_name + 45);
		from = rel_join(mapdir, de->d_name);
		dest = rel_join(mapdir, to);
		REL_ASSERT(rename(from, dest) == 0, "rename overlay");
		free(from);
		free(dest);
	}
	closedir(d);
	free(data);
	free(lock);
}

static int rb_cmp(const void *a, const void *b)
{
	const struct rb_rec *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->gen < y->gen ? -1 : x->gen > y->gen;
}

static int rb_cmp_order(const void *a, const void *b)
{
	const struct rb_rec *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->bump < y->bump ? -1 : x->bump > y->bump; /* bump: its order in the round */
}

/* Counts the updates of one round that the cut took: an object that is
 * gone, or back at a generation older than its last logged one. (A later
 * generation is a bump that committed before its record was written.) */
static uint64_t rb_lost(fhmap *map, const struct rb_rec *recs, size_t n)
{
	struct rb_rec *r = malloc((n ? n : 1) * sizeof(*r));
	uint64_t lost = 0;

	REL_ASSERT(r != NULL, "malloc");
	for (size_t i = 0; i < n; i++)
		r[i] = (struct rb_rec){ recs[i].ino, recs[i].gen, (uint32_t)i };
	qsort(r, n, sizeof(*r), rb_cmp_order);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		fhmap_object o;

		while (j + 1 < n && r[j + 1].ino == r[i].ino)
			j++;
		if (fhmap_get(&o, map, r[i].ino) != 0) {
			lost++;
		} else {
			for (size_t k = i; k < j; k++)
				lost += o.gen == r[k].gen;
		}
		i = j + 1;
	}
	free(r);
	return lost;
}

/* New objects and bumps after the cut must repeat nothing handed out: a
 * new object gets a number above all earlier ones, a bumped old object a
 * generation it never had. */
static void rb_check_fresh(fhmap *map, struct rb_state *s, uint32_t lower_id, uint64_t round, uint64_t *rng)
{
	struct rb_rec *sorted = malloc(s->n * sizeof(*sorted));
	size_t n = s->n;
	uint64_t max_ino = 0;

	REL_ASSERT(sorted != NULL, "malloc");
	memcpy(sorted, s->recs, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), rb_cmp);
	for (size_t i = 0; i < n; i++)
		if (sorted[i].ino > max_ino)
			max_ino = sorted[i].ino;
	for (uint64_t k = 0; k < 64; k++) {
		uint64_t tag = (round << 8) | 0xff;
		fhmap_realfh fh = { lower_id, 1, 16, { 0 } };
		const struct rb_rec *old = &sorted[rel_rand(rng) % n];
		struct rb_rec key = { old->ino, 0, 0 };
		fhmap_object o;
		char name[48];

		memcpy(fh.data, &tag, 8);
		memcpy(fh.data + 8, &k, 8);
		snprintf(name, sizeof(name), "after%llu-%llu", (unsigned long long)round, (unsigned long long)k);
		REL_OK(fhmap_object_bind(&o, NULL, map, &fh, FHMAP_ROOT_INO, name, S_IFREG));
		REL_ASSERT(o.ino > max_ino, "object number %llu handed out again (before the cut up to %llu)",
		           (unsigned long long)o.ino, (unsigned long long)max_ino);
		s->recs[s->n++] = (struct rb_rec){ o.ino, o.gen, 0 };
		if (fhmap_gen_bump(&key.gen, map, old->ino) == 0) { /* a lost object: -ENOENT */
			REL_ASSERT(!bsearch(&key, sorted, n, sizeof(*sorted), rb_cmp),
			           "(object %llu, generation %u) handed out again", (unsigned long long)key.ino, key.gen);
			s->recs[s->n++] = (struct rb_rec){ key.ino, key.gen, 1 };
		}
	}
	s->handed_after += s->n - n;
	free(sorted);
}

/* LD_PRELOAD for the writer: the shim, after the sanitizer runtime this
 * process runs with, if any (ASan must come first in the list). */
static void rb_preload(char *out, size_t size, const char *shim)
{
	char line[4096], *lib;
	FILE *f = fopen("/proc/self/maps", "r");

	snprintf(out, size, "%s", shim);
	while (f && fgets(line, sizeof(line), f))
		if ((lib = strchr(line, '/')) && strstr(lib, "/libasan.so")) {
			lib[strcspn(lib, "\n")] = '\0';
			snprintf(out, size, "%s:%s", lib, shim);
			break;
		}
	if (f)
		fclose(f);
}

static void rb_run_mode(fhmap_sync_mode sync, const char *shim, long rounds, uint64_t *rng)
{
	static const char *names[] = { "full", "lazy", "deferred" };
	struct rb_state s = { 0 };
	struct rel_union u;
	char *snap, self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	fhmap *map;

	REL_ASSERT(sl > 0, "readlink /proc/self/exe");
	self[sl] = '\0';
	s.recs = malloc(MAX_RECS * sizeof(*s.recs));
	REL_ASSERT(s.recs != NULL, "malloc");
	rel_union_init(&u, names[sync]);
	snap = rel_join(u.top, "durable.mdb");
	REL_OK(rel_open(&map, u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_FULL, 0));
	rel_union_register(&u, map);
	fhmap_close(map);
	for (long r = 0; r < rounds; r++) {
		int pfd[2], status;
		size_t before = s.n;
		struct rel_check chk;
		uint64_t lost;
		int cut;
		pid_t pid;

		REL_ASSERT(pipe(pfd) == 0, "pipe");
		fflush(NULL);
		pid = fork();
		REL_ASSERT(pid >= 0, "fork");
		if (pid == 0) {
			char mode[8], lid[16], rnd[24], preload[8192];

			dup2(pfd[1], 1);
			close(pfd[0]);
			snprintf(mode, sizeof(mode), "%d", (int)sync);
			snprintf(lid, sizeof(lid), "%u", u.lower_id);
			snprintf(rnd, sizeof(rnd), "%ld", r + 1);
			rb_preload(preload, sizeof(preload), shim);
			setenv("LD_PRELOAD", preload, 1);
			setenv("FHMAP_POWERCUT_SNAPSHOT", snap, 1);
			execl(self, self, "--writer", u.mapdir, mode, lid, rnd, (char *)NULL);
			_exit(127);
		}
		close(pfd[1]);
		rb_collect(&s, pfd[0], r % 3 == 2 ? 0 : 50000 + rel_rand(rng) % 400000, pid);
		close(pfd[0]);
		REL_ASSERT(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status), "writer ended with 0x%x", status);
		s.kills++;
		/* Every fourth kill is a process crash alone: nothing lost then,
		 * in any mode (a deferred overlay is committed at the open). */
		cut = r % 4 != 1;
		if (cut)
			rb_power_cut(u.mapdir, snap);
		else
			unlink(snap);
		s.cuts += cut;
		REL_OK(rel_open(&map, u.mapdir, 0, FHMAP_SYNC_FULL, 0));
		REL_ASSERT(rel_check_map(map, &chk) == 0, "map inconsistent after the kill");
		lost = rb_lost(map, s.recs + before, s.n - before);
		REL_ASSERT((cut && sync != FHMAP_SYNC_FULL) || lost == 0,
		           "%s mode lost %llu updates that had returned (%s)", names[sync], (unsigned long long)lost,
		           cut ? "power cut" : "process crash");
		s.lost += lost;
		if (cut && sync == FHMAP_SYNC_DEFERRED)
			REL_ASSERT(fhmap_recovery_needed(map) == 1, "deferred mode: the loss was not reported");
		rb_check_fresh(map, &s, u.lower_id, (uint64_t)r + 1000, rng);
		REL_OK(fhmap_recovery_done(map));
		fhmap_close(map);
	}
	printf("rel_rollback %s: %llu kills (%llu with a power cut), %llu updates returned, %llu of them not in "
	       "the map afterwards, %llu handed out after the kills: none repeated\n",
	       names[sync], (unsigned long long)s.kills, (unsigned long long)s.cuts, (unsigned long long)s.logged,
	       (unsigned long long)s.lost, (unsigned long long)s.handed_after);
	free(snap);
	free(s.recs);
	rel_union_free(&u);
}

int main(int argc, char **argv)
{
	long rounds = rel_env_long("FHMAP_ROLLBACK_ROUNDS", 12);
	const char *shim = NULL;
	uint64_t rng;

	if (argc == 6 && strcmp(argv[1], "--writer") == 0)
		return rb_writer_main(argv[2], (fhmap_sync_mode)atoi(argv[3]), (uint32_t)atoi(argv[4]),
		                      strtoull(argv[5], NULL, 0));
	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--shim") == 0 && a + 1 < argc)
			shim = argv[++a];
		else if (strcmp(argv[a], "--rounds") == 0 && a + 1 < argc)
			rounds = strtol(argv[++a], NULL, 0);
		else
			REL_ASSERT(0, "usage: %s --shim PATH [--rounds N]", argv[0]);
	}
	REL_ASSERT(shim != NULL, "--shim PATH is needed");
	rng = rel_seed("rel_rollback");
	rb_run_mode(FHMAP_SYNC_FULL, shim, rounds, &rng);
	rb_run_mode(FHMAP_SYNC_LAZY, shim, rounds, &rng);
	rb_run_mode(FHMAP_SYNC_DEFERRED, shim, rounds, &rng);
	return 0;
}
