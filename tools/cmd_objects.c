/* fhmapctl: commands about objects and handles: ls, show, encode, decode. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fhmapctl.h"

/* Writes one object record as JSON (the "object" shape of fhmapctl.1). */
static void object_json(const char *key, fhmap *map, const fhmap_object *o)
{
	char path[CTL_PATH_MAX];
	int pr = ctl_object_path(path, sizeof(path), map, o->ino);

	json_obj_begin(key);
	json_u64("ino", o->ino);
	json_u64("gen", o->gen);
	json_str("type", ctl_type_name(o->type));
	json_str("state", ctl_state_name(o->state));
	json_realfh("origin", o->has_origin ? &o->origin : NULL);
	json_realfh("upper", o->has_upper ? &o->upper : NULL);
	json_u64("parent", o->parent);
	json_str("name", o->name);
	json_str("path", pr == 0 ? path : NULL);
	json_str("path_error", pr == 0 ? NULL : fhmap_strerror(pr));
	json_obj_end();
}

/* Rebuilt path, or the name hint in brackets when the path cannot be built. */
static void path_or_hint(char *out, size_t size, fhmap *map, const fhmap_object *o)
{
	if (ctl_object_path(out, size, map, o->ino) != 0)
		snprintf(out, size, "[parent %" PRIu64 ", name \"%s\"]", o->parent, o->name);
}

static void object_row(fhmap *map, const fhmap_object *o)
{
	char path[CTL_PATH_MAX], origin[16] = "-", upper[16] = "-";

	path_or_hint(path, sizeof(path), map, o);
	if (o->has_origin)
		snprintf(origin, sizeof(origin), "L%u", (unsigned)o->origin.layer);
	if (o->has_upper)
		snprintf(upper, sizeof(upper), "L%u", (unsigned)o->upper.layer);
	printf("%-8" PRIu64 " %-10u %-8s %-8s %-6s %-6s %s\n", o->ino, (unsigned)o->gen,
	       ctl_type_name(o->type), ctl_state_name(o->state), origin, upper, path);
}

struct ls_args {
	uint64_t limit; /* 0: no limit */
	uint64_t start;
};

static int ls_opt(void *ctx, int opt, const char *arg)
{
	struct ls_args *a = ctx;
	uint64_t *dst = opt == 'n' ? &a->limit : &a->start;

	if (ctl_parse_u64(dst, arg) != 0) {
		ctl_err("--%s needs a number, not '%s'", opt == 'n' ? "limit" : "start", arg);
		return -1;
	}
	return 0;
}

static int ls_walk(fhmap *map, const struct ls_args *a, int json)
{
	fhmap_iter *it;
	fhmap_object o;
	uint64_t n = 0;
	int r = fhmap_iter_new(&it, map, a->start);

	if (r != 0) {
		ctl_report("cannot walk the objects", r);
		return CTL_EXIT_ERROR;
	}
	if (json) {
		json_obj_begin(NULL);
		json_arr_begin("objects");
	} else {
		printf("%-8s %-10s %-8s %-8s %-6s %-6s %s\n", "INO", "GEN", "TYPE", "STATE", "ORIGIN",
		       "UPPER", "PATH");
	}
	while ((a->limit == 0 || n < a->limit) && (r = fhmap_iter_next(&o, it)) == 0) {
		n++;
		if (json)
			object_json(NULL, map, &o);
		else
			object_row(map, &o);
	}
	if (r == 0) /* stopped by --limit: is there more? */
		r = fhmap_iter_next(&o, it);
	fhmap_iter_free(it);
	if (json) {
		json_arr_end();
		json_bool("truncated", r == 0);
		json_obj_end();
		json_end();
	}
	if (r != 0 && r != -ENOENT) {
		ctl_report("walk stopped", r);
		return CTL_EXIT_ERROR;
	}
	return CTL_EXIT_OK;
}

