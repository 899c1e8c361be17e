/*
 * Fault injection on real filesystems and a real LMDB environment.
 *   enospc   the map on a 1 MiB tmpfs: one bind a commit until it is full,
 *            one more write, then space is freed and a batch larger than it
 *            is committed. Every failure must be -ENOSPC, every earlier
 *            update stays, a failed batch leaves nothing, the map stays
 *            consistent and takes writes again once space is freed; the
 *            same through max_map_size on a normal filesystem.
 *   rdonly   a map on a read-only mount, and in a directory its user may
 *            not write, opens with FHMAP_OPEN_RDONLY and answers; updates
 *            give -EROFS; a read-write open is refused cleanly.
 *   format   a map whose meta "format" key says FHMAP_FORMAT_VERSION + 1
 *            (written with LMDB directly) is refused with -EPROTONOSUPPORT
 *            and a message naming both versions; a directory holding a
 *            foreign LMDB environment or garbage is refused too.
 *   writers  two processes update one map at once: object numbers and
 *            generations never collide, nothing is lost, and a batch of one
 *            process holds off the other's write until it commits.
 * Mount tests run in a private mount namespace (gone when the test exits)
 * and skip (77) without CAP_SYS_ADMIN.
 *
 * Usage: rel_faults enospc|rdonly|format|writers
 */
#define _GNU_SOURCE
#include "rel.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Enters a private mount namespace so that mounts vanish with the test. */
static void faults_private_mounts(void)
{
	if (unshare(CLONE_NEWNS) != 0) {
		printf("SKIP: cannot create a mount namespace (%s); needs root\n", strerror(errno));
		exit(REL_SKIP);
	}
	REL_ASSERT(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0,
	           "make mounts private: %s", strerror(errno));
}

static char *faults_mounted;
static pid_t faults_mounter;

/* A test that fails leaves its tmpfs mounted; detach it so that the
 * temporary directory can go (atexit runs this before removing it). */
static void faults_unmount(void)
{
	if (faults_mounted && getpid() == faults_mounter)
		umount2(faults_mounted, MNT_DETACH);
}

static void faults_tmpfs(const char *dir, const char *size, unsigned long flags)
{
	char opts[64];

	snprintf(opts, sizeof(opts), "size=%s,mode=0755", size);
	REL_ASSERT(mount("fhmap-test", dir, "tmpfs", flags, opts) == 0, "mount tmpfs on %s: %s", dir,
	           strerror(errno));
	if (!faults_mounter) {
		faults_mounter = getpid();
		atexit(faults_unmount);
	}
	free(faults_mounted);
	faults_mounted = strdup(dir);
}

static void faults_umount(const char *dir)
{
	REL_ASSERT(umount(dir) == 0, "umount %s: %s", dir, strerror(errno));
	free(faults_mounted);
	faults_mounted = NULL;
}

struct faults_log {
	char last[512];
	unsigned int errors;
};

static void faults_log_capture(void *ctx, fhmap_log_level level, const char *msg)
{
	struct faults_log *l = ctx;

	if (level == FHMAP_LOG_ERROR) {
		l->errors++;
		snprintf(l->last, sizeof(l->last), "%s", msg);
	}
}

static int faults_open(fhmap **map, const char *dir, unsigned int flags, uint64_t map_size,
                       uint64_t max_map_size, struct faults_log *log)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;

	o.flags = flags;
	o.map_size = map_size;
	o.max_map_size = max_map_size;
	o.log = log ? faults_log_capture : rel_log_stderr;
	o.log_ctx = log ? (void *)log : (void *)"faults";
	return fhmap_open(map, dir, &o);
}

/* Binds files f<from>.. until one fails; returns that error (or 0 after
 * @p max), with the number bound in *count and their objects in @p inos. */
static int faults_fill(fhmap *map, const struct rel_union *u, unsigned int from, unsigned int max,
                       uint64_t *inos, unsigned int *count)
{
	fhmap_realfh fh;
	char name[300];
	int rc = 0;

	*count = 0;
	for (unsigned int i = from; i < from + max; i++) {
		/* Long names make records big, so the map fills after few files. */
		snprintf(name, sizeof(name), "f%06u_%0200u", i, 0);
		rel_touch(u->lower, name);
		REL_OK(fhmap_realfh_from_path(&fh, map, u->lower_id, name));
		rc = fhmap_bind(&inos[*count], map, &fh, FHMAP_ROOT_INO, name, S_IFREG);
		if (rc)
			return rc;
		(*count)++;
	}
	return 0;
}

