/*
 * Load: one writer thread copies objects up (intent + commit, sometimes
 * abort), renames, unlinks and binds new ones, while four reader threads of
 * the same process and a second, read-only process read the same map for a
 * bounded time. Every read must be whole: an object in state UPPER has its
 * upper handle and that handle looks up back to it; COPYUP and ORIGIN
 * objects have no upper handle; a decoded handle names the object and, once
 * copied up, its upper file. A lookup may only miss because the object was
 * unlinked meanwhile, which a second read must then show.
 *
 * Usage: rel_load [--seconds N]   (default $FHMAP_LOAD_SECONDS or 10)
 */
#define _GNU_SOURCE
#include "rel.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NREADERS 4
#define NSLOTS 256

struct load_ctx {
	struct rel_union u;
	fhmap *map;
	uint64_t deadline_us;
	atomic_uint_fast64_t slot[NSLOTS]; /* live objects the writer works on */
	atomic_int stop;
	atomic_uint_fast64_t writes, copyups, aborts, unlinks;
};

struct load_reader {
	struct load_ctx *x;
	fhmap *map;
	uint64_t rng;
	uint64_t reads, uppers, copying, races, errors;
};

#define LOAD_ERR(r, ...) \
	do { fprintf(stderr, "load: " __VA_ARGS__); fputc('\n', stderr); (r)->errors++; } while (0)

/* The object is unlinked by now: the only excuse for a missed lookup. */
static int load_now_unlinked(struct load_reader *r, uint64_t ino)
{
	fhmap_object o;

	return fhmap_get(&o, r->map, ino) == 0 && o.state == FHMAP_STATE_UNLINKED;
}

static void load_check_upper(struct load_reader *r, uint64_t ino, const fhmap_realfh *upper,
                             const char *via)
{
	uint64_t got;
	int rc = fhmap_lookup_upper(&got, r->map, upper);

	if (rc == -ENOENT && load_now_unlinked(r, ino)) {
		r->races++;
		return;
	}
	if (rc != 0 || got != ino)
		LOAD_ERR(r, "%s: object %llu is UPPER but its upper handle looks up to %llu (%s)", via,
		         (unsigned long long)ino, (unsigned long long)got, fhmap_strerror(rc));
	if (upper->layer != r->x->u.upper_id)
		LOAD_ERR(r, "%s: object %llu upper handle on layer %u", via, (unsigned long long)ino,
		         upper->layer);
}

static void load_read_one(struct load_reader *r, uint64_t ino)
{
	unsigned char fh[FHMAP_FH_MAX];
	size_t len = sizeof(fh);
	fhmap_decoded d;
	fhmap_object o;
	uint64_t got;
	int rc;

	rc = fhmap_get(&o, r->map, ino);
	r->reads++;
	if (rc == -ENOENT)
		return;
	if (rc != 0) {
		LOAD_ERR(r, "get %llu: %s", (unsigned long long)ino, fhmap_strerror(rc));
		return;
	}
	switch (o.state) {
	case FHMAP_STATE_UPPER:
		r->uppers++;
		if (!o.has_upper)
			LOAD_ERR(r, "object %llu UPPER without upper handle", (unsigned long long)ino);
		else
			load_check_upper(r, ino, &o.upper, "get");
		break;
	case FHMAP_STATE_COPYUP:
		r->copying++;
		/* fall through */
	case FHMAP_STATE_ORIGIN:
		if (o.has_upper || !o.has_origin)
			LOAD_ERR(r, "object %llu state %d with upper %d origin %d", (unsigned long long)ino,
			         (int)o.state, o.has_upper, o.has_origin);
		rc = fhmap_lookup_origin(&got, r->map, &o.origin);
		if (rc == -ENOENT && load_now_unlinked(r, ino))
			r->races++;
		else if (rc != 0 || got != ino)
			LOAD_ERR(r, "origin of %llu looks up to %llu (%s)", (unsigned long long)ino,
			         (unsigned long long)got, fhmap_strerror(rc));
		break;
	case FHMAP_STATE_UNLINKED:
		return;
	}
	rc = fhmap_encode(fh, &len, r->map, ino, 0, 0);
	if (rc == -ESTALE && load_now_unlinked(r, ino)) {
		r->races++;
		return;
	}
	if (rc == 0)
		rc = fhmap_decode(&d, r->map, fh, len, 0);
	if (rc == -ESTALE && load_now_unlinked(r, ino)) {
		r->races++;
		return;
	}
	if (rc != 0 || d.ino != ino) {
		LOAD_ERR(r, "handle of %llu: %s", (unsigned long long)ino, fhmap_strerror(rc));
		return;
	}
	if (d.state == FHMAP_STATE_UPPER)
		load_check_upper(r, ino, &d.real, "decode");
	else if (d.real.layer != r->x->u.lower_id)
		LOAD_ERR(r, "decode of %llu in state %d names layer %u", (unsigned long long)ino,
		         (int)d.state, d.real.layer);
}

