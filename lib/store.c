/* The LMDB store: environment, transactions, map growth, batches, and the
 * schema of object records and index keys. */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fhmap_int.h"

#define DEFAULT_MAP_SIZE (64ull << 20)
#define DEFAULT_MAX_MAP_SIZE (1ull << 40)
#define READ_SLOTS 32u

/* Thread-locals use the initial-exec model: the read path then reaches
 * them without a __tls_get_addr() call. They take a few bytes of the
 * static TLS reserve, which is there for libraries loaded with dlopen(). */
#define FHMAP__TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* The batch of this thread, if any. One batch per thread at a time. */
static FHMAP__TLS struct {
	fhmap *m;
	MDB_txn *txn; /* NULL once the batch was rolled back */
} tl_batch;

static FHMAP__TLS unsigned int tl_slot_hint;

/* Maps open in this process. LMDB forbids opening an environment twice in
 * one process (closing the second copy would drop the first's locks). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static fhmap *open_maps;

static int register_open(fhmap *m, const char *path)
{
	struct stat st;
	int rc = 0;

	if (stat(path, &st) != 0)
		return -errno;
	pthread_mutex_lock(&open_lock);
	/* Entries of a parent process are void in a forked child. */
	for (fhmap *o = open_maps; o; o = o->next_open)
		if (o->dev == st.st_dev && o->dir_ino == st.st_ino && o->pid == getpid())
			rc = -EBUSY;
	if (rc == 0) {
		m->dev = st.st_dev;
		m->dir_ino = st.st_ino;
		m->pid = getpid();
		m->next_open = open_maps;
		open_maps = m;
	}
	pthread_mutex_unlock(&open_lock);
	return rc;
}

static void unregister_open(fhmap *m)
{
	pthread_mutex_lock(&open_lock);
	for (fhmap **p = &open_maps; *p; p = &(*p)->next_open)
		if (*p == m) {
			*p = m->next_open;
			break;
		}
	pthread_mutex_unlock(&open_lock);
}

/* ------------------------------------------------------------------------ */
/* Map size */

static uint64_t map_size_now(fhmap *m)
{
	MDB_envinfo info;

	mdb_env_info(m->env, &info);
	return info.me_mapsize;
}

/* Takes the map for a size change: no transaction of this process may be
 * live. Writers and readers without a slot hold resize_lock shared; readers
 * on the fast path hold only their slot, so wait for every slot too. A
 * reader marks its slot busy before it reads @resizing, the resizer sets
 * @resizing before it reads the slots (both sequentially consistent), so
 * at least one of them sees the other. */
static void resize_exclusive(fhmap *m)
{
	pthread_rwlock_wrlock(&m->resize_lock);
	atomic_store(&m->resizing, 1);
	for (unsigned int i = 0; i < m->nslots; i++)
		while (atomic_load(&m->slots[i].busy))
			sched_yield();
}

static void resize_done(fhmap *m)
{
	atomic_store(&m->resizing, 0);
	pthread_rwlock_unlock(&m->resize_lock);
}

/* Doubles the map unless another thread already grew it past @seen. */
static int grow(fhmap *m, uint64_t seen)
{
	uint64_t cur, next;
	int rc = 0;

	resize_exclusive(m);
	cur = map_size_now(m);
	if (cur <= seen) {
		if (cur >= m->max_map_size) {
			rc = -ENOSPC;
		} else {
			next = cur * 2 < m->max_map_size ? cur * 2 : m->max_map_size;
			rc = fhmap__err(mdb_env_set_mapsize(m->env, next));
		}
	}
	resize_done(m);
	if (rc == 0 && cur <= seen)
		fhmap__log(m, FHMAP_LOG_INFO, "map grown from %llu to %llu bytes", (unsigned long long)cur,
		           (unsigned long long)map_size_now(m));
	else if (rc)
		fhmap__log(m, FHMAP_LOG_ERROR, "map cannot grow beyond %llu bytes", (unsigned long long)cur);
	return rc;
}

/* Another process grew the map: adopt its size (no transaction may be live). */
static void adopt_resize(fhmap *m)
{
	resize_exclusive(m);
	mdb_env_set_mapsize(m->env, 0);
	resize_done(m);
}

