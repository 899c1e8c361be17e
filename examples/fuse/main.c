/*
 * fhmap-unionfs: options, layer registration, mount and shutdown.
 *
 *   fhmap-unionfs -o lowerdir=L1:L2,upperdir=U,db=PATH[,workdir=W] MOUNTPOINT [-f]
 *   mount -t fuse.fhmap-unionfs SOURCE MOUNTPOINT -o lowerdir=...   (SOURCE ignored)
 *
 * Exit status: 0 after a clean unmount (also on SIGTERM/SIGINT/SIGHUP),
 * 1 when the layers, db or mount fail, 2 for bad usage.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include "unionfs.h"
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ufs ufs = { .upper = { .fd = -1 }, .work_fd = -1, .index_fd = -1 };

struct ufs_options {
	char *lowerdir;
	char *upperdir;
	char *db;
	char *workdir;
	char *args[2]; /* [SOURCE] MOUNTPOINT */
	int nargs;
};

static const struct fuse_opt ufs_opt_spec[] = {
	{ "lowerdir=%s", offsetof(struct ufs_options, lowerdir), 0 },
	{ "upperdir=%s", offsetof(struct ufs_options, upperdir), 0 },
	{ "db=%s", offsetof(struct ufs_options, db), 0 },
	{ "workdir=%s", offsetof(struct ufs_options, workdir), 0 },
	FUSE_OPT_END
};

/* mount(8) and /etc/fstab run "fhmap-unionfs SOURCE MOUNTPOINT -o OPTS"
 * (through mount.fuse3): the non-option arguments are kept aside, the last
 * one is the mount point and a source before it is ignored. */
static int ufs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct ufs_options *o = data;

	(void)outargs;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (o->nargs == 2) {
		fprintf(stderr, "fhmap-unionfs: unexpected argument '%s' (expected [SOURCE] MOUNTPOINT)\n",
		        arg);
		return -1;
	}
	o->args[o->nargs] = strdup(arg);
	return o->args[o->nargs++] ? 0 : -1;
}

static void usage(const char *prog)
{
	printf("usage: %s [SOURCE] MOUNTPOINT -o lowerdir=L1[:L2...],upperdir=U,db=PATH[,workdir=W] "
	       "[options]\n\n"
	       "A union filesystem whose NFS file handles survive copy-up, rename,\n"
	       "hardlinks and restarts (libfhmap %s).\n\n"
	       "    -o lowerdir=L1:L2   read-only layers, topmost first\n"
	       "    -o upperdir=U       writable layer\n"
	       "    -o db=PATH          handle map (created on first mount)\n"
	       "    -o workdir=W        work directory on U's filesystem\n"
	       "                        (default: U/" UFS_WORK_NAME ", hidden)\n\n",
	       prog, fhmap_version());
}

static void log_cb(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= FHMAP_LOG_WARN)
		fprintf(stderr, "fhmap-unionfs: libfhmap: %s\n", msg);
}

