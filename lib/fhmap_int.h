/* Internals shared by the files of lib/. Not installed. */
#ifndef FHMAP_INT_H
#define FHMAP_INT_H

#include <endian.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "fhmap/fhmap.h"

/* MDB_MAP_FULL inside the library: the writer grows the map and retries.
 * Never returned to callers. */
#define FHMAP__EMAPFULL (-100001)

/* Tables. All live in LMDB's main table, each key led by its table's byte:
 * a named LMDB table would cost a lookup of its name in every transaction
 * (format 1 used named tables). Objects sort last: new object numbers
 * ascend, so their records are appended at the end of the B-tree, where
 * LMDB fills pages completely. */
enum { FHMAP__DB_LAYERS = 'L', FHMAP__DB_META = 'M', FHMAP__DB_PENDING = 'P', FHMAP__DB_ORIGIN = 'R',
       FHMAP__DB_UPPER = 'U', FHMAP__DB_OBJECTS = 'o' };

/* A reusable read transaction (and, in deferred mode, one of the overlay).
 * Slots sit on their own cache lines so that readers on different cores do
 * not share one. */
typedef struct fhmap__rslot {
	_Alignas(64) atomic_int busy;
	MDB_txn *txn;
	MDB_txn *otxn;
} fhmap__rslot;

/* Object numbers and generations reserved for this process (gen.c): every
 * number in a range was made durable as handed out (the map's counters
 * point past the range) before the first one is used, so a commit lost in
 * a crash never makes a number come back. Protected by the map's write
 * transaction (LMDB's writer lock; the overlay's in deferred mode). */
typedef struct fhmap__alloc {
	uint64_t ino_next, ino_end;  /* [next, end) */
	uint32_t gen_next, gen_left; /* gen_left generations from gen_next on */
} fhmap__alloc;

struct fhmap__ovl;
typedef struct fhmap__ovl fhmap__ovl;

/* Lock order: wq_lock, then the overlay's flush_lock (deferred.c), then
 * LMDB's writer lock, then resize_lock, then fd_lock. Between processes:
 * the writers' byte of fhmap.lock before LMDB's writer lock. */
struct fhmap {
	MDB_env *env;
	MDB_dbi dbi;              /* LMDB's main table, which holds all tables */
	int read_only;
	fhmap_sync_mode sync;
	uint64_t max_map_size;
	unsigned char uuid[16];
	uint64_t key[2];          /* SipHash key: the map's MAC secret */
	uint32_t tag;             /* map tag carried by handles */
	pthread_rwlock_t resize_lock; /* shared by transactions, exclusive for mapsize changes */
	atomic_int resizing;      /* a mapsize change waits for the read slots */
	fhmap__rslot *slots;
	unsigned int nslots;
	pthread_mutex_t fd_lock;  /* guards the layer root fd cache */
	int *layer_fds;
	size_t nlayer_fds;
	fhmap_log_fn log;
	void *log_ctx;
	dev_t dev;                /* identity of the map directory, */
	ino_t dir_ino;            /* registered while open, */
	pid_t pid;                /* by this process */
	struct fhmap *next_open;
	char *path;               /* the map directory */
	int lock_fd;              /* fhmap.lock (OFD locks), -1 when read-only */
	unsigned char boot[16];   /* boot id of the system, when opened */
	int writing;              /* opened for writing: close makes a last commit */

	/* Write groups (commit.c). */
	pthread_mutex_t wq_lock;
	pthread_cond_t wq_cond;
	struct fhmap__wreq *wq_head;  /* protected by wq_lock */
	struct fhmap__wreq **wq_tail; /* protected by wq_lock */
	int wq_busy;                  /* protected by wq_lock: a leader writes */

	fhmap__alloc alloc;       /* protected by the write transaction */
	int alloc_reserved;       /* protected by the write transaction: it
	                             reserved a range (LAZY flushes the meta) */
	struct fhmap__ovl *ovl;   /* deferred mode only (deferred.c) */
};

