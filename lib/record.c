/* The schema of object records and index keys, and the checks of what
 * callers pass in. */
#include <errno.h>
#include <sys/stat.h>

#include "fhmap_int.h"

/* ------------------------------------------------------------------------ */
/* Object records: little-endian, validated on every read.
 *   0 u8 record version (1)   1 u8 state   2 u8 type (S_IFMT >> 12)
 *   3 u8 flags (1 origin, 2 upper)   4 u32 generation   8 u64 parent
 *  16 u8 name length, then [origin], [upper], name; each real handle is
 *     u16 layer, i32 handle type, u8 length, bytes; [origin hint: u64
 *     parent, u8 length, name]; last, u32 checksum of the object number
 *     and everything before it. */

#define REC_VERSION 1
#define REC_HAS_ORIGIN 1u
#define REC_HAS_UPPER 2u
#define REC_HAS_OHINT 4u
#define REC_SUM 4

/* Checksum of a record and its object number, stored in its last 4 bytes,
 * so a damaged record or key gives -EUCLEAN instead of a wrong answer. It
 * catches accidental damage (a miss is about 1 in 2^32), not tampering: a
 * writer of the file can also read the MAC secret. */
static uint32_t rec_sum(uint64_t ino, const unsigned char *p, size_t n)
{
	uint64_t h = (ino ^ n) * 0x9e3779b97f4a7c15ull;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		h = (h ^ fhmap__get_le64(p + i)) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	if (i < n) { /* the tail as one word; n is mixed in above */
		unsigned char tail[8] = { 0 };

		memcpy(tail, p + i, n - i);
		h = (h ^ fhmap__get_le64(tail)) * 0xc4ceb9fe1a85ec53ull;
	}
	h ^= h >> 29;
	return (uint32_t)(h ^ (h >> 32));
}

static int rfh_parse(fhmap__rfh *fh, const unsigned char *p, size_t n, size_t *off)
{
	if (*off + 7 > n)
		return -EUCLEAN;
	p += *off;
	fh->layer = (uint32_t)p[0] | (uint32_t)p[1] << 8;
	fh->type = (int32_t)fhmap__get_le32(p + 2);
	fh->len = p[6];
	fh->data = p + 7;
	if (fh->layer == 0 || fh->len == 0 || fh->len > FHMAP_REALFH_MAX || *off + 7 + fh->len > n)
		return -EUCLEAN;
	*off += 7 + fh->len;
	return 0;
}

static size_t rfh_pack(unsigned char *p, const fhmap__rfh *fh)
{
	p[0] = (unsigned char)fh->layer;
	p[1] = (unsigned char)(fh->layer >> 8);
	fhmap__put_le32(p + 2, (uint32_t)fh->type);
	p[6] = (unsigned char)fh->len;
	memcpy(p + 7, fh->data, fh->len);
	return 7 + fh->len;
}

static int state_valid(const fhmap__rec *r)
{
	switch (r->state) {
	case FHMAP_STATE_ORIGIN:
	case FHMAP_STATE_COPYUP:
		return r->has_origin && !r->has_upper;
	case FHMAP_STATE_UPPER:
		return r->has_upper;
	case FHMAP_STATE_UNLINKED:
		return 1;
	default:
		return 0;
	}
}

/* One pass, inline: names are short, and two memchr() calls cost more
 * than the scan on the decode path. */
static int name_valid(const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == '\0')
			return 0;
	return 1;
}

int fhmap__rec_parse(fhmap__rec *r, uint64_t ino, const fhmap__val *val)
{
	const unsigned char *p = val->data;
	size_t n = val->size - REC_SUM, off = 17;

	if (val->size < 17 + REC_SUM || fhmap__get_le32(p + n) != rec_sum(ino, p, n))
		return -EUCLEAN;
	if (p[0] != REC_VERSION || (p[3] & ~(REC_HAS_ORIGIN | REC_HAS_UPPER | REC_HAS_OHINT)))
		return -EUCLEAN;
	r->state = p[1];
	r->type = (uint32_t)p[2] << 12;
	r->has_origin = !!(p[3] & REC_HAS_ORIGIN);
	r->has_upper = !!(p[3] & REC_HAS_UPPER);
	r->has_ohint = !!(p[3] & REC_HAS_OHINT);
	r->gen = fhmap__get_le32(p + 4);
	r->parent = fhmap__get_le64(p + 8);
	r->name_len = p[16];
	if (fhmap__type_check(r->type) || !state_valid(r))
		return -EUCLEAN;
	if (r->has_origin && rfh_parse(&r->origin, p, n, &off))
		return -EUCLEAN;
	if (r->has_upper && rfh_parse(&r->upper, p, n, &off))
		return -EUCLEAN;
	if (r->has_ohint) {
		if (!r->has_origin || off + 9 > n)
			return -EUCLEAN;
		r->ohint_parent = fhmap__get_le64(p + off);
		r->ohint_len = p[off + 8];
		r->ohint_name = (const char *)p + off + 9;
		off += 9 + r->ohint_len;
		if (off > n || !name_valid(r->ohint_name, r->ohint_len))
			return -EUCLEAN;
	}
	if (off + r->name_len != n)
		return -EUCLEAN;
	r->name = (const char *)p + off;
	return name_valid(r->name, r->name_len) ? 0 : -EUCLEAN;
}

