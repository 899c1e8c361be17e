/*
 * Handle helper for the FUSE end-to-end tests, in the style of xfstests'
 * src/open_by_handle.c:
 *
 *   fh_tool save OUT LABEL=PATH...   name_to_handle_at each PATH, write
 *                                    "LABEL TYPE HEX" lines to OUT
 *   fh_tool open MNT IN              open_by_handle_at every saved handle
 *                                    and print one line per handle:
 *                                    "LABEL ok ino=N data=FIRSTLINE" (files),
 *                                    "LABEL ok ino=N dir=PATH" (directories,
 *                                    PATH as the kernel reconnected it),
 *                                    "LABEL ESTALE" or "LABEL ERR errno"
 *   fh_tool forge MNT IN COUNT       open COUNT forged FUSE handles derived
 *                                    from the first saved one (random and
 *                                    neighbouring nodeids, wrong
 *                                    generations, forged parents); exit 1
 *                                    if any of them opens
 *   fh_tool intent DB INO            record a copy-up intent with libfhmap
 *                                    (a daemon that died mid copy-up)
 *   fh_tool state DB INO             print the object's libfhmap state
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fhmap/fhmap.h>

#define HANDLE_MAX 128

struct saved {
	char label[64];
	int type;
	unsigned int len;
	unsigned char data[HANDLE_MAX];
};

static struct file_handle *fh_alloc(void)
{
	struct file_handle *fh = calloc(1, sizeof(*fh) + HANDLE_MAX);

	if (!fh) {
		perror("calloc");
		exit(2);
	}
	fh->handle_bytes = HANDLE_MAX;
	return fh;
}

static int cmd_save(int argc, char **argv)
{
	FILE *out = fopen(argv[0], "w");

	if (!out) {
		perror(argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		struct file_handle *fh = fh_alloc();
		int mnt;

		if (!eq) {
			fprintf(stderr, "fh_tool: expected LABEL=PATH, got %s\n", argv[i]);
			free(fh);
			fclose(out);
			return 2;
		}
		*eq = '\0';
		if (name_to_handle_at(AT_FDCWD, eq + 1, fh, &mnt, 0) < 0) {
			fprintf(stderr, "fh_tool: name_to_handle_at %s: %s\n", eq + 1, strerror(errno));
			free(fh);
			fclose(out);
			return 1;
		}
		fprintf(out, "%s %d ", argv[i], fh->handle_type);
		for (unsigned int j = 0; j < fh->handle_bytes; j++)
			fprintf(out, "%02x", fh->f_handle[j]);
		fputc('\n', out);
		free(fh);
	}
	return fclose(out) ? 1 : 0;
}

/* Reads saved handles; at most cap of them when cap is not 0. */
static struct saved *load(const char *path, size_t *count, size_t cap)
{
	FILE *in = fopen(path, "r");
	char hex[2 * HANDLE_MAX + 1];
	struct saved *s = NULL, one;
	size_t n = 0;

	if (!in) {
		perror(path);
		exit(2);
	}
	while ((!cap || n < cap) && fscanf(in, "%63s %d %256s", one.label, &one.type, hex) == 3) {
		struct saved *ns = realloc(s, (n + 1) * sizeof(*s));

		if (!ns) {
			perror("realloc");
			exit(2);
		}
		s = ns;
		one.len = (unsigned int)strlen(hex) / 2;
		for (unsigned int j = 0; j < one.len; j++)
			sscanf(hex + 2 * j, "%2hhx", &one.data[j]);
		s[n++] = one;
	}
	fclose(in);
	*count = n;
	return s;
}

static int open_mount(const char *mnt)
{
	int fd = open(mnt, O_RDONLY | O_DIRECTORY);

	if (fd < 0) {
		perror(mnt);
		exit(2);
	}
	return fd;
}

static int open_saved(int mfd, const struct saved *s, int flags)
{
	struct file_handle *fh = fh_alloc();
	int fd;

	fh->handle_type = s->type;
	fh->handle_bytes = s->len;
	memcpy(fh->f_handle, s->data, s->len);
	fd = open_by_handle_at(mfd, fh, flags);
	free(fh);
	return fd;
}

