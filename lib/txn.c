/* The transaction engine: read transactions on reusable slots, write
 * transactions and batches, map growth, and key/value access to the tables
 * that share LMDB's main table. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "fhmap_int.h"

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
int fhmap__commit(fhmap *m, MDB_txn *txn)
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
			rc = fhmap__commit(m, w.txn);
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

int fhmap__batch_active(const fhmap *m)
{
	return tl_batch.m == m;
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
	rc = fhmap__commit(m, tl_batch.txn);
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

