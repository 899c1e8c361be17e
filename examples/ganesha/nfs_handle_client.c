/*
 * fhmap-nfs-client: takes NFSv3 and NFSv4 file handles from a server, saves
 * them to a file, and later uses a saved handle for READ, WRITE and GETATTR
 * without any path lookup, the way a client holding handles across server
 * restarts does. Uses libnfs's raw RPC layer with explicit ports, so no
 * portmapper is needed on the client side.
 *
 *   fhmap-nfs-client [-s HOST] [-p NFSPORT] [-m MOUNTPORT] COMMAND ...
 *     take    HANDLES EXPORT PATH...     append "v3 PATH HEX" and "v4 PATH HEX"
 *     read    HANDLES v3|v4 PATH         READ the whole object to stdout
 *     write   HANDLES v3|v4 PATH OFFSET DATA   WRITE (FILE_SYNC)
 *     getattr HANDLES v3|v4 PATH         print type, size, fileid, nlink
 *     rename  EXPORT FROM TO             NFSv3 RENAME (paths under EXPORT)
 *     remove  EXPORT PATH                NFSv3 REMOVE
 *
 * Exit status: 0 success, 1 usage, transport or local error, 2 the server
 * answered with an NFS error (its name, e.g. NFS3ERR_STALE, goes to stderr).
 */
#define _DEFAULT_SOURCE
#include <sys/types.h>
#include <sys/time.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <nfsc/libnfs-raw-nfs4.h>

#define CLIENT_FH_MAX 128    /* NFSv4 limit; v3 allows 64 */
#define CLIENT_IO_CHUNK 65536
#define CLIENT_READ_MAX (16u << 20)
#define CLIENT_TIMEOUT_MS 30000
#define CLIENT_PATH_DEPTH 64

enum { EXIT_NFS = 2 };

struct client_opts {
	const char *host;
	int nfs_port;
	int mnt_port;
};

struct fh {
	unsigned int len;
	char data[CLIENT_FH_MAX];
};

/* One outstanding RPC: the reply is parsed inside the callback because
 * libnfs frees it when the callback returns. */
struct call;
typedef void (*reply_fn)(struct call *c, void *reply);
struct call {
	int done;
	int rpc_status;
	char err[256];
	reply_fn parse;
	int nfs_status;   /* nfsstat3/nfsstat4/mountstat3 of the reply */
	int is_v4;
	void *out;        /* where parse puts results */
};

static const char *nfs3_status_name(int st)
{
	switch (st) {
	case NFS3_OK: return "NFS3_OK";
	case NFS3ERR_PERM: return "NFS3ERR_PERM";
	case NFS3ERR_NOENT: return "NFS3ERR_NOENT";
	case NFS3ERR_IO: return "NFS3ERR_IO";
	case NFS3ERR_ACCES: return "NFS3ERR_ACCES";
	case NFS3ERR_EXIST: return "NFS3ERR_EXIST";
	case NFS3ERR_NOTDIR: return "NFS3ERR_NOTDIR";
	case NFS3ERR_ISDIR: return "NFS3ERR_ISDIR";
	case NFS3ERR_INVAL: return "NFS3ERR_INVAL";
	case NFS3ERR_NOSPC: return "NFS3ERR_NOSPC";
	case NFS3ERR_ROFS: return "NFS3ERR_ROFS";
	case NFS3ERR_NOTEMPTY: return "NFS3ERR_NOTEMPTY";
	case NFS3ERR_STALE: return "NFS3ERR_STALE";
	case NFS3ERR_BADHANDLE: return "NFS3ERR_BADHANDLE";
	case NFS3ERR_NOTSUPP: return "NFS3ERR_NOTSUPP";
	case NFS3ERR_SERVERFAULT: return "NFS3ERR_SERVERFAULT";
	case NFS3ERR_JUKEBOX: return "NFS3ERR_JUKEBOX";
	default: return "NFS3ERR_?";
	}
}

