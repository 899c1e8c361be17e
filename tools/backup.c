/* fhmapctl backup and restore: a consistent, compacted copy of a map made
 * online by fhmap_backup(). The copy is itself a map (same identity, secret
 * and objects), so restoring is copying it back the same way. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "fhmapctl.h"

/* Opens the new copy and checks it is the same map with the same objects. */
static int verify_copy(const char *dest, const fhmap_info *want, const fhmap_map_stats *want_st,
                       fhmap_map_stats *got_st)
{
	fhmap *copy = ctl_map_open(dest, FHMAP_OPEN_RDONLY);
	fhmap_info got;
	int r;

	if (!copy)
		return -EIO;
	r = fhmap_info_get(&got, copy);
	if (r == 0)
		r = fhmap_stats(got_st, copy);
	fhmap_close(copy);
	if (r != 0) {
		ctl_report(dest, r);
		return r;
	}
	if (memcmp(got.uuid, want->uuid, 16) != 0 || got.next_ino < want->next_ino ||
	    got_st->objects < want_st->objects) {
		ctl_err("%s does not match the map it was copied from", dest);
		return -EIO;
	}
	return 0;
}

static void copy_print(const char *verb, const char *src, const char *dest,
                       const fhmap_info *info, const fhmap_map_stats *st, int json)
{
	char uuid[37];

	ctl_uuid_str(uuid, info->uuid);
	if (json) {
		json_obj_begin(NULL);
		json_str("source", src);
		json_str("destination", dest);
		json_str("uuid", uuid);
		json_u64("objects", st->objects);
		json_u64("used_bytes", st->used_bytes);
		json_obj_end();
		json_end();
		return;
	}
	printf("%s %s to %s: map %s, %" PRIu64 " objects, %" PRIu64 " bytes in use\n", verb, src, dest,
	       uuid, st->objects, st->used_bytes);
}

/* Copies the map at @p src to the new directory @p dest and verifies it. */
static int copy_map(const char *name, const char *verb, const char *src, const char *dest,
                    int json)
{
	fhmap_map_stats st, copy_st;
	struct stat sb;
	fhmap_info info;
	fhmap *map;
	int r;

	if (lstat(dest, &sb) == 0) {
		ctl_err("%s already exists; give a new path (%s never overwrites)", dest, name);
		return CTL_EXIT_ERROR;
	}
	map = ctl_map_open(src, FHMAP_OPEN_RDONLY);
	if (!map)
		return CTL_EXIT_ERROR;
	r = fhmap_info_get(&info, map);
	if (r == 0)
		r = fhmap_stats(&st, map);
	if (r == 0)
		r = fhmap_backup(map, dest);
	fhmap_close(map);
	if (r != 0) {
		char what[CTL_PATH_MAX + 32];

		snprintf(what, sizeof(what), "cannot copy %s to %s", src, dest);
		ctl_report(what, r);
		return CTL_EXIT_ERROR;
	}
	if (verify_copy(dest, &info, &st, &copy_st) != 0)
		return CTL_EXIT_ERROR;
	copy_print(verb, src, dest, &info, &copy_st, json);
	return CTL_EXIT_OK;
}

int ctl_cmd_backup(int argc, char **argv)
{
	const struct ctl_command *cmd = ctl_command_find("backup");
	struct ctl_common c;
	int i = ctl_parse(argc, argv, cmd, NULL, NULL, NULL, &c);

	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 2)
		return ctl_usage_error(cmd, "backup needs DB and DEST");
	return copy_map("backup", "backed up", argv[i], argv[i + 1], c.json);
}

int ctl_cmd_restore(int argc, char **argv)
{
	const struct ctl_command *cmd = ctl_command_find("restore");
	struct ctl_common c;
	int i = ctl_parse(argc, argv, cmd, NULL, NULL, NULL, &c), rc;

	if (i < 0)
		return ctl_parse_exit(i);
	if (argc - i != 2)
		return ctl_usage_error(cmd, "restore needs BACKUP and DB");
	rc = copy_map("restore", "restored", argv[i], argv[i + 1], c.json);
	if (rc == CTL_EXIT_OK && !c.json)
		printf("layers may have changed since the backup: run 'fhmapctl check --deep %s'\n",
		       argv[i + 1]);
	return rc;
}
