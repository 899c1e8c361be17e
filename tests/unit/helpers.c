#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <ftw.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#ifdef FX_HAVE_PG
#include <libpq-fe.h>
#endif

struct fx fx;

int fx_pg(void)
{
	const char *b = getenv("FHMAP_TEST_BACKEND");

	return b && !strcmp(b, "pg");
}

#ifdef FX_HAVE_PG
/* The server's URI, from the file $FHMAP_TEST_PG; "" without one. */
static void pg_uri(char *out, size_t size)
{
	const char *file = getenv("FHMAP_TEST_PG");
	FILE *f = file ? fopen(file, "r") : NULL;

	out[0] = '\0';
	if (f && fgets(out, (int)size, f))
		out[strcspn(out, "\n")] = '\0';
	if (f)
		fclose(f);
}

/* Runs @sql with binary parameters; copies the first value of the result
 * (if any) to @out and returns its size. */
static size_t pg_sql_params(const char *sql, int n, const void *const *vals, const size_t *lens, void *out,
                            size_t size)
{
	char uri[256];
	const char *v[2];
	int l[2], f[2] = { 1, 1 };
	size_t got = 0;
	PGconn *c;
	PGresult *res;

	pg_uri(uri, sizeof(uri));
	c = PQconnectdb(uri);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", uri, PQerrorMessage(c));
	for (int i = 0; i < n; i++) {
		v[i] = vals[i];
		l[i] = (int)lens[i];
	}
	res = PQexecParams(c, sql, n, NULL, v, l, f, 1);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s",
	              sql, PQerrorMessage(c));
	if (out && PQntuples(res) == 1) {
		got = (size_t)PQgetlength(res, 0, 0);
		ck_assert_uint_le(got, size);
		memcpy(out, PQgetvalue(res, 0, 0), got);
	}
	PQclear(res);
	PQfinish(c);
	return got;
}

static void pg_sql(const char *sql)
{
	pg_sql_params(sql, 0, NULL, NULL, NULL, 0);
}

static size_t pg_raw_get(const void *key, size_t klen, void *buf, size_t size)
{
	char sql[128];
	const void *v[1] = { key };

	snprintf(sql, sizeof(sql), "SELECT v FROM %s.fhmap_kv WHERE k = $1", fx.schema);
	return pg_sql_params(sql, 1, v, &klen, buf, size);
}

static void pg_raw_put(const void *key, size_t klen, const void *val, size_t vlen)
{
	char sql[160];
	const void *v[2] = { key, val };
	size_t l[2] = { klen, vlen };

	snprintf(sql, sizeof(sql), "INSERT INTO %s.fhmap_kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2",
	         fx.schema);
	pg_sql_params(sql, 2, v, l, NULL, 0);
}

static void pg_raw_set_table(char table, const void *val, size_t vlen)
{
	char sql[160];
	const void *v[2] = { &table, val };
	size_t l[2] = { 1, vlen };

	snprintf(sql, sizeof(sql), "UPDATE %s.fhmap_kv SET v = $2 WHERE substring(k from 1 for 1) = $1", fx.schema);
	pg_sql_params(sql, 2, v, l, NULL, 0);
}

/* A schema of the test's own: its map's location names it first in the
 * search_path. */
static void pg_map_setup(void)
{
	char uri[256], sql[128];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(fx.schema, sizeof(fx.schema), "t%d_%lx", (int)getpid(), (unsigned long)ts.tv_nsec);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", fx.schema);
	pg_sql(sql);
	pg_uri(uri, sizeof(uri));
	ck_assert_int_lt(snprintf(fx.db, sizeof(fx.db), "%s?options=-csearch_path%%3D%s", uri, fx.schema),
	                 (int)sizeof(fx.db));
}

static void pg_map_teardown(void)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", fx.schema);
	pg_sql(sql);
}

/* The PostgreSQL runs skip (77) where the server could not be started. */
static void pg_check_server(void)
{
	char uri[256];

	pg_uri(uri, sizeof(uri));
	if (!uri[0]) {
		printf("SKIP: no PostgreSQL server for the tests (tests/pg/server.sh could not start one)\n");
		exit(77);
	}
}
#else
static void pg_map_setup(void)
{
	ck_abort_msg("built without the PostgreSQL backend");
}

static size_t pg_raw_get(const void *key, size_t klen, void *buf, size_t size)
{
	(void)key, (void)klen, (void)buf, (void)size;
	return 0;
}

