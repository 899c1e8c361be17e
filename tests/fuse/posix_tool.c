/*
 * System calls the FUSE end-to-end tests need and no standard tool of
 * Debian 12 makes (coreutils 9.1 has no mv --exchange):
 *
 *   posix_tool rename2 OLD NEW FLAGS   renameat2 with FLAGS, a comma list of
 *                                      exchange, noreplace, whiteout
 *   posix_tool tmpfile DIR TEXT [LINK] O_TMPFILE in DIR, TEXT written to it,
 *                                      then linked at LINK (linkat through
 *                                      /proc/self/fd); prints its link count
 *                                      before and after
 *
 * Each prints "ok" or the errno name of the call that failed and exits 0,
 * so that the tests compare the output on a union and on overlayfs; usage
 * errors exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int report(const char *what, int r)
{
	if (r < 0)
		printf("%s %s\n", what, strerrorname_np(errno));
	else
		printf("%s ok\n", what);
	return r;
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

static void print_links(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0)
		printf("nlink %ld\n", (long)st.st_nlink);
	else
		report("fstat", -1);
}

static int cmd_tmpfile(int argc, char **argv)
{
	char proc[64];
	size_t len = strlen(argv[1]);
	int fd = open(argv[0], O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);

	if (report("open", fd) < 0)
		return 0;
	if (report("write", write(fd, argv[1], len) == (ssize_t)len ? 0 : -1) == 0)
		print_links(fd);
	if (argc > 2) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (report("linkat", linkat(AT_FDCWD, proc, AT_FDCWD, argv[2], AT_SYMLINK_FOLLOW)) == 0)
			print_links(fd);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "rename2"))
		return cmd_rename2(argv + 2);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "tmpfile"))
		return cmd_tmpfile(argc - 2, argv + 2);
	fprintf(stderr, "usage: posix_tool rename2 OLD NEW FLAGS | tmpfile DIR TEXT [LINK]\n");
	return 2;
}
