/* The map's tables over the backend's one ordered key space: each key is
 * led by its table's byte (fhmap_int.h). */
#include <errno.h>
#include <stdlib.h>

#include "fhmap_int.h"

/* Builds the full key of @key in table @db into @buf. */
static int table_key(fhmap__val *k, unsigned char *buf, int db, const void *key, size_t klen)
{
	if (klen > FHMAP__IKEY_MAX)
		return -EINVAL;
	buf[0] = (unsigned char)db;
	memcpy(buf + 1, key, klen);
	k->size = klen + 1;
	k->data = buf;
	return 0;
}

int fhmap__get(const fhmap__txn *t, const fhmap *m, int db, const void *key, size_t klen, fhmap__val *val)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	fhmap__val k;
	int rc = table_key(&k, buf, db, key, klen);

	return rc ? rc : m->be->get(t, m, &k, val);
}

int fhmap__put(fhmap__wtxn *w, int db, const void *key, size_t klen, const void *val, size_t vlen)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	fhmap__val k, v = { vlen, (void *)val };
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if (vlen == 0)
		return -EINVAL; /* an empty value marks a deletion in the overlay */
	if ((rc = w->m->be->put(w, &k, &v)) == 0)
		w->writes++;
	return rc;
}

int fhmap__del(fhmap__wtxn *w, int db, const void *key, size_t klen)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	fhmap__val k;
	int rc = table_key(&k, buf, db, key, klen);

	if (rc)
		return rc;
	if ((rc = w->m->be->del(w, &k)) == 0)
		w->writes++;
	return rc;
}

int fhmap__cursor_open(fhmap__cursor *c, const fhmap__txn *t, const fhmap *m, int db)
{
	c->m = m;
	c->db = db;
	c->impl = NULL;
	return m->be->cursor_open(c, t);
}

void fhmap__cursor_close(fhmap__cursor *c)
{
	c->m->be->cursor_close(c);
}

int fhmap__cursor_get(fhmap__cursor *c, fhmap__val *k, fhmap__val *v, int op)
{
	unsigned char buf[1 + FHMAP__IKEY_MAX];
	fhmap__val from = { 1, buf };
	int rc;

	if (c->db == FHMAP__DB_ALL)
		return c->m->be->cursor_get(c, k, v, op);
	/* A table's first key is the first at or after its byte. */
	buf[0] = (unsigned char)c->db;
	if (op == FHMAP__SET_RANGE && (rc = table_key(&from, buf, c->db, k->data, k->size)) != 0)
		return rc;
	if (op != FHMAP__NEXT)
		*k = from;
	rc = c->m->be->cursor_get(c, k, v, op == FHMAP__NEXT ? FHMAP__NEXT : FHMAP__SET_RANGE);
	if (rc)
		return rc;
	if (k->size == 0 || *(const unsigned char *)k->data != (unsigned char)c->db)
		return -ENOENT;
	k->size--;
	k->data = (unsigned char *)k->data + 1;
	return 0;
}
