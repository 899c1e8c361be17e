/* Objects: binding real handles to object numbers, name hints, unlink,
 * iteration, index maintenance and statistics. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fhmap_int.h"

#define MAX_DEPTH 4096

static int index_db(fhmap_index index)
{
	return index == FHMAP_INDEX_ORIGIN ? FHMAP__DB_ORIGIN : FHMAP__DB_UPPER;
}

/* Looks a real handle up in an index: 0 and *ino, or -ENOENT. */
static int index_get(const fhmap__txn *txn, fhmap *m, int db, const fhmap__rfh *fh, uint64_t *ino)
{
	unsigned char key[FHMAP__IKEY_MAX];
	fhmap__val v;
	int rc = fhmap__get(txn, m, db, key, fhmap__ikey(key, fh), &v);

	if (rc)
		return rc;
	if (v.size != 8)
		return -EUCLEAN;
	*ino = fhmap__get_le64(v.data);
	return 0;
}

static int rec_carries(const fhmap__rec *rec, int db, const fhmap__rfh *fh)
{
	const fhmap__rfh *own = db == FHMAP__DB_ORIGIN ? &rec->origin : &rec->upper;
	int has = db == FHMAP__DB_ORIGIN ? rec->has_origin : rec->has_upper;

	return has && own->layer == fh->layer && own->type == fh->type && own->len == fh->len &&
	       !memcmp(own->data, fh->data, fh->len);
}

/* Looks a real handle up and loads the object it names, which must carry
 * that handle: a stale or damaged entry never names another object. */
static int index_find(const fhmap__txn *txn, fhmap *m, int db, const fhmap__rfh *fh, uint64_t *ino,
                      fhmap__rec *rec)
{
	int rc = index_get(txn, m, db, fh, ino);

	if (rc)
		return rc;
	if ((rc = fhmap__obj_load(txn, m, *ino, rec, NULL)) != 0)
		return rc == -ENOENT ? -EUCLEAN : rc;
	if (rec->state == FHMAP_STATE_UNLINKED || !rec_carries(rec, db, fh)) {
		fhmap__log(m, FHMAP_LOG_WARN,
		           "%s index entry names object %llu, which does not carry that handle: "
		           "damaged index (fhmapctl check --repair)",
		           db == FHMAP__DB_ORIGIN ? "origin" : "upper", (unsigned long long)*ino);
		return -EUCLEAN;
	}
	return 0;
}

static int index_put(fhmap__wtxn *w, int db, const fhmap__rfh *fh, uint64_t ino)
{
	unsigned char key[FHMAP__IKEY_MAX], val[8];

	fhmap__put_le64(val, ino);
	return fhmap__put(w, db, key, fhmap__ikey(key, fh), val, 8);
}

/* Deletes an index entry only if it points to @ino (never another's). */
static int index_del_if(fhmap__wtxn *w, int db, const fhmap__rfh *fh, uint64_t ino)
{
	unsigned char key[FHMAP__IKEY_MAX];
	uint64_t cur;
	int rc = index_get(&w->t, w->m, db, fh, &cur);

	if (rc == -ENOENT || (rc == 0 && cur != ino))
		return 0;
	if (rc)
		return rc;
	return fhmap__del(w, db, key, fhmap__ikey(key, fh));
}

/* A live directory that may take a new entry. */
static int parent_check(const fhmap__txn *txn, fhmap *m, uint64_t parent)
{
	fhmap__rec rec;
	int rc = fhmap__obj_load(txn, m, parent, &rec, NULL);

	if (rc)
		return rc;
	if (rec.state == FHMAP_STATE_UNLINKED)
		return -ESTALE;
	return rec.type == S_IFDIR ? 0 : -ENOTDIR;
}

static int layer_is(const fhmap__txn *txn, fhmap *m, uint32_t layer, fhmap_layer_role want)
{
	fhmap_layer_role role;
	int rc = fhmap__layer_role(txn, m, layer, &role);

	if (rc)
		return rc;
	return role == want ? 0 : -ENXIO;
}

/* ------------------------------------------------------------------------ */
/* Bind and create */

