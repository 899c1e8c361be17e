/* fhmap-demo: what libfhmap does for a union filesystem, on real files.
 *
 * Builds a lower and an upper layer in a temporary directory, hands out NFS
 * handles, copies a hardlinked file up, renames a directory, "restarts"
 * (closes and reopens the map), and shows every handle still resolving to
 * the same object -- then unlinks one and shows forged, foreign and stale
 * handles being refused. Uses the public API only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fhmap/fhmap.h>

#define CHECK(call)                                                                                \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		if (rc_ < 0) {                                                                     \
			fprintf(stderr, "fhmap-demo: %s: %s\n", #call, fhmap_strerror(rc_));       \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

struct handle {
	const char *label;
	unsigned char fh[FHMAP_FH_MAX];
	size_t len;
};

static char top[] = "/tmp/fhmap-demo.XXXXXX";

static void path_of(char *out, size_t size, const char *fmt, ...)
{
	char rel[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	snprintf(out, size, "%s/%s", top, rel);
}

static void write_file(const char *rel, const char *text)
{
	char p[4096];
	FILE *f;

	path_of(p, sizeof(p), "%s", rel);
	if (!(f = fopen(p, "w")) || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(p);
		exit(1);
	}
}

static void make_layers(void)
{
	char p[4096], q[4096];

	if (!mkdtemp(top)) {
		perror("mkdtemp");
		exit(1);
	}
	const char *dirs[] = { "lower", "lower/docs", "upper" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		path_of(p, sizeof(p), "%s", dirs[i]);
		if (mkdir(p, 0755) != 0) {
			perror(p);
			exit(1);
		}
	}
	write_file("lower/docs/guide.txt", "guide, as shipped on the lower layer\n");
	write_file("lower/notes.txt", "notes v1 (lower)\n");
	path_of(p, sizeof(p), "lower/notes.txt");
	path_of(q, sizeof(q), "lower/notes-link.txt");
	if (link(p, q) != 0) {
		perror("link");
		exit(1);
	}
}

static void hex(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
}

static void encode(struct handle *h, fhmap *map, uint64_t ino, const char *label)
{
	h->label = label;
	h->len = sizeof(h->fh);
	CHECK(fhmap_encode(h->fh, &h->len, map, ino, 0, 0));
	printf("  %-22s object %-3llu handle %2zu bytes  ", label, (unsigned long long)ino, h->len);
	hex(h->fh, h->len);
	printf("\n");
}

/* Opens where the object lives now and prints its first line. */
static void show(fhmap *map, const struct handle *h)
{
	fhmap_decoded d;
	char line[256] = "";
	int rc = fhmap_decode(&d, map, h->fh, h->len, 0);
	int fd;

	printf("  %-22s ", h->label);
	if (rc) {
		printf("-> %s (%s)\n", fhmap_fh_status_str(d.status), fhmap_strerror(rc));
		return;
	}
	printf("-> object %llu gen %u on %s layer %u", (unsigned long long)d.ino, d.gen,
	       d.state == FHMAP_STATE_UPPER ? "upper" : "lower", d.real.layer);
	if (S_ISREG(d.type)) {
		rc = fhmap_open_real(&fd, map, &d.real, O_RDONLY);
		if (rc == 0) {
			ssize_t n = read(fd, line, sizeof(line) - 1);
			line[n > 0 ? n : 0] = '\0';
			line[strcspn(line, "\n")] = '\0';
			close(fd);
			printf(": \"%s\"", line);
		} else {
			printf(" (open_by_handle_at: %s)", fhmap_strerror(rc));
		}
	}
	printf("\n");
}

static uint64_t bind_path(fhmap *map, uint32_t layer, const char *rel, uint64_t parent, const char *name)
{
	fhmap_realfh fh;
	struct stat st;
	char p[4096];
	uint64_t ino;

	path_of(p, sizeof(p), "lower/%s", rel);
	if (lstat(p, &st) != 0) {
		perror(p);
		exit(1);
	}
	CHECK(fhmap_realfh_from_path(&fh, map, layer, rel));
	CHECK(fhmap_bind(&ino, map, &fh, parent, name, st.st_mode & S_IFMT));
	return ino;
}

