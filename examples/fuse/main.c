/*
 * fhmap-unionfs: options, layer registration, mount and shutdown.
 *
 *   fhmap-unionfs -o lowerdir=L1:L2,upperdir=U,db=PATH[,workdir=W] MOUNTPOINT [-f]
 *   fhmap-unionfs -o lowerdir=L1:L2,db=PATH MOUNTPOINT    (read-only union)
 *   mount -t fuse.fhmap-unionfs SOURCE MOUNTPOINT -o lowerdir=...   (SOURCE ignored)
 *
 * Startup, in order: without -f, a fork (the parent waits for the child to
 * mount, and reports its failure: the map must not cross a fork); the layers, the map (in the mode -o sync chooses),
 * the layers checked against it, the work dir, interrupted copy-ups, the
 * union root, the work dir's temporaries, the recovery after a system
 * crash; then the session loop on -o threads threads. Without an upper
 * layer there is no work dir and nothing to recover: the union is mounted
 * read-only, and a later mount with an upper layer registers it in the map
 * and keeps every object.
 *
 * Exit status: 0 after a clean unmount (also on SIGTERM/SIGINT/SIGHUP),
 * 1 when the layers, db or mount fail, 2 for bad usage.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include "unionfs.h"
#include "ops.h"
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct ufs_options {
	char *lowerdir;
	char *upperdir;
	char *db;
	char *workdir;
	char *sync;
	unsigned int flush_interval;
	unsigned int threads;
	double entry_timeout;
	double attr_timeout;
	int writeback;
	int nosplice;
	char *args[2]; /* [SOURCE] MOUNTPOINT */
	int nargs;
};

#define UFS_OPT(t, f) { t, offsetof(struct ufs_options, f), 1 }

static const struct fuse_opt ufs_opt_spec[] = {
	{ "lowerdir=%s", offsetof(struct ufs_options, lowerdir), 0 },
	{ "upperdir=%s", offsetof(struct ufs_options, upperdir), 0 },
	{ "db=%s", offsetof(struct ufs_options, db), 0 },
	{ "workdir=%s", offsetof(struct ufs_options, workdir), 0 },
	{ "sync=%s", offsetof(struct ufs_options, sync), 0 },
	{ "flush_interval=%u", offsetof(struct ufs_options, flush_interval), 0 },
	{ "threads=%u", offsetof(struct ufs_options, threads), 0 },
	{ "entry_timeout=%lf", offsetof(struct ufs_options, entry_timeout), 0 },
	{ "attr_timeout=%lf", offsetof(struct ufs_options, attr_timeout), 0 },
	UFS_OPT("writeback", writeback),
	UFS_OPT("nosplice", nosplice),
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
	printf("usage: %s [SOURCE] MOUNTPOINT -o lowerdir=L1[:L2...][,upperdir=U],db=PATH[,workdir=W] "
	       "[options]\n\n"
	       "A union filesystem whose NFS file handles survive copy-up, rename,\n"
	       "hardlinks, restarts and crashes (libfhmap %s).\n\n"
	       "    -o lowerdir=L1:L2        read-only layers, topmost first\n"
	       "    -o upperdir=U            writable layer (none: a read-only union)\n"
	       "    -o db=PATH               handle map (created on first mount)\n"
	       "    -o workdir=W             work directory on U's filesystem\n"
	       "                             (default: U/" UFS_WORK_NAME ", hidden)\n"
	       "    -o sync=deferred|full|lazy\n"
	       "                             map durability (default deferred: the map\n"
	       "                             is committed in the background; full: also\n"
	       "                             before replying to updates the upper layer\n"
	       "                             cannot restore; lazy: libfhmap's lazy mode)\n"
	       "    -o flush_interval=MS     longest wait of a deferred update (1000)\n"
	       "    -o threads=N             threads serving requests (default: two a\n"
	       "                             core, at most 16; 1: one plain loop)\n"
	       "    -o entry_timeout=S       kernel cache of names (1.0 s)\n"
	       "    -o attr_timeout=S        kernel cache of attributes (1.0 s)\n"
	       "    -o writeback             kernel write-back cache\n"
	       "    -o nosplice              no splice on /dev/fuse\n\n",
	       prog, fhmap_version());
}

