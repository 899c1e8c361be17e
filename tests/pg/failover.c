/* The workload of the database failover test (failover.sh), through the
 * library, on real files:
 *
 *   pg_failover run MAP LOWER UPPER JOURNAL STOPFILE
 *       threads make lower files f<i>, bind them, copy every second one up
 *       (the copy written to the upper layer, then fhmap_copyup_adopt) and
 *       decode the handle of their previous file, until STOPFILE exists.
 *       Every update that returned is appended to JOURNAL:
 *         "b MS I INO GEN HANDLE"   (bind returned; HANDLE hex)
 *         "c MS I INO"              (copy-up recorded)
 *       MS: wall clock in ms. Prints the updates, the failures the library
 *       reported to its log (lost connections, lost commits looked up) and
 *       the longest wait for one update; exits 1 at the first error.
 *   pg_failover verify MAP LOWER UPPER JOURNAL
 *       every journaled handle decodes to its object and generation, the
 *       object lives where the journal says (the lower file, or its upper
 *       copy once a copy-up returned; either before) with that content,
 *       and no two files share an object.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fhmap/fhmap.h>

#define THREADS 2
#define LOWER_ID 1
#define UPPER_ID 2
#define HEX_MAX "80" /* 2 * FHMAP_FH_MAX */

static fhmap *map;
static const char *lower, *upper, *stopfile;
static FILE *journal;
static pthread_mutex_t journal_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong updates, lost, looked_up, longest_ms;
static atomic_int failed;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void log_cb(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	if (strstr(msg, "connection lost"))
		atomic_fetch_add(&lost, 1);
	else if (strstr(msg, "after the lost commit"))
		atomic_fetch_add(&looked_up, 1);
	else
		return;
	fprintf(stderr, "libfhmap: %s\n", msg);
}

static int fail(const char *what, unsigned long i, int rc)
{
	fprintf(stderr, "FAIL: %s of f%lu: %s\n", what, i, fhmap_strerror(rc));
	atomic_store(&failed, 1);
	return rc;
}

/* Writes @text to @dir/f<i>. */
static int put_file(const char *dir, unsigned long i, const char *text)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/f%lu", dir, i);
	if (!(f = fopen(path, "w")) || fprintf(f, "%s %lu\n", text, i) < 0 || fclose(f) != 0)
		return -errno;
	return 0;
}

/* Journals an update that returned ("KIND MS ..."), and the time since
 * the thread's last one. */
