/*
 * Helpers of tests/fuse/hostile.sh: hostile layer contents made fast, and
 * what a shell cannot do (paths deeper than PATH_MAX, inotify, atomic
 * swaps).
 *
 *   hostile_tool dents DIR N             N empty files f0000000... in DIR
 *   hostile_tool deep DIR N              N nested directories "d" below DIR,
 *                                        the last holding "leaf" ("deep\n")
 *   hostile_tool walk DIR N [append]     opens "d" N times below DIR, prints
 *                                        the content of "leaf" (after
 *                                        appending "more\n" with append);
 *                                        fails with the errno's name
 *   hostile_tool mvdeep DIR N FROM TO    renames FROM to TO in the
 *                                        directory N-1 levels down
 *   hostile_tool setx PATH NAME FILE     sets the xattr NAME of PATH (not
 *                                        followed) to the content of FILE;
 *                                        prints "ok" or the errno's name
 *   hostile_tool getx PATH NAME          writes the value of the xattr to
 *                                        stdout (up to 64 KiB)
 *   hostile_tool watch OUT PATH...       inotify on every PATH; one line
 *                                        per event in OUT until SIGTERM;
 *                                        prints "ready" once watching
 *   hostile_tool swap DIR SECONDS A B [A B...]
 *                                        RENAME_EXCHANGE of each pair in DIR
 *                                        in turn, as fast as it can
 *   hostile_tool append DIR NAME...      opens DIR/NAME/... never following
 *                                        a symlink, appends "x\n" to the
 *                                        last; prints "ok" or the errno's
 *                                        name
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what)
{
	printf("%s\n", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	fprintf(stderr, "hostile_tool: %s: %s\n", what, strerror(errno));
	return 1;
}

static int dents(const char *dir, long n)
{
	char name[32];
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	if (fd < 0)
		return die(dir);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07ld", i);
		if (mknodat(fd, name, S_IFREG | 0644, 0) < 0)
			return die(name);
	}
	close(fd);
	return 0;
}

/* The fd of DIR/d/d/... (@n levels), made with @create. */
static int descend(const char *dir, long n, int create)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	for (long i = 0; fd >= 0 && i < n; i++) {
		if (create && mkdirat(fd, "d", 0755) < 0)
			return -1;
		int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		close(fd);
		fd = next;
	}
	return fd;
}

static int deep(const char *dir, long n)
{
	int fd = descend(dir, n, 1), f;

	if (fd < 0 || (f = openat(fd, "leaf", O_WRONLY | O_CREAT | O_EXCL, 0644)) < 0 || write(f, "deep\n", 5) != 5)
		return die("deep");
	close(f);
	close(fd);
	return 0;
}

static int walk(const char *dir, long n, int append)
{
	char buf[256];
	int fd = descend(dir, n, 0), f;
	ssize_t len;

	if (fd < 0)
		return die("walk");
	if (append) {
		f = openat(fd, "leaf", O_WRONLY | O_APPEND | O_NOFOLLOW);
		if (f < 0 || write(f, "more\n", 5) != 5)
			return die("append");
		close(f);
	}
	f = openat(fd, "leaf", O_RDONLY | O_NOFOLLOW);
	if (f < 0 || (len = read(f, buf, sizeof(buf))) < 0)
		return die("read");
	fwrite(buf, 1, (size_t)len, stdout);
	close(f);
	close(fd);
	return 0;
}

static int mvdeep(const char *dir, long n, const char *from, const char *to)
{
	int fd = descend(dir, n - 1, 0);

	if (fd < 0 || renameat(fd, from, fd, to) < 0)
		return die("mvdeep");
	printf("ok\n");
	close(fd);
	return 0;
}

static int setx(const char *path, const char *name, const char *file)
{
	static char val[65537 + 1];
	FILE *f = fopen(file, "rb");
	size_t n = f ? fread(val, 1, sizeof(val), f) : 0;

	if (!f)
		return die(file);
	fclose(f);
	printf("%s\n", lsetxattr(path, name, val, n, 0) < 0 ? strerrorname_np(errno) : "ok");
	return 0;
}

static int getx(const char *path, const char *name)
{
	static char val[65536];
	ssize_t n = lgetxattr(path, name, val, sizeof(val));

	if (n < 0)
		return die(name);
	fwrite(val, 1, (size_t)n, stdout);
	return 0;
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int watch(const char *out, char **paths, int n)
{
	char buf[4096] __attribute__((aligned(8)));
	struct sigaction sa = { .sa_handler = on_term };
	int in = inotify_init1(0);
	FILE *o = fopen(out, "w");

	if (in < 0 || !o)
		return die("inotify");
	sigaction(SIGTERM, &sa, NULL);
	for (int i = 0; i < n; i++)
		if (inotify_add_watch(in, paths[i], IN_ALL_EVENTS | IN_DONT_FOLLOW) < 0)
			return die(paths[i]);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		ssize_t len = read(in, buf, sizeof(buf));

		for (char *p = buf; len > 0 && p < buf + len;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			fprintf(o, "wd %d mask %#x %s\n", ev->wd, ev->mask, ev->len ? ev->name : "");
			fflush(o);
			p += sizeof(*ev) + ev->len;
		}
	}
	fclose(o);
	return 0;
}

static int swap(const char *dir, double seconds, char **pairs, int n)
{
	struct timespec t0, t;
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	long count = 0;

	if (fd < 0 || n < 2)
		return die(dir);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (int i = 0; i + 1 < n; i += 2, count++)
			if (renameat2(fd, pairs[i], fd, pairs[i + 1], RENAME_EXCHANGE) < 0)
				return die("renameat2");
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
	printf("%ld\n", count);
	return 0;
}

static int append(const char *dir, char **names, int n)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

	for (int i = 0; fd >= 0 && i < n; i++) {
		int last = i == n - 1;
		int next = openat(fd, names[i], (last ? O_WRONLY | O_APPEND : O_RDONLY | O_DIRECTORY) | O_NOFOLLOW);

		close(fd);
		fd = next;
	}
	if (fd < 0 || write(fd, "x\n", 2) != 2) {
		printf("%s\n", strerrorname_np(errno));
		return 0;
	}
	close(fd);
	printf("ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "dents"))
		return dents(argv[2], atol(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "deep"))
		return deep(argv[2], atol(argv[3]));
	if (argc >= 4 && !strcmp(argv[1], "walk"))
		return walk(argv[2], atol(argv[3]), argc > 4);
	if (argc >= 6 && !strcmp(argv[1], "mvdeep"))
		return mvdeep(argv[2], atol(argv[3]), argv[4], argv[5]);
	if (argc >= 5 && !strcmp(argv[1], "setx"))
		return setx(argv[2], argv[3], argv[4]);
	if (argc >= 4 && !strcmp(argv[1], "getx"))
		return getx(argv[2], argv[3]);
	if (argc >= 4 && !strcmp(argv[1], "watch"))
		return watch(argv[2], argv + 3, argc - 3);
	if (argc >= 6 && !strcmp(argv[1], "swap"))
		return swap(argv[2], atof(argv[3]), argv + 4, argc - 4);
	if (argc >= 4 && !strcmp(argv[1], "append"))
		return append(argv[2], argv + 3, argc - 3);
	fprintf(stderr, "usage: see the comment at the top of hostile_tool.c\n");
	return 2;
}
