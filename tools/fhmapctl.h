/* fhmapctl: shared declarations of the command modules. */
#ifndef FHMAPCTL_H
#define FHMAPCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <getopt.h>

#include <fhmap/fhmap.h>

/* Exit codes (documented in fhmapctl.1; keep them stable). */
#define CTL_EXIT_OK 0      /* done, map clean */
#define CTL_EXIT_PROBLEM 1 /* problems found, object not found, handle rejected */
#define CTL_EXIT_ERROR 2   /* usage error, could not open or write the map */

/* Longest rebuilt union path the tool handles. */
#define CTL_PATH_MAX 4096

/* ---- main.c: common helpers ---- */

/* Options every command accepts. */
struct ctl_common {
	int json; /* --json */
};

/* One command of the dispatch table. */
struct ctl_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis; /* arguments after the command name */
	const char *summary;  /* one line */
	const char *options;  /* option lines for --help, may be NULL */
};

void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_usage_error(const struct ctl_command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const struct ctl_command *ctl_command_find(const char *name);

/* Parses the options of @p cmd: --json, --help and the long options in
 * @p extra (terminated by a zero entry; their val is passed to @p handler,
 * which returns 0, or -1 after printing what was wrong). Returns the index of
 * the first operand, CTL_PARSE_HELP after printing help, or CTL_PARSE_BAD. */
#define CTL_PARSE_HELP (-1)
#define CTL_PARSE_BAD (-2)
typedef int (*ctl_opt_fn)(void *ctx, int opt, const char *arg);
int ctl_parse(int argc, char **argv, const struct ctl_command *cmd, const struct option *extra,
              ctl_opt_fn handler, void *ctx, struct ctl_common *common);
/* Converts a ctl_parse result into an exit code. */
int ctl_parse_exit(int r);

/* Opens a map; prints an actionable error and returns NULL on failure.
 * @p flags: FHMAP_OPEN_* and CTL_OPEN_LAZY (one fsync a commit, for bulk
 * fixes that end with fhmap_sync()). */
#define CTL_OPEN_LAZY 0x10000u
fhmap *ctl_map_open(const char *path, unsigned int flags);
/* As ctl_map_open, but returns 0 or -errno and leaves -EUCLEAN (a damaged
 * map) to the caller to report. */
int ctl_map_try_open(fhmap **out, const char *path, unsigned int flags);

/* Warns on stderr when other processes have the map open (before changes). */
void ctl_warn_in_use(fhmap *map);

/* Parses an unsigned decimal number; 0 on success, -1 if not a number. */
int ctl_parse_u64(uint64_t *out, const char *s);

/* Prints why a libfhmap call failed, with advice where there is any. */
void ctl_report(const char *what, int err);

/* ---- names.c: printable names ---- */
const char *ctl_type_name(uint32_t type);
const char *ctl_state_name(fhmap_state state);
const char *ctl_role_name(fhmap_layer_role role);
void ctl_uuid_str(char out[37], const unsigned char uuid[16]);
void ctl_hex(char *out, const void *data, size_t len);
/* Formats a real handle as "LAYER:TYPE:HEX". */
void ctl_realfh_str(char *out, size_t size, const fhmap_realfh *fh);
/* Same layer, type and handle bytes? */
int ctl_realfh_equal(const fhmap_realfh *a, const fhmap_realfh *b);
/* Parses hex digits into @p out; returns the length or -1. */
int ctl_unhex(unsigned char *out, size_t cap, const char *hex);
/* Formats seconds since the epoch as UTC ISO 8601. */
void ctl_time_str(char out[32], uint64_t t);

/* ---- out.c: JSON writer (one document per run, on stdout) ---- */
void json_obj_begin(const char *key);
void json_obj_end(void);
void json_arr_begin(const char *key);
void json_arr_end(void);
void json_str(const char *key, const char *value); /* NULL => null */
void json_u64(const char *key, uint64_t value);
void json_i64(const char *key, int64_t value);
void json_bool(const char *key, int value);
void json_realfh(const char *key, const fhmap_realfh *fh); /* NULL => null */
void json_end(void); /* closes the document with a newline */

/* ---- progress.c: progress bar on stderr when it is a terminal ---- */
struct ctl_progress {
	int enabled;
	const char *label;
	uint64_t total;
	uint64_t last_ms;
};
void ctl_progress_start(struct ctl_progress *p, const char *label, uint64_t total);
void ctl_progress_update(struct ctl_progress *p, uint64_t done);
void ctl_progress_end(struct ctl_progress *p);

/* ---- walk.c: object helpers shared by the commands ---- */

/* Rebuilt union path of @p ino ("" when it cannot be rebuilt). Returns the
 * fhmap_path() result. */
int ctl_object_path(char *out, size_t size, fhmap *map, uint64_t ino);
/* Path of the union path @p upath relative to a layer root ("" for "/"). */
const char *ctl_layer_rel(const char *upath);
/* Resolves OBJECT: a number, a path inside a registered layer, or a path in
 * the union namespace (upper layer first, then lower layers in id order).
 * Returns 0, or -ENOENT (not found) or another -errno after saying why. */
int ctl_resolve_object(uint64_t *out, fhmap *map, const char *spec);
/* Reads all layers into a new array (free it). */
int ctl_layers_load(fhmap_layer **out, size_t *count, fhmap *map);
/* Reads all pending copy-up intents into a new array (free it). */
int ctl_intents_load(fhmap_copyup_intent **out, size_t *count, fhmap *map);
/* Is the process that recorded a copy-up intent still running? */
int ctl_pid_alive(uint32_t pid);
/* Number of objects a walk will visit, as an upper bound for progress. */
uint64_t ctl_object_bound(fhmap *map);

/* ---- batch.c: many updates, few commits ---- */

/* Performs update @p i; returns 0 or -errno (validation errors do not end
 * the batch). */
typedef int (*ctl_batch_fn)(void *ctx, fhmap *map, size_t i);
/* Told the result of update @p i once its batch is committed. */
typedef void (*ctl_batch_done_fn)(void *ctx, size_t i, int result);
/* Runs updates 0..count-1 in batches. Returns 0, or the -errno that stopped
 * it (batches committed before stay committed). */
int ctl_batch_apply(fhmap *map, size_t count, ctl_batch_fn fn, ctl_batch_done_fn done, void *ctx,
                    struct ctl_progress *bar);

/* ---- commands ---- */
int ctl_cmd_init(int argc, char **argv);
int ctl_cmd_info(int argc, char **argv);
int ctl_cmd_layers(int argc, char **argv);
int ctl_cmd_stats(int argc, char **argv);
int ctl_cmd_ls(int argc, char **argv);
int ctl_cmd_show(int argc, char **argv);
int ctl_cmd_encode(int argc, char **argv);
int ctl_cmd_decode(int argc, char **argv);
int ctl_cmd_check(int argc, char **argv);
int ctl_cmd_repair(int argc, char **argv);
int ctl_cmd_gc(int argc, char **argv);
int ctl_cmd_rebase(int argc, char **argv);
int ctl_cmd_backup(int argc, char **argv);
int ctl_cmd_restore(int argc, char **argv);

#endif
