/* The write path: group commit and batches.
 *
 * Writers in different threads share commits. An update is queued; the
 * first writer to find no leader becomes one, takes every update queued
 * so far, runs them in one write transaction and commits it (durably, as
 * the map's mode promises), while the updates queued meanwhile wait for
 * the next leader: one commit and its flushes serve the whole group, as in
 * PostgreSQL's and RocksDB's write groups. An update that fails before its
 * first put changes nothing and leaves the others alone; one that fails
 * after it (map full, I/O error) poisons the transaction, which is dropped
 * and run again without it. The backend writes the group (LMDB: txn.c, and
 * deferred.c in deferred mode; PostgreSQL: pg.c). A batch bypasses the
 * queue: it holds a write transaction of its own until it ends.
 *
 * The writer role (wq_busy) is held by one leader or one batch at a time
 * in a process: what the write transaction protects (the number ranges,
 * the overlay's writer state) is touched only by its holder, also between
 * LMDB's commit and the end of the group. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "fhmap_int.h"

FHMAP__TLS fhmap__batch fhmap__tl_batch;
#define tl_batch fhmap__tl_batch

/* ------------------------------------------------------------------------ */
/* Groups */

static void role_acquire(fhmap *m)
{
	pthread_mutex_lock(&m->wq_lock);
	while (m->wq_busy)
		pthread_cond_wait(&m->wq_cond, &m->wq_lock);
	m->wq_busy = 1;
	pthread_mutex_unlock(&m->wq_lock);
}

static void role_release(fhmap *m)
{
	pthread_mutex_lock(&m->wq_lock);
	m->wq_busy = 0;
	pthread_cond_broadcast(&m->wq_cond);
	pthread_mutex_unlock(&m->wq_lock);
}

int fhmap__group_apply(fhmap *m, fhmap__wreq *g, const fhmap__txn *t, fhmap__wreq **bad)
{
	for (fhmap__wreq *r = g; r; r = r->next) {
		fhmap__wtxn w = { m, *t, 0 };
		int rc;

		if (!r->fn || r->final)
			continue;
		rc = r->fn(&w, r->arg);
		r->rc = rc;
		if (rc != 0 && (w.writes || rc == FHMAP__EMAPFULL || rc == FHMAP__ENORANGE)) {
			*bad = r;
			return rc;
		}
	}
	return 0;
}

void fhmap__group_fail(fhmap__wreq *g, int rc)
{
	for (fhmap__wreq *r = g; r; r = r->next)
		if (!r->final)
			r->rc = rc;
}

unsigned int fhmap__group_size(const fhmap__wreq *g)
{
	unsigned int n = 0;

	for (; g; g = g->next)
		n += g->fn != NULL;
	return n;
}

/* An address of this thread's own. */
static FHMAP__TLS char tl_self;

/* wq_lock held: threads of the last group with no request queued now. */
static unsigned int gather_missing(const fhmap *m)
{
	unsigned int missing = 0;

	for (unsigned int i = 0; i < m->wq_nlast; i++) {
		const fhmap__wreq *q = m->wq_head;

		while (q && q->who != m->wq_last[i])
			q = q->next;
		missing += !q;
	}
	return missing;
}

/* A group worth gathering for: its commit flushes, and the last one had
 * several writers (one writer alone, or writers taking turns one at a
 * time, wait for nobody). */
static int gather_pays(const fhmap *m)
{
	const fhmap__wreq *q = m->wq_head;

	if (!m->gather_us || m->wq_nlast < 2)
		return 0;
	while (m->gather_sync_only && q && q->fn)
		q = q->next;
	return q != NULL;
}

/* wq_lock held, writer role taken: waits (briefly) until every thread of
 * the last group has queued again. A writer that comes straight back, as
 * concurrent writers do, then joins this commit instead of the next; one
 * that does not costs a single wait. */
static void gather(fhmap *m)
{
	struct timespec until;

	if (!gather_pays(m) || !gather_missing(m))
		return;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += (long)m->gather_us * 1000;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	m->wq_gathering = 1;
	while (gather_missing(m) && pthread_cond_timedwait(&m->wq_gcond, &m->wq_lock, &until) == 0)
		;
	m->wq_gathering = 0;
}

