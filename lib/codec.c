/* The handle codec: what NFS clients hold. Little-endian 4-byte words:
 *   word 0: version (1), type byte, length in words, 0
 *   word 1: map tag (first 4 bytes of the map UUID)
 *   words 2-3: object number   word 4: generation
 *   [words 5-6: parent object   word 7: parent generation]   (connectable)
 *   [last 2 words: SipHash-2-4 of all preceding bytes]        (signed)
 * See docs/handle-format.md. */
#include <errno.h>
#include <sys/stat.h>

#include "fhmap_int.h"

#define FH_VERSION 1
#define FH_BASE_WORDS 5
#define FH_PARENT_WORDS 3
#define FH_MAC_WORDS 2

static size_t fh_size(int connectable, int mac)
{
	return 4 * (FH_BASE_WORDS + (connectable ? FH_PARENT_WORDS : 0) + (mac ? FH_MAC_WORDS : 0));
}

const char *fhmap_fh_status_str(fhmap_fh_status status)
{
	switch (status) {
	case FHMAP_FH_OK:
		return "ok";
	case FHMAP_FH_TRUNCATED:
		return "truncated";
	case FHMAP_FH_MALFORMED:
		return "malformed";
	case FHMAP_FH_BAD_VERSION:
		return "unknown handle version";
	case FHMAP_FH_FOREIGN:
		return "foreign map";
	case FHMAP_FH_UNSIGNED_REFUSED:
		return "unsigned handle refused";
	case FHMAP_FH_BAD_MAC:
		return "bad MAC";
	case FHMAP_FH_NO_PARENT:
		return "no parent in handle";
	case FHMAP_FH_UNKNOWN:
		return "unknown object";
	case FHMAP_FH_FORGOTTEN:
		return "forgotten (unlinked)";
	case FHMAP_FH_STALE_GEN:
		return "stale generation";
	}
	return "invalid status";
}

static int encode_ids(const fhmap__txn *txn, fhmap *m, uint64_t ino, uint64_t *parent, uint32_t *gen,
                      uint32_t *pgen, int connectable)
{
	fhmap__rec rec;
	int rc;

	if ((rc = fhmap__obj_load_live(txn, m, ino, &rec, NULL)) != 0)
		return rc;
	*gen = rec.gen;
	if (!connectable)
		return 0;
	if (!*parent)
		*parent = rec.parent;
	if (!*parent)
		return -EINVAL; /* the root has no parent */
	if ((rc = fhmap__obj_load_live(txn, m, *parent, &rec, NULL)) != 0)
		return rc;
	*pgen = rec.gen;
	return rec.type == S_IFDIR ? 0 : -EINVAL;
}

int fhmap_encode(void *out, size_t *len, fhmap *m, uint64_t ino, uint64_t parent, unsigned int flags)
{
	int connectable = !!(flags & FHMAP_FH_CONNECTABLE), mac = !(flags & FHMAP_FH_UNSIGNED);
	size_t need = fh_size(connectable, mac);
	uint32_t gen = 0, pgen = 0;
	unsigned char *b = out;
	fhmap__rtxn r;
	int rc;

	if (!out || !len || !m || !ino || (flags & ~(FHMAP_FH_CONNECTABLE | FHMAP_FH_UNSIGNED)))
		return -EINVAL;
	if (*len < need) {
		*len = need;
		return -EOVERFLOW;
	}
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = encode_ids(&r.t, m, ino, &parent, &gen, &pgen, connectable);
	fhmap__read_end(m, &r);
	if (rc)
		return rc;
	b[0] = FH_VERSION;
	b[1] = (unsigned char)(FHMAP_FH_TYPE_BASE | connectable | (mac ? 0 : 2));
	b[2] = (unsigned char)(need / 4);
	b[3] = 0;
	fhmap__put_le32(b + 4, m->tag);
	fhmap__put_le64(b + 8, ino);
	fhmap__put_le32(b + 16, gen);
	if (connectable) {
		fhmap__put_le64(b + 20, parent);
		fhmap__put_le32(b + 28, pgen);
	}
	if (mac)
		fhmap__put_le64(b + need - 8, fhmap__siphash24(m->key, b, need - 8));
	*len = need;
	return 0;
}

