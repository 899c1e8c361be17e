#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fx fx;

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

uint64_t fx_txnid(void)
{
	uint64_t id = 0;
	int pfd[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		MDB_env *env;
		MDB_envinfo info;

		if (mdb_env_create(&env) || mdb_env_open(env, fx.db, MDB_RDONLY, 0600))
			_exit(1);
		mdb_env_info(env, &info);
		id = info.me_last_txnid;
		_exit(write(pfd[1], &id, sizeof(id)) == sizeof(id) ? 0 : 1);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &id, sizeof(id)), (int)sizeof(id));
	close(pfd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return id;
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
	fhmap_close(fx.map);
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
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