struct bind_args {
	const fhmap_realfh *fh;
	uint64_t parent;
	const char *name;
	uint32_t type;
	int upper;
	uint64_t ino;
	fhmap_object *obj; /* receives the record, or NULL */
	int created;
};

/* The object a bind finds already there: 0, -ENOENT (none), or an error. */
static int bind_found(struct bind_args *a, const fhmap__txn *txn, fhmap *m)
{
	int db = a->upper ? FHMAP__DB_UPPER : FHMAP__DB_ORIGIN;
	fhmap__rfh v;
	fhmap__rec rec;
	int rc;

	fhmap__rfh_view(&v, a->fh);
	if ((rc = index_find(txn, m, db, &v, &a->ino, &rec)) != 0)
		return rc;
	if (rec.type != a->type)
		return -EINVAL;
	if (a->obj)
		fhmap__rec_export(a->obj, a->ino, &rec);
	return 0;
}

static int do_bind(fhmap__wtxn *w, void *arg)
{
	struct bind_args *a = arg;
	int db = a->upper ? FHMAP__DB_UPPER : FHMAP__DB_ORIGIN;
	unsigned char key[8];
	fhmap__rec rec = { 0 };
	fhmap__val v;
	int rc;

	a->created = 0; /* a group may run again (PostgreSQL: after a conflict) */
	if ((rc = layer_is(&w->t, w->m, a->fh->layer, a->upper ? FHMAP_LAYER_UPPER : FHMAP_LAYER_LOWER)) != 0)
		return rc;
	if ((rc = bind_found(a, &w->t, w->m)) != -ENOENT)
		return rc; /* bound meanwhile, by another thread of the group */
	if (a->parent == 0) {
		a->ino = FHMAP_ROOT_INO;
		fhmap__be64(key, a->ino);
		rc = fhmap__get(&w->t, w->m, FHMAP__DB_OBJECTS, key, 8, &v);
		if (rc != -ENOENT)
			return rc ? rc : -EEXIST;
	} else if ((rc = parent_check(&w->t, w->m, a->parent)) != 0 ||
	           (rc = fhmap__alloc_ino(w, &a->ino)) != 0) {
		return rc;
	}
	if ((rc = fhmap__alloc_gen(w, &rec.gen)) != 0)
		return rc;
	fhmap__rfh_view(a->upper ? &rec.upper : &rec.origin, a->fh);
	rec.state = a->upper ? FHMAP_STATE_UPPER : FHMAP_STATE_ORIGIN;
	rec.type = a->type;
	rec.parent = a->parent;
	rec.has_origin = !a->upper;
	rec.has_upper = a->upper;
	rec.name = a->name;
	rec.name_len = strlen(a->name);
	if ((rc = fhmap__obj_store(w, a->ino, &rec)) != 0 ||
	    (rc = index_put(w, db, a->upper ? &rec.upper : &rec.origin, a->ino)) != 0)
		return rc;
	a->created = 1;
	if (a->obj)
		fhmap__rec_export(a->obj, a->ino, &rec);
	return 0;
}

/* Get-or-create: a handle bound already is found by a read, which takes
 * no write transaction and no lock a writer holds. */
static int bind_common(struct bind_args *a, fhmap *m)
{
	fhmap__rtxn r;
	int rc;

	if (!m || fhmap__realfh_check(a->fh) || fhmap__type_check(a->type) || !a->name)
		return -EINVAL;
	if (a->parent == 0 && (a->name[0] || a->type != S_IFDIR))
		return -EINVAL; /* the root */
	if (a->parent != 0 && (rc = fhmap__name_check(a->name)) != 0)
		return rc;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = bind_found(a, &r.t, m);
	fhmap__read_end(m, &r);
	return rc == -ENOENT ? fhmap__write(m, do_bind, a) : rc;
}

int fhmap_bind(uint64_t *out, fhmap *m, const fhmap_realfh *origin, uint64_t parent, const char *name,
               uint32_t type)
{
	struct bind_args a = { origin, parent, name, type, 0, 0, NULL, 0 };
	int rc;

	if (!out)
		return -EINVAL;
	if ((rc = bind_common(&a, m)) == 0)
		*out = a.ino;
	return rc;
}

