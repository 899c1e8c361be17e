/*
 * Forgery: no handle that fhmap_encode() did not make for an object may
 * resolve to that object, and none may resolve to any other.
 *   - every single-bit flip of every valid handle, in all four forms (plain,
 *     connectable, unsigned, unsigned connectable), decoded with all four
 *     decode flag sets: never a different object; a flipped signed handle is
 *     never accepted at all;
 *   - random bytes of random length, and random handles with a valid header
 *     and map tag (so they reach the MAC and object checks);
 *   - handles of another map, as they are and with this map's tag spliced in;
 *   - replayed handles of unlinked, purged and generation-bumped objects, and
 *     of an origin re-bound to a new object.
 * Prints measured counts and a histogram of decode statuses.
 *
 * Usage: rel_forgery [--random N]   (default $FHMAP_FORGERY_RANDOM or 200000)
 */
#define _GNU_SOURCE
#include "rel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NOBJ 48
#define NFORMS 4
#define STATUS_MAX (FHMAP_FH_STALE_GEN + 1)

static const unsigned int forms[NFORMS] = { 0, FHMAP_FH_CONNECTABLE, FHMAP_FH_UNSIGNED,
                                            FHMAP_FH_CONNECTABLE | FHMAP_FH_UNSIGNED };
static const unsigned int decode_flags[4] = { 0, FHMAP_FH_ALLOW_UNSIGNED, FHMAP_FH_PARENT,
                                              FHMAP_FH_ALLOW_UNSIGNED | FHMAP_FH_PARENT };

struct forge_map {
	struct rel_union u;
	fhmap *map;
	uint64_t ino[NOBJ];
	unsigned int nobj;
};

struct forge_counts {
	uint64_t tried, rejected, same_object;
	uint64_t status[STATUS_MAX];
};

static struct forge_counts bitflip, randomized, structured, foreign, spliced, replay;

/* Decodes @p fh; fails the test if it resolves to an object other than
 * @p ino (generation @p gen), or at all when @p must_reject. */
static int forge_try(struct forge_counts *c, fhmap *map, const void *fh, size_t len,
                      unsigned int flags, uint64_t ino, uint32_t gen, int must_reject,
                      const char *what)
{
	fhmap_decoded d;
	int rc = fhmap_decode(&d, map, fh, len, flags);

	c->tried++;
	REL_ASSERT(rc != -EINVAL || d.status != FHMAP_FH_OK, "%s: -EINVAL with status OK", what);
	REL_ASSERT((unsigned int)d.status < STATUS_MAX, "%s: status %d out of range", what,
	           (int)d.status);
	c->status[d.status]++;
	if (rc != 0) {
		REL_ASSERT(d.status != FHMAP_FH_OK, "%s: rc %d with status OK", what, rc);
		REL_ASSERT(rc == -EINVAL || rc == -EBADMSG || rc == -ESTALE,
		           "%s: unexpected error %d (%s)", what, rc, fhmap_strerror(rc));
		c->rejected++;
		return 0;
	}
	REL_ASSERT(d.status == FHMAP_FH_OK, "%s: rc 0 with status %s", what,
	           fhmap_fh_status_str(d.status));
	REL_ASSERT(!must_reject, "%s: accepted (object %llu gen %u)", what,
	           (unsigned long long)d.ino, d.gen);
	REL_ASSERT(d.ino == ino && d.gen == gen,
	           "%s: resolved to object %llu gen %u instead of %llu gen %u", what,
	           (unsigned long long)d.ino, d.gen, (unsigned long long)ino, gen);
	c->same_object++;
	return 1;
}

static void forge_map_build(struct forge_map *m, const char *tag)
{
	char name[16];
	uint64_t dir = FHMAP_ROOT_INO;

	rel_union_init(&m->u, tag);
	REL_OK(rel_open(&m->map, m->u.mapdir, FHMAP_OPEN_CREATE, FHMAP_SYNC_LAZY, 0));
	rel_union_register(&m->u, m->map);
	m->ino[0] = FHMAP_ROOT_INO;
	m->nobj = 1;
	for (unsigned int i = 1; i < NOBJ; i++) {
		int is_dir = i % 6 == 1;

		snprintf(name, sizeof(name), "o%u", i);
		m->ino[i] = rel_union_add(&m->u, m->map, dir, name, is_dir);
		if (i % 3 == 0)
			rel_union_copyup(&m->u, m->map, m->ino[i], name, 1);
		if (is_dir)
			dir = m->ino[i];
		m->nobj++;
	}
}

