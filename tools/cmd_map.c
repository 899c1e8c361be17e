/* fhmapctl: commands about the map as a whole: init, info, layers, stats. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fhmapctl.h"

#define INIT_MAX_LOWER 64

struct init_args {
	char *lower[INIT_MAX_LOWER];
	size_t nlower;
	char *upper;
};

/* Layer roots are recorded absolute and must be directories now. */
static char *layer_root(const char *path)
{
	struct stat st;
	char *abs;

	if (stat(path, &st) != 0) {
		ctl_err("layer %s: %s (create the directory first)", path, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		ctl_err("layer %s: not a directory", path);
		return NULL;
	}
	abs = realpath(path, NULL);
	if (!abs)
		ctl_err("layer %s: %s", path, strerror(errno));
	return abs;
}

static int init_opt(void *ctx, int opt, const char *arg)
{
	struct init_args *a = ctx;
	char *root;

	if (opt == 'u' && a->upper) {
		ctl_err("--upper given twice: a map has at most one upper layer");
		return -1;
	}
	if (opt == 'l' && a->nlower == INIT_MAX_LOWER) {
		ctl_err("too many --lower layers (at most %d)", INIT_MAX_LOWER);
		return -1;
	}
	root = layer_root(arg);
	if (!root)
		return -1;
	for (size_t i = 0; i < a->nlower; i++)
		if (strcmp(a->lower[i], root) == 0) {
			ctl_err("layer %s given twice", root);
			free(root);
			return -1;
		}
	if (a->upper && strcmp(a->upper, root) == 0) {
		ctl_err("layer %s given twice", root);
		free(root);
		return -1;
	}
	if (opt == 'u')
		a->upper = root;
	else
		a->lower[a->nlower++] = root;
	return 0;
}

static void init_args_free(struct init_args *a)
{
	for (size_t i = 0; i < a->nlower; i++)
		free(a->lower[i]);
	free(a->upper);
}

/* A map already at @p db is never touched by init. */
static int refuse_existing(const char *db)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *map = NULL;
	int r;

	o.flags = FHMAP_OPEN_RDONLY;
	r = fhmap_open(&map, db, &o);
	if (r == -ENOENT)
		return 0;
	fhmap_close(map);
	if (r == 0)
		ctl_err("%s already holds a map; see 'fhmapctl info %s' (init never overwrites)", db, db);
	else
		ctl_report(db, r);
	return -1;
}

static int add_layers(fhmap *map, const struct init_args *a)
{
	int r = fhmap_batch_begin(map);

	for (size_t i = 0; r == 0 && i < a->nlower; i++) {
		r = fhmap_layer_add(NULL, map, FHMAP_LAYER_LOWER, a->lower[i]);
		if (r != 0)
			ctl_report(a->lower[i], r);
	}
	if (r == 0 && a->upper) {
		r = fhmap_layer_add(NULL, map, FHMAP_LAYER_UPPER, a->upper);
		if (r != 0)
			ctl_report(a->upper, r);
	}
	if (r == 0) {
		r = fhmap_batch_commit(map);
		if (r != 0)
			ctl_report("cannot record the layers", r);
	} else {
		fhmap_batch_abort(map);
	}
	return r;
}

static int layers_print(fhmap *map, int json, int table);

int ctl_cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lower", required_argument, NULL, 'l' },
		{ "upper", required_argument, NULL, 'u' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find("init");
	struct init_args a = { .nlower = 0 };
	struct ctl_common c;
	fhmap *map = NULL;
	fhmap_info info;
	char uuid[37];
	int i, rc = CTL_EXIT_ERROR;

	i = ctl_parse(argc, argv, cmd, opts, init_opt, &a, &c);
	if (i < 0) {
		init_args_free(&a);
		return ctl_parse_exit(i);
	}
	if (argc - i != 1 || a.nlower + (a.upper != NULL) == 0) {
		init_args_free(&a);
		return ctl_usage_error(cmd, "init needs DB and at least one layer");
	}
	if (refuse_existing(argv[i]) == 0 && (map = ctl_map_open(argv[i], FHMAP_OPEN_CREATE)) &&
	    add_layers(map, &a) == 0 && fhmap_info_get(&info, map) == 0) {
		ctl_uuid_str(uuid, info.uuid);
		if (c.json) {
			json_obj_begin(NULL);
			json_str("map", argv[i]);
			json_str("uuid", uuid);
		} else {
			printf("created map %s (uuid %s)\n", argv[i], uuid);
		}
		layers_print(map, c.json, 0);
		if (c.json) {
			json_obj_end();
			json_end();
		}
		rc = CTL_EXIT_OK;
	}
	fhmap_close(map);
	init_args_free(&a);
	return rc;
}

/* Whether a layer root can be reached and gives real handles right now. */
static int layer_probe(fhmap *map, const fhmap_layer *l)
{
	fhmap_realfh fh;

	return fhmap_realfh_from_path(&fh, map, l->id, "");
}

