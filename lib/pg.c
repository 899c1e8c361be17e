/* The PostgreSQL backend: the map's key space is the table fhmap_kv (in the
 * first schema of the connection's search_path), written by the groups of
 * commit.c in SERIALIZABLE transactions (pg_txn.c) that run again, whole,
 * after a serialization failure or a lost connection. Every commit is as
 * durable as the server makes it (synchronous_commit, synchronous
 * standbys): the map is always in full mode. */
#include <errno.h>
#include <stdlib.h>
#include <uuid/uuid.h>

#include "pg.h"

#define GATHER_US 100u

/* ------------------------------------------------------------------------ */
/* Reader connections */

static fhmap__pgc *reader_take(fhmap *m)
{
	fhmap__pg *pg = PG(m);
	fhmap__pgc *c = NULL;

	pthread_mutex_lock(&pg->pool_lock);
	while (!c) {
		/* A connected one first: a new connection costs a handshake. */
		for (unsigned int i = 0; i < FHMAP__PG_READERS; i++)
			if (!pg->readers[i].busy && (!c || (!c->conn && pg->readers[i].conn)))
				c = &pg->readers[i];
		if (!c)
			pthread_cond_wait(&pg->pool_cond, &pg->pool_lock);
	}
	c->busy = 1;
	pthread_mutex_unlock(&pg->pool_lock);
	return c;
}

static void reader_give(fhmap *m, fhmap__pgc *c)
{
	pthread_mutex_lock(&PG(m)->pool_lock);
	c->busy = 0;
	pthread_cond_signal(&PG(m)->pool_cond);
	pthread_mutex_unlock(&PG(m)->pool_lock);
}

static int pg_read_begin(fhmap *m, fhmap__rtxn *r)
{
	const fhmap__txn *batch = fhmap__batch_txn(m);
	fhmap__pgc *c;
	int rc;

	if (fhmap__rtxn_start(r, batch))
		return 0;
	c = reader_take(m);
	if ((rc = fhmap__pg_read_begin(c)) != 0) {
		reader_give(m, c);
		return rc;
	}
	r->t.main = c;
	r->t.ovl = NULL;
	r->slot = c;
	r->locked = 1;
	return 0;
}

static void pg_read_end(fhmap *m, fhmap__rtxn *r)
{
	if (!r->locked)
		return;
	fhmap__pg_end(r->slot);
	reader_give(m, r->slot);
	r->locked = 0;
}

/* ------------------------------------------------------------------------ */
/* Key/value access */

static int pg_get(const fhmap__txn *t, const fhmap *m, const fhmap__val *key, fhmap__val *val)
{
	fhmap__pgc *c = t->main;
	PGresult *res = fhmap__pgc_prepared(c, "get", 1, key);

	(void)m;
	if (!res)
		return c->err;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return -ENOENT;
	}
	val->size = (size_t)PQgetlength(res, 0, 0);
	val->data = PQgetvalue(res, 0, 0);
	return fhmap__pgc_keep(c, res);
}

/* The values handed out before stay valid until the transaction ends
 * (callers may still read a record they loaded and stored again). */
static int pg_change(fhmap__wtxn *w, const char *stmt, int n, const fhmap__val *params)
{
	fhmap__pgc *c = w->t.main;
	PGresult *res = fhmap__pgc_prepared(c, stmt, n, params);
	int rc = 0;

	if (!res)
		return c->err;
	if (n == 1 && !strcmp(PQcmdTuples(res), "0"))
		rc = -ENOENT;
	PQclear(res);
	return rc;
}

static int pg_put(fhmap__wtxn *w, const fhmap__val *key, const fhmap__val *val)
{
	const fhmap__val p[2] = { *key, *val };

	return pg_change(w, "put", 2, p);
}

static int pg_del(fhmap__wtxn *w, const fhmap__val *key)
{
	return pg_change(w, "del", 1, key);
}

/* ------------------------------------------------------------------------ */
/* Cursors: a page of rows at a time, the next page after the last key. */

#define PAGE_ROWS 256

typedef struct pcursor {
	fhmap__pgc *c;
	PGresult *res;
	int row;
} pcursor;

static int pg_cursor_open(fhmap__cursor *cur, const fhmap__txn *t)
{
	pcursor *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->c = t->main;
	cur->impl = p;
	return 0;
}

static void pg_cursor_close(fhmap__cursor *cur)
{
	pcursor *p = cur->impl;

	if (!p)
		return;
	PQclear(p->res);
	free(p);
	cur->impl = NULL;
}

/* Reads the page of the keys from (or after) @k; the page before it stays
 * until then, since @k may lie in it. */
static int page(pcursor *p, const char *stmt, const fhmap__val *k)
{
	PGresult *res = fhmap__pgc_prepared(p->c, stmt, 1, k);

	if (!res)
		return p->c->err;
	PQclear(p->res);
	p->res = res;
	p->row = 0;
	return 0;
}

