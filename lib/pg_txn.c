/* PostgreSQL transactions. Writes run SERIALIZABLE: the allocator's
 * counters, an index entry two nodes insert at once (two binds of one
 * origin) and a copy-up intent are then each changed by one transaction at
 * a time, the others fail with a serialization failure and run again, and
 * see what the first wrote. Every write transaction marks itself in the
 * BEGIN round trip: it sets its writer's row of fhmap_writers to its own
 * number, so that a commit whose answer a lost connection swallowed is
 * looked up (the row says) rather than guessed: run again only if it did
 * not commit, never applied twice nor half. Unlike a transaction id, which
 * a promoted standby may hand out again, the marker cannot be another
 * transaction's (one writer identity per open map). Reads run REPEATABLE READ, READ
 * ONLY: one snapshot, never a serialization failure. A read whose
 * connection is lost (a failover, a killed backend) goes on, on a new
 * connection and a new snapshot, as READ COMMITTED would: every record is
 * checked against the handle or number that found it, so a lookup never
 * answers with another object; a scan spanning the failover may see the
 * map of two moments. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "pg.h"

/* A write transaction given up after this long of failed attempts. */
#define RETRY_SECONDS 60
#define LOCK_WAIT "60s" /* RETRY_SECONDS, for lock_timeout */
/* Connections a transaction's first statement tries before it fails. */
#define BEGIN_ATTEMPTS 8

/* Connects if needed; a failure that a reconnection may cure is
 * FHMAP__ERETRY. */
static int ready(fhmap__pgc *c)
{
	int rc;

	c->err = c->retry = 0;
	if ((rc = fhmap__pgc_connect(c, 1)) != 0)
		return rc;
	if ((rc = fhmap__pgc_prepare(c)) != 0)
		return c->conn ? rc : FHMAP__ERETRY;
	return 0;
}

/* Begins with @sql; on a connection that died (idle, or as it was made),
 * again on a new one, a few times. */
static PGresult *begin(fhmap__pgc *c, const char *sql, int *rc)
{
	for (int attempt = 0; attempt < BEGIN_ATTEMPTS; attempt++) {
		PGresult *res;

		if ((*rc = ready(c)) == FHMAP__ERETRY)
			continue;
		if (*rc)
			return NULL;
		if ((res = fhmap__pgc_exec(c, sql)) != NULL) {
			c->in_txn = 1;
			return res;
		}
		*rc = c->retry ? FHMAP__ERETRY : c->err;
		if (!c->retry)
			return NULL;
	}
	return NULL;
}

int fhmap__pg_read_begin(fhmap__pgc *c)
{
	int rc;
	PGresult *res = begin(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &rc);

	if (!res)
		return rc == FHMAP__ERETRY ? -EIO : rc;
	PQclear(res);
	return 0;
}

void fhmap__pg_end(fhmap__pgc *c)
{
	PGresult *res;

	/* A read's end is not waited for: the next statement on the
	 * connection takes its answer first (PQexec*() do), and a connection
	 * lost meanwhile fails the next BEGIN, which connects again. */
	if (c->in_txn && c->conn && c->reader && !c->err && PQsendQuery(c->conn, "ROLLBACK"))
		c->in_txn = 0;
	if (c->in_txn && c->conn && (res = fhmap__pgc_exec(c, "ROLLBACK")) != NULL)
		PQclear(res);
	fhmap__pgc_release(c);
	c->in_txn = 0;
}

int fhmap__pg_write_begin(fhmap__pgc *c)
{
	char sql[224];
	int rc;
	PGresult *res;

	snprintf(sql, sizeof(sql),
	         "BEGIN ISOLATION LEVEL SERIALIZABLE; INSERT INTO fhmap_writers VALUES ('%s', %llu) "
	         "ON CONFLICT (writer) DO UPDATE SET seq = EXCLUDED.seq",
	         c->writer, (unsigned long long)++c->seq);
	if (!(res = begin(c, sql, &rc)))
		return rc;
	PQclear(res);
	return 0;
}

/* The commit of transaction c->seq went out and the connection was lost
 * before the answer: read the writer's marker on the server (the new
 * primary, after a failover). The statement is a write so that it waits
 * for the transaction if its backend still runs it (the row's lock, or the
 * first marker's key being inserted) and so that it runs on a primary.
 * 0 committed, FHMAP__ERETRY not, or -errno. */
