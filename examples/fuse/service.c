/*
 * fhmap-unionfs as a system service: sd_notify readiness and syslog logging
 * when detached (see service.h).
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_log.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <fhmap/fhmap.h>

#define UFS_IDENT "fhmap-unionfs"

static int to_syslog;
static int detach_fd = -1; /* the child's end of the pipe its parent waits on */

/* One syslog record per line written to stderr, without our own prefix
 * (syslog adds the identifier). */
static ssize_t syslog_write(void *cookie, const char *buf, size_t n)
{
	const char *p = buf, *end = buf + n;
	const size_t plen = strlen(UFS_IDENT ": ");

	(void)cookie;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);

		if (len >= plen && !strncmp(p, UFS_IDENT ": ", plen)) {
			p += plen;
			len -= plen;
		}
		if (len)
			syslog(LOG_ERR, "%.*s", (int)len, p);
		p += len + (nl != NULL);
	}
	return (ssize_t)n;
}

/* libfuse's levels are syslog's. */
static void fuse_log_syslog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsyslog((int)level, fmt, ap);
}

int ufs_service_log_to_syslog(void)
{
	FILE *f;

	openlog(UFS_IDENT, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	f = fopencookie(NULL, "w", (cookie_io_functions_t){ .write = syslog_write });
	if (!f) {
		int e = errno;

		syslog(LOG_ERR, "messages stay on stderr (/dev/null): %s", strerror(e));
		return -e;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	/* glibc's stderr is an ordinary variable, and libfuse prints to it
	 * too. The old stream stays open: fd 2 must remain /dev/null for
	 * anything that writes to it directly. */
	stderr = f;
	fuse_set_log_func(fuse_log_syslog);
	to_syslog = 1;
	return 0;
}

int ufs_service_detach(void)
{
	int p[2], status;
	char done;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (pid == 0) {
		close(p[0]);
		detach_fd = p[1];
		return 0;
	}
	close(p[1]);
	if (read(p[0], &done, 1) == 1)
		_exit(0);
	/* ended, or will, without mounting: its status is ours */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

void ufs_service_detached(void)
{
	int null = open("/dev/null", O_RDWR);
	const char done = 1;

	if (setsid() < 0 || chdir("/") < 0)
		fprintf(stderr, UFS_IDENT ": detaching: %s\n", strerror(errno));
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	ufs_service_log_to_syslog(); /* says itself when it fails */
	if (write(detach_fd, &done, 1) != 1)
		syslog(LOG_ERR, "cannot release the parent: %s", strerror(errno));
	close(detach_fd);
	detach_fd = -1;
}

/* The mount answers once a statfs and a stat of its root return: both
 * wait in the kernel until the daemon has answered INIT. */
static void *wait_ready(void *arg)
{
	char *mnt = arg; /* ours: the daemon may end before we do */
	struct statfs sfs;
	struct stat st;

	errno = 0;
	if (statfs(mnt, &sfs) < 0 || sfs.f_type != FUSE_SUPER_MAGIC || stat(mnt, &st) < 0) {
		fprintf(stderr, UFS_IDENT ": %s does not answer as a FUSE mount: %s\n", mnt,
		        errno ? strerror(errno) : "other filesystem");
	} else {
		sd_notifyf(0, "READY=1\nSTATUS=Serving %s\nMAINPID=%lu", mnt, (unsigned long)getpid());
		if (to_syslog)
			syslog(LOG_INFO, "serving %s (libfhmap %s)", mnt, fhmap_version());
	}
	free(mnt);
	return NULL;
}

int ufs_service_notify_ready(const char *mountpoint)
{
	char *mnt;
	pthread_t t;
	int r;

	if (!getenv("NOTIFY_SOCKET") && !to_syslog)
		return 0; /* nobody to tell */
	mnt = strdup(mountpoint);
	if (!mnt)
		return -ENOMEM;
	r = pthread_create(&t, NULL, wait_ready, mnt);
	if (r) {
		free(mnt);
		return -r;
	}
	return -pthread_detach(t);
}

void ufs_service_notify_stopping(const char *mountpoint)
{
	sd_notifyf(0, "STOPPING=1\nSTATUS=Unmounting %s", mountpoint);
	if (to_syslog)
		syslog(LOG_INFO, "unmounting %s", mountpoint);
}
