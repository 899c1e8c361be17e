/*
 * fhmap-nfs-bench: NFSv3 load from N concurrent clients on libnfs's async
 * RPC layer, for comparing NFS exports of the same tree (bench/nfs/run.sh).
 *
 *   fhmap-nfs-bench populate DIR [-c CLIENTS]
 *       creates DIR/nfsbench: files/f0000..f0255 (4 KiB each), big/b0..b7
 *       (1 MiB each), write/w00.. (1 MiB, one per client), create/c00..
 *       (an empty directory per client)
 *   fhmap-nfs-bench run -p NFSPORT -m MOUNTPORT -e EXPORT [-s HOST]
 *                   [-c CLIENTS] [-n COUNT] [-t SECONDS] [-l LABEL]
 *                   [-d SECONDS] OP[,OP...]
 *       OP: lookup getattr read4k read1m write create remove
 *       -d: after the setup, print "@ready" on stderr and wait that long
 *           before the first phase (time to attach a profiler)
 *
 * Each client is its own TCP connection (rpc_context) with one request in
 * flight; one poll loop drives them all. An operation's phase ends after
 * COUNT operations in all (default 20000) or SECONDS (default 5), whichever
 * comes first; then the requests in flight complete. Per phase one line:
 *
 *   @nfs LABEL OP CLIENTS OPS SECONDS OPS_PER_S P50_US P99_US
 *
 * LOOKUP names a file in files/, GETATTR and READ 4 KiB take a file of
 * files/, READ 1 MiB one of big/, WRITE puts 4 KiB (UNSTABLE) at rotating
 * offsets of the client's write/ file, CREATE makes new empty files in the
 * client's create/ directory (GUARDED, mode 0644) and REMOVE removes the
 * files CREATE made in this run (so remove comes after create in the list);
 * files left over are removed untimed at the end. Handles come from one
 * MOUNT and LOOKUPs before the first phase. Exit status: 0, 1 on any RPC or
 * NFS error (named on stderr), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#define NB_FILES 256
#define NB_BIG 8
#define NB_SMALL (4u << 10)
#define NB_LARGE (1u << 20)
#define NB_MAX_CLIENTS 64
#define NB_FH_MAX 64
#define NB_TIMEOUT_S 30

enum nb_op { OP_LOOKUP, OP_GETATTR, OP_READ4K, OP_READ1M, OP_WRITE, OP_CREATE, OP_REMOVE, OP_COUNT };
static const char *const op_names[OP_COUNT] = { "lookup", "getattr", "read4k", "read1m",
	                                        "write",  "create",  "remove" };

struct fh {
	unsigned int len;
	char data[NB_FH_MAX];
};

struct client {
	struct rpc_context *rpc;
	int busy;
	uint64_t seq;     /* operations this client issued in the phase */
	uint64_t created; /* files this client's create phases made */
	uint64_t removed;
	struct timespec sent;
	char name[64]; /* of the CREATE/REMOVE in flight */
};

struct bench {
	const char *host, *export, *label;
	int nfs_port, mnt_port, nclients;
	uint64_t count;
	double seconds, delay;
	struct fh files[NB_FILES], big[NB_BIG], write[NB_MAX_CLIENTS], create[NB_MAX_CLIENTS], files_dir;
	struct client c[NB_MAX_CLIENTS];
	long tag; /* names of created files are n<tag>-<seq> */
	/* the phase running */
	enum nb_op op;
	uint64_t issued, done;
	double *lat_us; /* room for count latencies */
	uint64_t lat_cap;
	int failed;
	char *wbuf;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "fhmap-nfs-bench: %s: %s\n", what, why);
	exit(1);
}

/* ---- populate --------------------------------------------------------- */

static void write_file(const char *path, size_t size)
{
	char *buf = malloc(size);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (!buf || fd < 0)
		die(path, strerror(errno));
	for (size_t i = 0; i < size; i++)
		buf[i] = (char)('a' + i % 26);
	if (write(fd, buf, size) != (ssize_t)size || close(fd) < 0)
		die(path, strerror(errno));
	free(buf);
}

static void make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die(path, strerror(errno));
}

