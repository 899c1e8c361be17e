/* fhmapctl: check, repair and gc. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct run {
	int json;
	int dry_run;
	int repair;      /* fix what can be fixed */
	uint64_t fixed;
	uint64_t left;   /* problems not fixed */
	int failed;      /* a fix failed with an I/O error */
};

static void problem_json(const struct check_problem *p, const char *action)
{
	json_obj_begin(NULL);
	json_str("kind", check_kind_name(p->kind));
	if (p->ino)
		json_u64("ino", p->ino);
	else
		json_str("ino", NULL);
	json_str("path", p->path[0] ? p->path : NULL);
	json_str("which", p->which);
	if (p->layer)
		json_u64("layer", p->layer);
	if (p->kind == CHECK_INDEX_DANGLING)
		json_realfh("handle", &p->fresh);
	json_str("reason", p->reason);
	if (action)
		json_str("action", action);
	json_obj_end();
}

static void problem_human(const struct check_problem *p, const char *action)
{
	if (p->ino)
		printf("object %" PRIu64 " (%s): %s", p->ino, p->path[0] ? p->path : "?", p->reason);
	else
		printf("map: %s", p->reason);
	if (action)
		printf(": %s", action);
	putchar('\n');
}

/* Why a problem is left for the operator. */
static const char *left_alone(const struct check_problem *p)
{
	switch (p->kind) {
	case CHECK_INDEX_CONFLICT:
		return "left alone: the entry names another object; inspect both with 'fhmapctl show'";
	case CHECK_INDEX_DAMAGED:
		return "left alone: repair rebuilds the entries of objects whose entry is damaged; run "
		       "check again, and if this stays, restore the map from a backup";
	case CHECK_PATH:
		return "left alone: the object still resolves by handle; its name hint needs the union";
	case CHECK_STATE:
		return "left alone: needs the library to rewrite the record";
	case CHECK_COPYUP_RUNNING:
		return "left alone: the process is still running";
	case CHECK_LAYER_UNREACHABLE:
		return "left alone: mount the layer, or run 'fhmapctl rebase' if it moved";
	case CHECK_HANDLE_STALE:
		return "left alone: no file of its type at its name hint (the union should unlink it if "
		       "it was deleted)";
	case CHECK_HINT_MISSING:
		return "left alone: the real handle still works";
	case CHECK_HINT_MISMATCH:
		return "left alone: if the layer was copied or moved, run 'fhmapctl rebase'";
	case CHECK_MAP_DAMAGED:
		return "left alone: LMDB cannot read around a damaged page; restore the map from a "
		       "backup ('fhmapctl restore')";
	default:
		return "left alone";
	}
}

/* Re-stores the record as it is now (index entries follow), for a stale
 * handle with the handle of the file at the name hint, then checks that the
 * index maps the handle back. A record changed since the scan is left to the
 * next run (-EAGAIN). */
static int fix_record(fhmap *map, const struct check_problem *p)
{
	int upper = p->which && strcmp(p->which, "upper") == 0;
	fhmap_realfh *fh;
	fhmap_object o;
	uint64_t back = 0;
	int r = fhmap_get(&o, map, p->ino);

	if (r != 0)
		return r;
	fh = upper ? &o.upper : &o.origin;
	if (!ctl_realfh_equal(fh, upper ? &p->obj.upper : &p->obj.origin))
		return -EAGAIN;
	if (p->kind == CHECK_HANDLE_STALE)
		*fh = p->fresh;
	r = fhmap_object_update(map, &o);
	if (r != 0)
		return r;
	r = upper ? fhmap_lookup_upper(&back, map, fh) : fhmap_lookup_origin(&back, map, fh);
	if (r == 0 && back != o.ino)
		r = -EEXIST;
	return r == -ENOENT ? -ENOKEY : r;
}

/* Removes the index entry of @p fh (dangling, or damaged: the library
 * removes an entry it cannot read). */