int fhmap_create_upper(uint64_t *out, fhmap *m, const fhmap_realfh *upper, uint64_t parent, const char *name,
                       uint32_t type)
{
	struct bind_args a = { upper, parent, name, type, 1, 0, NULL, 0 };
	int rc;

	if (!out)
		return -EINVAL;
	if ((rc = bind_common(&a, m)) == 0)
		*out = a.ino;
	return rc;
}

static int object_common(fhmap_object *out, int *created, fhmap *m, struct bind_args *a)
{
	int rc;

	if (!out)
		return -EINVAL;
	a->obj = out;
	if ((rc = bind_common(a, m)) == 0 && created)
		*created = a->created;
	return rc;
}

int fhmap_object_bind(fhmap_object *out, int *created, fhmap *m, const fhmap_realfh *origin, uint64_t parent,
                      const char *name, uint32_t type)
{
	struct bind_args a = { origin, parent, name, type, 0, 0, NULL, 0 };

	return object_common(out, created, m, &a);
}

int fhmap_object_create(fhmap_object *out, int *created, fhmap *m, const fhmap_realfh *upper, uint64_t parent,
                        const char *name, uint32_t type)
{
	struct bind_args a = { upper, parent, name, type, 1, 0, NULL, 0 };

	return object_common(out, created, m, &a);
}

/* ------------------------------------------------------------------------ */
/* Reads */

static int lookup(uint64_t *out, fhmap *m, const fhmap_realfh *fh, int db)
{
	fhmap__rtxn r;
	fhmap__rec rec;
	fhmap__rfh v;
	int rc;

	if (!out || !m || fhmap__realfh_check(fh))
		return -EINVAL;
	fhmap__rfh_view(&v, fh);
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = index_find(&r.t, m, db, &v, out, &rec);
	fhmap__read_end(m, &r);
	return rc;
}

int fhmap_object_lookup(fhmap_object *out, fhmap *m, fhmap_index index, const fhmap_realfh *fh)
{
	fhmap__rtxn r;
	fhmap__rec rec;
	fhmap__rfh v;
	uint64_t ino;
	int rc;

	if (!out || !m || (index != FHMAP_INDEX_ORIGIN && index != FHMAP_INDEX_UPPER) || fhmap__realfh_check(fh))
		return -EINVAL;
	fhmap__rfh_view(&v, fh);
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if ((rc = index_find(&r.t, m, index_db(index), &v, &ino, &rec)) == 0)
		fhmap__rec_export(out, ino, &rec);
	fhmap__read_end(m, &r);
	return rc;
}

int fhmap_lookup_origin(uint64_t *out, fhmap *m, const fhmap_realfh *origin)
{
	return lookup(out, m, origin, FHMAP__DB_ORIGIN);
}

int fhmap_lookup_upper(uint64_t *out, fhmap *m, const fhmap_realfh *upper)
{
	return lookup(out, m, upper, FHMAP__DB_UPPER);
}

int fhmap_get(fhmap_object *out, fhmap *m, uint64_t ino)
{
	fhmap__rtxn r;
	fhmap__rec rec;
	int rc;

	if (!out || !m || !ino)
		return -EINVAL;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if ((rc = fhmap__obj_load(&r.t, m, ino, &rec, NULL)) == 0)
		fhmap__rec_export(out, ino, &rec);
	fhmap__read_end(m, &r);
	return rc;
}

/* Writes the path of @ino backwards into the end of @out, then moves it to
 * the front. With @origin, follows origin hints where a rename left one:
 * the path on the lower layer, which never changes. */
