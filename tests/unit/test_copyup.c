/* Copy-up: intent, commit, abort, and intents left behind by a crash. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static uint64_t a, b;

static void hardlinked_pair(void)
{
	char pa[600], pb[600];

	fx_make("lower/a", "old");
	fx_path(pa, sizeof(pa), "lower/a");
	fx_path(pb, sizeof(pb), "lower/b");
	ck_assert_int_eq(link(pa, pb), 0);
	a = fx_bind("a", fx.root, "a");
	b = fx_bind("b", fx.root, "b");
	ck_assert_uint_eq(a, b);
}

START_TEST(begin_commit)
{
	fhmap_copyup_intent in[2];
	fhmap_object obj;
	fhmap_realfh up;
	size_t n;
	uint64_t ino;

	hardlinked_pair();
	CK_OK(fhmap_copyup_begin(fx.map, a, fx.upper_id));
	ck_assert_int_eq(fhmap_copyup_begin(fx.map, a, fx.upper_id), -EBUSY);
	CK_OK(fhmap_copyup_pending(in, 2, &n, fx.map));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(in[0].ino, a);
	ck_assert_uint_eq(in[0].upper_layer, fx.upper_id);
	ck_assert_uint_eq(in[0].pid, (uint32_t)getpid());
	ck_assert_uint_le(in[0].started, (uint64_t)time(NULL));

	fx_make("upper/a", "new");
	up = fx_realfh(fx.upper_id, "a");
	CK_OK(fhmap_copyup_commit(fx.map, a, &up));
	CK_OK(fhmap_get(&obj, fx.map, a));
	ck_assert_int_eq(obj.state, FHMAP_STATE_UPPER);
	ck_assert(obj.has_origin && obj.has_upper);
	ck_assert_mem_eq(obj.upper.data, up.data, up.len);
	CK_OK(fhmap_copyup_pending(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 0);
	/* Both links still find the object: through the origin and the upper handle. */
	ck_assert_uint_eq(fx_bind("b", fx.root, "b"), a);
	CK_OK(fhmap_lookup_upper(&ino, fx.map, &up));
	ck_assert_uint_eq(ino, a);
	ck_assert_int_eq(fhmap_copyup_begin(fx.map, a, fx.upper_id), -EEXIST);
	ck_assert_int_eq(fhmap_copyup_commit(fx.map, a, &up), -EINVAL);
}
END_TEST