static void pg_raw_put(const void *key, size_t klen, const void *val, size_t vlen)
{
	(void)key, (void)klen, (void)val, (void)vlen;
}

static void pg_raw_set_table(char table, const void *val, size_t vlen)
{
	(void)table, (void)val, (void)vlen;
}

static void pg_map_teardown(void)
{
}

static void pg_check_server(void)
{
	printf("SKIP: built without the PostgreSQL backend (libpq)\n");
	exit(77);
}
#endif

/* The LMDB map's environment and a write transaction on its one table. */
static MDB_env *lm_begin(MDB_txn **txn, MDB_dbi *dbi)
{
	MDB_env *env;

	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_open(env, fx.db, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, txn), 0);
	ck_assert_int_eq(mdb_dbi_open(*txn, NULL, 0, dbi), 0);
	return env;
}

static void lm_end(MDB_env *env, MDB_txn *txn)
{
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

size_t fx_raw_get(const void *key, size_t klen, void *buf, size_t size)
{
	MDB_val k = { klen, (void *)key }, v = { 0, NULL };
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_env *env;

	if (fx_pg())
		return pg_raw_get(key, klen, buf, size);
	env = lm_begin(&txn, &dbi);
	if (mdb_get(txn, dbi, &k, &v) == 0) {
		ck_assert_uint_le(v.mv_size, size);
		memcpy(buf, v.mv_data, v.mv_size);
	}
	lm_end(env, txn);
	return v.mv_size;
}

void fx_raw_put(const void *key, size_t klen, const void *val, size_t vlen)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_env *env;

	if (fx_pg()) {
		pg_raw_put(key, klen, val, vlen);
		return;
	}
	env = lm_begin(&txn, &dbi);
	ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	lm_end(env, txn);
}

void fx_raw_set_table(char table, const void *val, size_t vlen)
{
	MDB_val k, v, nv = { vlen, (void *)val };
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_env *env;

	if (fx_pg()) {
		pg_raw_set_table(table, val, vlen);
		return;
	}
	env = lm_begin(&txn, &dbi);
	ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		unsigned char key[512];
		MDB_val kc = { k.mv_size, key };

		if (*(const char *)k.mv_data != table)
			continue;
		/* The key points into the page the put rewrites: copy it first. */
		memcpy(key, k.mv_data, k.mv_size);
		ck_assert_int_eq(mdb_cursor_put(cur, &kc, &nv, MDB_CURRENT), 0);
	}
	mdb_cursor_close(cur);
	lm_end(env, txn);
}

void fx_path(char *out, size_t size, const char *rel)
{
	ck_assert_int_lt(snprintf(out, size, "%s/%s", fx.dir, rel), (int)size);
}

void fx_make(const char *rel, const char *content)
{
	char p[1024];
	size_t n = strlen(rel);

	fx_path(p, sizeof(p), rel);
	if (n && rel[n - 1] == '/') {
		ck_assert_msg(mkdir(p, 0755) == 0, "mkdir %s: %s", p, strerror(errno));
		return;
	}
	FILE *f = fopen(p, "w");
	ck_assert_msg(f != NULL, "fopen %s: %s", p, strerror(errno));
	ck_assert_int_ge(fputs(content, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

fhmap *fx_open_mode(unsigned int flags, fhmap_sync_mode sync, unsigned int interval_ms)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *m = NULL;

	o.flags = flags;
	o.sync = sync;
	o.flush_interval_ms = interval_ms;
	CK_OK(fhmap_open(&m, fx.db, &o));
	return m;
}

fhmap *fx_open(unsigned int flags)
{
	return fx_open_mode(flags, FHMAP_SYNC_FULL, 0);
}

void fx_close(void)
{
	fhmap *m = fx.map;

	fx.map = NULL;
	fhmap_close(m);
}

void fx_crash(void)
{
	fflush(NULL);
	kill(getpid(), SIGKILL);
	_exit(127);
}

uint64_t fx_txnid(void)
{
	char cmd[600], line[256];
	unsigned long long id = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "mdb_stat -e '%s'", fx.db);
	ck_assert_ptr_nonnull(p = popen(cmd, "r"));
	while (fgets(line, sizeof(line), p))
		sscanf(line, " Last transaction ID: %llu", &id);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_gt(id, 0);
	return id;
}

int fx_in_child(int (*fn)(void *), void *arg)
{
	int pfd[2], rc = -1, status;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		rc = fn(arg);
		if (write(pfd[1], &rc, sizeof(rc)) != sizeof(rc))
			_exit(126);
		fx_crash();
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &rc, sizeof(rc)), (int)sizeof(rc));
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	return rc;
}