/* ------------------------------------------------------------------------ */
/* Read transactions */

static fhmap__rslot *slot_acquire(fhmap *m)
{
	for (unsigned int i = 0; i < m->nslots; i++) {
		unsigned int idx = tl_slot_hint + i < m->nslots ? tl_slot_hint + i : tl_slot_hint + i - m->nslots;
		fhmap__rslot *s = &m->slots[idx];

		if (!atomic_load_explicit(&s->busy, memory_order_relaxed) && !atomic_exchange(&s->busy, 1)) {
			tl_slot_hint = idx;
			return s;
		}
	}
	return NULL;
}

static void slot_release(fhmap__rslot *s)
{
	atomic_store_explicit(&s->busy, 0, memory_order_release);
}

int fhmap__read_begin(fhmap *m, fhmap__rtxn *r)
{
	int rc;

	r->slot = NULL;
	r->temp = 0;
	r->locked = 0;
	if (tl_batch.m == m && tl_batch.txn) {
		r->txn = tl_batch.txn;
		return 0;
	}
	for (;;) {
		int shared = 0;

		/* Fast path: a free slot and no size change under way; touches
		 * no cache line shared with other readers. */
		r->slot = slot_acquire(m);
		if (r->slot && atomic_load(&m->resizing)) {
			slot_release(r->slot);
			r->slot = NULL;
		}
		if (!r->slot) {
			/* Wait out a size change; retry the slots under the lock. */
			pthread_rwlock_rdlock(&m->resize_lock);
			shared = 1;
			r->slot = slot_acquire(m);
		}
		if (!r->slot) {
			/* More concurrent readers than slots: a one-off transaction. */
			rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &r->txn);
			r->temp = 1;
		} else if (r->slot->txn) {
			rc = mdb_txn_renew(r->slot->txn);
			r->txn = r->slot->txn;
		} else {
			rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &r->slot->txn);
			r->txn = r->slot->txn;
		}
		if (rc == 0) {
			r->locked = shared ? 1 : 2;
			return 0;
		}
		if (r->slot)
			slot_release(r->slot);
		if (shared)
			pthread_rwlock_unlock(&m->resize_lock);
		if (rc != MDB_MAP_RESIZED)
			return fhmap__err(rc);
		adopt_resize(m);
	}
}

void fhmap__read_end(fhmap *m, fhmap__rtxn *r)
{
	if (!r->locked)
		return;
	if (r->temp) {
		mdb_txn_abort(r->txn);
	} else {
		mdb_txn_reset(r->txn);
		slot_release(r->slot);
	}
	if (r->locked == 1)
		pthread_rwlock_unlock(&m->resize_lock);
	r->locked = 0;
}

/* Commits, telling a full disk from an I/O error: LMDB reports a short
 * write as EIO, and a short write is what a filesystem that just filled up
 * gives. */