START_TEST(adopt_in_one_step)
{
	fhmap_realfh up = fx_fake_fh(fx.upper_id, 61), up2 = fx_fake_fh(fx.upper_id, 62);
	fhmap_realfh low = fx_fake_fh(fx.lower_id, 63);
	fhmap_object obj, got;
	uint64_t ino, c;
	size_t n;

	hardlinked_pair();
	/* From the origin, with no intent. */
	CK_OK(fhmap_copyup_adopt(&obj, fx.map, a, &up));
	ck_assert_int_eq(obj.state, FHMAP_STATE_UPPER);
	CK_OK(fhmap_get(&got, fx.map, a));
	ck_assert_mem_eq(&obj, &got, sizeof(obj));
	CK_OK(fhmap_lookup_upper(&ino, fx.map, &up));
	ck_assert_uint_eq(ino, a);
	/* Again with the same handle (a recovery run twice); not another. */
	CK_OK(fhmap_copyup_adopt(NULL, fx.map, a, &up));
	ck_assert_int_eq(fhmap_copyup_adopt(NULL, fx.map, a, &up2), -EEXIST);
	/* From a pending intent, which it clears. */
	CK_OK(fhmap_bind(&c, fx.map, &low, fx.root, "c", S_IFREG));
	CK_OK(fhmap_copyup_begin(fx.map, c, fx.upper_id));
	ck_assert_int_eq(fhmap_copyup_adopt(NULL, fx.map, c, &up), -EEXIST); /* a's handle */
	ck_assert_int_eq(fhmap_copyup_adopt(NULL, fx.map, c, &low), -ENXIO);  /* not the upper layer */
	CK_OK(fhmap_copyup_adopt(&obj, fx.map, c, &up2));
	CK_OK(fhmap_copyup_pending(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 0);
	CK_OK(fhmap_unlink(fx.map, c));
	ck_assert_int_eq(fhmap_copyup_adopt(NULL, fx.map, c, &up2), -ESTALE);
	ck_assert_int_eq(fhmap_copyup_adopt(NULL, fx.map, 999999, &up2), -ENOENT);
}
END_TEST

START_TEST(commit_validates)
{
	fhmap_realfh up = fx_fake_fh(fx.upper_id, 1), wrong;
	uint64_t c;

	hardlinked_pair();
	fx_make("lower/c", "c");
	c = fx_bind("c", fx.root, "c");
	ck_assert_int_eq(fhmap_copyup_commit(fx.map, a, &up), -EINVAL); /* no intent */
	ck_assert_int_eq(fhmap_copyup_begin(fx.map, a, fx.lower_id), -ENXIO);
	ck_assert_int_eq(fhmap_copyup_begin(fx.map, a, 99), -ENXIO);
	ck_assert_int_eq(fhmap_copyup_begin(fx.map, 999, fx.upper_id), -ENOENT);
	CK_OK(fhmap_copyup_begin(fx.map, a, fx.upper_id));
	CK_OK(fhmap_copyup_begin(fx.map, c, fx.upper_id));
	fx_make("upper/a", "new");
	up = fx_realfh(fx.upper_id, "a");
	wrong = up;
	wrong.layer = fx.lower_id;
	ck_assert_int_eq(fhmap_copyup_commit(fx.map, a, &wrong), -ENXIO);
	CK_OK(fhmap_copyup_commit(fx.map, a, &up));
	/* One upper file cannot become two objects. */
	ck_assert_int_eq(fhmap_copyup_commit(fx.map, c, &up), -EEXIST);
}
END_TEST

START_TEST(abort_returns_to_origin)
{
	fhmap_object obj;
	size_t n;

	hardlinked_pair();
	ck_assert_int_eq(fhmap_copyup_abort(fx.map, a), -EINVAL);
	CK_OK(fhmap_copyup_begin(fx.map, a, fx.upper_id));
	CK_OK(fhmap_copyup_abort(fx.map, a));
	CK_OK(fhmap_get(&obj, fx.map, a));
	ck_assert_int_eq(obj.state, FHMAP_STATE_ORIGIN);
	ck_assert(!obj.has_upper);
	CK_OK(fhmap_copyup_pending(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 0);
	CK_OK(fhmap_copyup_begin(fx.map, a, fx.upper_id)); /* can start over */
}
END_TEST

static int warnings;
static char warning[512];

static void count_warnings(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (level == FHMAP_LOG_WARN) {
		warnings++;
		strncpy(warning, msg, sizeof(warning) - 1);
	}
}

/* A writer killed between begin and commit leaves an intent that the next
 * open reports, and that can be rolled forward (or back). */
START_TEST(crash_leftover_reported_and_resolved)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap_copyup_intent in;
	fhmap_object obj;
	fhmap_realfh up;
	int status;
	pid_t pid;
	size_t n;

	hardlinked_pair();
	fhmap_close(fx.map);
	fx.map = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fhmap *m = NULL;

		if (fhmap_open(&m, fx.db, NULL) || fhmap_copyup_begin(m, a, fx.upper_id))
			_exit(1);
		kill(getpid(), SIGKILL); /* die with the intent recorded */
		_exit(2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	o.log = count_warnings;
	CK_OK(fhmap_open(&fx.map, fx.db, &o));
	ck_assert_int_eq(warnings, 1);
	ck_assert_msg(strstr(warning, "1 copy-up intent") != NULL, "warning: %s", warning);
	CK_OK(fhmap_copyup_pending(&in, 1, &n, fx.map));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(in.ino, a);
	ck_assert_uint_eq(in.pid, (uint32_t)pid);
	CK_OK(fhmap_get(&obj, fx.map, a));
	ck_assert_int_eq(obj.state, FHMAP_STATE_COPYUP);

	/* Roll forward: the upper file is in place. */
	fx_make("upper/a", "copied");
	up = fx_realfh(fx.upper_id, "a");
	CK_OK(fhmap_copyup_commit(fx.map, a, &up));
	CK_OK(fhmap_copyup_pending(NULL, 0, &n, fx.map));
	ck_assert_uint_eq(n, 0);
}
END_TEST

int main(void)
{
	TCase *tc;
	Suite *s = fx_suite("copyup", &tc);

	tcase_add_test(tc, begin_commit);
	tcase_add_test(tc, commit_validates);
	tcase_add_test(tc, adopt_in_one_step);
	tcase_add_test(tc, abort_returns_to_origin);
	tcase_add_test(tc, crash_leftover_reported_and_resolved);
	return fx_run(s);
}