static int reject(fhmap_decoded *out, fhmap_fh_status status, int err)
{
	out->status = status;
	return err;
}

/* Checks everything that needs no lookup; on success *size is the encoded
 * length (the rest of the buffer is zero padding). */
static int parse(fhmap_decoded *out, fhmap *m, const unsigned char *b, size_t len, unsigned int flags)
{
	size_t need;
	int connectable, mac;
	uint32_t tag;

	if (len < 4)
		return reject(out, FHMAP_FH_TRUNCATED, -EINVAL);
	if (b[0] != FH_VERSION)
		return reject(out, FHMAP_FH_BAD_VERSION, -EINVAL);
	if ((b[1] & ~3u) != FHMAP_FH_TYPE_BASE)
		return reject(out, FHMAP_FH_MALFORMED, -EINVAL);
	connectable = b[1] & 1;
	mac = !(b[1] & 2);
	need = fh_size(connectable, mac);
	if (len < need)
		return reject(out, FHMAP_FH_TRUNCATED, -EINVAL);
	if (b[2] != need / 4 || b[3] != 0)
		return reject(out, FHMAP_FH_MALFORMED, -EINVAL);
	for (size_t i = need; i < len; i++)
		if (b[i])
			return reject(out, FHMAP_FH_MALFORMED, -EINVAL);
	tag = fhmap__get_le32(b + 4);
	if (tag != m->tag)
		return reject(out, FHMAP_FH_FOREIGN, -ESTALE);
	if (!mac && !(flags & FHMAP_FH_ALLOW_UNSIGNED))
		return reject(out, FHMAP_FH_UNSIGNED_REFUSED, -EBADMSG);
	if (mac) {
		uint64_t want = fhmap__siphash24(m->key, b, need - 8),
		         diff = want ^ fhmap__get_le64(b + need - 8);

		/* Constant time: no early exit on the first differing byte. */
		if (diff)
			return reject(out, FHMAP_FH_BAD_MAC, -EBADMSG);
	}
	out->connectable = connectable;
	out->ino = fhmap__get_le64(b + 8);
	out->gen = fhmap__get_le32(b + 16);
	if (connectable) {
		out->parent = fhmap__get_le64(b + 20);
		out->parent_gen = fhmap__get_le32(b + 28);
	}
	if ((flags & FHMAP_FH_PARENT) && !connectable)
		return reject(out, FHMAP_FH_NO_PARENT, -EINVAL);
	return 0;
}

static int resolve(fhmap_decoded *out, const fhmap__txn *txn, fhmap *m, uint64_t ino, uint32_t gen)
{
	fhmap__rec rec;
	int rc = fhmap__obj_load(txn, m, ino, &rec, NULL);

	if (rc == -ENOENT)
		return reject(out, FHMAP_FH_UNKNOWN, -ESTALE);
	if (rc)
		return rc;
	if (rec.state == FHMAP_STATE_UNLINKED)
		return reject(out, FHMAP_FH_FORGOTTEN, -ESTALE);
	if (rec.gen != gen)
		return reject(out, FHMAP_FH_STALE_GEN, -ESTALE);
	out->ino = ino;
	out->gen = gen;
	out->type = rec.type;
	out->state = (fhmap_state)rec.state;
	fhmap__rfh_copy(&out->real, rec.has_upper ? &rec.upper : &rec.origin);
	return 0;
}

int fhmap_decode(fhmap_decoded *out, fhmap *m, const void *fh, size_t len, unsigned int flags)
{
	fhmap__rtxn r;
	int rc;

	if (!out || !m || (!fh && len) || (flags & ~(FHMAP_FH_ALLOW_UNSIGNED | FHMAP_FH_PARENT)))
		return -EINVAL;
	memset(out, 0, offsetof(fhmap_decoded, real));
	out->real.len = 0;
	if ((rc = parse(out, m, fh, len, flags)) != 0)
		return rc;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	if (flags & FHMAP_FH_PARENT)
		rc = resolve(out, &r.t, m, out->parent, out->parent_gen);
	else
		rc = resolve(out, &r.t, m, out->ino, out->gen);
	fhmap__read_end(m, &r);
	if (rc == 0)
		out->status = FHMAP_FH_OK;
	return rc;
}
