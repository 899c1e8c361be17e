/*
 * Concurrency stress of fhmap-unionfs on a real mount (tests/fuse/fuse-e2e.sh
 * case "stress").
 *
 *   stress run MNT THREADS SECONDS OUT    many threads create, rename (files
 *       and directories, across parents), hard-link, unlink, rmdir, write
 *       and list below MNT/s, and append to the lower files MNT/lower/fN all
 *       at once; every object they make or copy up is recorded in OUT with
 *       its handle (name_to_handle_at), st_ino and first line. Exit 1 when
 *       an operation failed in a way no concurrent change explains (EIO,
 *       EBUSY, ESTALE, a listing with a name twice...).
 *   stress verify MNT IN NLOWERS          after a remount: every recorded
 *       handle opens its own object (same st_ino, same first line) or is
 *       ESTALE while no name in the tree has its st_ino; every lower file
 *       has its first line and exactly the lines appended to it, once each.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NDIRS 6
#define HMAX 128
#define TAGMAX 48

struct rec {
	int type;
	unsigned int len;
	unsigned char fh[HMAX];
	uint64_t ino;
	int is_dir;
	char tag[TAGMAX];
};

static const char *mnt;
static int nlowers;
static double deadline;
static atomic_long bad, ops, appended;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* errors a concurrent change explains */
static int expected(int e)
{
	return e == ENOENT || e == EEXIST || e == ENOTEMPTY || e == EINVAL || e == ENOTDIR || e == EISDIR ||
	       e == EXDEV || e == EMLINK || e == ELOOP;
}

static void check(const char *what, const char *path, int r)
{
	atomic_fetch_add(&ops, 1);
	if (r < 0 && !expected(errno)) {
		atomic_fetch_add(&bad, 1);
		fprintf(stderr, "stress: %s %s: %s\n", what, path, strerror(errno));
	}
}

/* Records the handle of @path with its st_ino and first line. */
static void record(const char *path, const char *tag)
{
	struct file_handle *fh = calloc(1, sizeof(*fh) + HMAX);
	const unsigned char *bytes = (const unsigned char *)(fh + 1);
	struct stat st;
	int mid;

	if (!fh)
		return;
	fh->handle_bytes = HMAX;
	if (name_to_handle_at(AT_FDCWD, path, fh, &mid, 0) == 0 && lstat(path, &st) == 0) {
		pthread_mutex_lock(&out_lock);
		fprintf(out, "%d %" PRIu64 " %d %s ", fh->handle_type, (uint64_t)st.st_ino, S_ISDIR(st.st_mode),
		        tag[0] ? tag : "-");
		for (unsigned int i = 0; i < fh->handle_bytes; i++)
			fprintf(out, "%02x", bytes[i]);
		fputc('\n', out);
		pthread_mutex_unlock(&out_lock);
	} /* else renamed or removed meanwhile */
	free(fh);
}

/* A random entry of directory @dir (with @prefix), or 0. */
static int pick(char *out_path, size_t size, const char *dir, unsigned int *seed, int want_dir)
{
	char names[64][256];
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return 0;
	while ((de = readdir(d)) && n < 64) {
		if (de->d_name[0] == '.')
			continue;
		if (want_dir >= 0 && (de->d_type == DT_DIR) != want_dir)
			continue;
		snprintf(names[n++], 256, "%s", de->d_name);
	}
	closedir(d);
	if (!n)
		return 0;
	snprintf(out_path, size, "%s/%s", dir, names[rand_r(seed) % n]);
	return 1;
}

/* MNT/s/dN: the directories the workers never move */
static int is_top(const char *path)
{
	int slashes = 0;

	for (const char *p = path + strlen(mnt); *p; p++)
		slashes += *p == '/';
	return slashes == 2;
}

/* A random directory: a top one, or one below it (two levels). */
static void any_dir(char *out_path, size_t size, unsigned int *seed)
{
	char top[4096], sub[4096];

	snprintf(top, sizeof(top), "%s/s/d%d", mnt, rand_r(seed) % NDIRS);
	if (rand_r(seed) % 2 && pick(sub, sizeof(sub), top, seed, 1)) {
		if (rand_r(seed) % 2 && pick(out_path, size, sub, seed, 1))
			return;
		snprintf(out_path, size, "%s", sub);
		return;
	}
	snprintf(out_path, size, "%s", top);
}

/* Lists @dir and checks that no name comes twice. */
static void list(const char *dir)
{
	char seen[512][256];
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;

	check("opendir", dir, d ? 0 : -1);
	if (!d)
		return;
	while ((errno = 0, de = readdir(d))) {
		if (!de->d_ino) {
			atomic_fetch_add(&bad, 1);
			fprintf(stderr, "stress: %s/%s listed with d_ino 0\n", dir, de->d_name);
		}
		for (int i = 0; i < n; i++)
			if (!strcmp(seen[i], de->d_name)) {
				atomic_fetch_add(&bad, 1);
				fprintf(stderr, "stress: %s lists %s twice\n", dir, de->d_name);
			}
		if (n < 512)
			snprintf(seen[n++], 256, "%s", de->d_name);
	}
	check("readdir", dir, errno ? -1 : 0);
	closedir(d);
}