static int fix_entry(fhmap *map, const char *which, const fhmap_realfh *fh)
{
	fhmap_index index = strcmp(which, "upper") ? FHMAP_INDEX_ORIGIN : FHMAP_INDEX_UPPER;
	int r = fhmap_index_remove(map, index, fh);

	/* Gone, or made valid meanwhile: nothing left to remove. */
	return r == -ENOENT || r == -EBUSY ? 0 : r;
}

static int fix_copyup(fhmap *map, const struct check_problem *p)
{
	if (p->has_fresh)
		return fhmap_copyup_commit(map, p->ino, &p->fresh);
	return fhmap_copyup_abort(map, p->ino);
}

/* The fix for a problem, or NULL when there is none. */
static const char *fix_name(const struct check_problem *p, int dry_run)
{
	switch (p->kind) {
	case CHECK_INDEX_MISSING:
		return dry_run ? "would rebuild the index entry" : "rebuilt the index entry";
	case CHECK_INDEX_DANGLING:
		return dry_run ? "would remove the entry" : "removed the entry";
	case CHECK_INDEX_DAMAGED:
		if (!p->ino)
			return NULL;
		return dry_run ? "would replace the entry" : "replaced the entry";
	case CHECK_HANDLE_STALE:
		if (!p->has_fresh)
			return NULL;
		return dry_run ? "would refresh the handle from the name hint"
		               : "refreshed the handle from the name hint";
	case CHECK_COPYUP_CRASHED:
		if (p->has_fresh)
			return dry_run ? "would roll forward" : "rolled forward";
		return dry_run ? "would roll back" : "rolled back";
	default:
		return NULL;
	}
}

/* Applies the fix fix_name() names. */
static int apply_fix(fhmap *map, const struct check_problem *p)
{
	int r;

	switch (p->kind) {
	case CHECK_COPYUP_CRASHED:
		return fix_copyup(map, p);
	case CHECK_INDEX_DANGLING:
		return fix_entry(map, p->which, &p->fresh);
	case CHECK_INDEX_DAMAGED:
		r = fix_entry(map, p->which,
		              strcmp(p->which, "upper") ? &p->obj.origin : &p->obj.upper);
		return r ? r : fix_record(map, p);
	default:
		return fix_record(map, p);
	}
}

static int on_problem(void *ctx, fhmap *map, const struct check_problem *p)
{
	struct run *run = ctx;
	const char *fix = run->repair ? fix_name(p, run->dry_run) : NULL;
	const char *action = run->repair ? (fix ? fix : left_alone(p)) : NULL;
	char failed[160];
	int r = 0;

	if (fix && !run->dry_run) {
		r = apply_fix(map, p);
		if (r != 0) {
			snprintf(failed, sizeof(failed), "fix failed: %s",
			         r == -ENOKEY   ? "the library did not rebuild the index entry"
			         : r == -EAGAIN ? "the object changed meanwhile; run repair again"
			                        : fhmap_strerror(r));
			action = failed;
			run->failed |= r == -EIO || r == -ENOSPC;
		}
	}
	if (run->json)
		problem_json(p, action);
	else
		problem_human(p, action);
	if (p->kind == CHECK_COPYUP_RUNNING)
		return 0;
	if (fix && !run->dry_run && r == 0) {
		run->fixed++;
		return 1;
	}
	run->left++;
	return 0;
}

struct check_args {
	int deep;
	int dry_run;
};

static int check_opt(void *ctx, int opt, const char *arg)
{
	struct check_args *a = ctx;

	(void)arg;
	if (opt == 'd')
		a->deep = 1;
	else
		a->dry_run = 1;
	return 0;
}

static const char *plural(uint64_t n)
{
	return n == 1 ? "problem" : "problems";
}