static int forge_encode(unsigned char *fh, size_t *len, fhmap *map, uint64_t ino, unsigned int form)
{
	*len = FHMAP_FH_MAX;
	return fhmap_encode(fh, len, map, ino, 0, form);
}

/* What a handle should decode to under @p flags: the object, or its parent. */
static void forge_target(fhmap *map, uint64_t ino, unsigned int form, unsigned int flags,
                         uint64_t *t_ino, uint32_t *t_gen)
{
	fhmap_object o;

	REL_OK(fhmap_get(&o, map, ino));
	if ((flags & FHMAP_FH_PARENT) && (form & FHMAP_FH_CONNECTABLE)) {
		*t_ino = o.parent;
		REL_OK(fhmap_get(&o, map, o.parent));
	} else {
		*t_ino = ino;
	}
	*t_gen = o.gen;
}

/* An unsigned connectable handle carries the object (words 2-4) and its
 * parent (words 5-7) with nothing binding them: decoding the object does not
 * read the parent words and FHMAP_FH_PARENT does not read the object words,
 * so a flip there still names the very same object. Every other flip must be
 * refused. */
static int forge_unused_bit(unsigned int form, unsigned int flags, size_t bit)
{
	size_t byte = bit / 8;

	if (form != (FHMAP_FH_CONNECTABLE | FHMAP_FH_UNSIGNED) || !(flags & FHMAP_FH_ALLOW_UNSIGNED))
		return 0;
	return (flags & FHMAP_FH_PARENT) ? byte >= 8 && byte < 20 : byte >= 20 && byte < 32;
}

static void forge_bitflips(struct forge_map *a)
{
	unsigned char fh[FHMAP_FH_MAX], bad[FHMAP_FH_MAX + 4];
	char what[96];

	for (unsigned int i = 0; i < a->nobj; i++) {
		for (unsigned int f = 0; f < NFORMS; f++) {
			size_t len;

			if (a->ino[i] == FHMAP_ROOT_INO && (forms[f] & FHMAP_FH_CONNECTABLE))
				continue;
			REL_OK(forge_encode(fh, &len, a->map, a->ino[i], forms[f]));
			for (unsigned int df = 0; df < 4; df++) {
				int parent_of_plain = (decode_flags[df] & FHMAP_FH_PARENT) &&
				                      !(forms[f] & FHMAP_FH_CONNECTABLE);
				uint64_t t_ino;
				uint32_t t_gen;

				forge_target(a->map, a->ino[i], forms[f], decode_flags[df], &t_ino, &t_gen);
				/* The valid handle itself, and with zero padding. */
				memcpy(bad, fh, len);
				memset(bad + len, 0, 4);
				snprintf(what, sizeof(what), "valid handle of %llu form %u flags %u",
				         (unsigned long long)a->ino[i], forms[f], decode_flags[df]);
				if (!parent_of_plain && (!(forms[f] & FHMAP_FH_UNSIGNED) ||
				                         (decode_flags[df] & FHMAP_FH_ALLOW_UNSIGNED))) {
					REL_ASSERT(forge_try(&replay, a->map, bad, len, decode_flags[df], t_ino,
					                     t_gen, 0, what), "%s: refused", what);
					REL_ASSERT(forge_try(&replay, a->map, bad, len + 4, decode_flags[df], t_ino,
					                     t_gen, 0, what), "%s: refused with zero padding", what);
					bad[len] = 1;
					REL_ASSERT(!forge_try(&replay, a->map, bad, len + 4, decode_flags[df], t_ino,
					                      t_gen, 0, what), "%s: non-zero padding accepted", what);
				}
				for (size_t bit = 0; bit < len * 8; bit++) {
					memcpy(bad, fh, len);
					bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
					snprintf(what, sizeof(what), "object %llu form %u flags %u bit %zu",
					         (unsigned long long)a->ino[i], forms[f], decode_flags[df], bit);
					forge_try(&bitflip, a->map, bad, len, decode_flags[df], t_ino, t_gen,
					          !forge_unused_bit(forms[f], decode_flags[df], bit), what);
				}
			}
		}
	}
}

