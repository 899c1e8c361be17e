/* The PostgreSQL backend's own declarations (pg.c, pg_conn.c, pg_txn.c,
 * pg_schema.c). Not installed.
 *
 * A map is one table of (key bytea primary key, value bytea) holding the
 * very keys and values the LMDB backend stores (kv.c), so every map
 * semantic stays the same; pg_schema.c keeps its layout version.
 *
 * Connections: one writer connection, used only by the holder of the
 * writer role (so it needs no lock of its own), and a pool of reader
 * connections (pool_lock, a leaf). libpq connections are not shared by two
 * threads at a time. */
#ifndef FHMAP_PG_H
#define FHMAP_PG_H

#include <libpq-fe.h>

#include "fhmap_int.h"

/* Reader connections a process opens at most. */
#define FHMAP__PG_READERS 16u

/* One connection and the transaction it runs. */
typedef struct fhmap__pgc {
	fhmap *m;
	const char *conninfo; /* the map's location */
	PGconn *conn;
	int prepared;      /* the statements exist on this connection */
	int in_txn;        /* a transaction is open */
	int err;           /* the transaction failed (it is dead): its error */
	int retry;         /* ... and running it again may succeed */
	char writer[37];   /* the writer connection's identity (a UUID per open map) ... */
	uint64_t seq;      /* ... and the number of its last write transaction (pg_txn.c) */
	PGresult **res;    /* results whose bytes the transaction handed out */
	size_t nres, cap;
	int reader;        /* of the reader pool */
	int busy;          /* a reader holds it (pool_lock) */
} fhmap__pgc;

typedef struct fhmap__pg {
	fhmap__pgc writer;
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	fhmap__pgc readers[FHMAP__PG_READERS];
} fhmap__pg;

static inline fhmap__pg *fhmap__pg_of(const fhmap *m)
{
	return (fhmap__pg *)m->store;
}
#define PG(m) fhmap__pg_of(m)

/* ---- pg_conn.c: connections, statements, errors ---- */
/* fhmap__pg_location() (fhmap_int.h): a postgresql:// or postgres:// URI,
 * or a conninfo string ("host=... dbname=..."). */
/* Connects @c (again); @wait: for up to FHMAP__PG_RECONNECT_S, as after a
 * failover, else once. Prepares the statements once the schema exists. */
#define FHMAP__PG_RECONNECT_S 30
int fhmap__pgc_connect(fhmap__pgc *c, int wait);
void fhmap__pgc_close(fhmap__pgc *c);
/* Runs @sql (no parameters; several statements allowed) and returns its
 * last result, or NULL with the error recorded in @c (fhmap__pgc_failed()). */
PGresult *fhmap__pgc_exec(fhmap__pgc *c, const char *sql);
/* Runs prepared statement @name with binary parameters and results; NULL
 * on failure, as fhmap__pgc_exec(). A read transaction whose connection
 * was lost goes on, on a new one and a new snapshot (see pg_txn.c). */
PGresult *fhmap__pgc_prepared(fhmap__pgc *c, const char *name, int n, const fhmap__val *params);
/* Records the failure of @res (may be NULL) on @c and returns its errno;
 * a lost connection is closed, to be opened again. */
int fhmap__pgc_failed(fhmap__pgc *c, PGresult *res);
/* Prepares the key/value statements on @c. */
int fhmap__pgc_prepare(fhmap__pgc *c);
/* Keeps @res until the transaction ends (its bytes were handed out). */
int fhmap__pgc_keep(fhmap__pgc *c, PGresult *res);
void fhmap__pgc_release(fhmap__pgc *c);

/* ---- pg_txn.c: transactions ---- */
/* A read transaction (REPEATABLE READ, READ ONLY) on @c. */
int fhmap__pg_read_begin(fhmap__pgc *c);
/* Ends the transaction of @c (rolls back, or commits a read). */
void fhmap__pg_end(fhmap__pgc *c);
/* A write transaction (SERIALIZABLE) on the writer connection. */
int fhmap__pg_write_begin(fhmap__pgc *c);
/* Commits it; a commit whose answer the connection lost is looked up
 * after reconnecting. 0, -EAGAIN (not applied: run again) or -errno. */
int fhmap__pg_commit(fhmap__pgc *c);
/* Removes the marker row of the writer @c at close (a left one is
 * harmless). */
void fhmap__pg_writer_forget(fhmap__pgc *c);
/* Writer role held: runs @body in write transactions until one commits,
 * again after serialization failures and lost connections (all or
 * nothing each time, with the number ranges as they were). @body returns
 * FHMAP__ERETRY to be run again at once. */
typedef int (*fhmap__pg_body)(fhmap *m, const fhmap__txn *t, void *arg);
int fhmap__pg_run(fhmap *m, fhmap__pg_body body, void *arg);

/* ---- pg_schema.c: the tables and their layout version ---- */
/* Makes sure the tables exist in their current layout (@create: may make
 * them; migrates an older layout). -ENOENT: no map there. */
int fhmap__pg_schema(fhmap__pgc *c, int create, int read_only);
/* Copies the pairs @next gives (key order) into the empty table of the
 * map at @location, made if needed, in one transaction. */
int fhmap__pg_import(fhmap *m, const char *location, fhmap__pairs_fn next, void *ctx);

#endif
