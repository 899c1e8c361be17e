/* The PostgreSQL map's tables and their layout version. The layout (the
 * SQL objects) is versioned apart from the map's format (the "format" key
 * of the meta table, fhmap__identity()): fhmap_schema holds the layout
 * version, and a writable open of an older layout runs the migrations
 * from it on, in one transaction under an advisory lock, so two nodes
 * opening the map at once migrate it once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

/* migrations[i] takes the layout from version i to i + 1. Version 2:
 * fhmap_writers, each open writer's count of write transactions begun, a
 * marker written by the transaction itself (pg_txn.c: a lost commit's
 * outcome). */
static const char *const migrations[] = {
	"CREATE TABLE fhmap_kv (k bytea PRIMARY KEY, v bytea NOT NULL)",
	"CREATE TABLE fhmap_writers (writer uuid PRIMARY KEY, seq bigint NOT NULL)",
};
#define LAYOUT_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))
/* pg_advisory_xact_lock key of the migrations ("fhmp"). */
#define MIGRATE_LOCK "1718119792"

/* The layout version: 0 where there is no map. */
static int layout_version(fhmap__pgc *c, int *version)
{
	PGresult *res = fhmap__pgc_exec(c, "SELECT to_regclass('fhmap_schema') IS NOT NULL");

	if (!res)
		return c->err;
	*version = 0;
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		PQclear(res);
		if (!(res = fhmap__pgc_exec(c, "SELECT max(version) FROM fhmap_schema")))
			return c->err;
		*version = PQgetisnull(res, 0, 0) ? 0 : atoi(PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return 0;
}

static int run(fhmap__pgc *c, const char *sql)
{
	PGresult *res = fhmap__pgc_exec(c, sql);

	if (!res)
		return c->err;
	PQclear(res);
	return 0;
}

static int migrate(fhmap__pgc *c)
{
	char sql[96];
	int rc, version;

	if ((rc = run(c, "BEGIN")) != 0)
		return rc;
	if ((rc = run(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")")) != 0 ||
	    (rc = run(c, "CREATE TABLE IF NOT EXISTS fhmap_schema (version integer NOT NULL)")) != 0 ||
	    (rc = layout_version(c, &version)) != 0)
		goto out;
	for (int v = version; v < LAYOUT_VERSION && rc == 0; v++)
		rc = run(c, migrations[v]);
	snprintf(sql, sizeof(sql), "DELETE FROM fhmap_schema; INSERT INTO fhmap_schema VALUES (%d)", LAYOUT_VERSION);
	if (rc == 0 && version < LAYOUT_VERSION && (rc = run(c, sql)) == 0 && version)
		fhmap__log(c->m, FHMAP_LOG_INFO, "PostgreSQL layout migrated from version %d to %d", version,
		           LAYOUT_VERSION);
out:
	c->err = 0;
	rc = rc ? rc : run(c, "COMMIT");
	if (rc && c->conn)
		PQclear(PQexec(c->conn, "ROLLBACK"));
	c->err = 0;
	return rc;
}

int fhmap__pg_schema(fhmap__pgc *c, int create, int read_only)
{
	int rc, version;

	c->err = 0;
	if ((rc = layout_version(c, &version)) != 0)
		return rc;
	if (version > LAYOUT_VERSION) {
		fhmap__log(c->m, FHMAP_LOG_ERROR, "PostgreSQL layout version %d; this library knows up to %d",
		           version, LAYOUT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (version == LAYOUT_VERSION)
		return 0;
	if (version == 0 && !create)
		return -ENOENT;
	if (read_only) {
		fhmap__log(c->m, FHMAP_LOG_ERROR, "PostgreSQL layout version %d needs a writable open to migrate",
		           version);
		return -EPROTONOSUPPORT;
	}
	return migrate(c);
}

/* ------------------------------------------------------------------------ */
/* Import (fhmap_backup() into PostgreSQL) */

/* Appends "\\x" and the hex digits of @v (COPY's text format of bytea). */
static char *hex(char *p, const fhmap__val *v)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = v->data;

	*p++ = '\\';
	*p++ = '\\';
	*p++ = 'x';
	for (size_t i = 0; i < v->size; i++) {
		*p++ = digits[b[i] >> 4];
		*p++ = digits[b[i] & 15];
	}
	return p;
}

static int copy_rows(fhmap__pgc *c, fhmap__pairs_fn next, void *ctx)
{
	char *line = NULL;
	size_t cap = 0;
	fhmap__val k, v;
	int rc;

	while ((rc = next(ctx, &k, &v)) == 0) {
		size_t need = 2 * (k.size + v.size) + 8;
		char *p;

		if (need > cap) {
			free(line);
			if (!(line = malloc(cap = need * 2)))
				return -ENOMEM;
		}
		p = hex(line, &k);
		*p++ = '\t';
		p = hex(p, &v);
		*p++ = '\n';
		if (PQputCopyData(c->conn, line, (int)(p - line)) != 1) {
			rc = -EIO;
			break;
		}
	}
	free(line);
	return rc == -ENOENT ? 0 : rc;
}

static int import_rows(fhmap__pgc *c, fhmap__pairs_fn next, void *ctx)
{
	PGresult *res = fhmap__pgc_exec(c, "SELECT count(*) FROM (SELECT 1 FROM fhmap_kv LIMIT 1) AS one");
	int rc;

	if (!res)
		return c->err;
	rc = strcmp(PQgetvalue(res, 0, 0), "0") ? -EEXIST : 0;
	PQclear(res);
	if (rc)
		return rc;
	res = PQexec(c->conn, "COPY fhmap_kv (k, v) FROM STDIN");
	if (!res || PQresultStatus(res) != PGRES_COPY_IN)
		return fhmap__pgc_failed(c, res);
	PQclear(res);
	rc = copy_rows(c, next, ctx);
	if (PQputCopyEnd(c->conn, rc ? "copy failed" : NULL) != 1 && !rc)
		rc = -EIO;
	while ((res = PQgetResult(c->conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && !rc) {
			rc = fhmap__pgc_failed(c, res);
			continue;
		}
		PQclear(res);
	}
	return rc;
}

int fhmap__pg_import(fhmap *m, const char *location, fhmap__pairs_fn next, void *ctx)
{
	fhmap__pgc c = { .m = m, .conninfo = location };
	int rc;

	if ((rc = fhmap__pgc_connect(&c, 0)) == 0 && (rc = fhmap__pg_schema(&c, 1, 0)) == 0 &&
	    (rc = run(&c, "BEGIN")) == 0) {
		rc = import_rows(&c, next, ctx);
		c.err = 0;
		rc = rc ? rc : run(&c, "COMMIT");
	}
	fhmap__pgc_close(&c);
	return rc;
}