static fhmap *open_map(int create)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	char p[4096];
	fhmap *map;

	o.flags = create ? FHMAP_OPEN_CREATE : 0;
	path_of(p, sizeof(p), "map");
	CHECK(fhmap_open(&map, p, &o));
	return map;
}

int main(void)
{
	struct handle h[4], forged, foreign;
	uint32_t lower, upper;
	uint64_t root, docs, guide, notes, link_ino;
	fhmap_realfh fh;
	fhmap_info info;
	char p[4096], cmd[8192];
	fhmap *map, *other;

	make_layers();
	printf("libfhmap %s demo in %s\n\n", fhmap_version(), top);

	map = open_map(1);
	CHECK(fhmap_info_get(&info, map));
	path_of(p, sizeof(p), "lower");
	CHECK(fhmap_layer_add(&lower, map, FHMAP_LAYER_LOWER, p));
	path_of(p, sizeof(p), "upper");
	CHECK(fhmap_layer_add(&upper, map, FHMAP_LAYER_UPPER, p));
	printf("1. New map (generations start at random base %u); layers: lower=%u upper=%u\n", info.gen_base,
	       lower, upper);

	CHECK(fhmap_batch_begin(map));
	root = bind_path(map, lower, "", 0, "");
	docs = bind_path(map, lower, "docs", root, "docs");
	guide = bind_path(map, lower, "docs/guide.txt", docs, "guide.txt");
	notes = bind_path(map, lower, "notes.txt", root, "notes.txt");
	link_ino = bind_path(map, lower, "notes-link.txt", root, "notes-link.txt");
	CHECK(fhmap_batch_commit(map));
	printf("2. Bound the lower tree in one batch; the two hardlinks share object %llu (= %llu)\n",
	       (unsigned long long)notes, (unsigned long long)link_ino);

	printf("3. Handles an NFS client would keep (signed, fit NFSv2's 32 bytes):\n");
	encode(&h[0], map, guide, "docs/guide.txt");
	encode(&h[1], map, notes, "notes.txt");
	encode(&h[2], map, link_ino, "notes-link.txt");
	encode(&h[3], map, docs, "docs/");

	printf("4. Copy-up of notes.txt on first write: intent, copy, commit\n");
	CHECK(fhmap_copyup_begin(map, notes, upper));
	write_file("upper/notes.txt", "notes v2 (written after copy-up)\n");
	CHECK(fhmap_realfh_from_path(&fh, map, upper, "notes.txt"));
	CHECK(fhmap_copyup_commit(map, notes, &fh));

	printf("5. Rename docs/ -> manuals/ (one update of the directory's name hint)\n");
	CHECK(fhmap_rename(map, docs, root, "manuals"));
	CHECK(fhmap_path(p, sizeof(p), map, guide));
	printf("   guide.txt is now at %s\n", p);

	printf("6. Daemon restart: close the map and open it again\n");
	fhmap_close(map);
	map = open_map(0);

	printf("7. Every saved handle resolves to where its object lives now:\n");
	for (int i = 0; i < 4; i++)
		show(map, &h[i]);

	printf("8. Unlink docs/guide.txt: its handle turns into a clean ESTALE\n");
	CHECK(fhmap_unlink(map, guide));
	show(map, &h[0]);

	printf("9. Hostile and foreign handles are refused:\n");
	forged = h[1];
	forged.label = "one bit flipped";
	forged.fh[9] ^= 0x01;
	show(map, &forged);
	path_of(p, sizeof(p), "other-map");
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	o.flags = FHMAP_OPEN_CREATE;
	CHECK(fhmap_open(&other, p, &o));
	path_of(p, sizeof(p), "lower");
	CHECK(fhmap_layer_add(&lower, other, FHMAP_LAYER_LOWER, p));
	root = bind_path(other, lower, "", 0, "");
	encode(&foreign, other, root, "root of another map");
	show(map, &foreign);
	fhmap_close(other);

	fhmap_close(map);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd) != 0)
		fprintf(stderr, "fhmap-demo: could not remove %s\n", top);
	printf("\nDone. Every handle kept working across copy-up, hardlinks, rename and restart.\n");
	return 0;
}
