/*
 * libFuzzer target: opening and using a damaged map.
 *
 * A real map is built once; each input is a list of 5-byte patches
 * (offset u32 LE, XOR byte) applied to a copy of its data.mdb. By default
 * the offset indexes the bytes the library itself stored: keys and values
 * of the records on LMDB leaf pages (damaged records). With
 * FHMAP_FUZZ_PAGES=1 it indexes the whole file (damaged pages: LMDB's own
 * page and node headers and meta pages too; LMDB does not validate those,
 * so that mode opens with FHMAP_OPEN_VERIFY, which must refuse what would
 * crash LMDB). The damaged map is opened (read-only, or read-write with one
 * update, chosen by the first patch's offset bit 31) and every object is
 * read, looked up, encoded and decoded, the map walked and counted.
 * Oracle: never a crash (ASan/UBSan); every call returns 0 or an error the
 * header documents for it; a failed open leaves no map; records that come
 * back are well formed; a handle decodes to nothing but the object it
 * names. A successful read that differs from the undamaged map is a silent
 * wrong answer: counted and printed at exit, and with FHMAP_FUZZ_STRICT=1
 * a finding (abort) so that it can be minimised and reproduced;
 * FHMAP_FUZZ_STRICT=2 aborts only when a valid handle decodes to another
 * real handle (the client would be sent to another file).
 */
#define _GNU_SOURCE
#include "rel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOBJ 40
#define MAX_PATCHES 64
#define WALK_MAX 10000

static struct rel_union fz_u;
static char *fz_work, *fz_data, *fz_lock;
static unsigned char *fz_image, *fz_damaged;
static size_t fz_size;
static fhmap_object fz_obj[NOBJ];
static unsigned char fz_fh[NOBJ][FHMAP_FH_MAX];
static size_t fz_fhlen[NOBJ];
static uint64_t fz_runs, fz_opened, fz_refused, fz_wrong, fz_errors;
static int fz_strict;
static unsigned int fz_verify; /* FHMAP_OPEN_VERIFY in page mode */
static uint64_t fz_baseline; /* errors the undamaged map gives (unlinked objects) */
static size_t *fz_targets, fz_ntargets; /* patchable file offsets */

static void fz_report(void)
{
	fprintf(stderr,
	        "fuzz_open: %zu patchable bytes; %llu damaged maps: %llu refused at open, %llu opened; "
	        "%llu calls failed cleanly beyond the undamaged map's; %llu silent wrong answers\n",
	        fz_ntargets, (unsigned long long)fz_runs, (unsigned long long)fz_refused,
	        (unsigned long long)fz_opened, (unsigned long long)(fz_errors - fz_baseline * fz_opened),
	        (unsigned long long)fz_wrong);
}

static void fz_read_file(const char *path, unsigned char **buf, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	REL_ASSERT(fd >= 0 && fstat(fd, &st) == 0, "open %s", path);
	*size = (size_t)st.st_size;
	*buf = malloc(*size);
	REL_ASSERT(*buf && read(fd, *buf, *size) == (ssize_t)*size, "read %s", path);
	close(fd);
}

/* LMDB 0.9 on-disk layout: a page is a 16-byte header (pgno u64, pad u16,
 * flags u16, lower u16, upper u16) and u16 node offsets. A node is (lo u16,
 * hi u16, flags u16, key size u16, key, data): on a leaf, lo | hi << 16 is
 * the data size; on a branch, lo | hi << 16 | flags << 32 is the child page.
 * The meta pages 0 and 1 hold the main database record at offset 88 of the
 * meta (48 bytes, root page at +40) and the transaction id at offset 128. */
#define LMDB_P_BRANCH 0x01
#define LMDB_P_LEAF 0x02
#define LMDB_META_MAIN_ROOT (16 + 72 + 40)
#define LMDB_META_TXNID (16 + 128)

static uint16_t fz_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t fz_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void fz_target_add(size_t off)
{
	static size_t cap;

	if (fz_ntargets == cap) {
		cap = cap ? cap * 2 : 4096;
		fz_targets = realloc(fz_targets, cap * sizeof(*fz_targets));
		REL_ASSERT(fz_targets, "out of memory");
	}
	fz_targets[fz_ntargets++] = off;
}

/* Collects the keys and values of the library's records: the leaves of
 * LMDB's main table, which holds all of the map's tables (not LMDB's own
 * free-page list). */
