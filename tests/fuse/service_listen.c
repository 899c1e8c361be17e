/*
 * service_listen SOCKET OUT [MOUNTPOINT]
 *
 * Stands in for systemd's notification socket or syslog's /dev/log: binds
 * a new AF_UNIX datagram socket at SOCKET and appends every message to OUT
 * as one line (newlines become spaces), until SIGTERM. With MOUNTPOINT, a
 * message carrying READY=1 is checked at once, before anything else is
 * read: the line after it says whether MOUNTPOINT was then a FUSE mount
 * whose root answered ("probe: fuse answers, N entries") or not
 * ("probe: FAIL ..."), which shows the readiness did not come early.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void probe(FILE *out, const char *mnt)
{
	struct statfs sfs;
	struct stat st;
	struct dirent *de;
	DIR *d;
	int n = 0;

	if (statfs(mnt, &sfs) < 0 || stat(mnt, &st) < 0) {
		fprintf(out, "probe: FAIL %s: %s\n", mnt, strerror(errno));
		return;
	}
	if (sfs.f_type != FUSE_SUPER_MAGIC) {
		fprintf(out, "probe: FAIL %s is not a FUSE mount (f_type 0x%lx)\n", mnt,
		        (unsigned long)sfs.f_type);
		return;
	}
	d = opendir(mnt);
	if (!d) {
		fprintf(out, "probe: FAIL opendir %s: %s\n", mnt, strerror(errno));
		return;
	}
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	fprintf(out, "probe: fuse answers, %d entries\n", n);
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sigaction act = { .sa_handler = on_term };
	char buf[4096];
	FILE *out;
	int fd;

	if (argc < 3 || argc > 4 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: service_listen SOCKET OUT [MOUNTPOINT]\n");
		return 2;
	}
	out = fopen(argv[2], "a");
	if (!out) {
		perror(argv[2]);
		return 1;
	}
	setvbuf(out, NULL, _IOLBF, 0);
	sigaction(SIGTERM, &act, NULL); /* no SA_RESTART: recv returns EINTR */
	strcpy(sa.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror(argv[1]);
		return 1;
	}
	while (!stop) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("recv");
			return 1;
		}
		buf[n] = 0;
		for (char *p = buf; *p; p++)
			if (*p == '\n')
				*p = ' ';
		fprintf(out, "%s\n", buf);
		if (argc == 4 && strstr(buf, "READY=1"))
			probe(out, argv[3]);
	}
	close(fd);
	unlink(argv[1]);
	return 0;
}
