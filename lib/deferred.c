/* Deferred mode: updates go to an overlay, an LMDB environment of this
 * process's own (deferred-BOOT.mdb in the map directory, written without
 * flushes), and are committed to the map in one durable commit at least
 * every flush interval, or at once by fhmap_sync(). Readers look in the
 * overlay first; an entry leaves it only after the map committed it.
 *
 * What a crash costs: the overlay is in the page cache, which outlives the
 * process, so after a process crash the next writable open of the map (in
 * the same boot: BOOT in its name) commits what it holds. After a system
 * crash an overlay of an earlier boot cannot be trusted and is deleted:
 * the updates of at most the last interval are lost, the map is as its
 * last flush left it, and fhmap_recovery_needed() says so.
 *
 * While the overlay holds updates, this process holds the writers' byte of
 * fhmap.lock exclusively: other processes' writers, which hold it shared,
 * wait for the next flush instead of committing beneath the overlay. One
 * process at a time may use deferred mode on a map (its byte DEFERRED). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "lmdb.h"

/* Sparse; a flush empties it long before (FLUSH_ENTRIES). */
#define OVL_MAP_SIZE (256ull << 20)
#define FLUSH_ENTRIES 32768u
#define DEFAULT_INTERVAL_MS 1000u

/* The overlay's own key (table byte 0, never a table of the map): the
 * number of its contents, which the map records as "ovl_applied" in the
 * commit that applies them, so that contents a crash left behind after
 * that commit are not applied twice. */
static const unsigned char seq_key[] = { 0, 's', 'e', 'q' };

static void ovl_path(char *buf, size_t size, const fhmap *m, const unsigned char boot[16])
{
	char text[37];

	uuid_unparse_lower(boot, text);
	snprintf(buf, size, "%s/deferred-%s.mdb", m->path, text);
}

static int ovl_env_open(fhmap__ovl *o, const char *file, unsigned int max_readers)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_env_create(&o->env)) != 0)
		return fhmap__err(rc);
	mdb_env_set_mapsize(o->env, OVL_MAP_SIZE);
	if (max_readers)
		mdb_env_set_maxreaders(o->env, max_readers);
	rc = mdb_env_open(o->env, file, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600);
	if (rc == 0 && (rc = mdb_txn_begin(o->env, NULL, 0, &txn)) == 0) {
		MDB_val k = { sizeof(seq_key), (void *)seq_key }, v;

		if ((rc = mdb_dbi_open(txn, NULL, 0, &o->dbi)) == 0) {
			rc = mdb_get(txn, o->dbi, &k, &v);
			o->seq = rc == 0 && v.mv_size == 8 ? fhmap__get_le64(v.mv_data) : 0;
			rc = rc == MDB_NOTFOUND ? 0 : rc;
		}
		mdb_txn_abort(txn);
	}
	if (rc) {
		mdb_env_close(o->env);
		o->env = NULL;
	}
	return fhmap__err(rc);
}

static void ovl_unlink(const char *file)
{
	char lock[FHMAP_PATH_MAX + 80];

	snprintf(lock, sizeof(lock), "%s-lock", file);
	unlink(file);
	unlink(lock);
}

/* ------------------------------------------------------------------------ */
/* Flush */

/* Copies the overlay's entries into the main transaction. */
static int replay(fhmap__ovl *o, MDB_txn *ovl, fhmap *m, MDB_txn *main)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(ovl, o->dbi, &cur);

	if (rc)
		return fhmap__err(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size && *(const unsigned char *)k.mv_data == 0)
			continue;
		if (v.mv_size)
			rc = mdb_put(main, LM(m)->dbi, &k, &v, 0);
		else if ((rc = mdb_del(main, LM(m)->dbi, &k, NULL)) == MDB_NOTFOUND)
			rc = 0;
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : fhmap__err(rc);
}

