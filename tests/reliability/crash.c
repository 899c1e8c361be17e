/*
 * Crash consistency: a forked writer binds, copies up (intent + commit or
 * abort), renames, unlinks, creates upper-born objects and commits batches
 * in a loop, logging an intent record before and a done record after each
 * operation to a pipe. The parent SIGKILLs it at a random moment, then opens
 * the map and checks that
 *   - every operation logged done is in the map, the one in flight is either
 *     fully there or not at all (a batch of three binds: all or none),
 *   - every object verified after an earlier kill is unchanged,
 *   - the map is consistent (rel_check_map),
 * and, given fhmapctl, that `fhmapctl check` reports nothing but crashed
 * copy-ups (which repair mends); then recovers pending copy-up intents with
 * fhmap_copyup_abort() as a daemon would, and starts the next writer on the
 * same map. (The writer's files do not mirror the union's namespace, so
 * `fhmapctl repair`, which checks files at their paths, is not run here.)
 *
 * Usage: rel_crash [--seconds N] [--max-kills N] [--fhmapctl PATH]
 * Defaults: $FHMAP_CRASH_SECONDS (90), no kill limit. Every fourth writer
 * runs in lazy sync mode, which must equally survive a process crash.
 */
#define _GNU_SOURCE
#include "rel.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum crash_op { OP_BIND = 1, OP_BEGIN, OP_COMMIT, OP_ABORT, OP_RENAME, OP_UNLINK, OP_CREATE, OP_BATCH };

#define MAX_STEPS 8
#define NDIRS 4
#define BATCH_N 3
/* Small on purpose: the writer's map grows often, so kills land in growth. */
#define WRITER_MAP_SIZE (128u * 1024u)

/* One pipe record; PIPE_BUF makes each write atomic. */
struct crash_rec {
	uint64_t n;     /* cycle number */
	uint32_t step;  /* index into the cycle's steps */
	uint32_t done;  /* 0 = about to start, 1 = returned 0 */
	uint64_t ino;   /* object made by BIND / CREATE */
	uint64_t pad;
};

struct crash_ctx {
	struct rel_union u;
	const char *ctl;          /* fhmapctl, or NULL */
	uint64_t dirs[NDIRS + 1]; /* root and four directories */
};

/* What a cycle's main object looks like after some of its steps. */
struct crash_expect {
	int bound;
	fhmap_state state;
	uint64_t parent;
	char name[32];
	int created;
	int batched;
};

/* Objects verified after an earlier kill, sorted by object number. */
struct crash_snap {
	fhmap_object *v;
	size_t n, cap;
};

struct crash_figures {
	uint64_t kills, rounds_lazy, done_ops, inflight_applied, inflight_absent, snap_checks,
	         walks, walk_lookups, recovered, ctl_checks, ctl_crashed;
};

static unsigned int crash_steps(uint64_t n, enum crash_op *s)
{
	unsigned int k = 0;

	s[k++] = OP_BIND;
	if (n % 4 != 3) {
		s[k++] = OP_BEGIN;
		s[k++] = n % 8 == 6 ? OP_ABORT : OP_COMMIT;
	}
	s[k++] = OP_RENAME;
	if (n % 3 == 0)
		s[k++] = OP_UNLINK;
	if (n % 5 == 0)
		s[k++] = OP_CREATE;
	if (n % 7 == 0)
		s[k++] = OP_BATCH;
	return k;
}

static void crash_name(char *buf, size_t size, char kind, uint64_t n, int j)
{
	if (j < 0)
		snprintf(buf, size, "%c%llu", kind, (unsigned long long)n);
	else
		snprintf(buf, size, "%c%llu_%d", kind, (unsigned long long)n, j);
}

static void crash_log(int fd, uint64_t n, uint32_t step, uint32_t done, uint64_t ino)
{
	struct crash_rec r = { n, step, done, ino, 0 };

	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(5);
}

static void crash_writer_fail(const char *what, uint64_t n, int rc)
{
	fprintf(stderr, "writer: %s of cycle %llu: %s\n", what, (unsigned long long)n,
	        fhmap_strerror(rc));
	_exit(4);
}

