/* The map's life: opening (options, identity, format), closing, sync,
 * information and backup. */
#include <errno.h>
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
	rc = fhmap__commit(m, w.txn);
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
	if (fhmap__batch_active(m))
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
	return FHMAP__STR(FHMAP_VERSION_MAJOR) "." FHMAP__STR(FHMAP_VERSION_MINOR) "." FHMAP__STR(FHMAP_VERSION_PATCH);
}