static void fz_walk(uint64_t pgno, size_t psize, int depth)
{
	const unsigned char *p = fz_image + pgno * psize;
	uint16_t flags, lower;

	REL_ASSERT(depth < 16 && pgno >= 2 && (pgno + 1) * psize <= fz_size, "bad page %llu",
	           (unsigned long long)pgno);
	flags = fz_u16(p + 10);
	lower = fz_u16(p + 12);
	REL_ASSERT(lower >= 16 && lower <= psize, "page %llu: bad header", (unsigned long long)pgno);
	for (size_t k = 0; k < (size_t)(lower - 16) / 2; k++) {
		size_t node = fz_u16(p + 16 + 2 * k), ksize = fz_u16(p + node + 6), dsize;
		uint16_t nflags = fz_u16(p + node + 4);

		if (flags & LMDB_P_BRANCH) {
			fz_walk(fz_u16(p + node) | (uint64_t)fz_u16(p + node + 2) << 16 |
			        (uint64_t)nflags << 32, psize, depth + 1);
			continue;
		}
		if (!(flags & LMDB_P_LEAF))
			continue;
		dsize = fz_u16(p + node) | (size_t)fz_u16(p + node + 2) << 16;
		if (nflags == 0)
			for (size_t b = node + 8; b < node + 8 + ksize + dsize && b < psize; b++)
				fz_target_add(pgno * psize + b);
	}
}

