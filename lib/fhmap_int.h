/* Internals shared by the files of lib/. Not installed.
 *
 * The library is written against a small storage interface (struct
 * fhmap__backend): an ordered key/value store with read transactions,
 * write transactions run as groups (group commit), batches and a durable
 * commit of its own. lmdb.c (with txn.c, deferred.c and verify.c)
 * implements it on LMDB; pg.c on PostgreSQL. Everything else (records,
 * indexes, numbers, copy-up, handles) goes through it. */
#ifndef FHMAP_INT_H
#define FHMAP_INT_H

#include <endian.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "fhmap/fhmap.h"

/* A full map (LMDB's MDB_MAP_FULL) inside the library: the writer grows the
 * map and retries. Never returned to callers. */
#define FHMAP__EMAPFULL (-100001)
/* An allocation that found its range empty where it may not reserve one
 * (deferred mode): the writer reserves and runs it again. Never returned. */
#define FHMAP__ENORANGE (-100002)
/* A transaction the store gave up (PostgreSQL: serialization failure, a
 * connection lost before the commit): the group is run again. Never
 * returned. */
#define FHMAP__ERETRY (-100003)

/* Tables. All share one ordered key space, each key led by its table's
 * byte (in LMDB's main table: a named LMDB table would cost a lookup of its
 * name in every transaction; format 1 used named tables). Objects sort
 * last: new object numbers ascend, so their records are appended at the
 * end of the B-tree, where LMDB fills pages completely. */
enum { FHMAP__DB_LAYERS = 'L', FHMAP__DB_META = 'M', FHMAP__DB_PENDING = 'P', FHMAP__DB_ORIGIN = 'R',
       FHMAP__DB_UPPER = 'U', FHMAP__DB_OBJECTS = 'o' };
/* Every table (keys with their table byte), for cursors. */
#define FHMAP__DB_ALL (-1)

/* A key or value: bytes owned by the store, valid until the transaction
 * ends (or, in a write transaction, until its next put or del). */
typedef struct fhmap__val {
	size_t size;
	void *data;
} fhmap__val;

/* Object numbers and generations reserved for this process (gen.c): every
 * number in a range was made durable as handed out (the map's counters
 * point past the range) before the first one is used, so a commit lost in
 * a crash never makes a number come back. Protected by the map's write
 * transaction (LMDB's writer lock; the overlay's in deferred mode). */
typedef struct fhmap__alloc {
	uint64_t ino_next, ino_end;  /* [next, end) */
	uint32_t gen_next, gen_left; /* gen_left generations from gen_next on */
} fhmap__alloc;

struct fhmap__backend;
struct fhmap__wreq;

/* Threads of the last group a leader waits for, at most. */
#define FHMAP__GATHER_MAX 64

/* Lock order: wq_lock (the writer role), then the store's own locks (see
 * lmdb.h, pg.c), then fd_lock. */
struct fhmap {
	const struct fhmap__backend *be;
	void *store;              /* the backend's state */
	int read_only;
	fhmap_sync_mode sync;
	unsigned char uuid[16];
	uint64_t key[2];          /* SipHash key: the map's MAC secret */
	uint32_t tag;             /* map tag carried by handles */
	pthread_mutex_t fd_lock;  /* guards the layer root fd cache */
	int *layer_fds;
	size_t nlayer_fds;
	fhmap_log_fn log;
	void *log_ctx;
	char *path;               /* the map's location, as given */
	unsigned char boot[16];   /* boot id of the system, when opened */
	int writing;              /* opened for writing: close makes a last commit */

