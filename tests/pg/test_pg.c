/* What only a shared map on PostgreSQL has to get right: several processes
 * (nodes) binding at once, connections killed in the middle of
 * transactions (pg_terminate_backend), and a COMMIT whose answer is lost
 * (its outcome read from the writer's marker). Run with FHMAP_TEST_BACKEND=pg on
 * the server of tests/pg/server.sh (helpers.c). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define HANDLES 300
#define PROCS 3

/* Binds handles 0..HANDLES-1 (from @first on, wrapping) and writes each
 * object number to @fd, in handle order; 0 or the first error. */
static int bind_all(int fd, unsigned int first)
{
	uint64_t inos[HANDLES];
	fhmap *m;
	int rc = fhmap_open(&m, fx.db, NULL);

	for (unsigned int i = 0; rc == 0 && i < HANDLES; i++) {
		unsigned int h = (first + i) % HANDLES;
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 1000 + h);

		rc = fhmap_bind(&inos[h], m, &fh, FHMAP_ROOT_INO, "f", S_IFREG);
	}
	fhmap_close(m);
	if (rc == 0 && write(fd, inos, sizeof(inos)) != (ssize_t)sizeof(inos))
		rc = -EIO;
	return rc;
}

/* Waits for child @pid, which must exit 0. */
static void reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d", status);
}

/* Processes binding the same handles at the same moment (each starts at
 * another handle, so they collide all along) get one object per handle,
 * each number handed out once. */
START_TEST(processes_binding_one_origin_get_one_object)
{
	uint64_t got[PROCS][HANDLES];
	int pfd[PROCS][2], go[2];
	pid_t pid[PROCS];
	fhmap_map_stats st;
	char c = 'g';

	fx_close();
	ck_assert_int_eq(pipe(go), 0);
	for (int p = 0; p < PROCS; p++) {
		ck_assert_int_eq(pipe(pfd[p]), 0);
		fflush(NULL);
		ck_assert_int_ge(pid[p] = fork(), 0);
		if (pid[p] == 0) {
			close(go[1]);
			if (read(go[0], &c, 1) != 1)
				_exit(3);
			_exit(bind_all(pfd[p][1], (unsigned int)p * HANDLES / PROCS) ? 1 : 0);
		}
		close(pfd[p][1]);
	}
	close(go[0]);
	for (int p = 0; p < PROCS; p++)
		ck_assert_int_eq(write(go[1], &c, 1), 1);
	close(go[1]);
	for (int p = 0; p < PROCS; p++) {
		ck_assert_int_eq(read(pfd[p][0], got[p], sizeof(got[p])), (int)sizeof(got[p]));
		close(pfd[p][0]);
		reap(pid[p]);
	}
	for (int h = 0; h < HANDLES; h++)
		for (int p = 1; p < PROCS; p++)
			ck_assert_msg(got[p][h] == got[0][h], "handle %d: object %llu and %llu", h,
			              (unsigned long long)got[0][h], (unsigned long long)got[p][h]);
	fx.map = fx_open(0);
	CK_OK(fhmap_stats(&st, fx.map));
	ck_assert_uint_eq(st.objects, HANDLES + 1); /* and the root */
	ck_assert_uint_eq(st.origin_entries, HANDLES + 1);
	for (int h = 0; h < HANDLES; h++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, 1000 + h);
		uint64_t ino;

		CK_OK(fhmap_lookup_origin(&ino, fx.map, &fh));
		ck_assert_uint_eq(ino, got[0][h]);
	}
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Killed connections */

#define KILL_BINDS 400
#define KILL_THREADS 4

static PGconn *admin(void)
{
	const char *file = getenv("FHMAP_TEST_PG");
	char uri[256] = "";
	FILE *f = fopen(file, "r");
	PGconn *c;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(uri, sizeof(uri), f));
	fclose(f);
	uri[strcspn(uri, "\n")] = '\0';
	c = PQconnectdb(uri);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
	return c;
}

/* The test's map is reached as application_name @fx.schema: its
 * connections alone are killed, not those of tests running beside it. */
