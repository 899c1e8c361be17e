/* fhmapctl rebase: a layer was copied or moved (cp -a, rsync, restore from
 * backup, another filesystem). Every real handle on that layer is re-derived
 * from the object's name hint under the new root, then the root is switched,
 * so the handles clients hold keep resolving to the same objects. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhmapctl.h"

struct rebase_item {
	uint64_t ino;
	int upper;          /* which handle of the object is on the layer */
	fhmap_realfh fresh; /* handle of the file at the name hint */
};

struct rebase {
	fhmap *map;
	fhmap_layer layer;
	char *newroot;
	int rootfd;
	int json;
	int dry_run;
	int partial; /* apply even if some files are missing under NEWROOT */
	struct rebase_item *items;
	size_t n, cap;
	uint64_t on_layer, unchanged, missing, updated, failed;
};

static int rebase_push(struct rebase *rb, const struct rebase_item *item)
{
	if (rb->n == rb->cap) {
		size_t cap = rb->cap ? 2 * rb->cap : 256;
		struct rebase_item *p = realloc(rb->items, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		rb->items = p;
		rb->cap = cap;
	}
	rb->items[rb->n++] = *item;
	return 0;
}

static void rebase_say(struct rebase *rb, uint64_t ino, const char *path, const char *which,
                       const char *what)
{
	if (rb->json) {
		json_obj_begin(NULL);
		json_u64("ino", ino);
		json_str("path", path[0] ? path : NULL);
		json_str("which", which);
		json_str("problem", what);
		json_obj_end();
	} else {
		printf("object %" PRIu64 " (%s): %s handle: %s\n", ino, path[0] ? path : "?", which,
		       what);
	}
}

/* The handle of the file at the object's name hint under the new root. */
static int derive(struct rebase *rb, const fhmap_object *o, const char *path, fhmap_realfh *out)
{
	const char *rel = ctl_layer_rel(path);
	struct stat st;

	if (fstatat(rb->rootfd, rel[0] ? rel : ".", &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if ((st.st_mode & S_IFMT) != (o->type & S_IFMT))
		return -EMEDIUMTYPE;
	return fhmap_realfh_at(out, rb->layer.id, rb->rootfd, rel);
}

static int rebase_object(struct rebase *rb, const fhmap_object *o)
{
	struct rebase_item item = { .ino = o->ino };
	char path[CTL_PATH_MAX], why[128];
	int r;

	if (o->state == FHMAP_STATE_UNLINKED)
		return 0;
	if (o->has_upper && o->upper.layer == rb->layer.id)
		item.upper = 1;
	else if (!o->has_origin || o->origin.layer != rb->layer.id)
		return 0;
	rb->on_layer++;
	/* An origin is where it was bound on its (unchanging) lower layer,
	 * however the union renamed it since; an upper file is at its name. */
	if (item.upper)
		r = ctl_object_path(path, sizeof(path), rb->map, o->ino);
	else if ((r = fhmap_origin_path(path, sizeof(path), rb->map, o->ino)) != 0)
		path[0] = '\0';
	if (r == 0)
		r = derive(rb, o, path, &item.fresh);
	if (r != 0) {
		rb->missing++;
		snprintf(why, sizeof(why), "not re-derived (%s)",
		         r == -EMEDIUMTYPE ? "another file type at its name hint"
		         : r == -ENOENT    ? "no file at its name hint under NEWROOT"
		                           : fhmap_strerror(r));
		rebase_say(rb, o->ino, path, item.upper ? "upper" : "origin", why);
		return 0;
	}
	if (ctl_realfh_equal(&item.fresh, item.upper ? &o->upper : &o->origin)) {
		rb->unchanged++;
		return 0;
	}
	return rebase_push(rb, &item);
}

static int rebase_collect(struct rebase *rb)
{
	struct ctl_progress bar;
	fhmap_iter *it;
	fhmap_object o;
	int r = fhmap_iter_new(&it, rb->map, 0);

	if (r != 0)
		return r;
	ctl_progress_start(&bar, "rebase: reading", ctl_object_bound(rb->map));
	while ((r = fhmap_iter_next(&o, it)) == 0 && (r = rebase_object(rb, &o)) == 0)
		ctl_progress_update(&bar, o.ino);
	ctl_progress_end(&bar);
	fhmap_iter_free(it);
	return r == -ENOENT ? 0 : r;
}

static int rebase_apply_one(void *ctx, fhmap *map, size_t i)
{
	struct rebase *rb = ctx;
	const struct rebase_item *item = &rb->items[i];
	fhmap_object o;
	int r = fhmap_get(&o, map, item->ino);

	if (r != 0)
		return r;
	*(item->upper ? &o.upper : &o.origin) = item->fresh;
	return fhmap_object_update(map, &o);
}

static void rebase_applied(void *ctx, size_t i, int r)
{
	struct rebase *rb = ctx;
	struct rebase_item *item = &rb->items[i];
	char path[CTL_PATH_MAX];

	if (r == 0) {
		rb->updated++;
		item->ino = 0; /* done */
		return;
	}
	if (r == -EEXIST)
		return; /* another object still holds the handle: retried */
	rb->failed++;
	ctl_object_path(path, sizeof(path), rb->map, item->ino);
	rebase_say(rb, item->ino, path, item->upper ? "upper" : "origin", fhmap_strerror(r));
	item->ino = 0;
}

/* Drops finished items; returns how many are left. */
static size_t rebase_compact(struct rebase *rb)
{
	size_t k = 0;

	for (size_t i = 0; i < rb->n; i++)
		if (rb->items[i].ino)
			rb->items[k++] = rb->items[i];
	rb->n = k;
	return k;
}

/* Handles can swap between objects (a layer moved onto another copy): an
 * update refused with -EEXIST is retried once the others have moved. */
static int rebase_apply(struct rebase *rb)
{
	struct ctl_progress bar;
	size_t before;
	int r = 0;

	ctl_progress_start(&bar, "rebase: writing", rb->n);
	do {
		before = rb->n;
		r = ctl_batch_apply(rb->map, rb->n, rebase_apply_one, rebase_applied, rb, &bar);
	} while (r == 0 && rebase_compact(rb) && rb->n < before);
	ctl_progress_end(&bar);
	for (size_t i = 0; r == 0 && i < rb->n; i++) {
		rb->failed++;
		rebase_say(rb, rb->items[i].ino, "", rb->items[i].upper ? "upper" : "origin",
		           "its new handle belongs to another object");
	}
	if (r == 0 && strcmp(rb->layer.root, rb->newroot) != 0)
		r = fhmap_layer_set_root(rb->map, rb->layer.id, rb->newroot);
	if (r == 0)
		r = fhmap_sync(rb->map);
	return r;
}

/* LAYER is a layer id or the root it was registered with. */
static int rebase_find_layer(struct rebase *rb, const char *spec)
{
	fhmap_layer *ls;
	uint64_t id;
	size_t n;
	int r;

	if (ctl_parse_u64(&id, spec) == 0)
		return id > UINT32_MAX ? -ENXIO : fhmap_layer_get(&rb->layer, rb->map, (uint32_t)id);
	r = ctl_layers_load(&ls, &n, rb->map);
	if (r != 0)
		return r;
	r = -ENXIO;
	for (size_t i = 0; i < n && r; i++)
		if (strcmp(ls[i].root, spec) == 0) {
			rb->layer = ls[i];
			r = 0;
		}
	free(ls);
	return r;
}

static int rebase_opt(void *ctx, int opt, const char *arg)
{
	struct rebase *rb = ctx;

	(void)arg;
	if (opt == 'n')
		rb->dry_run = 1;
	else
		rb->partial = 1;
	return 0;
}

static void rebase_summary(const struct rebase *rb)
{
	if (rb->json) {
		json_arr_end();
		json_u64("layer", rb->layer.id);
		json_str("old_root", rb->layer.root);
		json_str("new_root", rb->newroot);
		json_u64("handles", rb->on_layer);
		json_u64("updated", rb->dry_run ? 0 : rb->updated);
		json_u64("to_update", rb->dry_run ? rb->n : 0);
		json_u64("unchanged", rb->unchanged);
		json_u64("not_rederived", rb->missing + rb->failed);
		json_bool("dry_run", rb->dry_run);
		json_obj_end();
		json_end();
		return;
	}
	printf("layer %u: %s -> %s\n", (unsigned)rb->layer.id, rb->layer.root, rb->newroot);
	printf("%" PRIu64 " handles on the layer: %" PRIu64 " %s, %" PRIu64 " unchanged, %" PRIu64
	       " not re-derived\n",
	       rb->on_layer, rb->dry_run ? (uint64_t)rb->n : rb->updated,
	       rb->dry_run ? "would be updated" : "updated", rb->unchanged, rb->missing + rb->failed);
}

/* A NEWROOT that lacks some of the layer's files is refused unless
 * --partial: it is more likely a typo or an unfinished copy than the layer. */
static int rebase_run(struct rebase *rb)
{
	int r = rebase_collect(rb), rc = CTL_EXIT_OK;

	if (r != 0) {
		ctl_report("cannot read the map", r);
		rc = CTL_EXIT_ERROR;
	} else if (rb->missing && !rb->partial && !rb->dry_run) {
		ctl_err("%s lacks %" PRIu64 " of the %" PRIu64 " files of layer %u; nothing changed "
		        "(finish the copy, or give --partial to leave those handles as they are)",
		        rb->newroot, rb->missing, rb->on_layer, (unsigned)rb->layer.id);
		rb->dry_run = 1;
		rc = CTL_EXIT_PROBLEM;
	} else if (!rb->dry_run) {
		ctl_warn_in_use(rb->map);
		r = rebase_apply(rb);
		if (r != 0) {
			ctl_report("rebase stopped (run it again to finish)", r);
			rc = CTL_EXIT_ERROR;
		}
	}
	if (rc == CTL_EXIT_OK && (rb->missing || rb->failed))
		rc = CTL_EXIT_PROBLEM;
	rebase_summary(rb);
	return rc;
}

int ctl_cmd_rebase(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "partial", no_argument, NULL, 'p' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find("rebase");
	struct rebase rb = { .rootfd = -1 };
	struct ctl_common c;
	int i, r, rc = CTL_EXIT_ERROR;

	i = ctl_parse(argc, argv, cmd, opts, rebase_opt, &rb, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 3)
		return ctl_usage_error(cmd, "rebase needs DB, LAYER and NEWROOT");
	rb.json = c.json;
	rb.newroot = realpath(argv[i + 2], NULL);
	if (rb.newroot)
		rb.rootfd = open(rb.newroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rb.rootfd < 0) {
		ctl_err("NEWROOT %s: %s (give the directory the layer was copied or moved to)",
		        argv[i + 2], strerror(errno));
		free(rb.newroot);
		return CTL_EXIT_ERROR;
	}
	rb.map = ctl_map_open(argv[i], rb.dry_run ? FHMAP_OPEN_RDONLY : CTL_OPEN_LAZY);
	if (rb.map) {
		r = rebase_find_layer(&rb, argv[i + 1]);
		if (r == 0) {
			if (rb.json) {
				json_obj_begin(NULL);
				json_arr_begin("problems");
			}
			rc = rebase_run(&rb);
		} else {
			ctl_err("no layer %s in the map (see 'fhmapctl layers %s')", argv[i + 1], argv[i]);
		}
	}
	fhmap_close(rb.map);
	close(rb.rootfd);
	free(rb.items);
	free(rb.newroot);
	return rc;
}
