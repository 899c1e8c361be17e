/* End-to-end resolve on real files: a fresh lower layer of real ext4 files,
 * walked and bound with the batch API, then resolved from handles three
 * ways: libfhmap (decode + open_by_handle_at on the layer), raw
 * open_by_handle_at on ext4, and open_by_handle_at through a kernel overlayfs
 * mount (index=on, nfs_export=on) over the same lower directory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "bench.h"

#define E2E_PER_DIR 1000

typedef struct efile {
	fhmap_realfh real; /* ext4 handle of the file on the lower layer */
	uint64_t ino;
	char rel[40];      /* path below the layer root */
} efile;

typedef struct e2e {
	const bench_opts *o;
	char base[FHMAP_PATH_MAX], lower[FHMAP_PATH_MAX], mnt[FHMAP_PATH_MAX];
	efile *files;
	size_t nfiles;
	fhmap *map;
	int lowerfd, ovlfd;
	struct file_handle **ovl; /* overlayfs handle of each file */
	struct file_handle **raw; /* ext4 handle of each file */
	unsigned char *fhs;       /* libfhmap handle of each file */
	uint64_t *inos;           /* its object number, packed like the handles */
	size_t *sample;
} e2e;

static char ovl_mounted[FHMAP_PATH_MAX];

static void ovl_umount(void)
{
	if (ovl_mounted[0] && umount2(ovl_mounted, 0) == 0)
		ovl_mounted[0] = '\0';
}

static void make_files(e2e *e)
{
	int rc = bench_mkdirs(e->lower);
	for (size_t i = 0; i < e->o->files && !rc; i++) {
		char p[FHMAP_PATH_MAX + 32];
		if (i % E2E_PER_DIR == 0) {
			snprintf(p, sizeof p, "%s/d%04zu", e->lower, i / E2E_PER_DIR);
			rc = mkdir(p, 0755) ? -errno : 0;
		}
		if ((size_t)snprintf(p, sizeof p, "%s/d%04zu/f%07zu", e->lower, i / E2E_PER_DIR, i) >= sizeof p)
			bench_die("e2e: path too long", -ENAMETOOLONG);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, "x\n", 2) != 2)
			rc = -errno;
		if (fd >= 0)
			close(fd);
	}
	if (rc)
		bench_die("e2e: creating files", rc);
}

typedef struct walker {
	e2e *e;
	fhmap *map;
	uint32_t layer;
	size_t in_batch, nfiles;
} walker;

static int walk_bind(walker *w, int dirfd, const char *name, uint64_t parent, uint32_t type, uint64_t *out)
{
	fhmap_realfh fh;
	int rc = fhmap_realfh_at(&fh, w->layer, dirfd, name);
	if (!rc)
		rc = fhmap_bind(out, w->map, &fh, parent, name, type);
	if (rc)
		return rc;
	if (type == S_IFREG && w->e->files) {
		efile *f = &w->e->files[w->nfiles];
		f->real = fh;
		f->ino = *out;
	}
	if (++w->in_batch >= w->e->o->batch) {
		w->in_batch = 0;
		rc = fhmap_batch_commit(w->map);
		if (!rc)
			rc = fhmap_batch_begin(w->map);
	}
	return rc;
}

static int walk_dir(walker *w, int dirfd, const char *dname, uint64_t dino)
{
	DIR *d = fdopendir(dirfd);
	if (!d) {
		close(dirfd);
		return -errno;
	}
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		if (de->d_type != DT_REG)
			continue;
		uint64_t ino;
		rc = walk_bind(w, dirfd, de->d_name, dino, S_IFREG, &ino);
		if (!rc && w->e->files) {
			char *rel = w->e->files[w->nfiles++].rel;
			if ((size_t)snprintf(rel, sizeof w->e->files->rel, "%s/%s", dname, de->d_name) >=
			    sizeof w->e->files->rel)
				rc = -ENAMETOOLONG;
		}
	}
	closedir(d);
	return rc;
}