static int cmd_populate(const char *dir, int nclients)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/nfsbench", dir);
	make_dir(p);
	const char *subs[] = { "files", "big", "write", "create" };
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		snprintf(p, sizeof(p), "%s/nfsbench/%s", dir, subs[i]);
		make_dir(p);
	}
	for (int i = 0; i < NB_FILES; i++) {
		snprintf(p, sizeof(p), "%s/nfsbench/files/f%04d", dir, i);
		write_file(p, NB_SMALL);
	}
	for (int i = 0; i < NB_BIG; i++) {
		snprintf(p, sizeof(p), "%s/nfsbench/big/b%d", dir, i);
		write_file(p, NB_LARGE);
	}
	for (int i = 0; i < nclients; i++) {
		snprintf(p, sizeof(p), "%s/nfsbench/write/w%02d", dir, i);
		write_file(p, NB_LARGE);
		snprintf(p, sizeof(p), "%s/nfsbench/create/c%02d", dir, i);
		make_dir(p);
	}
	return 0;
}

/* ---- one synchronous call, for the setup ------------------------------ */

struct sync_call {
	int done, status;
	void (*take)(struct sync_call *, void *);
	struct fh *fh;
	int nfs_status;
	char err[256];
};

static void sync_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct sync_call *s = priv;

	(void)rpc;
	s->done = 1;
	s->status = status;
	if (status == RPC_STATUS_SUCCESS && s->take)
		s->take(s, data);
	else if (status != RPC_STATUS_SUCCESS)
		snprintf(s->err, sizeof(s->err), "%s", data ? (const char *)data : "RPC error");
}

static void wait_for(struct rpc_context *rpc, struct sync_call *s, const char *what)
{
	double deadline = now_s() + NB_TIMEOUT_S;

	while (!s->done) {
		struct pollfd pfd = { .fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc) };
		int n = poll(&pfd, 1, 100);

		if (n < 0 && errno != EINTR)
			die("poll", strerror(errno));
		if (rpc_service(rpc, n > 0 ? pfd.revents : 0) < 0 && !s->done)
			die(what, rpc_get_error(rpc));
		if (!s->done && now_s() > deadline)
			die(what, "no answer");
	}
	if (s->status != RPC_STATUS_SUCCESS)
		die(what, s->err);
	if (s->nfs_status != 0) {
		char st[32];

		snprintf(st, sizeof(st), "NFS status %d", s->nfs_status);
		die(what, st);
	}
}

static void copy_fh(struct fh *out, unsigned int len, const char *data)
{
	if (len > NB_FH_MAX)
		die("handle", "longer than 64 bytes");
	out->len = len;
	memcpy(out->data, data, len);
}

static struct rpc_context *connect_to(const struct bench *b, int port, int prog, int vers)
{
	struct rpc_context *rpc = rpc_init_context();
	struct sync_call s = { 0 };

	if (!rpc)
		die("rpc_init_context", "out of memory");
	if (rpc_connect_port_async(rpc, b->host, port, prog, vers, sync_cb, &s) != 0)
		die("connect", rpc_get_error(rpc));
	wait_for(rpc, &s, "connect");
	return rpc;
}

static void take_mnt(struct sync_call *s, void *reply)
{
	mountres3 *r = reply;

	s->nfs_status = (int)r->fhs_status;
	if (r->fhs_status == MNT3_OK)
		copy_fh(s->fh, r->mountres3_u.mountinfo.fhandle.fhandle3_len,
		        r->mountres3_u.mountinfo.fhandle.fhandle3_val);
}

static void take_lookup(struct sync_call *s, void *reply)
{
	LOOKUP3res *r = reply;

	s->nfs_status = (int)r->status;
	if (r->status == NFS3_OK)
		copy_fh(s->fh, r->LOOKUP3res_u.resok.object.data.data_len,
		        r->LOOKUP3res_u.resok.object.data.data_val);
}

static void lookup(struct rpc_context *rpc, struct fh *out, const struct fh *dir, const char *name)
{
	LOOKUP3args a = { .what = { .dir = { .data = { dir->len, (char *)dir->data } },
		                    .name = (char *)name } };
	struct sync_call s = { .take = take_lookup, .fh = out };

	if (rpc_nfs3_lookup_async(rpc, sync_cb, &a, &s) != 0)
		die("LOOKUP", rpc_get_error(rpc));
	wait_for(rpc, &s, name);
}

