/* The map's life: opening (options, identity, format), closing, sync,
 * information and backup. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhmap_int.h"

#define DEFAULT_MAP_SIZE (64ull << 20)
#define DEFAULT_MAX_MAP_SIZE (1ull << 40)
#define READ_SLOTS 32u

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
/* Opening */

static int check_options(fhmap_open_options *o, const fhmap_open_options *given)
{
	fhmap_open_options def = FHMAP_OPEN_OPTIONS_INIT;

	*o = def;
	if (given && given->version == 1)
		memcpy(o, given, offsetof(fhmap_open_options, flush_interval_ms));
	else if (given && given->version == FHMAP_OPEN_OPTIONS_VERSION)
		*o = *given;
	else if (given)
		return -EINVAL;
	if (o->flags & ~(FHMAP_OPEN_CREATE | FHMAP_OPEN_RDONLY | FHMAP_OPEN_VERIFY))
		return -EINVAL;
	if ((o->flags & FHMAP_OPEN_CREATE) && (o->flags & FHMAP_OPEN_RDONLY))
		return -EINVAL;
	if (o->sync != FHMAP_SYNC_FULL && o->sync != FHMAP_SYNC_LAZY && o->sync != FHMAP_SYNC_DEFERRED)
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

static int meta_get(const fhmap__txn *txn, fhmap *m, const char *key, void *out, size_t len)
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
static int load_identity(fhmap *m, const fhmap__txn *txn)
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
static int old_format(fhmap *m, const fhmap__txn *txn)
{
	MDB_val k = { 4, "meta" }, v;

	if (mdb_get(txn->main, m->dbi, &k, &v) != 0)
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
	MDB_stat st;
	int fresh = 0, rc;

	rc = fhmap__err(mdb_txn_begin(m->env, NULL, create ? 0 : MDB_RDONLY, &w.t.main));
	if (rc)
		return rc;
	if ((rc = fhmap__err(mdb_dbi_open(w.t.main, NULL, 0, &m->dbi))) != 0)
		goto out;
	if (create) {
		if ((rc = fhmap__err(mdb_stat(w.t.main, m->dbi, &st))) != 0)
			goto out;
		fresh = st.ms_entries == 0;
	}
	if (fresh && (rc = fhmap__meta_init(&w)) != 0)
		goto out;
	if ((rc = load_identity(m, &w.t)) != 0) {
		if (rc == -EMEDIUMTYPE)
			rc = old_format(m, &w.t);
		goto out;
	}
	rc = fhmap__commit(m, w.t.main);
	w.t.main = NULL;
	if (rc == 0 && fresh)
		fhmap__log(m, FHMAP_LOG_INFO, "created a new map");
out:
	if (w.t.main)
		mdb_txn_abort(w.t.main);
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

/* What only a writer does at open: the lock file, what a crash left, the
 * run record, and in deferred mode the overlay. */
static int open_writer(fhmap *m, const fhmap_open_options *o)
{
	char lock[FHMAP_PATH_MAX + 16];
	int rc, deferred = o->sync == FHMAP_SYNC_DEFERRED, own;

	snprintf(lock, sizeof(lock), "%s/fhmap.lock", m->path);
	if ((m->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
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
	if ((o.flags & FHMAP_OPEN_RDONLY) && o.sync == FHMAP_SYNC_DEFERRED)
		return -EINVAL;
	if ((rc = check_path(path, !!(o.flags & FHMAP_OPEN_CREATE))) != 0)
		return rc;
	if ((o.flags & FHMAP_OPEN_VERIFY) && (rc = fhmap__verify(path, &o)) != 0)
		return rc;
	if (!(m = calloc(1, sizeof(*m))))
		return -ENOMEM;
	m->lock_fd = -1;
	if (!(m->path = strdup(path))) {
		free(m);
		return -ENOMEM;
	}
	if ((rc = register_open(m, path)) != 0) {
		free(m->path);
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
	pthread_mutex_init(&m->wq_lock, NULL);
	pthread_cond_init(&m->wq_cond, NULL);
	m->wq_tail = &m->wq_head;
	fhmap__boot_id(m->boot);
	m->slots = aligned_alloc(64, m->nslots * sizeof(*m->slots));
	if (!m->slots) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned int i = 0; i < m->nslots; i++) {
		atomic_init(&m->slots[i].busy, 0);
		m->slots[i].txn = NULL;
		m->slots[i].otxn = NULL;
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
	if (!m->read_only && (rc = open_writer(m, &o)) != 0)
		goto fail;
	report_pending(m);
	*out = m;
	return 0;
fail:
	fhmap_close(m);
	return rc == FHMAP__EMAPFULL ? -ENOSPC : rc;
}

/* Drops the slots' transactions of @env's kind (overlay or main). */
static void slots_drop(fhmap *m, int ovl)
{
	for (unsigned int i = 0; i < m->nslots; i++) {
		MDB_txn **t = ovl ? &m->slots[i].otxn : &m->slots[i].txn;

		if (*t)
			mdb_txn_abort(*t);
		*t = NULL;
	}
}

void fhmap_close(fhmap *m)
{
	int rc = 0;

	if (!m)
		return;
	if (fhmap__batch_active(m))
		fhmap_batch_abort(m);
	if (m->slots)
		slots_drop(m, 1);
	if (m->ovl)
		rc = fhmap__ovl_close(m, m->writing ? fhmap__close_txn : NULL, NULL);
	else if (m->writing)
		rc = fhmap__close_write(m);
	if (rc)
		fhmap__log(m, FHMAP_LOG_ERROR, "last commit at close failed: %s", fhmap_strerror(rc));
	if (m->slots) {
		slots_drop(m, 0);
		free(m->slots);
	}
	fhmap__layer_fds_close(m);
	if (m->env)
		mdb_env_close(m->env);
	if (m->lock_fd >= 0)
		close(m->lock_fd); /* drops its OFD locks */
	pthread_rwlock_destroy(&m->resize_lock);
	pthread_mutex_destroy(&m->fd_lock);
	pthread_mutex_destroy(&m->wq_lock);
	pthread_cond_destroy(&m->wq_cond);
	unregister_open(m);
	free(m->path);
	free(m);
}

int fhmap_sync(fhmap *m)
{
	if (!m)
		return -EINVAL;
	return fhmap__write_sync(m);
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
	if ((rc = fhmap__meta_u64(&r.t, m, "gen_base", &base)) == 0 &&
	    (rc = fhmap__meta_u64(&r.t, m, "created", &out->created)) == 0)
		rc = fhmap__meta_u64(&r.t, m, "next_ino", &out->next_ino);
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
	if (fhmap__batch_active(m))
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
	return FHMAP__STR(FHMAP_VERSION_MAJOR) "." FHMAP__STR(FHMAP_VERSION_MINOR) "." FHMAP__STR(
	    FHMAP_VERSION_PATCH);
}