static void describe(const char *label, int fd)
{
	struct stat st;
	char buf[64], proc[64], path[4096];

	if (fstat(fd, &st) < 0) {
		printf("%s ERR fstat %s\n", label, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(proc, path, sizeof(path) - 1);
		path[n < 0 ? 0 : n] = '\0';
		printf("%s ok ino=%" PRIu64 " dir=%s\n", label, (uint64_t)st.st_ino, path);
		return;
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		printf("%s ERR read %s\n", label, strerror(errno));
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	printf("%s ok ino=%" PRIu64 " data=%s\n", label, (uint64_t)st.st_ino, buf);
}

static int cmd_open(char **argv)
{
	int mfd = open_mount(argv[0]);
	size_t n;
	struct saved *s = load(argv[1], &n, 0);

	for (size_t i = 0; i < n; i++) {
		int fd = open_saved(mfd, &s[i], O_RDONLY);

		if (fd < 0) {
			if (errno == ESTALE)
				printf("%s ESTALE\n", s[i].label);
			else
				printf("%s ERR %s\n", s[i].label, strerror(errno));
			continue;
		}
		describe(s[i].label, fd);
		close(fd);
	}
	free(s);
	fflush(stdout);
	return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t rnd32(void)
{
	return ((uint32_t)random() << 16) ^ (uint32_t)random();
}

/* FUSE handles: u32 nodeid high, nodeid low, generation [, parent high,
 * parent low, parent generation]; type 0x81 or 0x82 (with parent). */
static int cmd_forge(char **argv)
{
	struct saved s, f, *first;
	int mfd = open_mount(argv[0]);
	long count = strtol(argv[2], NULL, 10);
	long opened = 0, stale = 0, other = 0;
	size_t n;

	first = load(argv[1], &n, 1);
	if (n != 1 || first[0].len < 12) {
		fprintf(stderr, "fh_tool: no FUSE handle in %s\n", argv[1]);
		free(first);
		return 2;
	}
	s = first[0];
	free(first);
	srandom((unsigned int)getpid());
	uint32_t hi, lo, gen;
	memcpy(&hi, s.data, 4);
	memcpy(&lo, s.data + 4, 4);
	memcpy(&gen, s.data + 8, 4);
	for (long i = 0; i < count; i++) {
		f = s;
		switch (i % 6) {
		case 0: /* random nodeid, real generation */
			put32(f.data, rnd32() & 0xff);
			put32(f.data + 4, rnd32());
			break;
		case 1: /* neighbouring nodeids that may exist, wrong generation */
			put32(f.data + 4, lo + (uint32_t)(i % 64) - 32);
			put32(f.data + 8, rnd32());
			break;
		case 2: /* the real object, another generation */
			put32(f.data + 8, gen + 1 + (uint32_t)i);
			break;
		case 3: /* nodeid 0 and all-ones */
			put32(f.data, (i & 1) ? 0xffffffffu : 0);
			put32(f.data + 4, (i & 1) ? 0xffffffffu : 0);
			break;
		case 4: /* connectable handle with a forged parent */
			f.type = 0x82;
			f.len = 24;
			put32(f.data + 12, rnd32() & 0xff);
			put32(f.data + 16, rnd32());
			put32(f.data + 20, rnd32());
			put32(f.data + 8, rnd32());
			break;
		default: /* random bytes of every length */
			f.len = 4 * (1 + (unsigned int)(i % 8));
			for (unsigned int j = 0; j < f.len; j += 4)
				put32(f.data + j, rnd32());
			break;
		}
		int fd = open_saved(mfd, &f, O_RDONLY);
		if (fd >= 0) {
			opened++;
			describe("forged-opened", fd);
			close(fd);
		} else if (errno == ESTALE) {
			stale++;
		} else {
			other++;
			printf("forged handle %ld: %s\n", i, strerror(errno));
		}
	}
	printf("forged: %ld tried, %ld ESTALE, %ld other errors, %ld opened\n", count, stale, other, opened);
	return opened ? 1 : 0;
}

static fhmap *map_open(const char *db)
{
	fhmap *map;
	int r = fhmap_open(&map, db, NULL);

	if (r < 0) {
		fprintf(stderr, "fh_tool: %s: %s\n", db, fhmap_strerror(r));
		exit(2);
	}
	return map;
}

static int cmd_intent(char **argv)
{
	fhmap *map = map_open(argv[0]);
	fhmap_layer layers[16];
	size_t n = 0;
	uint32_t upper = 0;
	int r = fhmap_layer_list(layers, 16, &n, map);

	for (size_t i = 0; r == 0 && i < n && i < 16; i++)
		if (layers[i].role == FHMAP_LAYER_UPPER)
			upper = layers[i].id;
	if (r == 0)
		r = fhmap_copyup_begin(map, strtoull(argv[1], NULL, 10), upper);
	if (r < 0)
		fprintf(stderr, "fh_tool: intent: %s\n", fhmap_strerror(r));
	fhmap_close(map);
	return r < 0;
}

static int cmd_state(char **argv)
{
	static const char *names[] = { "?", "origin", "copyup", "upper", "unlinked" };
	fhmap *map = map_open(argv[0]);
	fhmap_object obj;
	int r = fhmap_get(&obj, map, strtoull(argv[1], NULL, 10));

	if (r == 0)
		printf("%s\n", obj.state >= 1 && obj.state <= 4 ? names[obj.state] : "?");
	else
		fprintf(stderr, "fh_tool: state: %s\n", fhmap_strerror(r));
	fhmap_close(map);
	return r < 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "save"))
		return cmd_save(argc - 2, argv + 2);
	if (argc == 4 && !strcmp(argv[1], "open"))
		return cmd_open(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "forge"))
		return cmd_forge(argv + 2);
	if (argc == 4 && !strcmp(argv[1], "intent"))
		return cmd_intent(argv + 2);
	if (argc == 4 && !strcmp(argv[1], "state"))
		return cmd_state(argv + 2);
	fprintf(stderr, "usage: fh_tool save OUT LABEL=PATH... | open MNT IN | forge MNT IN COUNT |"
	                " intent DB INO | state DB INO\n");
	return 2;
}