static int commit(fhmap *m, MDB_txn *txn)
{
	int rc = fhmap__err(mdb_txn_commit(txn));
	struct statvfs sv;
	mdb_filehandle_t fd;

	if (rc == -EIO && mdb_env_get_fd(m->env, &fd) == 0 && fstatvfs(fd, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < (1u << 20)) {
		fhmap__log(m, FHMAP_LOG_ERROR, "commit failed: the map's filesystem is full");
		rc = -ENOSPC;
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Write transactions and batches */

/* Begins a write transaction holding resize_lock shared. */
static int write_begin(fhmap *m, MDB_txn **txn)
{
	for (;;) {
		int rc;

		pthread_rwlock_rdlock(&m->resize_lock);
		rc = mdb_txn_begin(m->env, NULL, 0, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&m->resize_lock);
		if (rc != MDB_MAP_RESIZED)
			return fhmap__err(rc);
		adopt_resize(m);
	}
}

/* Runs one update inside this thread's batch. A failure after the update
 * started writing leaves the transaction half-done: roll the batch back. */
static int batch_run(fhmap *m, fhmap__write_fn fn, void *arg)
{
	fhmap__wtxn w = { m, tl_batch.txn, 0 };
	uint64_t seen;
	int rc;

	if (!tl_batch.txn)
		return -EAGAIN;
	rc = fn(&w, arg);
	if (rc == 0 || (w.writes == 0 && rc != FHMAP__EMAPFULL))
		return rc;
	seen = map_size_now(m);
	mdb_txn_abort(tl_batch.txn);
	tl_batch.txn = NULL;
	pthread_rwlock_unlock(&m->resize_lock);
	fhmap__log(m, FHMAP_LOG_WARN, "batch rolled back: %s", fhmap_strerror(rc == FHMAP__EMAPFULL ? -ENOSPC : rc));
	if (rc == FHMAP__EMAPFULL && (rc = grow(m, seen)) != 0)
		return rc;
	return -EAGAIN;
}

int fhmap__write(fhmap *m, fhmap__write_fn fn, void *arg)
{
	if (m->read_only)
		return -EROFS;
	if (tl_batch.m == m)
		return batch_run(m, fn, arg);
	for (;;) {
		fhmap__wtxn w = { m, NULL, 0 };
		uint64_t seen;
		int rc = write_begin(m, &w.txn);

		if (rc)
			return rc;
		seen = map_size_now(m);
		rc = fn(&w, arg);
		if (rc == 0)
			rc = commit(m, w.txn);
		else
			mdb_txn_abort(w.txn);
		pthread_rwlock_unlock(&m->resize_lock);
		if (rc != FHMAP__EMAPFULL)
			return rc;
		if ((rc = grow(m, seen)) != 0)
			return rc;
	}
}

/* Grows the map before a batch so that most batches never hit its end. */
static int ensure_headroom(fhmap *m)
{
	MDB_envinfo info;
	MDB_stat st;
	uint64_t used;

	mdb_env_info(m->env, &info);
	mdb_env_stat(m->env, &st);
	used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if (info.me_mapsize - used >= info.me_mapsize / 4)
		return 0;
	return grow(m, info.me_mapsize);
}

int fhmap_batch_begin(fhmap *m)
{
	int rc;

	if (!m)
		return -EINVAL;
	if (m->read_only)
		return -EROFS;
	if (tl_batch.m)
		return -EBUSY;
	if ((rc = ensure_headroom(m)) != 0)
		return rc;
	if ((rc = write_begin(m, &tl_batch.txn)) != 0)
		return rc;
	tl_batch.m = m;
	return 0;
}

int fhmap_batch_commit(fhmap *m)
{
	uint64_t seen;
	int rc;

	if (!m || tl_batch.m != m)
		return -EINVAL;
	tl_batch.m = NULL;
	if (!tl_batch.txn)
		return -EAGAIN;
	seen = map_size_now(m);
	rc = commit(m, tl_batch.txn);
	tl_batch.txn = NULL;
	pthread_rwlock_unlock(&m->resize_lock);
	if (rc == FHMAP__EMAPFULL)
		return (rc = grow(m, seen)) != 0 ? rc : -EAGAIN;
	return rc;
}

int fhmap_batch_abort(fhmap *m)
{
	if (!m || tl_batch.m != m)
		return -EINVAL;
	tl_batch.m = NULL;
	if (tl_batch.txn) {
		mdb_txn_abort(tl_batch.txn);
		tl_batch.txn = NULL;
		pthread_rwlock_unlock(&m->resize_lock);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Key/value access */

/* Builds the LMDB key of @key in table @db into @buf. */
static int table_key(MDB_val *k, unsigned char *buf, int db, const void *key, size_t klen)
{
	if (klen > FHMAP__IKEY_MAX)
		return -EINVAL;
	buf[0] = (unsigned char)db;
	memcpy(buf + 1, key, klen);
	k->mv_size = klen + 1;
	k->mv_data = buf;
	return 0;
}

int fhmap__get(MDB_txn *txn, const fhmap *m, int db, const void *key, size_t klen, MDB_val *val)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val k;
	int rc = table_key(&k, buf, db, key, klen);

	return rc ? rc : fhmap__err(mdb_get(txn, m->dbi, &k, val));
}

int fhmap__put(fhmap__wtxn *w, int db, const void *key, size_t klen, const void *val, size_t vlen,
               unsigned int flags)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val k, v = { vlen, (void *)val };
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if ((rc = mdb_put(w->txn, w->m->dbi, &k, &v, flags)) == 0)
		w->writes++;
	return fhmap__err(rc);
}

int fhmap__del(fhmap__wtxn *w, int db, const void *key, size_t klen)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val k;
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if ((rc = mdb_del(w->txn, w->m->dbi, &k, NULL)) == 0)
		w->writes++;
	return fhmap__err(rc);
}

int fhmap__cursor_get(MDB_cursor *cur, int db, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val lk = { 1, buf };
	int rc;

	buf[0] = (unsigned char)db;
	if (op == MDB_SET_RANGE && table_key(&lk, buf, db, k->mv_data, k->mv_size) != 0)
		return EINVAL;
	rc = mdb_cursor_get(cur, &lk, v, op == MDB_FIRST ? MDB_SET_RANGE : op);
	if (rc)
		return rc;
	if (lk.mv_size == 0 || *(const unsigned char *)lk.mv_data != (unsigned char)db)
		return MDB_NOTFOUND;
	k->mv_size = lk.mv_size - 1;
	k->mv_data = (unsigned char *)lk.mv_data + 1;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Object records: little-endian, validated on every read.
 *   0 u8 record version (1)   1 u8 state   2 u8 type (S_IFMT >> 12)
 *   3 u8 flags (1 origin, 2 upper)   4 u32 generation   8 u64 parent
 *  16 u8 name length, then [origin], [upper], name; each real handle is
 *     u16 layer, i32 handle type, u8 length, bytes; [origin hint: u64
 *     parent, u8 length, name]; last, u32 checksum of the object number
 *     and everything before it. */

#define REC_VERSION 1
#define REC_HAS_ORIGIN 1u
#define REC_HAS_UPPER 2u
#define REC_HAS_OHINT 4u
#define REC_SUM 4

/* Checksum of a record and its object number, stored in its last 4 bytes,
 * so a damaged record or key gives -EUCLEAN instead of a wrong answer. It
 * catches accidental damage (a miss is about 1 in 2^32), not tampering: a
 * writer of the file can also read the MAC secret. */
static uint32_t rec_sum(uint64_t ino, const unsigned char *p, size_t n)
{
	uint64_t h = (ino ^ n) * 0x9e3779b97f4a7c15ull;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		h = (h ^ fhmap__get_le64(p + i)) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	if (i < n) { /* the tail as one word; n is mixed in above */
		unsigned char tail[8] = { 0 };

		memcpy(tail, p + i, n - i);
		h = (h ^ fhmap__get_le64(tail)) * 0xc4ceb9fe1a85ec53ull;
	}
	h ^= h >> 29;
	return (uint32_t)(h ^ (h >> 32));
}

static int rfh_parse(fhmap__rfh *fh, const unsigned char *p, size_t n, size_t *off)
{
	if (*off + 7 > n)
		return -EUCLEAN;
	p += *off;
	fh->layer = (uint32_t)p[0] | (uint32_t)p[1] << 8;
	fh->type = (int32_t)fhmap__get_le32(p + 2);
	fh->len = p[6];
	fh->data = p + 7;
	if (fh->layer == 0 || fh->len == 0 || fh->len > FHMAP_REALFH_MAX || *off + 7 + fh->len > n)
		return -EUCLEAN;
	*off += 7 + fh->len;
	return 0;
}

static size_t rfh_pack(unsigned char *p, const fhmap__rfh *fh)
{
	p[0] = (unsigned char)fh->layer;
	p[1] = (unsigned char)(fh->layer >> 8);
	fhmap__put_le32(p + 2, (uint32_t)fh->type);
	p[6] = (unsigned char)fh->len;
	memcpy(p + 7, fh->data, fh->len);
	return 7 + fh->len;
}

static int state_valid(const fhmap__rec *r)
{
	switch (r->state) {
	case FHMAP_STATE_ORIGIN:
	case FHMAP_STATE_COPYUP:
		return r->has_origin && !r->has_upper;
	case FHMAP_STATE_UPPER:
		return r->has_upper;
	case FHMAP_STATE_UNLINKED:
		return 1;
	default:
		return 0;
	}
}

/* One pass, inline: names are short, and two memchr() calls cost more
 * than the scan on the decode path. */
static int name_valid(const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == '\0')
			return 0;
	return 1;
}

int fhmap__rec_parse(fhmap__rec *r, uint64_t ino, const MDB_val *val)
{
	const unsigned char *p = val->mv_data;
	size_t n = val->mv_size - REC_SUM, off = 17;

	if (val->mv_size < 17 + REC_SUM || fhmap__get_le32(p + n) != rec_sum(ino, p, n))
		return -EUCLEAN;
	if (p[0] != REC_VERSION || (p[3] & ~(REC_HAS_ORIGIN | REC_HAS_UPPER | REC_HAS_OHINT)))
		return -EUCLEAN;
	r->state = p[1];
	r->type = (uint32_t)p[2] << 12;
	r->has_origin = !!(p[3] & REC_HAS_ORIGIN);
	r->has_upper = !!(p[3] & REC_HAS_UPPER);
	r->has_ohint = !!(p[3] & REC_HAS_OHINT);
	r->gen = fhmap__get_le32(p + 4);
	r->parent = fhmap__get_le64(p + 8);
	r->name_len = p[16];
	if (fhmap__type_check(r->type) || !state_valid(r))
		return -EUCLEAN;
	if (r->has_origin && rfh_parse(&r->origin, p, n, &off))
		return -EUCLEAN;
	if (r->has_upper && rfh_parse(&r->upper, p, n, &off))
		return -EUCLEAN;
	if (r->has_ohint) {
		if (!r->has_origin || off + 9 > n)
			return -EUCLEAN;
		r->ohint_parent = fhmap__get_le64(p + off);
		r->ohint_len = p[off + 8];
		r->ohint_name = (const char *)p + off + 9;
		off += 9 + r->ohint_len;
		if (off > n || !name_valid(r->ohint_name, r->ohint_len))
			return -EUCLEAN;
	}
	if (off + r->name_len != n)
		return -EUCLEAN;
	r->name = (const char *)p + off;
	return name_valid(r->name, r->name_len) ? 0 : -EUCLEAN;
}

size_t fhmap__rec_pack(unsigned char *p, uint64_t ino, const fhmap__rec *r)
{
	size_t off = 17;

	p[0] = REC_VERSION;
	p[1] = r->state;
	p[2] = (unsigned char)(r->type >> 12);
	p[3] = (unsigned char)((r->has_origin ? REC_HAS_ORIGIN : 0) | (r->has_upper ? REC_HAS_UPPER : 0) |
	                       (r->has_ohint ? REC_HAS_OHINT : 0));
	fhmap__put_le32(p + 4, r->gen);
	fhmap__put_le64(p + 8, r->parent);
	p[16] = (unsigned char)r->name_len;
	if (r->has_origin)
		off += rfh_pack(p + off, &r->origin);
	if (r->has_upper)
		off += rfh_pack(p + off, &r->upper);
	if (r->has_ohint) {
		fhmap__put_le64(p + off, r->ohint_parent);
		p[off + 8] = (unsigned char)r->ohint_len;
		memcpy(p + off + 9, r->ohint_name, r->ohint_len);
		off += 9 + r->ohint_len;
	}
	memcpy(p + off, r->name, r->name_len);
	off += r->name_len;
	fhmap__put_le32(p + off, rec_sum(ino, p, off));
	return off + REC_SUM;
}

void fhmap__rfh_view(fhmap__rfh *v, const fhmap_realfh *fh)
{
	v->layer = fh->layer;
	v->type = fh->type;
	v->len = fh->len;
	v->data = fh->data;
}

void fhmap__rfh_copy(fhmap_realfh *out, const fhmap__rfh *v)
{
	out->layer = v->layer;
	out->type = v->type;
	out->len = v->len;
	memcpy(out->data, v->data, v->len);
}

void fhmap__rec_export(fhmap_object *o, uint64_t ino, const fhmap__rec *r)
{
	memset(o, 0, sizeof(*o));
	o->ino = ino;
	o->gen = r->gen;
	o->type = r->type;
	o->state = (fhmap_state)r->state;
	o->has_origin = r->has_origin;
	o->has_upper = r->has_upper;
	if (r->has_origin)
		fhmap__rfh_copy(&o->origin, &r->origin);
	if (r->has_upper)
		fhmap__rfh_copy(&o->upper, &r->upper);
	o->parent = r->parent;
	memcpy(o->name, r->name, r->name_len);
}

/* Index key of a real handle: u16 layer, u32 handle type (big-endian), bytes. */
size_t fhmap__ikey(unsigned char *key, const fhmap__rfh *fh)
{
	key[0] = (unsigned char)(fh->layer >> 8);
	key[1] = (unsigned char)fh->layer;
	fhmap__be32(key + 2, (uint32_t)fh->type);
	memcpy(key + 6, fh->data, fh->len);
	return 6 + fh->len;
}

int fhmap__obj_load(MDB_txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy)
{
	unsigned char key[8];
	MDB_val val;
	int rc;

	fhmap__be64(key, ino);
	if ((rc = fhmap__get(txn, m, FHMAP__DB_OBJECTS, key, 8, &val)) != 0)
		return rc;
	if (copy) {
		/* Writers keep their own copy: a later put may move the page. */
		if (val.mv_size > FHMAP__REC_MAX)
			return -EUCLEAN;
		memcpy(copy, val.mv_data, val.mv_size);
		val.mv_data = copy;
	}
	return fhmap__rec_parse(rec, ino, &val);
}

int fhmap__obj_load_live(MDB_txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy)
{
	int rc = fhmap__obj_load(txn, m, ino, rec, copy);

	return rc == 0 && rec->state == FHMAP_STATE_UNLINKED ? -ESTALE : rc;
}

int fhmap__obj_store(fhmap__wtxn *w, uint64_t ino, const fhmap__rec *rec)
{
	unsigned char key[8], buf[FHMAP__REC_MAX];

	fhmap__be64(key, ino);
	return fhmap__put(w, FHMAP__DB_OBJECTS, key, 8, buf, fhmap__rec_pack(buf, ino, rec), 0);
}

int fhmap__realfh_check(const fhmap_realfh *fh)
{
	if (!fh || fh->layer == 0 || fh->layer > UINT16_MAX || fh->len == 0 || fh->len > FHMAP_REALFH_MAX)
		return -EINVAL;
	return 0;
}

int fhmap__name_check(const char *name)
{
	size_t n;

	if (!name)
		return -EINVAL;
	n = strlen(name);
	if (n > FHMAP_NAME_MAX)
		return -ENAMETOOLONG;
	if (n == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

int fhmap__type_check(uint32_t type)
{
	switch (type) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		return 0;
	default:
		return -EINVAL;
	}
}

/* ------------------------------------------------------------------------ */
/* Opening */

static int check_options(fhmap_open_options *o, const fhmap_open_options *given)
{
	fhmap_open_options def = FHMAP_OPEN_OPTIONS_INIT;

	*o = given ? *given : def;
	if (o->version != FHMAP_OPEN_OPTIONS_VERSION)
		return -EINVAL;
	if (o->flags & ~(FHMAP_OPEN_CREATE | FHMAP_OPEN_RDONLY | FHMAP_OPEN_VERIFY))
		return -EINVAL;
	if ((o->flags & FHMAP_OPEN_CREATE) && (o->flags & FHMAP_OPEN_RDONLY))
		return -EINVAL;
	if (o->sync != FHMAP_SYNC_FULL && o->sync != FHMAP_SYNC_LAZY)
		return -EINVAL;
	if (!o->max_map_size)
		o->max_map_size = DEFAULT_MAX_MAP_SIZE;
	if (!o->map_size)
		o->map_size = DEFAULT_MAP_SIZE < o->max_map_size ? DEFAULT_MAP_SIZE : o->max_map_size;
	if (o->map_size > o->max_map_size)
		return -EINVAL;
	return 0;
}

/* Makes sure @path is a directory holding a map, or may become one. */
static int check_path(const char *path, int create)
{
	char data[FHMAP_PATH_MAX];
	struct stat st;

	if (stat(path, &st) != 0) {
		if (errno != ENOENT || !create)
			return -errno;
		return mkdir(path, 0700) == 0 ? 0 : -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return -EMEDIUMTYPE;
	if (snprintf(data, sizeof(data), "%s/data.mdb", path) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	if (!create && access(data, F_OK) != 0)
		return -ENOENT;
	return 0;
}

static int meta_get(MDB_txn *txn, fhmap *m, const char *key, void *out, size_t len)
{
	MDB_val v;
	int rc = fhmap__get(txn, m, FHMAP__DB_META, key, strlen(key), &v);

	if (rc == -ENOENT)
		return -EMEDIUMTYPE;
	if (rc)
		return rc;
	if (v.mv_size != len)
		return -EUCLEAN;
	memcpy(out, v.mv_data, len);
	return 0;
}

/* Reads identity and secret; refuses maps of other format versions. */
static int load_identity(fhmap *m, MDB_txn *txn)
{
	unsigned char fmt[4], secret[16];
	uint32_t version;
	int rc;

	if ((rc = meta_get(txn, m, "format", fmt, 4)) != 0)
		return rc;
	version = fhmap__get_le32(fmt);
	if (version != FHMAP_FORMAT_VERSION) {
		fhmap__log(m, FHMAP_LOG_ERROR, "map has format version %u; this library reads version %u",
		           version, FHMAP_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if ((rc = meta_get(txn, m, "uuid", m->uuid, 16)) != 0 ||
	    (rc = meta_get(txn, m, "secret", secret, 16)) != 0)
		return rc;
	m->key[0] = fhmap__get_le64(secret);
	m->key[1] = fhmap__get_le64(secret + 8);
	m->tag = fhmap__get_le32(m->uuid);
	return 0;
}

/* A map of format 1 kept its tables as named LMDB tables, "meta" among them. */
static int old_format(fhmap *m, MDB_txn *txn)
{
	MDB_val k = { 4, "meta" }, v;

	if (mdb_get(txn, m->dbi, &k, &v) != 0)
		return -EMEDIUMTYPE;
	fhmap__log(m, FHMAP_LOG_ERROR, "map has format version 1; this library reads version %u",
	           FHMAP_FORMAT_VERSION);
	return -EPROTONOSUPPORT;
}

/* Loads the identity; with @create, makes it in a fresh environment, and
 * refuses an environment that holds anything else. */
static int open_dbs(fhmap *m, int create)
{
	fhmap__wtxn w = { m, NULL, 0 };
	MDB_stat st;
	int fresh = 0, rc;

	rc = fhmap__err(mdb_txn_begin(m->env, NULL, create ? 0 : MDB_RDONLY, &w.txn));
	if (rc)
		return rc;
	if ((rc = fhmap__err(mdb_dbi_open(w.txn, NULL, 0, &m->dbi))) != 0)
		goto out;
	if (create) {
		if ((rc = fhmap__err(mdb_stat(w.txn, m->dbi, &st))) != 0)
			goto out;
		fresh = st.ms_entries == 0;
	}
	if (fresh && (rc = fhmap__meta_init(&w)) != 0)
		goto out;
	if ((rc = load_identity(m, w.txn)) != 0) {
		if (rc == -EMEDIUMTYPE)
			rc = old_format(m, w.txn);
		goto out;
	}
	rc = commit(m, w.txn);
	w.txn = NULL;
	if (rc == 0 && fresh)
		fhmap__log(m, FHMAP_LOG_INFO, "created a new map");
out:
	if (w.txn)
		mdb_txn_abort(w.txn);
	return rc == FHMAP__EMAPFULL ? -ENOSPC : rc;
}

static void report_pending(fhmap *m)
{
	size_t count = 0;

	if (fhmap_copyup_pending(NULL, 0, &count, m) == 0 && count)
		fhmap__log(m, FHMAP_LOG_WARN,
		           "%zu copy-up intent(s) left pending by an earlier run: list them with "
		           "fhmap_copyup_pending() and commit or abort each",
		           count);
}

int fhmap_open(fhmap **out, const char *path, const fhmap_open_options *opts)
{
	fhmap_open_options o;
	unsigned int flags = MDB_NOTLS;
	fhmap *m;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path || !*path)
		return -EINVAL;
	if ((rc = check_options(&o, opts)) != 0)
		return rc;
	if ((rc = check_path(path, !!(o.flags & FHMAP_OPEN_CREATE))) != 0)
		return rc;
	if ((o.flags & FHMAP_OPEN_VERIFY) && (rc = fhmap__verify(path, &o)) != 0)
		return rc;
	if (!(m = calloc(1, sizeof(*m))))
		return -ENOMEM;
	if ((rc = register_open(m, path)) != 0) {
		free(m);
		return rc;
	}
	m->read_only = !!(o.flags & FHMAP_OPEN_RDONLY);
	m->sync = o.sync;
	m->max_map_size = o.max_map_size;
	m->log = o.log;
	m->log_ctx = o.log_ctx;
	m->nslots = READ_SLOTS;
	pthread_rwlock_init(&m->resize_lock, NULL);
	pthread_mutex_init(&m->fd_lock, NULL);
	m->slots = aligned_alloc(64, m->nslots * sizeof(*m->slots));
	if (!m->slots) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned int i = 0; i < m->nslots; i++) {
		atomic_init(&m->slots[i].busy, 0);
		m->slots[i].txn = NULL;
	}
	if (m->read_only)
		flags |= MDB_RDONLY;
	if (m->sync == FHMAP_SYNC_LAZY)
		flags |= MDB_NOMETASYNC;
	if ((rc = fhmap__err(mdb_env_create(&m->env))) != 0)
		goto fail;
	mdb_env_set_mapsize(m->env, o.map_size);
	if (o.max_readers)
		mdb_env_set_maxreaders(m->env, o.max_readers);
	if ((rc = fhmap__err(mdb_env_open(m->env, path, flags, 0600))) != 0)
		goto fail;
	if ((rc = open_dbs(m, !!(o.flags & FHMAP_OPEN_CREATE))) != 0)
		goto fail;
	report_pending(m);
	*out = m;
	return 0;
fail:
	fhmap_close(m);
	return rc == FHMAP__EMAPFULL ? -ENOSPC : rc;
}

void fhmap_close(fhmap *m)
{
	if (!m)
		return;
	if (tl_batch.m == m)
		fhmap_batch_abort(m);
	if (m->slots) {
		for (unsigned int i = 0; i < m->nslots; i++)
			if (m->slots[i].txn)
				mdb_txn_abort(m->slots[i].txn);
		free(m->slots);
	}
	fhmap__layer_fds_close(m);
	if (m->env)
		mdb_env_close(m->env);
	pthread_rwlock_destroy(&m->resize_lock);
	pthread_mutex_destroy(&m->fd_lock);
	unregister_open(m);
	free(m);
}

int fhmap_sync(fhmap *m)
{
	if (!m)
		return -EINVAL;
	if (m->read_only)
		return 0;
	return fhmap__err(mdb_env_sync(m->env, 1));
}

int fhmap_info_get(fhmap_info *out, fhmap *m)
{
	fhmap__rtxn r;
	uint64_t base = 0;
	int rc;

	if (!out || !m)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(out->uuid, m->uuid, 16);
	out->format_version = FHMAP_FORMAT_VERSION;
	out->read_only = m->read_only;
	out->sync = m->sync;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if ((rc = fhmap__meta_u64(r.txn, m, "gen_base", &base)) == 0 &&
	    (rc = fhmap__meta_u64(r.txn, m, "created", &out->created)) == 0)
		rc = fhmap__meta_u64(r.txn, m, "next_ino", &out->next_ino);
	fhmap__read_end(m, &r);
	out->gen_base = (uint32_t)base;
	return rc;
}

int fhmap_backup(fhmap *m, const char *dest)
{
	char data[FHMAP_PATH_MAX];
	int rc;

	if (!m || !dest || !*dest)
		return -EINVAL;
	if (tl_batch.m == m)
		return -EBUSY;
	if (snprintf(data, sizeof(data), "%s/data.mdb", dest) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	if (mkdir(dest, 0700) != 0)
		return -errno;
	pthread_rwlock_rdlock(&m->resize_lock);
	rc = fhmap__err(mdb_env_copy2(m->env, dest, MDB_CP_COMPACT));
	pthread_rwlock_unlock(&m->resize_lock);
	if (rc) {
		unlink(data);
		rmdir(dest);
	}
	return rc;
}

#define FHMAP__STR2(x) #x
#define FHMAP__STR(x) FHMAP__STR2(x)

const char *fhmap_version(void)
{
	return FHMAP__STR(FHMAP_VERSION_MAJOR) "." FHMAP__STR(FHMAP_VERSION_MINOR) "." FHMAP__STR(FHMAP_VERSION_PATCH);
}
