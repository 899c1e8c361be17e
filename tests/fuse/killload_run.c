/* killload run MNT STATE JOURNAL PROCS SEED SECONDS
 *
 * The workload: the state's threads, spread over PROCS processes, each
 * doing random operations on its own objects until the mount goes away
 * (the daemon was killed: ENOTCONN, ECONNABORTED) or SECONDS pass. Any
 * other failure is a bug (the model says each operation must work): it
 * is reported and ends that thread, and the exit status is 1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "killload.h"

struct worker {
	struct kl_state *s;
	struct kl_thread *th;
	const char *mnt;
	int journal;
	unsigned int seed;
	double deadline;
	long ops;
	int lost, failed;
	pthread_t tid;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int gone(int e)
{
	return e == ENOTCONN || e == ECONNABORTED;
}

/* One line, one write(): lines of concurrent writers never mix. */
static void journal(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void journal(struct worker *w, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (write(w->journal, line, (size_t)n) != n) {
		perror("killload: journal");
		exit(2);
	}
}

static unsigned int rnd(struct worker *w, unsigned int n)
{
	return n ? (unsigned int)rand_r(&w->seed) % n : 0;
}

/* A random alive object of the thread: a file (dir 0), a directory (1). */
static struct kl_obj *pick(struct worker *w, int dir, int *count)
{
	struct kl_obj *hit = NULL;
	int n = 0;

	for (size_t i = 0; i < w->th->n; i++) {
		struct kl_obj *o = &w->th->o[i];

		if (o->alive && o->dir == dir && rnd(w, (unsigned int)++n) == 0)
			hit = o;
	}
	if (count)
		*count = n;
	return hit;
}

/* A directory for a new name: a shared top one or one of the thread's. */
static long pick_parent(struct worker *w)
{
	struct kl_obj *d = rnd(w, 2) ? pick(w, 1, NULL) : NULL;

	return d ? d->id : 1 + (long)rnd(w, KL_TOPS);
}

static void new_name(struct worker *w, char *name, char letter)
{
	snprintf(name, KL_NAME, "%c%d_%lu", letter, w->th->t, w->th->seq);
}

static int has_child(struct kl_thread *th, long dir)
{
	for (size_t i = 0; i < th->n; i++)
		for (int k = 0; th->o[i].alive && k < th->o[i].nlinks; k++)
			if (th->o[i].l[k].parent == dir)
				return 1;
	return 0;
}

static void use_link(struct worker *w, struct kl_op *op, const struct kl_obj *o)
{
	const struct kl_link *l = &o->l[rnd(w, (unsigned int)o->nlinks)];

	op->id = o->id;
	op->p1 = l->parent;
	snprintf(op->n1, KL_NAME, "%s", l->name);
}

static int choose_rename(struct worker *w, struct kl_op *op, int dir)
{
	struct kl_obj *o = pick(w, dir, NULL), *target;

	if (!o)
		return -1;
	use_link(w, op, o);
	op->code = KL_RENAME;
	if (!dir && rnd(w, 4) == 0 && (target = pick(w, 0, NULL))) { /* onto another file's name */
		const struct kl_link *l = &target->l[rnd(w, (unsigned int)target->nlinks)];

		op->p2 = l->parent;
		snprintf(op->n2, KL_NAME, "%s", l->name);
		return 0;
	}
	op->p2 = pick_parent(w);
	new_name(w, op->n2, 'r');
	return dir && kl_below(w->s, op->p2, o->id) ? -1 : 0; /* not into itself */
}

/* A random operation the model allows; -1: none this time. */
static int choose(struct kl_op *op, struct worker *w)
{
	unsigned int r = rnd(w, 100);
	int nfiles, ndirs;
	struct kl_obj *o;

	memset(op, 0, sizeof(*op));
	pick(w, 0, &nfiles);
	pick(w, 1, &ndirs);
	if (r < 10 && nfiles < 14) {
		op->code = KL_CREATE;
	} else if (r >= 78 && r < 84 && ndirs < 6) {
		op->code = KL_MKDIR;
	} else if (r >= 30 && r < 38 && (o = pick(w, (int)rnd(w, 2), NULL))) {
		use_link(w, op, o);
		op->code = KL_XATTR_SET;
		op->v = o->xver + 1;
		return 0;
	} else if (r >= 38 && r < 59) {
		return choose_rename(w, op, r >= 52);
	} else if (r >= 59 && r < 66 && (o = pick(w, 0, NULL)) && o->nlinks < KL_LINKS) {
		use_link(w, op, o);
		op->code = KL_LINK;
		op->p2 = pick_parent(w);
		new_name(w, op->n2, 'k');
		return 0;
	} else if (r >= 66 && r < 78 && nfiles > 4 && (o = pick(w, 0, NULL))) {
		use_link(w, op, o);
		op->code = KL_UNLINK;
		return 0;
	} else if (r >= 84 && r < 88 && (o = pick(w, 1, NULL)) && !has_child(w->th, o->id)) {
		use_link(w, op, o);
		op->code = KL_RMDIR;
		return 0;
	} else if ((o = pick(w, 0, NULL))) {
		use_link(w, op, o);
		op->code = KL_WRITE;
		op->v = o->ver + 1;
		return 0;
	} else {
		return -1;
	}
	/* create or mkdir */
	o = kl_new_obj(w->th, op->code == KL_MKDIR);
	op->id = o->id;
	op->p1 = pick_parent(w);
	new_name(w, op->n1, op->code == KL_MKDIR ? 'g' : 'f');
	return 0;
}

static int err(int r)
{
	return r < 0 ? -errno : 0;
}

static int write_record(const char *path, const struct kl_op *op)
{
	unsigned char rec[KL_REC];
	int fd = open(path, O_WRONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	kl_content(rec, op->id, op->v, KL_REC);
	r = pwrite(fd, rec, KL_REC, 0) == KL_REC ? 0 : -(errno ? errno : EIO);
	close(fd); /* the write returned: the daemon has it */
	return r;
}

/* Runs @op; *ino: the st_ino of a new object, when it could be read. */
static int perform(struct worker *w, const struct kl_op *op, uint64_t *ino)
{
	char a[4096], b[4096], v[32];
	struct kl_link l1 = { .parent = op->p1 }, l2 = { .parent = op->p2 };
	struct stat st;
	int fd, r;

	snprintf(l1.name, KL_NAME, "%s", op->n1);
	snprintf(l2.name, KL_NAME, "%s", op->n2);
	kl_root_link(a, sizeof(a), w->mnt, w->s, &l1);
	kl_root_link(b, sizeof(b), w->mnt, w->s, &l2);
	*ino = 0;
	switch (op->code) {
	case KL_CREATE:
		if ((fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
			return -errno;
		if (fstat(fd, &st) == 0)
			*ino = st.st_ino;
		close(fd);
		return 0;
	case KL_MKDIR:
		if ((r = err(mkdir(a, 0755))) == 0 && stat(a, &st) == 0)
			*ino = st.st_ino;
		return r;
	case KL_WRITE:
		return write_record(a, op);
	case KL_XATTR_SET:
		snprintf(v, sizeof(v), "x%u", op->v);
		return err(lsetxattr(a, KL_XATTR, v, strlen(v), 0));
	case KL_RENAME:
		return err(rename(a, b));
	case KL_LINK:
		return err(link(a, b));
	case KL_UNLINK:
		return err(unlink(a));
	case KL_RMDIR:
		return err(rmdir(a));
	}
	return -EINVAL;
}

/* The handle of a new object, taken at once (it is checked after every
 * later kill). */
static int take_handle(struct worker *w, struct kl_obj *o)
{
	char path[4096];
	struct file_handle *fh = calloc(1, sizeof(*fh) + KL_HMAX);
	char hex[2 * KL_HMAX + 1];
	int mid, r;

	if (!fh)
		return -ENOMEM;
	fh->handle_bytes = KL_HMAX;
	kl_root_path(path, sizeof(path), w->mnt, w->s, o->id);
	r = err(name_to_handle_at(AT_FDCWD, path, fh, &mid, 0));
	if (r == 0) {
		kl_hex(hex, fh->f_handle, fh->handle_bytes);
		journal(w, "H %d %ld %d %s\n", w->th->t, o->id, fh->handle_type, hex);
	}
	free(fh);
	return r;
}

/* Lists one of the thread's directories alongside the changes (lookups
 * and listings of a directory while other threads change theirs). Not a
 * shared one: a READDIRPLUS reply of the kernel's that carries the link
 * count from before a concurrent link() overwrites the count of the link's
 * reply (Linux 6.18), the next unlink takes the kernel's count to 0 and
 * link() of the file then fails with ENOENT before it reaches the daemon
 * (docs/reliability.md). Each thread's own listings never race its own
 * links. */
static int list_dir(struct worker *w)
{
	struct kl_obj *o = pick(w, 1, NULL);
	char path[4096];
	DIR *d;

	if (!o)
		return 0;
	kl_root_path(path, sizeof(path), w->mnt, w->s, o->id);
	if (!(d = opendir(path)))
		return -errno;
	errno = 0;
	while (readdir(d))
		;
	int r = -errno;
	closedir(d);
	return r;
}

/* 0 to go on; else the thread stops (lost or failed set). */
static int step(struct worker *w)
{
	static const char *const names[] = { "create", "mkdir", "write",  "setxattr",
		                             "rename", "link",  "unlink", "rmdir" };
	char line[512];
	struct kl_op op;
	uint64_t ino;
	int r;

	if (rnd(w, 16) == 0)
		r = list_dir(w);
	else if (choose(&op, w) < 0)
		return 0;
	else {
		unsigned long seq = w->th->seq++;

		kl_op_format(line, sizeof(line), w->th->t, seq, &op);
		journal(w, "%s", line);
		r = perform(w, &op, &ino);
		journal(w, "E %d %lu %d\n", w->th->t, seq, r);
		if (r == 0) {
			w->ops++;
			kl_apply(w->s, w->th->t, &op);
			if (ino)
				journal(w, "I %d %ld %" PRIu64 "\n", w->th->t, op.id, ino);
			if (op.code == KL_CREATE || op.code == KL_MKDIR)
				r = take_handle(w, kl_obj(w->s, op.id));
		} else if (!gone(-r)) {
			fprintf(stderr, "killload: thread %d: %s %s: %s\n", w->th->t, names[op.code],
			        line + 2, strerror(-r));
		}
	}
	if (r == 0)
		return 0;
	if (gone(-r))
		w->lost = 1;
	else
		w->failed = 1;
	return -1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (now() < w->deadline && step(w) == 0)
		;
	return NULL;
}

static int run_process(struct kl_state *s, const char *mnt, int jfd, int proc, int procs, unsigned int seed,
                       double seconds)
{
	struct worker w[KL_MAXT];
	int n = 0, failed = 0;

	for (int t = proc; t < s->nthreads; t += procs, n++) {
		w[n] = (struct worker){ .s = s,
			                .th = &s->th[t],
			                .mnt = mnt,
			                .journal = jfd,
			                .seed = seed * 131u + (unsigned int)t,
			                .deadline = now() + seconds };
		pthread_create(&w[n].tid, NULL, worker_main, &w[n]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		printf("killload run: thread %d: %ld operations, ended by %s\n", w[i].th->t, w[i].ops,
		       w[i].failed ? "a FAILURE"
		       : w[i].lost ? "the lost mount"
		                   : "the time limit");
		failed |= w[i].failed;
	}
	fflush(stdout);
	return failed;
}

int kl_run(int argc, char **argv)
{
	struct kl_state s;
	int procs, failed = 0, jfd, r;

	if (argc != 6 || (procs = atoi(argv[3])) < 1) {
		fprintf(stderr, "usage: killload run MNT STATE JOURNAL PROCS SEED SECONDS\n");
		return 2;
	}
	if ((r = kl_state_load(&s, argv[1])) < 0) {
		fprintf(stderr, "killload: %s: %s\n", argv[1], strerror(-r));
		return 2;
	}
	if ((jfd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		perror(argv[2]);
		return 2;
	}
	for (int p = 0; p < procs; p++) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(run_process(&s, argv[0], jfd, p, procs, (unsigned int)atol(argv[4]),
			                  atof(argv[5])));
		if (pid < 0) {
			perror("fork");
			return 2;
		}
	}
	for (int status, p = 0; p < procs; p++)
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			failed = 1;
	close(jfd);
	kl_state_free(&s);
	return failed;
}
