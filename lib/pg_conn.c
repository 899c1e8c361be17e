/* PostgreSQL connections: connecting again after a failover (libpq tries
 * the hosts of a multi-host conninfo in turn; target_session_attrs=
 * read-write finds the new primary), the prepared statements, and
 * PostgreSQL's errors as negative errno values. libpq's notices go to the
 * map's log, never to stderr. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pg.h"

int fhmap__pg_location(const char *location)
{
	size_t n = strspn(location, "abcdefghijklmnopqrstuvwxyz_");

	if (!strncmp(location, "postgresql://", 13) || !strncmp(location, "postgres://", 11))
		return 1;
	/* A conninfo starts with a keyword and '=' (a map directory would
	 * have to be named so, relative, to be taken for one). */
	while (n && isspace((unsigned char)location[n]))
		n++;
	return n && location[n] == '=';
}

static void notice(void *arg, const char *msg)
{
	fhmap__pgc *c = arg;
	size_t n = strlen(msg);

	fhmap__log(c->m, FHMAP_LOG_DEBUG, "postgresql: %.*s", (int)(n && msg[n - 1] == '\n' ? n - 1 : n), msg);
}

/* One attempt: 0, or -ECONNREFUSED with libpq's reason logged. */
static int connect_once(fhmap__pgc *c)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { c->conninfo, "fhmap", NULL };
	int rc = 0;

	c->conn = PQconnectdbParams(keys, vals, 1);
	if (!c->conn)
		return -ENOMEM;
	if (PQstatus(c->conn) != CONNECTION_OK) {
		rc = PQconnectionNeedsPassword(c->conn) ? -EACCES : -ECONNREFUSED;
		fhmap__log(c->m, FHMAP_LOG_ERROR, "cannot connect to PostgreSQL: %s", PQerrorMessage(c->conn));
		PQfinish(c->conn);
		c->conn = NULL;
		return rc;
	}
	PQsetNoticeProcessor(c->conn, notice, c);
	return 0;
}

/* The results kept stay until the transaction ends (fhmap__pg_end()). */
void fhmap__pgc_close(fhmap__pgc *c)
{
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
	c->prepared = 0;
	c->in_txn = 0;
}

int fhmap__pgc_connect(fhmap__pgc *c, int wait)
{
	struct timespec now, until;
	int rc, tries = 0;

	if (c->conn && PQstatus(c->conn) == CONNECTION_OK)
		return 0;
	fhmap__pgc_close(c);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += FHMAP__PG_RECONNECT_S;
	while ((rc = connect_once(c)) == -ECONNREFUSED && wait) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
			break;
		usleep(tries++ < 10 ? 50000 : 200000);
	}
	if (rc == 0 && tries)
		fhmap__log(c->m, FHMAP_LOG_INFO, "connected to PostgreSQL again");
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Errors */

/* SQLSTATEs (PostgreSQL's appendix A) as errno values. */
static int sqlstate_errno(const char *s, int *retry)
{
	static const struct {
		const char *state;
		int err, retry;
	} map[] = {
		{ "40001", -EAGAIN, 1 },   /* serialization_failure */
		{ "40P01", -EAGAIN, 1 },   /* deadlock_detected */
		{ "25006", -EIO, 1 },      /* read_only_sql_transaction: a standby now */
		{ "57P01", -EIO, 1 },      /* admin_shutdown (pg_terminate_backend) */
		{ "57P02", -EIO, 1 },      /* crash_shutdown */
		{ "57P03", -EIO, 1 },      /* cannot_connect_now */
		{ "53100", -ENOSPC, 0 },   /* disk_full */
		{ "53200", -ENOMEM, 0 },   /* out_of_memory */
		{ "53300", -EUSERS, 0 },   /* too_many_connections */
		{ "54000", -E2BIG, 0 },    /* program_limit_exceeded */
		{ "42501", -EACCES, 0 },   /* insufficient_privilege */
		{ "42P01", -ENOENT, 0 },   /* undefined_table: no map there */
		{ "3F000", -ENOENT, 0 },   /* invalid_schema_name */
		{ "3D000", -ENOENT, 0 },   /* invalid_catalog_name */
		{ "XX001", -EUCLEAN, 0 },  /* data_corrupted */
		{ "XX002", -EUCLEAN, 0 },  /* index_corrupted */
		{ "57014", -EINTR, 0 },    /* query_canceled */
	};

	*retry = 0;
	if (!s)
		return -EIO;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(s, map[i].state)) {
			*retry = map[i].retry;
			return map[i].err;
		}
	if (!strncmp(s, "08", 2)) { /* connection_exception */
		*retry = 1;
		return -EIO;
	}
	return -EIO;
}