/* Empties the overlay after the map committed its contents. */
static int ovl_clear(fhmap__ovl *o, MDB_txn *ovl)
{
	unsigned char buf[8];
	MDB_val k = { sizeof(seq_key), (void *)seq_key }, v = { 8, buf };
	int rc;

	fhmap__put_le64(buf, o->seq + 1);
	if ((rc = mdb_drop(ovl, o->dbi, 0)) == 0 && (rc = mdb_put(ovl, o->dbi, &k, &v, 0)) == 0 &&
	    (rc = mdb_txn_commit(ovl)) == 0) {
		o->seq++;
		return 0;
	}
	if (rc)
		mdb_txn_abort(ovl);
	return fhmap__err(rc);
}

#define FLUSH_REPLAY 1u /* apply the contents (else they were applied already) */
#define FLUSH_TOPUP 2u  /* reserve numbers when half of the range is used */

/* Commits the overlay to the map, durably, and empties it; @extra runs in
 * the same commit (run bookkeeping at open and close). The caller holds
 * the writer role, or is alone with the map (at open and close). */
static int flush(fhmap *m, fhmap__ovl *o, unsigned int how, fhmap__write_fn extra, void *arg)
{
	for (;;) {
		fhmap__alloc saved = m->alloc;
		fhmap__wtxn w = { m, { NULL, NULL }, 0 };
		unsigned char seq[8];
		MDB_txn *ovl, *main;
		uint64_t seen;
		int rc;

		if ((rc = fhmap__write_begin(m, &main)) != 0)
			return rc;
		w.t.main = main;
		seen = fhmap__map_size(m);
		if ((rc = fhmap__err(mdb_txn_begin(o->env, NULL, 0, &ovl))) != 0) {
			mdb_txn_abort(w.t.main);
			fhmap__write_end(m);
			return rc;
		}
		fhmap__put_le64(seq, o->seq);
		rc = how & FLUSH_REPLAY ? replay(o, ovl, m, w.t.main) : 0;
		if (rc == 0 && (how & FLUSH_TOPUP) && fhmap__alloc_room(m) < FHMAP__ALLOC_RANGE / 2)
			rc = fhmap__alloc_reserve(&w);
		if (rc == 0 && extra)
			rc = extra(&w, arg);
		if (rc == 0)
			rc = fhmap__put(&w, FHMAP__DB_META, "ovl_applied", 11, seq, 8);
		if (rc == 0)
			rc = fhmap__commit(m, w.t.main);
		else
			mdb_txn_abort(w.t.main);
		fhmap__write_end(m);
		if (rc == 0) {
			rc = ovl_clear(o, ovl);
			if (rc == 0) {
				atomic_store(&o->live, 0);
				o->entries = 0;
			}
			return rc;
		}
		mdb_txn_abort(ovl);
		m->alloc = saved;
		if (rc != FHMAP__EMAPFULL || (rc = fhmap__grow(m, seen)) != 0)
			return rc;
	}
}

static void dirty_clear(fhmap__ovl *o)
{
	pthread_mutex_lock(&o->lock);
	o->dirty = 0;
	pthread_mutex_unlock(&o->lock);
}

int fhmap__ovl_flush(fhmap *m)
{
	return fhmap__ovl_flush_with(m, NULL, NULL);
}

int fhmap__ovl_flush_with(fhmap *m, fhmap__write_fn fn, void *arg)
{
	fhmap__ovl *o = LM(m)->ovl;
	unsigned long long upto = atomic_load(&o->commits); /* the role holder's: all of them */
	int rc = flush(m, o, FLUSH_REPLAY | FLUSH_TOPUP, fn, arg);

	if (rc == 0) {
		atomic_store(&o->flushed, upto);
		dirty_clear(o);
		if (o->exclusive && fhmap__writers_lock(m, F_UNLCK) == 0)
			o->exclusive = 0;
	} else {
		fhmap__log(m, FHMAP_LOG_ERROR, "deferred updates not committed yet: %s", fhmap_strerror(rc));
	}
	return rc;
}

