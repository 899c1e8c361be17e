/* fhmapctl gc: drops tombstones and crashed copy-up intents that left no
 * upper file (both are safe: handles of tombstones keep decoding to ESTALE,
 * and an intent without an upper file has nothing to roll forward). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "check.h"

struct gc {
	int json;
	int dry_run;
	uint64_t *inos; /* tombstones */
	size_t n, cap;
	uint64_t purged, intents;
	int error;
};

static int gc_collect(struct gc *g, fhmap *map)
{
	fhmap_iter *it;
	fhmap_object o;
	int r = fhmap_iter_new(&it, map, 0);

	while (r == 0 && (r = fhmap_iter_next(&o, it)) == 0) {
		if (o.state != FHMAP_STATE_UNLINKED)
			continue;
		if (g->n == g->cap) {
			size_t cap = g->cap ? 2 * g->cap : 256;
			uint64_t *p = realloc(g->inos, cap * sizeof(*p));

			if (!p) {
				r = -ENOMEM;
				break;
			}
			g->inos = p;
			g->cap = cap;
		}
		g->inos[g->n++] = o.ino;
	}
	fhmap_iter_free(it);
	return r == -ENOENT ? 0 : r;
}

static int gc_purge_one(void *ctx, fhmap *map, size_t i)
{
	struct gc *g = ctx;

	return fhmap_purge(map, g->inos[i]);
}

static void gc_report(struct gc *g, uint64_t ino, const char *what, int r)
{
	const char *verb = g->dry_run ? "would drop" : r ? "could not drop" : "dropped";

	if (r == 0)
		what == NULL ? g->purged++ : g->intents++;
	if (g->json) {
		json_obj_begin(NULL);
		json_u64("ino", ino);
		json_str("dropped", what ? "intent" : "tombstone");
		json_str("error", r ? fhmap_strerror(r) : NULL);
		json_obj_end();
	} else {
		printf("object %" PRIu64 ": %s %s%s%s\n", ino, verb, what ? what : "the tombstone",
		       r ? ": " : "", r ? fhmap_strerror(r) : "");
	}
}

static void gc_purged(void *ctx, size_t i, int r)
{
	struct gc *g = ctx;

	/* Purged meanwhile by someone else: nothing left to say. */
	if (r != -ENOENT)
		gc_report(g, g->inos[i], NULL, r);
}

/* Intents of processes that are gone and left no upper file. */
static int gc_intents(struct gc *g, fhmap *map)
{
	fhmap_copyup_intent *in;
	size_t n;
	int r = ctl_intents_load(&in, &n, map);

	if (r != 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		char path[CTL_PATH_MAX];
		fhmap_realfh fh;
		fhmap_object o;

		if (ctl_pid_alive(in[k].pid) || fhmap_get(&o, map, in[k].ino) != 0)
			continue;
		if (ctl_object_path(path, sizeof(path), map, o.ino) != 0 ||
		    check_fresh_handle(&fh, map, in[k].upper_layer, path, o.type) != -ENOENT)
			continue; /* an upper file: 'fhmapctl repair' rolls it forward */
		gc_report(g, o.ino, "the crashed copy-up intent",
		          g->dry_run ? 0 : fhmap_copyup_abort(map, o.ino));
	}
	free(in);
	return 0;
}

static int gc_opt(void *ctx, int opt, const char *arg)
{
	(void)opt;
	(void)arg;
	*(int *)ctx = 1;
	return 0;
}

int ctl_cmd_gc(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find("gc");
	struct gc g = { 0 };
	struct ctl_common c;
	fhmap *map;
	int i, r;

	i = ctl_parse(argc, argv, cmd, opts, gc_opt, &g.dry_run, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 1)
		return ctl_usage_error(cmd, "gc needs DB");
	g.json = c.json;
	map = ctl_map_open(argv[i], g.dry_run ? FHMAP_OPEN_RDONLY : CTL_OPEN_LAZY);
	if (!map)
		return CTL_EXIT_ERROR;
	if (!g.dry_run)
		ctl_warn_in_use(map);
	if (c.json) {
		json_obj_begin(NULL);
		json_arr_begin("dropped");
	}
	r = gc_collect(&g, map);
	if (r == 0 && g.dry_run)
		for (size_t k = 0; k < g.n; k++)
			gc_report(&g, g.inos[k], NULL, 0);
	else if (r == 0)
		r = ctl_batch_apply(map, g.n, gc_purge_one, gc_purged, &g, NULL);
	if (r == 0)
		r = gc_intents(&g, map);
	if (r == 0 && !g.dry_run)
		r = fhmap_sync(map);
	if (c.json) {
		json_arr_end();
		json_u64("tombstones", g.purged);
		json_u64("intents", g.intents);
		json_bool("dry_run", g.dry_run);
		json_obj_end();
		json_end();
	} else {
		printf("%s %" PRIu64 " tombstones and %" PRIu64 " copy-up intents\n",
		       g.dry_run ? "would drop" : "dropped", g.purged, g.intents);
	}
	if (r != 0)
		ctl_report("gc stopped", r);
	free(g.inos);
	fhmap_close(map);
	return r ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}