static void log_cb(void *ctx, fhmap_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= FHMAP_LOG_WARN)
		ufs_log("libfhmap: %s", msg);
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
static int check_overlap(struct ufs *u)
{
	for (size_t i = 0; i < u->nlowers; i++) {
		const char *l = u->lowers[i].root, *up = u->upper.root;

		if (path_within(l, up) || path_within(up, l)) {
			fprintf(stderr, "fhmap-unionfs: upperdir '%s' and lowerdir '%s' overlap\n", up, l);
			return -1;
		}
	}
	return 0;
}

static int open_layers(struct ufs *u, const struct ufs_options *o)
{
	char *list = strdup(o->lowerdir), *save = NULL;
	size_t n = 1;

	if (!list)
		return -1;
	for (const char *p = list; *p; p++)
		n += *p == ':';
	u->lowers = calloc(n, sizeof(*u->lowers));
	if (!u->lowers) {
		free(list);
		return -1;
	}
	for (char *tok = strtok_r(list, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		u->lowers[u->nlowers].fd = -1;
		if (open_layer(&u->lowers[u->nlowers++], "lowerdir", tok) < 0) {
			free(list);
			return -1;
		}
	}
	free(list);
	if (!u->nlowers) {
		fprintf(stderr, "fhmap-unionfs: lowerdir: no layer given\n");
		return -1;
	}
	if (!o->upperdir)
		return 0; /* a read-only union */
	if (open_layer(&u->upper, "upperdir", o->upperdir) < 0)
		return -1;
	return check_overlap(u);
}

static void print_layers(const fhmap_layer *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  layer %u: %s %s\n", l[i].id, l[i].role == FHMAP_LAYER_UPPER ? "upper" : "lower",
		        l[i].root);
}

/* Registers the layers in a new map, or checks them against an old one.
 * The map of a union of lower layers only gets the upper layer at the
 * first mount that gives one: its objects stay what they were. */
static int check_layers(struct ufs *u, const char *db)
{
	fhmap_layer *have;
	int has_upper = u->upper.root != NULL;
	size_t n = 0, want = u->nlowers + (size_t)has_upper;
	int r = fhmap_layer_list(NULL, 0, &n, u->map);

	if (r < 0)
		goto fail;
	if (n == 0) {
		for (size_t i = 0; r == 0 && i < u->nlowers; i++)
			r = fhmap_layer_add(&u->lowers[i].id, u->map, FHMAP_LAYER_LOWER, u->lowers[i].root);
		if (r == 0 && has_upper)
			r = fhmap_layer_add(&u->upper.id, u->map, FHMAP_LAYER_UPPER, u->upper.root);
		if (r < 0)
			goto fail;
		return 0;
	}
	have = calloc(n, sizeof(*have));
	if (!have)
		return -1;
	r = fhmap_layer_list(have, n, &n, u->map);
	int add_upper = has_upper && n == u->nlowers;
	int ok = r == 0 && (n == want || add_upper);
	for (size_t i = 0; ok && i < n; i++) {
		struct ufs_layer *l = i < u->nlowers ? &u->lowers[i] : &u->upper;
		fhmap_layer_role role = i < u->nlowers ? FHMAP_LAYER_LOWER : FHMAP_LAYER_UPPER;

		ok = have[i].role == role && !strcmp(have[i].root, l->root);
		if (ok)
			l->id = have[i].id;
	}
	if (!ok && r == 0) {
		fprintf(stderr, "fhmap-unionfs: db '%s' belongs to other layers:\n", db);
		print_layers(have, n);
		fprintf(stderr, "but the options give:\n");
		for (size_t i = 0; i < u->nlowers; i++)
			fprintf(stderr, "  lower %s\n", u->lowers[i].root);
		fprintf(stderr, "  upper %s\n(use fhmapctl to rebase moved layers)\n",
		        has_upper ? u->upper.root : "none");
	}
	free(have);
	if (r == 0 && ok && add_upper)
		r = fhmap_layer_add(&u->upper.id, u->map, FHMAP_LAYER_UPPER, u->upper.root);
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
static int check_root(struct ufs *u)
{
	fhmap_realfh lower, upper = { 0 }; /* none in a read-only union */
	fhmap_object obj;
	int created = 0, fd, r = fhmap_realfh_at(&lower, u->lowers[0].id, u->lowers[0].fd, "");

	if (r == 0 && u->upper.fd >= 0)
		r = fhmap_realfh_at(&upper, u->upper.id, u->upper.fd, "");
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: layers must support file handles: %s\n", fhmap_strerror(r));
		return -1;
	}
	r = fhmap_open_real(&fd, u->map, &lower, O_PATH);
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: cannot open by handle on '%s': %s\n", u->lowers[0].root,
		        fhmap_strerror(r));
		return -1;
	}
	close(fd);
	r = fhmap_object_bind(&obj, &created, u->map, &lower, 0, "", S_IFDIR);
	if (r == -EEXIST || (r == 0 && obj.ino != FHMAP_ROOT_INO)) {
		fprintf(stderr, "fhmap-unionfs: lowerdir '%s' is not the directory this db was made for\n",
		        u->lowers[0].root);
		return -1;
	}
	if (r == 0 && obj.state == FHMAP_STATE_UPPER) {
		if (obj.upper.len != upper.len || obj.upper.type != upper.type ||
		    memcmp(obj.upper.data, upper.data, upper.len)) {
			fprintf(stderr, "fhmap-unionfs: upperdir '%s' is not the directory this db was made for\n",
			        u->upper.root);
			return -1;
		}
		return 0;
	}
	if (r == 0 && u->upper.fd >= 0)
		r = fhmap_copyup_adopt(NULL, u->map, FHMAP_ROOT_INO, &upper);
	if (r == 0 && (created || u->upper.fd >= 0))
		r = fhmap_sync(u->map); /* the root keeps its number */
	if (r < 0)
		fprintf(stderr, "fhmap-unionfs: cannot record the union root: %s\n", fhmap_strerror(r));
	return r < 0 ? -1 : 0;
}

