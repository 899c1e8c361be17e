/* The LMDB backend: a map is a directory holding one LMDB environment
 * (data.mdb, lock.mdb), fhmap.lock for writers, and in deferred mode the
 * overlay (deferred.c). This file opens and closes it; txn.c holds its
 * transactions, deferred.c its overlay, verify.c the check of its pages. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lmdb.h"

#define DEFAULT_MAP_SIZE (64ull << 20)
/* The map size of an imported copy: sparse, grown by its first open. */
#define DEFAULT_MAX_MAP_SIZE (1ull << 40)
#define READ_SLOTS 32u
#define GATHER_US 100u

/* Environments open in this process. LMDB forbids opening one twice in a
 * process (closing the second copy would drop the first's locks). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static fhmap__lm *open_maps;

static int register_open(fhmap__lm *lm, const char *path)
{
	struct stat st;
	int rc = 0;

	if (stat(path, &st) != 0)
		return -errno;
	pthread_mutex_lock(&open_lock);
	/* Entries of a parent process are void in a forked child. */
	for (fhmap__lm *o = open_maps; o; o = o->next_open)
		if (o->dev == st.st_dev && o->dir_ino == st.st_ino && o->pid == getpid())
			rc = -EBUSY;
	if (rc == 0) {
		lm->dev = st.st_dev;
		lm->dir_ino = st.st_ino;
		lm->pid = getpid();
		lm->next_open = open_maps;
		open_maps = lm;
	}
	pthread_mutex_unlock(&open_lock);
	return rc;
}