int ctl_cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'n' },
		{ "start", required_argument, NULL, 's' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find("ls");
	struct ls_args a = { 0, 0 };
	struct ctl_common c;
	fhmap *map;
	int i, rc;

	i = ctl_parse(argc, argv, cmd, opts, ls_opt, &a, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 1)
		return ctl_usage_error(cmd, "ls needs DB");
	map = ctl_map_open(argv[i], FHMAP_OPEN_RDONLY);
	if (!map)
		return CTL_EXIT_ERROR;
	rc = ls_walk(map, &a, c.json);
	fhmap_close(map);
	return rc;
}

/* The pending copy-up intent of @p ino, if any. */
static int find_intent(fhmap_copyup_intent *out, fhmap *map, uint64_t ino)
{
	fhmap_copyup_intent *in;
	size_t n;
	int found = 0;

	if (ctl_intents_load(&in, &n, map) != 0)
		return 0;
	for (size_t k = 0; k < n && !found; k++)
		if (in[k].ino == ino) {
			*out = in[k];
			found = 1;
		}
	free(in);
	return found;
}

static void show_human(fhmap *map, const fhmap_object *o)
{
	char path[CTL_PATH_MAX], fh[2 * FHMAP_REALFH_MAX + 32];
	unsigned char h[FHMAP_FH_MAX];
	char hex[2 * FHMAP_FH_MAX + 1];
	fhmap_copyup_intent in;
	size_t len = sizeof(h);
	int pr = ctl_object_path(path, sizeof(path), map, o->ino);

	printf("object:     %" PRIu64 "\ngeneration: %u\ntype:       %s\nstate:      %s\n", o->ino,
	       (unsigned)o->gen, ctl_type_name(o->type), ctl_state_name(o->state));
	ctl_realfh_str(fh, sizeof(fh), &o->origin);
	printf("origin:     %s\n", o->has_origin ? fh : "-");
	ctl_realfh_str(fh, sizeof(fh), &o->upper);
	printf("upper:      %s\n", o->has_upper ? fh : "-");
	printf("name hint:  parent %" PRIu64 ", name \"%s\"\n", o->parent, o->name);
	if (o->state == FHMAP_STATE_UNLINKED)
		printf("path:       - (unlinked: handles decode as forgotten)\n");
	else
		printf("path:       %s\n", pr == 0 ? path : fhmap_strerror(pr));
	if (fhmap_encode(h, &len, map, o->ino, 0, 0) == 0) {
		ctl_hex(hex, h, len);
		printf("handle:     %s\n", hex);
	}
	if (find_intent(&in, map, o->ino))
		printf("copy-up:    pending to layer %u, pid %u (%s)\n", (unsigned)in.upper_layer,
		       (unsigned)in.pid, ctl_pid_alive(in.pid) ? "running" : "gone");
}

int ctl_cmd_show(int argc, char **argv)
{
	const struct ctl_command *cmd = ctl_command_find("show");
	struct ctl_common c;
	fhmap_object o;
	uint64_t ino;
	fhmap *map;
	int i, r;

	i = ctl_parse(argc, argv, cmd, NULL, NULL, NULL, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 2)
		return ctl_usage_error(cmd, "show needs DB and OBJECT");
	map = ctl_map_open(argv[i], FHMAP_OPEN_RDONLY);
	if (!map)
		return CTL_EXIT_ERROR;
	r = ctl_resolve_object(&ino, map, argv[i + 1]);
	if (r == 0) {
		r = fhmap_get(&o, map, ino);
		if (r == -ENOENT)
			ctl_err("object %" PRIu64 " is not in the map", ino);
		else if (r != 0)
			ctl_report("cannot read the object", r);
	}
	if (r == 0 && c.json) {
		object_json(NULL, map, &o);
		json_end();
	} else if (r == 0) {
		show_human(map, &o);
	}
	fhmap_close(map);
	return r == 0 ? CTL_EXIT_OK : r == -ENOENT ? CTL_EXIT_PROBLEM : CTL_EXIT_ERROR;
}

struct encode_args {
	const char *path;
	uint64_t parent;
	unsigned int flags;
};