/* MOUNT, then the handles of the tree. */
static void resolve_tree(struct bench *b)
{
	struct rpc_context *mnt = connect_to(b, b->mnt_port, MOUNT_PROGRAM, MOUNT_V3);
	struct rpc_context *rpc = b->c[0].rpc;
	struct fh root, top, big, wdir, cdir;
	struct sync_call s = { .take = take_mnt, .fh = &root };
	char name[32];

	if (rpc_mount3_mnt_async(mnt, sync_cb, (char *)b->export, &s) != 0)
		die("MOUNT", rpc_get_error(mnt));
	wait_for(mnt, &s, "MOUNT");
	rpc_destroy_context(mnt);
	lookup(rpc, &top, &root, "nfsbench");
	lookup(rpc, &b->files_dir, &top, "files");
	lookup(rpc, &big, &top, "big");
	lookup(rpc, &wdir, &top, "write");
	lookup(rpc, &cdir, &top, "create");
	for (int i = 0; i < NB_FILES; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		lookup(rpc, &b->files[i], &b->files_dir, name);
	}
	for (int i = 0; i < NB_BIG; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		lookup(rpc, &b->big[i], &big, name);
	}
	for (int i = 0; i < b->nclients; i++) {
		snprintf(name, sizeof(name), "w%02d", i);
		lookup(rpc, &b->write[i], &wdir, name);
		snprintf(name, sizeof(name), "c%02d", i);
		lookup(rpc, &b->create[i], &cdir, name);
	}
}

/* ---- the load --------------------------------------------------------- */

static int nfs3_status_of(enum nb_op op, void *reply)
{
	switch (op) {
	case OP_LOOKUP:
		return (int)((LOOKUP3res *)reply)->status;
	case OP_GETATTR:
		return (int)((GETATTR3res *)reply)->status;
	case OP_READ4K:
	case OP_READ1M:
		return (int)((READ3res *)reply)->status;
	case OP_WRITE:
		return (int)((WRITE3res *)reply)->status;
	case OP_CREATE:
		return (int)((CREATE3res *)reply)->status;
	case OP_REMOVE:
		return (int)((REMOVE3res *)reply)->status;
	default:
		return -1;
	}
}

/* A READ that returned fewer bytes than asked would measure something
 * else (a server rtmax below 1 MiB, a short file). */
static int short_read(const struct bench *b, void *reply)
{
	uint32_t want = b->op == OP_READ1M ? NB_LARGE : NB_SMALL;

	return ((READ3res *)reply)->READ3res_u.resok.count != want;
}

static void load_cb(struct rpc_context *rpc, int status, void *data, void *priv);

static struct bench *the_bench; /* the callbacks' context: one bench per process */

static int issue(struct bench *b, int i)
{
	struct client *c = &b->c[i];
	uint64_t k = c->seq;
	unsigned pick = (unsigned)((uint64_t)i * 37 + k);
	void *priv = (void *)(intptr_t)i;
	char fname[16];
	int r;

	clock_gettime(CLOCK_MONOTONIC, &c->sent);
	switch (b->op) {
	case OP_LOOKUP: {
		snprintf(fname, sizeof(fname), "f%04u", pick % NB_FILES);
		LOOKUP3args a = { .what = { .dir = { .data = { b->files_dir.len, b->files_dir.data } },
			                    .name = fname } };
		r = rpc_nfs3_lookup_async(c->rpc, load_cb, &a, priv);
		break;
	}
	case OP_GETATTR: {
		struct fh *f = &b->files[pick % NB_FILES];
		GETATTR3args a = { .object = { .data = { f->len, f->data } } };
		r = rpc_nfs3_getattr_async(c->rpc, load_cb, &a, priv);
		break;
	}
	case OP_READ4K:
	case OP_READ1M: {
		struct fh *f = b->op == OP_READ4K ? &b->files[pick % NB_FILES] : &b->big[pick % NB_BIG];
		READ3args a = { .file = { .data = { f->len, f->data } },
			        .offset = 0,
			        .count = b->op == OP_READ4K ? NB_SMALL : NB_LARGE };
		r = rpc_nfs3_read_async(c->rpc, load_cb, &a, priv);
		break;
	}
	case OP_WRITE: {
		struct fh *f = &b->write[i];
		WRITE3args a = { .file = { .data = { f->len, f->data } },
			         .offset = (k % (NB_LARGE / NB_SMALL)) * NB_SMALL,
			         .count = NB_SMALL,
			         .stable = UNSTABLE,
			         .data = { NB_SMALL, b->wbuf } };
		r = rpc_nfs3_write_async(c->rpc, load_cb, &a, priv);
		break;
	}
	case OP_CREATE: {
		snprintf(c->name, sizeof(c->name), "n%ld-%llu", b->tag, (unsigned long long)c->created);
		CREATE3args a = { .where = { .dir = { .data = { b->create[i].len, b->create[i].data } },
			                     .name = c->name } };
		a.how.mode = GUARDED;
		a.how.createhow3_u.obj_attributes.mode.set_it = 1;
		a.how.createhow3_u.obj_attributes.mode.set_mode3_u.mode = 0644;
		r = rpc_nfs3_create_async(c->rpc, load_cb, &a, priv);
		break;
	}
	case OP_REMOVE: {
		snprintf(c->name, sizeof(c->name), "n%ld-%llu", b->tag, (unsigned long long)c->removed);
		REMOVE3args a = { .object = { .dir = { .data = { b->create[i].len, b->create[i].data } },
			                      .name = c->name } };
		r = rpc_nfs3_remove_async(c->rpc, load_cb, &a, priv);
		break;
	}
	default:
		r = -1;
	}
	if (r != 0)
		die(op_names[b->op], rpc_get_error(c->rpc));
	c->busy = 1;
	c->seq++;
	b->issued++;
	return 0;
}