/* Prints the layers; returns how many are unreachable, or -1. */
static int layers_print(fhmap *map, int json, int table)
{
	fhmap_layer *ls;
	size_t n;
	int bad = 0, r = ctl_layers_load(&ls, &n, map);

	if (r != 0) {
		ctl_report("cannot list layers", r);
		return -1;
	}
	if (json)
		json_arr_begin("layers");
	else if (table)
		printf("%-4s %-6s %-37s %-10s %s\n", "ID", "ROLE", "UUID", "REACHABLE", "ROOT");
	for (size_t i = 0; i < n; i++) {
		char uuid[37];
		int p = layer_probe(map, &ls[i]);

		bad += p != 0;
		ctl_uuid_str(uuid, ls[i].uuid);
		if (json) {
			json_obj_begin(NULL);
			json_u64("id", ls[i].id);
			json_str("role", ctl_role_name(ls[i].role));
			json_str("uuid", uuid);
			json_str("root", ls[i].root);
			json_bool("reachable", p == 0);
			json_str("error", p ? strerror(-p) : NULL);
			json_obj_end();
		} else if (table) {
			printf("%-4u %-6s %-37s %-10s %s%s%s%s\n", (unsigned)ls[i].id,
			       ctl_role_name(ls[i].role), uuid, p ? "no" : "yes", ls[i].root,
			       p ? " (" : "", p ? strerror(-p) : "", p ? ")" : "");
		} else {
			printf("  layer %u: %-5s %s%s\n", (unsigned)ls[i].id, ctl_role_name(ls[i].role),
			       ls[i].root, p ? " (unreachable)" : "");
		}
	}
	if (json)
		json_arr_end();
	free(ls);
	return bad;
}

int ctl_cmd_layers(int argc, char **argv)
{
	const struct ctl_command *cmd = ctl_command_find("layers");
	struct ctl_common c;
	fhmap *map;
	int i, bad;

	i = ctl_parse(argc, argv, cmd, NULL, NULL, NULL, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 1)
		return ctl_usage_error(cmd, "layers needs DB");
	map = ctl_map_open(argv[i], FHMAP_OPEN_RDONLY);
	if (!map)
		return CTL_EXIT_ERROR;
	if (c.json)
		json_obj_begin(NULL);
	bad = layers_print(map, c.json, 1);
	if (c.json) {
		json_obj_end();
		json_end();
	}
	fhmap_close(map);
	if (bad < 0)
		return CTL_EXIT_ERROR;
	return bad ? CTL_EXIT_PROBLEM : CTL_EXIT_OK;
}

