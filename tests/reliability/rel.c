#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rel.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void rel_die(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static char *rel_tmp_paths[16];
static unsigned int rel_tmp_count;
static pid_t rel_tmp_owner;

static int rel_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void rel_rmtree(const char *path)
{
	nftw(path, rel_rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* Runs in the creating process only: forked children leave with _exit or
 * exit, and must not remove their parent's directories. */
static void rel_tmp_cleanup(void)
{
	if (getpid() != rel_tmp_owner || getenv("FHMAP_REL_KEEP"))
		return;
	for (unsigned int i = 0; i < rel_tmp_count; i++)
		rel_rmtree(rel_tmp_paths[i]);
}

char *rel_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (!base || !*base)
		base = "/tmp";
	REL_ASSERT(asprintf(&path, "%s/fhmap-%s-XXXXXX", base, tag) > 0, "asprintf");
	REL_ASSERT(mkdtemp(path), "mkdtemp %s: %s", path, strerror(errno));
	if (rel_tmp_count == 0) {
		rel_tmp_owner = getpid();
		atexit(rel_tmp_cleanup);
	}
	REL_ASSERT(rel_tmp_count < sizeof(rel_tmp_paths) / sizeof(rel_tmp_paths[0]),
	           "too many temporary directories");
	rel_tmp_paths[rel_tmp_count++] = path;
	return strdup(path);
}

char *rel_join(const char *dir, const char *name)
{
	char *path;

	REL_ASSERT(asprintf(&path, "%s/%s", dir, name) > 0, "asprintf");
	return path;
}

void rel_touch(const char *dir, const char *name)
{
	char *path = rel_join(dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	REL_ASSERT(fd >= 0, "create %s: %s", path, strerror(errno));
	close(fd);
	free(path);
}

void rel_mkdir(const char *dir, const char *name)
{
	char *path = rel_join(dir, name);

	REL_ASSERT(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path,
	           strerror(errno));
	free(path);
}

long rel_env_long(const char *name, long def)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (!v || !*v)
		return def;
	errno = 0;
	n = strtol(v, &end, 0);
	REL_ASSERT(errno == 0 && *end == '\0', "%s=%s is not a number", name, v);
	return n;
}

uint64_t rel_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t rel_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t rel_seed(const char *test)
{
	const char *v = getenv("FHMAP_REL_SEED");
	uint64_t seed;

	if (v && *v) {
		seed = strtoull(v, NULL, 0);
	} else {
		seed = rel_now_us() ^ ((uint64_t)getpid() << 32);
		seed = rel_rand(&seed);
	}
	printf("%s: seed 0x%016llx (set FHMAP_REL_SEED to repeat)\n", test,
	       (unsigned long long)seed);
	fflush(stdout);
	return seed;
}

void rel_union_init(struct rel_union *u, const char *tag)
{
	memset(u, 0, sizeof(*u));
	u->top = rel_tmpdir(tag);
	rel_mkdir(u->top, "lower");
	rel_mkdir(u->top, "upper");
	u->lower = rel_join(u->top, "lower");
	u->upper = rel_join(u->top, "upper");
	u->mapdir = rel_join(u->top, "map");
}

void rel_union_register(struct rel_union *u, fhmap *map)
{
	fhmap_realfh root;
	uint64_t ino;

	REL_OK(fhmap_layer_add(&u->lower_id, map, FHMAP_LAYER_LOWER, u->lower));
	REL_OK(fhmap_layer_add(&u->upper_id, map, FHMAP_LAYER_UPPER, u->upper));
	REL_OK(fhmap_realfh_from_path(&root, map, u->lower_id, ""));
	REL_OK(fhmap_bind(&ino, map, &root, 0, "", S_IFDIR));
	REL_ASSERT(ino == FHMAP_ROOT_INO, "root bound as %llu", (unsigned long long)ino);
}

uint64_t rel_union_add(struct rel_union *u, fhmap *map, uint64_t parent, const char *name, int is_dir)
{
	fhmap_realfh fh;
	uint64_t ino;

	if (is_dir)
		rel_mkdir(u->lower, name);
	else
		rel_touch(u->lower, name);
	REL_OK(fhmap_realfh_from_path(&fh, map, u->lower_id, name));
	REL_OK(fhmap_bind(&ino, map, &fh, parent, name, is_dir ? S_IFDIR : S_IFREG));
	return ino;
}

void rel_union_copyup(struct rel_union *u, fhmap *map, uint64_t ino, const char *name, int commit)
{
	fhmap_realfh fh;

	rel_touch(u->upper, name);
	REL_OK(fhmap_copyup_begin(map, ino, u->upper_id));
	if (!commit)
		return;
	REL_OK(fhmap_realfh_from_path(&fh, map, u->upper_id, name));
	REL_OK(fhmap_copyup_commit(map, ino, &fh));
}

void rel_union_free(struct rel_union *u)
{
	free(u->top);
	free(u->lower);
	free(u->upper);
	free(u->mapdir);
}

void rel_log_stderr(void *ctx, fhmap_log_level level, const char *msg)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	fprintf(stderr, "[%s] fhmap %s: %s\n", ctx ? (const char *)ctx : "test",
	        (unsigned int)level < 4 ? names[level] : "?", msg);
}

