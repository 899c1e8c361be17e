/* killload check MNT STATE JOURNAL WORKDIR
 *
 * After a kill and a remount: replays the journal onto the state (what
 * returned), then checks the union against it. Each thread with an
 * operation whose outcome is unknown must show it whole, done or not
 * done; everything else exactly as the model says: the same names (no
 * half-done rename, no leftover), every file's st_ino, link count,
 * content and xattr; every handle taken so far opens its own object (same
 * st_ino, same content; a directory reconnects to its model path) or is
 * ESTALE when the object has no name left; no temporaries in the work dir.
 * Then takes the handles objects still lack, writes the new state and
 * makes the map durable (fsync of the root: fhmapctl check reads it next).
 * Exit 1 on any problem. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "killload.h"

/* A name the union shows, or what a handle opened. */
struct seen {
	char path[1024];
	int dir;
	int err; /* handles: -errno of the open */
	uint64_t ino;
	long nlink;
	unsigned char *data;
	long len;
	char x[32]; /* KL_XATTR, "" none */
};

struct seen_list {
	struct seen *v;
	size_t n, cap;
};

struct check {
	struct kl_state s;
	const char *mnt;
	struct kl_op pending[KL_MAXT];
	int has_pending[KL_MAXT];
	struct seen_list names[KL_MAXT];
	long problems, returned, done, undone, opened, stale;
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct check *c, const char *fmt, ...)
{
	va_list ap;

	c->problems++;
	fputs("killload check: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static struct seen *seen_add(struct seen_list *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		if (!(l->v = realloc(l->v, l->cap * sizeof(*l->v)))) {
			perror("killload: realloc");
			exit(2);
		}
	}
	memset(&l->v[l->n], 0, sizeof(l->v[0]));
	return &l->v[l->n++];
}

/* Reads what @fd shows: type, st_ino, links, content, xattr. */
static int observe(struct seen *e, int fd)
{
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -errno;
	e->dir = S_ISDIR(st.st_mode);
	e->ino = st.st_ino;
	e->nlink = (long)st.st_nlink;
	n = fgetxattr(fd, KL_XATTR, e->x, sizeof(e->x) - 1);
	e->x[n < 0 ? 0 : n] = '\0';
	if (n < 0 && errno != ENODATA)
		return -errno;
	if (e->dir)
		return 0;
	e->data = malloc(KL_BIG + 1);
	if (!e->data)
		return -ENOMEM;
	for (e->len = 0; e->len <= KL_BIG; e->len += n)
		if ((n = pread(fd, e->data + e->len, (size_t)(KL_BIG + 1 - e->len), e->len)) <= 0)
			break;
	return n < 0 ? -errno : 0;
}

/* ------------------------------------------------------------------------ */
/* The journal */

static int replay_line(struct check *c, const char *line)
{
	struct kl_op op;
	unsigned long seq, eseq;
	int t, rc, type;
	long id;
	uint64_t ino;
	char hex[2 * KL_HMAX + 2];
	struct kl_obj *o;

	if (line[0] == 'B' && kl_op_parse(&op, &t, &seq, line) == 0 && t >= 0 && t < c->s.nthreads) {
		struct kl_thread *th = &c->s.th[t];

		if (c->has_pending[t])
			problem(c, "thread %d started operation %lu with one unfinished", t, seq);
		if (op.code == KL_CREATE || op.code == KL_MKDIR)
			while (!kl_obj(&c->s, op.id) && th->n < KL_ID_BASE)
				kl_new_obj(th, op.code == KL_MKDIR); /* dead until it returns */
		c->pending[t] = op;
		c->has_pending[t] = 1;
		th->seq = seq + 1;
		return 0;
	}
	if (line[0] == 'E' && sscanf(line, "E %d %lu %d", &t, &eseq, &rc) == 3 && t >= 0 &&
	    t < c->s.nthreads && c->has_pending[t]) {
		if (rc == -ENOTCONN || rc == -ECONNABORTED)
			return 0; /* in flight when the daemon died: unknown */
		if (rc != 0) {
			problem(c, "thread %d: operation %lu failed: %s", t, eseq, strerror(-rc));
			return 0;
		}
		kl_apply(&c->s, t, &c->pending[t]);
		c->has_pending[t] = 0;
		c->returned++;
		return 0;
	}
	if (line[0] == 'I' && sscanf(line, "I %d %ld %" SCNu64, &t, &id, &ino) == 3 &&
	    (o = kl_obj(&c->s, id))) {
		o->ino = ino;
		return 0;
	}
	if (line[0] == 'H' && sscanf(line, "H %d %ld %d %257s", &t, &id, &type, hex) == 4 &&
	    (o = kl_obj(&c->s, id))) {
		o->htype = type;
		o->hlen = kl_unhex(o->fh, hex, KL_HMAX);
		return 0;
	}
	return -EINVAL;
}