int fhmap__ovl_durable(const fhmap *m)
{
	const fhmap__ovl *o = LM(m)->ovl;
	unsigned long long commits = atomic_load(&o->commits);

	return atomic_load(&o->flushed) >= commits;
}

/* ------------------------------------------------------------------------ */
/* Writing to the overlay */

static void dirty_mark(fhmap__ovl *o)
{
	pthread_mutex_lock(&o->lock);
	if (!o->dirty) {
		o->dirty = 1;
		clock_gettime(CLOCK_MONOTONIC, &o->since);
		pthread_cond_signal(&o->cond);
	}
	pthread_mutex_unlock(&o->lock);
}

/* Begins an overlay write transaction @t (with the main table's snapshot
 * to read beneath it), taking the writers' byte if the overlay is empty. */
static int ovl_begin(fhmap *m, fhmap__txn *t)
{
	fhmap__ovl *o = LM(m)->ovl;
	MDB_txn *ovl;
	int rc;

	if (!o->exclusive) {
		if ((rc = fhmap__writers_lock(m, F_WRLCK)) != 0)
			return rc;
		o->exclusive = 1;
	}
	if ((rc = fhmap__read_main_begin(m, &o->rtxn)) != 0)
		return rc;
	if ((rc = fhmap__err(mdb_txn_begin(o->env, NULL, 0, &ovl))) != 0) {
		fhmap__lm_read_end(m, &o->rtxn);
		return rc;
	}
	t->main = o->rtxn.t.main;
	t->ovl = ovl;
	return 0;
}

static int ovl_end(fhmap *m, fhmap__txn *t, int commit, unsigned int updates)
{
	fhmap__ovl *o = LM(m)->ovl;
	int rc = 0;

	if (commit) {
		/* Live before the commit: a reader that finds it clear has
		 * nothing to miss. */
		atomic_store(&o->live, 1);
		if ((rc = fhmap__err(mdb_txn_commit(t->ovl))) == 0) {
			o->entries += updates;
			atomic_fetch_add(&o->commits, 1);
			dirty_mark(o);
		}
	} else {
		mdb_txn_abort(t->ovl);
	}
	t->ovl = NULL;
	fhmap__lm_read_end(m, &o->rtxn);
	if (o->exclusive && !o->entries && fhmap__writers_lock(m, F_UNLCK) == 0)
		o->exclusive = 0;
	return rc;
}

int fhmap__ovl_batch_begin(fhmap *m, fhmap__txn *t)
{
	int rc = 0;

	/* A batch may not reserve in the overlay: start it with room. */
	if (fhmap__alloc_room(m) < FHMAP__ALLOC_RANGE / 2)
		rc = fhmap__ovl_flush(m);
	return rc ? rc : ovl_begin(m, t);
}

int fhmap__ovl_batch_end(fhmap *m, fhmap__txn *t, int commit)
{
	int rc = ovl_end(m, t, commit, 1);

	if (rc == FHMAP__EMAPFULL) {
		fhmap__ovl_flush(m);
		return -EAGAIN;
	}
	return rc;
}

