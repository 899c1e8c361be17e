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

/* A reusable read transaction. Slots sit on their own cache lines so that
 * readers on different cores do not share one. */
typedef struct fhmap__rslot {
	_Alignas(64) atomic_int busy;
	MDB_txn *txn;
} fhmap__rslot;

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
};

/* ---- errors.c ---- */
int fhmap__err(int mdb_rc);
void fhmap__log(fhmap *m, fhmap_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- txn.c: transactions ---- */
typedef struct fhmap__rtxn {
	MDB_txn *txn;
	fhmap__rslot *slot; /* NULL for a batch's or a temporary transaction */
	int temp;           /* txn was begun for this read only */
	int locked;         /* 1: holds resize_lock shared, 2: holds only its slot */
} fhmap__rtxn;

int fhmap__read_begin(fhmap *m, fhmap__rtxn *r);
void fhmap__read_end(fhmap *m, fhmap__rtxn *r);

typedef struct fhmap__wtxn {
	fhmap *m;
	MDB_txn *txn;
	unsigned int writes; /* puts/dels done: a failure after one poisons a batch */
} fhmap__wtxn;

typedef int (*fhmap__write_fn)(fhmap__wtxn *w, void *arg);
int fhmap__write(fhmap *m, fhmap__write_fn fn, void *arg);
/* Commits @txn, telling a full disk from an I/O error. */
int fhmap__commit(fhmap *m, MDB_txn *txn);
/* This thread has a batch open on @m. */
int fhmap__batch_active(const fhmap *m);

/* Key/value access to one table; @key is the key without the table byte. */
int fhmap__get(MDB_txn *txn, const fhmap *m, int db, const void *key, size_t klen, MDB_val *val);
int fhmap__put(fhmap__wtxn *w, int db, const void *key, size_t klen, const void *val, size_t vlen,
               unsigned int flags);
int fhmap__del(fhmap__wtxn *w, int db, const void *key, size_t klen);
/* mdb_cursor_get() within table @db (cursor on fhmap.dbi): MDB_FIRST,
 * MDB_SET_RANGE (from @k) or MDB_NEXT. Keys come back without the table
 * byte; past the table's last entry it gives MDB_NOTFOUND. */
int fhmap__cursor_get(MDB_cursor *cur, int db, MDB_val *k, MDB_val *v, MDB_cursor_op op);

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
int fhmap__obj_load(MDB_txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy);
/* As fhmap__obj_load, but an unlinked object gives -ESTALE. */
int fhmap__obj_load_live(MDB_txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy);
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
int fhmap__meta_init(fhmap__wtxn *w);
int fhmap__alloc_ino(fhmap__wtxn *w, uint64_t *ino);
int fhmap__alloc_gen(fhmap__wtxn *w, uint32_t *gen);
int fhmap__meta_u64(MDB_txn *txn, fhmap *m, const char *key, uint64_t *out);

/* ---- layers.c ---- */
int fhmap__layer_role(MDB_txn *txn, fhmap *m, uint32_t id, fhmap_layer_role *role);
int fhmap__layer_fd(fhmap *m, uint32_t id, int *fd);
void fhmap__layer_fds_close(fhmap *m);

/* ---- verify.c ---- */
/* FHMAP_OPEN_VERIFY: walks the map at @path in a child process before it is
 * opened (@o: the checked open options). 0, -EUCLEAN or another -errno. */
int fhmap__verify(const char *path, const fhmap_open_options *o);

/* ---- siphash.c ---- */
uint64_t fhmap__siphash24(const uint64_t key[2], const void *data, size_t len);

#endif