static int replay(struct check *c, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (!f)
		return errno == ENOENT ? 0 : -errno; /* the first check of a union */
	while (fgets(line, sizeof(line), f))
		if (replay_line(c, line) < 0)
			problem(c, "journal line not understood: %s", line);
	fclose(f);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* What the union shows */

static void walk(struct check *c, int dirfd, const char *rel, int owner, int depth)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;

	if (!d) {
		problem(c, "%s: %s", rel, strerror(errno));
		close(dirfd);
		return;
	}
	while ((errno = 0, de = readdir(d))) {
		int t = kl_owner(de->d_name), fd;
		struct seen *e;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (t < 0 || t >= c->s.nthreads || (owner >= 0 && t != owner)) {
			problem(c, "%s/%s: a name no thread made here", rel, de->d_name);
			continue;
		}
		e = seen_add(&c->names[t]);
		snprintf(e->path, sizeof(e->path), "%s/%s", rel, de->d_name);
		fd = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || (e->err = observe(e, fd)) < 0) {
			problem(c, "%s: %s", e->path, strerror(fd < 0 ? errno : -e->err));
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (e->dir && depth < 64)
			walk(c, fd, e->path, t, depth + 1);
		else
			close(fd);
	}
	if (errno)
		problem(c, "readdir %s: %s", rel, strerror(errno));
	closedir(d);
}

static void walk_union(struct check *c, int mfd)
{
	DIR *d = fdopendir(dup(mfd));
	struct dirent *de;
	int tops = 0;

	while (d && (de = readdir(d))) {
		int k;
		char rest;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (sscanf(de->d_name, "d%d%c", &k, &rest) != 1 || k < 0 || k >= KL_TOPS) {
			problem(c, "/%s: a name no thread made here", de->d_name);
			continue;
		}
		tops++;
		int fd = openat(mfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			problem(c, "/%s: %s", de->d_name, strerror(errno));
		else
			walk(c, fd, de->d_name, -1, 0);
	}
	if (d)
		closedir(d);
	if (tops != KL_TOPS)
		problem(c, "the root shows %d of the %d top directories", tops, KL_TOPS);
}

/* ------------------------------------------------------------------------ */
/* The union against a model */

static int same_content(const struct kl_obj *o, const struct seen *e, unsigned char *buf)
{
	long size = o->ver ? o->size : 0;

	if (e->len != size)
		return 0;
	kl_content(buf, o->id, o->ver, size);
	return !memcmp(buf, e->data, (size_t)size);
}

static void describe(char *buf, size_t size, const struct kl_obj *o, const struct seen *e)
{
	snprintf(buf, size,
	         "st_ino %" PRIu64 " (object %ld has %" PRIu64 "), %ld links (model %d), %ld bytes "
	         "'%.20s' (model v%u, %ld bytes), xattr '%s' (model %u)",
	         e->ino, o->id, o->ino, e->nlink, o->nlinks, e->len, e->data ? (const char *)e->data : "",
	         o->ver, o->ver ? o->size : 0, e->x, o->xver);
}

/* Compares what thread @t's names show with its model in c->s (learning
 * the st_ino of new objects): the number of differences. */
static long compare(struct check *c, int t, int report, unsigned char *buf)
{
	struct kl_thread *th = &c->s.th[t];
	struct seen_list *l = &c->names[t];
	long diff = 0, expected = 0;
	char path[4096], what[512];
	int k;

	for (size_t i = 0; i < l->n; i++) {
		struct seen *e = &l->v[i];
		struct kl_obj *o = NULL;

		for (size_t j = 0; !o && j < th->n; j++)
			for (k = 0; th->o[j].alive && k < th->o[j].nlinks; k++) {
				kl_link_path(path, sizeof(path), &c->s, &th->o[j].l[k]);
				if (!strcmp(path, e->path)) {
					o = &th->o[j];
					break;
				}
			}
		if (!o) {
			diff++;
			if (report)
				problem(c, "%s: shown, but thread %d left no such name", e->path, t);
			continue;
		}
		expected++;
		if (!o->ino)
			o->ino = e->ino; /* made while the daemon died */
		char want[32] = "";
		if (o->xver)
			snprintf(want, sizeof(want), "x%u", o->xver);
		if (e->dir != o->dir || e->ino != o->ino || strcmp(e->x, want) ||
		    (!o->dir && (e->nlink != o->nlinks || !same_content(o, e, buf)))) {
			diff++;
			if (report) {
				describe(what, sizeof(what), o, e);
				problem(c, "%s: %s", e->path, what);
			}
		}
	}
	for (size_t j = 0; j < th->n; j++)
		for (k = 0; th->o[j].alive && k < th->o[j].nlinks; k++)
			expected--;
	if (expected < 0) {
		diff -= expected;
		for (size_t j = 0; report && j < th->n; j++)
			for (k = 0; th->o[j].alive && k < th->o[j].nlinks; k++) {
				int found = 0;

				kl_link_path(path, sizeof(path), &c->s, &th->o[j].l[k]);
				for (size_t i = 0; i < l->n && !found; i++)
					found = !strcmp(path, l->v[i].path);
				if (!found)
					problem(c, "%s: object %ld has this name, the union does not show it",
					        path, th->o[j].id);
			}
	}
	return diff;
}

/* A thread whose last operation's outcome is unknown: the union must show
 * it done or not done, whole. */
static void resolve(struct check *c, int t, unsigned char *buf)
{
	struct kl_thread before, *th = &c->s.th[t];
	static const char *const names[] = { "create", "mkdir", "write",  "setxattr",
		                             "rename", "link",  "unlink", "rmdir" };

	if (!c->has_pending[t]) {
		compare(c, t, 1, buf);
		return;
	}
	if (kl_thread_copy(&before, th) < 0)
		exit(2);
	kl_apply(&c->s, t, &c->pending[t]);
	if (compare(c, t, 0, buf) == 0) {
		free(before.o);
		c->done++;
		return;
	}
	free(th->o);
	*th = before;
	if (compare(c, t, 0, buf) == 0) {
		c->undone++;
		return;
	}
	const struct kl_op *op = &c->pending[t];
	problem(
	    c,
	    "thread %d: the union shows neither outcome of its interrupted %s (object %ld, %s in %ld -> %s "
	    "in %ld); as if not done:",
	    t, names[op->code], op->id, op->n1, op->p1, op->n2, op->p2);
	compare(c, t, 1, buf);
	if (kl_thread_copy(&before, th) < 0)
		exit(2);
	kl_apply(&c->s, t, op);
	fprintf(stderr, "killload check: thread %d, as if done:\n", t);
	compare(c, t, 1, buf);
	free(th->o);
	*th = before;
}

/* ------------------------------------------------------------------------ */
/* Handles */

struct opened {
	long id;
	struct seen e;
};

static int open_handle(struct seen *e, int mfd, const struct kl_obj *o)
{
	struct file_handle *fh = calloc(1, sizeof(*fh) + KL_HMAX);
	char proc[64];
	int fd;

	if (!fh)
		return -ENOMEM;
	fh->handle_type = o->htype;
	fh->handle_bytes = o->hlen;
	memcpy(fh->f_handle, o->fh, o->hlen);
	fd = open_by_handle_at(mfd, fh, O_RDONLY | O_CLOEXEC);
	free(fh);
	if (fd < 0)
		return -errno;
	int r = observe(e, fd);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, e->path, sizeof(e->path) - 1);
	e->path[n < 0 ? 0 : n] = '\0';
	close(fd);
	return r;
}