static const char *nfs4_status_name(int st)
{
	switch (st) {
	case NFS4_OK: return "NFS4_OK";
	case NFS4ERR_PERM: return "NFS4ERR_PERM";
	case NFS4ERR_NOENT: return "NFS4ERR_NOENT";
	case NFS4ERR_IO: return "NFS4ERR_IO";
	case NFS4ERR_ACCESS: return "NFS4ERR_ACCESS";
	case NFS4ERR_ISDIR: return "NFS4ERR_ISDIR";
	case NFS4ERR_INVAL: return "NFS4ERR_INVAL";
	case NFS4ERR_STALE: return "NFS4ERR_STALE";
	case NFS4ERR_BADHANDLE: return "NFS4ERR_BADHANDLE";
	case NFS4ERR_SERVERFAULT: return "NFS4ERR_SERVERFAULT";
	case NFS4ERR_BAD_STATEID: return "NFS4ERR_BAD_STATEID";
	case NFS4ERR_GRACE: return "NFS4ERR_GRACE";
	case NFS4ERR_FHEXPIRED: return "NFS4ERR_FHEXPIRED";
	case NFS4ERR_WRONGSEC: return "NFS4ERR_WRONGSEC";
	default: return "NFS4ERR_?";
	}
}

static void call_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;

	(void)rpc;
	c->done = 1;
	c->rpc_status = status;
	if (status == RPC_STATUS_SUCCESS)
		c->parse(c, data);
	else
		snprintf(c->err, sizeof(c->err), "%s",
			 status == RPC_STATUS_CANCEL ? "cancelled" :
			 status == RPC_STATUS_TIMEOUT ? "timed out" :
			 data ? (const char *)data : "RPC error");
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the event loop until @c is answered (with a reply or an RPC error).
 * A server that does not answer in time ends the program: a callback still
 * pending would write into a call that no longer exists. */
static void call_wait(struct rpc_context *rpc, struct call *c)
{
	long long deadline = now_ms() + CLIENT_TIMEOUT_MS;

	while (!c->done) {
		struct pollfd pfd = { .fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc) };
		int n = poll(&pfd, 1, 100);

		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "fhmap-nfs-client: poll: %s\n", strerror(errno));
			exit(1);
		}
		if (rpc_service(rpc, n > 0 ? pfd.revents : 0) < 0 && !c->done) {
			fprintf(stderr, "fhmap-nfs-client: %s\n", rpc_get_error(rpc));
			exit(1);
		}
		if (!c->done && now_ms() > deadline) {
			fprintf(stderr, "fhmap-nfs-client: no answer in %d ms\n", CLIENT_TIMEOUT_MS);
			exit(1);
		}
	}
}

static void parse_nothing(struct call *c, void *reply)
{
	(void)c;
	(void)reply;
}

static struct rpc_context *client_connect(const struct client_opts *o, int port, int prog, int vers)
{
	struct rpc_context *rpc = rpc_init_context();
	struct call c = { .parse = parse_nothing };

	if (!rpc) {
		fprintf(stderr, "fhmap-nfs-client: cannot create an RPC context\n");
		return NULL;
	}
	if (rpc_connect_port_async(rpc, o->host, port, prog, vers, call_cb, &c) != 0) {
		fprintf(stderr, "fhmap-nfs-client: connect %s:%d: %s\n", o->host, port, rpc_get_error(rpc));
		rpc_destroy_context(rpc);
		return NULL;
	}
	call_wait(rpc, &c);
	if (c.rpc_status != RPC_STATUS_SUCCESS) {
		fprintf(stderr, "fhmap-nfs-client: connect %s:%d: %s\n", o->host, port, c.err);
		rpc_destroy_context(rpc);
		return NULL;
	}
	return rpc;
}

/* Reports a finished call: 0 on NFS success, 1 on transport error, 2 on an
 * NFS error status. */
static int call_result(const struct call *c, int queued, const char *what)
{
	if (queued != 0 || !c->done || c->rpc_status != RPC_STATUS_SUCCESS) {
		fprintf(stderr, "fhmap-nfs-client: %s: %s\n", what, c->err[0] ? c->err : "cannot queue the call");
		return 1;
	}
	if (c->nfs_status != 0) {
		fprintf(stderr, "fhmap-nfs-client: %s: %s (%d)\n", what,
			c->is_v4 ? nfs4_status_name(c->nfs_status) : nfs3_status_name(c->nfs_status),
			c->nfs_status);
		return EXIT_NFS;
	}
	return 0;
}