/* Queues @r and waits until a leader (this thread, maybe) has written it. */
static int group_submit(fhmap *m, fhmap__wreq *r)
{
	int done = 0;

	r->who = &tl_self;
	pthread_mutex_lock(&m->wq_lock);
	*m->wq_tail = r;
	m->wq_tail = &r->next;
	if (m->wq_gathering)
		pthread_cond_signal(&m->wq_gcond);
	while (!done) {
		fhmap__wreq *g;

		if (m->wq_busy) {
			/* Woken when a leader or batch is done; r may have
			 * been the leader's. */
			pthread_cond_wait(&m->wq_cond, &m->wq_lock);
			done = r->done;
			continue;
		}
		m->wq_busy = 1;
		gather(m);
		g = m->wq_head;
		m->wq_head = NULL;
		m->wq_tail = &m->wq_head;
		m->wq_nlast = 0;
		for (const fhmap__wreq *q = g; q && m->wq_nlast < FHMAP__GATHER_MAX; q = q->next)
			m->wq_last[m->wq_nlast++] = q->who;
		pthread_mutex_unlock(&m->wq_lock);
		m->be->group(m, g);
		pthread_mutex_lock(&m->wq_lock);
		/* A waiter may return (and its request go away) as soon as
		 * done is set: read next first. */
		for (fhmap__wreq *next; g; g = next) {
			next = g->next;
			g->done = 1;
		}
		m->wq_busy = 0;
		pthread_cond_broadcast(&m->wq_cond);
		done = r->done;
	}
	pthread_mutex_unlock(&m->wq_lock);
	return r->rc;
}

/* ------------------------------------------------------------------------ */
/* Batches */

/* Runs one update inside this thread's batch. A failure after the update
 * started writing leaves the transaction half-done: roll the batch back. */
static int batch_run(fhmap *m, fhmap__write_fn fn, void *arg)
{
	fhmap__wreq r = { fn, arg, 0, 0, 0, NULL, NULL }, *bad = NULL;
	int rc;

	if (tl_batch.dead)
		return -EAGAIN;
	if ((rc = fhmap__group_apply(m, &r, &tl_batch.t, &bad)) == 0)
		return r.rc;
	fhmap__log(m, FHMAP_LOG_WARN, "batch rolled back: %s",
	           fhmap_strerror(rc == FHMAP__EMAPFULL || rc == FHMAP__ENORANGE ? -ENOSPC : rc));
	tl_batch.dead = 1;
	m->alloc = tl_batch.saved;
	rc = m->be->batch_rollback(m, &tl_batch.t, rc);
	role_release(m);
	return rc;
}

int fhmap__write(fhmap *m, fhmap__write_fn fn, void *arg)
{
	fhmap__wreq r = { fn, arg, 0, 0, 0, NULL, NULL };

	if (m->read_only)
		return -EROFS;
	if (tl_batch.m == m)
		return batch_run(m, fn, arg);
	return group_submit(m, &r);
}

int fhmap__write_sync(fhmap *m)
{
	fhmap__wreq r = { NULL, NULL, 0, 0, 0, NULL, NULL };

	if (m->read_only)
		return 0;
	if (tl_batch.m == m && !tl_batch.dead)
		return -EBUSY;
	if (m->be->durable(m))
		return 0;
	return group_submit(m, &r);
}

int fhmap__write_durable(fhmap *m, fhmap__write_fn fn, void *arg)
{
	int rc;

	role_acquire(m);
	rc = m->be->write_durable(m, fn, arg);
	role_release(m);
	return rc;
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
	role_acquire(m);
	tl_batch.t.main = tl_batch.t.ovl = NULL;
	if ((rc = m->be->batch_begin(m, &tl_batch.t)) != 0) {
		role_release(m);
		return rc;
	}
	tl_batch.m = m;
	tl_batch.dead = 0;
	tl_batch.saved = m->alloc;
	m->alloc_reserved = 0;
	return 0;
}

static int batch_end(fhmap *m, int commit)
{
	int rc;

	if (!m || tl_batch.m != m)
		return -EINVAL;
	tl_batch.m = NULL;
	if (tl_batch.dead)
		return commit ? -EAGAIN : 0;
	if ((rc = m->be->batch_end(m, &tl_batch.t, commit)) != 0 || !commit)
		m->alloc = tl_batch.saved;
	role_release(m);
	return rc;
}

int fhmap_batch_commit(fhmap *m)
{
	return batch_end(m, 1);
}

int fhmap_batch_abort(fhmap *m)
{
	return batch_end(m, 0);
}