static int outcome(fhmap__pgc *c)
{
	const char *param = c->writer;

	for (int i = 0; i < 10 * RETRY_SECONDS; i++) {
		PGresult *res;
		int rc;

		if ((rc = fhmap__pgc_connect(c, 1)) != 0)
			return rc;
		/* The upsert waits for the lost transaction if its backend still
		 * runs it (a COMMIT waiting for a standby that may never answer):
		 * bounded, then -EIO (outcome unknown) with the server's reason. */
		PQclear(PQexec(c->conn, "SET lock_timeout = '" LOCK_WAIT "'"));
		res = PQexecParams(c->conn,
		                   "INSERT INTO fhmap_writers VALUES ($1, 0) ON CONFLICT (writer) "
		                   "DO UPDATE SET seq = fhmap_writers.seq RETURNING seq",
		                   1, NULL, &param, NULL, NULL, 0);
		PQclear(PQexec(c->conn, "RESET lock_timeout"));
		if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
			rc = strtoull(PQgetvalue(res, 0, 0), NULL, 10) >= c->seq ? 0 : FHMAP__ERETRY;
			PQclear(res);
			fhmap__log(c->m, FHMAP_LOG_INFO, "transaction %llu of writer %s after the lost commit: %s",
			           (unsigned long long)c->seq, c->writer, rc ? "not committed" : "committed");
			return rc;
		}
		c->err = 0;
		if ((rc = fhmap__pgc_failed(c, res)) != 0 && !c->retry)
			return rc;
		usleep(100000);
	}
	return -EIO;
}

int fhmap__pg_commit(fhmap__pgc *c)
{
	PGresult *res;
	int rc;

	if (c->err) {
		rc = c->retry ? FHMAP__ERETRY : c->err;
		fhmap__pg_end(c);
		return rc;
	}
	res = PQexec(c->conn, "COMMIT");
	c->in_txn = 0;
	fhmap__pgc_release(c);
	if (res && PQresultStatus(res) == PGRES_COMMAND_OK && !strcmp(PQcmdStatus(res), "COMMIT")) {
		PQclear(res);
		return 0;
	}
	if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res); /* ROLLBACK: the transaction had failed */
		return FHMAP__ERETRY;
	}
	rc = fhmap__pgc_failed(c, res);
	if (!c->conn)
		return outcome(c);
	return c->retry ? FHMAP__ERETRY : rc;
}

void fhmap__pg_writer_forget(fhmap__pgc *c)
{
	const char *param = c->writer;
	PGresult *res;

	/* Only this writer reads its row, and only before its next write. */
	if (!c->seq || !c->conn)
		return;
	res = PQexecParams(c->conn, "DELETE FROM fhmap_writers WHERE writer = $1", 1, NULL, &param, NULL, NULL, 0);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		fhmap__log(c->m, FHMAP_LOG_INFO, "writer %s: marker row left: %s", c->writer, PQerrorMessage(c->conn));
	PQclear(res);
}

static void backoff(unsigned int attempt)
{
	unsigned int r = 0, cap = attempt < 6 ? 1000u << attempt : 50000u;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (unsigned int)attempt * 7919u;
	usleep(r % cap);
}

int fhmap__pg_run(fhmap *m, fhmap__pg_body body, void *arg)
{
	fhmap__pgc *c = &PG(m)->writer;
	fhmap__txn t = { c, NULL };
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned int attempt = 0;;) {
		fhmap__alloc saved = m->alloc;
		int rc = fhmap__pg_write_begin(c), asked = 0;

		if (rc == 0) {
			rc = body(m, &t, arg);
			asked = rc == FHMAP__ERETRY && !c->err;
			if (c->err || rc == 0)
				rc = fhmap__pg_commit(c);
			else
				fhmap__pg_end(c);
		}
		if (rc == 0)
			return 0;
		m->alloc = saved;
		if (rc != FHMAP__ERETRY)
			return rc;
		if (asked)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec > RETRY_SECONDS) {
			fhmap__log(m, FHMAP_LOG_ERROR, "write transaction given up after %u attempts", attempt + 1);
			return -EAGAIN;
		}
		backoff(attempt++);
	}
}
