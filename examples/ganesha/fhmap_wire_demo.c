/*
 * fhmap-wire-demo: walks libfhmap's own handles through the path an NFS
 * server takes (encode -> wire -> decode -> open) on a real map and real
 * files, and checks the NFS status every case must produce under NFSv3 and
 * NFSv4 within Ganesha's 59/123-byte budgets.
 *
 *   fhmap-wire-demo [WORKDIR]
 *
 * Creates a lower and an upper layer and a map in a new temporary directory
 * (under WORKDIR or $TMPDIR) and removes it at the end. Exit status 0 when
 * every case gave the expected status, 1 otherwise, 77 when the machine
 * cannot run it (not root: open_by_handle_at needs CAP_DAC_READ_SEARCH; or
 * a filesystem without file handles).
 */
#define _GNU_SOURCE
#include "fhmap_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEMO_SKIP 77
#define DEMO_TIMING_LOOPS 20000

struct demo {
	char base[4000];
	char lower[4096];
	char upper[4096];
	fhmap *map;
	uint32_t lower_id;
	uint32_t upper_id;
	int failures;
};

static int demo_write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(text);
	int ok;

	if (fd < 0)
		return -errno;
	ok = write(fd, text, len) == (ssize_t)len;
	if (close(fd) != 0 || !ok)
		return -EIO;
	return 0;
}

static int demo_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void demo_check(struct demo *d, const char *what, fhmap_wire_proto proto,
		       fhmap_wire_nfsstat got, fhmap_wire_nfsstat want, const fhmap_decoded *dec)
{
	const char *mark = got == want ? "ok  " : "FAIL";

	printf("%s %-44s %s %-20s (fhmap: %s)\n", mark, what, proto == FHMAP_WIRE_NFS3 ? "v3" : "v4",
	       fhmap_wire_nfsstat_str(got, proto), dec ? fhmap_fh_status_str(dec->status) : "-");
	if (got != want) {
		printf("     expected %s\n", fhmap_wire_nfsstat_str(want, proto));
		d->failures++;
	}
}

/* Decodes @fh, opens its file and compares the content with @want. */
static void demo_expect_content(struct demo *d, const char *what, fhmap_wire_proto proto,
				const unsigned char *fh, size_t len, const char *want)
{
	fhmap_decoded dec;
	char buf[256];
	int fd = -1;
	fhmap_wire_nfsstat st = fhmap_wire_open(&fd, &dec, d->map, fh, len, O_RDONLY, proto);
	ssize_t n;

	demo_check(d, what, proto, st, FHMAP_NFS_OK, &dec);
	if (st != FHMAP_NFS_OK)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	if (strcmp(buf, want) != 0) {
		printf("FAIL %s: read \"%s\", expected \"%s\"\n", what, buf, want);
		d->failures++;
	}
}

static void demo_expect_status(struct demo *d, const char *what, fhmap_wire_proto proto,
			       const unsigned char *fh, size_t len, fhmap_wire_nfsstat want)
{
	fhmap_decoded dec;
	int fd = -1;
	fhmap_wire_nfsstat st = fhmap_wire_open(&fd, &dec, d->map, fh, len, O_RDONLY, proto);

	if (st == FHMAP_NFS_OK)
		close(fd);
	demo_check(d, what, proto, st, want, &dec);
}

/* Takes the real handle of @rel on @layer and binds it as an object. */
static int demo_bind(uint64_t *ino, struct demo *d, const char *rel, uint64_t parent,
		     const char *name, uint32_t type)
{
	fhmap_realfh fh;
	int rc = fhmap_realfh_from_path(&fh, d->map, d->lower_id, rel);

	if (rc == 0)
		rc = fhmap_bind(ino, d->map, &fh, parent, name, type);
	if (rc != 0)
		fprintf(stderr, "fhmap-wire-demo: bind %s: %s\n", rel, fhmap_strerror(rc));
	return rc;
}

struct wirefh {
	unsigned char b[FHMAP_WIRE_GANESHA_V4_MAX + 8];
	size_t len;
};

static int demo_encode(struct demo *d, struct wirefh *out, uint64_t ino, unsigned int flags,
		       fhmap_wire_proto proto)
{
	fhmap_wire_nfsstat st;

	out->len = sizeof(out->b);
	st = fhmap_wire_encode(out->b, &out->len, d->map, ino, flags, proto);
	if (st != FHMAP_NFS_OK) {
		printf("FAIL encode object %llu: %s\n", (unsigned long long)ino,
		       fhmap_wire_nfsstat_str(st, proto));
		d->failures++;
		return -1;
	}
	if (out->len > fhmap_wire_budget(proto)) {
		printf("FAIL handle of %zu bytes exceeds the budget of %zu\n", out->len, fhmap_wire_budget(proto));
		d->failures++;
		return -1;
	}
	return 0;
}