static void faults_expect_present(fhmap *map, const uint64_t *inos, unsigned int n)
{
	fhmap_object o;

	for (unsigned int i = 0; i < n; i++) {
		REL_OK(fhmap_get(&o, map, inos[i]));
		REL_ASSERT(o.state == FHMAP_STATE_ORIGIN, "object %llu in state %d",
		           (unsigned long long)inos[i], (int)o.state);
	}
}

static void faults_expect_absent(fhmap *map, const uint64_t *inos, unsigned int n)
{
	fhmap_object o;

	for (unsigned int i = 0; i < n; i++)
		REL_ASSERT(fhmap_get(&o, map, inos[i]) == -ENOENT, "object %llu of a failed batch exists",
		           (unsigned long long)inos[i]);
}

static void faults_consistent(fhmap *map, const char *when)
{
	struct rel_check c;

	REL_ASSERT(rel_check_map(map, &c) == 0, "map inconsistent %s", when);
}

#define FILL_MAX 20000

static void test_enospc(void)
{
	static uint64_t inos[FILL_MAX], more[FILL_MAX], batch[FILL_MAX];
	struct rel_union u;
	unsigned int n = 0, m = 0, nb = 0;
	char *filler;
	fhmap *map;
	int rc, rc2, rc3, rc4, fd;

	/* 1. A full filesystem. The layers stay on the normal disk. */
	rel_union_init(&u, "enospc");
	faults_private_mounts();
	REL_ASSERT(mkdir(u.mapdir, 0755) == 0, "mkdir: %s", strerror(errno));
	faults_tmpfs(u.mapdir, "1m", 0);
	/* A filler to delete later, so that space can come back. */
	filler = rel_join(u.mapdir, "filler");
	fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	REL_ASSERT(fd >= 0 && fallocate(fd, 0, 0, 256 * 1024) == 0, "filler: %s", strerror(errno));
	close(fd);
	REL_OK(faults_open(&map, u.mapdir, FHMAP_OPEN_CREATE, 0, 0, NULL));
	rel_union_register(&u, map);
	rc = faults_fill(map, &u, 0, FILL_MAX, inos, &n);
	printf("rel_faults enospc: tmpfs of 1 MiB full after %u objects, one a commit: %s\n", n,
	       fhmap_strerror(rc));
	REL_ASSERT(n > 0, "not a single object fitted");
	faults_expect_present(map, inos, n);
	faults_consistent(map, "after the filesystem filled up");
	/* Still full. A small update may still fit in pages that earlier
	 * commits freed inside the file, so write on until one fails: it must
	 * fail with ENOSPC, and every update that succeeded must be there. */
	rc2 = faults_fill(map, &u, n + 1, FILL_MAX - n - 1, more, &m);
	REL_ASSERT(rc2 != 0, "writes on a full filesystem never failed");
	faults_expect_present(map, more, m);
	printf("rel_faults enospc: %u more update(s) fitted in freed pages before the next failure\n", m);
	REL_ASSERT(unlink(filler) == 0, "unlink filler: %s", strerror(errno));
	rc3 = faults_fill(map, &u, n + 2 + m, 5, more, &m);
	REL_ASSERT(rc3 == 0 && m == 5, "writes after freeing space: %d (%s)", rc3, fhmap_strerror(rc3));
	/* A batch larger than the space left: one commit of many pages. */
	REL_OK(fhmap_batch_begin(map));
	rc3 = faults_fill(map, &u, FILL_MAX, FILL_MAX / 4, batch, &nb);
	REL_ASSERT(rc3 == 0, "bind in a batch: %s", fhmap_strerror(rc3));
	rc3 = fhmap_batch_commit(map);
	printf("rel_faults enospc: a batch of %u objects on the remaining 256 KiB: %s\n", nb,
	       fhmap_strerror(rc3));
	REL_ASSERT(rc3 != 0, "a batch larger than the free space committed");
	faults_expect_absent(map, batch, nb);
	faults_expect_present(map, inos, n);
	faults_expect_present(map, more, m);
	faults_consistent(map, "after a batch failed on a full filesystem");
	fhmap_close(map);
	REL_OK(faults_open(&map, u.mapdir, 0, 0, 0, NULL));
	faults_expect_present(map, inos, n);
	faults_expect_present(map, more, m);
	faults_consistent(map, "after reopening");
	fhmap_close(map);
	faults_umount(u.mapdir);
	free(filler);

	/* 2. The growth limit of the options on a normal filesystem. */
	REL_OK(faults_open(&map, u.mapdir, FHMAP_OPEN_CREATE, 64 * 1024, 256 * 1024, NULL));
	rel_union_register(&u, map);
	rc4 = faults_fill(map, &u, 100000, FILL_MAX, inos, &n);
	printf("rel_faults enospc: max_map_size 256 KiB reached after %u objects: %s\n", n,
	       fhmap_strerror(rc4));
	REL_ASSERT(rc4 == -ENOSPC, "hitting max_map_size gave %d (%s)", rc4, fhmap_strerror(rc4));
	faults_expect_present(map, inos, n);
	faults_consistent(map, "at max_map_size");
	fhmap_close(map);
	REL_OK(faults_open(&map, u.mapdir, 0, 256 * 1024, 1024 * 1024, NULL));
	rc4 = faults_fill(map, &u, 200000, 5, more, &m);
	REL_ASSERT(rc4 == 0, "writes after raising max_map_size: %s", fhmap_strerror(rc4));
	faults_expect_present(map, inos, n);
	faults_consistent(map, "after raising max_map_size");
	fhmap_close(map);
	rel_union_free(&u);
	/* The map survived everything; now the codes: a full disk must say so. */
	REL_ASSERT(rc == -ENOSPC && rc2 == -ENOSPC && rc3 == -ENOSPC,
	           "full filesystem gave %d (%s), then %d (%s), batch %d (%s); expected -ENOSPC", rc,
	           fhmap_strerror(rc), rc2, fhmap_strerror(rc2), rc3, fhmap_strerror(rc3));
}