void fhmap__ovl_group(fhmap *m, fhmap__wreq *g)
{
	unsigned int n = 0;
	int sync = 0, rc = 0;

	for (fhmap__wreq *r = g; r; r = r->next) {
		n += r->fn != NULL;
		sync |= r->fn == NULL;
	}
	if (n && fhmap__alloc_room(m) < n)
		rc = fhmap__ovl_flush(m);
	while (n && rc == 0) {
		fhmap__alloc saved = m->alloc;
		fhmap__wreq *bad = NULL;
		fhmap__txn t;
		int end;

		if ((rc = ovl_begin(m, &t)) != 0)
			break;
		rc = fhmap__group_apply(m, g, &t, &bad);
		end = ovl_end(m, &t, rc == 0, n);
		if (rc == 0 && (rc = end) == 0)
			break;
		m->alloc = saved;
		if (rc == FHMAP__EMAPFULL || rc == FHMAP__ENORANGE) {
			rc = fhmap__ovl_flush(m); /* room, and numbers; then again */
			continue;
		}
		if (!bad)
			break;
		bad->rc = rc;
		bad->final = 1;
		rc = 0;
	}
	if (rc) {
		for (fhmap__wreq *r = g; r; r = r->next)
			if (!r->final)
				r->rc = rc;
		return;
	}
	if (sync || LM(m)->ovl->entries >= FLUSH_ENTRIES) {
		rc = fhmap__ovl_flush(m);
		for (fhmap__wreq *r = g; r; r = r->next)
			if (!r->fn)
				r->rc = rc;
	}
}

/* ------------------------------------------------------------------------ */
/* The flusher thread: commits the overlay one interval after its first
 * update since the last flush. */