static void forge_random(struct forge_map *a, uint64_t *rng, long count)
{
	unsigned char fh[FHMAP_FH_MAX], buf[FHMAP_FH_MAX + 24];
	fhmap_info info;
	fhmap_object o;
	size_t len;

	REL_OK(fhmap_info_get(&info, a->map));
	for (long k = 0; k < count; k++) {
		size_t n = rel_rand(rng) % sizeof(buf);
		unsigned int df = decode_flags[rel_rand(rng) % 4];

		for (size_t j = 0; j < n; j++)
			buf[j] = (unsigned char)rel_rand(rng);
		forge_try(&randomized, a->map, buf, n, df, 0, 0, 1, "random bytes");
	}
	/* Valid header and tag, random object, generation and MAC: reaches
	 * the MAC check (signed) or the object check (unsigned). Objects near
	 * real ones and generations near real ones are favoured. */
	for (long k = 0; k < count; k++) {
		unsigned int f = (unsigned int)(rel_rand(rng) % NFORMS);
		uint64_t src = a->ino[1 + rel_rand(rng) % (a->nobj - 1)];
		uint64_t ino = rel_rand(rng) % 2 ? 1 + rel_rand(rng) % (info.next_ino + 2) : rel_rand(rng);
		uint32_t gen = rel_rand(rng) % 2 ? info.gen_base + (uint32_t)(rel_rand(rng) % 256)
		                                 : (uint32_t)rel_rand(rng);
		unsigned int df = decode_flags[rel_rand(rng) % 4];
		uint64_t t_ino = ino;
		uint32_t t_gen = gen;

		REL_OK(forge_encode(fh, &len, a->map, src, forms[f]));
		for (int b = 0; b < 8; b++)
			fh[8 + b] = (unsigned char)(ino >> (8 * b));
		for (int b = 0; b < 4; b++)
			fh[16 + b] = (unsigned char)(gen >> (8 * b));
		for (size_t j = 20; j < len; j++)
			fh[j] = (unsigned char)rel_rand(rng);
		if (forms[f] & FHMAP_FH_CONNECTABLE) {
			/* Parent words: a random live object with its real generation. */
			uint64_t p = a->ino[rel_rand(rng) % a->nobj];

			REL_OK(fhmap_get(&o, a->map, p));
			for (int b = 0; b < 8; b++)
				fh[20 + b] = (unsigned char)(p >> (8 * b));
			for (int b = 0; b < 4; b++)
				fh[28 + b] = (unsigned char)(o.gen >> (8 * b));
			if (df & FHMAP_FH_PARENT) {
				t_ino = p;
				t_gen = o.gen;
			}
		}
		/* An unsigned handle naming an existing object with its current
		 * generation is a valid handle of that object, nothing else. */
		forge_try(&structured, a->map, fh, len, df, t_ino, t_gen, !(forms[f] & FHMAP_FH_UNSIGNED),
		          "structured random handle");
	}
}

static void forge_foreign(struct forge_map *a, struct forge_map *b)
{
	unsigned char fh[FHMAP_FH_MAX], tag[4];
	size_t len;

	REL_OK(forge_encode(fh, &len, a->map, FHMAP_ROOT_INO, 0));
	memcpy(tag, fh + 4, 4);
	for (unsigned int i = 0; i < b->nobj; i++) {
		for (unsigned int f = 0; f < NFORMS; f++) {
			if (b->ino[i] == FHMAP_ROOT_INO && (forms[f] & FHMAP_FH_CONNECTABLE))
				continue;
			REL_OK(forge_encode(fh, &len, b->map, b->ino[i], forms[f]));
			for (unsigned int df = 0; df < 4; df++) {
				fhmap_decoded d;

				forge_try(&foreign, a->map, fh, len, decode_flags[df], 0, 0, 1,
				          "handle of another map");
				fhmap_decode(&d, a->map, fh, len, decode_flags[df]);
				REL_ASSERT(d.status == FHMAP_FH_FOREIGN, "foreign handle got status %s",
				           fhmap_fh_status_str(d.status));
			}
			/* Same tag by accident: the MAC (other secret) must still fail. An
			 * unsigned one carries no secret: it may only name an object of
			 * this map with the very same number and generation, which the
			 * random generation base makes improbable; forge_try checks it. */
			memcpy(fh + 4, tag, 4);
			for (unsigned int df = 0; df < 4; df++) {
				fhmap_object o;
				uint64_t t = b->ino[i];
				uint32_t g = 0;

				if (fhmap_get(&o, a->map, t) == 0)
					g = o.gen;
				forge_try(&spliced, a->map, fh, len, decode_flags[df], t, g,
				          !(forms[f] & FHMAP_FH_UNSIGNED), "foreign handle with our tag");
			}
		}
	}
}

/* Handles of an object must go stale when it is unlinked, stay stale after
 * purge, and never reach the object that re-binding its origin creates. */