static int build_path(char *out, size_t size, const fhmap__txn *txn, fhmap *m, uint64_t ino, int origin)
{
	size_t pos = size - 1;
	fhmap__rec rec;
	int rc;

	out[pos] = '\0';
	for (int depth = 0; ino != FHMAP_ROOT_INO; depth++) {
		if (depth >= MAX_DEPTH)
			return -ELOOP;
		if ((rc = fhmap__obj_load(txn, m, ino, &rec, NULL)) != 0)
			return rc;
		if (rec.state == FHMAP_STATE_UNLINKED && !origin)
			return -ESTALE;
		if (origin && rec.has_ohint) {
			rec.parent = rec.ohint_parent;
			rec.name = rec.ohint_name;
			rec.name_len = rec.ohint_len;
		}
		if (rec.parent == 0)
			return -ENOENT; /* a second root: disconnected */
		if (rec.name_len + 1 > pos)
			return -ERANGE;
		pos -= rec.name_len;
		memcpy(out + pos, rec.name, rec.name_len);
		out[--pos] = '/';
		ino = rec.parent;
	}
	if ((rc = fhmap__obj_load(txn, m, FHMAP_ROOT_INO, &rec, NULL)) != 0)
		return rc;
	if (pos == size - 1) {
		if (size < 2)
			return -ERANGE;
		out[--pos] = '/';
	}
	memmove(out, out + pos, size - pos);
	return 0;
}

static int path_common(char *out, size_t size, fhmap *m, uint64_t ino, int origin)
{
	fhmap__rtxn r;
	int rc;

	if (!out || !size || !m || !ino)
		return -EINVAL;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = build_path(out, size, &r.t, m, ino, origin);
	fhmap__read_end(m, &r);
	return rc;
}

int fhmap_path(char *out, size_t size, fhmap *m, uint64_t ino)
{
	return path_common(out, size, m, ino, 0);
}

int fhmap_origin_path(char *out, size_t size, fhmap *m, uint64_t ino)
{
	return path_common(out, size, m, ino, 1);
}

/* ------------------------------------------------------------------------ */
/* Rename, unlink, purge */

struct rename_args {
	uint64_t ino, parent;
	const char *name;
};

/* Refuses to move a directory below itself: hints would form a cycle. */
static int cycle_check(const fhmap__txn *txn, fhmap *m, uint64_t ino, uint64_t parent)
{
	fhmap__rec rec;
	int rc;

	for (int depth = 0; parent != 0 && parent != FHMAP_ROOT_INO; depth++) {
		if (parent == ino)
			return -EINVAL;
		if (depth >= MAX_DEPTH)
			return -ELOOP;
		if ((rc = fhmap__obj_load(txn, m, parent, &rec, NULL)) != 0)
			return rc;
		parent = rec.parent;
	}
	return 0;
}

static int do_rename(fhmap__wtxn *w, void *arg)
{
	struct rename_args *a = arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load_live(&w->t, w->m, a->ino, &rec, copy)) != 0)
		return rc;
	if ((rc = parent_check(&w->t, w->m, a->parent)) != 0 ||
	    (rc = cycle_check(&w->t, w->m, a->ino, a->parent)) != 0)
		return rc;
	if (rec.has_origin && !rec.has_ohint) {
		/* The hint leaves the origin's place: remember that place. */
		rec.has_ohint = 1;
		rec.ohint_parent = rec.parent;
		rec.ohint_name = rec.name;
		rec.ohint_len = rec.name_len;
	}
	rec.parent = a->parent;
	rec.name = a->name;
	rec.name_len = strlen(a->name);
	return fhmap__obj_store(w, a->ino, &rec);
}

int fhmap_rename(fhmap *m, uint64_t ino, uint64_t new_parent, const char *new_name)
{
	struct rename_args a = { ino, new_parent, new_name };
	int rc;

	if (!m || !ino || !new_parent || ino == FHMAP_ROOT_INO)
		return -EINVAL;
	if ((rc = fhmap__name_check(new_name)) != 0)
		return rc;
	return fhmap__write(m, do_rename, &a);
}

static int drop_indexes(fhmap__wtxn *w, uint64_t ino, const fhmap__rec *rec)
{
	int rc = 0;

	if (rec->has_origin)
		rc = index_del_if(w, FHMAP__DB_ORIGIN, &rec->origin, ino);
	if (rc == 0 && rec->has_upper)
		rc = index_del_if(w, FHMAP__DB_UPPER, &rec->upper, ino);
	return rc;
}