static int encode_opt(void *ctx, int opt, const char *arg)
{
	struct encode_args *a = ctx;

	switch (opt) {
	case 'p':
		a->path = arg;
		return 0;
	case 'c':
		a->flags |= FHMAP_FH_CONNECTABLE;
		return 0;
	case 'u':
		a->flags |= FHMAP_FH_UNSIGNED;
		return 0;
	default:
		if (ctl_parse_u64(&a->parent, arg) == 0)
			return 0;
		ctl_err("--parent needs an object number, not '%s'", arg);
		return -1;
	}
}

static int encode_print(fhmap *map, uint64_t ino, const struct encode_args *a, int json)
{
	unsigned char h[FHMAP_FH_MAX];
	char hex[2 * FHMAP_FH_MAX + 1], what[64];
	size_t len = sizeof(h);
	int r = fhmap_encode(h, &len, map, ino, a->parent, a->flags);

	if (r == -ENOENT || r == -ESTALE) {
		ctl_err("object %" PRIu64 " %s", ino,
		        r == -ENOENT ? "(or the parent given) is not in the map; see 'fhmapctl ls'"
		                     : "(or the parent given) was unlinked: it has no valid handle");
		return CTL_EXIT_PROBLEM;
	}
	if (r == -EINVAL && ino == FHMAP_ROOT_INO && (a->flags & FHMAP_FH_CONNECTABLE)) {
		ctl_err("the root has no parent: encode it without --connectable");
		return CTL_EXIT_ERROR;
	}
	if (r != 0) {
		snprintf(what, sizeof(what), "cannot encode object %" PRIu64, ino);
		ctl_report(what, r);
		return CTL_EXIT_ERROR;
	}
	ctl_hex(hex, h, len);
	if (json) {
		json_obj_begin(NULL);
		json_u64("ino", ino);
		json_str("handle", hex);
		json_u64("size", len);
		json_obj_end();
		json_end();
	} else {
		printf("%s\n", hex);
	}
	return CTL_EXIT_OK;
}

int ctl_cmd_encode(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "path", required_argument, NULL, 'p' },
		{ "connectable", no_argument, NULL, 'c' },
		{ "parent", required_argument, NULL, 'P' },
		{ "unsigned", no_argument, NULL, 'u' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find("encode");
	struct encode_args a = { NULL, 0, 0 };
	struct ctl_common c;
	const char *spec;
	uint64_t ino;
	fhmap *map;
	int i, rc;

	i = ctl_parse(argc, argv, cmd, opts, encode_opt, &a, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != (a.path ? 1 : 2))
		return ctl_usage_error(cmd, "encode needs DB and either OBJECT or --path PATH");
	if (a.parent && !(a.flags & FHMAP_FH_CONNECTABLE))
		return ctl_usage_error(cmd, "--parent only makes sense with --connectable");
	spec = a.path ? a.path : argv[i + 1];
	map = ctl_map_open(argv[i], FHMAP_OPEN_RDONLY);
	if (!map)
		return CTL_EXIT_ERROR;
	rc = ctl_resolve_object(&ino, map, spec);
	if (rc == 0)
		rc = encode_print(map, ino, &a, c.json);
	else
		rc = rc == -ENOENT ? CTL_EXIT_PROBLEM : CTL_EXIT_ERROR;
	fhmap_close(map);
	return rc;
}

/* Where a decoded object lives now: its layer root joined with its path. */
static void decoded_where(char *out, size_t size, fhmap *map, const fhmap_decoded *d,
                          const char *path)
{
	fhmap_layer l;

	if (fhmap_layer_get(&l, map, d->real.layer) != 0) {
		snprintf(out, size, "layer %u (unknown)", (unsigned)d->real.layer);
		return;
	}
	snprintf(out, size, "%s%s", l.root, strcmp(path, "/") ? path : "");
}