/* Errors only: warnings (pending intents after a kill) are expected here. */
static void rel_log_quiet(void *ctx, fhmap_log_level level, const char *msg)
{
	if (level == FHMAP_LOG_ERROR)
		rel_log_stderr(ctx, level, msg);
}

int rel_open(fhmap **out, const char *dir, unsigned int flags, fhmap_sync_mode sync,
             uint64_t map_size)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;

	o.flags = flags;
	o.sync = sync;
	o.map_size = map_size;
	o.log = rel_log_quiet;
	return fhmap_open(out, dir, &o);
}

int rel_realfh_eq(const fhmap_realfh *a, const fhmap_realfh *b)
{
	return a->layer == b->layer && a->type == b->type && a->len == b->len &&
	       a->len <= FHMAP_REALFH_MAX && memcmp(a->data, b->data, a->len) == 0;
}

#define PROBLEM(...) \
	do { fprintf(stderr, "inconsistent: " __VA_ARGS__); fputc('\n', stderr); problems++; } while (0)

static int rel_intent_has(const fhmap_copyup_intent *v, size_t n, uint64_t ino)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].ino == ino)
			return 1;
	return 0;
}

static unsigned int rel_check_live(fhmap *map, const fhmap_object *o, const fhmap_copyup_intent *pend,
                                   size_t npend, struct rel_check *c)
{
	unsigned int problems = 0;
	unsigned char fh[FHMAP_FH_MAX];
	fhmap_decoded d;
	fhmap_object p;
	uint64_t got;
	size_t len = sizeof(fh);
	int rc;

	if (o->has_origin) {
		rc = fhmap_lookup_origin(&got, map, &o->origin);
		c->lookups++;
		if (rc != 0 || got != o->ino)
			PROBLEM("object %llu: origin looks up to %llu (rc %d)", (unsigned long long)o->ino,
			        (unsigned long long)got, rc);
	}
	if (o->has_upper) {
		rc = fhmap_lookup_upper(&got, map, &o->upper);
		c->lookups++;
		if (rc != 0 || got != o->ino)
			PROBLEM("object %llu: upper looks up to %llu (rc %d)", (unsigned long long)o->ino,
			        (unsigned long long)got, rc);
	}
	switch (o->state) {
	case FHMAP_STATE_ORIGIN:
		if (!o->has_origin || o->has_upper || rel_intent_has(pend, npend, o->ino))
			PROBLEM("object %llu: ORIGIN with origin %d upper %d", (unsigned long long)o->ino,
			        o->has_origin, o->has_upper);
		break;
	case FHMAP_STATE_COPYUP:
		if (!o->has_origin || o->has_upper || !rel_intent_has(pend, npend, o->ino))
			PROBLEM("object %llu: COPYUP with origin %d upper %d, intent %d",
			        (unsigned long long)o->ino, o->has_origin, o->has_upper,
			        rel_intent_has(pend, npend, o->ino));
		break;
	case FHMAP_STATE_UPPER:
		if (!o->has_upper || rel_intent_has(pend, npend, o->ino))
			PROBLEM("object %llu: UPPER without upper handle", (unsigned long long)o->ino);
		break;
	default:
		PROBLEM("object %llu: bad state %d", (unsigned long long)o->ino, (int)o->state);
	}
	if (o->ino == FHMAP_ROOT_INO) {
		if (o->parent != 0 || o->type != S_IFDIR)
			PROBLEM("root has parent %llu type 0%o", (unsigned long long)o->parent, o->type);
	} else {
		rc = fhmap_get(&p, map, o->parent);
		if (rc != 0 || p.type != S_IFDIR || p.state == FHMAP_STATE_UNLINKED)
			PROBLEM("object %llu: parent %llu is not a live directory (rc %d)",
			        (unsigned long long)o->ino, (unsigned long long)o->parent, rc);
	}
	rc = fhmap_encode(fh, &len, map, o->ino, 0, 0);
	if (rc == 0)
		rc = fhmap_decode(&d, map, fh, len, 0);
	c->lookups++;
	if (rc != 0 || d.ino != o->ino || d.gen != o->gen || d.state != o->state)
		PROBLEM("object %llu: handle round trip rc %d", (unsigned long long)o->ino, rc);
	else if (!rel_realfh_eq(&d.real, o->has_upper ? &o->upper : &o->origin))
		PROBLEM("object %llu: decode names the wrong real handle", (unsigned long long)o->ino);
	return problems;
}