/* Before anything is looked up: the kernel has no inode of the new mount
 * yet, so every handle goes to the daemon. */
static struct opened *open_handles(struct check *c, int mfd, size_t *count)
{
	struct opened *v = NULL;
	size_t n = 0;

	for (int t = 0; t < c->s.nthreads; t++)
		for (size_t i = 0; i < c->s.th[t].n; i++) {
			struct kl_obj *o = &c->s.th[t].o[i];

			if (!o->hlen)
				continue;
			if (!(v = realloc(v, (n + 1) * sizeof(*v))))
				exit(2);
			memset(&v[n], 0, sizeof(v[n]));
			v[n].id = o->id;
			v[n].e.err = open_handle(&v[n].e, mfd, o);
			n++;
		}
	*count = n;
	return v;
}

static void check_handle(struct check *c, const struct opened *h, unsigned char *buf)
{
	struct kl_obj *o = kl_obj(&c->s, h->id);
	const struct seen *e = &h->e;
	char path[4096], what[512];

	if (!o->alive) {
		if (e->err == -ESTALE) {
			c->stale++;
			return;
		}
		if (e->err)
			problem(c, "handle of removed object %ld: %s, not ESTALE", o->id, strerror(-e->err));
		else
			problem(c, "handle of removed object %ld opens %s: st_ino %" PRIu64 ", '%.20s'",
			        o->id, e->path, e->ino, e->data ? (const char *)e->data : "");
		return;
	}
	if (e->err) {
		problem(c, "handle of object %ld (alive): %s", o->id, strerror(-e->err));
		return;
	}
	kl_root_path(path, sizeof(path), c->mnt, &c->s, o->id);
	char want[32] = "";
	if (o->xver)
		snprintf(want, sizeof(want), "x%u", o->xver);
	if (e->dir != o->dir || e->ino != o->ino || strcmp(e->x, want) || (o->dir && strcmp(e->path, path)) ||
	    (!o->dir && !same_content(o, e, buf))) {
		describe(what, sizeof(what), o, e);
		problem(c, "handle of object %ld (%s) opens %s: %s", o->id, path, e->path, what);
		return;
	}
	c->opened++;
}