static void forge_replay(struct forge_map *a)
{
	unsigned char fh[NFORMS][FHMAP_FH_MAX];
	size_t len[NFORMS];
	fhmap_decoded d;
	fhmap_object o;
	fhmap_realfh rfh;
	uint64_t again;
	unsigned int n = 0;
	char name[24];

	for (unsigned int i = 2; i < a->nobj; i += 2) {
		uint64_t ino = a->ino[i];

		REL_OK(fhmap_get(&o, a->map, ino));
		if (o.type == S_IFDIR)
			continue;
		for (unsigned int f = 0; f < NFORMS; f++)
			REL_OK(forge_encode(fh[f], &len[f], a->map, ino, forms[f]));
		if (n % 2 == 0) {
			REL_OK(fhmap_gen_bump(NULL, a->map, ino));
			for (unsigned int f = 0; f < NFORMS; f++) {
				forge_try(&replay, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED, 0, 0, 1,
				          "handle after gen_bump");
				fhmap_decode(&d, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED);
				REL_ASSERT(d.status == FHMAP_FH_STALE_GEN, "after gen_bump: %s",
				           fhmap_fh_status_str(d.status));
			}
		}
		REL_OK(fhmap_unlink(a->map, ino));
		for (unsigned int f = 0; f < NFORMS; f++) {
			forge_try(&replay, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED, 0, 0, 1,
			          "handle of unlinked object");
			fhmap_decode(&d, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED);
			REL_ASSERT(d.status == FHMAP_FH_FORGOTTEN || d.status == FHMAP_FH_STALE_GEN,
			           "after unlink: %s", fhmap_fh_status_str(d.status));
		}
		if (n % 3 == 0) {
			REL_OK(fhmap_purge(a->map, ino));
			for (unsigned int f = 0; f < NFORMS; f++) {
				forge_try(&replay, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED, 0, 0, 1,
				          "handle of purged object");
				fhmap_decode(&d, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED);
				REL_ASSERT(d.status == FHMAP_FH_UNKNOWN, "after purge: %s",
				           fhmap_fh_status_str(d.status));
			}
		}
		/* The same lower file bound again is a new object. */
		REL_ASSERT(o.has_origin, "object %llu has no origin", (unsigned long long)ino);
		rfh = o.origin;
		snprintf(name, sizeof(name), "again%u", n);
		REL_OK(fhmap_bind(&again, a->map, &rfh, FHMAP_ROOT_INO, name, S_IFREG));
		REL_ASSERT(again != ino, "re-bound origin reused object %llu", (unsigned long long)ino);
		for (unsigned int f = 0; f < NFORMS; f++)
			forge_try(&replay, a->map, fh[f], len[f], FHMAP_FH_ALLOW_UNSIGNED, 0, 0, 1,
			          "old handle after re-bind");
		REL_OK(fhmap_unlink(a->map, again));
		n++;
	}
	REL_ASSERT(n > 0, "no object replayed");
}

static void forge_print(const char *name, const struct forge_counts *c)
{
	printf("rel_forgery: %-28s %9llu tried, %9llu rejected, %6llu accepted as the same object;",
	       name, (unsigned long long)c->tried, (unsigned long long)c->rejected,
	       (unsigned long long)c->same_object);
	for (int s = 0; s < STATUS_MAX; s++)
		if (c->status[s])
			printf(" %s %llu,", fhmap_fh_status_str((fhmap_fh_status)s),
			       (unsigned long long)c->status[s]);
	printf("\n");
}

int main(int argc, char **argv)
{
	long count = rel_env_long("FHMAP_FORGERY_RANDOM", 200000);
	struct forge_map a, b;
	uint64_t rng;

	if (argc == 3 && strcmp(argv[1], "--random") == 0)
		count = strtol(argv[2], NULL, 0);
	else
		REL_ASSERT(argc == 1, "usage: %s [--random N]", argv[0]);
	rng = rel_seed("rel_forgery");
	forge_map_build(&a, "forge-a");
	forge_map_build(&b, "forge-b");
	forge_bitflips(&a);
	forge_random(&a, &rng, count);
	forge_foreign(&a, &b);
	forge_replay(&a);
	forge_print("single-bit flips", &bitflip);
	forge_print("random bytes", &randomized);
	forge_print("random with valid header", &structured);
	forge_print("another map's handles", &foreign);
	forge_print("another map's, our tag", &spliced);
	forge_print("valid, padded and replayed", &replay);
	printf("rel_forgery: no handle resolved to a different object\n");
	fhmap_close(a.map);
	fhmap_close(b.map);
	rel_union_free(&a.u);
	rel_union_free(&b.u);
	return 0;
}
