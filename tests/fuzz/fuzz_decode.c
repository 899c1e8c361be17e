/*
 * libFuzzer target: fhmap_decode() on arbitrary bytes against a real map.
 *
 * Input: byte 0 picks the decode flags (bits 0-1) and the mode (bit 2):
 *   raw   the rest is the handle;
 *   xor   the rest is XORed onto one of the map's real handles (bits 3-7
 *         pick which), so mutations reach the MAC, object and generation
 *         checks of a handle with a valid tag.
 * Oracle: never a crash (ASan/UBSan); status and return code agree; an
 * accepted handle names exactly the object and generation written in its
 * words (or the parent's with FHMAP_FH_PARENT) and that object is live with
 * that generation; an accepted signed handle is byte for byte one that
 * fhmap_encode() made (anything else would be a MAC bypass).
 */
#define _GNU_SOURCE
#include "rel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOBJ 24
#define NHANDLES (NOBJ * 4)
#define BUF_MAX (FHMAP_FH_MAX + 24)

static const unsigned int forms[4] = { 0, FHMAP_FH_CONNECTABLE, FHMAP_FH_UNSIGNED,
                                       FHMAP_FH_CONNECTABLE | FHMAP_FH_UNSIGNED };
static const unsigned int dflags[4] = { 0, FHMAP_FH_ALLOW_UNSIGNED, FHMAP_FH_PARENT,
                                        FHMAP_FH_ALLOW_UNSIGNED | FHMAP_FH_PARENT };

static struct rel_union fz_u;
static fhmap *fz_map;
static unsigned char fz_fh[NHANDLES][FHMAP_FH_MAX];
static size_t fz_len[NHANDLES];
static unsigned int fz_nfh;

/* A map with directories, files, copied-up, unlinked and purged objects.
 * Handles are taken before objects go, so replays are in the corpus. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint64_t ino[NOBJ], dir = FHMAP_ROOT_INO;
	char name[16];

	(void)argc;
	(void)argv;
	rel_union_init(&fz_u, "fuzz-decode");
	REL_OK(rel_open(&fz_map, fz_u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_LAZY, 0));
	rel_union_register(&fz_u, fz_map);
	ino[0] = FHMAP_ROOT_INO;
	for (unsigned int i = 1; i < NOBJ; i++) {
		int is_dir = i % 5 == 1;

		snprintf(name, sizeof(name), "o%u", i);
		ino[i] = rel_union_add(&fz_u, fz_map, dir, name, is_dir);
		if (is_dir)
			dir = ino[i];
		if (i % 3 == 0)
			rel_union_copyup(&fz_u, fz_map, ino[i], name, 1);
	}
	for (unsigned int i = 0; i < NOBJ; i++)
		for (unsigned int f = 0; f < 4; f++) {
			fz_len[fz_nfh] = FHMAP_FH_MAX;
			if (fhmap_encode(fz_fh[fz_nfh], &fz_len[fz_nfh], fz_map, ino[i], 0, forms[f]) == 0)
				fz_nfh++;
		}
	for (unsigned int i = 4; i < NOBJ; i += 7)
		REL_OK(fhmap_unlink(fz_map, ino[i]));
	REL_OK(fhmap_purge(fz_map, ino[4]));
	REL_OK(fhmap_gen_bump(NULL, fz_map, ino[NOBJ - 1]));
	return 0;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fz_rc_of(fhmap_fh_status s)
{
	switch (s) {
	case FHMAP_FH_OK:
		return 0;
	case FHMAP_FH_TRUNCATED:
	case FHMAP_FH_MALFORMED:
	case FHMAP_FH_BAD_VERSION:
	case FHMAP_FH_NO_PARENT:
		return -EINVAL;
	case FHMAP_FH_UNSIGNED_REFUSED:
	case FHMAP_FH_BAD_MAC:
		return -EBADMSG;
	case FHMAP_FH_FOREIGN:
	case FHMAP_FH_UNKNOWN:
	case FHMAP_FH_FORGOTTEN:
	case FHMAP_FH_STALE_GEN:
		return -ESTALE;
	}
	return 1;
}

/* A signed handle was accepted: it must be one the map made, followed by
 * zero padding only. */
static int fz_known(const unsigned char *b, size_t len)
{
	for (unsigned int k = 0; k < fz_nfh; k++) {
		if (len < fz_len[k] || memcmp(b, fz_fh[k], fz_len[k]) != 0)
			continue;
		for (size_t i = fz_len[k]; i < len; i++)
			if (b[i])
				return 0;
		return 1;
	}
	return 0;
}

static void fz_check(const unsigned char *b, size_t len, unsigned int flags)
{
	fhmap_decoded d;
	fhmap_object o;
	uint64_t ino;
	uint32_t gen;
	int rc = fhmap_decode(&d, fz_map, b, len, flags);

	REL_ASSERT(rc == fz_rc_of(d.status), "decode returned %d with status %s", rc,
	           fhmap_fh_status_str(d.status));
	if (rc != 0)
		return;
	REL_ASSERT(len >= 20 && (b[1] & ~3u) == FHMAP_FH_TYPE_BASE, "accepted a handle of type 0x%x",
	           len > 1 ? b[1] : 0);
	if (!(b[1] & 2))
		REL_ASSERT(fz_known(b, len), "accepted a signed handle fhmap_encode never made");
	else
		REL_ASSERT(flags & FHMAP_FH_ALLOW_UNSIGNED, "accepted an unsigned handle unasked");
	if (flags & FHMAP_FH_PARENT) {
		REL_ASSERT((b[1] & 1) && len >= 32, "parent of a non-connectable handle");
		ino = le64(b + 20);
		gen = le32(b + 28);
	} else {
		ino = le64(b + 8);
		gen = le32(b + 16);
	}
	REL_ASSERT(d.ino == ino && d.gen == gen, "handle names %llu/%u, decoded %llu/%u",
	           (unsigned long long)ino, gen, (unsigned long long)d.ino, d.gen);
	REL_OK(fhmap_get(&o, fz_map, ino));
	REL_ASSERT(o.state != FHMAP_STATE_UNLINKED && o.gen == gen && o.state == d.state,
	           "decoded object %llu is state %d gen %u", (unsigned long long)ino, (int)o.state, o.gen);
	REL_ASSERT(rel_realfh_eq(&d.real, o.has_upper ? &o.upper : &o.origin),
	           "decoded object %llu names the wrong real handle", (unsigned long long)ino);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char buf[BUF_MAX];
	size_t len;

	if (size < 1)
		return 0;
	if (!(data[0] & 4)) {
		fz_check(data + 1, size - 1, dflags[data[0] & 3]);
		return 0;
	}
	{
		unsigned int k = (unsigned int)(data[0] >> 3) % fz_nfh;

		len = size - 1 > fz_len[k] ? size - 1 : fz_len[k];
		if (len > BUF_MAX)
			len = BUF_MAX;
		memset(buf, 0, sizeof(buf));
		memcpy(buf, fz_fh[k], fz_len[k]);
		for (size_t i = 0; i + 1 < size && i < len; i++)
			buf[i] ^= data[1 + i];
		fz_check(buf, len, dflags[data[0] & 3]);
	}
	return 0;
}