/* Walks the lower layer once, binding every entry into a new map. */
static double walk_layer(e2e *e, const char *mapdir, fhmap_sync_mode sync, fhmap **out)
{
	fhmap_open_options oo = FHMAP_OPEN_OPTIONS_INIT;
	oo.flags = FHMAP_OPEN_CREATE;
	oo.sync = sync;
	oo.map_size = (uint64_t)e->o->files * 1024 + (64u << 20);
	walker w = { .e = e };
	int rc = fhmap_open(&w.map, mapdir, &oo);
	if (!rc)
		rc = fhmap_layer_add(&w.layer, w.map, FHMAP_LAYER_LOWER, e->lower);
	if (rc)
		bench_die("e2e: map", rc);
	uint64_t t0 = bench_now_ns(), root;
	int top = open(e->lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	rc = top < 0 ? -errno : fhmap_batch_begin(w.map);
	if (!rc)
		rc = walk_bind(&w, top, "", 0, S_IFDIR, &root);
	DIR *d = rc ? NULL : fdopendir(top);
	struct dirent *de;
	while (!rc && d && (de = readdir(d))) {
		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		uint64_t dino;
		rc = walk_bind(&w, top, de->d_name, root, S_IFDIR, &dino);
		int fd = rc ? -1 : openat(top, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (!rc)
			rc = fd < 0 ? -errno : walk_dir(&w, fd, de->d_name, dino);
	}
	if (d)
		closedir(d);
	if (!rc)
		rc = fhmap_batch_commit(w.map);
	double sec = (double)(bench_now_ns() - t0) / 1e9;
	/* The map is created large enough not to grow during the walk; a
	 * rolled-back batch (-EAGAIN) would be reported here, not hidden. */
	if (rc)
		bench_die("e2e: walk and bind", rc);
	if (e->files)
		e->nfiles = w.nfiles;
	*out = w.map;
	return (double)(e->o->files + e->o->files / E2E_PER_DIR + 2) / sec;
}

static struct file_handle *fh_alloc(unsigned int len)
{
	struct file_handle *h = malloc(sizeof *h + len);
	if (!h)
		bench_die("out of memory", -ENOMEM);
	h->handle_bytes = len;
	return h;
}

static int ovl_setup(e2e *e)
{
	char upper[FHMAP_PATH_MAX], work[FHMAP_PATH_MAX], opts[3 * FHMAP_PATH_MAX + 64];
	bench_path_join(upper, e->base, "upper");
	bench_path_join(work, e->base, "work");
	if (bench_mkdirs(upper) || bench_mkdirs(work) || bench_mkdirs(e->mnt))
		return -EIO;
	snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s,index=on,nfs_export=on", e->lower, upper,
	         work);
	if (mount("overlay", e->mnt, "overlay", 0, opts) != 0) {
		int err = errno;
		printf("@skip e2e overlayfs mount failed (%s); overlay column left out\n", strerror(err));
		return -err;
	}
	snprintf(ovl_mounted, sizeof ovl_mounted, "%s", e->mnt);
	e->ovlfd = open(e->mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	e->ovl = calloc(e->nfiles, sizeof *e->ovl);
	if (e->ovlfd < 0 || !e->ovl)
		return -errno;
	for (size_t i = 0; i < e->nfiles; i++) {
		int mid;
		e->ovl[i] = fh_alloc(MAX_HANDLE_SZ);
		if (name_to_handle_at(e->ovlfd, e->files[i].rel, e->ovl[i], &mid, 0) != 0)
			return -errno;
	}
	printf("@val e2e overlay_handle_bytes %u B (ext4 handle %u B, libfhmap %u B)\n", e->ovl[0]->handle_bytes,
	       e->files[0].real.len, FHMAP_FH_SIZE);
	return 0;
}

static void handles_setup(e2e *e)
{
	e->raw = calloc(e->nfiles, sizeof *e->raw);
	e->fhs = malloc(e->nfiles * FHMAP_FH_SIZE);
	e->inos = malloc(e->nfiles * sizeof *e->inos);
	if (!e->raw || !e->fhs || !e->inos)
		bench_die("out of memory", -ENOMEM);
	for (size_t i = 0; i < e->nfiles; i++) {
		const fhmap_realfh *r = &e->files[i].real;
		e->raw[i] = fh_alloc(r->len);
		e->raw[i]->handle_type = r->type;
		memcpy(e->raw[i]->f_handle, r->data, r->len);
		size_t len = FHMAP_FH_SIZE;
		e->inos[i] = e->files[i].ino;
		int rc = fhmap_encode(e->fhs + i * FHMAP_FH_SIZE, &len, e->map, e->inos[i], 0, 0);
		if (rc)
			bench_die("e2e: fhmap_encode", rc);
	}
}

static int close_fd(int fd)
{
	return fd < 0 ? -errno : close(fd) == 0 ? 0 : -errno;
}

static int op_raw(void *tctx, size_t i)
{
	e2e *e = tctx;
	return close_fd(open_by_handle_at(e->lowerfd, e->raw[e->sample[i]], O_RDONLY | O_CLOEXEC));
}

static int op_ovl(void *tctx, size_t i)
{
	e2e *e = tctx;
	return close_fd(open_by_handle_at(e->ovlfd, e->ovl[e->sample[i]], O_RDONLY | O_CLOEXEC));
}

static int op_fhmap(void *tctx, size_t i)
{
	e2e *e = tctx;
	size_t f = e->sample[i];
	fhmap_decoded d;
	int fd, rc = fhmap_decode(&d, e->map, e->fhs + f * FHMAP_FH_SIZE, FHMAP_FH_SIZE, 0);
	if (!rc && d.ino != e->inos[f])
		rc = -EPROTO;
	if (!rc)
		rc = fhmap_open_real(&fd, e->map, &d.real, O_RDONLY);
	return rc ? rc : close(fd) == 0 ? 0 : -errno;
}

static const bench_kind k_raw = { "e2e_ext4_open_by_handle", op_raw, NULL, NULL };
static const bench_kind k_ovl = { "e2e_overlayfs_open_by_handle", op_ovl, NULL, NULL };
/* The decode alone, between the resolves: what libfhmap adds to each. */
static int op_decode_only(void *tctx, size_t i)
{
	e2e *e = tctx;
	size_t f = e->sample[i];
	fhmap_decoded d;
	int rc = fhmap_decode(&d, e->map, e->fhs + f * FHMAP_FH_SIZE, FHMAP_FH_SIZE, 0);
	return rc ? rc : d.ino == e->inos[f] ? 0 : -EPROTO;
}

static const bench_kind k_fhmap = { "e2e_fhmap_decode_open_real", op_fhmap, NULL, NULL };
static const bench_kind k_decode = { "e2e_fhmap_decode_only", op_decode_only, NULL, NULL };

static void measure_all(e2e *e, int have_ovl)
{
	const bench_kind *kinds[3] = { &k_fhmap, &k_raw, &k_ovl };
	unsigned int nk = have_ovl ? 3 : 2;
	bench_series hot[3], cold[3], dec = { .n = 0 };
	memset(hot, 0, sizeof hot);
	memset(cold, 0, sizeof cold);
	size_t ops = e->o->ops < 100000 ? e->o->ops : 100000;
	size_t ncold = e->o->cold < e->nfiles ? e->o->cold : e->nfiles;
	e->sample = malloc((ops > e->nfiles ? ops : e->nfiles) * sizeof *e->sample);
	if (!e->sample)
		bench_die("out of memory", -ENOMEM);
	uint64_t rs = e->o->seed ^ 0xe2e;
	for (unsigned int rep = 0; rep < e->o->reps; rep++) {
		fprintf(stderr, "  [e2e] repetition %u/%u\n", rep + 1, e->o->reps);
		for (size_t i = 0; i < ops; i++)
			e->sample[i] = (size_t)(bench_rand(&rs) % e->nfiles);
		void *ctx[1] = { e };
		for (unsigned int k = 0; k < nk; k++) {
			bench_result r;
			bench_measure(&r, kinds[k], ctx, 1, ops);
			snprintf(hot[k].name, sizeof hot[k].name, "%s_hot", kinds[k]->name);
			hot[k].threads = 1;
			bench_series_add(&hot[k], &r);
		}
		bench_result rd;
		bench_measure(&rd, &k_decode, ctx, 1, ops);
		snprintf(dec.name, sizeof dec.name, "%s_hot", k_decode.name);
		dec.threads = 1;
		bench_series_add(&dec, &rd);
		for (unsigned int k = 0; k < nk; k++) {
			/* Distinct files in random order: every resolve starts cold. */
			for (size_t i = 0; i < e->nfiles; i++)
				e->sample[i] = i;
			for (size_t i = 0; i < ncold; i++) {
				size_t j = i + (size_t)(bench_rand(&rs) % (e->nfiles - i)), t = e->sample[i];
				e->sample[i] = e->sample[j];
				e->sample[j] = t;
			}
			int rc = bench_drop_caches();
			if (rc)
				bench_die("drop_caches", rc);
			bench_result r;
			bench_measure_once(&r, kinds[k], e, ncold);
			snprintf(cold[k].name, sizeof cold[k].name, "%s_cold", kinds[k]->name);
			cold[k].threads = 1;
			bench_series_add(&cold[k], &r);
		}
	}
	for (unsigned int k = 0; k < nk; k++) {
		bench_series_print(&hot[k], "e2e");
		bench_series_print(&cold[k], "e2e");
	}
	bench_series_print(&dec, "e2e");
	bench_ratio_print("e2e", "fhmap_over_ext4_hot", &hot[0], &hot[1]);
	bench_ratio_print("e2e", "fhmap_over_ext4_cold", &cold[0], &cold[1]);
	if (have_ovl) {
		bench_ratio_print("e2e", "fhmap_over_overlayfs_hot", &hot[0], &hot[2]);
		bench_ratio_print("e2e", "fhmap_over_overlayfs_cold", &cold[0], &cold[2]);
	}
	free(e->sample);
}

void bench_e2e_run(const bench_opts *o)
{
	if (geteuid() != 0) {
		printf("@skip e2e needs root (open_by_handle_at, mount, drop_caches): skipped\n");
		return;
	}
	if (o->files < 2) {
		printf("@skip e2e --files 0: skipped\n");
		return;
	}
	e2e e = { .o = o, .lowerfd = -1, .ovlfd = -1 };
	bench_path_join(e.base, o->dir, "e2e");
	bench_path_join(e.lower, e.base, "lower");
	bench_path_join(e.mnt, e.base, "mnt");
	atexit(ovl_umount);
	bench_rmtree(e.base);
	struct statfs sf;
	fprintf(stderr, "[e2e] creating %zu files\n", o->files);
	make_files(&e);
	if (statfs(e.lower, &sf) == 0)
		printf("@val e2e lower_fs_magic 0x%lx (ext4 is 0xef53)\n", (unsigned long)sf.f_type);
	e.files = calloc(o->files, sizeof *e.files);
	if (!e.files)
		bench_die("out of memory", -ENOMEM);
	char mapdir[FHMAP_PATH_MAX];
	fhmap *lazy;
	bench_path_join(mapdir, e.base, "map-lazy");
	efile *keep = e.files;
	e.files = NULL;
	double lazy_rate = walk_layer(&e, mapdir, FHMAP_SYNC_LAZY, &lazy);
	fhmap_close(lazy);
	e.files = keep;
	bench_path_join(mapdir, e.base, "map-full");
	double full_rate = walk_layer(&e, mapdir, FHMAP_SYNC_FULL, &e.map);
	printf("@val e2e walk_bind_objects_per_s_full %.0f objects/s (readdir + name_to_handle_at + bind, "
	       "batch %zu, %zu files)\n", full_rate, o->batch, o->files);
	printf("@val e2e files %zu files\n", e.nfiles);
	printf("@val e2e walk_bind_objects_per_s_lazy %.0f objects/s\n", lazy_rate);
	e.lowerfd = open(e.lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e.lowerfd < 0)
		bench_die("e2e: open lower", -errno);
	handles_setup(&e);
	int have_ovl = ovl_setup(&e) == 0;
	measure_all(&e, have_ovl);
	if (e.ovlfd >= 0)
		close(e.ovlfd);
	ovl_umount();
	close(e.lowerfd);
	fhmap_close(e.map);
	for (size_t i = 0; i < e.nfiles; i++) {
		free(e.raw[i]);
		if (e.ovl)
			free(e.ovl[i]);
	}
	free(e.raw);
	free(e.ovl);
	free(e.fhs);
	free(e.inos);
	free(e.files);
	bench_rmtree(e.base);
}