static unsigned int rel_check_tomb(fhmap *map, const fhmap_object *o, struct rel_check *c)
{
	unsigned int problems = 0;
	unsigned char fh[FHMAP_FH_MAX];
	size_t len = sizeof(fh);
	uint64_t got = 0;
	int rc;

	if (o->has_origin && fhmap_lookup_origin(&got, map, &o->origin) == 0 && got == o->ino)
		PROBLEM("tombstone %llu still indexed by origin", (unsigned long long)o->ino);
	if (o->has_upper && fhmap_lookup_upper(&got, map, &o->upper) == 0 && got == o->ino)
		PROBLEM("tombstone %llu still indexed by upper", (unsigned long long)o->ino);
	rc = fhmap_encode(fh, &len, map, o->ino, 0, 0);
	c->lookups += 3;
	if (rc != -ESTALE)
		PROBLEM("tombstone %llu encodes with rc %d", (unsigned long long)o->ino, rc);
	return problems;
}

/* Every entry of an index names a live object that carries its handle. */
static unsigned int rel_check_index(fhmap *map, fhmap_index index, uint64_t *entries,
                                    struct rel_check *c)
{
	const char *which = index == FHMAP_INDEX_ORIGIN ? "origin" : "upper";
	fhmap_index_entry *e = malloc(2 * sizeof(*e));
	unsigned int problems = 0;
	fhmap_object *o = malloc(sizeof(*o));
	int rc, k = 0;

	REL_ASSERT(e && o, "out of memory");
	*entries = 0;
	for (;;) {
		rc = fhmap_index_next(&e[k], map, index, *entries ? &e[!k].fh : NULL);
		if (rc)
			break;
		(*entries)++;
		c->lookups++;
		rc = fhmap_get(o, map, e[k].ino);
		if (rc != 0 || o->state == FHMAP_STATE_UNLINKED ||
		    !(index == FHMAP_INDEX_ORIGIN ? o->has_origin && rel_realfh_eq(&o->origin, &e[k].fh)
		                                  : o->has_upper && rel_realfh_eq(&o->upper, &e[k].fh)))
			PROBLEM("%s index entry names object %llu, which does not carry it (rc %d)", which,
			        (unsigned long long)e[k].ino, rc);
		k = !k;
	}
	if (rc != -ENOENT)
		PROBLEM("fhmap_index_next(%s): %s", which, fhmap_strerror(rc));
	free(e);
	free(o);
	return problems;
}