static int open_work(struct ufs *u, const struct ufs_options *o)
{
	struct stat ust, wst;

	if (o->workdir) {
		char *w = realpath(o->workdir, NULL);
		int inside = w && path_within(w, u->upper.root);

		free(w);
		if (inside) {
			/* it would show up in the union, and could be renamed away */
			fprintf(stderr, "fhmap-unionfs: workdir '%s' must not be inside upperdir\n", o->workdir);
			return -1;
		}
		u->work_fd = open(o->workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		if (mkdirat(u->upper.fd, UFS_WORK_NAME, 0700) < 0 && errno != EEXIST)
			goto fail;
		u->work_fd = openat(u->upper.fd, UFS_WORK_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		u->hide_work = 1;
	}
	if (u->work_fd < 0 || fstat(u->work_fd, &wst) < 0 || fstat(u->upper.fd, &ust) < 0)
		goto fail;
	if (wst.st_dev != ust.st_dev) {
		fprintf(stderr, "fhmap-unionfs: workdir must be on the upper layer's filesystem\n");
		return -1;
	}
	if (mkdirat(u->work_fd, UFS_INDEX_NAME, 0700) < 0 && errno != EEXIST)
		goto fail;
	u->index_fd = openat(u->work_fd, UFS_INDEX_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u->index_fd < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "fhmap-unionfs: workdir '%s': %s\n", o->workdir ? o->workdir : UFS_WORK_NAME,
	        strerror(errno));
	return -1;
}

/* -o sync and the other settings; -1 for a bad value. */
static int configure(struct ufs_config *c, const struct ufs_options *o)
{
	const char *sync = o->sync ? o->sync : "deferred";

	c->map_sync = FHMAP_SYNC_DEFERRED;
	if (!strcmp(sync, "full"))
		c->sync_full = 1;
	else if (!strcmp(sync, "lazy"))
		c->map_sync = FHMAP_SYNC_LAZY;
	else if (strcmp(sync, "deferred")) {
		fprintf(stderr, "fhmap-unionfs: -o sync=%s: expected deferred, full or lazy\n", sync);
		return -1;
	}
	if (o->entry_timeout < 0 || o->attr_timeout < 0) {
		fprintf(stderr, "fhmap-unionfs: timeouts must not be negative\n");
		return -1;
	}
	c->flush_ms = o->flush_interval;
	/* two a core: more only help while others wait for the disk, and each
	 * one more waiting for requests costs sequential workloads (the kernel
	 * wakes the waiters in turn, each with cold caches) */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	c->threads = o->threads ? o->threads : cores < 1 ? 2 : cores > 8 ? 16 : 2 * (unsigned)cores;
	c->entry_timeout = o->entry_timeout;
	c->attr_timeout = o->attr_timeout;
	c->writeback = o->writeback;
	c->splice = !o->nosplice;
	return 0;
}

/* Kept fds (a directory's layers, an object's O_PATH fd) get half of the
 * highest limit the process may have; the rest is for open files. */
static void raise_fd_limit(struct ufs *u)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		rl.rlim_cur = 1024;
	u->fd_cap = rl.rlim_cur > 512 ? (long)(rl.rlim_cur / 2) : 128;
}

static int open_map(struct ufs *u, const struct ufs_options *o)
{
	fhmap_open_options fo = FHMAP_OPEN_OPTIONS_INIT;
	fhmap_info info;
	int r;

	fo.flags = FHMAP_OPEN_CREATE;
	fo.sync = u->cfg.map_sync;
	fo.flush_interval_ms = u->cfg.flush_ms;
	fo.log = log_cb;
	r = fhmap_open(&u->map, o->db, &fo);
	if (r == 0)
		r = fhmap_info_get(&info, u->map);
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: db '%s': %s\n", o->db, fhmap_strerror(r));
		return -1;
	}
	memcpy(u->map_uuid, info.uuid, sizeof(u->map_uuid));
	/* A map that commits every update durably (PostgreSQL) opens in full
	 * mode whatever was asked: the daemon then syncs as with sync=full,
	 * which costs nothing there. */
	if (info.sync != u->cfg.map_sync) {
		if (!u->cfg.sync_full)
			ufs_log("db: every update of this map is durable: -o sync=%s taken as full",
			        o->sync ? o->sync : "deferred");
		u->cfg.map_sync = info.sync;
		u->cfg.sync_full = 1;
	}
	if (check_layers(u, o->db) < 0 || (u->upper.root && open_work(u, o) < 0))
		return -1;
	r = u->upper.root ? ufs_recover_pending(u) : 0;
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: pending copy-ups: %s\n", fhmap_strerror(r));
		return -1;
	}
	if (check_root(u) < 0)
		return -1;
	r = 0;
	if (u->upper.root) { /* a read-only union has no work dir, nothing to recover */
		int died = 0;

		ufs_work_clean(u);
		r = ufs_run_begin(u, &died);
		u->running = r == 0;
		if (r == 0)
			r = ufs_recover_crash(u, died);
	}
	if (r == 0)
		r = ufs_nodes_init(u);
	if (r == 0)
		r = ufs_node_hold(&u->root, u, FHMAP_ROOT_INO);
	if (r == 0)
		r = ufs_map_sync(u); /* what the mount itself changed */
	if (r < 0) {
		fprintf(stderr, "fhmap-unionfs: db '%s': %s\n", o->db, fhmap_strerror(r));
		return -1;
	}
	return 0;
}

