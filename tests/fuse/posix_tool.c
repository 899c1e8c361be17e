/*
 * System calls the FUSE end-to-end tests need and no standard tool of
 * Debian 12 makes (coreutils 9.1 has no mv --exchange):
 *
 *   posix_tool rename2 OLD NEW FLAGS   renameat2 with FLAGS, a comma list of
 *                                      exchange, noreplace, whiteout (or none)
 *
 * It prints "ok" or the errno name of the call and exits 0, so that the
 * tests compare the output on a union and on overlayfs; usage errors exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void report(const char *what, int r)
{
	if (r < 0)
		printf("%s %s\n", what, strerrorname_np(errno));
	else
		printf("%s ok\n", what);
}

static int cmd_rename2(char **argv)
{
	unsigned int flags = 0;
	char list[64], *save = NULL;

	snprintf(list, sizeof(list), "%s", argv[2]);
	for (char *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
		if (!strcmp(f, "exchange"))
			flags |= RENAME_EXCHANGE;
		else if (!strcmp(f, "noreplace"))
			flags |= RENAME_NOREPLACE;
		else if (!strcmp(f, "whiteout"))
			flags |= RENAME_WHITEOUT;
		else if (strcmp(f, "none")) {
			fprintf(stderr, "posix_tool: unknown rename flag %s\n", f);
			return 2;
		}
	}
	report("rename2", renameat2(AT_FDCWD, argv[0], AT_FDCWD, argv[1], flags));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "rename2"))
		return cmd_rename2(argv + 2);
	fprintf(stderr, "usage: posix_tool rename2 OLD NEW FLAGS\n");
	return 2;
}
