/* The map's life, whatever its backend: opening (options, identity,
 * format), closing, sync, information and backup. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fhmap_int.h"

#define DEFAULT_MAX_MAP_SIZE (1ull << 40)

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
	if (o->map_size > o->max_map_size)
		return -EINVAL;
	return 0;
}

static int meta_get(const fhmap__txn *txn, fhmap *m, const char *key, void *out, size_t len)
{
	fhmap__val v;
	int rc = fhmap__get(txn, m, FHMAP__DB_META, key, strlen(key), &v);

	if (rc == -ENOENT)
		return -EMEDIUMTYPE;
	if (rc)
		return rc;
	if (v.size != len)
		return -EUCLEAN;
	memcpy(out, v.data, len);
	return 0;
}

/* Reads identity and secret; refuses maps of other format versions. */
int fhmap__identity(fhmap *m, const fhmap__txn *txn)
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

static void report_pending(fhmap *m)
{
	size_t count = 0;

	if (fhmap_copyup_pending(NULL, 0, &count, m) == 0 && count)
		fhmap__log(m, FHMAP_LOG_WARN,
		           "%zu copy-up intent(s) left pending by an earlier run: list them with "
		           "fhmap_copyup_pending() and commit or abort each",
		           count);
}

/* The backend a location names: PostgreSQL for a postgresql:// or
 * postgres:// URI, else LMDB (a directory). */
static const fhmap__backend *backend_for(const char *location)
{
#ifdef FHMAP_HAVE_PG
	if (fhmap__pg_location(location))
		return &fhmap__pgsql;
#else
	(void)location;
#endif
	return &fhmap__lmdb;
}

int fhmap_open(fhmap **out, const char *path, const fhmap_open_options *opts)
{
	fhmap_open_options o;
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
	if (!(m = calloc(1, sizeof(*m))))
		return -ENOMEM;
	if (!(m->path = strdup(path))) {
		free(m);
		return -ENOMEM;
	}
	m->be = backend_for(path);
	m->read_only = !!(o.flags & FHMAP_OPEN_RDONLY);
	m->sync = o.sync;
	m->log = o.log;
	m->log_ctx = o.log_ctx;
	pthread_mutex_init(&m->fd_lock, NULL);
	pthread_mutex_init(&m->wq_lock, NULL);
	pthread_cond_init(&m->wq_cond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m->wq_gcond, &ca);
		pthread_condattr_destroy(&ca);
	}
	m->wq_tail = &m->wq_head;
	fhmap__boot_id(m->boot);
	if ((rc = m->be->open(m, path, &o)) != 0) {
		fhmap_close(m);
		return rc == FHMAP__EMAPFULL ? -ENOSPC : rc;
	}
	report_pending(m);
	*out = m;
	return 0;
}

void fhmap_close(fhmap *m)
{
	if (!m)
		return;
	if (fhmap__batch_active(m))
		fhmap_batch_abort(m);
	if (m->store)
		m->be->close(m, m->writing ? fhmap__close_txn : NULL);
	fhmap__layer_fds_close(m);
	pthread_mutex_destroy(&m->fd_lock);
	pthread_mutex_destroy(&m->wq_lock);
	pthread_cond_destroy(&m->wq_cond);
	pthread_cond_destroy(&m->wq_gcond);
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

struct copy {
	fhmap__cursor cur;
	int op;
};

static int copy_next(void *ctx, fhmap__val *k, fhmap__val *v)
{
	struct copy *c = ctx;
	int rc = fhmap__cursor_get(&c->cur, k, v, c->op);

	c->op = FHMAP__NEXT;
	return rc;
}

/* A copy into another backend: every pair, from one read transaction. */
static int copy_pairs(fhmap *m, const fhmap__backend *to, const char *dest)
{
	struct copy c = { { 0 }, FHMAP__FIRST };
	fhmap__rtxn r;
	int rc;

	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if ((rc = fhmap__cursor_open(&c.cur, &r.t, m, FHMAP__DB_ALL)) == 0) {
		rc = to->import(m, dest, copy_next, &c);
		fhmap__cursor_close(&c.cur);
	}
	fhmap__read_end(m, &r);
	return rc;
}

int fhmap_backup(fhmap *m, const char *dest)
{
	const fhmap__backend *to;
	int rc;

	if (!m || !dest || !*dest)
		return -EINVAL;
	if (fhmap__batch_active(m))
		return -EBUSY;
	/* The copy is of what is committed: commit what is not yet. */
	if ((rc = fhmap__write_sync(m)) != 0)
		return rc;
	to = backend_for(dest);
	if (to == m->be && m->be->backup)
		return m->be->backup(m, dest);
	return copy_pairs(m, to, dest);
}

#define FHMAP__STR2(x) #x
#define FHMAP__STR(x) FHMAP__STR2(x)

const char *fhmap_version(void)
{
	return FHMAP__STR(FHMAP_VERSION_MAJOR) "." FHMAP__STR(FHMAP_VERSION_MINOR) "." FHMAP__STR(
	    FHMAP_VERSION_PATCH);
}