/* Canonical path and fd of an existing directory. */
static int open_layer(struct ufs_layer *l, const char *what, const char *path)
{
	struct stat st;

	l->root = realpath(path, NULL);
	if (!l->root || stat(l->root, &st) < 0) {
		fprintf(stderr, "fhmap-unionfs: %s '%s': %s\n", what, path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "fhmap-unionfs: %s '%s': not a directory\n", what, path);
		return -1;
	}
	l->fd = open(l->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->fd < 0) {
		fprintf(stderr, "fhmap-unionfs: %s '%s': %s\n", what, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Is a the same directory as b or below it (canonical paths)? */
static int path_within(const char *a, const char *b)
{
	size_t n = strlen(b);

	return !strncmp(a, b, n) && (a[n] == '/' || !a[n] || (n == 1 && b[0] == '/'));
}

/* Overlapping layers would let the union see (and copy up into) itself. */
static int check_overlap(void)
{
	for (size_t i = 0; i < ufs.nlowers; i++) {
		const char *l = ufs.lowers[i].root, *u = ufs.upper.root;

		if (path_within(l, u) || path_within(u, l)) {
			fprintf(stderr, "fhmap-unionfs: upperdir '%s' and lowerdir '%s' overlap\n", u, l);
			return -1;
		}
	}
	return 0;
}

static int open_layers(const struct ufs_options *o)
{
	char *list = strdup(o->lowerdir), *save = NULL;
	size_t n = 1;

	if (!list)
		return -1;
	for (const char *p = list; *p; p++)
		n += *p == ':';
	ufs.lowers = calloc(n, sizeof(*ufs.lowers));
	if (!ufs.lowers) {
		free(list);
		return -1;
	}
	for (char *tok = strtok_r(list, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		ufs.lowers[ufs.nlowers].fd = -1;
		if (open_layer(&ufs.lowers[ufs.nlowers++], "lowerdir", tok) < 0) {
			free(list);
			return -1;
		}
	}
	free(list);
	if (!ufs.nlowers) {
		fprintf(stderr, "fhmap-unionfs: lowerdir: no layer given\n");
		return -1;
	}
	if (open_layer(&ufs.upper, "upperdir", o->upperdir) < 0)
		return -1;
	return check_overlap();
}

static void print_layers(const fhmap_layer *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  layer %u: %s %s\n", l[i].id, l[i].role == FHMAP_LAYER_UPPER ? "upper" : "lower",
		        l[i].root);
}

/* Registers the layers in a new map, or checks them against an old one. */
static int check_layers(const char *db)
{
	fhmap_layer *have;
	size_t n = 0, want = ufs.nlowers + 1;
	int r = fhmap_layer_list(NULL, 0, &n, ufs.map);

	if (r < 0)
		goto fail;
	if (n == 0) {
		for (size_t i = 0; r == 0 && i < ufs.nlowers; i++)
			r = fhmap_layer_add(&ufs.lowers[i].id, ufs.map, FHMAP_LAYER_LOWER, ufs.lowers[i].root);
		if (r == 0)
			r = fhmap_layer_add(&ufs.upper.id, ufs.map, FHMAP_LAYER_UPPER, ufs.upper.root);
		if (r < 0)
			goto fail;
		return 0;
	}
	have = calloc(n, sizeof(*have));
	if (!have)
		return -1;
	r = fhmap_layer_list(have, n, &n, ufs.map);
	int ok = r == 0 && n == want;
	for (size_t i = 0; ok && i < n; i++) {
		const struct ufs_layer *l = i < ufs.nlowers ? &ufs.lowers[i] : &ufs.upper;
		fhmap_layer_role role = i < ufs.nlowers ? FHMAP_LAYER_LOWER : FHMAP_LAYER_UPPER;

		ok = have[i].role == role && !strcmp(have[i].root, l->root);
		if (ok)
			((struct ufs_layer *)l)->id = have[i].id;
	}
	if (!ok && r == 0) {
		fprintf(stderr, "fhmap-unionfs: db '%s' belongs to other layers:\n", db);
		print_layers(have, n);
		fprintf(stderr, "but the options give:\n");
		for (size_t i = 0; i < ufs.nlowers; i++)
			fprintf(stderr, "  lower %s\n", ufs.lowers[i].root);
		fprintf(stderr, "  upper %s\n(use fhmapctl to rebase moved layers)\n", ufs.upper.root);
	}
	free(have);
	if (r < 0)
		goto fail;
	return ok ? 0 : -1;
fail:
	fprintf(stderr, "fhmap-unionfs: db '%s': layers: %s\n", db, fhmap_strerror(r));
	return -1;
}

/* Binds the union root to the topmost lower root and records the upper
 * root as its copy-up; on later mounts checks both are the same
 * directories (a replaced layer would silently break every handle). */
static int check_root(void)
{
	fhmap_realfh lower, upper;
	fhmap_object obj;
	uint64_t ino;
	int r = fhmap_realfh_at(&lower, ufs.lowers[0].id, ufs.lowers[0].fd, "");

	if (r == 0)
		r = fhmap_realfh_at(&upper, ufs.upper.id, ufs.upper.fd, "");
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: layers must support file handles: %s\n", fhmap_strerror(r));
		return -1;
	}
	int fd;
	r = fhmap_open_real(&fd, ufs.map, &lower, O_PATH);
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: cannot open by handle on '%s': %s\n", ufs.lowers[0].root,
		        fhmap_strerror(r));
		return -1;
	}
	close(fd);
	r = fhmap_bind(&ino, ufs.map, &lower, 0, "", S_IFDIR);
	if (r == -EEXIST || (r == 0 && ino != FHMAP_ROOT_INO)) {
		fprintf(stderr, "fhmap-unionfs: lowerdir '%s' is not the directory this db was made for\n",
		        ufs.lowers[0].root);
		return -1;
	}
	if (r == 0)
		r = fhmap_get(&obj, ufs.map, FHMAP_ROOT_INO);
	if (r == 0 && obj.state == FHMAP_STATE_UPPER) {
		if (obj.upper.len != upper.len || obj.upper.type != upper.type ||
		    memcmp(obj.upper.data, upper.data, upper.len)) {
			fprintf(stderr, "fhmap-unionfs: upperdir '%s' is not the directory this db was made for\n",
			        ufs.upper.root);
			return -1;
		}
		return 0;
	}
	if (r == 0)
		r = fhmap_copyup_begin(ufs.map, FHMAP_ROOT_INO, ufs.upper.id);
	if (r == 0)
		r = fhmap_copyup_commit(ufs.map, FHMAP_ROOT_INO, &upper);
	if (r < 0)
		fprintf(stderr, "fhmap-unionfs: cannot record the union root: %s\n", fhmap_strerror(r));
	return r < 0 ? -1 : 0;
}