static void name_connections(void)
{
	size_t n = strlen(fx.db);

	ck_assert_int_lt(snprintf(fx.db + n, sizeof(fx.db) - n, "&application_name=%s", fx.schema),
	                 (int)(sizeof(fx.db) - n));
}

/* Ends every connection of the test's map. */
static int terminate_all(PGconn *c)
{
	const char *name = fx.schema;
	PGresult *res = PQexecParams(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	                                "WHERE application_name = $1", 1, NULL, &name, NULL, NULL, 0);
	int n;

	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	n = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

struct writer {
	fhmap *m;
	int id;
	int fd;
	int failed;
};

/* Binds its share of the handles, one by one or four to a batch, and
 * reports each (handle, object) that returned. */
static void *writer_run(void *arg)
{
	struct writer *w = arg;

	for (unsigned int h = (unsigned int)w->id; h < KILL_BINDS && !w->failed; h += KILL_THREADS * 4) {
		uint64_t ino[4], rec[2];
		int rc;

		do {
			rc = w->id % 2 ? fhmap_batch_begin(w->m) : 0;
			for (unsigned int k = 0; rc == 0 && k < 4; k++) {
				fhmap_realfh fh = fx_fake_fh(fx.lower_id, h + k * KILL_THREADS);

				rc = fhmap_bind(&ino[k], w->m, &fh, FHMAP_ROOT_INO, "k", S_IFREG);
			}
			if (w->id % 2 && rc)
				fhmap_batch_abort(w->m);
			else if (w->id % 2)
				rc = fhmap_batch_commit(w->m);
		} while (w->id % 2 && (rc == -EAGAIN || rc == -EIO)); /* a batch is redone by its caller */
		if (rc) {
			fprintf(stderr, "writer %d: handle %u: %s\n", w->id, h, fhmap_strerror(rc));
			w->failed = 1;
			break;
		}
		for (unsigned int k = 0; k < 4; k++) {
			rec[0] = h + k * KILL_THREADS;
			rec[1] = ino[k];
			if (write(w->fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
				w->failed = 1;
		}
	}
	return NULL;
}

/* The library's warnings and errors, for the test's log. */
static void log_stderr(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= FHMAP_LOG_WARN)
		fprintf(stderr, "libfhmap: %s\n", msg);
}

static int writers(int fd)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	struct writer w[KILL_THREADS];
	pthread_t t[KILL_THREADS];
	fhmap *m;
	int failed = 0;

	o.log = log_stderr;
	if (fhmap_open(&m, fx.db, &o) != 0)
		return 1;
	for (int i = 0; i < KILL_THREADS; i++) {
		w[i] = (struct writer){ m, i, fd, 0 };
		pthread_create(&t[i], NULL, writer_run, &w[i]);
	}
	for (int i = 0; i < KILL_THREADS; i++) {
		pthread_join(t[i], NULL);
		failed |= w[i].failed;
	}
	fhmap_close(m);
	return failed;
}

/* Connections killed again and again while four threads bind (group
 * commits, and batches): every bind returns its object (groups run again
 * by themselves, batches are redone by their caller), every one that
 * returned is there, nothing is there twice or half. */
START_TEST(killed_connections_never_half_apply)
{
	static uint64_t seen[KILL_BINDS];
	uint64_t rec[2];
	int pfd[2], kills = 0;
	PGconn *a = admin();
	fhmap_map_stats st;
	pid_t pid;

	fx_close();
	name_connections();
	ck_assert_int_eq(pipe(pfd), 0);
	fflush(NULL);
	ck_assert_int_ge(pid = fork(), 0);
	if (pid == 0) {
		close(pfd[0]);
		_exit(writers(pfd[1]));
	}
	close(pfd[1]);
	for (int got = 0; got < KILL_BINDS;) {
		ssize_t n = read(pfd[0], rec, sizeof(rec));

		if (n != (ssize_t)sizeof(rec))
			break;
		ck_assert_uint_lt(rec[0], KILL_BINDS);
		ck_assert_uint_eq(seen[rec[0]], 0);
		seen[rec[0]] = rec[1];
		if (++got % 10 == 0)
			kills += terminate_all(a);
	}
	close(pfd[0]);
	reap(pid);
	PQfinish(a);
	printf("%d connections killed\n", kills);
	ck_assert_int_gt(kills, 10);
	fx.map = fx_open(0);
	CK_OK(fhmap_stats(&st, fx.map));
	ck_assert_uint_eq(st.objects, KILL_BINDS + 1);
	ck_assert_uint_eq(st.origin_entries, KILL_BINDS + 1);
	for (unsigned int h = 0; h < KILL_BINDS; h++) {
		fhmap_realfh fh = fx_fake_fh(fx.lower_id, h);
		fhmap_object o;

		ck_assert_msg(seen[h], "handle %u never reported", h);
		CK_OK(fhmap_object_lookup(&o, fx.map, FHMAP_INDEX_ORIGIN, &fh));
		ck_assert_uint_eq(o.ino, seen[h]);
	}
}
END_TEST

/* A reader whose connection is killed gets an error or the right answer,
 * and the next read works again. */
START_TEST(killed_reader_reconnects)
{
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 7);
	PGconn *a = admin();
	uint64_t ino, again;
	int rc;

	name_connections();
	fx_reopen();
	CK_OK(fhmap_bind(&ino, fx.map, &fh, fx.root, "seven", S_IFREG));
	ck_assert_int_gt(terminate_all(a), 0);
	rc = fhmap_lookup_origin(&again, fx.map, &fh);
	ck_assert_msg(rc == 0 || rc == -EIO, "%s", fhmap_strerror(rc));
	ck_assert(rc || again == ino);
	CK_OK(fhmap_lookup_origin(&again, fx.map, &fh));
	ck_assert_uint_eq(again, ino);
	PQfinish(a);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* A commit whose answer is lost */

/* The test's advisory lock: the next COMMIT of its map waits for it. */
#define COMMIT_LOCK_SQL "SELECT pg_advisory_%s(%d)"

static void admin_exec(PGconn *a, const char *sql)
{
	PGresult *res = PQexec(a, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK,
	              "%s: %s", sql, PQerrorMessage(a));
	PQclear(res);
}

/* The admin holds the lock; a deferred trigger makes the first COMMIT that
 * wrote fhmap_kv wait for it (once: a sequence is not rolled back). */
static void hold_next_commit(PGconn *a)
{
	char sql[1024];

	snprintf(sql, sizeof(sql), COMMIT_LOCK_SQL, "lock", (int)getpid());
	admin_exec(a, sql);
	snprintf(sql, sizeof(sql),
	         "CREATE SEQUENCE %s.once; CREATE FUNCTION %s.hold() RETURNS trigger LANGUAGE plpgsql AS "
	         "$$BEGIN IF nextval('%s.once') = 1 THEN PERFORM pg_advisory_xact_lock_shared(%d); END IF; "
	         "RETURN NULL; END$$; CREATE CONSTRAINT TRIGGER hold AFTER INSERT OR UPDATE ON %s.fhmap_kv "
	         "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %s.hold()",
	         fx.schema, fx.schema, fx.schema, (int)getpid(), fx.schema, fx.schema);
	admin_exec(a, sql);
}

/* Waits until a backend of the test's map runs @query waiting for a lock;
 * its pid and its client's port. */
static void wait_for_lock(PGconn *a, const char *query, int *pid, int *port)
{
	const char *params[2] = { fx.schema, query };

	for (int i = 0; i < 1000; i++) {
		PGresult *res = PQexecParams(
		    a,
		    "SELECT pid, client_port FROM pg_stat_activity WHERE application_name "
		    "= $1 AND query LIKE $2 AND wait_event_type = 'Lock'",
		    2, NULL, params, NULL, NULL, 0);
		int n;

		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		if ((n = PQntuples(res)) == 1) {
			*pid = atoi(PQgetvalue(res, 0, 0));
			*port = atoi(PQgetvalue(res, 0, 1));
		}
		PQclear(res);
		if (n == 1)
			return;
		usleep(10000);
	}
	ck_abort_msg("no backend ran %s", query);
}

/* Cuts this process's TCP connection from local port @port, as a network
 * failure would: the server goes on with what it was doing. */
static void cut_connection(int port)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int cut = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		struct stat st;
		int fd = atoi(e->d_name);

		if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET &&
		    ntohs(sa.sin_port) == port && shutdown(fd, SHUT_RDWR) == 0)
			cut++;
	}
	closedir(d);
	ck_assert_int_eq(cut, 1);
}