static int crash_fh(fhmap_realfh *fh, fhmap *map, uint32_t layer, const char *dir, char kind,
                    uint64_t n, int j, int create)
{
	char name[48];

	crash_name(name, sizeof(name), kind, n, j);
	if (create)
		rel_touch(dir, name);
	return fhmap_realfh_from_path(fh, map, layer, name);
}

static int crash_batch(fhmap *map, const struct crash_ctx *x, uint64_t n)
{
	fhmap_realfh fh[BATCH_N];
	char name[48];
	uint64_t ino;
	int rc;

	for (int j = 0; j < BATCH_N; j++) {
		rc = crash_fh(&fh[j], map, x->u.lower_id, x->u.lower, 'b', n, j, 1);
		if (rc)
			return rc;
	}
	for (;;) {
		rc = fhmap_batch_begin(map);
		for (int j = 0; rc == 0 && j < BATCH_N; j++) {
			crash_name(name, sizeof(name), 'b', n, j);
			rc = fhmap_bind(&ino, map, &fh[j], FHMAP_ROOT_INO, name, S_IFREG);
		}
		if (rc == 0)
			rc = fhmap_batch_commit(map);
		else
			fhmap_batch_abort(map);
		if (rc != -EAGAIN)
			return rc;
	}
}

static int crash_step(fhmap *map, const struct crash_ctx *x, uint64_t n, enum crash_op op,
                      uint64_t *ino, uint64_t *out)
{
	fhmap_realfh fh;
	char name[48];
	int rc;

	*out = 0;
	switch (op) {
	case OP_BIND:
		rc = crash_fh(&fh, map, x->u.lower_id, x->u.lower, 'f', n, -1, 1);
		crash_name(name, sizeof(name), 'f', n, -1);
		if (rc == 0)
			rc = fhmap_bind(ino, map, &fh, x->dirs[n % (NDIRS + 1)], name, S_IFREG);
		*out = *ino;
		return rc;
	case OP_BEGIN:
		return fhmap_copyup_begin(map, *ino, x->u.upper_id);
	case OP_COMMIT:
		rc = crash_fh(&fh, map, x->u.upper_id, x->u.upper, 'u', n, -1, 1);
		return rc ? rc : fhmap_copyup_commit(map, *ino, &fh);
	case OP_ABORT:
		return fhmap_copyup_abort(map, *ino);
	case OP_RENAME:
		crash_name(name, sizeof(name), 'r', n, -1);
		return fhmap_rename(map, *ino, x->dirs[(n / 2 + 1) % (NDIRS + 1)], name);
	case OP_UNLINK:
		return fhmap_unlink(map, *ino);
	case OP_CREATE:
		rc = crash_fh(&fh, map, x->u.upper_id, x->u.upper, 'c', n, -1, 1);
		crash_name(name, sizeof(name), 'c', n, -1);
		return rc ? rc : fhmap_create_upper(out, map, &fh, FHMAP_ROOT_INO, name, S_IFREG);
	case OP_BATCH:
		return crash_batch(map, x, n);
	}
	return -EINVAL;
}

static __attribute__((noreturn)) void crash_writer(const struct crash_ctx *x, uint64_t n0, int fd,
                                                   fhmap_sync_mode sync)
{
	enum crash_op steps[MAX_STEPS];
	uint64_t ino = 0, made;
	fhmap *map;
	int rc;

	rc = rel_open(&map, x->u.mapdir, 0, sync, WRITER_MAP_SIZE);
	if (rc)
		crash_writer_fail("open", n0, rc);
	for (uint64_t n = n0;; n++) {
		unsigned int k = crash_steps(n, steps);

		for (unsigned int s = 0; s < k; s++) {
			crash_log(fd, n, s, 0, 0);
			rc = crash_step(map, x, n, steps[s], &ino, &made);
			if (rc)
				crash_writer_fail("step", n, rc);
			crash_log(fd, n, s, 1, made);
		}
	}
}