	/* Write groups (commit.c). */
	pthread_mutex_t wq_lock;
	pthread_cond_t wq_cond;
	struct fhmap__wreq *wq_head;  /* protected by wq_lock */
	struct fhmap__wreq **wq_tail; /* protected by wq_lock */
	int wq_busy;                  /* protected by wq_lock: a leader or batch writes */
	/* Gathering: a leader waits up to gather_us (set by the backend at
	 * open; 0: not at all) for the threads of the last group to queue
	 * again, so that concurrent writers share one commit rather than
	 * split into cohorts that take turns. */
	unsigned int gather_us;
	int gather_sync_only;         /* only for a group that flushes: one with a sync request */
	pthread_cond_t wq_gcond;
	int wq_gathering;                            /* protected by wq_lock */
	const void *wq_last[FHMAP__GATHER_MAX];       /* protected by wq_lock */
	unsigned int wq_nlast;                       /* protected by wq_lock */

	fhmap__alloc alloc;       /* protected by the writer role */
	int alloc_reserved;       /* protected by the writer role: the transaction
	                             reserved a range (lazy mode flushes it) */
};

/* ---- errors.c ---- */
void fhmap__log(fhmap *m, fhmap_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- transactions (the backend's) ---- */
/* Thread-locals use the initial-exec model: the read path then reaches
 * them without a __tls_get_addr() call. They take a few bytes of the
 * static TLS reserve, which is there for libraries loaded with dlopen(). */
#define FHMAP__TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* What a transaction sees; the backend's (LMDB: the main table's txn and,
 * in deferred mode, the overlay's, which takes precedence). */
typedef struct fhmap__txn {
	void *main;
	void *ovl;
} fhmap__txn;

typedef struct fhmap__rtxn {
	fhmap__txn t;
	void *slot;  /* the backend's */
	int temp;
	int locked;  /* 0: nothing to end */
} fhmap__rtxn;

typedef struct fhmap__wtxn {
	fhmap *m;
	fhmap__txn t;
	unsigned int writes; /* puts/dels done: a failure after one poisons the transaction */
} fhmap__wtxn;

typedef int (*fhmap__write_fn)(fhmap__wtxn *w, void *arg);

/* A cursor over one table (or all: FHMAP__DB_ALL); @impl is the backend's. */
typedef struct fhmap__cursor {
	const fhmap *m;
	int db;
	void *impl;
} fhmap__cursor;

/* Cursor steps. */
enum { FHMAP__FIRST, FHMAP__SET_RANGE, FHMAP__NEXT };

/* ---- commit.c: write groups and batches ---- */
/* A queued update; fn NULL asks for every update to be made durable. */
typedef struct fhmap__wreq {
	fhmap__write_fn fn;
	void *arg;
	int rc;
	int final;                /* rc stands even if the group is run again */
	int done;                 /* protected by wq_lock: written, the caller may go */
	const void *who;          /* the calling thread */
	struct fhmap__wreq *next;
} fhmap__wreq;

/* Runs @fn in a write transaction shared with the updates other threads
 * make at the same time (or in this thread's batch), and returns once it
 * is as durable as the map's mode promises. @fn must change nothing when it
 * fails before its first put/del. */
int fhmap__write(fhmap *m, fhmap__write_fn fn, void *arg);
/* Makes every update committed so far durable (fhmap_sync()). */
int fhmap__write_sync(fhmap *m);
/* Writer role taken for the call: runs @fn in a transaction of its own,
 * durable in every mode (open, close, the recovery flag). */
int fhmap__write_durable(fhmap *m, fhmap__write_fn fn, void *arg);
/* Runs the pending updates of group @g in transaction @t: 0, or the error
 * of the update that failed after writing (*bad), which poisons @t. */
int fhmap__group_apply(fhmap *m, fhmap__wreq *g, const fhmap__txn *t, fhmap__wreq **bad);
/* Sets @rc for every update of @g whose result is not final. */
void fhmap__group_fail(fhmap__wreq *g, int rc);
/* Updates in @g (sync requests not counted). */
unsigned int fhmap__group_size(const fhmap__wreq *g);
/* The batch of this thread, if any (commit.c). One batch per thread at a
 * time; read on every read transaction, hence here. */
typedef struct fhmap__batch {
	fhmap *m;
	fhmap__txn t;
	fhmap__alloc saved; /* the ranges before the batch, for a roll-back */
	int dead;           /* rolled back: every call until the end returns -EAGAIN */
} fhmap__batch;
extern FHMAP__TLS fhmap__batch fhmap__tl_batch;

/* The transaction of this thread's batch on @m, or NULL. */
static inline const fhmap__txn *fhmap__batch_txn(const fhmap *m)
{
	return fhmap__tl_batch.m == m && !fhmap__tl_batch.dead ? &fhmap__tl_batch.t : NULL;
}

/* Starts read @r empty; inside a batch (@batch not NULL) it reads the
 * batch's transaction, and the backend has nothing to begin: returns 1. */
static inline int fhmap__rtxn_start(fhmap__rtxn *r, const fhmap__txn *batch)
{
	r->slot = NULL;
	r->temp = 0;
	r->locked = 0;
	if (batch)
		r->t = *batch;
	return batch != NULL;
}

/* This thread has a batch open on @m. */
static inline int fhmap__batch_active(const fhmap *m)
{
	return fhmap__tl_batch.m == m;
}

/* ---- the storage interface ---- */
/* The next pair of a copy (fhmap_backup()): 0, -ENOENT after the last, or
 * -errno. */
typedef int (*fhmap__pairs_fn)(void *ctx, fhmap__val *k, fhmap__val *v);

typedef struct fhmap__backend {
	const char *name;
	/* Opens the store at @location (all or nothing): identity loaded (see
	 * fhmap__identity()), a writable open ready to write. */
	int (*open)(fhmap *m, const char *location, const fhmap_open_options *o);
	/* Makes everything durable with a last commit running @fn (writable
	 * maps), then frees the store. */
	void (*close)(fhmap *m, fhmap__write_fn fn);
	/* Read transactions: this thread's batch's if it has one. */
	int (*read_begin)(fhmap *m, fhmap__rtxn *r);
	void (*read_end)(fhmap *m, fhmap__rtxn *r);
	/* Full keys (with their table byte). get: 0, -ENOENT or -errno. */
	int (*get)(const fhmap__txn *t, const fhmap *m, const fhmap__val *key, fhmap__val *val);
	int (*put)(fhmap__wtxn *w, const fhmap__val *key, const fhmap__val *val);
	int (*del)(fhmap__wtxn *w, const fhmap__val *key);
	/* Cursors over full keys in key order (memcmp, shorter first):
	 * FHMAP__FIRST, FHMAP__SET_RANGE (first key >= @k), FHMAP__NEXT;
	 * 0, -ENOENT past the last key, or -errno. */
	int (*cursor_open)(fhmap__cursor *c, const fhmap__txn *t);
	int (*cursor_get)(fhmap__cursor *c, fhmap__val *k, fhmap__val *v, int op);
	void (*cursor_close)(fhmap__cursor *c);
	/* Writer role held: writes group @g in one transaction, as durably as
	 * the mode promises (fn NULL: a request to make everything durable),
	 * setting each request's rc (fhmap__group_apply()). */
	void (*group)(fhmap *m, fhmap__wreq *g);
	/* Writer role held: runs @fn in a transaction of its own, durable in
	 * every mode. */
	int (*write_durable)(fhmap *m, fhmap__write_fn fn, void *arg);
	/* Every update that returned is durable already (fhmap_sync() needs
	 * no commit). Any thread, no lock. */
	int (*durable)(fhmap *m);
	/* Batches, writer role held: begin; end with @commit 1 (0, -EAGAIN:
	 * rolled back, redo, or -errno) or 0 (discard); roll back after update
	 * error @rc poisoned it (returns what the caller gets: -EAGAIN or an
	 * error). */
	int (*batch_begin)(fhmap *m, fhmap__txn *t);
	int (*batch_end)(fhmap *m, fhmap__txn *t, int commit);
	int (*batch_rollback)(fhmap *m, fhmap__txn *t, int rc);
	/* Storage figures of fhmap_stats() (page sizes, readers...). */
	void (*storage)(fhmap *m, const fhmap__txn *t, fhmap_map_stats *s);
	/* A copy of the map at @dest, a new location of this backend; NULL:
	 * fhmap_backup() copies pair by pair through import. */
	int (*backup)(fhmap *m, const char *dest);
	/* Makes a new store at @dest holding exactly the pairs @next gives (in
	 * key order), all or nothing. */
	int (*import)(fhmap *m, const char *dest, fhmap__pairs_fn next, void *ctx);
} fhmap__backend;

extern const fhmap__backend fhmap__lmdb;
#ifdef FHMAP_HAVE_PG
extern const fhmap__backend fhmap__pgsql;
/* pg_conn.c: @location names a PostgreSQL map. */
int fhmap__pg_location(const char *location);
#endif

/* ---- kv.c: tables over the backend's key space ---- */
/* The read path calls LMDB's functions directly when it is the backend
 * (the library is built with link-time optimization: they inline). */
int fhmap__lm_read_begin(fhmap *m, fhmap__rtxn *r);
void fhmap__lm_read_end(fhmap *m, fhmap__rtxn *r);
int fhmap__lm_get(const fhmap__txn *t, const fhmap *m, const fhmap__val *key, fhmap__val *val);

static inline int fhmap__read_begin(fhmap *m, fhmap__rtxn *r)
{
	return m->be == &fhmap__lmdb ? fhmap__lm_read_begin(m, r) : m->be->read_begin(m, r);
}

static inline void fhmap__read_end(fhmap *m, fhmap__rtxn *r)
{
	if (m->be == &fhmap__lmdb)
		fhmap__lm_read_end(m, r);
	else
		m->be->read_end(m, r);
}

/* Key/value access to one table; @key is the key without the table byte. */
int fhmap__get(const fhmap__txn *txn, const fhmap *m, int db, const void *key, size_t klen, fhmap__val *val);
int fhmap__put(fhmap__wtxn *w, int db, const void *key, size_t klen, const void *val, size_t vlen);
int fhmap__del(fhmap__wtxn *w, int db, const void *key, size_t klen);
/* A cursor within table @db: keys come back without the table byte
 * (FHMAP__DB_ALL: every key, whole). 0, -ENOENT past the table's last
 * entry, or -errno. */
int fhmap__cursor_open(fhmap__cursor *c, const fhmap__txn *t, const fhmap *m, int db);
int fhmap__cursor_get(fhmap__cursor *c, fhmap__val *k, fhmap__val *v, int op);
void fhmap__cursor_close(fhmap__cursor *c);

/* ---- map.c ---- */
/* Within a backend's open: reads the map's identity through @t (a fresh
 * store gets one from fhmap__meta_init() first). -EMEDIUMTYPE (not a map),
 * -EPROTONOSUPPORT (another format version), -EUCLEAN or -errno. */
int fhmap__identity(fhmap *m, const fhmap__txn *t);
/* ---- record.c: object records ---- */
typedef struct fhmap__rfh {
	uint32_t layer;
	int32_t type;
	uint32_t len;
	const unsigned char *data;
} fhmap__rfh;

typedef struct fhmap__rec {
	uint32_t gen;
	uint8_t state;
	uint32_t type; /* S_IF* */
	uint64_t parent;
	int has_origin, has_upper;
	fhmap__rfh origin, upper;
	const char *name;
	size_t name_len;
	/* Where the origin is on its lower layer, once a rename moved the name
	 * hint away from it: the hint as it was when the object was bound. */
	int has_ohint;
	uint64_t ohint_parent;
	const char *ohint_name;
	size_t ohint_len;
} fhmap__rec;

#define FHMAP__REC_MAX (17 + 2 * (7 + FHMAP_REALFH_MAX) + 9 + 2 * FHMAP_NAME_MAX + 4)
#define FHMAP__IKEY_MAX (6 + FHMAP_REALFH_MAX)

int fhmap__rec_parse(fhmap__rec *rec, uint64_t ino, const fhmap__val *val);
size_t fhmap__rec_pack(unsigned char *buf, uint64_t ino, const fhmap__rec *rec);
void fhmap__rec_export(fhmap_object *out, uint64_t ino, const fhmap__rec *rec);
void fhmap__rfh_view(fhmap__rfh *v, const fhmap_realfh *fh);
void fhmap__rfh_copy(fhmap_realfh *out, const fhmap__rfh *v);
size_t fhmap__ikey(unsigned char *key, const fhmap__rfh *fh);

/* Loads a record; with @copy (FHMAP__REC_MAX bytes) the view points there. */
int fhmap__obj_load(const fhmap__txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy);
/* As fhmap__obj_load, but an unlinked object gives -ESTALE. */
int fhmap__obj_load_live(const fhmap__txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy);
int fhmap__obj_store(fhmap__wtxn *w, uint64_t ino, const fhmap__rec *rec);
/* copyup.c: drops the copy-up intent of @ino, if any. */
int fhmap__pending_drop(fhmap__wtxn *w, uint64_t ino);
int fhmap__realfh_check(const fhmap_realfh *fh);
int fhmap__name_check(const char *name);
int fhmap__type_check(uint32_t type);

/* Fixed-endian loads and stores: memcpy plus a byte-order conversion
 * compiles to a single unaligned load or store. */
static inline void fhmap__be64(unsigned char *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static inline void fhmap__be32(unsigned char *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline uint32_t fhmap__get_be32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline uint64_t fhmap__get_be64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static inline uint64_t fhmap__get_le64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static inline uint32_t fhmap__get_le32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline void fhmap__put_le64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline void fhmap__put_le32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

/* ---- gen.c: object numbers and generations ---- */
/* Numbers reserved at a time: a lost run wastes at most this many. */
#define FHMAP__ALLOC_RANGE 65536u
int fhmap__meta_init(fhmap__wtxn *w);
int fhmap__meta_u64(const fhmap__txn *txn, fhmap *m, const char *key, uint64_t *out);
/* Hand out the next number of this process's range; an empty range is
 * refilled in @w (FHMAP__ENORANGE in the overlay). */
int fhmap__alloc_ino(fhmap__wtxn *w, uint64_t *ino);
int fhmap__alloc_gen(fhmap__wtxn *w, uint32_t *gen);
/* Reserves fresh ranges in @w (which must be durable before they are used). */
int fhmap__alloc_reserve(fhmap__wtxn *w);
/* How many updates the ranges serve at least (each takes one of each). */
uint32_t fhmap__alloc_room(const fhmap *m);
/* Gives the unused rest of the ranges back (at close). */
int fhmap__alloc_release(fhmap__wtxn *w);

/* ---- recovery.c: what a crash may have cost ---- */
void fhmap__boot_id(unsigned char out[16]);
/* At a writable open: counts a lazy or deferred writer in, and sets
 * "recovery" when one of an earlier boot never closed. */
int fhmap__run_begin(fhmap *m);
/* Write fn: counts a writer of this boot out. */
int fhmap__run_ended(fhmap__wtxn *w, void *arg);
/* Sets "recovery" durably. */
int fhmap__run_lost(fhmap *m);
/* Write fn of the last commit at close: ranges back, writer counted out. */
int fhmap__close_txn(fhmap__wtxn *w, void *arg);

/* ---- layers.c ---- */
int fhmap__layer_role(const fhmap__txn *txn, fhmap *m, uint32_t id, fhmap_layer_role *role);
int fhmap__layer_fd(fhmap *m, uint32_t id, int *fd);
void fhmap__layer_fds_close(fhmap *m);

/* ---- siphash.c ---- */
uint64_t fhmap__siphash24(const uint64_t key[2], const void *data, size_t len);

#endif