static int demo_setup(struct demo *d, const char *workdir)
{
	fhmap_open_options opts = FHMAP_OPEN_OPTIONS_INIT;
	char path[8192];
	int rc;

	snprintf(d->base, sizeof(d->base), "%s/fhmap-wire-demo.XXXXXX", workdir);
	if (!mkdtemp(d->base)) {
		d->base[0] = '\0';
		fprintf(stderr, "fhmap-wire-demo: mkdtemp in %s: %s\n", workdir, strerror(errno));
		return -1;
	}
	snprintf(d->lower, sizeof(d->lower), "%s/lower", d->base);
	snprintf(d->upper, sizeof(d->upper), "%s/upper", d->base);
	snprintf(path, sizeof(path), "%s/d", d->lower);
	if (mkdir(d->lower, 0755) || mkdir(d->upper, 0755) || mkdir(path, 0755)) {
		fprintf(stderr, "fhmap-wire-demo: mkdir: %s\n", strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/a.txt", d->lower);
	rc = demo_write_file(path, "lower-a");
	if (rc == 0) {
		char link2[8192];

		snprintf(link2, sizeof(link2), "%s/b.txt", d->lower);
		rc = link(path, link2) ? -errno : 0;
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/d/c.txt", d->lower);
		rc = demo_write_file(path, "lower-c");
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/e.txt", d->lower);
		rc = demo_write_file(path, "lower-e");
	}
	if (rc != 0) {
		fprintf(stderr, "fhmap-wire-demo: creating files: %s\n", strerror(-rc));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/map", d->base);
	opts.flags = FHMAP_OPEN_CREATE;
	opts.sync = FHMAP_SYNC_LAZY;
	rc = fhmap_open(&d->map, path, &opts);
	if (rc == 0)
		rc = fhmap_layer_add(&d->lower_id, d->map, FHMAP_LAYER_LOWER, d->lower);
	if (rc == 0)
		rc = fhmap_layer_add(&d->upper_id, d->map, FHMAP_LAYER_UPPER, d->upper);
	if (rc != 0) {
		fprintf(stderr, "fhmap-wire-demo: map: %s\n", fhmap_strerror(rc));
		return -1;
	}
	return 0;
}

/* Copies object @ino (lower file @name) up: intent, upper file, commit. */
static int demo_copyup(struct demo *d, uint64_t ino, const char *name, const char *content)
{
	char path[8192];
	fhmap_realfh up;
	int rc = fhmap_copyup_begin(d->map, ino, d->upper_id);

	snprintf(path, sizeof(path), "%s/%s", d->upper, name);
	if (rc == 0)
		rc = demo_write_file(path, content);
	if (rc == 0)
		rc = fhmap_realfh_from_path(&up, d->map, d->upper_id, name);
	if (rc == 0)
		rc = fhmap_copyup_commit(d->map, ino, &up);
	if (rc != 0)
		fprintf(stderr, "fhmap-wire-demo: copy-up of %s: %s\n", name, fhmap_strerror(rc));
	return rc;
}

/* A handle made by another map of the same files must be STALE here. */
static int demo_foreign(struct demo *d, struct wirefh *out)
{
	fhmap_open_options opts = FHMAP_OPEN_OPTIONS_INIT;
	char path[8192];
	fhmap *other = NULL;
	fhmap_realfh fh;
	uint64_t root;
	uint32_t lid;
	int rc;

	snprintf(path, sizeof(path), "%s/other-map", d->base);
	opts.flags = FHMAP_OPEN_CREATE;
	opts.sync = FHMAP_SYNC_LAZY;
	rc = fhmap_open(&other, path, &opts);
	if (rc == 0)
		rc = fhmap_layer_add(&lid, other, FHMAP_LAYER_LOWER, d->lower);
	if (rc == 0)
		rc = fhmap_realfh_from_path(&fh, other, lid, "");
	if (rc == 0)
		rc = fhmap_bind(&root, other, &fh, 0, "", S_IFDIR);
	if (rc == 0)
		rc = fhmap_realfh_from_path(&fh, other, lid, "d/c.txt");
	if (rc == 0)
		rc = fhmap_bind(&root, other, &fh, root, "c.txt", S_IFREG);
	out->len = sizeof(out->b);
	if (rc == 0)
		rc = fhmap_encode(out->b, &out->len, other, root, 0, 0);
	fhmap_close(other);
	if (rc != 0)
		fprintf(stderr, "fhmap-wire-demo: second map: %s\n", fhmap_strerror(rc));
	return rc;
}

static int demo_api_fail(const char *what, int rc)
{
	fprintf(stderr, "fhmap-wire-demo: %s: %s\n", what, fhmap_strerror(rc));
	return -1;
}

static double demo_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints the cost of decode+open+close of one handle (no assertion: the
 * figure is for the README, targets live in bench/). */
static void demo_timing(struct demo *d, const struct wirefh *fh)
{
	double t0 = demo_now();
	fhmap_decoded dec;

	for (int i = 0; i < DEMO_TIMING_LOOPS; i++) {
		int fd;

		if (fhmap_wire_open(&fd, &dec, d->map, fh->b, fh->len, O_RDONLY, FHMAP_WIRE_NFS3) != FHMAP_NFS_OK) {
			d->failures++;
			return;
		}
		close(fd);
	}
	printf("decode+open+close of a copied-up file: %.2f us (%d runs, page cache warm)\n",
	       (demo_now() - t0) * 1e6 / DEMO_TIMING_LOOPS, DEMO_TIMING_LOOPS);
}

static int demo_run(struct demo *d)
{
	static const fhmap_wire_proto protos[] = { FHMAP_WIRE_NFS3, FHMAP_WIRE_NFS4 };
	uint64_t root, a, b, dir, c, e;
	struct wirefh ha[2], hac[2], hb[2], hc[2], he[2], hdir[2], bad, foreign;
	int rc;

	if (demo_bind(&root, d, "", 0, "", S_IFDIR) || demo_bind(&a, d, "a.txt", root, "a.txt", S_IFREG) ||
	    demo_bind(&b, d, "b.txt", root, "b.txt", S_IFREG) || demo_bind(&dir, d, "d", root, "d", S_IFDIR) ||
	    demo_bind(&c, d, "d/c.txt", dir, "c.txt", S_IFREG) || demo_bind(&e, d, "e.txt", root, "e.txt", S_IFREG))
		return -1;
	printf("objects: root %llu, a.txt %llu, b.txt %llu (hardlink), d %llu, d/c.txt %llu, e.txt %llu\n",
	       (unsigned long long)root, (unsigned long long)a, (unsigned long long)b, (unsigned long long)dir,
	       (unsigned long long)c, (unsigned long long)e);
	if (a != b) {
		printf("FAIL hardlinks a.txt and b.txt got different objects\n");
		d->failures++;
	}
	for (int i = 0; i < 2; i++) {
		if (demo_encode(d, &ha[i], a, 0, protos[i]) || demo_encode(d, &hac[i], a, FHMAP_FH_CONNECTABLE, protos[i]) ||
		    demo_encode(d, &hb[i], b, 0, protos[i]) || demo_encode(d, &hc[i], c, 0, protos[i]) ||
		    demo_encode(d, &he[i], e, 0, protos[i]) || demo_encode(d, &hdir[i], dir, 0, protos[i]))
			return -1;
	}
	printf("handle sizes: %zu bytes, %zu connectable; budgets %zu (v3) / %zu (v4)\n", ha[0].len, hac[0].len,
	       fhmap_wire_budget(FHMAP_WIRE_NFS3), fhmap_wire_budget(FHMAP_WIRE_NFS4));

	for (int i = 0; i < 2; i++) {
		fhmap_wire_proto p = protos[i];

		demo_expect_content(d, "lower file", p, ha[i].b, ha[i].len, "lower-a");
		demo_expect_content(d, "lower file, connectable handle", p, hac[i].b, hac[i].len, "lower-a");
		demo_expect_status(d, "directory", p, hdir[i].b, hdir[i].len, FHMAP_NFS_OK);
	}
	if (demo_copyup(d, a, "a.txt", "upper-a"))
		return -1;
	rc = fhmap_rename(d->map, c, root, "c-moved.txt");
	if (rc)
		return demo_api_fail("fhmap_rename", rc);
	for (int i = 0; i < 2; i++) {
		fhmap_wire_proto p = protos[i];

		demo_expect_content(d, "old handle after copy-up", p, ha[i].b, ha[i].len, "upper-a");
		demo_expect_content(d, "hardlink sibling's handle after copy-up", p, hb[i].b, hb[i].len, "upper-a");
		demo_expect_content(d, "handle after rename to another parent", p, hc[i].b, hc[i].len, "lower-c");

		bad = ha[i];
		memset(bad.b + bad.len, 0, 4);
		bad.len += 4;
		demo_expect_content(d, "handle with trailing zero padding", p, bad.b, bad.len, "upper-a");

		bad = ha[i];
		bad.b[bad.len - 1] ^= 0x01;
		demo_expect_status(d, "MAC bit flipped", p, bad.b, bad.len, FHMAP_NFSERR_BADHANDLE);
		bad = ha[i];
		bad.b[8] ^= 0x01;
		demo_expect_status(d, "object number changed (forged)", p, bad.b, bad.len, FHMAP_NFSERR_BADHANDLE);
		demo_expect_status(d, "truncated by 4 bytes", p, ha[i].b, ha[i].len - 4, FHMAP_NFSERR_BADHANDLE);
		demo_expect_status(d, "empty handle", p, ha[i].b, 0, FHMAP_NFSERR_BADHANDLE);
		memset(bad.b, 0xA5, sizeof(bad.b));
		demo_expect_status(d, "28 bytes of garbage", p, bad.b, FHMAP_FH_SIZE, FHMAP_NFSERR_BADHANDLE);
		memset(bad.b, 0, sizeof(bad.b));
		memcpy(bad.b, ha[i].b, ha[i].len);
		bad.len = fhmap_wire_budget(p) + 1;
		demo_expect_status(d, "longer than the protocol's budget", p, bad.b, bad.len, FHMAP_NFSERR_BADHANDLE);
	}
	bad.len = sizeof(bad.b);
	rc = fhmap_encode(bad.b, &bad.len, d->map, a, 0, FHMAP_FH_UNSIGNED);
	if (rc)
		return demo_api_fail("fhmap_encode unsigned", rc);
	demo_expect_status(d, "unsigned handle", FHMAP_WIRE_NFS3, bad.b, bad.len, FHMAP_NFSERR_BADHANDLE);
	if (demo_foreign(d, &foreign))
		return -1;
	demo_expect_status(d, "handle of another map", FHMAP_WIRE_NFS4, foreign.b, foreign.len,
			   FHMAP_NFSERR_STALE);

	demo_timing(d, &ha[0]);

	/* e.txt vanishes from its layer behind the map's back. */
	{
		char path[8192];

		snprintf(path, sizeof(path), "%s/e.txt", d->lower);
		if (unlink(path) != 0)
			return demo_api_fail("unlink e.txt", -errno);
		demo_expect_status(d, "file removed from its layer", FHMAP_WIRE_NFS3, he[0].b, he[0].len,
				   FHMAP_NFSERR_STALE);
	}
	rc = fhmap_gen_bump(NULL, d->map, c);
	if (rc)
		return demo_api_fail("fhmap_gen_bump", rc);
	rc = fhmap_unlink(d->map, a);
	if (rc)
		return demo_api_fail("fhmap_unlink", rc);
	for (int i = 0; i < 2; i++) {
		fhmap_wire_proto p = protos[i];

		demo_expect_status(d, "generation bumped", p, hc[i].b, hc[i].len, FHMAP_NFSERR_STALE);
		demo_expect_status(d, "unlinked object", p, ha[i].b, ha[i].len, FHMAP_NFSERR_STALE);
		demo_expect_status(d, "unlinked object, hardlink sibling's handle", p, hb[i].b, hb[i].len,
				   FHMAP_NFSERR_STALE);
	}
	rc = fhmap_purge(d->map, a);
	if (rc)
		return demo_api_fail("fhmap_purge", rc);
	demo_expect_status(d, "purged object (unknown number)", FHMAP_WIRE_NFS3, ha[0].b, ha[0].len,
			   FHMAP_NFSERR_STALE);
	return 0;
}

int main(int argc, char **argv)
{
	const char *workdir = argc > 1 ? argv[1] : getenv("TMPDIR");
	struct demo d = { .failures = 0 };
	int rc;

	if (argc > 2) {
		fprintf(stderr, "usage: fhmap-wire-demo [WORKDIR]\n");
		return 1;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: fhmap-wire-demo needs root (open_by_handle_at needs CAP_DAC_READ_SEARCH)\n");
		return DEMO_SKIP;
	}
	if (demo_setup(&d, workdir && *workdir ? workdir : "/tmp") != 0) {
		rc = 1;
	} else {
		fhmap_realfh probe;

		rc = fhmap_realfh_from_path(&probe, d.map, d.lower_id, "");
		if (rc == -EOPNOTSUPP) {
			fprintf(stderr, "SKIP: %s does not export file handles\n", d.lower);
			rc = DEMO_SKIP;
		} else {
			rc = demo_run(&d) != 0 || d.failures ? 1 : 0;
		}
	}
	fhmap_close(d.map);
	if (d.base[0] && nftw(d.base, demo_rm, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "fhmap-wire-demo: cannot remove %s\n", d.base);
	if (rc == 1)
		printf("%d case(s) failed\n", d.failures);
	else if (rc == 0)
		printf("all cases passed\n");
	return rc;
}
