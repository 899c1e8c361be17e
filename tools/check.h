/* fhmapctl: the consistency scan of check and repair (gc shares
 * check_fresh_handle). */
#ifndef FHMAPCTL_CHECK_H
#define FHMAPCTL_CHECK_H

#include "fhmapctl.h"

/* What is wrong. The names (check_kind_name) are part of the --json output. */
enum check_kind {
	CHECK_INDEX_MISSING,     /* a real handle of the object finds nothing */
	CHECK_INDEX_CONFLICT,    /* a real handle of the object finds another one */
	CHECK_INDEX_DANGLING,    /* an index entry whose object does not carry it */
	CHECK_INDEX_DAMAGED,     /* an index entry that cannot be read */
	CHECK_PATH,              /* the path cannot be rebuilt from name hints */
	CHECK_STATE,             /* record and intents contradict each other */
	CHECK_COPYUP_CRASHED,    /* intent of a process that is gone */
	CHECK_COPYUP_RUNNING,    /* intent of a live process (not a problem yet) */
	CHECK_LAYER_UNREACHABLE, /* --deep: a layer root cannot be opened */
	CHECK_HANDLE_STALE,      /* --deep: a real handle no longer opens */
	CHECK_HINT_MISSING,      /* --deep: no file at the name hint */
	CHECK_HINT_MISMATCH,     /* --deep: the file at the name hint is another one */
	CHECK_MAP_DAMAGED        /* the map fails verification at open: nothing else checked */
};

struct check_problem {
	enum check_kind kind;
	uint64_t ino;       /* 0 when not about one object */
	const char *which;  /* "origin", "upper" or NULL */
	uint32_t layer;     /* layer concerned, 0 if none */
	const char *path;   /* rebuilt union path, "" if unknown */
	char reason[2 * CTL_PATH_MAX + 256]; /* for people */
	fhmap_object obj;   /* the record, when about one object */
	int has_fresh;      /* fresh is the handle of the file at the name hint
	                       (CHECK_INDEX_DANGLING: the entry's handle) */
	fhmap_realfh fresh;
	fhmap_copyup_intent intent; /* copy-up problems */
};

/* Called for every problem found. Returns 1 if it fixed the problem. */
typedef int (*check_fn)(void *ctx, fhmap *map, const struct check_problem *p);

struct check_totals {
	uint64_t objects;  /* records visited */
	uint64_t entries;  /* index entries visited */
	uint64_t pending;  /* copy-up intents seen */
	uint64_t problems; /* reported (running copy-ups excluded) */
	int error;         /* 0, or -errno that stopped the scan */
};

/* Walks the whole map. @p deep adds the open_by_handle_at and name hint
 * comparisons. */
void check_scan(struct check_totals *t, fhmap *map, int deep, check_fn fn, void *ctx);

const char *check_kind_name(enum check_kind kind);

/* Real handle of the file at union path @p path on @p layer, if one is there
 * and has @p type. Returns 0, -ENOENT (nothing there), -EMEDIUMTYPE (another
 * file type there) or another -errno. */
int check_fresh_handle(fhmap_realfh *out, fhmap *map, uint32_t layer, const char *path,
                       uint32_t type);

#endif