static void take_handles(struct check *c)
{
	struct file_handle *fh = calloc(1, sizeof(*fh) + KL_HMAX);
	char path[4096];
	int mid;

	for (int t = 0; fh && t < c->s.nthreads; t++)
		for (size_t i = 0; i < c->s.th[t].n; i++) {
			struct kl_obj *o = &c->s.th[t].o[i];

			if (!o->alive || o->hlen)
				continue;
			kl_root_path(path, sizeof(path), c->mnt, &c->s, o->id);
			fh->handle_bytes = KL_HMAX;
			if (name_to_handle_at(AT_FDCWD, path, fh, &mid, 0) < 0) {
				problem(c, "name_to_handle_at %s: %s", path, strerror(errno));
				continue;
			}
			o->htype = fh->handle_type;
			o->hlen = fh->handle_bytes;
			memcpy(o->fh, fh->f_handle, fh->handle_bytes);
		}
	free(fh);
}

/* No two objects share an st_ino. */
static void check_inos(struct check *c)
{
	for (int t = 0; t < c->s.nthreads; t++)
		for (size_t i = 0; i < c->s.th[t].n; i++)
			for (int u = t; u < c->s.nthreads; u++)
				for (size_t j = u == t ? i + 1 : 0; j < c->s.th[u].n; j++) {
					struct kl_obj *a = &c->s.th[t].o[i], *b = &c->s.th[u].o[j];

					if (a->alive && b->alive && a->ino && a->ino == b->ino)
						problem(c, "objects %ld and %ld both have st_ino %" PRIu64,
						        a->id, b->id, a->ino);
				}
}

static void check_work(struct check *c, const char *work)
{
	DIR *d = opendir(work);
	struct dirent *de;

	if (!d) {
		problem(c, "%s: %s", work, strerror(errno));
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "index"))
			problem(c, "%s/%s: left in the work dir", work, de->d_name);
	closedir(d);
}

/* Everything the check allocated (LeakSanitizer runs it in CI). */
static void check_free(struct check *c, struct opened *h, size_t nh, unsigned char *buf)
{
	for (size_t i = 0; i < nh; i++)
		free(h[i].e.data);
	free(h);
	for (int t = 0; t < KL_MAXT; t++) {
		for (size_t i = 0; i < c->names[t].n; i++)
			free(c->names[t].v[i].data);
		free(c->names[t].v);
		free(c->s.th[t].o);
	}
	free(buf);
}

int kl_check(int argc, char **argv)
{
	struct check c = { .mnt = argv[0] };
	unsigned char *buf = malloc(KL_BIG + 1);
	size_t nh = 0;
	long alive = 0;
	int mfd, r;

	if (argc != 4 || !buf) {
		fprintf(stderr, "usage: killload check MNT STATE JOURNAL WORKDIR\n");
		return 2;
	}
	if ((r = kl_state_load(&c.s, argv[1])) < 0 || (r = replay(&c, argv[2])) < 0) {
		fprintf(stderr, "killload: %s: %s\n", argv[1], strerror(-r));
		return 2;
	}
	if ((mfd = open(c.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror(c.mnt);
		return 2;
	}
	struct opened *h = open_handles(&c, mfd, &nh);
	walk_union(&c, mfd);
	for (int t = 0; t < c.s.nthreads; t++)
		resolve(&c, t, buf);
	for (size_t i = 0; i < nh; i++)
		check_handle(&c, &h[i], buf);
	check_inos(&c);
	check_work(&c, argv[3]);
	take_handles(&c);
	for (int t = 0; t < c.s.nthreads; t++)
		for (size_t i = 0; i < c.s.th[t].n; i++)
			alive += c.s.th[t].o[i].alive;
	if ((r = kl_state_save(&c.s, argv[1])) < 0)
		problem(&c, "%s: %s", argv[1], strerror(-r));
	if (fsync(mfd) < 0)
		problem(&c, "fsync of the root: %s", strerror(errno));
	printf(
	    "killload check: %ld operations returned, %ld interrupted (%ld done, %ld not done); %ld objects; "
	    "%zu handles: %ld open their object, %ld ESTALE (removed); %ld problems\n",
	    c.returned, c.done + c.undone, c.done, c.undone, alive, nh, c.opened, c.stale, c.problems);
	close(mfd);
	check_free(&c, h, nh, buf);
	return c.problems ? 1 : 0;
}