static int do_unlink(fhmap__wtxn *w, void *arg)
{
	uint64_t ino = *(uint64_t *)arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load_live(&w->t, w->m, ino, &rec, copy)) != 0)
		return rc;
	if ((rc = drop_indexes(w, ino, &rec)) != 0)
		return rc;
	if ((rc = fhmap__pending_drop(w, ino)) != 0)
		return rc;
	if ((rc = fhmap__alloc_gen(w, &rec.gen)) != 0)
		return rc;
	rec.state = FHMAP_STATE_UNLINKED;
	return fhmap__obj_store(w, ino, &rec);
}

int fhmap_unlink(fhmap *m, uint64_t ino)
{
	if (!m || !ino || ino == FHMAP_ROOT_INO)
		return -EINVAL;
	return fhmap__write(m, do_unlink, &ino);
}

static int do_purge(fhmap__wtxn *w, void *arg)
{
	uint64_t ino = *(uint64_t *)arg;
	unsigned char key[8];
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load(&w->t, w->m, ino, &rec, NULL)) != 0)
		return rc;
	if (rec.state != FHMAP_STATE_UNLINKED)
		return -EBUSY;
	fhmap__be64(key, ino);
	return fhmap__del(w, FHMAP__DB_OBJECTS, key, 8);
}

int fhmap_purge(fhmap *m, uint64_t ino)
{
	if (!m || !ino)
		return -EINVAL;
	return fhmap__write(m, do_purge, &ino);
}

/* ------------------------------------------------------------------------ */
/* Repair: replace handles and hints */

static int update_check(const fhmap__txn *txn, fhmap *m, const fhmap_object *o, const fhmap__rec *want)
{
	uint64_t other;
	int rc;

	if (!want->has_origin && !want->has_upper)
		return -EINVAL;
	if (want->has_origin &&
	    ((rc = layer_is(txn, m, want->origin.layer, FHMAP_LAYER_LOWER)) != 0 ||
	     ((rc = index_get(txn, m, FHMAP__DB_ORIGIN, &want->origin, &other)) == 0 && other != o->ino)))
		return rc ? rc : -EEXIST;
	if (want->has_upper &&
	    ((rc = layer_is(txn, m, want->upper.layer, FHMAP_LAYER_UPPER)) != 0 ||
	     ((rc = index_get(txn, m, FHMAP__DB_UPPER, &want->upper, &other)) == 0 && other != o->ino)))
		return rc ? rc : -EEXIST;
	if (o->ino == FHMAP_ROOT_INO)
		return o->parent == 0 && !o->name[0] ? 0 : -EINVAL;
	if ((rc = parent_check(txn, m, o->parent)) != 0)
		return rc;
	return cycle_check(txn, m, o->ino, o->parent);
}

static int do_update(fhmap__wtxn *w, void *arg)
{
	const fhmap_object *o = arg;
	unsigned char copy[FHMAP__REC_MAX];
	fhmap__rec rec, want;
	int rc;

	if ((rc = fhmap__obj_load_live(&w->t, w->m, o->ino, &rec, copy)) != 0)
		return rc;
	want = rec;
	want.has_origin = o->has_origin;
	want.has_upper = o->has_upper;
	if (o->has_origin)
		fhmap__rfh_view(&want.origin, &o->origin);
	if (o->has_upper)
		fhmap__rfh_view(&want.upper, &o->upper);
	want.parent = o->parent;
	want.name = o->name;
	want.name_len = strlen(o->name);
	if (want.has_upper)
		want.state = FHMAP_STATE_UPPER;
	else if (rec.state == FHMAP_STATE_UPPER)
		want.state = FHMAP_STATE_ORIGIN;
	if ((rc = update_check(&w->t, w->m, o, &want)) != 0)
		return rc;
	if ((rc = drop_indexes(w, o->ino, &rec)) != 0)
		return rc;
	if (want.has_origin && (rc = index_put(w, FHMAP__DB_ORIGIN, &want.origin, o->ino)) != 0)
		return rc;
	if (want.has_upper && (rc = index_put(w, FHMAP__DB_UPPER, &want.upper, o->ino)) != 0)
		return rc;
	if (rec.state == FHMAP_STATE_COPYUP && want.state == FHMAP_STATE_UPPER) {
		if ((rc = fhmap__pending_drop(w, o->ino)) != 0)
			return rc;
	}
	return fhmap__obj_store(w, o->ino, &want);
}