static void append_line(const char *path, const char *line)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	ssize_t w = -1;

	if (fd >= 0) {
		w = write(fd, line, strlen(line));
		if (close(fd) < 0)
			w = -1;
	}
	check("append", path, w == (ssize_t)strlen(line) ? 0 : -1);
}

static void *worker(void *arg)
{
	long t = (long)(intptr_t)arg;
	unsigned int seed = (unsigned int)(t * 7919 + 17);
	char a[8192], b[8192], tag[TAGMAX];
	long n = 0;

	while (now() < deadline) {
		int op = rand_r(&seed) % 14;

		n++;
		snprintf(tag, sizeof(tag), "id:%ld.%ld", t, n);
		switch (op) {
		case 0:
		case 1: { /* create a file */
			any_dir(a, sizeof(a), &seed);
			if (snprintf(b, sizeof(b), "%s/f%ld_%ld", a, t, n) >= (int)sizeof(b))
				break;
			int fd = open(b, O_WRONLY | O_CREAT | O_EXCL, 0644);
			check("create", b, fd);
			if (fd >= 0) {
				dprintf(fd, "%s\n", tag);
				close(fd);
				record(b, tag);
			}
			break;
		}
		case 2: /* mkdir */
			any_dir(a, sizeof(a), &seed);
			if (snprintf(b, sizeof(b), "%s/s%ld_%ld", a, t, n) >= (int)sizeof(b))
				break;
			if (mkdir(b, 0755) == 0)
				record(b, "");
			else
				check("mkdir", b, -1);
			break;
		case 3:
		case 4: /* rename a file, maybe to another directory */
			any_dir(a, sizeof(a), &seed);
			if (pick(b, sizeof(b), a, &seed, 0)) {
				any_dir(a, sizeof(a), &seed);
				snprintf(a + strlen(a), sizeof(a) - strlen(a), "/r%ld_%ld", t, n);
				check("rename", b, rename(b, a));
			}
			break;
		case 5: { /* rename a directory across parents (maybe into itself) */
			char c[2048];

			any_dir(a, sizeof(a), &seed);
			if (!is_top(a))
				snprintf(b, sizeof(b), "%s", a);
			else if (!pick(b, sizeof(b), a, &seed, 1))
				break;
			any_dir(c, sizeof(c), &seed);
			if (snprintf(a, sizeof(a), "%s/m%ld_%ld", c, t, n) >= (int)sizeof(a))
				break;
			check("rename dir", b, rename(b, a));
			break;
		}
		case 6: /* hard link */
			any_dir(a, sizeof(a), &seed);
			if (pick(b, sizeof(b), a, &seed, 0)) {
				any_dir(a, sizeof(a), &seed);
				snprintf(a + strlen(a), sizeof(a) - strlen(a), "/l%ld_%ld", t, n);
				check("link", b, link(b, a));
			}
			break;
		case 7: /* unlink */
			any_dir(a, sizeof(a), &seed);
			if (pick(b, sizeof(b), a, &seed, 0))
				check("unlink", b, unlink(b));
			break;
		case 8: /* rmdir */
			any_dir(a, sizeof(a), &seed);
			if (pick(b, sizeof(b), a, &seed, 1))
				check("rmdir", b, rmdir(b));
			break;
		case 9:
		case 10: { /* the same lower files, copied up by many at once */
			int i = rand_r(&seed) % nlowers;

			snprintf(a, sizeof(a), "%s/lower/f%d", mnt, i);
			snprintf(b, sizeof(b), "%s\n", tag);
			append_line(a, b);
			record(a, "");
			pthread_mutex_lock(&out_lock);
			fprintf(out, "append %d %s\n", i, tag);
			pthread_mutex_unlock(&out_lock);
			atomic_fetch_add(&appended, 1);
			break;
		}
		case 11: /* write to some file */
			any_dir(a, sizeof(a), &seed);
			if (pick(b, sizeof(b), a, &seed, 0)) {
				int fd = open(b, O_WRONLY | O_APPEND);

				check("open", b, fd);
				if (fd >= 0) {
					check("write", b, dprintf(fd, "w%ld.%ld\n", t, n) > 0 ? 0 : -1);
					close(fd);
				}
			}
			break;
		default: /* list */
			any_dir(a, sizeof(a), &seed);
			list(a);
			break;
		}
	}
	return NULL;
}

