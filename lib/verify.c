/* Page verification at open (FHMAP_OPEN_VERIFY). LMDB 0.9 trusts its page
 * and node headers: a damaged page can make it follow a wild pointer and
 * crash the process. So a forked child walks every table and touches every
 * key and value; if LMDB or the walk faults, the child dies, not the
 * caller, and the map is reported as damaged. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lmdb.h"

/* The child exits 0 when the map is sound, else VERIFY_ERRNO + the errno
 * value of what it found (fhmap__err: MDB_CORRUPTED is EUCLEAN); small exit
 * codes are left to whatever else may end a process. */
#define VERIFY_ERRNO 8

/* Where the folded bytes go, so that no compiler drops the reads. */
static volatile uint64_t verify_sum;

/* The functions that read the map through pointers LMDB derived from it
 * are not instrumented: under ASan a wild pointer must fault as it does in
 * LMDB, not raise a sanitizer report. */
#define MAP_READER __attribute__((no_sanitize_address))

/* Reads every byte of @v. */
MAP_READER static uint64_t fold(uint64_t sum, const MDB_val *v)
{
	const volatile unsigned char *p = v->mv_data;

	for (size_t i = 0; i < v->mv_size; i++)
		sum = sum * 31 + p[i];
	return sum;
}

/* LMDB 0.9 page header: flags at 10, then lower (end of the node offsets)
 * and upper (start of the nodes), or on an overflow page its page count; a
 * leaf node is 8 bytes, its key, then its value unless that overflows. */
#define PG_FLAGS 10
#define PG_LOWER 12
#define PG_UPPER 14
#define PG_PAGES 12
#define PG_HDR 16
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define NODE_HDR 8

MAP_READER static unsigned int pg_u16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

/* What the walk knows of the map's pages. */
struct pages {
	size_t psize;   /* 0: pages are not checked */
	uintptr_t base; /* where page 0 is mapped, from the first page seen */
};

static const unsigned char *page_of(const void *p, size_t psize)
{
	return (const unsigned char *)((uintptr_t)p & ~(uintptr_t)(psize - 1));
}

/* A page header starts with the page's own number, which updates assert:
 * every page must place page 0 at the same address. */
MAP_READER static int pgno_ok(struct pages *pg, const unsigned char *page)
{
	uint64_t no;
	uintptr_t base;

	memcpy(&no, page, 8);
	base = (uintptr_t)page - (uintptr_t)(no * pg->psize);
	if (!pg->base)
		pg->base = base;
	return base == pg->base;
}

/* An entry must lie where its page says: the leaf holding key @k, found by
 * address (the map is page-aligned), a leaf with sane bounds holding the
 * whole node among its nodes; a value that is not in the node, on overflow
 * pages that hold all of it. Reading tolerates bad bounds and sizes; the
 * updates that copy, shift or free the page trust them. */
MAP_READER static int entry_ok(struct pages *pg, const MDB_val *k, const MDB_val *v)
{
	size_t psize = pg->psize;
	const unsigned char *key = k->mv_data, *val = v->mv_data;
	const unsigned char *page = page_of(key, psize), *ovf = page_of(val, psize);
	unsigned int lower = pg_u16(page + PG_LOWER), upper = pg_u16(page + PG_UPPER);
	size_t at = (size_t)(key - page), end = at + k->mv_size; /* of the key */
	uint32_t pages;

	if (!pgno_ok(pg, page) || !(pg_u16(page + PG_FLAGS) & P_LEAF) || lower < PG_HDR || lower > upper ||
	    upper > psize || at < upper + NODE_HDR || end > psize)
		return 0;
	if ((uintptr_t)val == (uintptr_t)page + end)
		return end + v->mv_size <= psize;
	memcpy(&pages, ovf + PG_PAGES, 4);
	return pgno_ok(pg, ovf) && (pg_u16(ovf + PG_FLAGS) & P_OVERFLOW) && val == ovf + PG_HDR &&
	       (uint64_t)pages * psize >= PG_HDR + v->mv_size;
}

/* A record of LMDB's free list: a count, then that many page numbers, each
 * naming a page in use (2 to @last; 0 and 1 are the meta pages). Nodes are
 * only 2-byte aligned: the words are copied out. */
static int free_record_ok(const MDB_val *v, size_t last)
{
	const unsigned char *p = v->mv_data;
	size_t n, pg;

	if (v->mv_size < sizeof(n))
		return 0;
	memcpy(&n, p, sizeof(n));
	if (n > v->mv_size / sizeof(n) - 1)
		return 0;
	for (size_t i = 1; i <= n; i++) {
		memcpy(&pg, p + i * sizeof(pg), sizeof(pg));
		if (pg < 2 || pg > last)
			return 0;
	}
	return 1;
}

