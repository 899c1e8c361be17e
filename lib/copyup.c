/* Copy-up in two steps. begin records an intent (pending table + state
 * COPYUP) before the upper file exists; commit records the upper handle and
 * indexes it in the same transaction that clears the intent, so a reader
 * sees either the origin or the finished copy-up, never half of it.
 * Pending record: u32 layer, u32 pid, u64 time (little-endian). */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fhmap_int.h"

#define PENDING_SIZE 16

struct copyup_args {
	uint64_t ino;
	uint32_t layer;
	const fhmap_realfh *upper;
	fhmap_object *out; /* receives the record, or NULL */
};

static int do_begin(fhmap__wtxn *w, void *arg)
{
	struct copyup_args *a = arg;
	unsigned char copy[FHMAP__REC_MAX], key[8], val[PENDING_SIZE];
	fhmap_layer_role role;
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load(&w->t, w->m, a->ino, &rec, copy)) != 0)
		return rc;
	switch (rec.state) {
	case FHMAP_STATE_UNLINKED:
		return -ESTALE;
	case FHMAP_STATE_UPPER:
		return -EEXIST;
	case FHMAP_STATE_COPYUP:
		return -EBUSY;
	default:
		break;
	}
	if ((rc = fhmap__layer_role(&w->t, w->m, a->layer, &role)) != 0)
		return rc;
	if (role != FHMAP_LAYER_UPPER)
		return -ENXIO;
	fhmap__be64(key, a->ino);
	fhmap__put_le32(val, a->layer);
	fhmap__put_le32(val + 4, (uint32_t)getpid());
	fhmap__put_le64(val + 8, (uint64_t)time(NULL));
	if ((rc = fhmap__put(w, FHMAP__DB_PENDING, key, 8, val, PENDING_SIZE)) != 0)
		return rc;
	rec.state = FHMAP_STATE_COPYUP;
	return fhmap__obj_store(w, a->ino, &rec);
}

int fhmap_copyup_begin(fhmap *m, uint64_t ino, uint32_t upper_layer)
{
	struct copyup_args a = { ino, upper_layer, NULL, NULL };

	if (!m || !ino)
		return -EINVAL;
	return fhmap__write(m, do_begin, &a);
}

/* The layer of this object's pending intent. */
static int pending_layer(const fhmap__txn *txn, fhmap *m, uint64_t ino, uint32_t *layer)
{
	unsigned char key[8];
	fhmap__val v;
	int rc;

	fhmap__be64(key, ino);
	if ((rc = fhmap__get(txn, m, FHMAP__DB_PENDING, key, 8, &v)) != 0)
		return rc == -ENOENT ? -EUCLEAN : rc; /* state says pending */
	if (v.size != PENDING_SIZE)
		return -EUCLEAN;
	*layer = fhmap__get_le32(v.data);
	return 0;
}

/* Records @a->upper as the object's upper real handle and indexes it. */
static int set_upper(fhmap__wtxn *w, struct copyup_args *a, fhmap__rec *rec)
{
	unsigned char key[FHMAP__IKEY_MAX], val[8];
	fhmap__val v;
	int rc;

	fhmap__rfh_view(&rec->upper, a->upper);
	rc = fhmap__get(&w->t, w->m, FHMAP__DB_UPPER, key, fhmap__ikey(key, &rec->upper), &v);
	if (rc == 0)
		return v.size == 8 && fhmap__get_le64(v.data) == a->ino ? -EUCLEAN : -EEXIST;
	if (rc != -ENOENT)
		return rc;
	fhmap__put_le64(val, a->ino);
	if ((rc = fhmap__put(w, FHMAP__DB_UPPER, key, fhmap__ikey(key, &rec->upper), val, 8)) != 0)
		return rc;
	rec->has_upper = 1;
	rec->state = FHMAP_STATE_UPPER;
	if ((rc = fhmap__obj_store(w, a->ino, rec)) != 0)
		return rc;
	if (a->out)
		fhmap__rec_export(a->out, a->ino, rec);
	return fhmap__pending_drop(w, a->ino);
}

static int do_commit(fhmap__wtxn *w, void *arg)
{
	struct copyup_args *a = arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap__rec rec;
	uint32_t layer;
	int rc;

	if ((rc = fhmap__obj_load_live(&w->t, w->m, a->ino, &rec, copy)) != 0)
		return rc;
	if (rec.state != FHMAP_STATE_COPYUP)
		return -EINVAL;
	if ((rc = pending_layer(&w->t, w->m, a->ino, &layer)) != 0)
		return rc;
	if (a->upper->layer != layer)
		return -ENXIO;
	return set_upper(w, a, &rec);
}