void fx_wait_sleepers(int n)
{
	pid_t self = (pid_t)syscall(SYS_gettid);

	for (int tries = 0; tries < 1000; tries++) {
		struct dirent *de;
		DIR *d = opendir("/proc/self/task");
		int sleeping = 0;

		ck_assert_ptr_nonnull(d);
		while ((de = readdir(d)) != NULL) {
			char p[300], st[256];
			FILE *f;

			if (de->d_name[0] == '.' || atoi(de->d_name) == self)
				continue;
			snprintf(p, sizeof(p), "/proc/self/task/%s/stat", de->d_name);
			if (!(f = fopen(p, "r")))
				continue;
			/* pid (comm) state ...: the state follows the last ')'. */
			if (fgets(st, sizeof(st), f) && strrchr(st, ')') && strrchr(st, ')')[2] == 'S')
				sleeping++;
			fclose(f);
		}
		closedir(d);
		if (sleeping >= n) {
			usleep(20000);
			return;
		}
		usleep(10000);
	}
	ck_abort_msg("%d threads never blocked", n);
}

void fx_reopen(void)
{
	fx_close();
	fx.map = fx_open(0);
}

fhmap_realfh fx_realfh(uint32_t layer, const char *rel)
{
	fhmap_realfh fh;

	CK_OK(fhmap_realfh_from_path(&fh, fx.map, layer, rel));
	return fh;
}

uint64_t fx_bind(const char *rel, uint64_t parent, const char *name)
{
	char p[1024], lrel[1024];
	struct stat st;
	fhmap_realfh fh;
	uint64_t ino = 0;

	snprintf(lrel, sizeof(lrel), "lower/%s", rel);
	fx_path(p, sizeof(p), lrel);
	ck_assert_int_eq(lstat(p, &st), 0);
	fh = fx_realfh(fx.lower_id, rel);
	CK_OK(fhmap_bind(&ino, fx.map, &fh, parent, name, st.st_mode & S_IFMT));
	return ino;
}

fhmap_realfh fx_fake_fh(uint32_t layer, uint64_t n)
{
	fhmap_realfh fh;

	memset(&fh, 0, sizeof(fh));
	fh.layer = layer;
	fh.type = 1;
	fh.len = 8;
	memcpy(fh.data, &n, 8);
	return fh;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

void fx_rmrf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void fx_setup(void)
{
	char tmpl[] = "/tmp/fhmap-test.XXXXXX";
	fhmap_realfh fh;

	memset(&fx, 0, sizeof(fx));
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	strcpy(fx.dir, tmpl);
	fx_path(fx.lower, sizeof(fx.lower), "lower");
	fx_path(fx.upper, sizeof(fx.upper), "upper");
	if (fx_pg())
		pg_map_setup();
	else
		fx_path(fx.db, sizeof(fx.db), "map");
	fx_make("lower/", NULL);
	fx_make("upper/", NULL);
	fx.map = fx_open(FHMAP_OPEN_CREATE);
	CK_OK(fhmap_layer_add(&fx.lower_id, fx.map, FHMAP_LAYER_LOWER, fx.lower));
	CK_OK(fhmap_layer_add(&fx.upper_id, fx.map, FHMAP_LAYER_UPPER, fx.upper));
	fh = fx_realfh(fx.lower_id, "");
	CK_OK(fhmap_bind(&fx.root, fx.map, &fh, 0, "", S_IFDIR));
	ck_assert_uint_eq(fx.root, FHMAP_ROOT_INO);
}

void fx_teardown(void)
{
	fhmap_close(fx.map);
	fx.map = NULL;
	if (fx.schema[0])
		pg_map_teardown();
	if (fx.dir[0])
		fx_rmrf(fx.dir);
}

Suite *fx_suite(const char *name, TCase **tc)
{
	Suite *s = suite_create(name);

	*tc = tcase_create("core");
	tcase_add_checked_fixture(*tc, fx_setup, fx_teardown);
	tcase_set_timeout(*tc, 120);
	suite_add_tcase(s, *tc);
	return s;
}

int fx_run(Suite *s)
{
	SRunner *sr;
	int failed;

	if (fx_pg())
		pg_check_server();
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