/* Walks one table with a cursor, from its first entry to its last, and
 * checks where each entry lies; on LMDB's free list (DBI 0, as mdb_stat -f
 * reads it) also that each record names pages inside the map (2 to
 * @last): LMDB hands them to later updates unchecked. */
static int walk(MDB_txn *txn, MDB_dbi dbi, size_t last, struct pages *pg)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t sum = 0;
	int rc = mdb_cursor_open(txn, dbi, &c);

	if (rc)
		return rc;
	while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
		sum = fold(fold(sum, &k), &v);
		if ((pg->psize && !entry_ok(pg, &k, &v)) || (dbi == 0 && !free_record_ok(&v, last))) {
			rc = MDB_CORRUPTED;
			break;
		}
	}
	mdb_cursor_close(c);
	verify_sum += sum;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Opens the map read-only as fhmap_open would and walks LMDB's free list
 * and the main table (DBI 1), which holds all of the map's tables. Returns
 * an LMDB code or errno value. */
static int walk_map(const char *path, const fhmap_open_options *o)
{
	MDB_envinfo info;
	MDB_stat st;
	MDB_env *env;
	struct pages pg = { 0, 0 };
	MDB_txn *txn;
	int rc = mdb_env_create(&env);

	if (rc)
		return rc;
	mdb_env_set_mapsize(env, o->map_size);
	if (o->max_readers)
		mdb_env_set_maxreaders(env, o->max_readers);
	rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS, 0600);
	if (rc == 0 && (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) == 0) {
		mdb_env_info(env, &info);
		mdb_env_stat(env, &st);
		/* Pages are found by address only if they are as big as the
		 * system's (a map made on a machine with larger pages is not). */
		if (st.ms_psize == (unsigned int)sysconf(_SC_PAGESIZE))
			pg.psize = st.ms_psize;
		if ((rc = walk(txn, 0, info.me_last_pgno, &pg)) == 0)
			rc = walk(txn, 1, info.me_last_pgno, &pg);
		/* Frees the reader slot: a slot of a dead process pins pages. */
		mdb_txn_abort(txn);
	}
	mdb_env_close(env);
	return rc;
}

static int exit_code(int rc)
{
	int e = -fhmap__err(rc);

	if (rc == 0)
		return 0;
	return VERIFY_ERRNO + (e > 0 && e <= 255 - VERIFY_ERRNO ? e : EIO);
}

/* The signals a fault in LMDB or the walk ends the child with. */
static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

static int crash_signal(int sig)
{
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		if (sig == fatal[i])
			return 1;
	return 0;
}

static __attribute__((noreturn)) void child(const char *path, const fhmap_open_options *o)
{
	struct rlimit none = { 0, 0 };

	/* A crash must end this process as a signal the parent sees, not run
	 * the handlers of a sanitizer or fuzzer that would report it as the
	 * caller's; and leave no core file. */
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		signal(fatal[i], SIG_DFL);
	setrlimit(RLIMIT_CORE, &none);
	_exit(exit_code(walk_map(path, o)));
}

static int result(int status)
{
	int code;

	/* A fault is the damage; another signal (the OOM killer's SIGKILL, a
	 * stray kill) ended the check before it could tell. */
	if (WIFSIGNALED(status))
		return crash_signal(WTERMSIG(status)) ? -EUCLEAN : -EINTR;
	if (!WIFEXITED(status))
		return -EIO;
	code = WEXITSTATUS(status);
	return code == 0 ? 0 : code > VERIFY_ERRNO ? -(code - VERIFY_ERRNO) : -EIO;
}

int fhmap__verify(const char *path, const fhmap_open_options *o)
{
	char data[FHMAP_PATH_MAX];
	int status;
	pid_t pid;

	if (snprintf(data, sizeof(data), "%s/data.mdb", path) >= (int)sizeof(data))
		return -ENAMETOOLONG;
	if (access(data, F_OK) != 0)
		/* A map about to be created has nothing to verify yet. */
		return errno == ENOENT && (o->flags & FHMAP_OPEN_CREATE) ? 0 : -errno;
	pid = fork();
	if (pid < 0)
		return -ENOMEM; /* EAGAIN or ENOMEM: no process to spare */
	if (pid == 0)
		child(path, o);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return result(status);
}
