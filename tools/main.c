/* fhmapctl: command dispatch, option parsing and error reporting. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fhmapctl.h"

static const struct ctl_command commands[] = {
	{ "init", ctl_cmd_init, "DB --lower PATH [--lower PATH ...] [--upper PATH]",
	  "create a map and register its layers (lower layers topmost first)",
	  "  --lower PATH   a read-only layer; repeat, topmost first\n"
	  "  --upper PATH   the writable layer (at most one)\n" },
	{ "info", ctl_cmd_info, "DB",
	  "identity, format, layers, object counts by state, pending copy-ups, size on disk", NULL },
	{ "layers", ctl_cmd_layers, "DB", "layers with ids, roles, roots and whether each root is reachable",
	  NULL },
	{ "ls", ctl_cmd_ls, "DB [--limit N] [--start INO]",
	  "list objects: generation, type, state, origin, upper, name hint, rebuilt path",
	  "  --limit N      list at most N objects\n"
	  "  --start INO    start at object number INO\n" },
	{ "show", ctl_cmd_show, "DB OBJECT",
	  "everything about one object (OBJECT: a number, a path inside a layer, or a union path)", NULL },
	{ "encode", ctl_cmd_encode, "DB (OBJECT | --path PATH) [--connectable [--parent INO]] [--unsigned]",
	  "print the handle of an object as hex",
	  "  --path PATH    the object at PATH (inside a layer, or a union path)\n"
	  "  --connectable  include the parent (40-byte handle)\n"
	  "  --parent INO   parent to carry (default: the primary parent)\n"
	  "  --unsigned     leave out the MAC (8 bytes shorter)\n" },
	{ "decode", ctl_cmd_decode, "DB HEX [--allow-unsigned] [--parent]",
	  "resolve a handle: object, generation, where it lives now, or why it is rejected",
	  "  --allow-unsigned  accept handles without MAC\n"
	  "  --parent          resolve the parent of a connectable handle\n" },
	{ "check", ctl_cmd_check, "DB [--deep]",
	  "check indexes, name hints and copy-up intents (exit 0 clean, 1 problems, 2 could not run)",
	  "  --deep         also open every real handle on its layer and compare it with\n"
	  "                 the file at the object's name hint\n" },
	{ "repair", ctl_cmd_repair, "DB [--dry-run]",
	  "fix what check --deep reports and say what changed",
	  "  --dry-run      say what would change, change nothing\n" },
	{ "rebase", ctl_cmd_rebase, "DB LAYER NEWROOT [--dry-run] [--partial]",
	  "a layer was copied or moved: re-derive its real handles under NEWROOT",
	  "  LAYER          layer id or its registered root\n"
	  "  --dry-run      say what would change, change nothing\n"
	  "  --partial      apply even if some files are missing under NEWROOT\n"
	  "                 (their handles are left as they are)\n" },
	{ "gc", ctl_cmd_gc, "DB [--dry-run]",
	  "drop tombstones and crashed copy-up intents that left no upper file",
	  "  --dry-run      say what would be dropped, drop nothing\n" },
	{ "backup", ctl_cmd_backup, "DB DEST",
	  "write a consistent, compacted copy of the map (online) to the new directory DEST", NULL },
	{ "restore", ctl_cmd_restore, "BACKUP DB",
	  "make the map DB (a new directory) from a backup; handles keep working", NULL },
	{ "stats", ctl_cmd_stats, "DB", "LMDB page usage, bytes per object, depth, readers", NULL },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

void ctl_err(const char *fmt, ...)
{
	va_list ap;

	fputs("fhmapctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const struct ctl_command *ctl_command_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void ctl_help(const struct ctl_command *cmd)
{
	printf("usage: fhmapctl %s %s [--json]\n\n%s\n\n", cmd->name, cmd->synopsis, cmd->summary);
	printf("options:\n%s  --json         machine-readable output on stdout\n"
	       "  --help         this help\n\n"
	       "exit status: 0 ok, 1 problems found or not found, 2 usage or I/O error\n",
	       cmd->options ? cmd->options : "");
}

int ctl_usage_error(const struct ctl_command *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("fhmapctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: fhmapctl %s %s [--json]\n(see 'fhmapctl %s --help')\n", cmd->name,
	        cmd->synopsis, cmd->name);
	return CTL_EXIT_ERROR;
}

static size_t option_count(const struct option *o)
{
	size_t n = 0;

	while (o && o[n].name)
		n++;
	return n;
}

int ctl_parse(int argc, char **argv, const struct ctl_command *cmd, const struct option *extra,
              ctl_opt_fn handler, void *ctx, struct ctl_common *common)
{
	struct option opts[24];
	size_t n = option_count(extra);
	int c;

	if (n + 3 > sizeof(opts) / sizeof(opts[0]))
		return CTL_PARSE_BAD;
	if (n)
		memcpy(opts, extra, n * sizeof(*opts));
	opts[n++] = (struct option){ "json", no_argument, NULL, 0x100 };
	opts[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[n] = (struct option){ 0, 0, 0, 0 };
	common->json = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			ctl_help(cmd);
			return CTL_PARSE_HELP;
		}
		if (c == 0x100) {
			common->json = 1;
			continue;
		}
		if (c == '?') {
			ctl_usage_error(cmd, "bad option '%s' (unknown, or missing its value)",
			                argv[optind - 1]);
			return CTL_PARSE_BAD;
		}
		if (!handler || handler(ctx, c, optarg) != 0) {
			fprintf(stderr, "(see 'fhmapctl %s --help')\n", cmd->name);
			return CTL_PARSE_BAD;
		}
	}
	return optind;
}

int ctl_parse_exit(int r)
{
	return r == CTL_PARSE_HELP ? CTL_EXIT_OK : CTL_EXIT_ERROR;
}

int ctl_parse_u64(uint64_t *out, const char *s)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* Advice for the errors an operator can act on. */
static const char *advice(int err)
{
	switch (err) {
	case -ENOENT:
		return "check the path, or create a map with 'fhmapctl init'";
	case -EMEDIUMTYPE:
		return "give the map directory, the one holding data.mdb";
	case -EPROTONOSUPPORT:
		return "use the libfhmap release that wrote this map";
	case -EUCLEAN:
		return "the map is damaged: run 'fhmapctl check' and 'fhmapctl repair'";
	case -EACCES:
	case -EPERM:
		return "run as root (open_by_handle_at needs CAP_DAC_READ_SEARCH)";
	case -EUSERS:
		return "all LMDB reader slots are taken: stop idle readers or raise max_readers";
	case -EROFS:
		return "the map or its filesystem is read-only";
	case -ENOSPC:
		return "free disk space or raise the map size limit";
	case -EAGAIN:
		return "the map is busy growing; run the command again";
	default:
		return NULL;
	}
}