static void load_read_loop(struct load_reader *r)
{
	fhmap_info info;

	while (!atomic_load(&r->x->stop) && rel_now_us() < r->x->deadline_us) {
		if (fhmap_info_get(&info, r->map) != 0) {
			LOAD_ERR(r, "info_get failed");
			return;
		}
		for (int k = 0; k < 256; k++) {
			uint64_t pick = rel_rand(&r->rng);
			uint64_t ino = pick % 2 ? atomic_load(&r->x->slot[(pick >> 8) % NSLOTS])
			                        : 1 + (pick >> 8) % (info.next_ino - 1);

			load_read_one(r, ino);
		}
	}
}

static void *load_reader_thread(void *arg)
{
	load_read_loop(arg);
	return NULL;
}

static int load_bind_new(struct load_ctx *x, unsigned int slot, uint64_t serial)
{
	fhmap_realfh fh;
	char name[48];
	uint64_t ino;
	int rc;

	snprintf(name, sizeof(name), "f%llu", (unsigned long long)serial);
	rel_touch(x->u.lower, name);
	rc = fhmap_realfh_from_path(&fh, x->map, x->u.lower_id, name);
	if (rc == 0)
		rc = fhmap_bind(&ino, x->map, &fh, FHMAP_ROOT_INO, name, S_IFREG);
	if (rc == 0)
		atomic_store(&x->slot[slot], ino);
	return rc;
}

/* Moves one slot's object a step through its life. */
static int load_write_step(struct load_ctx *x, uint64_t serial, uint64_t *rng)
{
	unsigned int s = (unsigned int)(rel_rand(rng) % NSLOTS);
	uint64_t ino = atomic_load(&x->slot[s]);
	fhmap_realfh fh;
	fhmap_object o;
	char name[48];
	int rc;

	if ((rc = fhmap_get(&o, x->map, ino)) != 0)
		return rc;
	switch (o.state) {
	case FHMAP_STATE_ORIGIN:
		if ((rc = fhmap_copyup_begin(x->map, ino, x->u.upper_id)) != 0)
			return rc;
		if (serial % 10 == 0) {
			atomic_fetch_add(&x->aborts, 1);
			return fhmap_copyup_abort(x->map, ino);
		}
		snprintf(name, sizeof(name), "u%llu", (unsigned long long)serial);
		rel_touch(x->u.upper, name);
		rc = fhmap_realfh_from_path(&fh, x->map, x->u.upper_id, name);
		if (rc == 0)
			rc = fhmap_copyup_commit(x->map, ino, &fh);
		atomic_fetch_add(&x->copyups, rc == 0);
		return rc;
	case FHMAP_STATE_UPPER:
		if (serial % 3 == 0) {
			snprintf(name, sizeof(name), "r%llu", (unsigned long long)serial);
			return fhmap_rename(x->map, ino, FHMAP_ROOT_INO, name);
		}
		if ((rc = fhmap_unlink(x->map, ino)) != 0)
			return rc;
		atomic_fetch_add(&x->unlinks, 1);
		return load_bind_new(x, s, serial);
	default:
		return -EPROTO;
	}
}

static void *load_writer_thread(void *arg)
{
	struct load_ctx *x = arg;
	uint64_t rng = 0x1234, serial = NSLOTS;
	int rc;

	while (rel_now_us() < x->deadline_us) {
		rc = load_write_step(x, serial++, &rng);
		if (rc) {
			fprintf(stderr, "load: writer: %s\n", fhmap_strerror(rc));
			atomic_store(&x->stop, 1);
			return (void *)1;
		}
		atomic_fetch_add(&x->writes, 1);
	}
	return NULL;
}

