/* Object numbers and generations. Both come from counters in the meta
 * table: object numbers are never reused, and every generation handed out
 * (to a new object or by a bump) is a fresh value of a counter that starts
 * at a random base, so a handle of a lost or recreated map cannot match. */
#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <uuid/uuid.h>

#include "fhmap_int.h"

static int meta_put_u64(fhmap__wtxn *w, const char *key, uint64_t v)
{
	unsigned char buf[8];

	fhmap__put_le64(buf, v);
	return fhmap__put(w, FHMAP__DB_META, key, strlen(key), buf, 8, 0);
}

int fhmap__meta_u64(MDB_txn *txn, fhmap *m, const char *key, uint64_t *out)
{
	MDB_val v;
	int rc = fhmap__get(txn, m, FHMAP__DB_META, key, strlen(key), &v);

	if (rc == -ENOENT || (rc == 0 && v.mv_size != 8))
		return -EUCLEAN;
	if (rc == 0)
		*out = fhmap__get_le64(v.mv_data);
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
	if ((rc = fhmap__put(w, FHMAP__DB_META, "format", 6, fmt, 4, 0)) != 0 ||
	    (rc = fhmap__put(w, FHMAP__DB_META, "uuid", 4, uuid, 16, 0)) != 0 ||
	    (rc = fhmap__put(w, FHMAP__DB_META, "secret", 6, secret, 16, 0)) != 0 ||
	    (rc = meta_put_u64(w, "gen_base", base)) != 0 || (rc = meta_put_u64(w, "next_gen", base)) != 0 ||
	    (rc = meta_put_u64(w, "next_ino", FHMAP_ROOT_INO + 1)) != 0 ||
	    (rc = meta_put_u64(w, "next_layer", 1)) != 0)
		return rc;
	return meta_put_u64(w, "created", (uint64_t)time(NULL));
}

int fhmap__alloc_ino(fhmap__wtxn *w, uint64_t *ino)
{
	int rc = fhmap__meta_u64(w->txn, w->m, "next_ino", ino);

	if (rc)
		return rc;
	if (*ino == UINT64_MAX)
		return -ENOSPC;
	return meta_put_u64(w, "next_ino", *ino + 1);
}

int fhmap__alloc_gen(fhmap__wtxn *w, uint32_t *gen)
{
	uint64_t next;
	int rc = fhmap__meta_u64(w->txn, w->m, "next_gen", &next);

	if (rc)
		return rc;
	*gen = (uint32_t)next;
	return meta_put_u64(w, "next_gen", (uint32_t)(next + 1));
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

	if ((rc = fhmap__obj_load_live(w->txn, w->m, a->ino, &rec, copy)) != 0)
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