static void fz_find_records(size_t psize)
{
	const unsigned char *m0 = fz_image, *m1 = fz_image + psize;
	const unsigned char *meta = fz_u64(m1 + LMDB_META_TXNID) > fz_u64(m0 + LMDB_META_TXNID) ? m1 : m0;

	fz_walk(fz_u64(meta + LMDB_META_MAIN_ROOT), psize, 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fhmap_map_stats st;
	uint64_t dir = FHMAP_ROOT_INO, ino;
	char name[16];
	fhmap *map;

	(void)argc;
	(void)argv;
	fz_strict = getenv("FHMAP_FUZZ_STRICT") ? atoi(getenv("FHMAP_FUZZ_STRICT")) : 0;
	rel_union_init(&fz_u, "fuzz-open");
	REL_OK(rel_open(&map, fz_u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_LAZY, 0));
	rel_union_register(&fz_u, map);
	for (unsigned int i = 1; i < NOBJ; i++) {
		int is_dir = i % 6 == 1;

		snprintf(name, sizeof(name), "o%u", i);
		ino = rel_union_add(&fz_u, map, dir, name, is_dir);
		if (is_dir)
			dir = ino;
		if (i % 3 == 0)
			rel_union_copyup(&fz_u, map, ino, name, i % 9 != 0);
		if (i % 7 == 0 && !is_dir)
			REL_OK(fhmap_unlink(map, ino));
	}
	for (unsigned int i = 0; i < NOBJ; i++) {
		REL_OK(fhmap_get(&fz_obj[i], map, i + 1));
		fz_fhlen[i] = FHMAP_FH_MAX;
		if (fhmap_encode(fz_fh[i], &fz_fhlen[i], map, i + 1, 0, 0) != 0)
			fz_fhlen[i] = 0;
	}
	REL_OK(fhmap_stats(&st, map));
	fhmap_close(map);
	fz_data = rel_join(fz_u.mapdir, "data.mdb");
	fz_read_file(fz_data, &fz_image, &fz_size);
	free(fz_data);
	if (getenv("FHMAP_FUZZ_PAGES") && atoi(getenv("FHMAP_FUZZ_PAGES"))) {
		for (size_t b = 0; b < fz_size; b++)
			fz_target_add(b);
		fz_verify = FHMAP_OPEN_VERIFY;
	} else {
		fz_find_records(st.page_size);
	}
	REL_ASSERT(fz_ntargets > 0, "no records found in data.mdb");
	fz_damaged = malloc(fz_size);
	REL_ASSERT(fz_damaged, "out of memory");
	fz_work = rel_join(fz_u.top, "damaged");
	rel_mkdir(fz_u.top, "damaged");
	fz_data = rel_join(fz_work, "data.mdb");
	fz_lock = rel_join(fz_work, "lock.mdb");
	/* The oracle itself: the undamaged map gives no wrong answer. */
	LLVMFuzzerTestOneInput(NULL, 0);
	REL_ASSERT(fz_wrong == 0 && fz_refused == 0, "undamaged map: %llu wrong answers",
	           (unsigned long long)fz_wrong);
	fz_baseline = fz_errors;
	fz_runs = fz_opened = fz_errors = 0;
	atexit(fz_report);
	return 0;
}

/* The error codes a call may return on a damaged map besides its own. */
static int fz_damage_rc(int rc)
{
	return rc == -EUCLEAN || rc == -EIO || rc == -ENOMEM || rc == -ENOSPC;
}

/* A call failed: the error must be a damage code or one of @p ok (its
 * documented errors, 0-terminated). */
static void fz_rc(int rc, const int *ok, const char *what)
{
	if (rc == 0)
		return;
	fz_errors++;
	if (fz_damage_rc(rc))
		return;
	for (; *ok; ok++)
		if (rc == *ok)
			return;
	REL_ASSERT(0, "%s: undocumented error %d (%s)", what, rc, fhmap_strerror(rc));
}

#define FZ_OK(...) ((const int[]){ __VA_ARGS__, 0 })

static void fz_silent(const char *what, unsigned long long ino)
{
	fz_wrong++;
	if (fz_strict == 1 || (fz_strict == 2 && strcmp(what, "decode (real handle)") == 0)) {
		fprintf(stderr, "silent wrong answer: %s of object %llu\n", what, ino);
		abort();
	}
}

static void fz_check_record(const fhmap_object *o, const char *what)
{
	REL_ASSERT(o->state >= FHMAP_STATE_ORIGIN && o->state <= FHMAP_STATE_UNLINKED,
	           "%s: state %d", what, (int)o->state);
	REL_ASSERT(o->origin.len <= FHMAP_REALFH_MAX && o->upper.len <= FHMAP_REALFH_MAX,
	           "%s: real handle of %u/%u bytes", what, o->origin.len, o->upper.len);
	REL_ASSERT(memchr(o->name, '\0', sizeof(o->name)) && !strchr(o->name, '/'),
	           "%s: bad name", what);
}

static int fz_same(const fhmap_object *a, const fhmap_object *b)
{
	return a->ino == b->ino && a->gen == b->gen && a->type == b->type && a->state == b->state &&
	       a->parent == b->parent && strcmp(a->name, b->name) == 0 &&
	       a->has_origin == b->has_origin && a->has_upper == b->has_upper &&
	       (!a->has_origin || rel_realfh_eq(&a->origin, &b->origin)) &&
	       (!a->has_upper || rel_realfh_eq(&a->upper, &b->upper));
}

static void fz_use(fhmap *map)
{
	fhmap_map_stats st;
	fhmap_copyup_intent in[8];
	fhmap_layer layers[4];
	fhmap_decoded d;
	fhmap_object o;
	fhmap_info info;
	fhmap_iter *it;
	char path[FHMAP_PATH_MAX];
	size_t n;
	uint64_t got;
	int rc;

	fz_rc(fhmap_info_get(&info, map), FZ_OK(0), "info_get");
	fz_rc(fhmap_layer_list(layers, 4, &n, map), FZ_OK(0), "layer_list");
	fz_rc(fhmap_copyup_pending(in, 8, &n, map), FZ_OK(0), "copyup_pending");
	fz_rc(fhmap_stats(&st, map), FZ_OK(0), "stats");
	for (unsigned int i = 0; i < NOBJ; i++) {
		const fhmap_object *t = &fz_obj[i];

		rc = fhmap_get(&o, map, t->ino);
		fz_rc(rc, FZ_OK(-ENOENT), "get");
		if (rc == 0) {
			fz_check_record(&o, "get");
			if (!fz_same(&o, t))
				fz_silent("get", t->ino);
		} else if (rc == -ENOENT) {
			fz_silent("get (object missing)", t->ino);
		}
		if (t->has_origin && t->state != FHMAP_STATE_UNLINKED) {
			rc = fhmap_lookup_origin(&got, map, &t->origin);
			fz_rc(rc, FZ_OK(-ENOENT), "lookup_origin");
			if (rc == 0 ? got != t->ino : rc == -ENOENT)
				fz_silent("lookup_origin", t->ino);
		}
		if (t->has_upper && t->state != FHMAP_STATE_UNLINKED) {
			rc = fhmap_lookup_upper(&got, map, &t->upper);
			fz_rc(rc, FZ_OK(-ENOENT), "lookup_upper");
			if (rc == 0 ? got != t->ino : rc == -ENOENT)
				fz_silent("lookup_upper", t->ino);
		}
		rc = fhmap_path(path, sizeof(path), map, t->ino);
		/* Damaged parents may form a cycle or a long chain. */
		fz_rc(rc, FZ_OK(-ENOENT, -ESTALE, -ELOOP, -ERANGE), "path");
		if (fz_fhlen[i] == 0)
			continue;
		rc = fhmap_decode(&d, map, fz_fh[i], fz_fhlen[i], 0);
		fz_rc(rc, FZ_OK(-ESTALE, -EBADMSG), "decode");
		/* The MAC proves the object number and generation; only the map's
		 * own data can mislead what they resolve to. */
		REL_ASSERT(rc != 0 || (d.ino == t->ino && d.gen == t->gen),
		           "decode of object %llu resolved %llu gen %u", (unsigned long long)t->ino,
		           (unsigned long long)d.ino, d.gen);
		if (rc == 0 && !rel_realfh_eq(&d.real, t->has_upper ? &t->upper : &t->origin))
			fz_silent("decode (real handle)", t->ino);
		else if (rc != 0 && !fz_damage_rc(rc))
			fz_silent("decode (valid handle refused)", t->ino); /* e.g. -ESTALE */
	}
	rc = fhmap_iter_new(&it, map, 0);
	fz_rc(rc, FZ_OK(-ENOMEM), "iter_new");
	if (rc == 0) {
		uint64_t last = 0;

		for (n = 0; n < WALK_MAX && (rc = fhmap_iter_next(&o, it)) == 0; n++) {
			fz_check_record(&o, "iter_next");
			/* 0 is no object number; a damaged key can say it. */
			if (o.ino <= last)
				fz_silent("iter_next (object number)", o.ino);
			last = o.ino;
		}
		REL_ASSERT(n < WALK_MAX, "iteration does not end");
		fz_rc(rc, FZ_OK(-ENOENT), "iter_next");
		fhmap_iter_free(it);
	}
}

static void fz_write_one(fhmap *map)
{
	fhmap_realfh fh;
	uint64_t ino;
	int rc;

	/* A damaged layer record may name another root or role: any errno of
	 * name_to_handle_at is documented for fhmap_realfh_from_path. */
	rel_touch(fz_u.lower, "late");
	rc = fhmap_realfh_from_path(&fh, map, fz_u.lower_id, "late");
	REL_ASSERT(rc <= 0, "realfh_from_path returned %d", rc);
	fz_errors += rc != 0;
	if (rc == 0)
		fz_rc(fhmap_bind(&ino, map, &fh, FHMAP_ROOT_INO, "late", S_IFREG),
		      FZ_OK(-ENOENT, -ENOTDIR, -ENXIO, -ESTALE, -EINVAL, -EEXIST), "bind");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int rw = size >= 5 && (data[3] & 0x80);
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *map = NULL;
	int fd, rc;

	fz_runs++;
	memcpy(fz_damaged, fz_image, fz_size);
	for (size_t p = 0; p + 5 <= size && p / 5 < MAX_PATCHES; p += 5) {
		uint32_t off = (uint32_t)data[p] | (uint32_t)data[p + 1] << 8 |
		               (uint32_t)data[p + 2] << 16 | (uint32_t)(data[p + 3] & 0x7f) << 24;

		fz_damaged[fz_targets[off % fz_ntargets]] ^= data[p + 4];
	}
	unlink(fz_lock);
	fd = open(fz_data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REL_ASSERT(fd >= 0 && write(fd, fz_damaged, fz_size) == (ssize_t)fz_size, "write %s", fz_data);
	close(fd);
	o.flags = (rw ? 0 : FHMAP_OPEN_RDONLY) | fz_verify;
	rc = fhmap_open(&map, fz_work, &o);
	if (rc != 0) {
		REL_ASSERT(map == NULL, "failed open left a map");
		REL_ASSERT(rc == -EUCLEAN || rc == -EMEDIUMTYPE || rc == -EPROTONOSUPPORT || rc == -EIO ||
		           rc == -ENOMEM || rc == -EINVAL,
		           "open of a damaged map: undocumented error %d (%s)", rc, fhmap_strerror(rc));
		fz_refused++;
		return 0;
	}
	fz_opened++;
	fz_use(map);
	if (rw)
		fz_write_one(map);
	fhmap_close(map);
	return 0;
}