static void summary(const struct run *run, const struct check_totals *t)
{
	if (run->json) {
		json_u64("objects", t->objects);
		json_u64("entries", t->entries);
		json_u64("pending", t->pending);
		json_u64("found", t->problems);
		if (run->repair) {
			json_u64("fixed", run->fixed);
			json_u64("left", run->left);
		}
		json_bool("clean", run->left == 0 && !t->error);
		json_str("error", t->error ? fhmap_strerror(t->error) : NULL);
		json_obj_end();
		json_end();
		return;
	}
	if (t->error)
		ctl_report("the scan stopped", t->error);
	printf("checked %" PRIu64 " objects, %" PRIu64 " index entries and %" PRIu64
	       " copy-up intents: ",
	       t->objects, t->entries, t->pending);
	if (t->problems == 0)
		printf("clean\n");
	else if (!run->repair)
		printf("%" PRIu64 " %s (see 'fhmapctl repair --dry-run')\n", t->problems,
		       plural(t->problems));
	else if (run->dry_run)
		printf("%" PRIu64 " %s, nothing changed (dry run)\n", t->problems, plural(t->problems));
	else
		printf("%" PRIu64 " %s, %" PRIu64 " fixed, %" PRIu64 " left\n", t->problems,
		       plural(t->problems), run->fixed, run->left);
}

/* The map failed verification at open: that is the one problem found,
 * and nothing else can be checked. */
static int report_damaged(struct run *run)
{
	struct check_totals t = { .problems = 1 };
	struct check_problem p = { .kind = CHECK_MAP_DAMAGED, .path = "" };

	snprintf(p.reason, sizeof(p.reason),
	         "damaged: a page or identity record failed verification at open; nothing else "
	         "was checked");
	if (run->json) {
		json_obj_begin(NULL);
		json_arr_begin("problems");
	}
	on_problem(run, NULL, &p);
	if (run->json)
		json_arr_end();
	summary(run, &t);
	return CTL_EXIT_PROBLEM;
}

static int scan_command(int argc, char **argv, const char *name, int repair)
{
	static const struct option opts[] = {
		{ "deep", no_argument, NULL, 'd' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find(name);
	struct check_args a = { 0, 0 };
	struct run run = { .repair = repair };
	struct check_totals t;
	struct ctl_common c;
	fhmap *map = NULL;
	int i, r;

	i = ctl_parse(argc, argv, cmd, opts, check_opt, &a, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 1)
		return ctl_usage_error(cmd, "%s needs DB", name);
	if (a.dry_run && !repair)
		return ctl_usage_error(cmd, "check never changes anything; --dry-run is for repair");
	run.json = c.json;
	run.dry_run = a.dry_run;
	/* Verified first: LMDB may crash on a damaged page. */
	r = ctl_map_try_open(&map, argv[i],
	                     (repair && !a.dry_run ? CTL_OPEN_LAZY : FHMAP_OPEN_RDONLY) | FHMAP_OPEN_VERIFY);
	if (r == -EUCLEAN)
		return report_damaged(&run);
	if (r != 0)
		return CTL_EXIT_ERROR;
	if (repair && !a.dry_run)
		ctl_warn_in_use(map);
	if (c.json) {
		json_obj_begin(NULL);
		json_arr_begin("problems");
	}
	/* Repair is always deep: refreshing real handles needs the comparison. */
	check_scan(&t, map, a.deep || repair, on_problem, &run);
	if (c.json)
		json_arr_end();
	summary(&run, &t);
	if (repair && !a.dry_run && fhmap_sync(map) != 0)
		run.failed = 1;
	fhmap_close(map);
	if (t.error || run.failed)
		return CTL_EXIT_ERROR;
	return run.left ? CTL_EXIT_PROBLEM : CTL_EXIT_OK;
}

int ctl_cmd_check(int argc, char **argv)
{
	return scan_command(argc, argv, "check", 0);
}

int ctl_cmd_repair(int argc, char **argv)
{
	return scan_command(argc, argv, "repair", 1);
}