static void *flusher(void *arg)
{
	fhmap *m = arg;
	fhmap__ovl *o = LM(m)->ovl;

	pthread_mutex_lock(&o->lock);
	while (!o->stop) {
		struct timespec due = o->since, now;

		if (!o->dirty) {
			pthread_cond_wait(&o->cond, &o->lock);
			continue;
		}
		due.tv_sec += o->interval_ms / 1000;
		due.tv_nsec += (long)(o->interval_ms % 1000) * 1000000L;
		if (due.tv_nsec >= 1000000000L) {
			due.tv_sec++;
			due.tv_nsec -= 1000000000L;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec < due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec < due.tv_nsec)) {
			pthread_cond_timedwait(&o->cond, &o->lock, &due);
			continue;
		}
		pthread_mutex_unlock(&o->lock);
		if (fhmap__write_sync(m) != 0) {
			/* Logged; try again one interval later. */
			pthread_mutex_lock(&o->lock);
			clock_gettime(CLOCK_MONOTONIC, &o->since);
			continue;
		}
		pthread_mutex_lock(&o->lock);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Open and close */

int fhmap__deferred_lock(fhmap *m, int take)
{
	struct flock fl = { .l_type = take ? F_WRLCK : F_UNLCK,
		            .l_whence = SEEK_SET,
		            .l_start = FHMAP__LOCK_DEFERRED,
		            .l_len = 1 };

	if (fcntl(LM(m)->lock_fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
}

/* "ovl_applied": the number of the last overlay contents the map applied. */
static int applied_seq(fhmap *m, uint64_t *out)
{
	fhmap__rtxn r;
	fhmap__val v;
	int rc = fhmap__read_main_begin(m, &r);

	*out = 0;
	if (rc)
		return rc;
	rc = fhmap__get(&r.t, m, FHMAP__DB_META, "ovl_applied", 11, &v);
	if (rc == 0 && v.size == 8)
		*out = fhmap__get_le64(v.data);
	else if (rc == 0)
		rc = -EUCLEAN;
	fhmap__lm_read_end(m, &r);
	return rc == -ENOENT ? 0 : rc;
}

/* Commits or drops what the overlay of a crashed process left in the map
 * directory. The caller holds the DEFERRED byte. */
static int leftover_one(fhmap *m, const char *file, const unsigned char boot[16])
{
	fhmap__ovl o = { 0 };
	uint64_t applied;
	int rc;

	if (memcmp(boot, m->boot, 16) != 0) {
		/* Of an earlier boot: what it held may never have reached the
		 * disk, so none of it can be trusted. */
		fhmap__log(m, FHMAP_LOG_WARN, "deferred updates of an earlier boot are lost: %s", file);
		ovl_unlink(file);
		return fhmap__run_lost(m);
	}
	if ((rc = applied_seq(m, &applied)) != 0 || (rc = ovl_env_open(&o, file, 0)) != 0)
		return rc;
	/* Without a number it never held an update; with the number the map
	 * applied last, the crash came between that commit and the clear. */
	rc = flush(m, &o, o.seq && o.seq != applied ? FLUSH_REPLAY : 0, fhmap__run_ended, NULL);
	if (rc == 0)
		fhmap__log(m, FHMAP_LOG_INFO, "deferred updates a crashed process left are committed");
	mdb_env_close(o.env);
	if (rc == 0)
		ovl_unlink(file);
	return rc;
}

int fhmap__ovl_leftovers(fhmap *m)
{
	DIR *d = opendir(m->path);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -errno;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char file[FHMAP_PATH_MAX], id[37];
		unsigned char boot[16];
		size_t n = strlen(de->d_name);

		if (n != 9 + 36 + 4 || strncmp(de->d_name, "deferred-", 9) || strcmp(de->d_name + 45, ".mdb"))
			continue;
		memcpy(id, de->d_name + 9, 36);
		id[36] = '\0';
		if (uuid_parse(id, boot) != 0)
			continue;
		snprintf(file, sizeof(file), "%s/%s", m->path, de->d_name);
		rc = leftover_one(m, file, boot);
	}
	closedir(d);
	return rc;
}

int fhmap__ovl_open(fhmap *m, unsigned int interval_ms, unsigned int max_readers)
{
	char file[FHMAP_PATH_MAX + 64];
	pthread_condattr_t ca;
	unsigned char seq[8];
	uint64_t applied;
	fhmap__ovl *o;
	MDB_txn *txn;
	int rc;

	if (!(o = calloc(1, sizeof(*o))))
		return -ENOMEM;
	ovl_path(file, sizeof(file), m, m->boot);
	if ((rc = applied_seq(m, &applied)) != 0 || (rc = ovl_env_open(o, file, max_readers)) != 0) {
		free(o);
		return rc;
	}
	/* A number no contents had before, so a leftover is never mistaken
	 * for contents the map applied already. */
	o->seq = applied + 1;
	fhmap__put_le64(seq, o->seq);
	if ((rc = mdb_txn_begin(o->env, NULL, 0, &txn)) == 0) {
		MDB_val k = { sizeof(seq_key), (void *)seq_key }, v = { 8, seq };

		if ((rc = mdb_put(txn, o->dbi, &k, &v, 0)) == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	o->interval_ms = interval_ms ? interval_ms : DEFAULT_INTERVAL_MS;
	pthread_mutex_init(&o->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&o->cond, &ca);
	pthread_condattr_destroy(&ca);
	LM(m)->ovl = o;
	if (rc == 0 && (rc = pthread_create(&o->thread, NULL, flusher, m)) != 0)
		rc = -rc;
	if (rc) {
		LM(m)->ovl = NULL;
		pthread_cond_destroy(&o->cond);
		pthread_mutex_destroy(&o->lock);
		mdb_env_close(o->env);
		ovl_unlink(file);
		free(o);
		return fhmap__err(rc);
	}
	return 0;
}

int fhmap__ovl_close(fhmap *m, fhmap__write_fn extra, void *arg)
{
	fhmap__ovl *o = LM(m)->ovl;
	char file[FHMAP_PATH_MAX + 64];
	int rc;

	pthread_mutex_lock(&o->lock);
	o->stop = 1;
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
	pthread_join(o->thread, NULL);
	rc = flush(m, o, FLUSH_REPLAY, extra, arg);
	if (rc)
		fhmap__log(m, FHMAP_LOG_ERROR, "deferred updates left for the next open: %s",
		           fhmap_strerror(rc));
	if (o->exclusive)
		fhmap__writers_lock(m, F_UNLCK);
	LM(m)->ovl = NULL;
	mdb_env_close(o->env);
	ovl_path(file, sizeof(file), m, m->boot);
	if (rc == 0)
		ovl_unlink(file);
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	free(o);
	return rc;
}