static int open_work(const struct ufs_options *o)
{
	struct stat ust, wst;

	if (o->workdir) {
		char *w = realpath(o->workdir, NULL);
		int inside = w && path_within(w, ufs.upper.root);

		free(w);
		if (inside) {
			/* it would show up in the union, and could be renamed away */
			fprintf(stderr, "fhmap-unionfs: workdir '%s' must not be inside upperdir\n", o->workdir);
			return -1;
		}
		ufs.work_fd = open(o->workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		if (mkdirat(ufs.upper.fd, UFS_WORK_NAME, 0700) < 0 && errno != EEXIST)
			goto fail;
		ufs.work_fd = openat(ufs.upper.fd, UFS_WORK_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		ufs.hide_work = 1;
	}
	if (ufs.work_fd < 0 || fstat(ufs.work_fd, &wst) < 0 || fstat(ufs.upper.fd, &ust) < 0)
		goto fail;
	if (wst.st_dev != ust.st_dev) {
		fprintf(stderr, "fhmap-unionfs: workdir must be on the upper layer's filesystem\n");
		return -1;
	}
	if (mkdirat(ufs.work_fd, UFS_INDEX_NAME, 0700) < 0 && errno != EEXIST)
		goto fail;
	ufs.index_fd = openat(ufs.work_fd, UFS_INDEX_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ufs.index_fd < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "fhmap-unionfs: workdir '%s': %s\n", o->workdir ? o->workdir : UFS_WORK_NAME,
	        strerror(errno));
	return -1;
}

static int open_map(const struct ufs_options *o)
{
	fhmap_open_options fo = FHMAP_OPEN_OPTIONS_INIT;
	int r;

	fo.flags = FHMAP_OPEN_CREATE;
	fo.log = log_cb;
	r = fhmap_open(&ufs.map, o->db, &fo);
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: db '%s': %s\n", o->db, fhmap_strerror(r));
		return -1;
	}
	if (check_layers(o->db) < 0 || open_work(o) < 0)
		return -1;
	r = ufs_recover_pending();
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: pending copy-ups: %s\n", fhmap_strerror(r));
		return -1;
	}
	if (check_root() < 0)
		return -1;
	ufs_work_clean();
	return 0;
}