unsigned int rel_check_map(fhmap *map, struct rel_check *out)
{
	uint64_t n_origin_index = 0, n_upper_index = 0;
	struct rel_check c = { 0 };
	uint64_t st_count[5] = { 0 }, origin_entries = 0, upper_entries = 0, last = 0;
	fhmap_copyup_intent *pend = NULL;
	unsigned int problems = 0;
	fhmap_map_stats stats;
	fhmap_info info;
	fhmap_object *o = malloc(sizeof(*o));
	fhmap_iter *it = NULL;
	size_t npend = 0, cap;
	int rc;

	REL_ASSERT(o, "out of memory");
	rc = fhmap_info_get(&info, map);
	if (rc != 0)
		PROBLEM("fhmap_info_get: %s", fhmap_strerror(rc));
	rc = fhmap_copyup_pending(NULL, 0, &npend, map);
	if (rc == 0 && npend > 0) {
		cap = npend;
		pend = calloc(cap, sizeof(*pend));
		REL_ASSERT(pend, "out of memory");
		rc = fhmap_copyup_pending(pend, cap, &npend, map);
		if (rc == 0 && npend > cap)
			PROBLEM("pending intents grew while nobody writes");
	}
	if (rc != 0)
		PROBLEM("fhmap_copyup_pending: %s", fhmap_strerror(rc));
	c.pending = npend;
	REL_OK(fhmap_iter_new(&it, map, 0));
	while ((rc = fhmap_iter_next(o, it)) == 0) {
		c.objects++;
		if (o->ino <= last || (info.next_ino && o->ino >= info.next_ino))
			PROBLEM("object %llu out of order or beyond next_ino %llu",
			        (unsigned long long)o->ino, (unsigned long long)info.next_ino);
		last = o->ino;
		if ((unsigned int)o->state <= 4)
			st_count[o->state]++;
		if (o->state == FHMAP_STATE_UNLINKED) {
			c.tombstones++;
			problems += rel_check_tomb(map, o, &c);
			continue;
		}
		c.live++;
		origin_entries += o->has_origin ? 1 : 0;
		upper_entries += o->has_upper ? 1 : 0;
		problems += rel_check_live(map, o, pend, npend, &c);
	}
	if (rc != -ENOENT)
		PROBLEM("fhmap_iter_next: %s", fhmap_strerror(rc));
	fhmap_iter_free(it);
	for (size_t i = 0; i < npend; i++) {
		rc = fhmap_get(o, map, pend[i].ino);
		if (rc != 0 || o->state != FHMAP_STATE_COPYUP)
			PROBLEM("intent for object %llu in state %d (rc %d)", (unsigned long long)pend[i].ino,
			        rc ? -1 : (int)o->state, rc);
	}
	problems += rel_check_index(map, FHMAP_INDEX_ORIGIN, &n_origin_index, &c);
	problems += rel_check_index(map, FHMAP_INDEX_UPPER, &n_upper_index, &c);
	if (n_origin_index != origin_entries || n_upper_index != upper_entries)
		PROBLEM("indexes hold %llu origin and %llu upper entries; live objects carry %llu and %llu",
		        (unsigned long long)n_origin_index, (unsigned long long)n_upper_index,
		        (unsigned long long)origin_entries, (unsigned long long)upper_entries);
	rc = fhmap_stats(&stats, map);
	if (rc != 0) {
		PROBLEM("fhmap_stats: %s", fhmap_strerror(rc));
	} else if (stats.objects != c.objects || stats.origin_only != st_count[FHMAP_STATE_ORIGIN] ||
	           stats.copying != st_count[FHMAP_STATE_COPYUP] ||
	           stats.upper != st_count[FHMAP_STATE_UPPER] ||
	           stats.unlinked != st_count[FHMAP_STATE_UNLINKED] || stats.pending != npend ||
	           stats.origin_entries != origin_entries || stats.upper_entries != upper_entries) {
		PROBLEM("stats disagree with the walk: objects %llu/%llu origin-only %llu/%llu "
		        "copying %llu/%llu upper %llu/%llu unlinked %llu/%llu pending %llu/%zu "
		        "origin entries %llu/%llu upper entries %llu/%llu",
		        (unsigned long long)stats.objects, (unsigned long long)c.objects,
		        (unsigned long long)stats.origin_only, (unsigned long long)st_count[1],
		        (unsigned long long)stats.copying, (unsigned long long)st_count[2],
		        (unsigned long long)stats.upper, (unsigned long long)st_count[3],
		        (unsigned long long)stats.unlinked, (unsigned long long)st_count[4],
		        (unsigned long long)stats.pending, npend,
		        (unsigned long long)stats.origin_entries, (unsigned long long)origin_entries,
		        (unsigned long long)stats.upper_entries, (unsigned long long)upper_entries);
	}
	free(pend);
	free(o);
	if (out)
		*out = c;
	return problems;
}