static void load_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct bench *b = the_bench;
	struct client *c = &b->c[(intptr_t)priv];
	struct timespec t;
	int st;

	(void)rpc;
	clock_gettime(CLOCK_MONOTONIC, &t);
	c->busy = 0;
	if (status != RPC_STATUS_SUCCESS) {
		fprintf(stderr, "fhmap-nfs-bench: %s: %s\n", op_names[b->op],
		        data ? (const char *)data : "RPC error");
		b->failed = 1;
		return;
	}
	st = nfs3_status_of(b->op, data);
	if (st != NFS3_OK) {
		fprintf(stderr, "fhmap-nfs-bench: %s: NFS3 status %d\n", op_names[b->op], st);
		b->failed = 1;
		return;
	}
	if ((b->op == OP_READ4K || b->op == OP_READ1M) && short_read(b, data)) {
		fprintf(stderr, "fhmap-nfs-bench: %s returned %u bytes\n", op_names[b->op],
		        ((READ3res *)data)->READ3res_u.resok.count);
		b->failed = 1;
		return;
	}
	if (b->op == OP_CREATE)
		c->created++;
	else if (b->op == OP_REMOVE)
		c->removed++;
	if (b->done < b->lat_cap)
		b->lat_us[b->done] = (double)(t.tv_sec - c->sent.tv_sec) * 1e6 +
		                     (double)(t.tv_nsec - c->sent.tv_nsec) / 1e3;
	b->done++;
}

/* May client i start another operation of this phase? */
static int may_issue(const struct bench *b, int i, double deadline)
{
	const struct client *c = &b->c[i];

	if (c->busy || b->failed || b->issued >= b->count || now_s() >= deadline)
		return 0;
	return b->op != OP_REMOVE || c->removed < c->created;
}

