/*
 * Shared helpers of the reliability harnesses: fatal checks, temporary
 * directories, a seeded PRNG, a two-layer union on real files, and a
 * consistency walk of a map through the public API only.
 */
#ifndef FHMAP_REL_H
#define FHMAP_REL_H

#include <fhmap/fhmap.h>

#include <stdint.h>
#include <stdio.h>

/** ctest SKIP_RETURN_CODE of the reliability tests. */
#define REL_SKIP 77

__attribute__((format(printf, 3, 4), noreturn))
void rel_die(const char *file, int line, const char *fmt, ...);

/** Fails the test (exit 1) with a message unless @p cond holds. */
#define REL_ASSERT(cond, ...) \
	do { if (!(cond)) rel_die(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/** Fails the test unless a libfhmap call returns 0. */
#define REL_OK(expr) \
	do { int rel_rc_ = (expr); \
	     if (rel_rc_ != 0) rel_die(__FILE__, __LINE__, "%s = %d (%s)", #expr, \
	                               rel_rc_, fhmap_strerror(rel_rc_)); } while (0)

/** Creates a private directory under $TMPDIR (or /tmp), removed at exit of
 *  the creating process. Returns a malloc'd path. */
char *rel_tmpdir(const char *tag);
/** Removes a directory tree (best effort). */
void rel_rmtree(const char *path);
/** Joins @p dir and @p name into a malloc'd path. */
char *rel_join(const char *dir, const char *name);
/** Creates (or truncates) a regular file @p dir/@p name. */
void rel_touch(const char *dir, const char *name);
/** Creates directory @p dir/@p name (it may exist). */
void rel_mkdir(const char *dir, const char *name);

/** Integer from the environment, or @p def when unset or empty. */
long rel_env_long(const char *name, long def);
/** PRNG seed: $FHMAP_REL_SEED or a fresh one; printed for reproduction. */
uint64_t rel_seed(const char *test);
/** splitmix64 step. */
uint64_t rel_rand(uint64_t *state);
/** Microseconds of CLOCK_MONOTONIC. */
uint64_t rel_now_us(void);

/** A union of one lower and one upper directory on real files, and the
 *  directory of its map. */
struct rel_union {
	char *top;      /* temporary directory holding all of it */
	char *lower;    /* lower layer root */
	char *upper;    /* upper layer root */
	char *mapdir;   /* map directory (created by fhmap_open) */
	uint32_t lower_id;
	uint32_t upper_id;
};

/** Creates the directories of a union in a fresh temporary directory. */
void rel_union_init(struct rel_union *u, const char *tag);
/** Registers the layers of @p u in a new map and binds the root. */
void rel_union_register(struct rel_union *u, fhmap *map);
/** Makes @p name (a directory or an empty file) in the lower layer's root
 *  and binds it under @p parent; returns its object number. */
uint64_t rel_union_add(struct rel_union *u, fhmap *map, uint64_t parent, const char *name, int is_dir);
/** Makes @p name in the upper layer's root and begins the copy-up of
 *  @p ino to it; with @p commit also commits it. */
void rel_union_copyup(struct rel_union *u, fhmap *map, uint64_t ino, const char *name, int commit);
/** Frees the paths of @p u (the tree goes at exit). */
void rel_union_free(struct rel_union *u);

/** Log callback printing to stderr with a prefix. */
void rel_log_stderr(void *ctx, fhmap_log_level level, const char *msg);

/** Opens a map with the given flags, sync mode and initial map size
 *  (0 = default), logging errors to stderr. */
int rel_open(fhmap **out, const char *dir, unsigned int flags, fhmap_sync_mode sync,
             uint64_t map_size);

/** What rel_check_map() walked. */
struct rel_check {
	uint64_t objects;    /* records, tombstones included */
	uint64_t live;       /* records not unlinked */
	uint64_t tombstones;
	uint64_t pending;    /* copy-up intents */
	uint64_t lookups;    /* index lookups and handle round trips made */
};

/**
 * Walks every object and checks, through the public API, that the map is
 * consistent: each live object's origin and upper handles look up back to
 * it, its state agrees with its handles and with the pending intents, its
 * parent is a live directory, its handle decodes back to it; tombstones are
 * out of the indexes and their handles are stale; every entry of both
 * indexes (fhmap_index_next) names a live object carrying that handle, and
 * the entry counts and fhmap_stats() agree with the walk.
 * Prints every problem to stderr and returns how many it found.
 */
unsigned int rel_check_map(fhmap *map, struct rel_check *out);

/** Same real handle (layer, type, bytes). */
int rel_realfh_eq(const fhmap_realfh *a, const fhmap_realfh *b);

#endif