/* ---- errors.c ---- */
int fhmap__err(int mdb_rc);
void fhmap__log(fhmap *m, fhmap_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- txn.c: transactions ---- */
/* Thread-locals use the initial-exec model: the read path then reaches
 * them without a __tls_get_addr() call. They take a few bytes of the
 * static TLS reserve, which is there for libraries loaded with dlopen(). */
#define FHMAP__TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* What a transaction reads: LMDB's main table and, in deferred mode, the
 * overlay of updates not yet committed to it, which takes precedence. */
typedef struct fhmap__txn {
	MDB_txn *main;
	MDB_txn *ovl; /* NULL: no overlay */
} fhmap__txn;

typedef struct fhmap__rtxn {
	fhmap__txn t;
	fhmap__rslot *slot; /* NULL for a batch's or a temporary transaction */
	int temp;           /* txns were begun for this read only */
	int locked;         /* 1: holds resize_lock shared, 2: holds only its slot */
} fhmap__rtxn;

/* A read transaction seeing this thread's batch if it has one, else the
 * committed map and the overlay. */
int fhmap__read_begin(fhmap *m, fhmap__rtxn *r);
/* A read transaction of the main table alone. */
int fhmap__read_main_begin(fhmap *m, fhmap__rtxn *r);
void fhmap__read_end(fhmap *m, fhmap__rtxn *r);

typedef struct fhmap__wtxn {
	fhmap *m;
	fhmap__txn t;        /* writes go to t.ovl if set, else to t.main */
	unsigned int writes; /* puts/dels done: a failure after one poisons the transaction */
} fhmap__wtxn;

/* Bytes of fhmap.lock (OFD locks): the one process in deferred mode holds
 * DEFERRED while it has the map open; WRITERS as fhmap__writers_lock(). */
#define FHMAP__LOCK_DEFERRED 0
#define FHMAP__LOCK_WRITERS 1
int fhmap__writers_lock(fhmap *m, short type);

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

/* Key/value access to one table; @key is the key without the table byte. */
int fhmap__get(const fhmap__txn *txn, const fhmap *m, int db, const void *key, size_t klen, MDB_val *val);
int fhmap__put(fhmap__wtxn *w, int db, const void *key, size_t klen, const void *val, size_t vlen);
int fhmap__del(fhmap__wtxn *w, int db, const void *key, size_t klen);

/* A cursor over one table (or all: FHMAP__DB_ALL, keys with their table
 * byte), merging the overlay's entries into the main table's. */
#define FHMAP__DB_ALL (-1)
typedef struct fhmap__cside {
	MDB_cursor *cur;
	MDB_val k, v;
	int on; /* positioned on an entry of the table */
} fhmap__cside;
typedef struct fhmap__cursor {
	MDB_txn *txn; /* for mdb_cmp() */
	MDB_dbi dbi;
	int db;
	fhmap__cside main, ovl;
	int took_main, took_ovl; /* the sides of the entry returned last */
} fhmap__cursor;
int fhmap__cursor_open(fhmap__cursor *c, const fhmap__txn *t, const fhmap *m, int db);
/* MDB_FIRST, MDB_SET_RANGE (from @k) or MDB_NEXT. Keys come back without
 * the table byte. 0, -ENOENT past the table's last entry, or -errno. */
int fhmap__cursor_get(fhmap__cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op);
void fhmap__cursor_close(fhmap__cursor *c);

/* ---- commit.c: write groups and batches ---- */
/* Internal code of an allocation that found its range empty where it may
 * not reserve one (deferred mode): the writer reserves and runs it again. */
#define FHMAP__ENORANGE (-100002)

typedef int (*fhmap__write_fn)(fhmap__wtxn *w, void *arg);

/* A queued update; fn NULL asks for every update to be made durable. */
typedef struct fhmap__wreq {
	fhmap__write_fn fn;
	void *arg;
	int rc;
	int final;                /* rc stands even if the group is run again */
	struct fhmap__wreq *next;
} fhmap__wreq;

/* Runs @fn in a write transaction shared with the updates other threads
 * make at the same time (or in this thread's batch), and returns once it
 * is as durable as the map's mode promises. @fn must change nothing when it
 * fails before its first put/del. */
int fhmap__write(fhmap *m, fhmap__write_fn fn, void *arg);
/* Makes every update committed so far durable (fhmap_sync()). */
int fhmap__write_sync(fhmap *m);
/* Runs the pending updates of group @g in transaction @t: 0, or the error
 * of the update that failed after writing (*bad), which poisons @t. */
int fhmap__group_apply(fhmap *m, fhmap__wreq *g, const fhmap__txn *t, fhmap__wreq **bad);
/* The transaction of this thread's batch on @m, or NULL. */
const fhmap__txn *fhmap__batch_txn(const fhmap *m);
/* This thread has a batch open on @m. */
int fhmap__batch_active(const fhmap *m);

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

int fhmap__rec_parse(fhmap__rec *rec, uint64_t ino, const MDB_val *val);
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
/* Writer role held: commit the overlay now, durably. */
int fhmap__ovl_flush(fhmap *m);
void fhmap__ovl_group(fhmap *m, fhmap__wreq *g);
int fhmap__ovl_batch_begin(fhmap *m, fhmap__txn *t);
int fhmap__ovl_batch_end(fhmap *m, fhmap__txn *t, int commit);

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
int fhmap__close_write(fhmap *m);

/* ---- layers.c ---- */
int fhmap__layer_role(const fhmap__txn *txn, fhmap *m, uint32_t id, fhmap_layer_role *role);
int fhmap__layer_fd(fhmap *m, uint32_t id, int *fd);
void fhmap__layer_fds_close(fhmap *m);

/* ---- verify.c ---- */
/* FHMAP_OPEN_VERIFY: walks the map at @path in a child process before it is
 * opened (@o: the checked open options). 0, -EUCLEAN or another -errno. */
int fhmap__verify(const char *path, const fhmap_open_options *o);

/* ---- siphash.c ---- */
uint64_t fhmap__siphash24(const uint64_t key[2], const void *data, size_t len);

#endif