static void crash_expect_after(struct crash_expect *e, const struct crash_ctx *x, uint64_t n,
                               unsigned int k)
{
	enum crash_op steps[MAX_STEPS];
	unsigned int total = crash_steps(n, steps);

	memset(e, 0, sizeof(*e));
	e->parent = x->dirs[n % (NDIRS + 1)];
	crash_name(e->name, sizeof(e->name), 'f', n, -1);
	for (unsigned int s = 0; s < k && s < total; s++) {
		switch (steps[s]) {
		case OP_BIND:
			e->bound = 1;
			e->state = FHMAP_STATE_ORIGIN;
			break;
		case OP_BEGIN:
			e->state = FHMAP_STATE_COPYUP;
			break;
		case OP_COMMIT:
			e->state = FHMAP_STATE_UPPER;
			break;
		case OP_ABORT:
			e->state = FHMAP_STATE_ORIGIN;
			break;
		case OP_RENAME:
			e->parent = x->dirs[(n / 2 + 1) % (NDIRS + 1)];
			crash_name(e->name, sizeof(e->name), 'r', n, -1);
			break;
		case OP_UNLINK:
			e->state = FHMAP_STATE_UNLINKED;
			break;
		case OP_CREATE:
			e->created = 1;
			break;
		case OP_BATCH:
			e->batched = 1;
			break;
		}
	}
}

static int crash_matches(const fhmap_object *o, const struct crash_expect *e,
                         const fhmap_realfh *upper)
{
	if (!e->bound || o->state != e->state || o->type != S_IFREG || !o->has_origin)
		return 0;
	if (e->state == FHMAP_STATE_UNLINKED)
		return 1;
	if (o->parent != e->parent || strcmp(o->name, e->name) != 0)
		return 0;
	if (e->state == FHMAP_STATE_UPPER)
		return o->has_upper && upper && rel_realfh_eq(&o->upper, upper);
	return !o->has_upper;
}

static void crash_snap_add(struct crash_snap *s, const fhmap_object *o)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		REL_ASSERT(s->v, "out of memory");
	}
	REL_ASSERT(s->n == 0 || s->v[s->n - 1].ino < o->ino, "object %llu made out of order",
	           (unsigned long long)o->ino);
	s->v[s->n++] = *o;
}

