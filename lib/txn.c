/* The transaction engine: read transactions on reusable slots (seeing the
 * overlay of deferred updates first), write transactions, map growth, and
 * key/value access and cursors over the tables that share LMDB's main
 * table. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "fhmap_int.h"

static FHMAP__TLS unsigned int tl_slot_hint;

/* ------------------------------------------------------------------------ */
/* Map size */

uint64_t fhmap__map_size(fhmap *m)
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
int fhmap__grow(fhmap *m, uint64_t seen)
{
	uint64_t cur, next;
	int rc = 0;

	resize_exclusive(m);
	cur = fhmap__map_size(m);
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
		           (unsigned long long)fhmap__map_size(m));
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
		unsigned int idx = tl_slot_hint + i < m->nslots ? tl_slot_hint + i
		                                                : tl_slot_hint + i - m->nslots;
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

/* Begins the read transaction of slot @s (or a temporary one), and of the
 * overlay too when it may hold entries. The overlay's is begun first: an
 * entry leaves the overlay only after the map committed it, so what the
 * overlay no longer has, the later main transaction sees. */
static int slot_begin(fhmap *m, fhmap__rslot *s, fhmap__rtxn *r, int with_ovl)
{
	int rc = 0;

	r->t.ovl = NULL;
	if (with_ovl && m->ovl && atomic_load(&m->ovl->live)) {
		if (!s)
			rc = mdb_txn_begin(m->ovl->env, NULL, MDB_RDONLY, &r->t.ovl);
		else if (s->otxn)
			rc = mdb_txn_renew(s->otxn);
		else
			rc = mdb_txn_begin(m->ovl->env, NULL, MDB_RDONLY, &s->otxn);
		if (rc)
			return rc;
		if (s)
			r->t.ovl = s->otxn;
	}
	if (!s)
		rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &r->t.main);
	else if (s->txn)
		rc = mdb_txn_renew(s->txn);
	else
		rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &s->txn);
	if (rc == 0 && s)
		r->t.main = s->txn;
	if (rc && r->t.ovl) {
		if (s)
			mdb_txn_reset(r->t.ovl);
		else
			mdb_txn_abort(r->t.ovl);
	}
	return rc;
}

static void txn_end(MDB_txn *txn, int temp)
{
	if (!txn)
		return;
	if (temp)
		mdb_txn_abort(txn);
	else
		mdb_txn_reset(txn);
}