/* Opens the map read-only and checks it answers and refuses updates. */
static void faults_check_rdonly(const char *dir, const struct rel_union *u, uint64_t ino,
                                const unsigned char *fh, size_t fhlen)
{
	fhmap_decoded d;
	fhmap_realfh rfh;
	fhmap_info info;
	uint64_t got;
	fhmap *map;
	int rc;

	rc = faults_open(&map, dir, 0, 0, 0, NULL);
	REL_ASSERT(rc == -EROFS || rc == -EACCES, "read-write open of a read-only map gave %d (%s)", rc,
	           fhmap_strerror(rc));
	REL_ASSERT(map == NULL, "failed open left a map");
	REL_OK(faults_open(&map, dir, FHMAP_OPEN_RDONLY, 0, 0, NULL));
	REL_OK(fhmap_info_get(&info, map));
	REL_ASSERT(info.read_only == 1, "info.read_only is %d", info.read_only);
	REL_OK(fhmap_decode(&d, map, fh, fhlen, 0));
	REL_ASSERT(d.ino == ino, "decoded %llu, not %llu", (unsigned long long)d.ino,
	           (unsigned long long)ino);
	REL_OK(fhmap_realfh_from_path(&rfh, map, u->lower_id, "kept"));
	REL_OK(fhmap_lookup_origin(&got, map, &rfh));
	REL_ASSERT(got == ino, "lookup gave %llu", (unsigned long long)got);
	rc = fhmap_rename(map, ino, FHMAP_ROOT_INO, "moved");
	REL_ASSERT(rc == -EROFS, "rename on a read-only map gave %d", rc);
	/* Binding a bound origin is a read; binding a new one an update. */
	got = 0;
	REL_OK(fhmap_bind(&got, map, &rfh, FHMAP_ROOT_INO, "kept", S_IFREG));
	REL_ASSERT(got == ino, "bind of a bound origin on a read-only map gave %llu", (unsigned long long)got);
	rfh.data[0] ^= 0xff;
	rc = fhmap_bind(&got, map, &rfh, FHMAP_ROOT_INO, "other", S_IFREG);
	REL_ASSERT(rc == -EROFS, "bind of a new origin on a read-only map gave %d", rc);
	faults_consistent(map, "opened read-only");
	fhmap_close(map);
}

static int faults_rdonly_child(const struct rel_union *u, uint64_t ino, const unsigned char *fh,
                               size_t fhlen)
{
	faults_check_rdonly(u->mapdir, u, ino, fh, fhlen);
	return 0;
}

