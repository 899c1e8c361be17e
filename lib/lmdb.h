/* The LMDB backend's own declarations (lmdb.c, txn.c, deferred.c,
 * verify.c). Not installed.
 *
 * Lock order, after the writer role (fhmap_int.h): between processes the
 * writers' byte of fhmap.lock, then LMDB's writer lock (the main
 * environment's, or the overlay's); then resize_lock; then the overlay's
 * flusher lock. Readers take only a read slot (an atomic flag on its own
 * cache line) and LMDB's lock-free reader table. */
#ifndef FHMAP_LMDB_H
#define FHMAP_LMDB_H

#include <errno.h>
#include <lmdb.h>
#include <time.h>

#include "fhmap_int.h"

/* A reusable read transaction (and, in deferred mode, one of the overlay).
 * Slots sit on their own cache lines so that readers on different cores do
 * not share one. */
typedef struct fhmap__rslot {
	_Alignas(64) atomic_int busy;
	MDB_txn *txn;
	MDB_txn *otxn;
} fhmap__rslot;

typedef struct fhmap__ovl fhmap__ovl;

typedef struct fhmap__lm {
	MDB_env *env;
	MDB_dbi dbi;              /* LMDB's main table, which holds all tables */
	uint64_t max_map_size;
	pthread_rwlock_t resize_lock; /* shared by transactions, exclusive for mapsize changes */
	atomic_int resizing;      /* a mapsize change waits for the read slots */
	fhmap__rslot *slots;
	unsigned int nslots;
	int lock_fd;              /* fhmap.lock (OFD locks), -1 when read-only */
	dev_t dev;                /* identity of the map directory, */
	ino_t dir_ino;            /* registered while open, */
	pid_t pid;                /* by this process */
	struct fhmap__lm *next_open;
	fhmap__ovl *ovl;          /* deferred mode only (deferred.c) */
} fhmap__lm;

static inline fhmap__lm *fhmap__lm_of(const fhmap *m)
{
	return (fhmap__lm *)m->store;
}
#define LM(m) fhmap__lm_of(m)

/* LMDB's codes (and errno values it passes through) as negative errno;
 * the two a read gives inline. */
int fhmap__err_slow(int mdb_rc);
static inline int fhmap__err(int rc)
{
	return rc == 0 ? 0 : rc == MDB_NOTFOUND ? -ENOENT : fhmap__err_slow(rc);
}

static inline MDB_val fhmap__mdb(const fhmap__val *v)
{
	MDB_val r = { v->size, v->data };

	return r;
}

static inline fhmap__val fhmap__fval(const MDB_val *v)
{
	fhmap__val r = { v->mv_size, v->mv_data };

	return r;
}

/* ---- txn.c: LMDB transactions ---- */
/* Bytes of fhmap.lock (OFD locks): the one process in deferred mode holds
 * DEFERRED while it has the map open; WRITERS as fhmap__writers_lock(). */
#define FHMAP__LOCK_DEFERRED 0
#define FHMAP__LOCK_WRITERS 1
/* The writers' byte: a process with deferred updates holds it exclusively
 * until they are committed, every other writer holds it shared around its
 * write transaction, so none commits beneath the overlay. */
int fhmap__writers_lock(fhmap *m, short type);
/* A read transaction of the main table alone. */
int fhmap__read_main_begin(fhmap *m, fhmap__rtxn *r);
/* A write transaction on LMDB's main table, holding resize_lock shared
 * (and, outside deferred mode, the writers' byte shared) until
 * fhmap__write_end(), called after the commit or abort. */
int fhmap__write_begin(fhmap *m, MDB_txn **txn);
void fhmap__write_end(fhmap *m);
/* Commits @txn, telling a full disk from an I/O error. */
int fhmap__commit(fhmap *m, MDB_txn *txn);
uint64_t fhmap__map_size(fhmap *m);
/* Doubles the map unless another thread already grew it past @seen. No
 * transaction of this thread may be live. */
int fhmap__grow(fhmap *m, uint64_t seen);
int fhmap__lm_put(fhmap__wtxn *w, const fhmap__val *key, const fhmap__val *val);
int fhmap__lm_del(fhmap__wtxn *w, const fhmap__val *key);
int fhmap__lm_cursor_open(fhmap__cursor *c, const fhmap__txn *t);
int fhmap__lm_cursor_get(fhmap__cursor *c, fhmap__val *k, fhmap__val *v, int op);
void fhmap__lm_cursor_close(fhmap__cursor *c);
/* Groups and batches on the main table (full and lazy mode). */
void fhmap__lm_group(fhmap *m, fhmap__wreq *g);
int fhmap__lm_write_durable(fhmap *m, fhmap__write_fn fn, void *arg);
int fhmap__lm_batch_begin(fhmap *m, fhmap__txn *t);
int fhmap__lm_batch_end(fhmap *m, fhmap__txn *t, int commit);
int fhmap__lm_batch_rollback(fhmap *m, fhmap__txn *t, int rc);

/* ---- deferred.c: the overlay of deferred updates ---- */
struct fhmap__ovl {
	MDB_env *env;
	MDB_dbi dbi;
	atomic_int live;      /* it may hold entries: readers look there first */
	/* Protected by the writer role: */
	fhmap__rtxn rtxn;     /* the main table beneath the overlay's writer */
	int exclusive;        /* holds the writers' byte of fhmap.lock */
	unsigned int entries; /* updates since the last flush */
	uint64_t seq;         /* number of the contents (see deferred.c) */
	atomic_ullong commits;  /* overlay commits so far (written by the role holder) */
	atomic_ullong flushed;  /* of them, committed to the map */
	/* The flusher thread. */
	pthread_t thread;
	unsigned int interval_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int dirty;             /* protected by lock: updates since @since */
	struct timespec since; /* protected by lock (CLOCK_MONOTONIC) */
	int stop;              /* protected by lock */
};

/* Takes (@take) or drops the DEFERRED byte of fhmap.lock; -EBUSY when
 * another process holds it. */
int fhmap__deferred_lock(fhmap *m, int take);
/* Commits (or, from an earlier boot, drops) overlays crashed processes
 * left; the caller holds the DEFERRED byte. */
int fhmap__ovl_leftovers(fhmap *m);
int fhmap__ovl_open(fhmap *m, unsigned int interval_ms, unsigned int max_readers);
/* Stops the flusher and commits the overlay with @extra in the commit. */
int fhmap__ovl_close(fhmap *m, fhmap__write_fn extra, void *arg);
/* Writer role held: commit the overlay now, durably (with @fn in the
 * commit). */
int fhmap__ovl_flush(fhmap *m);
int fhmap__ovl_flush_with(fhmap *m, fhmap__write_fn fn, void *arg);
void fhmap__ovl_group(fhmap *m, fhmap__wreq *g);
/* Every overlay commit so far is committed to the map. */
int fhmap__ovl_durable(const fhmap *m);
int fhmap__ovl_batch_begin(fhmap *m, fhmap__txn *t);
int fhmap__ovl_batch_end(fhmap *m, fhmap__txn *t, int commit);

/* ---- verify.c ---- */
/* FHMAP_OPEN_VERIFY: walks the map at @path in a child process before it is
 * opened (@o: the checked open options). 0, -EUCLEAN or another -errno. */
int fhmap__verify(const char *path, const fhmap_open_options *o);

#endif