int fhmap_object_update(fhmap *m, const fhmap_object *o)
{
	int rc;

	if (!m || !o || !o->ino || memchr(o->name, '\0', sizeof(o->name)) == NULL)
		return -EINVAL;
	if ((o->has_origin && fhmap__realfh_check(&o->origin)) ||
	    (o->has_upper && fhmap__realfh_check(&o->upper)))
		return -EINVAL;
	if (o->ino != FHMAP_ROOT_INO && (rc = fhmap__name_check(o->name)) != 0)
		return rc;
	return fhmap__write(m, do_update, (void *)o);
}

/* ------------------------------------------------------------------------ */
/* Restore: a record a crash took, made again with its own identity */

/* A number and generation this map handed out (below its counters) and
 * this process does not still hold for later. */
static int restore_identity_check(fhmap__wtxn *w, const fhmap_object *o)
{
	const fhmap__alloc *a = &w->m->alloc;
	uint64_t next_ino, next_gen, base;
	int rc;

	if ((rc = fhmap__meta_u64(&w->t, w->m, "next_ino", &next_ino)) != 0 ||
	    (rc = fhmap__meta_u64(&w->t, w->m, "next_gen", &next_gen)) != 0 ||
	    (rc = fhmap__meta_u64(&w->t, w->m, "gen_base", &base)) != 0)
		return rc;
	if (o->ino >= next_ino || (o->ino >= a->ino_next && o->ino < a->ino_end))
		return -EINVAL;
	if ((uint32_t)(o->gen - (uint32_t)base) >= (uint32_t)((uint32_t)next_gen - (uint32_t)base) ||
	    (a->gen_left && (uint32_t)(o->gen - a->gen_next) < a->gen_left))
		return -EINVAL;
	return 0;
}

static int do_restore(fhmap__wtxn *w, void *arg)
{
	const fhmap_object *o = arg;
	unsigned char key[8];
	fhmap__rec rec = { 0 };
	fhmap__val v;
	int rc;

	if ((rc = restore_identity_check(w, o)) != 0)
		return rc;
	fhmap__be64(key, o->ino);
	if ((rc = fhmap__get(&w->t, w->m, FHMAP__DB_OBJECTS, key, 8, &v)) != -ENOENT)
		return rc ? rc : -EEXIST;
	rec.gen = o->gen;
	rec.state = (uint8_t)o->state;
	rec.type = o->type;
	rec.parent = o->parent;
	rec.has_origin = o->has_origin;
	rec.has_upper = o->has_upper;
	if (o->has_origin)
		fhmap__rfh_view(&rec.origin, &o->origin);
	if (o->has_upper)
		fhmap__rfh_view(&rec.upper, &o->upper);
	rec.name = o->name;
	rec.name_len = strlen(o->name);
	if ((rc = update_check(&w->t, w->m, o, &rec)) != 0)
		return rc;
	if ((rc = fhmap__obj_store(w, o->ino, &rec)) != 0)
		return rc;
	if (o->has_origin && (rc = index_put(w, FHMAP__DB_ORIGIN, &rec.origin, o->ino)) != 0)
		return rc;
	return o->has_upper ? index_put(w, FHMAP__DB_UPPER, &rec.upper, o->ino) : 0;
}

int fhmap_object_restore(fhmap *m, const fhmap_object *o)
{
	int rc;

	if (!m || !o || o->ino <= FHMAP_ROOT_INO || fhmap__type_check(o->type) ||
	    memchr(o->name, '\0', sizeof(o->name)) == NULL)
		return -EINVAL;
	if (!(o->state == FHMAP_STATE_UPPER && o->has_upper) &&
	    !(o->state == FHMAP_STATE_ORIGIN && o->has_origin && !o->has_upper))
		return -EINVAL;
	if ((o->has_origin && fhmap__realfh_check(&o->origin)) ||
	    (o->has_upper && fhmap__realfh_check(&o->upper)))
		return -EINVAL;
	if ((rc = fhmap__name_check(o->name)) != 0)
		return rc;
	return fhmap__write(m, do_restore, (void *)o);
}

