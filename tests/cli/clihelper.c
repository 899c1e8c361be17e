/* Test helper for the fhmapctl CLI tests: builds and damages maps the way a
 * union filesystem and a crash would. Only "drop-index" goes behind the
 * library's back (raw LMDB), to make the damage fhmapctl must find. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fhmap/fhmap.h>

static int fail(const char *what, int r)
{
	fprintf(stderr, "clihelper: %s: %s\n", what, r < 0 ? fhmap_strerror(r) : "failed");
	return 1;
}

static fhmap *open_map(const char *db)
{
	fhmap *map = NULL;
	int r = fhmap_open(&map, db, NULL);

	if (r != 0)
		fail(db, r);
	return map;
}

/* Binds every entry below @p dir (union path @p upath) in name order. */
static int bind_tree(fhmap *map, uint32_t layer, int dirfd, uint64_t parent, const char *upath)
{
	struct dirent **names;
	int n = scandirat(dirfd, ".", &names, NULL, alphasort), r = 0;

	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char path[4096];
		fhmap_realfh fh;
		struct stat st;
		uint64_t ino;

		if (r || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", strcmp(upath, "/") ? upath : "", name);
		r = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
		if (!r)
			r = fhmap_realfh_at(&fh, layer, dirfd, name);
		if (!r)
			r = fhmap_bind(&ino, map, &fh, parent, name, st.st_mode & S_IFMT);
		if (!r)
			printf("%" PRIu64 " %s\n", ino, path);
		if (!r && S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			r = sub < 0 ? -errno : bind_tree(map, layer, sub, ino, path);
			if (sub >= 0)
				close(sub);
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

/* populate DB LAYER: binds the root and the whole tree of a lower layer in
 * one batch and prints "INO PATH" for each object. */
static int populate(const char *db, const char *layer_arg)
{
	uint32_t layer = (uint32_t)strtoul(layer_arg, NULL, 10);
	fhmap *map = open_map(db);
	fhmap_layer l;
	fhmap_realfh root;
	uint64_t ino;
	int fd, r;

	if (!map)
		return 1;
	r = fhmap_layer_get(&l, map, layer);
	fd = r ? -1 : open(l.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!r && fd < 0)
		r = -errno;
	if (!r)
		r = fhmap_batch_begin(map);
	if (!r)
		r = fhmap_realfh_at(&root, layer, fd, "");
	if (!r)
		r = fhmap_bind(&ino, map, &root, 0, "", S_IFDIR);
	if (!r) {
		printf("%" PRIu64 " /\n", ino);
		r = bind_tree(map, layer, fd, ino, "/");
	}
	if (!r)
		r = fhmap_batch_commit(map);
	if (fd >= 0)
		close(fd);
	fhmap_close(map);
	return r ? fail("populate", r) : 0;
}

static uint32_t upper_layer(fhmap *map)
{
	fhmap_layer ls[16];
	size_t n = 0;

	if (fhmap_layer_list(ls, 16, &n, map) != 0)
		return 0;
	for (size_t i = 0; i < n && i < 16; i++)
		if (ls[i].role == FHMAP_LAYER_UPPER)
			return ls[i].id;
	return 0;
}

/* copyup DB INO [--crash]: records the intent; then, unless --crash (the
 * process "dies" here), commits with the upper file the test put in place. */
static int copyup(const char *db, const char *ino_arg, int crash)
{
	uint64_t ino = strtoull(ino_arg, NULL, 10);
	fhmap *map = open_map(db);
	uint32_t upper;
	char path[4096];
	fhmap_realfh fh;
	int r;

	if (!map)
		return 1;
	upper = upper_layer(map);
	r = fhmap_copyup_begin(map, ino, upper);
	if (!r && !crash) {
		r = fhmap_path(path, sizeof(path), map, ino);
		if (!r)
			r = fhmap_realfh_from_path(&fh, map, upper, path + 1);
		if (!r)
			r = fhmap_copyup_commit(map, ino, &fh);
	}
	fhmap_close(map);
	return r ? fail("copyup", r) : 0;
}

/* unlink DB INO: the union removed the last link. gen-bump DB INO: the
 * union reused the object for a new file. */
/* A rename in the union: only the name hint moves (lower layers do not). */
static int rename_hint(const char *db, const char *ino_arg, const char *parent_arg, const char *name)
{
	fhmap *map = open_map(db);
	int r;

	if (!map)
		return 1;
	r = fhmap_rename(map, strtoull(ino_arg, NULL, 10), strtoull(parent_arg, NULL, 10), name);
	fhmap_close(map);
	return r ? fail("rename", r) : 0;
}

static int forget(const char *db, const char *ino_arg, int bump)
{
	uint64_t ino = strtoull(ino_arg, NULL, 10);
	fhmap *map = open_map(db);
	int r;

	if (!map)
		return 1;
	r = bump ? fhmap_gen_bump(NULL, map, ino) : fhmap_unlink(map, ino);
	fhmap_close(map);
	return r ? fail(bump ? "gen-bump" : "unlink", r) : 0;
}

static int key_holds(const MDB_val *key, const fhmap_realfh *fh)
{
	if (key->mv_size < fh->len)
		return 0;
	for (size_t off = 0; off + fh->len <= key->mv_size; off++)
		if (memcmp((const char *)key->mv_data + off, fh->data, fh->len) == 0)
			return 1;
	return 0;
}

/* How drop_index changes an entry. */
enum damage { DAMAGE_DROP, DAMAGE_FORGE, DAMAGE_REDIRECT, DAMAGE_TRUNCATE };

/* DAMAGE_DROP deletes the entry. DAMAGE_FORGE adds a twin whose key holds a
 * handle no object has (last handle byte flipped): a dangling entry.
 * DAMAGE_REDIRECT points the entry to object @p to (the library stores the
 * object number as 8 bytes, little-endian). DAMAGE_TRUNCATE cuts the stored
 * object number to 4 bytes: an entry that cannot be read. */
static int change_entry(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *c, MDB_val *k, MDB_val *v,
                        const fhmap_realfh *fh, enum damage how, uint64_t to)
{
	unsigned char key[512], val[8];

	if (how == DAMAGE_DROP)
		return mdb_cursor_del(c, 0);
	if (how == DAMAGE_REDIRECT || how == DAMAGE_TRUNCATE) {
		if (v->mv_size != sizeof(val))
			return MDB_BAD_VALSIZE;
		for (int i = 0; i < 8; i++)
			val[i] = (unsigned char)(to >> (8 * i));
		v->mv_data = val;
		if (how == DAMAGE_TRUNCATE)
			v->mv_size = 4;
		return mdb_put(txn, dbi, k, v, 0);
	}
	if (k->mv_size > sizeof(key))
		return MDB_BAD_VALSIZE;
	memcpy(key, k->mv_data, k->mv_size);
	for (size_t off = 0; off + fh->len <= k->mv_size; off++)
		if (memcmp(key + off, fh->data, fh->len) == 0) {
			key[off + fh->len - 1] ^= 0xff;
			break;
		}
	k->mv_data = key;
	return mdb_put(txn, dbi, k, v, MDB_NOOVERWRITE);
}

/* Changes the index entries whose key holds @p fh. The map is one LMDB
 * table; an index entry's key starts with its table byte, 'R' (origin) or
 * 'U' (upper) (docs/data-model.md). */
static int drop_entries(MDB_env *env, const fhmap_realfh *fh, enum damage how, uint64_t to,
                        int *dropped)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, v;
	int r = mdb_txn_begin(env, NULL, 0, &txn);

	if (!r)
		r = mdb_dbi_open(txn, NULL, 0, &dbi);
	if (!r)
		r = mdb_cursor_open(txn, dbi, &c);
	for (int op = MDB_FIRST; !r && (r = mdb_cursor_get(c, &k, &v, op)) == 0; op = MDB_NEXT) {
		char table = *(const char *)k.mv_data;

		if ((table == 'R' || table == 'U') && key_holds(&k, fh) &&
		    change_entry(txn, dbi, c, &k, &v, fh, how, to) == 0) {
			(*dropped)++;
			if (how == DAMAGE_FORGE)
				break; /* the twin sorts near the original */
		}
	}
	if (r == MDB_NOTFOUND)
		r = 0;
	if (!r)
		return mdb_txn_commit(txn);
	mdb_txn_abort(txn);
	return r;
}

/* drop-index DB INO origin|upper: removes the index entry of one real handle
 * of an object directly in LMDB, as a lost write or a buggy tool would.
 * forge-index: adds a dangling twin of that entry instead; redirect-index
 * DB INO origin|upper TO: points the entry to object TO; truncate-index:
 * makes the entry unreadable. */
static int drop_index(const char *db, const char *ino_arg, const char *which, enum damage how,
                      uint64_t to)
{
	fhmap *map = open_map(db);
	fhmap_object o;
	MDB_env *env;
	int dropped = 0, r;

	if (!map)
		return 1;
	r = fhmap_get(&o, map, strtoull(ino_arg, NULL, 10));
	fhmap_close(map);
	if (r)
		return fail("drop-index", r);
	if (mdb_env_create(&env))
		return fail("mdb_env_create", 1);
	r = mdb_env_open(env, db, 0, 0600);
	if (!r)
		r = drop_entries(env, strcmp(which, "upper") ? &o.origin : &o.upper, how, to, &dropped);
	mdb_env_close(env);
	if (r) {
		fprintf(stderr, "clihelper: drop-index: %s\n", mdb_strerror(r));
		return 1;
	}
	if (dropped != 1) {
		fprintf(stderr, "clihelper: drop-index: %d entries held the handle, expected 1\n", dropped);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "populate") == 0)
		return populate(argv[2], argv[3]);
	if (argc >= 4 && strcmp(argv[1], "copyup") == 0)
		return copyup(argv[2], argv[3], argc == 5 && strcmp(argv[4], "--crash") == 0);
	if (argc == 6 && strcmp(argv[1], "rename") == 0)
		return rename_hint(argv[2], argv[3], argv[4], argv[5]);
	if (argc == 4 && strcmp(argv[1], "unlink") == 0)
		return forget(argv[2], argv[3], 0);
	if (argc == 4 && strcmp(argv[1], "gen-bump") == 0)
		return forget(argv[2], argv[3], 1);
	if (argc == 5 && strcmp(argv[1], "drop-index") == 0)
		return drop_index(argv[2], argv[3], argv[4], DAMAGE_DROP, 0);
	if (argc == 5 && strcmp(argv[1], "forge-index") == 0)
		return drop_index(argv[2], argv[3], argv[4], DAMAGE_FORGE, 0);
	if (argc == 5 && strcmp(argv[1], "truncate-index") == 0)
		return drop_index(argv[2], argv[3], argv[4], DAMAGE_TRUNCATE, 0);
	if (argc == 6 && strcmp(argv[1], "redirect-index") == 0)
		return drop_index(argv[2], argv[3], argv[4], DAMAGE_REDIRECT,
		                  strtoull(argv[5], NULL, 10));
	fprintf(stderr, "usage: clihelper populate DB LAYER | copyup DB INO [--crash] |\n"
	                "       unlink DB INO | gen-bump DB INO |\n"
	                "       drop-index DB INO origin|upper | forge-index DB INO origin|upper |\n"
	                "       redirect-index DB INO origin|upper TO | truncate-index DB INO origin|upper\n");
	return 2;
}