static void unregister_open(fhmap__lm *lm)
{
	pthread_mutex_lock(&open_lock);
	for (fhmap__lm **p = &open_maps; *p; p = &(*p)->next_open)
		if (*p == lm) {
			*p = lm->next_open;
			break;
		}
	pthread_mutex_unlock(&open_lock);
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

/* A map of format 1 kept its tables as named LMDB tables, "meta" among them. */
static int old_format(fhmap *m, MDB_txn *txn)
{
	MDB_val k = { 4, "meta" }, v;

	if (mdb_get(txn, LM(m)->dbi, &k, &v) != 0)
		return -EMEDIUMTYPE;
	fhmap__log(m, FHMAP_LOG_ERROR, "map has format version 1; this library reads version %u",
	           FHMAP_FORMAT_VERSION);
	return -EPROTONOSUPPORT;
}

/* Loads the identity; with @create, makes it in a fresh environment, and
 * refuses an environment that holds anything else. */
static int open_dbs(fhmap *m, int create)
{
	fhmap__wtxn w = { m, { NULL, NULL }, 0 };
	MDB_txn *txn;
	MDB_stat st;
	int fresh = 0, rc;

	rc = fhmap__err(mdb_txn_begin(LM(m)->env, NULL, create ? 0 : MDB_RDONLY, &txn));
	if (rc)
		return rc;
	w.t.main = txn;
	if ((rc = fhmap__err(mdb_dbi_open(txn, NULL, 0, &LM(m)->dbi))) != 0)
		goto out;
	if (create) {
		if ((rc = fhmap__err(mdb_stat(txn, LM(m)->dbi, &st))) != 0)
			goto out;
		fresh = st.ms_entries == 0;
	}
	if (fresh && (rc = fhmap__meta_init(&w)) != 0)
		goto out;
	if ((rc = fhmap__identity(m, &w.t)) != 0) {
		if (rc == -EMEDIUMTYPE)
			rc = old_format(m, txn);
		goto out;
	}
	rc = fhmap__commit(m, txn);
	txn = NULL;
	if (rc == 0 && fresh)
		fhmap__log(m, FHMAP_LOG_INFO, "created a new map");
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc == FHMAP__EMAPFULL ? -ENOSPC : rc;
}

/* What only a writer does at open: the lock file, what a crash left, the
 * run record, and in deferred mode the overlay. */
static int open_writer(fhmap *m, const fhmap_open_options *o)
{
	char lock[FHMAP_PATH_MAX + 16];
	int rc, deferred = o->sync == FHMAP_SYNC_DEFERRED, own;

	snprintf(lock, sizeof(lock), "%s/fhmap.lock", m->path);
	if ((LM(m)->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -errno;
	/* Overlays are committed by whoever holds the DEFERRED byte: busy
	 * means a live process in deferred mode owns its overlay. */
	own = fhmap__deferred_lock(m, 1) == 0;
	if (deferred && !own) {
		fhmap__log(m, FHMAP_LOG_ERROR, "another process has the map open in deferred mode");
		return -EBUSY;
	}
	if (own && (rc = fhmap__ovl_leftovers(m)) != 0)
		return rc;
	if (own && !deferred)
		fhmap__deferred_lock(m, 0);
	if ((rc = fhmap__run_begin(m)) != 0)
		return rc;
	m->writing = 1;
	return deferred ? fhmap__ovl_open(m, o->flush_interval_ms, o->max_readers) : 0;
}

/* Drops the slots' transactions of one environment (overlay or main). */
static void slots_drop(fhmap__lm *lm, int ovl)
{
	for (unsigned int i = 0; i < lm->nslots; i++) {
		MDB_txn **t = ovl ? &lm->slots[i].otxn : &lm->slots[i].txn;

		if (*t)
			mdb_txn_abort(*t);
		*t = NULL;
	}
}

static void lm_free(fhmap *m)
{
	fhmap__lm *lm = LM(m);

	if (!lm)
		return;
	if (lm->slots) {
		slots_drop(lm, 0);
		free(lm->slots);
	}
	if (lm->env)
		mdb_env_close(lm->env);
	if (lm->lock_fd >= 0)
		close(lm->lock_fd); /* drops its OFD locks */
	pthread_rwlock_destroy(&lm->resize_lock);
	unregister_open(lm);
	free(lm);
	m->store = NULL;
}

static int lm_open(fhmap *m, const char *path, const fhmap_open_options *o)
{
	unsigned int flags = MDB_NOTLS;
	fhmap__lm *lm;
	int rc;

	if ((rc = check_path(path, !!(o->flags & FHMAP_OPEN_CREATE))) != 0)
		return rc;
	if ((o->flags & FHMAP_OPEN_VERIFY) && (rc = fhmap__verify(path, o)) != 0)
		return rc;
	if (!(lm = calloc(1, sizeof(*lm))))
		return -ENOMEM;
	lm->lock_fd = -1;
	pthread_rwlock_init(&lm->resize_lock, NULL);
	if ((rc = register_open(lm, path)) != 0) {
		pthread_rwlock_destroy(&lm->resize_lock);
		free(lm);
		return rc;
	}
	m->store = lm;
	/* A commit flushes (twice in full mode): a short wait for the writers
	 * of the last group pays; the overlay's commits do not flush, only
	 * fhmap_sync()'s do. */
	m->gather_us = GATHER_US;
	m->gather_sync_only = o->sync == FHMAP_SYNC_DEFERRED;
	lm->max_map_size = o->max_map_size;
	lm->nslots = READ_SLOTS;
	if (!(lm->slots = aligned_alloc(64, lm->nslots * sizeof(*lm->slots)))) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned int i = 0; i < lm->nslots; i++) {
		atomic_init(&lm->slots[i].busy, 0);
		lm->slots[i].txn = NULL;
		lm->slots[i].otxn = NULL;
	}
	if (m->read_only)
		flags |= MDB_RDONLY;
	if (m->sync == FHMAP_SYNC_LAZY)
		flags |= MDB_NOMETASYNC;
	if ((rc = fhmap__err(mdb_env_create(&lm->env))) != 0)
		goto fail;
	mdb_env_set_mapsize(lm->env, o->map_size ? o->map_size
	                             : DEFAULT_MAP_SIZE < o->max_map_size ? DEFAULT_MAP_SIZE : o->max_map_size);
	if (o->max_readers)
		mdb_env_set_maxreaders(lm->env, o->max_readers);
	if ((rc = fhmap__err(mdb_env_open(lm->env, path, flags, 0600))) != 0)
		goto fail;
	if ((rc = open_dbs(m, !!(o->flags & FHMAP_OPEN_CREATE))) != 0)
		goto fail;
	if (!m->read_only && (rc = open_writer(m, o)) != 0)
		goto fail;
	return 0;
fail:
	if (m->writing)
		fhmap__lm_write_durable(m, fhmap__run_ended, NULL);
	m->writing = 0;
	lm_free(m);
	return rc;
}

static void lm_close(fhmap *m, fhmap__write_fn fn)
{
	fhmap__lm *lm = LM(m);
	int rc = 0;

	if (!lm)
		return;
	if (lm->slots)
		slots_drop(lm, 1); /* before the overlay's environment goes */
	if (lm->ovl)
		rc = fhmap__ovl_close(m, fn, NULL);
	else if (fn)
		rc = fhmap__lm_write_durable(m, fn, NULL);
	if (rc)
		fhmap__log(m, FHMAP_LOG_ERROR, "last commit at close failed: %s", fhmap_strerror(rc));
	lm_free(m);
}

static int lm_write_durable(fhmap *m, fhmap__write_fn fn, void *arg)
{
	if (LM(m)->ovl)
		return fhmap__ovl_flush_with(m, fn, arg);
	return fhmap__lm_write_durable(m, fn, arg);
}

/* Full mode: every commit is; lazy mode: not without a flush of the meta
 * page; deferred mode: once the overlay's commits are in the map. */
static int lm_durable(fhmap *m)
{
	if (LM(m)->ovl)
		return fhmap__ovl_durable(m);
	return m->sync == FHMAP_SYNC_FULL;
}

static void lm_group(fhmap *m, fhmap__wreq *g)
{
	if (LM(m)->ovl)
		fhmap__ovl_group(m, g);
	else
		fhmap__lm_group(m, g);
}

static int lm_backup(fhmap *m, const char *dest)
{
	char data[FHMAP_PATH_MAX];
	int rc;

	if (snprintf(data, sizeof(data), "%s/data.mdb", dest) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	if (mkdir(dest, 0700) != 0)
		return -errno;
	pthread_rwlock_rdlock(&LM(m)->resize_lock);
	rc = fhmap__err(mdb_env_copy2(LM(m)->env, dest, MDB_CP_COMPACT));
	pthread_rwlock_unlock(&LM(m)->resize_lock);
	if (rc) {
		unlink(data);
		rmdir(dest);
	}
	return rc;
}

/* A new environment at @dest holding the pairs @next gives, appended in
 * key order (LMDB then fills its pages completely, as a compacting copy
 * does). */
static int lm_import(fhmap *m, const char *dest, fhmap__pairs_fn next, void *ctx)
{
	char data[FHMAP_PATH_MAX];
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	fhmap__val k, v;
	int rc;

	(void)m;
	if (snprintf(data, sizeof(data), "%s/data.mdb", dest) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	if (mkdir(dest, 0700) != 0)
		return -errno;
	if ((rc = fhmap__err(mdb_env_create(&env))) == 0 &&
	    (rc = fhmap__err(mdb_env_set_mapsize(env, DEFAULT_MAX_MAP_SIZE))) == 0 &&
	    (rc = fhmap__err(mdb_env_open(env, dest, MDB_NOTLS, 0600))) == 0 &&
	    (rc = fhmap__err(mdb_txn_begin(env, NULL, 0, &txn))) == 0 &&
	    (rc = fhmap__err(mdb_dbi_open(txn, NULL, 0, &dbi))) == 0) {
		while ((rc = next(ctx, &k, &v)) == 0) {
			MDB_val mk = fhmap__mdb(&k), mv = fhmap__mdb(&v);

			if ((rc = fhmap__err(mdb_put(txn, dbi, &mk, &mv, MDB_APPEND))) != 0)
				break;
		}
		if (rc == -ENOENT)
			rc = fhmap__err(mdb_txn_commit(txn));
		else
			mdb_txn_abort(txn);
	}
	if (env)
		mdb_env_close(env);
	if (rc) {
		snprintf(data, sizeof(data), "%s/data.mdb", dest);
		unlink(data);
		snprintf(data, sizeof(data), "%s/lock.mdb", dest);
		unlink(data);
		rmdir(dest);
	}
	return rc == FHMAP__EMAPFULL ? -ENOSPC : rc;
}

static int count_reader(const char *msg, void *ctx)
{
	(void)msg;
	(*(uint32_t *)ctx)++;
	return 0;
}

static void lm_storage(fhmap *m, const fhmap__txn *t, fhmap_map_stats *s)
{
	MDB_envinfo info;
	MDB_stat st;
	uint32_t lines = 0;

	if (mdb_stat(t->main, LM(m)->dbi, &st) == 0) {
		s->branch_pages = st.ms_branch_pages;
		s->leaf_pages = st.ms_leaf_pages;
		s->overflow_pages = st.ms_overflow_pages;
		s->depth = st.ms_depth;
		s->page_size = st.ms_psize;
	}
	mdb_env_info(LM(m)->env, &info);
	s->map_size = info.me_mapsize;
	s->used_bytes = ((uint64_t)info.me_last_pgno + 1) * s->page_size;
	s->max_readers = info.me_maxreaders;
	mdb_reader_list(LM(m)->env, count_reader, &lines);
	s->readers = lines ? lines - 1 : 0; /* the first line is a header */
}

const fhmap__backend fhmap__lmdb = {
	.name = "lmdb",
	.open = lm_open,
	.close = lm_close,
	.read_begin = fhmap__lm_read_begin,
	.read_end = fhmap__lm_read_end,
	.get = fhmap__lm_get,
	.put = fhmap__lm_put,
	.del = fhmap__lm_del,
	.cursor_open = fhmap__lm_cursor_open,
	.cursor_get = fhmap__lm_cursor_get,
	.cursor_close = fhmap__lm_cursor_close,
	.group = lm_group,
	.write_durable = lm_write_durable,
	.durable = lm_durable,
	.batch_begin = fhmap__lm_batch_begin,
	.batch_end = fhmap__lm_batch_end,
	.batch_rollback = fhmap__lm_batch_rollback,
	.storage = lm_storage,
	.backup = lm_backup,
	.import = lm_import,
};