static int cmd_run(char **argv)
{
	int threads = atoi(argv[1]);
	pthread_t tid[64];
	char path[4096];

	mnt = argv[0];
	deadline = now() + atof(argv[2]);
	out = fopen(argv[3], "w");
	if (!out || threads < 1 || threads > 64) {
		fprintf(stderr, "stress: bad arguments\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/lower", mnt);
	DIR *d = opendir(path);
	for (struct dirent *de; d && (de = readdir(d));)
		nlowers += de->d_name[0] == 'f';
	if (d)
		closedir(d);
	if (!nlowers) {
		fprintf(stderr, "stress: no lower files in %s\n", path);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/s", mnt);
	mkdir(path, 0755);
	for (int i = 0; i < NDIRS; i++) {
		snprintf(path, sizeof(path), "%s/s/d%d", mnt, i);
		mkdir(path, 0755);
	}
	for (long i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	fclose(out);
	printf("stress: %ld operations, %ld appends to %d lower files, %ld unexplained failures\n",
	       atomic_load(&ops), atomic_load(&appended), nlowers, atomic_load(&bad));
	return atomic_load(&bad) ? 1 : 0;
}

/* Set of the st_ino of every name in the tree. */
struct inos {
	uint64_t *v;
	size_t n, cap;
};

static void walk(struct inos *s, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char p[4096];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (lstat(p, &st) < 0)
			continue;
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 1024;
			s->v = realloc(s->v, s->cap * sizeof(*s->v));
		}
		s->v[s->n++] = st.st_ino;
		if (S_ISDIR(st.st_mode))
			walk(s, p);
	}
	if (d)
		closedir(d);
}

static int has_ino(const struct inos *s, uint64_t ino)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ino)
			return 1;
	return 0;
}

static int first_line(char *buf, size_t size, int fd)
{
	ssize_t n = pread(fd, buf, size - 1, 0);

	if (n < 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Each lower file: its first line, then every line appended to it. */
static long check_lowers(const char *in)
{
	FILE *f = fopen(in, "r");
	char line[512], tag[TAGMAX];
	long problems = 0, lines = 0;
	int i;
	long *count = calloc((size_t)nlowers, sizeof(long));

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "append %d %47s", &i, tag) == 2 && i >= 0 && i < nlowers)
			count[i]++;
	if (f)
		fclose(f);
	for (i = 0; i < nlowers; i++) {
		char path[4096];
		FILE *lf;

		snprintf(path, sizeof(path), "%s/lower/f%d", mnt, i);
		lf = fopen(path, "r");
		long n = 0;
		while (lf && fgets(line, sizeof(line), lf))
			n++;
		if (lf)
			fclose(lf);
		lines += n - 1;
		if (n != count[i] + 1) {
			problems++;
			fprintf(stderr, "stress: %s has %ld lines, want 1 + %ld appended\n", path, n, count[i]);
		}
	}
	free(count);
	printf("stress: lower files hold %ld appended lines\n", lines);
	return problems;
}

static int cmd_verify(char **argv)
{
	struct inos all = { 0 };
	char line[1024], hex[2 * HMAX + 1], tag[TAGMAX], path[4096];
	long opened = 0, stale = 0, problems = 0;
	FILE *in = fopen(argv[1], "r");
	int mfd;

	mnt = argv[0];
	nlowers = atoi(argv[2]);
	mfd = open(mnt, O_RDONLY | O_DIRECTORY);
	if (!in || mfd < 0) {
		fprintf(stderr, "stress: cannot open %s or %s\n", argv[1], mnt);
		return 2;
	}
	walk(&all, mnt);
	while (fgets(line, sizeof(line), in)) {
		struct file_handle *fh = calloc(1, sizeof(*fh) + HMAX);
		unsigned char *bytes = (unsigned char *)(fh + 1);
		uint64_t ino;
		int type, is_dir;

		if (!fh || sscanf(line, "%d %" SCNu64 " %d %47s %256s", &type, &ino, &is_dir, tag, hex) != 5) {
			free(fh);
			continue; /* an append line */
		}
		fh->handle_type = type;
		fh->handle_bytes = (unsigned int)strlen(hex) / 2;
		for (unsigned int j = 0; j < fh->handle_bytes; j++)
			sscanf(hex + 2 * j, "%2hhx", &bytes[j]);
		int fd = open_by_handle_at(mfd, fh, O_RDONLY);
		free(fh);
		if (fd < 0) {
			if (errno == ESTALE && !has_ino(&all, ino)) {
				stale++;
				continue;
			}
			problems++;
			fprintf(stderr, "stress: handle of %" PRIu64 ": %s%s\n", ino, strerror(errno),
			        has_ino(&all, ino) ? ", but a name has that st_ino" : "");
			continue;
		}
		struct stat st;
		char got[256] = "";
		if (fstat(fd, &st) < 0 || st.st_ino != ino || (!is_dir && first_line(got, sizeof(got), fd) < 0) ||
		    (strcmp(tag, "-") && strcmp(got, tag))) {
			problems++;
			fprintf(stderr, "stress: handle of %" PRIu64 " (%s) opens st_ino %" PRIu64 " with '%s'\n", ino,
			        tag, (uint64_t)st.st_ino, got);
		} else {
			opened++;
		}
		close(fd);
	}
	fclose(in);
	snprintf(path, sizeof(path), "%s", argv[1]);
	problems += check_lowers(path);
	printf("stress: %ld handles open their own object, %ld ESTALE with no name left, %ld problems\n", opened,
	       stale, problems);
	free(all.v);
	close(mfd);
	return problems ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "run"))
		return cmd_run(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "verify"))
		return cmd_verify(argv + 2);
	fprintf(stderr, "usage: stress run MNT THREADS SECONDS OUT | stress verify MNT IN NLOWERS\n");
	return 2;
}