/* Services every client until none is busy and none may issue. */
static void drive(struct bench *b, double deadline, double timeout)
{
	struct pollfd pfd[NB_MAX_CLIENTS];

	for (;;) {
		int busy = 0;

		for (int i = 0; i < b->nclients; i++) {
			if (may_issue(b, i, deadline))
				issue(b, i);
			busy += b->c[i].busy;
			pfd[i].fd = rpc_get_fd(b->c[i].rpc);
			pfd[i].events = (short)rpc_which_events(b->c[i].rpc);
			pfd[i].revents = 0;
		}
		if (!busy)
			return;
		if (now_s() > timeout)
			die(op_names[b->op], "no answer from the server");
		if (poll(pfd, (nfds_t)b->nclients, 100) < 0 && errno != EINTR)
			die("poll", strerror(errno));
		for (int i = 0; i < b->nclients; i++)
			if (rpc_service(b->c[i].rpc, pfd[i].revents) < 0 && b->c[i].busy)
				die(op_names[b->op], rpc_get_error(b->c[i].rpc));
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void run_phase(struct bench *b, enum nb_op op)
{
	double t0, t1;

	b->op = op;
	b->issued = b->done = 0;
	for (int i = 0; i < b->nclients; i++)
		b->c[i].seq = 0;
	t0 = now_s();
	drive(b, t0 + b->seconds, t0 + b->seconds + NB_TIMEOUT_S);
	t1 = now_s();
	if (b->failed)
		exit(1);
	if (b->done == 0)
		die(op_names[op],
		    op == OP_REMOVE ? "nothing to remove (put create before remove)" : "no operation done");
	qsort(b->lat_us, b->done, sizeof(double), cmp_double);
	printf("@nfs %s %s %d %llu %.3f %.1f %.1f %.1f\n", b->label, op_names[op], b->nclients,
	       (unsigned long long)b->done, t1 - t0, (double)b->done / (t1 - t0), b->lat_us[b->done / 2],
	       b->lat_us[(size_t)((double)(b->done - 1) * 0.99)]);
	fflush(stdout);
}

/* Files the create phases made and no remove phase took away (untimed:
 * latencies beyond lat_cap are not kept). */
static void remove_leftovers(struct bench *b)
{
	b->count = UINT64_MAX;
	b->op = OP_REMOVE;
	b->issued = b->done = 0;
	drive(b, now_s() + 3600, now_s() + 3600 + NB_TIMEOUT_S);
	if (b->failed)
		exit(1);
}

static int parse_ops(const char *list, enum nb_op *ops)
{
	char buf[256], *save = NULL;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k = 0;

		while (k < OP_COUNT && strcmp(t, op_names[k]))
			k++;
		if (k == OP_COUNT || n == 16)
			return -1;
		ops[n++] = (enum nb_op)k;
	}
	return n;
}

static void usage(void)
{
	fputs("usage: fhmap-nfs-bench populate DIR [-c CLIENTS]\n"
	      "       fhmap-nfs-bench run -p NFSPORT -m MOUNTPORT -e EXPORT [-s HOST] [-c CLIENTS]\n"
	      "                       [-n COUNT] [-t SECONDS] [-l LABEL] [-d SECONDS] OP[,OP...]\n"
	      "  OP: lookup getattr read4k read1m write create remove\n",
	      stderr);
}

int main(int argc, char **argv)
{
	static struct bench b = {
		.host = "127.0.0.1", .label = "-", .nclients = 1, .count = 20000, .seconds = 5
	};
	enum nb_op ops[16];
	int opt, nops;

	if (argc < 2) {
		usage();
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "p:m:e:s:c:n:t:l:d:")) != -1) {
		switch (opt) {
		case 'p':
			b.nfs_port = atoi(optarg);
			break;
		case 'm':
			b.mnt_port = atoi(optarg);
			break;
		case 'e':
			b.export = optarg;
			break;
		case 's':
			b.host = optarg;
			break;
		case 'c':
			b.nclients = atoi(optarg);
			break;
		case 'n':
			b.count = strtoull(optarg, NULL, 10);
			break;
		case 't':
			b.seconds = atof(optarg);
			break;
		case 'l':
			b.label = optarg;
			break;
		case 'd':
			b.delay = atof(optarg);
			break;
		default:
			usage();
			return 2;
		}
	}
	if (b.nclients < 1 || b.nclients > NB_MAX_CLIENTS) {
		fprintf(stderr, "fhmap-nfs-bench: -c takes 1..%d\n", NB_MAX_CLIENTS);
		return 2;
	}
	if (!strcmp(argv[1], "populate") && optind == argc - 1)
		return cmd_populate(argv[optind], b.nclients);
	if (strcmp(argv[1], "run") || optind != argc - 1 || !b.export || b.nfs_port <= 0 || b.mnt_port <= 0 ||
	    b.count == 0 || b.seconds <= 0 || (nops = parse_ops(argv[optind], ops)) <= 0) {
		usage();
		return 2;
	}
	the_bench = &b;
	b.tag = (long)getpid();
	b.lat_cap = b.count;
	b.lat_us = malloc(sizeof(double) * b.count);
	b.wbuf = malloc(NB_SMALL);
	if (!b.lat_us || !b.wbuf)
		die("malloc", "out of memory");
	memset(b.wbuf, 'w', NB_SMALL);
	for (int i = 0; i < b.nclients; i++)
		b.c[i].rpc = connect_to(&b, b.nfs_port, NFS_PROGRAM, NFS_V3);
	resolve_tree(&b);
	if (b.delay > 0) {
		struct timespec d = { (time_t)b.delay, (long)((b.delay - (double)(time_t)b.delay) * 1e9) };

		fputs("@ready\n", stderr);
		nanosleep(&d, NULL);
	}
	for (int k = 0; k < nops; k++)
		run_phase(&b, ops[k]);
	remove_leftovers(&b);
	for (int i = 0; i < b.nclients; i++)
		rpc_destroy_context(b.c[i].rpc);
	free(b.lat_us);
	free(b.wbuf);
	return 0;
}