/* ------------------------------------------------------------------------ */
/* Index entries */

int fhmap_index_next(fhmap_index_entry *out, fhmap *m, fhmap_index index, const fhmap_realfh *after)
{
	unsigned char key[FHMAP__IKEY_MAX];
	const unsigned char *kp;
	fhmap__cursor cur;
	fhmap__val k = { 0, key }, v;
	fhmap__rtxn r;
	fhmap__rfh a;
	int rc;

	if (!out || !m || (index != FHMAP_INDEX_ORIGIN && index != FHMAP_INDEX_UPPER) ||
	    (after && fhmap__realfh_check(after)))
		return -EINVAL;
	if (after) {
		fhmap__rfh_view(&a, after);
		k.size = fhmap__ikey(key, &a);
	}
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if ((rc = fhmap__cursor_open(&cur, &r.t, m, index_db(index))) == 0) {
		rc = fhmap__cursor_get(&cur, &k, &v, after ? FHMAP__SET_RANGE : FHMAP__FIRST);
		if (rc == 0 && after && k.size == 6 + a.len && !memcmp(k.data, key, k.size))
			rc = fhmap__cursor_get(&cur, &k, &v, FHMAP__NEXT);
		kp = k.data;
		if (rc == 0 && (k.size <= 6 || k.size > FHMAP__IKEY_MAX))
			rc = -EUCLEAN; /* no handle to report */
		if (rc == 0) {
			out->fh.layer = (uint32_t)kp[0] << 8 | kp[1];
			out->fh.type = (int32_t)fhmap__get_be32(kp + 2);
			out->fh.len = (uint32_t)k.size - 6;
			memcpy(out->fh.data, kp + 6, out->fh.len);
			out->ino = v.size == 8 ? fhmap__get_le64(v.data) : 0;
			/* A damaged value still names its key, so a walk can go on
			 * past it and repair can remove it. */
			if (v.size != 8 || out->fh.layer == 0)
				rc = -EUCLEAN;
		}
		fhmap__cursor_close(&cur);
	}
	fhmap__read_end(m, &r);
	return rc;
}

struct index_rm_args {
	int db;
	fhmap__rfh fh;
};

static int do_index_remove(fhmap__wtxn *w, void *arg)
{
	struct index_rm_args *a = arg;
	unsigned char key[FHMAP__IKEY_MAX];
	fhmap__rec rec;
	uint64_t ino;
	int rc;

	if ((rc = index_get(&w->t, w->m, a->db, &a->fh, &ino)) != 0 && rc != -EUCLEAN)
		return rc;
	if (rc == 0 && (rc = fhmap__obj_load(&w->t, w->m, ino, &rec, NULL)) == 0 &&
	    rec.state != FHMAP_STATE_UNLINKED && rec_carries(&rec, a->db, &a->fh))
		return -EBUSY;
	if (rc && rc != -ENOENT && rc != -EUCLEAN)
		return rc;
	return fhmap__del(w, a->db, key, fhmap__ikey(key, &a->fh));
}

int fhmap_index_remove(fhmap *m, fhmap_index index, const fhmap_realfh *fh)
{
	struct index_rm_args a;

	if (!m || (index != FHMAP_INDEX_ORIGIN && index != FHMAP_INDEX_UPPER) || fhmap__realfh_check(fh))
		return -EINVAL;
	a.db = index_db(index);
	fhmap__rfh_view(&a.fh, fh);
	return fhmap__write(m, do_index_remove, &a);
}

/* ------------------------------------------------------------------------ */
/* Iteration and statistics */

struct fhmap_iter {
	fhmap *m;
	uint64_t next;
	int done;
};