static void decode_print(fhmap *map, const fhmap_decoded *d, int json)
{
	char path[CTL_PATH_MAX], opath[CTL_PATH_MAX], where[2 * CTL_PATH_MAX], fh[2 * FHMAP_REALFH_MAX + 32];
	int pr = ctl_object_path(path, sizeof(path), map, d->ino);
	/* On its origin the object is where it was bound on the lower layer. */
	int wr = d->state == FHMAP_STATE_UPPER ? pr : fhmap_origin_path(opath, sizeof(opath), map, d->ino);

	decoded_where(where, sizeof(where), map, d, wr == 0 ? (d->state == FHMAP_STATE_UPPER ? path : opath) : "");
	ctl_realfh_str(fh, sizeof(fh), &d->real);
	if (json) {
		json_obj_begin(NULL);
		json_str("status", fhmap_fh_status_str(d->status));
		json_bool("accepted", 1);
		json_u64("ino", d->ino);
		json_u64("gen", d->gen);
		json_str("type", ctl_type_name(d->type));
		json_str("state", ctl_state_name(d->state));
		json_bool("connectable", d->connectable);
		if (d->connectable) {
			json_u64("parent", d->parent);
			json_u64("parent_gen", d->parent_gen);
		}
		json_str("path", pr == 0 ? path : NULL);
		json_str("lives_at", wr == 0 ? where : NULL);
		json_realfh("real", &d->real);
		json_obj_end();
		json_end();
		return;
	}
	printf("status:      %s\nobject:      %" PRIu64 "\ngeneration:  %u\ntype:        %s\n"
	       "state:       %s\n",
	       fhmap_fh_status_str(d->status), d->ino, (unsigned)d->gen, ctl_type_name(d->type),
	       ctl_state_name(d->state));
	if (d->connectable)
		printf("parent:      %" PRIu64 " (generation %u)\n", d->parent, (unsigned)d->parent_gen);
	printf("path:        %s\n", pr == 0 ? path : fhmap_strerror(pr));
	printf("lives at:    %s\nreal handle: %s\n", wr == 0 ? where : "?", fh);
}

static void decode_reject(const fhmap_decoded *d, int err, int json)
{
	if (json) {
		json_obj_begin(NULL);
		json_str("status", fhmap_fh_status_str(d->status));
		json_bool("accepted", 0);
		json_str("error", fhmap_strerror(err));
		json_obj_end();
		json_end();
		return;
	}
	printf("status:      %s\nrejected:    %s\n", fhmap_fh_status_str(d->status),
	       fhmap_strerror(err));
}

static int decode_opt(void *ctx, int opt, const char *arg)
{
	unsigned int *flags = ctx;

	(void)arg;
	*flags |= opt == 'a' ? FHMAP_FH_ALLOW_UNSIGNED : FHMAP_FH_PARENT;
	return 0;
}

int ctl_cmd_decode(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "allow-unsigned", no_argument, NULL, 'a' },
		{ "parent", no_argument, NULL, 'P' },
		{ 0, 0, 0, 0 },
	};
	const struct ctl_command *cmd = ctl_command_find("decode");
	unsigned char h[FHMAP_FH_MAX * 4];
	unsigned int flags = 0;
	struct ctl_common c;
	fhmap_decoded d;
	fhmap *map;
	int i, n, r;

	i = ctl_parse(argc, argv, cmd, opts, decode_opt, &flags, &c);
	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 2)
		return ctl_usage_error(cmd, "decode needs DB and HEX");
	n = ctl_unhex(h, sizeof(h), argv[i + 1]);
	if (n < 0)
		return ctl_usage_error(cmd, "'%s' is not a handle: give an even number of hex digits "
		                            "(at most %zu bytes)",
		                       argv[i + 1], sizeof(h));
	map = ctl_map_open(argv[i], FHMAP_OPEN_RDONLY);
	if (!map)
		return CTL_EXIT_ERROR;
	memset(&d, 0, sizeof(d));
	r = fhmap_decode(&d, map, h, (size_t)n, flags);
	if (r == 0)
		decode_print(map, &d, c.json);
	else if (r == -EIO || r == -EUCLEAN)
		ctl_report("cannot decode", r);
	else
		decode_reject(&d, r, c.json);
	fhmap_close(map);
	return r == 0 ? CTL_EXIT_OK : r == -EIO || r == -EUCLEAN ? CTL_EXIT_ERROR : CTL_EXIT_PROBLEM;
}
