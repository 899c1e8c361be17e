/*
 * SIGKILL of fhmap-unionfs under concurrent load; killload.sh drives it.
 *
 *   killload init LOWER STATE THREADS   makes the lower layer (shared top
 *       directories, each thread's files, a big file, a hardlinked pair, a
 *       directory tree) and the model of it
 *   killload run ...                    the workload (killload_run.c)
 *   killload check ...                  the checker (killload_check.c)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "killload.h"

static const char *lower;
static struct kl_state st;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static struct kl_obj *lower_obj(int t, int dir, long parent, const char *fmt, int k)
{
	struct kl_obj *o = kl_new_obj(&st.th[t], dir);
	char path[4096];

	o->alive = 1;
	o->nlinks = 1;
	o->l[0].parent = parent;
	snprintf(o->l[0].name, KL_NAME, fmt, t, k);
	kl_root_path(path, sizeof(path), lower, &st, o->id);
	if (dir && mkdir(path, 0755) < 0)
		die(path);
	return o;
}

static struct kl_obj *lower_file(int t, long parent, const char *fmt, int k, long size)
{
	struct kl_obj *o = lower_obj(t, 0, parent, fmt, k);
	unsigned char *buf = malloc((size_t)size);
	char path[4096];
	int fd;

	kl_root_path(path, sizeof(path), lower, &st, o->id);
	if (!buf || (fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644)) < 0)
		die(path);
	o->ver = 1;
	o->size = size;
	kl_content(buf, o->id, o->ver, size);
	if (write(fd, buf, (size_t)size) != size || close(fd) < 0)
		die(path);
	free(buf);
	return o;
}

static int cmd_init(char **argv)
{
	char path[4096], a[4096];

	lower = argv[0];
	st.nthreads = atoi(argv[2]);
	if (st.nthreads < 1 || st.nthreads > KL_MAXT) {
		fprintf(stderr, "killload: 1 to %d threads\n", KL_MAXT);
		return 2;
	}
	for (int k = 0; k < KL_TOPS; k++) {
		kl_root_path(path, sizeof(path), lower, &st, 1 + k);
		if (mkdir(path, 0755) < 0)
			die(path);
	}
	for (int t = 0; t < st.nthreads; t++) {
		st.th[t].t = t;
		for (int k = 0; k < KL_TOPS; k++)
			lower_file(t, 1 + k, "L%d_%d", k, KL_REC);
		struct kl_obj *x = &st.th[t].o[0];
		kl_root_path(path, sizeof(path), lower, &st, x->id);
		if (setxattr(path, KL_XATTR, "x1", 2, 0) < 0)
			die(path);
		x->xver = 1;
		lower_file(t, 1 + t % KL_TOPS, "B%d_%d", 0, KL_BIG);
		/* a hardlinked pair: one object, two names */
		struct kl_obj *h = lower_file(t, 1 + t % KL_TOPS, "H%d_%d", 0, KL_REC);
		h->l[1].parent = 1 + (t + 1) % KL_TOPS;
		snprintf(h->l[1].name, KL_NAME, "H%d_1", t);
		h->nlinks = 2;
		kl_root_link(a, sizeof(a), lower, &st, &h->l[0]);
		kl_root_link(path, sizeof(path), lower, &st, &h->l[1]);
		if (link(a, path) < 0)
			die(path);
		/* a lower tree: D/M0 M1 E/M2 */
		struct kl_obj *d = lower_obj(t, 1, 1 + (t + 2) % KL_TOPS, "D%d_%d", 0);
		lower_file(t, d->id, "M%d_%d", 0, KL_REC);
		lower_file(t, d->id, "M%d_%d", 1, KL_REC);
		struct kl_obj *e = lower_obj(t, 1, d->id, "E%d_%d", 0);
		lower_file(t, e->id, "M%d_%d", 2, KL_REC);
	}
	int r = kl_state_save(&st, argv[1]);
	if (r < 0) {
		fprintf(stderr, "killload: %s: %s\n", argv[1], strerror(-r));
		return 2;
	}
	kl_state_free(&st);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "init"))
		return cmd_init(argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return kl_run(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return kl_check(argc - 2, argv + 2);
	fprintf(stderr,
	        "usage: killload init LOWER STATE THREADS | run MNT STATE JOURNAL PROCS SEED SECONDS |"
	        " check MNT STATE JOURNAL WORKDIR\n");
	return 2;
}