static fhmap_object *crash_snap_find(struct crash_snap *s, uint64_t ino)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (s->v[mid].ino == ino)
			return &s->v[mid];
		if (s->v[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int crash_same(const fhmap_object *a, const fhmap_object *b)
{
	return a->ino == b->ino && a->gen == b->gen && a->type == b->type && a->state == b->state &&
	       a->parent == b->parent && strcmp(a->name, b->name) == 0 &&
	       a->has_origin == b->has_origin && a->has_upper == b->has_upper &&
	       (!a->has_origin || rel_realfh_eq(&a->origin, &b->origin)) &&
	       (!a->has_upper || rel_realfh_eq(&a->upper, &b->upper));
}

/* Looks up the object of file kind/n/j on a layer; 0 with *ino = 0 when the
 * file was never created or is not in the index. */
static void crash_find(uint64_t *ino, fhmap *map, const struct crash_ctx *x, int upper, char kind,
                       uint64_t n, int j, fhmap_realfh *fh)
{
	int rc;

	*ino = 0;
	rc = crash_fh(fh, map, upper ? x->u.upper_id : x->u.lower_id, upper ? x->u.upper : x->u.lower,
	              kind, n, j, 0);
	if (rc == -ENOENT)
		return;
	REL_ASSERT(rc == 0, "real handle of %c%llu: %s", kind, (unsigned long long)n,
	           fhmap_strerror(rc));
	rc = upper ? fhmap_lookup_upper(ino, map, fh) : fhmap_lookup_origin(ino, map, fh);
	REL_ASSERT(rc == 0 || rc == -ENOENT, "lookup of %c%llu: %s", kind, (unsigned long long)n,
	           fhmap_strerror(rc));
	if (rc)
		*ino = 0;
}

/* Verifies the main object of cycle n given d steps done and i started, and
 * adds it to the snapshot. */
static void crash_verify_main(fhmap *map, const struct crash_ctx *x, uint64_t n, unsigned int d,
                              unsigned int i, uint64_t logged_ino, struct crash_snap *snap,
                              struct crash_figures *fig)
{
	struct crash_expect lo, hi;
	fhmap_realfh ofh, ufh;
	fhmap_object o;
	uint64_t ino, uino;
	int ok_lo, ok_hi;

	crash_expect_after(&lo, x, n, d);
	crash_expect_after(&hi, x, n, i);
	crash_find(&ino, map, x, 0, 'f', n, -1, &ofh);
	crash_find(&uino, map, x, 1, 'u', n, -1, &ufh);
	if (logged_ino) {
		REL_ASSERT(ino == logged_ino || (ino == 0 && lo.state == FHMAP_STATE_UNLINKED) ||
		           (ino == 0 && hi.state == FHMAP_STATE_UNLINKED),
		           "cycle %llu: origin looks up to %llu, bind logged %llu", (unsigned long long)n,
		           (unsigned long long)ino, (unsigned long long)logged_ino);
		ino = logged_ino;
	} else if (ino == 0) {
		REL_ASSERT(!lo.bound, "cycle %llu: bound object lost", (unsigned long long)n);
		if (hi.bound)
			fig->inflight_absent++;
		return;
	}
	REL_OK(fhmap_get(&o, map, ino));
	ok_lo = crash_matches(&o, &lo, uino ? &ufh : NULL);
	ok_hi = crash_matches(&o, &hi, uino ? &ufh : NULL);
	REL_ASSERT(ok_lo || ok_hi,
	           "cycle %llu object %llu: state %d parent %llu name %s upper %d; expected after %u "
	           "or %u steps: state %d/%d parent %llu/%llu name %s/%s",
	           (unsigned long long)n, (unsigned long long)ino, (int)o.state,
	           (unsigned long long)o.parent, o.name, o.has_upper, d, i, (int)lo.state,
	           (int)hi.state, (unsigned long long)lo.parent, (unsigned long long)hi.parent, lo.name,
	           hi.name);
	if (lo.bound != hi.bound || lo.state != hi.state || lo.parent != hi.parent ||
	    strcmp(lo.name, hi.name) != 0) {
		if (ok_lo)
			fig->inflight_absent++;
		else
			fig->inflight_applied++;
	}
	if (o.state == FHMAP_STATE_UPPER)
		REL_ASSERT(uino == ino, "cycle %llu: upper looks up to %llu, not %llu",
		           (unsigned long long)n, (unsigned long long)uino, (unsigned long long)ino);
	crash_snap_add(snap, &o);
}

static void crash_verify_extra(fhmap *map, const struct crash_ctx *x, uint64_t n, unsigned int d,
                               unsigned int i, uint64_t logged_cino, struct crash_snap *snap,
                               struct crash_figures *fig)
{
	struct crash_expect lo, hi;
	fhmap_realfh fh;
	fhmap_object o;
	uint64_t ino, batch[BATCH_N];
	int bound = 0;

	crash_expect_after(&lo, x, n, d);
	crash_expect_after(&hi, x, n, i);
	crash_find(&ino, map, x, 1, 'c', n, -1, &fh);
	REL_ASSERT(!lo.created || ino, "cycle %llu: created object lost", (unsigned long long)n);
	REL_ASSERT(hi.created || !ino, "cycle %llu: object created before its step",
	           (unsigned long long)n);
	REL_ASSERT(!logged_cino || ino == logged_cino, "cycle %llu: created %llu, index says %llu",
	           (unsigned long long)n, (unsigned long long)logged_cino, (unsigned long long)ino);
	if (ino) {
		REL_OK(fhmap_get(&o, map, ino));
		REL_ASSERT(o.state == FHMAP_STATE_UPPER && !o.has_origin && o.has_upper &&
		           o.parent == FHMAP_ROOT_INO && rel_realfh_eq(&o.upper, &fh),
		           "cycle %llu: created object %llu is wrong", (unsigned long long)n,
		           (unsigned long long)ino);
		crash_snap_add(snap, &o);
	}
	for (int j = 0; j < BATCH_N; j++) {
		crash_find(&batch[j], map, x, 0, 'b', n, j, &fh);
		bound += batch[j] != 0;
	}
	REL_ASSERT(bound == 0 || bound == BATCH_N, "cycle %llu: batch half committed (%d of %d)",
	           (unsigned long long)n, bound, BATCH_N);
	REL_ASSERT(!lo.batched || bound, "cycle %llu: committed batch lost", (unsigned long long)n);
	REL_ASSERT(hi.batched || !bound, "cycle %llu: batch before its step", (unsigned long long)n);
	if (hi.created != lo.created) {
		fig->inflight_applied += ino != 0;
		fig->inflight_absent += ino == 0;
	}
	if (hi.batched != lo.batched) {
		fig->inflight_applied += bound != 0;
		fig->inflight_absent += bound == 0;
	}
	for (int j = 0; j < bound; j++) {
		REL_OK(fhmap_get(&o, map, batch[j]));
		crash_snap_add(snap, &o);
	}
}

struct crash_round {
	uint64_t n0, nmax;
	unsigned int *done, *intent;
	uint64_t *ino, *cino;
	size_t cap;
};

/* Reads the whole log of a dead writer. */
static void crash_read_log(struct crash_round *r, int fd, struct crash_figures *fig)
{
	struct crash_rec rec;
	ssize_t got;

	r->nmax = r->n0;
	memset(r->done, 0, r->cap * sizeof(*r->done));
	memset(r->intent, 0, r->cap * sizeof(*r->intent));
	memset(r->ino, 0, r->cap * sizeof(*r->ino));
	memset(r->cino, 0, r->cap * sizeof(*r->cino));
	while ((got = read(fd, &rec, sizeof(rec))) == (ssize_t)sizeof(rec)) {
		size_t k = rec.n - r->n0;
		enum crash_op steps[MAX_STEPS];

		REL_ASSERT(rec.n >= r->n0 && k < r->cap, "log record of cycle %llu out of range",
		           (unsigned long long)rec.n);
		crash_steps(rec.n, steps);
		if (rec.n > r->nmax)
			r->nmax = rec.n;
		if (rec.done) {
			r->done[k] = rec.step + 1;
			fig->done_ops++;
			if (steps[rec.step] == OP_BIND)
				r->ino[k] = rec.ino;
			else if (steps[rec.step] == OP_CREATE)
				r->cino[k] = rec.ino;
		} else {
			r->intent[k] = rec.step + 1;
		}
	}
	REL_ASSERT(got == 0, "short log record (%zd bytes)", got);
}

static void crash_verify_snap(fhmap *map, struct crash_snap *s, size_t upto, struct crash_figures *fig)
{
	fhmap_object o;

	for (size_t k = 0; k < upto; k++) {
		REL_OK(fhmap_get(&o, map, s->v[k].ino));
		REL_ASSERT(crash_same(&o, &s->v[k]),
		           "object %llu changed after a later crash: state %d->%d gen %u->%u name %s->%s",
		           (unsigned long long)o.ino, (int)s->v[k].state, (int)o.state, s->v[k].gen,
		           o.gen, s->v[k].name, o.name);
		fig->snap_checks++;
	}
}

/* Recovers pending intents as a restarted daemon would (the upper file of
 * an unfinished copy-up is not trusted). */
static void crash_recover(fhmap *map, struct crash_snap *s, struct crash_figures *fig)
{
	fhmap_copyup_intent in[64];
	size_t count;

	do {
		REL_OK(fhmap_copyup_pending(in, 64, &count, map));
		for (size_t k = 0; k < count && k < 64; k++) {
			fhmap_object *snap = crash_snap_find(s, in[k].ino);

			REL_ASSERT(snap, "intent for unknown object %llu", (unsigned long long)in[k].ino);
			REL_OK(fhmap_copyup_abort(map, in[k].ino));
			REL_OK(fhmap_get(snap, map, in[k].ino));
			REL_ASSERT(snap->state == FHMAP_STATE_ORIGIN, "object %llu not ORIGIN after abort",
			           (unsigned long long)in[k].ino);
			fig->recovered++;
		}
	} while (count > 0);
}

/* Runs fhmapctl CMD MAPDIR [--json]; returns its exit status and, with
 * @p out, its output (stdout and stderr). */
static int crash_ctl(const struct crash_ctx *x, const char *cmd, char *out, size_t size)
{
	int pfd[2], status;
	char sink[256];
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	REL_ASSERT(pipe2(pfd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	REL_ASSERT(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO); /* shown with the output on failure */
		execl(x->ctl, x->ctl, cmd, x->u.mapdir, out ? "--json" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while ((n = out ? read(pfd[0], out + got, size - 1 - got) : read(pfd[0], sink, sizeof(sink))) > 0)
		got += out ? (size_t)n : 0;
	close(pfd[0]);
	if (out)
		out[got] = '\0';
	REL_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status), "fhmapctl %s: status 0x%x", cmd,
	           status);
	return WEXITSTATUS(status);
}

/* fhmapctl check may find crashed copy-ups (one per pending intent), which
 * repair mends, and nothing else. */
static void crash_ctl_check(const struct crash_ctx *x, fhmap *map, struct crash_figures *fig)
{
	static char out[1 << 16];
	size_t pending, kinds = 0, crashed = 0;
	int rc = crash_ctl(x, "check", out, sizeof(out));

	REL_OK(fhmap_copyup_pending(NULL, 0, &pending, map));
	for (const char *p = out; (p = strstr(p, "\"kind\"")) != NULL; p += 6) {
		const char *v = p + 6;

		while (*v == ' ' || *v == ':')
			v++;
		kinds++;
		crashed += strncmp(v, "\"copyup-crashed\"", 16) == 0;
	}
	REL_ASSERT((rc == 0 && kinds == 0 && pending == 0) || (rc == 1 && kinds == crashed && crashed == pending),
	           "fhmapctl check after kill %llu: exit %d, %zu problems, %zu crashed copy-ups, %zu "
	           "pending:\n%s", (unsigned long long)fig->kills, rc, kinds, crashed, pending, out);
	fig->ctl_checks++;
	fig->ctl_crashed += crashed;
}

static void crash_setup(struct crash_ctx *x)
{
	fhmap *map;
	fhmap_realfh fh;
	char name[8];

	rel_union_init(&x->u, "crash");
	REL_OK(rel_open(&map, x->u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_FULL, WRITER_MAP_SIZE));
	rel_union_register(&x->u, map);
	x->dirs[0] = FHMAP_ROOT_INO;
	for (int k = 1; k <= NDIRS; k++) {
		snprintf(name, sizeof(name), "d%d", k);
		rel_mkdir(x->u.lower, name);
		REL_OK(fhmap_realfh_from_path(&fh, map, x->u.lower_id, name));
		REL_OK(fhmap_bind(&x->dirs[k], map, &fh, FHMAP_ROOT_INO, name, S_IFDIR));
	}
	fhmap_close(map);
}

static void crash_round_alloc(struct crash_round *r, size_t cap)
{
	r->cap = cap;
	r->done = calloc(cap, sizeof(*r->done));
	r->intent = calloc(cap, sizeof(*r->intent));
	r->ino = calloc(cap, sizeof(*r->ino));
	r->cino = calloc(cap, sizeof(*r->cino));
	REL_ASSERT(r->done && r->intent && r->ino && r->cino, "out of memory");
}

/* One writer life: fork, kill at a random moment, verify. */
static void crash_round_run(struct crash_ctx *x, struct crash_round *r, struct crash_snap *snap,
                            uint64_t *rng, struct crash_figures *fig)
{
	fhmap_sync_mode sync = fig->kills % 4 == 3 ? FHMAP_SYNC_LAZY : FHMAP_SYNC_FULL;
	uint64_t delay = rel_rand(rng) % 8 == 0 ? rel_rand(rng) % 500 : rel_rand(rng) % 30000;
	struct timespec ts = { 0, (long)delay * 1000 };
	struct rel_check c;
	size_t settled = snap->n;
	int pfd[2], status;
	fhmap *map;
	pid_t pid;

	REL_ASSERT(pipe2(pfd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	REL_ASSERT(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(pfd[0]);
		crash_writer(x, r->n0, pfd[1], sync);
	}
	close(pfd[1]);
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	REL_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	REL_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	           "writer died by itself (status 0x%x)", status);
	fig->kills++;
	fig->rounds_lazy += sync == FHMAP_SYNC_LAZY;
	crash_read_log(r, pfd[0], fig);
	close(pfd[0]);

	REL_OK(rel_open(&map, x->u.mapdir, 0, FHMAP_SYNC_FULL, WRITER_MAP_SIZE));
	crash_verify_snap(map, snap, settled, fig);
	for (uint64_t n = r->n0; n <= r->nmax; n++) {
		size_t k = n - r->n0;

		if (r->intent[k] == 0)
			continue;
		crash_verify_main(map, x, n, r->done[k], r->intent[k], r->ino[k], snap, fig);
		crash_verify_extra(map, x, n, r->done[k], r->intent[k], r->cino[k], snap, fig);
	}
	if (x->ctl)
		crash_ctl_check(x, map, fig);
	crash_recover(map, snap, fig);
	REL_ASSERT(rel_check_map(map, &c) == 0, "map inconsistent after kill %llu",
	           (unsigned long long)fig->kills);
	fig->walks++;
	fig->walk_lookups += c.lookups;
	fhmap_close(map);
	r->n0 = r->nmax + 1;
}

int main(int argc, char **argv)
{
	long seconds = rel_env_long("FHMAP_CRASH_SECONDS", 90), max_kills = 0;
	struct crash_figures fig = { 0 };
	struct crash_snap snap = { 0 };
	struct crash_round r = { 0 };
	struct crash_ctx x = { 0 };
	uint64_t rng, t0;

	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--seconds") == 0 && a + 1 < argc)
			seconds = strtol(argv[++a], NULL, 0);
		else if (strcmp(argv[a], "--max-kills") == 0 && a + 1 < argc)
			max_kills = strtol(argv[++a], NULL, 0);
		else if (strcmp(argv[a], "--fhmapctl") == 0 && a + 1 < argc)
			x.ctl = argv[++a];
		else
			REL_ASSERT(0, "usage: %s [--seconds N] [--max-kills N] [--fhmapctl PATH]", argv[0]);
	}
	rng = rel_seed("rel_crash");
	crash_setup(&x);
	crash_round_alloc(&r, 1u << 16);
	r.n0 = 1;
	t0 = rel_now_us();
	while (rel_now_us() - t0 < (uint64_t)seconds * 1000000u &&
	       (max_kills == 0 || fig.kills < (uint64_t)max_kills))
		crash_round_run(&x, &r, &snap, &rng, &fig);
	REL_ASSERT(fig.done_ops > 0, "no writer ever committed an operation");
	printf("rel_crash: %llu kills (%llu in lazy sync mode) in %llu s, %llu cycles\n",
	       (unsigned long long)fig.kills, (unsigned long long)fig.rounds_lazy,
	       (unsigned long long)((rel_now_us() - t0) / 1000000u), (unsigned long long)(r.n0 - 1));
	printf("rel_crash: %llu committed operations logged, all found; in-flight operation at the "
	       "kill: %llu applied, %llu absent, never partial\n",
	       (unsigned long long)fig.done_ops, (unsigned long long)fig.inflight_applied,
	       (unsigned long long)fig.inflight_absent);
	if (x.ctl)
		printf("rel_crash: fhmapctl check after each of %llu kills: nothing but %llu crashed "
		       "copy-ups\n", (unsigned long long)fig.ctl_checks,
		       (unsigned long long)fig.ctl_crashed);
	printf("rel_crash: %llu objects tracked, %llu re-verifications of earlier objects, "
	       "%llu consistency walks (%llu lookups), %llu pending intents recovered\n",
	       (unsigned long long)snap.n, (unsigned long long)fig.snap_checks,
	       (unsigned long long)fig.walks, (unsigned long long)fig.walk_lookups,
	       (unsigned long long)fig.recovered);
	free(snap.v);
	free(r.done);
	free(r.intent);
	free(r.ino);
	free(r.cino);
	rel_union_free(&x.u);
	return 0;
}