static void close_all(struct ufs *u)
{
	ufs_handles_free(u);
	if (u->root)
		ufs_node_put(u, u->root);
	if (u->nodes.buckets)
		ufs_nodes_free(u);
	if (u->map) {
		int r = fhmap_sync(u->map);

		if (r < 0)
			ufs_log("db: last updates not committed: %s", fhmap_strerror(r));
		fhmap_close(u->map);
	}
	if (u->running)
		ufs_run_end(u); /* a clean end: the map has every update */
	for (size_t i = 0; i < u->nlowers; i++) {
		if (u->lowers[i].fd >= 0)
			close(u->lowers[i].fd);
		free(u->lowers[i].root);
	}
	free(u->lowers);
	if (u->upper.fd >= 0)
		close(u->upper.fd);
	free(u->upper.root);
	if (u->work_fd >= 0)
		close(u->work_fd);
	if (u->index_fd >= 0)
		close(u->index_fd);
	pthread_mutex_destroy(&u->rename_lock);
	pthread_mutex_destroy(&u->handles_lock);
}

static int loop(struct fuse_session *se, const struct ufs *u)
{
	struct fuse_loop_config *lc;
	int ret;

	if (u->cfg.threads <= 1)
		return fuse_session_loop(se);
	lc = fuse_loop_cfg_create();
	if (!lc)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(lc, 1);
	fuse_loop_cfg_set_max_threads(lc, u->cfg.threads);
	fuse_loop_cfg_set_idle_threads(lc, u->cfg.threads); /* no thread churn */
	ret = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	return ret;
}

