/* LMDB transactions: read transactions on reusable slots (seeing the
 * overlay of deferred updates first), write transactions, map growth,
 * key/value access and cursors, and the groups and batches of full and
 * lazy mode. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "lmdb.h"

static FHMAP__TLS unsigned int tl_slot_hint;

int fhmap__err_slow(int rc)
{
	if (rc < 0 && (rc < MDB_KEYEXIST || rc > MDB_LAST_ERRCODE))
		return rc; /* already an errno value of ours */
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return FHMAP__EMAPFULL;
	case MDB_READERS_FULL:
		return -EUSERS;
	case MDB_VERSION_MISMATCH:
		return -EPROTONOSUPPORT;
	case MDB_INVALID:
		return -EMEDIUMTYPE;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
		return -EUCLEAN;
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
		return -E2BIG;
	case MDB_DBS_FULL:
	case MDB_TLS_FULL:
	case MDB_MAP_RESIZED:
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_DBI:
	case MDB_PANIC:
		return -EIO;
	default:
		/* LMDB passes system errors through as positive errno values. */
		return rc > 0 ? -rc : -EIO;
	}
}


/* ------------------------------------------------------------------------ */
/* Map size */

uint64_t fhmap__map_size(fhmap *m)
{
	MDB_envinfo info;

	mdb_env_info(LM(m)->env, &info);
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
	pthread_rwlock_wrlock(&LM(m)->resize_lock);
	atomic_store(&LM(m)->resizing, 1);
	for (unsigned int i = 0; i < LM(m)->nslots; i++)
		while (atomic_load(&LM(m)->slots[i].busy))
			sched_yield();
}

static void resize_done(fhmap *m)
{
	atomic_store(&LM(m)->resizing, 0);
	pthread_rwlock_unlock(&LM(m)->resize_lock);
}