static void close_all(void)
{
	if (ufs.map) {
		fhmap_sync(ufs.map);
		fhmap_close(ufs.map);
	}
	for (size_t i = 0; i < ufs.nlowers; i++) {
		if (ufs.lowers[i].fd >= 0)
			close(ufs.lowers[i].fd);
		free(ufs.lowers[i].root);
	}
	free(ufs.lowers);
	if (ufs.upper.fd >= 0)
		close(ufs.upper.fd);
	free(ufs.upper.root);
	if (ufs.work_fd >= 0)
		close(ufs.work_fd);
	if (ufs.index_fd >= 0)
		close(ufs.index_fd);
	ufs_open_free_all();
	ufs_nodes_free();
}

static int serve(struct fuse_args *args, const struct fuse_cmdline_opts *cmd)
{
	struct fuse_session *se;
	int r = 1;

	if (fuse_opt_add_arg(args, "-ofsname=fhmap-unionfs,subtype=fhmap-unionfs,default_permissions"))
		return 1;
	se = fuse_session_new(args, &ufs_ops, sizeof(ufs_ops), NULL);
	if (!se)
		return 1;
	if (fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, cmd->mountpoint) == 0) {
			fuse_daemonize(cmd->foreground);
			/* service.c: syslog once stderr is /dev/null, readiness */
			if (!cmd->foreground)
				ufs_service_log_to_syslog(); /* says itself when it fails */
			int nr = ufs_service_notify_ready(cmd->mountpoint);
			if (nr < 0)
				fprintf(stderr, "fhmap-unionfs: cannot notify readiness: %s\n",
				        strerror(-nr));
			/* one thread: copy-ups and namespace changes never race */
			int ret = fuse_session_loop(se);
			ufs_service_notify_stopping(cmd->mountpoint);
			r = ret < 0 ? 1 : 0;
			if (ret < 0)
				fprintf(stderr, "fhmap-unionfs: %s\n", strerror(-ret));
			fuse_session_unmount(se);
		}
		fuse_remove_signal_handlers(se);
	}
	fuse_session_destroy(se);
	return r;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd;
	struct ufs_options o = { 0 };
	struct stat st;
	int r = 2;

	memset(&cmd, 0, sizeof(cmd));
	memset(&st, 0, sizeof(st));
	if (fuse_opt_parse(&args, &o, ufs_opt_spec, ufs_opt_proc) < 0 ||
	    (o.nargs && fuse_opt_add_arg(&args, o.args[o.nargs - 1]) < 0) ||
	    fuse_parse_cmdline(&args, &cmd) < 0)
		goto out;
	if (cmd.show_help) {
		usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		r = 0;
		goto out;
	}
	if (cmd.show_version) {
		printf("fhmap-unionfs with libfhmap %s, FUSE library %s\n", fhmap_version(), fuse_pkgversion());
		r = 0;
		goto out;
	}
	if (!cmd.mountpoint || !o.lowerdir || !o.upperdir || !o.db) {
		fprintf(stderr, "fhmap-unionfs: missing %s\n", !cmd.mountpoint ? "MOUNTPOINT" :
		        !o.lowerdir ? "-o lowerdir=" : !o.upperdir ? "-o upperdir=" : "-o db=");
		fprintf(stderr,
		        "usage: %s [SOURCE] MOUNTPOINT -o lowerdir=L1[:L2...],upperdir=U,db=PATH [-f]\n",
		        argv[0]);
		goto out;
	}
	r = 1;
	errno = 0;
	if (stat(cmd.mountpoint, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "fhmap-unionfs: mountpoint '%s': %s\n", cmd.mountpoint,
		        errno == 0 || S_ISREG(st.st_mode) ? "not a directory" : strerror(errno));
		goto out;
	}
	umask(0); /* modes come from the kernel already masked */
	if (open_layers(&o) == 0 && open_map(&o) == 0)
		r = serve(&args, &cmd);
	close_all();
out:
	free(cmd.mountpoint);
	free(o.lowerdir);
	free(o.upperdir);
	free(o.db);
	free(o.workdir);
	free(o.args[0]);
	free(o.args[1]);
	fuse_opt_free_args(&args);
	return r;
}