int fhmap__pgc_failed(fhmap__pgc *c, PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	int retry, rc = sqlstate_errno(state, &retry);
	int lost = !c->conn || PQstatus(c->conn) != CONNECTION_OK;

	if (lost || (state && (!strcmp(state, "25006") || !strncmp(state, "57P0", 4)))) {
		/* Gone, or on a server that no longer takes writes: connect
		 * again (to the new primary) before the next statement. */
		fhmap__log(c->m, FHMAP_LOG_WARN, "PostgreSQL connection lost: %s",
		           c->conn ? PQerrorMessage(c->conn) : "not connected");
		fhmap__pgc_close(c);
		rc = -EIO;
		retry = 1;
	} else if (!retry) {
		fhmap__log(c->m, FHMAP_LOG_ERROR, "PostgreSQL: %s", res ? PQresultErrorMessage(res) : "no result");
	}
	if (res)
		PQclear(res);
	if (!c->err) {
		c->err = rc;
		c->retry = retry;
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Statements */

static int result_ok(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

PGresult *fhmap__pgc_exec(fhmap__pgc *c, const char *sql)
{
	PGresult *res;

	if (!c->conn) {
		fhmap__pgc_failed(c, NULL);
		return NULL;
	}
	res = PQexec(c->conn, sql);
	if (res && result_ok(res))
		return res;
	fhmap__pgc_failed(c, res);
	return NULL;
}

PGresult *fhmap__pgc_prepared(fhmap__pgc *c, const char *name, int n, const fhmap__val *params)
{
	const char *values[2];
	int lengths[2], formats[2] = { 1, 1 };
	PGresult *res;

	if (c->err)
		return NULL; /* a dead transaction: no round trip */
	if (!c->conn) {
		fhmap__pgc_failed(c, NULL);
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		values[i] = params[i].data ? params[i].data : "";
		lengths[i] = (int)params[i].size;
	}
	for (int attempt = 0;; attempt++) {
		res = PQexecPrepared(c->conn, name, n, values, lengths, formats, 1);
		if (res && result_ok(res))
			return res;
		fhmap__pgc_failed(c, res);
		if (!c->reader || c->conn || attempt || fhmap__pg_read_begin(c) != 0)
			return NULL;
	}
}

/* Every key/value statement; cursors read a page of SCAN_ROWS at a time. */
static const struct {
	const char *name, *sql;
	int nparams;
} statements[] = {
	{ "get", "SELECT v FROM fhmap_kv WHERE k = $1", 1 },
	{ "put", "INSERT INTO fhmap_kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", 2 },
	{ "del", "DELETE FROM fhmap_kv WHERE k = $1", 1 },
	{ "from", "SELECT k, v FROM fhmap_kv WHERE k >= $1 ORDER BY k LIMIT 256", 1 },
	{ "after", "SELECT k, v FROM fhmap_kv WHERE k > $1 ORDER BY k LIMIT 256", 1 },
};

int fhmap__pgc_prepare(fhmap__pgc *c)
{
	const Oid types[2] = { 17, 17 }; /* bytea */

	if (c->prepared)
		return 0;
	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
		PGresult *res = PQprepare(c->conn, statements[i].name, statements[i].sql, statements[i].nparams,
		                          types);

		if (!res || !result_ok(res)) {
			int rc = fhmap__pgc_failed(c, res);

			c->err = 0;
			return rc;
		}
		PQclear(res);
	}
	c->prepared = 1;
	return 0;
}

int fhmap__pgc_keep(fhmap__pgc *c, PGresult *res)
{
	if (c->nres == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		PGresult **n = realloc(c->res, cap * sizeof(*n));

		if (!n) {
			PQclear(res);
			return -ENOMEM;
		}
		c->res = n;
		c->cap = cap;
	}
	c->res[c->nres++] = res;
	return 0;
}

void fhmap__pgc_release(fhmap__pgc *c)
{
	for (size_t i = 0; i < c->nres; i++)
		PQclear(c->res[i]);
	c->nres = 0;
}