/* Doubles the map unless another thread already grew it past @seen. */
int fhmap__grow(fhmap *m, uint64_t seen)
{
	uint64_t cur, next;
	int rc = 0;

	resize_exclusive(m);
	cur = fhmap__map_size(m);
	if (cur <= seen) {
		if (cur >= LM(m)->max_map_size) {
			rc = -ENOSPC;
		} else {
			next = cur * 2 < LM(m)->max_map_size ? cur * 2 : LM(m)->max_map_size;
			rc = fhmap__err(mdb_env_set_mapsize(LM(m)->env, next));
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
	mdb_env_set_mapsize(LM(m)->env, 0);
	resize_done(m);
}

/* ------------------------------------------------------------------------ */
/* Read transactions */

static fhmap__rslot *slot_acquire(fhmap *m)
{
	for (unsigned int i = 0; i < LM(m)->nslots; i++) {
		unsigned int idx = tl_slot_hint + i < LM(m)->nslots ? tl_slot_hint + i
		                                                : tl_slot_hint + i - LM(m)->nslots;
		fhmap__rslot *s = &LM(m)->slots[idx];

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
	MDB_txn *ovl = NULL, *main = NULL;
	int rc = 0;

	if (with_ovl && LM(m)->ovl && atomic_load(&LM(m)->ovl->live)) {
		if (!s)
			rc = mdb_txn_begin(LM(m)->ovl->env, NULL, MDB_RDONLY, &ovl);
		else if (s->otxn && (rc = mdb_txn_renew(s->otxn)) == 0)
			ovl = s->otxn;
		else if (!s->otxn && (rc = mdb_txn_begin(LM(m)->ovl->env, NULL, MDB_RDONLY, &s->otxn)) == 0)
			ovl = s->otxn;
		if (rc)
			return rc;
	}
	if (!s)
		rc = mdb_txn_begin(LM(m)->env, NULL, MDB_RDONLY, &main);
	else if (s->txn && (rc = mdb_txn_renew(s->txn)) == 0)
		main = s->txn;
	else if (!s->txn && (rc = mdb_txn_begin(LM(m)->env, NULL, MDB_RDONLY, &s->txn)) == 0)
		main = s->txn;
	if (rc && ovl) {
		if (s)
			mdb_txn_reset(ovl);
		else
			mdb_txn_abort(ovl);
	}
	r->t.main = main;
	r->t.ovl = ovl;
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

	if (fhmap__rtxn_start(r, batch))
		return 0;
	for (;;) {
		int shared = 0;

		/* Fast path: a free slot and no size change under way; touches
		 * no cache line shared with other readers. */
		r->slot = slot_acquire(m);
		if (r->slot && atomic_load(&LM(m)->resizing)) {
			slot_release(r->slot);
			r->slot = NULL;
		}
		if (!r->slot) {
			/* Wait out a size change; retry the slots under the lock. */
			pthread_rwlock_rdlock(&LM(m)->resize_lock);
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
			pthread_rwlock_unlock(&LM(m)->resize_lock);
		if (rc != MDB_MAP_RESIZED)
			return fhmap__err(rc);
		adopt_resize(m);
	}
}

int fhmap__lm_read_begin(fhmap *m, fhmap__rtxn *r)
{
	return read_begin(m, r, 1);
}

int fhmap__read_main_begin(fhmap *m, fhmap__rtxn *r)
{
	return read_begin(m, r, 0);
}

void fhmap__lm_read_end(fhmap *m, fhmap__rtxn *r)
{
	if (!r->locked)
		return;
	txn_end(r->t.ovl, r->temp);
	txn_end(r->t.main, r->temp);
	if (r->slot)
		slot_release(r->slot);
	if (r->locked == 1)
		pthread_rwlock_unlock(&LM(m)->resize_lock);
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

	if (rc == -EIO && mdb_env_get_fd(LM(m)->env, &fd) == 0 && fstatvfs(fd, &sv) == 0 &&
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

	if (LM(m)->lock_fd < 0)
		return 0;
	while (fcntl(LM(m)->lock_fd, F_OFD_SETLKW, &fl) != 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int fhmap__write_begin(fhmap *m, MDB_txn **txn)
{
	int rc;

	if (!LM(m)->ovl && (rc = fhmap__writers_lock(m, F_RDLCK)) != 0)
		return rc;
	for (;;) {
		pthread_rwlock_rdlock(&LM(m)->resize_lock);
		rc = mdb_txn_begin(LM(m)->env, NULL, 0, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&LM(m)->resize_lock);
		if (rc != MDB_MAP_RESIZED)
			break;
		adopt_resize(m);
	}
	if (!LM(m)->ovl)
		fhmap__writers_lock(m, F_UNLCK);
	return fhmap__err(rc);
}

void fhmap__write_end(fhmap *m)
{
	pthread_rwlock_unlock(&LM(m)->resize_lock);
	if (!LM(m)->ovl)
		fhmap__writers_lock(m, F_UNLCK);
}

/* ------------------------------------------------------------------------ */
/* Key/value access (full keys) */

int fhmap__lm_get(const fhmap__txn *t, const fhmap *m, const fhmap__val *key, fhmap__val *val)
{
	MDB_val k = fhmap__mdb(key), v;
	int rc;

	if (t->ovl) {
		/* An empty value in the overlay is a deletion not yet committed. */
		rc = mdb_get(t->ovl, LM(m)->ovl->dbi, &k, &v);
		if (rc == 0) {
			*val = fhmap__fval(&v);
			return v.mv_size ? 0 : -ENOENT;
		}
		if (rc != MDB_NOTFOUND)
			return fhmap__err(rc);
	}
	if ((rc = mdb_get(t->main, LM(m)->dbi, &k, &v)) == 0)
		*val = fhmap__fval(&v);
	return fhmap__err(rc);
}

int fhmap__lm_put(fhmap__wtxn *w, const fhmap__val *key, const fhmap__val *val)
{
	MDB_val k = fhmap__mdb(key), v = fhmap__mdb(val);

	if (w->t.ovl)
		return fhmap__err(mdb_put(w->t.ovl, LM(w->m)->ovl->dbi, &k, &v, 0));
	return fhmap__err(mdb_put(w->t.main, LM(w->m)->dbi, &k, &v, 0));
}

int fhmap__lm_del(fhmap__wtxn *w, const fhmap__val *key)
{
	MDB_val k = fhmap__mdb(key), v = { 0, NULL };
	fhmap__val cur;
	int rc;

	if (!w->t.ovl)
		return fhmap__err(mdb_del(w->t.main, LM(w->m)->dbi, &k, NULL));
	/* In the overlay: an empty value, where there is something to hide. */
	if ((rc = fhmap__lm_get(&w->t, w->m, key, &cur)) != 0)
		return rc;
	return fhmap__err(mdb_put(w->t.ovl, LM(w->m)->ovl->dbi, &k, &v, 0));
}

/* ------------------------------------------------------------------------ */
/* Cursors: the overlay's entries merged into the main table's, in key order,
 * the overlay's winning on equal keys and its deletions hiding the key. */

typedef struct cside {
	MDB_cursor *cur;
	MDB_val k, v;
	int on; /* positioned on an entry */
} cside;

typedef struct lcursor {
	MDB_txn *txn; /* for mdb_cmp() */
	MDB_dbi dbi;
	cside main, ovl;
	int took_main, took_ovl; /* the sides of the entry returned last */
} lcursor;

static int side_seek(cside *s, MDB_val *from, MDB_cursor_op op)
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
	s->on = 1;
	return 0;
}

int fhmap__lm_cursor_open(fhmap__cursor *c, const fhmap__txn *t)
{
	lcursor *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	l->txn = t->main;
	l->dbi = LM(c->m)->dbi;
	if ((rc = mdb_cursor_open(t->main, l->dbi, &l->main.cur)) == 0 && t->ovl &&
	    (rc = mdb_cursor_open(t->ovl, LM(c->m)->ovl->dbi, &l->ovl.cur)) != 0)
		mdb_cursor_close(l->main.cur);
	if (rc) {
		free(l);
		return fhmap__err(rc);
	}
	c->impl = l;
	return 0;
}

void fhmap__lm_cursor_close(fhmap__cursor *c)
{
	lcursor *l = c->impl;

	if (!l)
		return;
	if (l->ovl.cur)
		mdb_cursor_close(l->ovl.cur);
	mdb_cursor_close(l->main.cur);
	free(l);
	c->impl = NULL;
}

/* Moves on from the entry returned last. */
static int cursor_step(lcursor *l)
{
	int rc = 0;

	if (l->took_main)
		rc = side_seek(&l->main, NULL, MDB_NEXT);
	if (rc == 0 && l->took_ovl)
		rc = side_seek(&l->ovl, NULL, MDB_NEXT);
	return rc;
}

int fhmap__lm_cursor_get(fhmap__cursor *c, fhmap__val *k, fhmap__val *v, int op)
{
	lcursor *l = c->impl;
	MDB_val from = fhmap__mdb(k);
	int rc;

	if (op == FHMAP__NEXT) {
		rc = cursor_step(l);
	} else {
		MDB_cursor_op how = op == FHMAP__FIRST ? MDB_FIRST : MDB_SET_RANGE;
		MDB_val *at = op == FHMAP__FIRST ? NULL : &from;

		if ((rc = side_seek(&l->main, at, how)) == 0)
			rc = side_seek(&l->ovl, at, how);
	}
	for (; rc == 0; rc = cursor_step(l)) {
		const cside *s;
		int cmp;

		if (!l->main.on && !l->ovl.on)
			return -ENOENT;
		cmp = !l->ovl.on ? 1 : !l->main.on ? -1 : mdb_cmp(l->txn, l->dbi, &l->ovl.k, &l->main.k);
		l->took_ovl = cmp <= 0;
		l->took_main = cmp >= 0;
		s = l->took_ovl ? &l->ovl : &l->main;
		if (l->took_ovl && s->v.mv_size == 0)
			continue; /* deleted in the overlay */
		*k = fhmap__fval(&s->k);
		*v = fhmap__fval(&s->v);
		return 0;
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Groups and batches on the main table (full and lazy mode; deferred mode
 * writes to the overlay: deferred.c) */

static int sync_meta(fhmap *m)
{
	return fhmap__err(mdb_env_sync(LM(m)->env, 1));
}

int fhmap__lm_write_durable(fhmap *m, fhmap__write_fn fn, void *arg)
{
	fhmap__wtxn w = { m, { NULL, NULL }, 0 };
	MDB_txn *txn;
	int rc;

	for (;;) {
		fhmap__alloc saved = m->alloc;
		uint64_t seen;

		if ((rc = fhmap__write_begin(m, &txn)) != 0)
			return rc;
		w.t.main = txn;
		seen = fhmap__map_size(m);
		if ((rc = fn(&w, arg)) == 0)
			rc = fhmap__commit(m, txn);
		else
			mdb_txn_abort(txn);
		fhmap__write_end(m);
		if (rc == 0 && m->sync == FHMAP_SYNC_LAZY)
			rc = sync_meta(m);
		if (rc == 0)
			return 0;
		m->alloc = saved;
		if (rc != FHMAP__EMAPFULL || (rc = fhmap__grow(m, seen)) != 0)
			return rc;
	}
}

static int reserve_one(fhmap__wtxn *w, void *arg)
{
	(void)arg;
	return fhmap__alloc_reserve(w);
}

void fhmap__lm_group(fhmap *m, fhmap__wreq *g)
{
	unsigned int n = fhmap__group_size(g);
	int rc = 0;

	/* Lazy mode commits without flushing the meta page, so a range
	 * reserved in a commit could be lost with it: reserve in a commit of
	 * its own, flushed, before numbers of it go out. */
	if (n && m->sync == FHMAP_SYNC_LAZY && fhmap__alloc_room(m) < n)
		rc = fhmap__lm_write_durable(m, reserve_one, NULL);
	while (n && rc == 0) {
		fhmap__alloc saved = m->alloc;
		fhmap__wreq *bad = NULL;
		MDB_txn *txn;
		uint64_t seen;

		if ((rc = fhmap__write_begin(m, &txn)) != 0)
			break;
		seen = fhmap__map_size(m);
		if ((rc = fhmap__group_apply(m, g, &(fhmap__txn){ txn, NULL }, &bad)) == 0)
			rc = fhmap__commit(m, txn);
		else
			mdb_txn_abort(txn);
		fhmap__write_end(m);
		if (rc == 0)
			break;
		m->alloc = saved;
		if (rc == FHMAP__EMAPFULL && (rc = fhmap__grow(m, seen)) == 0)
			continue; /* every update again, in the grown map */
		if (!bad)
			break;
		bad->rc = rc;
		bad->final = 1;
		rc = 0;
	}
	if (rc) {
		fhmap__group_fail(g, rc == FHMAP__EMAPFULL ? -ENOSPC : rc);
		return;
	}
	/* fhmap_sync(): lazy mode flushes the meta page (once for all who
	 * asked); full mode's commits are durable already. */
	for (fhmap__wreq *r = g, *first = NULL; r; r = r->next) {
		if (r->fn)
			continue;
		if (!first && m->sync == FHMAP_SYNC_LAZY)
			rc = sync_meta(m);
		first = r;
		r->rc = rc;
	}
}

/* Grows the map before a batch so that most batches never hit its end. */
static int ensure_headroom(fhmap *m)
{
	MDB_envinfo info;
	MDB_stat st;
	uint64_t used;

	mdb_env_info(LM(m)->env, &info);
	mdb_env_stat(LM(m)->env, &st);
	used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if (info.me_mapsize - used >= info.me_mapsize / 4)
		return 0;
	return fhmap__grow(m, info.me_mapsize);
}

int fhmap__lm_batch_begin(fhmap *m, fhmap__txn *t)
{
	MDB_txn *txn;
	int rc = ensure_headroom(m);

	if (rc == 0 && LM(m)->ovl)
		return fhmap__ovl_batch_begin(m, t);
	if (rc == 0 && (rc = fhmap__write_begin(m, &txn)) == 0)
		t->main = txn;
	return rc;
}

int fhmap__lm_batch_end(fhmap *m, fhmap__txn *t, int commit)
{
	uint64_t seen;
	int rc;

	if (LM(m)->ovl)
		return fhmap__ovl_batch_end(m, t, commit);
	if (!commit) {
		mdb_txn_abort(t->main);
		fhmap__write_end(m);
		return 0;
	}
	seen = fhmap__map_size(m);
	rc = fhmap__commit(m, t->main);
	fhmap__write_end(m);
	if (rc == 0 && m->sync == FHMAP_SYNC_LAZY && m->alloc_reserved)
		rc = sync_meta(m);
	if (rc == FHMAP__EMAPFULL)
		return (rc = fhmap__grow(m, seen)) != 0 ? rc : -EAGAIN;
	return rc;
}

int fhmap__lm_batch_rollback(fhmap *m, fhmap__txn *t, int rc)
{
	uint64_t seen = fhmap__map_size(m);

	if (LM(m)->ovl) {
		fhmap__ovl_batch_end(m, t, 0);
		/* The overlay is full or the numbers ran out: a flush empties
		 * it and reserves. */
		if (rc == FHMAP__EMAPFULL || rc == FHMAP__ENORANGE)
			rc = fhmap__ovl_flush(m);
	} else {
		mdb_txn_abort(t->main);
		fhmap__write_end(m);
		if (rc == FHMAP__EMAPFULL)
			rc = fhmap__grow(m, seen);
	}
	return rc == 0 || rc == FHMAP__EMAPFULL || rc == FHMAP__ENORANGE ? -EAGAIN : rc;
}