static int read_begin(fhmap *m, fhmap__rtxn *r, int with_ovl)
{
	const fhmap__txn *batch = with_ovl ? fhmap__batch_txn(m) : NULL;
	int rc;

	r->slot = NULL;
	r->temp = 0;
	r->locked = 0;
	if (batch) {
		r->t = *batch;
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
		/* More concurrent readers than slots: one-off transactions. */
		r->temp = !r->slot;
		rc = slot_begin(m, r->slot, r, with_ovl);
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

int fhmap__read_begin(fhmap *m, fhmap__rtxn *r)
{
	return read_begin(m, r, 1);
}

int fhmap__read_main_begin(fhmap *m, fhmap__rtxn *r)
{
	return read_begin(m, r, 0);
}

void fhmap__read_end(fhmap *m, fhmap__rtxn *r)
{
	if (!r->locked)
		return;
	txn_end(r->t.ovl, r->temp);
	txn_end(r->t.main, r->temp);
	if (r->slot)
		slot_release(r->slot);
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
/* Write transactions */

/* The writers' byte of fhmap.lock: a process with deferred updates holds it
 * exclusively until they are committed, every other writer holds it shared
 * around its write transaction, so none commits in between. */
int fhmap__writers_lock(fhmap *m, short type)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = FHMAP__LOCK_WRITERS, .l_len = 1
	};

	if (m->lock_fd < 0)
		return 0;
	while (fcntl(m->lock_fd, F_OFD_SETLKW, &fl) != 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int fhmap__write_begin(fhmap *m, MDB_txn **txn)
{
	int rc;

	if (!m->ovl && (rc = fhmap__writers_lock(m, F_RDLCK)) != 0)
		return rc;
	for (;;) {
		pthread_rwlock_rdlock(&m->resize_lock);
		rc = mdb_txn_begin(m->env, NULL, 0, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&m->resize_lock);
		if (rc != MDB_MAP_RESIZED)
			break;
		adopt_resize(m);
	}
	if (!m->ovl)
		fhmap__writers_lock(m, F_UNLCK);
	return fhmap__err(rc);
}

void fhmap__write_end(fhmap *m)
{
	pthread_rwlock_unlock(&m->resize_lock);
	if (!m->ovl)
		fhmap__writers_lock(m, F_UNLCK);
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

int fhmap__get(const fhmap__txn *t, const fhmap *m, int db, const void *key, size_t klen, MDB_val *val)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val k;
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if (t->ovl) {
		/* An empty value in the overlay is a deletion not yet committed. */
		rc = mdb_get(t->ovl, m->ovl->dbi, &k, val);
		if (rc == 0)
			return val->mv_size ? 0 : -ENOENT;
		if (rc != MDB_NOTFOUND)
			return fhmap__err(rc);
	}
	return fhmap__err(mdb_get(t->main, m->dbi, &k, val));
}

static int put_raw(fhmap__wtxn *w, const MDB_val *k, MDB_val *v)
{
	int rc = w->t.ovl ? mdb_put(w->t.ovl, w->m->ovl->dbi, (MDB_val *)k, v, 0)
	                  : mdb_put(w->t.main, w->m->dbi, (MDB_val *)k, v, 0);

	if (rc == 0)
		w->writes++;
	return fhmap__err(rc);
}

int fhmap__put(fhmap__wtxn *w, int db, const void *key, size_t klen, const void *val, size_t vlen)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val k, v = { vlen, (void *)val };
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if (vlen == 0)
		return -EINVAL; /* reserved for deletions in the overlay */
	return put_raw(w, &k, &v);
}

int fhmap__del(fhmap__wtxn *w, int db, const void *key, size_t klen)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val k, v = { 0, NULL };
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if (!w->t.ovl) {
		if ((rc = mdb_del(w->t.main, w->m->dbi, &k, NULL)) == 0)
			w->writes++;
		return fhmap__err(rc);
	}
	if ((rc = fhmap__get(&w->t, w->m, db, key, klen, &v)) != 0)
		return rc;
	v.mv_size = 0;
	return put_raw(w, &k, &v);
}

/* ------------------------------------------------------------------------ */
/* Cursors: the overlay's entries merged into the main table's, in key order,
 * the overlay's winning on equal keys and its deletions hiding the key. */

static int side_seek(fhmap__cside *s, int db, MDB_val *from, MDB_cursor_op op)
{
	int rc;

	s->on = 0;
	if (!s->cur)
		return 0;
	if (from)
		s->k = *from;
	rc = mdb_cursor_get(s->cur, &s->k, &s->v, op);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return fhmap__err(rc);
	s->on = db == FHMAP__DB_ALL ||
	        (s->k.mv_size && *(const unsigned char *)s->k.mv_data == (unsigned char)db);
	return 0;
}

int fhmap__cursor_open(fhmap__cursor *c, const fhmap__txn *t, const fhmap *m, int db)
{
	int rc;

	memset(c, 0, sizeof(*c));
	c->txn = t->main;
	c->dbi = m->dbi;
	c->db = db;
	if ((rc = mdb_cursor_open(t->main, m->dbi, &c->main.cur)) != 0)
		return fhmap__err(rc);
	if (t->ovl && (rc = mdb_cursor_open(t->ovl, m->ovl->dbi, &c->ovl.cur)) != 0) {
		mdb_cursor_close(c->main.cur);
		return fhmap__err(rc);
	}
	return 0;
}

void fhmap__cursor_close(fhmap__cursor *c)
{
	if (c->ovl.cur)
		mdb_cursor_close(c->ovl.cur);
	if (c->main.cur)
		mdb_cursor_close(c->main.cur);
}

/* Moves on from the entry returned last. */
static int cursor_step(fhmap__cursor *c)
{
	int rc = 0;

	if (c->took_main)
		rc = side_seek(&c->main, c->db, NULL, MDB_NEXT);
	if (rc == 0 && c->took_ovl)
		rc = side_seek(&c->ovl, c->db, NULL, MDB_NEXT);
	return rc;
}

static int cursor_seek(fhmap__cursor *c, MDB_val *from, MDB_cursor_op op)
{
	int rc = side_seek(&c->main, c->db, from, op);

	return rc ? rc : side_seek(&c->ovl, c->db, from, op);
}

int fhmap__cursor_get(fhmap__cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	MDB_val from = { 1, buf };
	int rc;

	buf[0] = (unsigned char)c->db;
	if (op == MDB_NEXT)
		rc = cursor_step(c);
	else if (c->db == FHMAP__DB_ALL)
		rc = cursor_seek(c, NULL, MDB_FIRST);
	else if ((rc = op == MDB_SET_RANGE ? table_key(&from, buf, c->db, k->mv_data, k->mv_size) : 0) == 0)
		rc = cursor_seek(c, &from, MDB_SET_RANGE); /* a table's first key: at or after its byte */
	for (; rc == 0; rc = cursor_step(c)) {
		const fhmap__cside *s;
		int cmp;

		if (!c->main.on && !c->ovl.on)
			return -ENOENT;
		cmp = !c->ovl.on ? 1 : !c->main.on ? -1 : mdb_cmp(c->txn, c->dbi, &c->ovl.k, &c->main.k);
		c->took_ovl = cmp <= 0;
		c->took_main = cmp >= 0;
		s = c->took_ovl ? &c->ovl : &c->main;
		if (c->took_ovl && s->v.mv_size == 0)
			continue; /* deleted in the overlay */
		*k = s->k;
		*v = s->v;
		if (c->db != FHMAP__DB_ALL) {
			k->mv_size--;
			k->mv_data = (unsigned char *)k->mv_data + 1;
		}
		return 0;
	}
	return rc;
}