static int faults_rdonly_nolock_child(const struct rel_union *u, uint64_t ino,
                                      const unsigned char *fh, size_t fhlen)
{
	fhmap *map;
	int rc = faults_open(&map, u->mapdir, FHMAP_OPEN_RDONLY, 0, 0, NULL);

	if (rc == -EACCES && map == NULL)
		return EACCES;
	REL_OK(rc);
	fhmap_close(map);
	faults_check_rdonly(u->mapdir, u, ino, fh, fhlen);
	return 0;
}

typedef int (*faults_child_fn)(const struct rel_union *u, uint64_t ino, const unsigned char *fh,
                               size_t fhlen);

/* Runs @p fn as user nobody in a child; returns its exit status. */
static int faults_unprivileged(faults_child_fn fn, const struct rel_union *u, uint64_t ino,
                               const unsigned char *fh, size_t fhlen)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	REL_ASSERT(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		exit(fn(u, ino, fh, fhlen));
	}
	REL_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status), "child status 0x%x", status);
	return WEXITSTATUS(status);
}

static void test_rdonly(void)
{
	unsigned char fh[FHMAP_FH_MAX];
	size_t fhlen = sizeof(fh);
	struct rel_union u;
	fhmap_realfh rfh;
	uint64_t ino;
	fhmap *map;
	char *fresh, *data, *lock;
	int rc;

	rel_union_init(&u, "rdonly");
	faults_private_mounts();
	REL_ASSERT(mkdir(u.mapdir, 0755) == 0, "mkdir: %s", strerror(errno));
	faults_tmpfs(u.mapdir, "4m", 0);
	REL_OK(faults_open(&map, u.mapdir, FHMAP_OPEN_CREATE, 0, 0, NULL));
	rel_union_register(&u, map);
	rel_touch(u.lower, "kept");
	REL_OK(fhmap_realfh_from_path(&rfh, map, u.lower_id, "kept"));
	REL_OK(fhmap_bind(&ino, map, &rfh, FHMAP_ROOT_INO, "kept", S_IFREG));
	REL_OK(fhmap_encode(fh, &fhlen, map, ino, 0, 0));
	fhmap_close(map);

	/* A directory and data file its user may not write; LMDB readers
	 * still need to write lock.mdb (reader slots). */
	REL_ASSERT(chmod(u.top, 0755) == 0 && chmod(u.mapdir, 0555) == 0, "chmod: %s", strerror(errno));
	data = rel_join(u.mapdir, "data.mdb");
	REL_ASSERT(chmod(data, 0444) == 0, "chmod data.mdb: %s", strerror(errno));
	free(data);
	lock = rel_join(u.mapdir, "lock.mdb");
	REL_ASSERT(chmod(lock, 0666) == 0, "chmod lock.mdb: %s", strerror(errno));
	REL_ASSERT(faults_unprivileged(faults_rdonly_child, &u, ino, fh, fhlen) == 0,
	           "read-only directory, unprivileged: check failed");
	printf("rel_faults rdonly: unwritable directory and data.mdb open read-only for an "
	       "unprivileged user\n");
	/* Without a writable lock.mdb the open may fail, but only cleanly. */
	REL_ASSERT(chmod(lock, 0444) == 0, "chmod lock.mdb: %s", strerror(errno));
	rc = faults_unprivileged(faults_rdonly_nolock_child, &u, ino, fh, fhlen);
	REL_ASSERT(rc == 0 || rc == EACCES, "unwritable lock.mdb: open gave %d", -rc);
	printf("rel_faults rdonly: unwritable lock.mdb too: %s\n",
	       rc ? "refused with -EACCES (LMDB readers write lock.mdb)" : "opens read-only");
	free(lock);

	/* A read-only filesystem (root bypasses permissions, not this). */
	faults_tmpfs(u.mapdir, "4m", MS_REMOUNT | MS_RDONLY);
	faults_check_rdonly(u.mapdir, &u, ino, fh, fhlen);
	fresh = rel_join(u.mapdir, "new");
	rc = faults_open(&map, fresh, FHMAP_OPEN_CREATE, 0, 0, NULL);
	REL_ASSERT(rc == -EROFS, "creating a map on a read-only filesystem gave %d (%s)", rc,
	           fhmap_strerror(rc));
	free(fresh);
	printf("rel_faults rdonly: read-only mount opens read-only; updates give -EROFS\n");
	faults_umount(u.mapdir);
	rel_union_free(&u);
}