/* Splits a path into its components in place. */
static int path_split(char *path, char **comp, int max)
{
	int n = 0;

	for (char *save = NULL, *t = strtok_r(path, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (n == max)
			return -1;
		comp[n++] = t;
	}
	return n;
}

/* ---- NFSv3 ---------------------------------------------------------------- */

static void parse_mnt(struct call *c, void *reply)
{
	mountres3 *r = reply;
	struct fh *fh = c->out;

	c->nfs_status = (int)r->fhs_status;
	if (r->fhs_status != MNT3_OK)
		return;
	fh->len = r->mountres3_u.mountinfo.fhandle.fhandle3_len;
	if (fh->len > CLIENT_FH_MAX)
		fh->len = 0;
	memcpy(fh->data, r->mountres3_u.mountinfo.fhandle.fhandle3_val, fh->len);
}

static void parse_lookup3(struct call *c, void *reply)
{
	LOOKUP3res *r = reply;
	struct fh *fh = c->out;

	c->nfs_status = (int)r->status;
	if (r->status != NFS3_OK)
		return;
	fh->len = r->LOOKUP3res_u.resok.object.data.data_len;
	if (fh->len > CLIENT_FH_MAX)
		fh->len = 0;
	memcpy(fh->data, r->LOOKUP3res_u.resok.object.data.data_val, fh->len);
}

/* MOUNT of @export, then LOOKUP of each component of @path. */
static int v3_resolve(struct fh *out, const struct client_opts *o, struct rpc_context *nfs,
		      const char *export, const char *path)
{
	struct rpc_context *mnt = client_connect(o, o->mnt_port, MOUNT_PROGRAM, MOUNT_V3);
	char exp[1024], buf[4096], *comp[CLIENT_PATH_DEPTH];
	struct call c = { .parse = parse_mnt, .out = out };
	int q, rc, n;

	if (!mnt)
		return 1;
	snprintf(exp, sizeof(exp), "%s", export);
	q = rpc_mount3_mnt_async(mnt, call_cb, exp, &c);
	if (q == 0)
		call_wait(mnt, &c);
	rc = call_result(&c, q, "MOUNT");
	rpc_destroy_context(mnt);
	if (rc != 0)
		return rc;
	snprintf(buf, sizeof(buf), "%s", path);
	n = path_split(buf, comp, CLIENT_PATH_DEPTH);
	if (n < 0) {
		fprintf(stderr, "fhmap-nfs-client: %s: path too deep\n", path);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		LOOKUP3args a = { .what = { .dir = { .data = { out->len, out->data } }, .name = comp[i] } };
		struct fh next = { 0 };
		struct call lc = { .parse = parse_lookup3, .out = &next };
		q = rpc_nfs3_lookup_async(nfs, call_cb, &a, &lc);
		if (q == 0)
			call_wait(nfs, &lc);
		rc = call_result(&lc, q, "LOOKUP");
		if (rc != 0) {
			fprintf(stderr, "fhmap-nfs-client: while looking up \"%s\" in %s\n", comp[i], path);
			return rc;
		}
		*out = next;
	}
	return 0;
}

struct read_out {
	char *buf;
	size_t len;
	int eof;
	uint32_t count;
};

static void parse_read3(struct call *c, void *reply)
{
	READ3res *r = reply;
	struct read_out *ro = c->out;
	uint32_t n;

	c->nfs_status = (int)r->status;
	if (r->status != NFS3_OK)
		return;
	n = r->READ3res_u.resok.data.data_len;
	if (ro->len + n > CLIENT_READ_MAX)
		n = (uint32_t)(CLIENT_READ_MAX - ro->len);
	memcpy(ro->buf + ro->len, r->READ3res_u.resok.data.data_val, n);
	ro->len += n;
	ro->count = n;
	ro->eof = (int)r->READ3res_u.resok.eof;
}

static void parse_write3(struct call *c, void *reply)
{
	WRITE3res *r = reply;

	c->nfs_status = (int)r->status;
	if (r->status == NFS3_OK)
		*(uint32_t *)c->out = r->WRITE3res_u.resok.count;
}

struct attrs {
	const char *type;
	uint64_t size;
	uint64_t fileid;
	uint32_t nlink;
};

static const char *ftype3_name(ftype3 t)
{
	switch (t) {
	case NF3REG: return "reg";
	case NF3DIR: return "dir";
	case NF3LNK: return "lnk";
	default: return "other";
	}
}

static void parse_getattr3(struct call *c, void *reply)
{
	GETATTR3res *r = reply;
	struct attrs *at = c->out;
	const fattr3 *f = &r->GETATTR3res_u.resok.obj_attributes;

	c->nfs_status = (int)r->status;
	if (r->status != NFS3_OK)
		return;
	at->type = ftype3_name(f->type);
	at->size = f->size;
	at->fileid = f->fileid;
	at->nlink = f->nlink;
}

static void parse_rename3(struct call *c, void *reply)
{
	c->nfs_status = (int)((RENAME3res *)reply)->status;
}

static void parse_remove3(struct call *c, void *reply)
{
	c->nfs_status = (int)((REMOVE3res *)reply)->status;
}

static int v3_read(struct rpc_context *nfs, struct fh *fh, struct read_out *ro)
{
	for (;;) {
		READ3args a = { .file = { .data = { fh->len, fh->data } }, .offset = ro->len,
				.count = CLIENT_IO_CHUNK };
		struct call c = { .parse = parse_read3, .out = ro };
		int q = rpc_nfs3_read_async(nfs, call_cb, &a, &c), rc;

		if (q == 0)
			call_wait(nfs, &c);
		rc = call_result(&c, q, "READ");
		if (rc != 0)
			return rc;
		if (ro->eof || ro->count == 0 || ro->len >= CLIENT_READ_MAX)
			return 0;
	}
}

static int v3_write(struct rpc_context *nfs, struct fh *fh, uint64_t off, char *data, uint32_t len)
{
	WRITE3args a = { .file = { .data = { fh->len, fh->data } }, .offset = off, .count = len,
			 .stable = FILE_SYNC, .data = { len, data } };
	uint32_t written = 0;
	struct call c = { .parse = parse_write3, .out = &written };
	int q = rpc_nfs3_write_async(nfs, call_cb, &a, &c), rc;

	if (q == 0)
		call_wait(nfs, &c);
	rc = call_result(&c, q, "WRITE");
	if (rc == 0 && written != len) {
		fprintf(stderr, "fhmap-nfs-client: WRITE: short write, %u of %u bytes\n", written, len);
		return 1;
	}
	return rc;
}

static int v3_getattr(struct rpc_context *nfs, struct fh *fh, struct attrs *at)
{
	GETATTR3args a = { .object = { .data = { fh->len, fh->data } } };
	struct call c = { .parse = parse_getattr3, .out = at };
	int q = rpc_nfs3_getattr_async(nfs, call_cb, &a, &c);

	if (q == 0)
		call_wait(nfs, &c);
	return call_result(&c, q, "GETATTR");
}

/* Splits "a/b/c" into the parent "a/b" (or "") and the name "c". */
static int path_parent(char *parent, size_t size, char **name, char *path)
{
	char *slash = strrchr(path, '/');

	*name = slash ? slash + 1 : path;
	if (!**name) {
		fprintf(stderr, "fhmap-nfs-client: %s: no name\n", path);
		return 1;
	}
	snprintf(parent, size, "%.*s", slash ? (int)(slash - path) : 0, path);
	return 0;
}

static int cmd_rename(const struct client_opts *o, struct rpc_context *nfs, const char *export,
		      char *from, char *to)
{
	char fparent[4096], tparent[4096], *fname, *tname;
	struct fh fdir, tdir;
	int rc;

	if (path_parent(fparent, sizeof(fparent), &fname, from) ||
	    path_parent(tparent, sizeof(tparent), &tname, to))
		return 1;
	rc = v3_resolve(&fdir, o, nfs, export, fparent);
	if (rc == 0)
		rc = v3_resolve(&tdir, o, nfs, export, tparent);
	if (rc != 0)
		return rc;
	RENAME3args a = { .from = { .dir = { .data = { fdir.len, fdir.data } }, .name = fname },
			  .to = { .dir = { .data = { tdir.len, tdir.data } }, .name = tname } };
	struct call c = { .parse = parse_rename3 };
	int q = rpc_nfs3_rename_async(nfs, call_cb, &a, &c);

	if (q == 0)
		call_wait(nfs, &c);
	return call_result(&c, q, "RENAME");
}

static int cmd_remove(const struct client_opts *o, struct rpc_context *nfs, const char *export,
		      char *path)
{
	char parent[4096], *name;
	struct fh dir;
	int rc;

	if (path_parent(parent, sizeof(parent), &name, path))
		return 1;
	rc = v3_resolve(&dir, o, nfs, export, parent);
	if (rc != 0)
		return rc;
	REMOVE3args a = { .object = { .dir = { .data = { dir.len, dir.data } }, .name = name } };
	struct call c = { .parse = parse_remove3 };
	int q = rpc_nfs3_remove_async(nfs, call_cb, &a, &c);

	if (q == 0)
		call_wait(nfs, &c);
	return call_result(&c, q, "REMOVE");
}

/* ---- NFSv4 (minor version 0, COMPOUNDs, anonymous stateid) ----------------- */

/* Sends @ops as one COMPOUND; @parse sees the whole COMPOUND4res. */
static int v4_compound(struct rpc_context *nfs, nfs_argop4 *ops, unsigned int n, reply_fn parse,
		       void *out, const char *what)
{
	COMPOUND4args a = { .minorversion = 0, .argarray = { n, ops } };
	struct call c = { .parse = parse, .out = out, .is_v4 = 1 };
	int q = rpc_nfs4_compound_async(nfs, call_cb, &a, &c);

	if (q == 0)
		call_wait(nfs, &c);
	return call_result(&c, q, what);
}

/* Copies the result of operation @op out of a COMPOUND reply. libnfs 4.0
 * places the result array at a 4-byte aligned address although nfs_resop4
 * needs 8: copy it bytewise instead of accessing it in place. */
static int v4_find(nfs_resop4 *out, const COMPOUND4res *r, nfs_opnum4 op)
{
	const char *base = (const char *)r->resarray.resarray_val;

	for (u_int i = 0; i < r->resarray.resarray_len; i++) {
		memcpy(out, base + (size_t)i * sizeof(*out), sizeof(*out));
		if (out->resop == op)
			return 1;
	}
	return 0;
}

static void parse_getfh4(struct call *c, void *reply)
{
	COMPOUND4res *r = reply;
	nfs_resop4 op;
	struct fh *fh = c->out;

	c->nfs_status = (int)r->status;
	if (r->status != NFS4_OK || !v4_find(&op, r, OP_GETFH))
		return;
	fh->len = op.nfs_resop4_u.opgetfh.GETFH4res_u.resok4.object.nfs_fh4_len;
	if (fh->len > CLIENT_FH_MAX)
		fh->len = 0;
	memcpy(fh->data, op.nfs_resop4_u.opgetfh.GETFH4res_u.resok4.object.nfs_fh4_val, fh->len);
}

/* PUTROOTFH, LOOKUP each component of @export and @path, GETFH. */
static int v4_resolve(struct fh *out, struct rpc_context *nfs, const char *export, const char *path)
{
	char buf[8192], *comp[CLIENT_PATH_DEPTH];
	nfs_argop4 ops[CLIENT_PATH_DEPTH + 2];
	int n;

	snprintf(buf, sizeof(buf), "%s/%s", export, path);
	n = path_split(buf, comp, CLIENT_PATH_DEPTH);
	if (n < 0) {
		fprintf(stderr, "fhmap-nfs-client: %s: path too deep\n", path);
		return 1;
	}
	memset(ops, 0, sizeof(ops));
	ops[0].argop = OP_PUTROOTFH;
	for (int i = 0; i < n; i++) {
		ops[i + 1].argop = OP_LOOKUP;
		ops[i + 1].nfs_argop4_u.oplookup.objname.utf8string_len = (u_int)strlen(comp[i]);
		ops[i + 1].nfs_argop4_u.oplookup.objname.utf8string_val = comp[i];
	}
	ops[n + 1].argop = OP_GETFH;
	out->len = 0;
	return v4_compound(nfs, ops, (unsigned int)n + 2, parse_getfh4, out, "LOOKUP");
}

static void v4_putfh(nfs_argop4 *op, struct fh *fh)
{
	op->argop = OP_PUTFH;
	op->nfs_argop4_u.opputfh.object.nfs_fh4_len = fh->len;
	op->nfs_argop4_u.opputfh.object.nfs_fh4_val = fh->data;
}

static void parse_read4(struct call *c, void *reply)
{
	COMPOUND4res *r = reply;
	struct read_out *ro = c->out;
	nfs_resop4 op;
	uint32_t n;

	c->nfs_status = (int)r->status;
	if (r->status != NFS4_OK || !v4_find(&op, r, OP_READ))
		return;
	n = op.nfs_resop4_u.opread.READ4res_u.resok4.data.data_len;
	if (ro->len + n > CLIENT_READ_MAX)
		n = (uint32_t)(CLIENT_READ_MAX - ro->len);
	memcpy(ro->buf + ro->len, op.nfs_resop4_u.opread.READ4res_u.resok4.data.data_val, n);
	ro->len += n;
	ro->count = n;
	ro->eof = (int)op.nfs_resop4_u.opread.READ4res_u.resok4.eof;
}

static int v4_read(struct rpc_context *nfs, struct fh *fh, struct read_out *ro)
{
	for (;;) {
		nfs_argop4 ops[2];
		int rc;

		memset(ops, 0, sizeof(ops));
		v4_putfh(&ops[0], fh);
		ops[1].argop = OP_READ;
		ops[1].nfs_argop4_u.opread.offset = ro->len;
		ops[1].nfs_argop4_u.opread.count = CLIENT_IO_CHUNK;
		rc = v4_compound(nfs, ops, 2, parse_read4, ro, "READ");
		if (rc != 0)
			return rc;
		if (ro->eof || ro->count == 0 || ro->len >= CLIENT_READ_MAX)
			return 0;
	}
}

static void parse_write4(struct call *c, void *reply)
{
	COMPOUND4res *r = reply;
	nfs_resop4 op;

	c->nfs_status = (int)r->status;
	if (r->status == NFS4_OK && v4_find(&op, r, OP_WRITE))
		*(uint32_t *)c->out = op.nfs_resop4_u.opwrite.WRITE4res_u.resok4.count;
}

static int v4_write(struct rpc_context *nfs, struct fh *fh, uint64_t off, char *data, uint32_t len)
{
	nfs_argop4 ops[2];
	uint32_t written = 0;
	int rc;

	memset(ops, 0, sizeof(ops));
	v4_putfh(&ops[0], fh);
	ops[1].argop = OP_WRITE;
	ops[1].nfs_argop4_u.opwrite.offset = off;
	ops[1].nfs_argop4_u.opwrite.stable = FILE_SYNC4;
	ops[1].nfs_argop4_u.opwrite.data.data_len = len;
	ops[1].nfs_argop4_u.opwrite.data.data_val = data;
	rc = v4_compound(nfs, ops, 2, parse_write4, &written, "WRITE");
	if (rc == 0 && written != len) {
		fprintf(stderr, "fhmap-nfs-client: WRITE: short write, %u of %u bytes\n", written, len);
		return 1;
	}
	return rc;
}

static uint32_t xdr_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes the attributes asked for by v4_getattr, in bit order: type (1),
 * size (4), fileid (20) in bitmap word 0, numlinks (35) in word 1. */
static void parse_getattr4(struct call *c, void *reply)
{
	COMPOUND4res *r = reply;
	struct attrs *at = c->out;
	nfs_resop4 op;
	const fattr4 *f;
	const unsigned char *p, *end;
	uint32_t mask, mask1;

	c->nfs_status = (int)r->status;
	if (r->status != NFS4_OK || !v4_find(&op, r, OP_GETATTR))
		return;
	f = &op.nfs_resop4_u.opgetattr.GETATTR4res_u.resok4.obj_attributes;
	mask = f->attrmask.bitmap4_len > 0 ? f->attrmask.bitmap4_val[0] : 0;
	mask1 = f->attrmask.bitmap4_len > 1 ? f->attrmask.bitmap4_val[1] : 0;
	p = (const unsigned char *)f->attr_vals.attrlist4_val;
	end = p + f->attr_vals.attrlist4_len;
	if ((mask & 1u << FATTR4_TYPE) && p + 4 <= end) {
		uint32_t t = xdr_u32(p);

		at->type = t == NF4REG ? "reg" : t == NF4DIR ? "dir" : t == NF4LNK ? "lnk" : "other";
		p += 4;
	}
	if ((mask & 1u << FATTR4_SIZE) && p + 8 <= end) {
		at->size = (uint64_t)xdr_u32(p) << 32 | xdr_u32(p + 4);
		p += 8;
	}
	if ((mask & 1u << FATTR4_FILEID) && p + 8 <= end) {
		at->fileid = (uint64_t)xdr_u32(p) << 32 | xdr_u32(p + 4);
		p += 8;
	}
	if ((mask1 & 1u << (FATTR4_NUMLINKS - 32)) && p + 4 <= end)
		at->nlink = xdr_u32(p);
}

static int v4_getattr(struct rpc_context *nfs, struct fh *fh, struct attrs *at)
{
	uint32_t want[2] = { 1u << FATTR4_TYPE | 1u << FATTR4_SIZE | 1u << FATTR4_FILEID,
			     1u << (FATTR4_NUMLINKS - 32) };
	nfs_argop4 ops[2];

	memset(ops, 0, sizeof(ops));
	v4_putfh(&ops[0], fh);
	ops[1].argop = OP_GETATTR;
	ops[1].nfs_argop4_u.opgetattr.attr_request.bitmap4_len = 2;
	ops[1].nfs_argop4_u.opgetattr.attr_request.bitmap4_val = want;
	return v4_compound(nfs, ops, 2, parse_getattr4, at, "GETATTR");
}

/* ---- handle file ------------------------------------------------------------ */

static void fh_print(FILE *f, const char *vers, const char *path, const struct fh *fh)
{
	fprintf(f, "%s %s ", vers, path);
	for (unsigned int i = 0; i < fh->len; i++)
		fprintf(f, "%02x", (unsigned char)fh->data[i]);
	fputc('\n', f);
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Finds the last handle saved for (@vers, @path) in @file. */
static int fh_load(struct fh *out, const char *file, const char *vers, const char *path)
{
	FILE *f = fopen(file, "r");
	char line[8192];
	int found = 0;

	if (!f) {
		fprintf(stderr, "fhmap-nfs-client: %s: %s\n", file, strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		char v[8], p[4096], hex[2 * CLIENT_FH_MAX + 2];
		size_t n;

		if (sscanf(line, "%7s %4095s %257s", v, p, hex) != 3 || strcmp(v, vers) || strcmp(p, path))
			continue;
		n = strlen(hex);
		if (n % 2 || n / 2 > CLIENT_FH_MAX || n == 0 || strspn(hex, "0123456789abcdefABCDEF") != n) {
			fprintf(stderr, "fhmap-nfs-client: %s: bad handle for %s %s\n", file, vers, path);
			fclose(f);
			return 1;
		}
		for (size_t i = 0; i < n / 2; i++)
			out->data[i] = (char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
		out->len = (unsigned int)(n / 2);
		found = 1;
	}
	fclose(f);
	if (!found) {
		fprintf(stderr, "fhmap-nfs-client: %s: no %s handle saved for %s\n", file, vers, path);
		return 1;
	}
	return 0;
}

/* ---- commands ---------------------------------------------------------------- */

static int cmd_take(const struct client_opts *o, const char *file, const char *export, char **paths,
		    int n)
{
	struct rpc_context *v3 = client_connect(o, o->nfs_port, NFS_PROGRAM, NFS_V3);
	struct rpc_context *v4 = v3 ? client_connect(o, o->nfs_port, NFS4_PROGRAM, NFS_V4) : NULL;
	FILE *f = NULL;
	int rc = 1;

	if (!v4)
		goto out;
	f = fopen(file, "a");
	if (!f) {
		fprintf(stderr, "fhmap-nfs-client: %s: %s\n", file, strerror(errno));
		goto out;
	}
	for (int i = 0; i < n; i++) {
		struct fh h3, h4;

		rc = v3_resolve(&h3, o, v3, export, paths[i]);
		if (rc == 0)
			rc = v4_resolve(&h4, v4, export, paths[i]);
		if (rc != 0)
			goto out;
		fh_print(f, "v3", paths[i], &h3);
		fh_print(f, "v4", paths[i], &h4);
		printf("%s: v3 handle %u bytes, v4 handle %u bytes\n", paths[i], h3.len, h4.len);
	}
	rc = 0;
out:
	if (f && fclose(f) != 0 && rc == 0) {
		fprintf(stderr, "fhmap-nfs-client: %s: %s\n", file, strerror(errno));
		rc = 1;
	}
	if (v4)
		rpc_destroy_context(v4);
	if (v3)
		rpc_destroy_context(v3);
	return rc;
}

/* read / write / getattr through a saved handle: no LOOKUP, no MOUNT. */
static int cmd_handle_op(const struct client_opts *o, const char *op, char **argv, int argc)
{
	struct rpc_context *nfs;
	struct fh fh;
	int v4, rc;

	if (argc < 3 || (strcmp(argv[1], "v3") && strcmp(argv[1], "v4")))
		return -1;
	v4 = !strcmp(argv[1], "v4");
	if (fh_load(&fh, argv[0], argv[1], argv[2]))
		return 1;
	nfs = client_connect(o, o->nfs_port, v4 ? NFS4_PROGRAM : NFS_PROGRAM, v4 ? NFS_V4 : NFS_V3);
	if (!nfs)
		return 1;
	if (!strcmp(op, "read") && argc == 3) {
		struct read_out ro = { .buf = malloc(CLIENT_READ_MAX) };

		if (!ro.buf) {
			rc = 1;
		} else {
			rc = v4 ? v4_read(nfs, &fh, &ro) : v3_read(nfs, &fh, &ro);
			if (rc == 0 && fwrite(ro.buf, 1, ro.len, stdout) != ro.len)
				rc = 1;
			free(ro.buf);
		}
	} else if (!strcmp(op, "write") && argc == 5) {
		char *end;
		unsigned long long off = strtoull(argv[3], &end, 10);
		size_t len = strlen(argv[4]);

		if (*end || len > CLIENT_IO_CHUNK) {
			fprintf(stderr, "fhmap-nfs-client: bad offset or data longer than %d bytes\n",
				CLIENT_IO_CHUNK);
			rc = 1;
		} else {
			rc = v4 ? v4_write(nfs, &fh, off, argv[4], (uint32_t)len)
				: v3_write(nfs, &fh, off, argv[4], (uint32_t)len);
		}
	} else if (!strcmp(op, "getattr") && argc == 3) {
		struct attrs at = { .type = "?" };

		rc = v4 ? v4_getattr(nfs, &fh, &at) : v3_getattr(nfs, &fh, &at);
		if (rc == 0)
			printf("type=%s size=%" PRIu64 " fileid=%" PRIu64 " nlink=%u\n", at.type, at.size,
			       at.fileid, at.nlink);
	} else {
		rc = -1;
	}
	rpc_destroy_context(nfs);
	return rc;
}

static int cmd_path_op(const struct client_opts *o, const char *op, char **argv, int argc)
{
	struct rpc_context *nfs;
	int rc;

	if (!(!strcmp(op, "rename") && argc == 3) && !(!strcmp(op, "remove") && argc == 2))
		return -1;
	nfs = client_connect(o, o->nfs_port, NFS_PROGRAM, NFS_V3);
	if (!nfs)
		return 1;
	rc = !strcmp(op, "rename") ? cmd_rename(o, nfs, argv[0], argv[1], argv[2])
				   : cmd_remove(o, nfs, argv[0], argv[1]);
	rpc_destroy_context(nfs);
	return rc;
}

static void usage(void)
{
	fputs("usage: fhmap-nfs-client [-s HOST] [-p NFSPORT] [-m MOUNTPORT] COMMAND ...\n"
	      "  take    HANDLES EXPORT PATH...          save v3 and v4 handles of PATHs\n"
	      "  read    HANDLES v3|v4 PATH              READ through the saved handle\n"
	      "  write   HANDLES v3|v4 PATH OFFSET DATA  WRITE through the saved handle\n"
	      "  getattr HANDLES v3|v4 PATH              GETATTR through the saved handle\n"
	      "  rename  EXPORT FROM TO                  NFSv3 RENAME\n"
	      "  remove  EXPORT PATH                     NFSv3 REMOVE\n", stderr);
}

static int parse_port(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v <= 0 || v > 65535)
		return -1;
	*out = (int)v;
	return 0;
}

int main(int argc, char **argv)
{
	struct client_opts o = { .host = "127.0.0.1", .nfs_port = 2049, .mnt_port = 20048 };
	const char *op;
	int opt, rc;

	while ((opt = getopt(argc, argv, "+s:p:m:h")) != -1) {
		switch (opt) {
		case 's': o.host = optarg; break;
		case 'p':
		case 'm':
			if (parse_port(optarg, opt == 'p' ? &o.nfs_port : &o.mnt_port)) {
				fprintf(stderr, "fhmap-nfs-client: bad port \"%s\"\n", optarg);
				return 1;
			}
			break;
		default: usage(); return opt == 'h' ? 0 : 1;
		}
	}
	if (optind >= argc) {
		usage();
		return 1;
	}
	op = argv[optind];
	argv += optind + 1;
	argc -= optind + 1;
	if (!strcmp(op, "take"))
		rc = argc >= 3 ? cmd_take(&o, argv[0], argv[1], argv + 2, argc - 2) : -1;
	else if (!strcmp(op, "read") || !strcmp(op, "write") || !strcmp(op, "getattr"))
		rc = cmd_handle_op(&o, op, argv, argc);
	else
		rc = cmd_path_op(&o, op, argv, argc);
	if (rc < 0) {
		usage();
		rc = 1;
	}
	return rc;
}