static void note(uint64_t *last, char kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(uint64_t *last, char kind, const char *fmt, ...)
{
	uint64_t t = now_ms();
	unsigned long wait = (unsigned long)(t - *last), have = atomic_load(&longest_ms);
	va_list ap;

	while (wait > have && !atomic_compare_exchange_weak(&longest_ms, &have, wait))
		;
	*last = t;
	pthread_mutex_lock(&journal_lock);
	fprintf(journal, "%c %" PRIu64 " ", kind, t);
	va_start(ap, fmt);
	vfprintf(journal, fmt, ap);
	va_end(ap);
	fflush(journal);
	pthread_mutex_unlock(&journal_lock);
	atomic_fetch_add(&updates, 1);
}

/* One file: bind, maybe copy up, decode the handle of the one before. */
static int item(fhmap *m, unsigned long i, uint64_t *last, unsigned char *prev, size_t *prev_len,
                uint64_t *prev_ino)
{
	unsigned char fh[FHMAP_FH_MAX];
	char hex[2 * FHMAP_FH_MAX + 1], name[32];
	size_t len = sizeof(fh);
	fhmap_realfh real;
	fhmap_object o;
	fhmap_decoded d;
	int rc;

	snprintf(name, sizeof(name), "f%lu", i);
	if ((rc = put_file(lower, i, "lower")) != 0 ||
	    (rc = fhmap_realfh_from_path(&real, m, LOWER_ID, name)) != 0)
		return fail("lower file", i, rc);
	if ((rc = fhmap_object_bind(&o, NULL, m, &real, FHMAP_ROOT_INO, name, S_IFREG)) != 0)
		return fail("bind", i, rc);
	if ((rc = fhmap_encode(fh, &len, m, o.ino, 0, 0)) != 0)
		return fail("encode", i, rc);
	for (size_t k = 0; k < len; k++)
		sprintf(hex + 2 * k, "%02x", fh[k]);
	note(last, 'b', "%lu %" PRIu64 " %" PRIu32 " %s\n", i, o.ino, o.gen, hex);
	if (i % 2 == 0) {
		if ((rc = put_file(upper, i, "copy")) != 0 ||
		    (rc = fhmap_realfh_from_path(&real, m, UPPER_ID, name)) != 0)
			return fail("upper copy", i, rc);
		if ((rc = fhmap_copyup_adopt(NULL, m, o.ino, &real)) != 0)
			return fail("copy-up", i, rc);
		note(last, 'c', "%lu %" PRIu64 "\n", i, o.ino);
	}
	if (*prev_len && ((rc = fhmap_decode(&d, m, prev, *prev_len, 0)) != 0 || d.ino != *prev_ino))
		return fail("decode of the handle before", i, rc ? rc : -ESTALE);
	memcpy(prev, fh, len);
	*prev_len = len;
	*prev_ino = o.ino;
	return 0;
}

static void *worker(void *arg)
{
	unsigned char prev[FHMAP_FH_MAX];
	size_t prev_len = 0;
	uint64_t prev_ino = 0, last = now_ms();

	for (unsigned long i = (unsigned long)(uintptr_t)arg; !atomic_load(&failed); i += THREADS) {
		if (access(stopfile, F_OK) == 0)
			break;
		if (item(map, i, &last, prev, &prev_len, &prev_ino) != 0)
			break;
	}
	return NULL;
}

/* Opens the map; for a run, makes it with its two layers and its root. */
static int open_map(const char *location, int create)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap_realfh root;
	uint64_t ino;
	uint32_t id;
	int rc;

	o.flags = create ? FHMAP_OPEN_CREATE : 0;
	o.log = log_cb;
	if ((rc = fhmap_open(&map, location, &o)) != 0)
		return rc;
	if (!create)
		return 0;
	if ((rc = fhmap_layer_add(&id, map, FHMAP_LAYER_LOWER, lower)) != 0 ||
	    (rc = fhmap_layer_add(&id, map, FHMAP_LAYER_UPPER, upper)) != 0)
		return rc;
	if ((rc = fhmap_realfh_from_path(&root, map, LOWER_ID, "")) != 0)
		return rc;
	return fhmap_bind(&ino, map, &root, 0, "", S_IFDIR);
}

static int run(void)
{
	pthread_t t[THREADS];

	for (uintptr_t k = 0; k < THREADS; k++)
		if (pthread_create(&t[k], NULL, worker, (void *)k) != 0)
			return 1;
	for (int k = 0; k < THREADS; k++)
		pthread_join(t[k], NULL);
	printf("updates %lu, connections lost %lu, lost commits looked up %lu, longest wait for an update "
	       "%lu ms\n",
	       atomic_load(&updates), atomic_load(&lost), atomic_load(&looked_up), atomic_load(&longest_ms));
	return atomic_load(&failed);
}

/* ------------------------------------------------------------------------ */
/* verify */

static int same_real(const fhmap_realfh *a, const fhmap_realfh *b)
{
	return a->layer == b->layer && a->type == b->type && a->len == b->len &&
	       !memcmp(a->data, b->data, a->len);
}

/* The first line of @dir/f<i> is "@text <i>". */
static int holds(const char *dir, unsigned long i, const char *text)
{
	char path[4096], line[64], want[64];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/f%lu", dir, i);
	snprintf(want, sizeof(want), "%s %lu\n", text, i);
	if (!(f = fopen(path, "r")))
		return 0;
	ok = fgets(line, sizeof(line), f) && !strcmp(line, want);
	fclose(f);
	return ok;
}

/* Object @ino, bound for f<i> with @hex, must decode to itself and live
 * on the upper copy if @copied, else on either. */