/* Writes meta "format" (table byte 'M' in LMDB's main table) with LMDB
 * directly, as a newer library would. */
static void faults_set_format(const char *dir, uint32_t version)
{
	unsigned char v[4] = { (unsigned char)version, (unsigned char)(version >> 8),
	                       (unsigned char)(version >> 16), (unsigned char)(version >> 24) };
	MDB_val key = { 7, (void *)"Mformat" }, val = { 4, v }, old;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	REL_ASSERT(mdb_env_create(&env) == 0, "mdb_env_create");
	REL_ASSERT(mdb_env_open(env, dir, 0, 0600) == 0, "mdb_env_open %s", dir);
	REL_ASSERT(mdb_txn_begin(env, NULL, 0, &txn) == 0, "mdb_txn_begin");
	REL_ASSERT(mdb_dbi_open(txn, NULL, 0, &dbi) == 0, "mdb_dbi_open");
	REL_ASSERT(mdb_get(txn, dbi, &key, &old) == 0, "no format key in %s", dir);
	REL_ASSERT(mdb_put(txn, dbi, &key, &val, 0) == 0, "mdb_put");
	REL_ASSERT(mdb_txn_commit(txn) == 0, "mdb_txn_commit");
	mdb_env_close(env);
}

static void faults_write_junk(const char *dir)
{
	char *data = rel_join(dir, "data.mdb");
	unsigned char junk[16384];
	int fd;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 + 7);
	rel_mkdir(dir, "");
	fd = open(data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	REL_ASSERT(fd >= 0 && write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk), "write %s",
	           data);
	close(fd);
	free(data);
}

static void test_format(void)
{
	struct faults_log log = { "", 0 };
	struct rel_union u;
	char want[2][32], *other, *junk;
	MDB_env *env;
	fhmap *map;
	int rc;

	rel_union_init(&u, "format");
	REL_OK(faults_open(&map, u.mapdir, FHMAP_OPEN_CREATE, 0, 0, NULL));
	rel_union_register(&u, map);
	fhmap_close(map);
	faults_set_format(u.mapdir, FHMAP_FORMAT_VERSION + 1);
	snprintf(want[0], sizeof(want[0]), "%u", FHMAP_FORMAT_VERSION + 1);
	snprintf(want[1], sizeof(want[1]), "%u", FHMAP_FORMAT_VERSION);
	for (int ro = 0; ro < 2; ro++) {
		log.errors = 0;
		rc = faults_open(&map, u.mapdir, ro ? FHMAP_OPEN_RDONLY : 0, 0, 0, &log);
		REL_ASSERT(rc == -EPROTONOSUPPORT && map == NULL,
		           "newer format version opened with %d (%s)", rc, fhmap_strerror(rc));
		REL_ASSERT(log.errors > 0 && strstr(log.last, want[0]) && strstr(log.last, want[1]),
		           "no message naming versions %s and %s (got \"%s\")", want[0], want[1], log.last);
	}
	printf("rel_faults format: version %s refused: %s; \"%s\"\n", want[0], fhmap_strerror(rc),
	       log.last);
	faults_set_format(u.mapdir, FHMAP_FORMAT_VERSION);
	REL_OK(faults_open(&map, u.mapdir, 0, 0, 0, NULL));
	faults_consistent(map, "after restoring the format version");
	fhmap_close(map);

	/* An LMDB environment that is not a map, and a file of garbage. */
	other = rel_join(u.top, "other");
	rel_mkdir(u.top, "other");
	REL_ASSERT(mdb_env_create(&env) == 0 && mdb_env_open(env, other, 0, 0600) == 0, "lmdb env");
	mdb_env_close(env);
	rc = faults_open(&map, other, 0, 0, 0, NULL);
	REL_ASSERT(rc == -EMEDIUMTYPE && map == NULL, "foreign LMDB environment opened with %d", rc);
	rc = faults_open(&map, other, FHMAP_OPEN_CREATE, 0, 0, NULL);
	REL_ASSERT(rc == 0, "creating a map in an empty LMDB environment: %s", fhmap_strerror(rc));
	fhmap_close(map);
	junk = rel_join(u.top, "junk");
	faults_write_junk(junk);
	for (int create = 0; create < 2; create++) {
		rc = faults_open(&map, junk, create ? FHMAP_OPEN_CREATE : 0, 0, 0, NULL);
		REL_ASSERT((rc == -EMEDIUMTYPE || rc == -EUCLEAN) && map == NULL,
		           "garbage data.mdb opened with %d (%s)", rc, fhmap_strerror(rc));
	}
	printf("rel_faults format: foreign LMDB environment and garbage refused\n");
	free(other);
	free(junk);
	rel_union_free(&u);
}