size_t fhmap__rec_pack(unsigned char *p, uint64_t ino, const fhmap__rec *r)
{
	size_t off = 17;

	p[0] = REC_VERSION;
	p[1] = r->state;
	p[2] = (unsigned char)(r->type >> 12);
	p[3] = (unsigned char)((r->has_origin ? REC_HAS_ORIGIN : 0) | (r->has_upper ? REC_HAS_UPPER : 0) |
	                       (r->has_ohint ? REC_HAS_OHINT : 0));
	fhmap__put_le32(p + 4, r->gen);
	fhmap__put_le64(p + 8, r->parent);
	p[16] = (unsigned char)r->name_len;
	if (r->has_origin)
		off += rfh_pack(p + off, &r->origin);
	if (r->has_upper)
		off += rfh_pack(p + off, &r->upper);
	if (r->has_ohint) {
		fhmap__put_le64(p + off, r->ohint_parent);
		p[off + 8] = (unsigned char)r->ohint_len;
		memcpy(p + off + 9, r->ohint_name, r->ohint_len);
		off += 9 + r->ohint_len;
	}
	memcpy(p + off, r->name, r->name_len);
	off += r->name_len;
	fhmap__put_le32(p + off, rec_sum(ino, p, off));
	return off + REC_SUM;
}

void fhmap__rfh_view(fhmap__rfh *v, const fhmap_realfh *fh)
{
	v->layer = fh->layer;
	v->type = fh->type;
	v->len = fh->len;
	v->data = fh->data;
}

void fhmap__rfh_copy(fhmap_realfh *out, const fhmap__rfh *v)
{
	out->layer = v->layer;
	out->type = v->type;
	out->len = v->len;
	memcpy(out->data, v->data, v->len);
}

void fhmap__rec_export(fhmap_object *o, uint64_t ino, const fhmap__rec *r)
{
	memset(o, 0, sizeof(*o));
	o->ino = ino;
	o->gen = r->gen;
	o->type = r->type;
	o->state = (fhmap_state)r->state;
	o->has_origin = r->has_origin;
	o->has_upper = r->has_upper;
	if (r->has_origin)
		fhmap__rfh_copy(&o->origin, &r->origin);
	if (r->has_upper)
		fhmap__rfh_copy(&o->upper, &r->upper);
	o->parent = r->parent;
	memcpy(o->name, r->name, r->name_len);
}

/* Index key of a real handle: u16 layer, u32 handle type (big-endian), bytes. */
size_t fhmap__ikey(unsigned char *key, const fhmap__rfh *fh)
{
	key[0] = (unsigned char)(fh->layer >> 8);
	key[1] = (unsigned char)fh->layer;
	fhmap__be32(key + 2, (uint32_t)fh->type);
	memcpy(key + 6, fh->data, fh->len);
	return 6 + fh->len;
}

int fhmap__obj_load(const fhmap__txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy)
{
	unsigned char key[8];
	fhmap__val val;
	int rc;

	fhmap__be64(key, ino);
	if ((rc = fhmap__get(txn, m, FHMAP__DB_OBJECTS, key, 8, &val)) != 0)
		return rc;
	if (copy) {
		/* Writers keep their own copy: a later put may move the page. */
		if (val.size > FHMAP__REC_MAX)
			return -EUCLEAN;
		memcpy(copy, val.data, val.size);
		val.data = copy;
	}
	return fhmap__rec_parse(rec, ino, &val);
}

int fhmap__obj_load_live(const fhmap__txn *txn, fhmap *m, uint64_t ino, fhmap__rec *rec, unsigned char *copy)
{
	int rc = fhmap__obj_load(txn, m, ino, rec, copy);

	return rc == 0 && rec->state == FHMAP_STATE_UNLINKED ? -ESTALE : rc;
}

int fhmap__obj_store(fhmap__wtxn *w, uint64_t ino, const fhmap__rec *rec)
{
	unsigned char key[8], buf[FHMAP__REC_MAX];

	fhmap__be64(key, ino);
	return fhmap__put(w, FHMAP__DB_OBJECTS, key, 8, buf, fhmap__rec_pack(buf, ino, rec));
}

int fhmap__realfh_check(const fhmap_realfh *fh)
{
	if (!fh || fh->layer == 0 || fh->layer > UINT16_MAX || fh->len == 0 || fh->len > FHMAP_REALFH_MAX)
		return -EINVAL;
	return 0;
}

int fhmap__name_check(const char *name)
{
	size_t n;

	if (!name)
		return -EINVAL;
	n = strlen(name);
	if (n > FHMAP_NAME_MAX)
		return -ENAMETOOLONG;
	if (n == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

int fhmap__type_check(uint32_t type)
{
	switch (type) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		return 0;
	default:
		return -EINVAL;
	}
}