int fhmap_copyup_commit(fhmap *m, uint64_t ino, const fhmap_realfh *upper)
{
	struct copyup_args a = { ino, 0, upper, NULL };

	if (!m || !ino || fhmap__realfh_check(upper))
		return -EINVAL;
	return fhmap__write(m, do_commit, &a);
}

static int do_adopt(fhmap__wtxn *w, void *arg)
{
	struct copyup_args *a = arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap_layer_role role;
	fhmap__rec rec;
	uint32_t layer;
	int rc;

	if ((rc = fhmap__obj_load_live(&w->t, w->m, a->ino, &rec, copy)) != 0)
		return rc;
	if (rec.state == FHMAP_STATE_UPPER) {
		/* Adopted already (a recovery run again): the same handle. */
		if (rec.upper.layer != a->upper->layer || rec.upper.type != a->upper->type ||
		    rec.upper.len != a->upper->len || memcmp(rec.upper.data, a->upper->data, rec.upper.len))
			return -EEXIST;
		if (a->out)
			fhmap__rec_export(a->out, a->ino, &rec);
		return 0;
	}
	if ((rc = fhmap__layer_role(&w->t, w->m, a->upper->layer, &role)) != 0)
		return rc;
	if (role != FHMAP_LAYER_UPPER)
		return -ENXIO;
	if (rec.state == FHMAP_STATE_COPYUP &&
	    ((rc = pending_layer(&w->t, w->m, a->ino, &layer)) != 0 || layer != a->upper->layer))
		return rc ? rc : -ENXIO;
	return set_upper(w, a, &rec);
}

int fhmap_copyup_adopt(fhmap_object *out, fhmap *m, uint64_t ino, const fhmap_realfh *upper)
{
	struct copyup_args a = { ino, 0, upper, out };

	if (!m || !ino || fhmap__realfh_check(upper))
		return -EINVAL;
	return fhmap__write(m, do_adopt, &a);
}

int fhmap__pending_drop(fhmap__wtxn *w, uint64_t ino)
{
	unsigned char key[8];
	int rc;

	fhmap__be64(key, ino);
	rc = fhmap__del(w, FHMAP__DB_PENDING, key, 8);
	return rc == -ENOENT ? 0 : rc;
}

static int do_abort(fhmap__wtxn *w, void *arg)
{
	uint64_t ino = *(uint64_t *)arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load(&w->t, w->m, ino, &rec, copy)) != 0)
		return rc;
	if (rec.state != FHMAP_STATE_COPYUP)
		return -EINVAL;
	if ((rc = fhmap__pending_drop(w, ino)) != 0)
		return rc;
	rec.state = FHMAP_STATE_ORIGIN;
	return fhmap__obj_store(w, ino, &rec);
}

int fhmap_copyup_abort(fhmap *m, uint64_t ino)
{
	if (!m || !ino)
		return -EINVAL;
	return fhmap__write(m, do_abort, &ino);
}

int fhmap_copyup_pending(fhmap_copyup_intent *out, size_t cap, size_t *count, fhmap *m)
{
	fhmap__cursor cur;
	fhmap__val k, v;
	fhmap__rtxn r;
	size_t n = 0;
	int rc;

	if (!count || !m || (cap && !out))
		return -EINVAL;
	*count = 0;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if ((rc = fhmap__cursor_open(&cur, &r.t, m, FHMAP__DB_PENDING)) == 0) {
		for (rc = fhmap__cursor_get(&cur, &k, &v, FHMAP__FIRST); rc == 0;
		     rc = fhmap__cursor_get(&cur, &k, &v, FHMAP__NEXT)) {
			const unsigned char *kp = k.data, *vp = v.data;

			if (k.size != 8 || v.size != PENDING_SIZE) {
				rc = -EUCLEAN;
				break;
			}
			if (n < cap) {
				out[n].ino = fhmap__get_be64(kp);
				out[n].upper_layer = fhmap__get_le32(vp);
				out[n].pid = fhmap__get_le32(vp + 4);
				out[n].started = fhmap__get_le64(vp + 8);
			}
			n++;
		}
		fhmap__cursor_close(&cur);
		rc = rc == -ENOENT ? 0 : rc;
	}
	fhmap__read_end(m, &r);
	*count = n;
	return rc;
}