static int check_one(unsigned long i, uint64_t ino, uint32_t gen, const char *hex, int copied)
{
	unsigned char fh[FHMAP_FH_MAX];
	size_t len = strlen(hex) / 2;
	fhmap_realfh lo, up;
	fhmap_decoded d;
	char name[32];
	int rc, on_upper;

	for (size_t k = 0; k < len && k < sizeof(fh); k++)
		sscanf(hex + 2 * k, "%2hhx", &fh[k]);
	snprintf(name, sizeof(name), "f%lu", i);
	if ((rc = fhmap_decode(&d, map, fh, len, 0)) != 0 || d.ino != ino || d.gen != gen) {
		fprintf(stderr, "FAIL: f%lu: handle of %" PRIu64 ": %s (%s, object %" PRIu64 ")\n", i, ino,
		        fhmap_strerror(rc), fhmap_fh_status_str(d.status), d.ino);
		return 1;
	}
	if (fhmap_realfh_from_path(&lo, map, LOWER_ID, name) != 0)
		return fprintf(stderr, "FAIL: f%lu: no lower file\n", i), 1;
	on_upper = fhmap_realfh_from_path(&up, map, UPPER_ID, name) == 0 && same_real(&d.real, &up) &&
	           d.state == FHMAP_STATE_UPPER;
	if (copied ? !on_upper : !on_upper && !same_real(&d.real, &lo)) {
		fprintf(stderr, "FAIL: f%lu: object %" PRIu64 " does not live at its %s file\n", i, ino,
		        copied ? "upper" : "lower or upper");
		return 1;
	}
	if (!holds(on_upper ? upper : lower, i, on_upper ? "copy" : "lower"))
		return fprintf(stderr, "FAIL: f%lu: wrong content\n", i), 1;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int verify(const char *path)
{
	struct bind {
		uint64_t ino;
		uint32_t gen;
		char hex[2 * FHMAP_FH_MAX + 1];
		int copied;
	} *b = NULL;
	unsigned long n = 0, cap = 0, copies = 0, i, max = 0;
	uint64_t ino, *inos;
	char kind, line[512];
	FILE *f = fopen(path, "r");
	int bad = 0;

	if (!f)
		return perror(path), 1;
	while (fgets(line, sizeof(line), f)) {
		struct bind x = { 0 };

		if (sscanf(line, "%c %*u %lu %" SCNu64, &kind, &i, &ino) != 3)
			return fprintf(stderr, "FAIL: journal line '%s'\n", line), 1;
		if (i >= cap) {
			unsigned long c = 2 * i + 64;

			if (!(b = realloc(b, c * sizeof(*b))))
				return 1;
			memset(b + cap, 0, (c - cap) * sizeof(*b));
			cap = c;
		}
		if (kind == 'b') {
			sscanf(line, "b %*u %*u %*u %" SCNu32 " %" HEX_MAX "s", &x.gen, x.hex);
			x.ino = ino;
			b[i] = x;
			n++;
			max = i + 1 > max ? i + 1 : max;
		} else if (kind == 'c' && b[i].ino == ino) {
			b[i].copied = 1;
			copies++;
		} else {
			return fprintf(stderr, "FAIL: copy-up of f%lu before its bind\n", i), 1;
		}
	}
	fclose(f);
	if (!(inos = calloc(n + 1, sizeof(*inos))))
		return 1;
	n = 0;
	for (i = 0; i < max; i++)
		if (b[i].ino) {
			bad += check_one(i, b[i].ino, b[i].gen, b[i].hex, b[i].copied);
			inos[n++] = b[i].ino;
		}
	qsort(inos, n, sizeof(*inos), cmp_u64);
	for (i = 1; i < n; i++)
		if (inos[i] == inos[i - 1])
			bad += fprintf(stderr, "FAIL: two files share object %" PRIu64 "\n", inos[i]) > 0;
	printf("verified %lu binds and %lu copy-ups of the journal: %d wrong\n", n, copies, bad);
	free(inos);
	free(b);
	return bad != 0;
}

int main(int argc, char **argv)
{
	int run_mode = argc == 7 && !strcmp(argv[1], "run"), rc;

	if (!run_mode && !(argc == 6 && !strcmp(argv[1], "verify"))) {
		fprintf(stderr,
		        "usage: %s run MAP LOWER UPPER JOURNAL STOPFILE | verify MAP LOWER UPPER JOURNAL\n",
		        argv[0]);
		return 2;
	}
	lower = argv[3];
	upper = argv[4];
	if ((rc = open_map(argv[2], run_mode)) != 0) {
		fprintf(stderr, "FAIL: map %s: %s\n", argv[2], fhmap_strerror(rc));
		return 1;
	}
	if (run_mode) {
		stopfile = argv[6];
		if (!(journal = fopen(argv[5], "w")))
			return perror(argv[5]), 1;
		rc = run();
		fclose(journal);
	} else {
		rc = verify(argv[5]);
	}
	fhmap_close(map);
	return rc;
}