#define WRITER_OPS 150

/* One writer process: binds its own files, bumps the shared object's
 * generation and renames it; reports each generation it got. */
static __attribute__((noreturn)) void writers_child(const struct rel_union *u, int id, uint64_t shared,
                                                    int fd)
{
	fhmap_realfh fh;
	char name[32];
	uint64_t rec[2];
	uint32_t gen;
	fhmap *map;

	char order[600];
	int ofd;

	/* Each process hands out generations from a range of its own, so
	 * their values say nothing of the order of the bumps: a lock around
	 * bump and record makes the pipe's order the bumps' order. */
	snprintf(order, sizeof(order), "%s.order", u->mapdir);
	if ((ofd = open(order, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		_exit(6);
	if (rel_open(&map, u->mapdir, 0, FHMAP_SYNC_LAZY, 0))
		_exit(3);
	for (int k = 0; k < WRITER_OPS; k++) {
		snprintf(name, sizeof(name), "w%d_%d", id, k);
		rel_touch(u->lower, name);
		if (fhmap_realfh_from_path(&fh, map, u->lower_id, name) ||
		    fhmap_bind(&rec[0], map, &fh, FHMAP_ROOT_INO, name, S_IFREG) || flock(ofd, LOCK_EX) ||
		    fhmap_gen_bump(&gen, map, shared) || fhmap_rename(map, shared, FHMAP_ROOT_INO, name))
			_exit(4);
		rec[1] = gen;
		if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec) || flock(ofd, LOCK_UN))
			_exit(5);
	}
	close(ofd);
	fhmap_close(map);
	_exit(0);
}

/* Process A holds a batch open; B's write must wait for A's commit. */
static void writers_batch(const struct rel_union *u)
{
	int to_b[2], from_b[2], status;
	fhmap_realfh fh;
	uint64_t ino;
	char c;
	fhmap *map;
	pid_t pid;

	REL_ASSERT(pipe(to_b) == 0 && pipe(from_b) == 0, "pipe");
	rel_touch(u->lower, "batch_a");
	rel_touch(u->lower, "batch_b");
	fflush(NULL);
	pid = fork();
	REL_ASSERT(pid >= 0, "fork");
	if (pid == 0) {
		if (rel_open(&map, u->mapdir, 0, FHMAP_SYNC_LAZY, 0) ||
		    fhmap_realfh_from_path(&fh, map, u->lower_id, "batch_b") || read(to_b[0], &c, 1) != 1 ||
		    fhmap_bind(&ino, map, &fh, FHMAP_ROOT_INO, "batch_b", S_IFREG) ||
		    write(from_b[1], "b", 1) != 1)
			_exit(4);
		fhmap_close(map);
		_exit(0);
	}
	close(from_b[1]);
	REL_OK(rel_open(&map, u->mapdir, 0, FHMAP_SYNC_LAZY, 0));
	REL_OK(fhmap_realfh_from_path(&fh, map, u->lower_id, "batch_a"));
	REL_OK(fhmap_batch_begin(map));
	REL_OK(fhmap_bind(&ino, map, &fh, FHMAP_ROOT_INO, "batch_a", S_IFREG));
	REL_ASSERT(write(to_b[1], "a", 1) == 1, "pipe write");
	/* B is inside its bind now or soon; it must not finish while we hold
	 * the batch, however long that is. */
	{
		struct timespec ts = { 0, 300 * 1000 * 1000 };
		int fl = fcntl(from_b[0], F_GETFL);

		nanosleep(&ts, NULL);
		fcntl(from_b[0], F_SETFL, fl | O_NONBLOCK);
		REL_ASSERT(read(from_b[0], &c, 1) < 0 && errno == EAGAIN,
		           "second process wrote while a batch of the first was open");
		fcntl(from_b[0], F_SETFL, fl);
	}
	REL_OK(fhmap_batch_commit(map));
	REL_ASSERT(read(from_b[0], &c, 1) == 1, "second writer never finished");
	REL_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	           "second writer status 0x%x", status);
	REL_OK(fhmap_realfh_from_path(&fh, map, u->lower_id, "batch_b"));
	REL_OK(fhmap_lookup_origin(&ino, map, &fh));
	fhmap_close(map);
	close(to_b[0]);
	close(to_b[1]);
	close(from_b[0]);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_writers(void)
{
	static uint64_t inos[2 * WRITER_OPS], gens[2 * WRITER_OPS];
	struct rel_union u;
	fhmap_realfh fh;
	fhmap_object o;
	fhmap_info info;
	uint64_t shared, rec[2], last;
	size_t n = 0;
	int pfd[2], status;
	pid_t pid[2];
	fhmap *map;

	rel_union_init(&u, "writers");
	REL_OK(rel_open(&map, u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_LAZY, 0));
	rel_union_register(&u, map);
	rel_touch(u.lower, "shared");
	REL_OK(fhmap_realfh_from_path(&fh, map, u.lower_id, "shared"));
	REL_OK(fhmap_bind(&shared, map, &fh, FHMAP_ROOT_INO, "shared", S_IFREG));
	fhmap_close(map);

	REL_ASSERT(pipe(pfd) == 0, "pipe");
	fflush(NULL);
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		REL_ASSERT(pid[i] >= 0, "fork");
		if (pid[i] == 0) {
			close(pfd[0]);
			writers_child(&u, i, shared, pfd[1]);
		}
	}
	close(pfd[1]);
	while (read(pfd[0], rec, sizeof(rec)) == (ssize_t)sizeof(rec)) {
		REL_ASSERT(n < 2 * WRITER_OPS, "too many records");
		inos[n] = rec[0];
		gens[n++] = rec[1];
	}
	close(pfd[0]);
	for (int i = 0; i < 2; i++)
		REL_ASSERT(waitpid(pid[i], &status, 0) == pid[i] && WIFEXITED(status) &&
		           WEXITSTATUS(status) == 0, "writer %d status 0x%x", i, status);
	REL_ASSERT(n == 2 * WRITER_OPS, "%zu of %d operations reported", n, 2 * WRITER_OPS);

	REL_OK(rel_open(&map, u.mapdir, 0, FHMAP_SYNC_LAZY, 0));
	REL_OK(fhmap_get(&o, map, shared));
	REL_OK(fhmap_info_get(&info, map));
	last = gens[n - 1]; /* the records came in the order of the bumps */
	for (size_t i = 0; i < n; i++) {
		fhmap_object b;

		REL_OK(fhmap_get(&b, map, inos[i]));
		REL_ASSERT(b.state == FHMAP_STATE_ORIGIN && inos[i] < info.next_ino,
		           "object %llu lost or beyond next_ino", (unsigned long long)inos[i]);
	}
	REL_ASSERT(o.gen == last, "shared object has generation %u, the last bump gave %llu", o.gen,
	           (unsigned long long)last);
	qsort(inos, n, sizeof(inos[0]), cmp_u64);
	qsort(gens, n, sizeof(gens[0]), cmp_u64);
	for (size_t i = 1; i < n; i++) {
		REL_ASSERT(inos[i] != inos[i - 1], "object %llu handed out twice",
		           (unsigned long long)inos[i]);
		REL_ASSERT(gens[i] != gens[i - 1], "generation %llu handed out twice",
		           (unsigned long long)gens[i]);
	}
	faults_consistent(map, "after two writers");
	fhmap_close(map);
	writers_batch(&u);
	printf("rel_faults writers: 2 processes x %d binds, generation bumps and renames: "
	       "no number or generation handed out twice, nothing lost; a batch holds off the other "
	       "process\n", WRITER_OPS);
	rel_union_free(&u);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		REL_ASSERT(0, "usage: %s enospc|rdonly|format|writers", argv[0]);
	if (strcmp(argv[1], "enospc") == 0)
		test_enospc();
	else if (strcmp(argv[1], "rdonly") == 0)
		test_rdonly();
	else if (strcmp(argv[1], "format") == 0)
		test_format();
	else if (strcmp(argv[1], "writers") == 0)
		test_writers();
	else
		REL_ASSERT(0, "unknown test %s", argv[1]);
	return 0;
}