/* The second process: its own map handle, read-only. */
static __attribute__((noreturn)) void load_reader_process(struct load_ctx *x, int fd)
{
	struct load_reader r = { x, NULL, 0xabcdef, 0, 0, 0, 0, 0 };
	uint64_t out[4];

	if (rel_open(&r.map, x->u.mapdir, FHMAP_OPEN_RDONLY, FHMAP_SYNC_FULL, 0))
		_exit(3);
	load_read_loop(&r);
	fhmap_close(r.map);
	out[0] = r.reads;
	out[1] = r.uppers;
	out[2] = r.races;
	out[3] = r.errors;
	_exit(write(fd, out, sizeof(out)) == (ssize_t)sizeof(out) && r.errors == 0 ? 0 : 1);
}

int main(int argc, char **argv)
{
	long seconds = rel_env_long("FHMAP_LOAD_SECONDS", 10);
	struct load_reader rd[NREADERS];
	pthread_t rt[NREADERS], wt;
	static struct load_ctx x;
	uint64_t proc[4] = { 0 }, reads = 0, uppers = 0, copying = 0, races = 0, errors = 0, seed;
	struct rel_check c;
	void *wres;
	int pfd[2], status;
	pid_t pid;

	if (argc == 3 && strcmp(argv[1], "--seconds") == 0)
		seconds = strtol(argv[2], NULL, 0);
	else
		REL_ASSERT(argc == 1, "usage: %s [--seconds N]", argv[0]);
	seed = rel_seed("rel_load");
	rel_union_init(&x.u, "load");
	REL_OK(rel_open(&x.map, x.u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_LAZY, 0));
	rel_union_register(&x.u, x.map);
	REL_OK(fhmap_batch_begin(x.map));
	for (unsigned int s = 0; s < NSLOTS; s++)
		REL_OK(load_bind_new(&x, s, s));
	REL_OK(fhmap_batch_commit(x.map));
	fhmap_close(x.map);
	x.map = NULL;
	x.deadline_us = rel_now_us() + (uint64_t)seconds * 1000000u;

	/* Fork with no map open and no thread running (an LMDB environment
	 * must not cross a fork); each process opens its own handle. */
	REL_ASSERT(pipe(pfd) == 0, "pipe");
	fflush(NULL);
	pid = fork();
	REL_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		close(pfd[0]);
		load_reader_process(&x, pfd[1]);
	}
	close(pfd[1]);
	REL_OK(rel_open(&x.map, x.u.mapdir, 0, FHMAP_SYNC_LAZY, 0));
	REL_ASSERT(pthread_create(&wt, NULL, load_writer_thread, &x) == 0, "pthread_create");
	for (int i = 0; i < NREADERS; i++) {
		memset(&rd[i], 0, sizeof(rd[i]));
		rd[i].x = &x;
		rd[i].map = x.map;
		rd[i].rng = seed + (uint64_t)i;
		REL_ASSERT(pthread_create(&rt[i], NULL, load_reader_thread, &rd[i]) == 0,
		           "pthread_create");
	}
	pthread_join(wt, &wres);
	for (int i = 0; i < NREADERS; i++) {
		pthread_join(rt[i], NULL);
		reads += rd[i].reads;
		uppers += rd[i].uppers;
		copying += rd[i].copying;
		races += rd[i].races;
		errors += rd[i].errors;
	}
	REL_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid");
	REL_ASSERT(read(pfd[0], proc, sizeof(proc)) == (ssize_t)sizeof(proc),
	           "reader process reported nothing (status 0x%x)", status);
	close(pfd[0]);
	printf("rel_load: %ld s: writer %llu updates (%llu copy-ups, %llu aborted, %llu unlinks); "
	       "4 threads %llu reads (%llu UPPER, %llu COPYUP seen, %llu unlink races), "
	       "reader process %llu reads (%llu UPPER); errors %llu + %llu\n",
	       seconds, (unsigned long long)x.writes, (unsigned long long)x.copyups,
	       (unsigned long long)x.aborts, (unsigned long long)x.unlinks, (unsigned long long)reads,
	       (unsigned long long)uppers, (unsigned long long)copying, (unsigned long long)races,
	       (unsigned long long)proc[0], (unsigned long long)proc[1], (unsigned long long)errors,
	       (unsigned long long)proc[3]);
	REL_ASSERT(wres == NULL, "writer failed");
	REL_ASSERT(errors == 0 && proc[3] == 0, "readers saw inconsistent state");
	REL_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader process status 0x%x", status);
	REL_ASSERT(x.copyups > 0 && reads > 0 && proc[0] > 0, "no load happened");
	REL_ASSERT(rel_check_map(x.map, &c) == 0, "map inconsistent after the load");
	fhmap_close(x.map);
	rel_union_free(&x.u);
	return 0;
}