static int pg_cursor_get(fhmap__cursor *cur, fhmap__val *k, fhmap__val *v, int op)
{
	pcursor *p = cur->impl;
	fhmap__val from = { 0, NULL };
	int rc;

	if (op == FHMAP__NEXT && p->res && p->row + 1 < PQntuples(p->res)) {
		p->row++;
	} else if (op == FHMAP__NEXT) {
		if (!p->res || PQntuples(p->res) < PAGE_ROWS)
			return -ENOENT;
		from.size = (size_t)PQgetlength(p->res, p->row, 0);
		from.data = PQgetvalue(p->res, p->row, 0);
		if ((rc = page(p, "after", &from)) != 0)
			return rc;
	} else if ((rc = page(p, "from", op == FHMAP__FIRST ? &from : k)) != 0) {
		return rc;
	}
	if (p->row >= PQntuples(p->res))
		return -ENOENT;
	k->size = (size_t)PQgetlength(p->res, p->row, 0);
	k->data = PQgetvalue(p->res, p->row, 0);
	v->size = (size_t)PQgetlength(p->res, p->row, 1);
	v->data = PQgetvalue(p->res, p->row, 1);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Groups, durable writes, batches */

/* An update that failed after writing fails alone: the others run again
 * without it (as in LMDB's groups). */
static int group_body(fhmap *m, const fhmap__txn *t, void *arg)
{
	fhmap__wreq *g = arg, *bad = NULL;
	int rc = fhmap__group_apply(m, g, t, &bad);

	if (rc == 0 || PG(m)->writer.err || !bad)
		return rc;
	bad->rc = rc;
	bad->final = 1;
	return FHMAP__ERETRY;
}

static void pg_group(fhmap *m, fhmap__wreq *g)
{
	int rc = fhmap__group_size(g) ? fhmap__pg_run(m, group_body, g) : 0;

	/* Every commit is durable: sync requests are answered by it. */
	if (rc)
		fhmap__group_fail(g, rc);
	for (; g; g = g->next)
		if (!g->fn)
			g->rc = rc;
}

struct one {
	fhmap__write_fn fn;
	void *arg;
};

static int one_body(fhmap *m, const fhmap__txn *t, void *arg)
{
	struct one *o = arg;
	fhmap__wtxn w = { m, *t, 0 };

	return o->fn(&w, o->arg);
}

static int pg_write_durable(fhmap *m, fhmap__write_fn fn, void *arg)
{
	struct one o = { fn, arg };

	return fhmap__pg_run(m, one_body, &o);
}

static int pg_durable(fhmap *m)
{
	(void)m;
	return 1;
}

static int pg_batch_begin(fhmap *m, fhmap__txn *t)
{
	int rc;

	for (int attempt = 0; (rc = fhmap__pg_write_begin(&PG(m)->writer)) == FHMAP__ERETRY && attempt < 3;
	     attempt++)
		;
	if (rc == 0)
		t->main = &PG(m)->writer;
	return rc == FHMAP__ERETRY ? -EIO : rc;
}

static int pg_batch_end(fhmap *m, fhmap__txn *t, int commit)
{
	int rc;

	(void)m;
	if (!commit) {
		fhmap__pg_end(t->main);
		return 0;
	}
	rc = fhmap__pg_commit(t->main);
	return rc == FHMAP__ERETRY ? -EAGAIN : rc;
}

static int pg_batch_rollback(fhmap *m, fhmap__txn *t, int rc)
{
	fhmap__pgc *c = t->main;
	int retry = c->err && c->retry;

	(void)m;
	fhmap__pg_end(c);
	return retry ? -EAGAIN : rc;
}

/* ------------------------------------------------------------------------ */
/* Open, close, figures, copies */

static void pg_free(fhmap *m)
{
	fhmap__pg *pg = PG(m);

	fhmap__pgc_close(&pg->writer);
	free(pg->writer.res);
	for (unsigned int i = 0; i < FHMAP__PG_READERS; i++) {
		fhmap__pgc_close(&pg->readers[i]);
		free(pg->readers[i].res);
	}
	pthread_mutex_destroy(&pg->pool_lock);
	pthread_cond_destroy(&pg->pool_cond);
	free(pg);
	m->store = NULL;
}

/* Within the first write transaction of a creating open: a fresh table
 * gets the map's identity; one holding anything else is refused. */
static int create_body(fhmap *m, const fhmap__txn *t, void *arg)
{
	fhmap__wtxn w = { m, *t, 0 };
	fhmap__cursor cur = { m, FHMAP__DB_ALL, NULL };
	fhmap__val k = { 0, NULL }, v;
	int rc;

	(void)arg;
	if ((rc = pg_cursor_open(&cur, t)) != 0)
		return rc;
	rc = pg_cursor_get(&cur, &k, &v, FHMAP__FIRST);
	pg_cursor_close(&cur);
	if (rc == -ENOENT && (rc = fhmap__meta_init(&w)) == 0)
		fhmap__log(m, FHMAP_LOG_INFO, "created a new map");
	return rc ? rc : fhmap__identity(m, t);
}

static int load_identity(fhmap *m)
{
	fhmap__rtxn r;
	int rc;

	if ((rc = pg_read_begin(m, &r)) != 0)
		return rc;
	rc = fhmap__identity(m, &r.t);
	pg_read_end(m, &r);
	return rc;
}

static int pg_open(fhmap *m, const char *location, const fhmap_open_options *o)
{
	fhmap__pg *pg = calloc(1, sizeof(*pg));
	fhmap__pgc *c;
	uuid_t id;
	int rc;

	if (!pg)
		return -ENOMEM;
	pthread_mutex_init(&pg->pool_lock, NULL);
	pthread_cond_init(&pg->pool_cond, NULL);
	pg->writer = (fhmap__pgc){ .m = m, .conninfo = location };
	uuid_generate_random(id);
	uuid_unparse_lower(id, pg->writer.writer);
	for (unsigned int i = 0; i < FHMAP__PG_READERS; i++)
		pg->readers[i] = (fhmap__pgc){ .m = m, .conninfo = location, .reader = 1 };
	m->store = pg;
	if (m->sync != FHMAP_SYNC_FULL)
		fhmap__log(m, FHMAP_LOG_INFO, "a PostgreSQL map is always in full mode (every commit durable)");
	m->sync = FHMAP_SYNC_FULL;
	m->gather_us = GATHER_US;
	/* The first connection is tried once: a map that is not there fails
	 * at once; later ones wait for a failover. */
	c = m->read_only ? &pg->readers[0] : &pg->writer;
	if ((rc = fhmap__pgc_connect(c, 0)) != 0 ||
	    (rc = fhmap__pg_schema(c, !!(o->flags & FHMAP_OPEN_CREATE), m->read_only)) != 0)
		goto fail;
	if ((o->flags & FHMAP_OPEN_CREATE) && !m->read_only)
		rc = fhmap__pg_run(m, create_body, NULL);
	else
		rc = load_identity(m);
	if (rc == 0 && !m->read_only && (rc = fhmap__run_begin(m)) == 0)
		m->writing = 1;
	if (rc == 0)
		return 0;
fail:
	pg_free(m);
	return rc;
}

static void pg_close(fhmap *m, fhmap__write_fn fn)
{
	int rc;

	if (!PG(m))
		return;
	if (fn && (rc = pg_write_durable(m, fn, NULL)) != 0)
		fhmap__log(m, FHMAP_LOG_ERROR, "last commit at close failed: %s", fhmap_strerror(rc));
	fhmap__pg_writer_forget(&PG(m)->writer);
	pg_free(m);
}

/* PostgreSQL's figures in LMDB's terms: its pages (heap and index) and
 * the bytes they take; the readers are this process's connections. */
static void pg_storage(fhmap *m, const fhmap__txn *t, fhmap_map_stats *s)
{
	static const char sql[] = "SELECT current_setting('block_size')::bigint, pg_relation_size('fhmap_kv'), "
	                          "pg_indexes_size('fhmap_kv')";
	fhmap__pgc *c = t->main;
	PGresult *res;

	if (!c->err && c->conn && (res = PQexec(c->conn, sql)) != NULL) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			uint64_t block = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
			uint64_t heap = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
			uint64_t index = strtoull(PQgetvalue(res, 0, 2), NULL, 10);

			s->page_size = (uint32_t)block;
			s->leaf_pages = block ? heap / block : 0;
			s->branch_pages = block ? index / block : 0;
			s->used_bytes = s->map_size = heap + index;
		}
		PQclear(res);
	}
	pthread_mutex_lock(&PG(m)->pool_lock);
	for (unsigned int i = 0; i < FHMAP__PG_READERS; i++)
		s->readers += PG(m)->readers[i].busy;
	pthread_mutex_unlock(&PG(m)->pool_lock);
	s->max_readers = FHMAP__PG_READERS;
}

const fhmap__backend fhmap__pgsql = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.read_begin = pg_read_begin,
	.read_end = pg_read_end,
	.get = pg_get,
	.put = pg_put,
	.del = pg_del,
	.cursor_open = pg_cursor_open,
	.cursor_get = pg_cursor_get,
	.cursor_close = pg_cursor_close,
	.group = pg_group,
	.write_durable = pg_write_durable,
	.durable = pg_durable,
	.batch_begin = pg_batch_begin,
	.batch_end = pg_batch_end,
	.batch_rollback = pg_batch_rollback,
	.storage = pg_storage,
	.backup = NULL,
	.import = fhmap__pg_import,
};