void ctl_report(const char *what, int err)
{
	const char *a = advice(err);

	if (a)
		ctl_err("%s: %s (%s)", what, fhmap_strerror(err), a);
	else
		ctl_err("%s: %s", what, fhmap_strerror(err));
}

static void log_to_stderr(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= FHMAP_LOG_ERROR)
		fprintf(stderr, "fhmapctl: libfhmap: %s\n", msg);
}

static void report_open_error(const char *path, int r)
{
	char what[CTL_PATH_MAX + 32];

	snprintf(what, sizeof(what), "cannot open map %s", path);
	if (r == -ENOENT)
		ctl_err("%s: no map there (create one with 'fhmapctl init %s --lower PATH --upper PATH')",
		        what, path);
	else
		ctl_report(what, r);
}

int ctl_map_try_open(fhmap **out, const char *path, unsigned int flags)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	int r;

	o.flags = flags & ~CTL_OPEN_LAZY;
	o.sync = flags & CTL_OPEN_LAZY ? FHMAP_SYNC_LAZY : FHMAP_SYNC_FULL;
	o.log = log_to_stderr;
	r = fhmap_open(out, path, &o);
	if (r != 0 && r != -EUCLEAN)
		report_open_error(path, r);
	return r;
}

fhmap *ctl_map_open(const char *path, unsigned int flags)
{
	fhmap *map = NULL;
	int r = ctl_map_try_open(&map, path, flags);

	if (r == -EUCLEAN)
		report_open_error(path, r);
	return map;
}

void ctl_warn_in_use(fhmap *map)
{
	fhmap_map_stats st;

	if (fhmap_stats(&st, map) == 0 && st.readers > 1)
		ctl_err("note: %u other reader slots of this map are in use (a running union, or "
		        "slots of crashed processes): changes are safe for LMDB, but the union may act "
		        "on the map meanwhile",
		        (unsigned)st.readers - 1);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: fhmapctl COMMAND [ARGS] [--json]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-7s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'fhmapctl COMMAND --help' describes a command; 'man fhmapctl' all of them.\n"
	           "exit status: 0 ok, 1 problems found or not found, 2 usage or I/O error\n");
}

int main(int argc, char **argv)
{
	const struct ctl_command *cmd;

	if (argc < 2) {
		usage(stderr);
		return CTL_EXIT_ERROR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CTL_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("fhmapctl (libfhmap %s)\n", fhmap_version());
		return CTL_EXIT_OK;
	}
	cmd = ctl_command_find(argv[1]);
	if (!cmd) {
		ctl_err("unknown command '%s'", argv[1]);
		usage(stderr);
		return CTL_EXIT_ERROR;
	}
	return cmd->run(argc - 1, argv + 1);
}