int fhmap_iter_new(fhmap_iter **out, fhmap *m, uint64_t start)
{
	fhmap_iter *it;

	if (!out || !m)
		return -EINVAL;
	if (!(it = calloc(1, sizeof(*it))))
		return -ENOMEM;
	it->m = m;
	it->next = start;
	*out = it;
	return 0;
}

int fhmap_iter_next(fhmap_object *out, fhmap_iter *it)
{
	unsigned char key[8];
	fhmap__val k = { 8, key }, v;
	fhmap__cursor cur;
	fhmap__rtxn r;
	fhmap__rec rec;
	uint64_t ino;
	int rc;

	if (!out || !it)
		return -EINVAL;
	if (it->done)
		return -ENOENT;
	fhmap__be64(key, it->next);
	if ((rc = fhmap__read_begin(it->m, &r)) != 0)
		return rc;
	if ((rc = fhmap__cursor_open(&cur, &r.t, it->m, FHMAP__DB_OBJECTS)) == 0) {
		rc = fhmap__cursor_get(&cur, &k, &v, FHMAP__SET_RANGE);
		/* A damaged B-tree can answer with a key of another size or
		 * behind the one asked for: the walk cannot go on from there
		 * (it would go round forever). */
		if (rc == 0 && (k.size != 8 || fhmap__get_be64(k.data) < it->next)) {
			it->done = 1;
			rc = -EUCLEAN;
		}
		if (rc == 0) {
			ino = fhmap__get_be64(k.data);
			/* Skip past a damaged record so that a walk can go on. */
			it->next = ino + 1;
			it->done = ino == UINT64_MAX;
			if ((rc = fhmap__rec_parse(&rec, ino, &v)) == 0)
				fhmap__rec_export(out, ino, &rec);
			else
				out->ino = ino;
		}
		fhmap__cursor_close(&cur);
	}
	fhmap__read_end(it->m, &r);
	if (rc == -ENOENT)
		it->done = 1;
	return rc;
}

void fhmap_iter_free(fhmap_iter *it)
{
	free(it);
}

/* Counts every table's entries and the objects by state, in one walk of
 * LMDB's main table (keys led by their table byte). */
static int count_entries(const fhmap__txn *txn, fhmap *m, fhmap_map_stats *s)
{
	fhmap__cursor cur;
	fhmap__val k, v;
	fhmap__rec rec;
	int rc = fhmap__cursor_open(&cur, txn, m, FHMAP__DB_ALL);

	if (rc)
		return rc;
	for (rc = fhmap__cursor_get(&cur, &k, &v, FHMAP__FIRST); rc == 0;
	     rc = fhmap__cursor_get(&cur, &k, &v, FHMAP__NEXT)) {
		const unsigned char *kp = k.data;

		switch (k.size ? kp[0] : 0) {
		case FHMAP__DB_OBJECTS:
			if (k.size != 9 || fhmap__rec_parse(&rec, fhmap__get_be64(kp + 1), &v) != 0) {
				rc = -EUCLEAN;
				goto out;
			}
			s->objects++;
			s->origin_only += rec.state == FHMAP_STATE_ORIGIN;
			s->copying += rec.state == FHMAP_STATE_COPYUP;
			s->upper += rec.state == FHMAP_STATE_UPPER;
			s->unlinked += rec.state == FHMAP_STATE_UNLINKED;
			break;
		case FHMAP__DB_ORIGIN:
			s->origin_entries++;
			break;
		case FHMAP__DB_UPPER:
			s->upper_entries++;
			break;
		case FHMAP__DB_PENDING:
			s->pending++;
			break;
		case FHMAP__DB_LAYERS:
			s->layers++;
			break;
		}
	}
out:
	fhmap__cursor_close(&cur);
	return rc == -ENOENT ? 0 : rc;
}

int fhmap_stats(fhmap_map_stats *s, fhmap *m)
{
	fhmap__rtxn r;
	int rc;

	if (!s || !m)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = count_entries(&r.t, m, s);
	m->be->storage(m, &r.t, s);
	fhmap__read_end(m, &r);
	return rc;
}
