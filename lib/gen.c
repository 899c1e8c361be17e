/* Object numbers and generations. Both come from counters in the meta
 * table: object numbers are never reused, and every generation handed out
 * (to a new object or by a bump) is a fresh value of a counter that starts
 * at a random base, so a handle of a lost or recreated map cannot match.
 *
 * A process takes numbers from ranges it reserved: the counters in the map
 * ("next_ino", "next_gen") point past every range reserved, and a range is
 * reserved by a commit that is durable before its first number goes out
 * (the same commit in full mode; one of its own, flushed, otherwise). A
 * commit lost in a crash (lazy or deferred mode) therefore never makes a
 * number come back: the next run starts after the lost run's range. A
 * clean close gives the unused rest of the range back. */
#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <uuid/uuid.h>

#include "fhmap_int.h"

static int meta_put_u64(fhmap__wtxn *w, const char *key, uint64_t v)
{
	unsigned char buf[8];

	fhmap__put_le64(buf, v);
	return fhmap__put(w, FHMAP__DB_META, key, strlen(key), buf, 8);
}

int fhmap__meta_u64(const fhmap__txn *txn, fhmap *m, const char *key, uint64_t *out)
{
	fhmap__val v;
	int rc = fhmap__get(txn, m, FHMAP__DB_META, key, strlen(key), &v);

	if (rc == -ENOENT || (rc == 0 && v.size != 8))
		return -EUCLEAN;
	if (rc == 0)
		*out = fhmap__get_le64(v.data);
	return rc;
}

static int fill_random(void *buf, size_t len)
{
	ssize_t n = getrandom(buf, len, 0);

	return n == (ssize_t)len ? 0 : -EIO;
}

int fhmap__meta_init(fhmap__wtxn *w)
{
	unsigned char fmt[4], uuid[16], secret[16];
	uint32_t base;
	int rc;

	uuid_generate_random(uuid);
	if ((rc = fill_random(secret, sizeof(secret))) != 0 || (rc = fill_random(&base, sizeof(base))) != 0)
		return rc;
	fhmap__put_le32(fmt, FHMAP_FORMAT_VERSION);
	if ((rc = fhmap__put(w, FHMAP__DB_META, "format", 6, fmt, 4)) != 0 ||
	    (rc = fhmap__put(w, FHMAP__DB_META, "uuid", 4, uuid, 16)) != 0 ||
	    (rc = fhmap__put(w, FHMAP__DB_META, "secret", 6, secret, 16)) != 0 ||
	    (rc = meta_put_u64(w, "gen_base", base)) != 0 || (rc = meta_put_u64(w, "next_gen", base)) != 0 ||
	    (rc = meta_put_u64(w, "next_ino", FHMAP_ROOT_INO + 1)) != 0 ||
	    (rc = meta_put_u64(w, "next_layer", 1)) != 0)
		return rc;
	return meta_put_u64(w, "created", (uint64_t)time(NULL));
}

uint32_t fhmap__alloc_room(const fhmap *m)
{
	uint64_t inos = m->alloc.ino_end - m->alloc.ino_next;

	return inos < m->alloc.gen_left ? (uint32_t)inos : m->alloc.gen_left;
}

int fhmap__alloc_reserve(fhmap__wtxn *w)
{
	fhmap *m = w->m;
	uint64_t ino, gen;
	int rc;

	if ((rc = fhmap__meta_u64(&w->t, m, "next_ino", &ino)) != 0 ||
	    (rc = fhmap__meta_u64(&w->t, m, "next_gen", &gen)) != 0)
		return rc;
	if (ino > UINT64_MAX - FHMAP__ALLOC_RANGE)
		return -ENOSPC;
	if ((rc = meta_put_u64(w, "next_ino", ino + FHMAP__ALLOC_RANGE)) != 0 ||
	    (rc = meta_put_u64(w, "next_gen", (uint32_t)(gen + FHMAP__ALLOC_RANGE))) != 0)
		return rc;
	m->alloc.ino_next = ino;
	m->alloc.ino_end = ino + FHMAP__ALLOC_RANGE;
	m->alloc.gen_next = (uint32_t)gen;
	m->alloc.gen_left = FHMAP__ALLOC_RANGE;
	m->alloc_reserved = 1;
	return 0;
}

/* An empty range is refilled in the transaction at hand, except in the
 * overlay, which is not durable: there the writer reserves first. */
static int alloc_refill(fhmap__wtxn *w)
{
	return w->t.ovl ? FHMAP__ENORANGE : fhmap__alloc_reserve(w);
}

int fhmap__alloc_ino(fhmap__wtxn *w, uint64_t *ino)
{
	fhmap__alloc *a = &w->m->alloc;
	int rc;

	if (a->ino_next == a->ino_end && (rc = alloc_refill(w)) != 0)
		return rc;
	*ino = a->ino_next++;
	return 0;
}

int fhmap__alloc_gen(fhmap__wtxn *w, uint32_t *gen)
{
	fhmap__alloc *a = &w->m->alloc;
	int rc;

	if (a->gen_left == 0 && (rc = alloc_refill(w)) != 0)
		return rc;
	*gen = a->gen_next++;
	a->gen_left--;
	return 0;
}

int fhmap__alloc_release(fhmap__wtxn *w)
{
	fhmap *m = w->m;
	fhmap__alloc *a = &m->alloc;
	uint64_t ino, gen;
	int rc;

	if ((rc = fhmap__meta_u64(&w->t, m, "next_ino", &ino)) != 0 ||
	    (rc = fhmap__meta_u64(&w->t, m, "next_gen", &gen)) != 0)
		return rc;
	/* Only if no other process reserved after this one. */
	if (a->ino_end && ino == a->ino_end && (rc = meta_put_u64(w, "next_ino", a->ino_next)) != 0)
		return rc;
	if (a->gen_left && gen == (uint32_t)(a->gen_next + a->gen_left))
		rc = meta_put_u64(w, "next_gen", a->gen_next);
	return rc;
}

struct bump_args {
	uint64_t ino;
	uint32_t gen;
};

static int do_gen_bump(fhmap__wtxn *w, void *arg)
{
	struct bump_args *a = arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load_live(&w->t, w->m, a->ino, &rec, copy)) != 0)
		return rc;
	if ((rc = fhmap__alloc_gen(w, &a->gen)) != 0)
		return rc;
	rec.gen = a->gen;
	return fhmap__obj_store(w, a->ino, &rec);
}

int fhmap_gen_bump(uint32_t *out_gen, fhmap *m, uint64_t ino)
{
	struct bump_args a = { ino, 0 };
	int rc;

	if (!m || !ino)
		return -EINVAL;
	if ((rc = fhmap__write(m, do_gen_bump, &a)) == 0 && out_gen)
		*out_gen = a.gen;
	return rc;
}