/* Bytes a file takes on disk (allocated blocks) and its apparent size. */
static void file_size(const char *db, const char *name, uint64_t *apparent, uint64_t *allocated)
{
	char path[CTL_PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", db, name);
	if (stat(path, &st) == 0) {
		*apparent += (uint64_t)st.st_size;
		*allocated += (uint64_t)st.st_blocks * 512u;
	}
}

static void info_pending(fhmap *map, int json)
{
	fhmap_copyup_intent *in;
	size_t n;

	if (ctl_intents_load(&in, &n, map) != 0)
		return;
	if (json)
		json_arr_begin("pending_copyups");
	for (size_t k = 0; k < n; k++) {
		char path[CTL_PATH_MAX], when[32];
		int alive = ctl_pid_alive(in[k].pid);

		ctl_object_path(path, sizeof(path), map, in[k].ino);
		ctl_time_str(when, in[k].started);
		if (json) {
			json_obj_begin(NULL);
			json_u64("ino", in[k].ino);
			json_str("path", path[0] ? path : NULL);
			json_u64("upper_layer", in[k].upper_layer);
			json_u64("pid", in[k].pid);
			json_bool("pid_alive", alive);
			json_u64("started", in[k].started);
			json_obj_end();
		} else {
			printf("  object %" PRIu64 " (%s) to layer %u, pid %u (%s), since %s\n", in[k].ino,
			       path[0] ? path : "?", (unsigned)in[k].upper_layer, (unsigned)in[k].pid,
			       alive ? "running" : "gone", when);
		}
	}
	if (json)
		json_arr_end();
	free(in);
}

static void info_print(const char *db, fhmap *map, const fhmap_info *in, const fhmap_map_stats *s,
                       int json)
{
	uint64_t apparent = 0, allocated = 0;
	char uuid[37], when[32];

	file_size(db, "data.mdb", &apparent, &allocated);
	file_size(db, "lock.mdb", &apparent, &allocated);
	ctl_uuid_str(uuid, in->uuid);
	ctl_time_str(when, in->created);
	if (json) {
		json_obj_begin(NULL);
		json_str("map", db);
		json_str("uuid", uuid);
		json_u64("format_version", in->format_version);
		json_u64("created", in->created);
		json_u64("gen_base", in->gen_base);
		json_u64("next_ino", in->next_ino);
		layers_print(map, 1, 0);
		json_obj_begin("objects");
		json_u64("total", s->objects);
		json_u64("origin", s->origin_only);
		json_u64("copyup", s->copying);
		json_u64("upper", s->upper);
		json_u64("unlinked", s->unlinked);
		json_obj_end();
		json_u64("origin_entries", s->origin_entries);
		json_u64("upper_entries", s->upper_entries);
		json_u64("pending", s->pending);
		info_pending(map, 1);
		json_u64("disk_bytes", allocated);
		json_u64("file_bytes", apparent);
		json_obj_end();
		json_end();
		return;
	}
	printf("map:              %s\nuuid:             %s\nformat version:   %u\n"
	       "created:          %s\ngeneration base:  %u\nnext object:      %" PRIu64 "\n",
	       db, uuid, (unsigned)in->format_version, when, (unsigned)in->gen_base, in->next_ino);
	printf("layers:           %u\n", (unsigned)s->layers);
	layers_print(map, 0, 0);
	printf("objects:          %" PRIu64 " (origin %" PRIu64 ", copyup %" PRIu64 ", upper %" PRIu64
	       ", unlinked %" PRIu64 ")\n",
	       s->objects, s->origin_only, s->copying, s->upper, s->unlinked);
	printf("index entries:    origin %" PRIu64 ", upper %" PRIu64 "\n", s->origin_entries,
	       s->upper_entries);
	printf("pending copy-ups: %" PRIu64 "\n", s->pending);
	info_pending(map, 0);
	printf("size on disk:     %" PRIu64 " bytes (files %" PRIu64 " bytes)\n", allocated, apparent);
}

/* Opens DB read-only for a report command and reads identity and figures. */
static fhmap *open_report(const char *db, fhmap_info *info, fhmap_map_stats *s)
{
	fhmap *map = ctl_map_open(db, FHMAP_OPEN_RDONLY);
	int r;

	if (!map)
		return NULL;
	r = fhmap_info_get(info, map);
	if (r == 0)
		r = fhmap_stats(s, map);
	if (r != 0) {
		ctl_report(db, r);
		fhmap_close(map);
		return NULL;
	}
	return map;
}

static void stats_print(const fhmap_map_stats *s, int json)
{
	uint64_t pages = s->branch_pages + s->leaf_pages + s->overflow_pages;
	uint64_t per_object = s->objects ? (pages * s->page_size) / s->objects : 0;

	if (json) {
		json_obj_begin(NULL);
		json_u64("objects", s->objects);
		json_u64("origin_entries", s->origin_entries);
		json_u64("upper_entries", s->upper_entries);
		json_u64("pending", s->pending);
		json_u64("layers", s->layers);
		json_u64("page_size", s->page_size);
		json_u64("map_size", s->map_size);
		json_u64("used_bytes", s->used_bytes);
		json_u64("branch_pages", s->branch_pages);
		json_u64("leaf_pages", s->leaf_pages);
		json_u64("overflow_pages", s->overflow_pages);
		json_u64("bytes_per_object", per_object);
		json_u64("depth", s->depth);
		json_u64("readers", s->readers);
		json_u64("max_readers", s->max_readers);
		json_obj_end();
		json_end();
		return;
	}
	printf("objects:          %" PRIu64 "\n", s->objects);
	printf("index entries:    origin %" PRIu64 ", upper %" PRIu64 "\n", s->origin_entries,
	       s->upper_entries);
	printf("pending copy-ups: %" PRIu64 "\n", s->pending);
	printf("page size:        %u\n", (unsigned)s->page_size);
	printf("map size:         %" PRIu64 " bytes (grows by itself)\n", s->map_size);
	printf("used:             %" PRIu64 " bytes\n", s->used_bytes);
	printf("pages:            %" PRIu64 " (branch %" PRIu64 ", leaf %" PRIu64 ", overflow %" PRIu64
	       ")\n",
	       pages, s->branch_pages, s->leaf_pages, s->overflow_pages);
	printf("bytes per object: %" PRIu64 "\n", per_object);
	printf("B-tree depth:     %u\n", (unsigned)s->depth);
	printf("readers:          %u of %u slots in use\n", (unsigned)s->readers,
	       (unsigned)s->max_readers);
}

/* info and stats: open the map read-only, gather, print one report. */
static int report_cmd(int argc, char **argv, const char *name, int stats)
{
	const struct ctl_command *cmd = ctl_command_find(name);
	struct ctl_common c;
	fhmap_map_stats s;
	fhmap_info info;
	fhmap *map;
	int i;

	i = ctl_parse(argc, argv, cmd, NULL, NULL, NULL, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 1)
		return ctl_usage_error(cmd, "%s needs DB", name);
	map = open_report(argv[i], &info, &s);
	if (!map)
		return CTL_EXIT_ERROR;
	if (stats)
		stats_print(&s, c.json);
	else
		info_print(argv[i], map, &info, &s, c.json);
	fhmap_close(map);
	return CTL_EXIT_OK;
}

int ctl_cmd_info(int argc, char **argv)
{
	return report_cmd(argc, argv, "info", 0);
}

int ctl_cmd_stats(int argc, char **argv)
{
	return report_cmd(argc, argv, "stats", 1);
}