static int serve(struct ufs *u, struct fuse_args *args, const struct fuse_cmdline_opts *cmd)
{
	struct fuse_session *se;
	int r = 1;

	if (fuse_opt_add_arg(args, "-ofsname=fhmap-unionfs,subtype=fhmap-unionfs,default_permissions") ||
	    (u->upper.fd < 0 && fuse_opt_add_arg(args, "-oro"))) /* the kernel refuses writes: EROFS */
		return 1;
	se = fuse_session_new(args, &ufs_ops, sizeof(ufs_ops), u);
	if (!se)
		return 1;
	if (fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, cmd->mountpoint) == 0) {
			if (cmd->foreground)
				fuse_daemonize(1); /* only cd / */
			else
				ufs_service_detached(); /* stderr is syslog from now on */
			int nr = ufs_service_notify_ready(cmd->mountpoint);
			if (nr < 0)
				ufs_log("cannot notify readiness: %s", strerror(-nr));
			int ret = loop(se, u);
			ufs_service_notify_stopping(cmd->mountpoint);
			r = ret < 0 ? 1 : 0;
			if (ret < 0)
				ufs_log("%s", strerror(-ret));
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
	struct ufs_options o = { .entry_timeout = 1.0, .attr_timeout = 1.0 };
	static struct ufs u = { .upper = { .fd = -1 }, .work_fd = -1, .index_fd = -1 };
	struct stat st;
	int r = 2;

	pthread_mutex_init(&u.rename_lock, NULL);
	pthread_mutex_init(&u.handles_lock, NULL);
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
	if (!cmd.mountpoint || !o.lowerdir || !o.db) {
		fprintf(stderr, "fhmap-unionfs: missing %s\n",
		        !cmd.mountpoint ? "MOUNTPOINT" : !o.lowerdir ? "-o lowerdir=" : "-o db=");
		fprintf(stderr,
		        "usage: %s [SOURCE] MOUNTPOINT -o lowerdir=L1[:L2...][,upperdir=U],db=PATH [-f]\n",
		        argv[0]);
		goto out;
	}
	if (o.workdir && !o.upperdir) {
		fprintf(stderr, "fhmap-unionfs: -o workdir= needs -o upperdir=\n");
		goto out;
	}
	if (configure(&u.cfg, &o) < 0)
		goto out;
	r = 1;
	errno = 0;
	if (stat(cmd.mountpoint, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "fhmap-unionfs: mountpoint '%s': %s\n", cmd.mountpoint,
		        errno == 0 || S_ISREG(st.st_mode) ? "not a directory" : strerror(errno));
		goto out;
	}
	umask(0); /* modes come from the kernel already masked */
	if (!cmd.foreground && (r = ufs_service_detach()) < 0) {
		fprintf(stderr, "fhmap-unionfs: cannot detach: %s\n", strerror(-r));
		r = 1;
		goto out;
	}
	r = 1;
	u.pid = (long)getpid();
	raise_fd_limit(&u);
	if (open_layers(&u, &o) == 0 && open_map(&u, &o) == 0)
		r = serve(&u, &args, &cmd);
	close_all(&u);
out:
	free(cmd.mountpoint);
	free(o.lowerdir);
	free(o.upperdir);
	free(o.db);
	free(o.workdir);
	free(o.sync);
	free(o.args[0]);
	free(o.args[1]);
	fuse_opt_free_args(&args);
	return r;
}