static char outcome_msg[256];

static void log_outcome(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (strstr(msg, "after the lost commit"))
		snprintf(outcome_msg, sizeof(outcome_msg), "%s", msg);
	log_stderr(ctx, level, msg);
}

struct lone_bind {
	fhmap *m;
	uint64_t ino;
	int rc;
};

static void *lone_bind_run(void *arg)
{
	struct lone_bind *b = arg;
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 42);

	b->rc = fhmap_bind(&b->ino, b->m, &fh, FHMAP_ROOT_INO, "lost", S_IFREG);
	return NULL;
}

/* A bind whose COMMIT's answer is lost: @committed, its connection is cut
 * while the COMMIT waits, and the COMMIT then goes through; otherwise its
 * backend is killed there (the transaction aborts). Either way the bind
 * returns its object, which is there once; returns the outcome logged. */
static const char *lose_commit(int committed)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	struct lone_bind b = { NULL, 0, -1 };
	PGconn *a = admin();
	fhmap_map_stats st;
	fhmap_realfh fh = fx_fake_fh(fx.lower_id, 42);
	uint64_t ino;
	pthread_t t;
	char sql[128];
	int pid, port;

	fx_close();
	name_connections();
	o.log = log_outcome;
	CK_OK(fhmap_open(&b.m, fx.db, &o));
	hold_next_commit(a);
	ck_assert_int_eq(pthread_create(&t, NULL, lone_bind_run, &b), 0);
	wait_for_lock(a, "COMMIT", &pid, &port);
	if (committed) {
		cut_connection(port);
		/* The lookup waits for the transaction its backend still runs. */
		wait_for_lock(a, "INSERT INTO fhmap_writers%", &pid, &port);
	} else {
		snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", pid);
		admin_exec(a, sql);
	}
	snprintf(sql, sizeof(sql), COMMIT_LOCK_SQL, "unlock", (int)getpid());
	admin_exec(a, sql);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	CK_OK(b.rc);
	CK_OK(fhmap_stats(&st, b.m));
	ck_assert_uint_eq(st.objects, 2); /* and the root */
	ck_assert_uint_eq(st.origin_entries, 2);
	CK_OK(fhmap_lookup_origin(&ino, b.m, &fh));
	ck_assert_uint_eq(ino, b.ino);
	fhmap_close(b.m);
	PQfinish(a);
	return outcome_msg;
}

/* The commit went through though its answer was lost: the marker says so,
 * and the bind is not run again (it would make a second object). */
START_TEST(lost_commit_that_committed_is_not_run_again)
{
	const char *msg = lose_commit(1);

	ck_assert_msg(strstr(msg, ": committed"), "outcome: '%s'", msg);
}
END_TEST

/* The commit never went through: the marker says so, and the bind runs
 * again. */
START_TEST(lost_commit_that_aborted_runs_again)
{
	const char *msg = lose_commit(0);

	ck_assert_msg(strstr(msg, ": not committed"), "outcome: '%s'", msg);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("pg", &tc);

	tcase_add_test(tc, processes_binding_one_origin_get_one_object);
	tcase_add_test(tc, killed_connections_never_half_apply);
	tcase_add_test(tc, killed_reader_reconnects);
	tcase_add_test(tc, lost_commit_that_committed_is_not_run_again);
	tcase_add_test(tc, lost_commit_that_aborted_runs_again);
	return fx_run(s);
}
