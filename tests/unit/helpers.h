/* Fixture shared by the unit suites: a fresh map in a temporary directory
 * with a real lower and upper layer directory on the same filesystem. */
#ifndef FHMAP_TEST_HELPERS_H
#define FHMAP_TEST_HELPERS_H

#include <check.h>
#include <stdint.h>
#include <sys/stat.h>

#include <fhmap/fhmap.h>

struct fx {
	char dir[256];
	char schema[64];  /* PostgreSQL: the map's schema (fx_pg()) */
	char lower[300];
	char upper[300];
	char db[300];
	fhmap *map;
	uint32_t lower_id, upper_id;
	uint64_t root;
};

extern struct fx fx;

#define CK_OK(call) ck_assert_msg((call) == 0, "%s: %s", #call, fhmap_strerror(call))

/* The suites run on LMDB, or with FHMAP_TEST_BACKEND=pg on the PostgreSQL
 * server whose URI is in the file $FHMAP_TEST_PG (tests/pg/server.sh):
 * every test's map in a schema of its own. */
int fx_pg(void);
/* Registers a test of what only the LMDB backend has (its files, its map
 * size, its once-per-process rule). */
#define FX_LMDB_TEST(tc, t)                  \
	do {                                 \
		if (!fx_pg())                \
			tcase_add_test(tc, t); \
	} while (0)
/* The map's stored pairs, written directly (damage, forgery), on either
 * backend; full keys with their table byte (docs/data-model.md). LMDB:
 * the map must not be open in this process. */
size_t fx_raw_get(const void *key, size_t klen, void *buf, size_t size);
void fx_raw_put(const void *key, size_t klen, const void *val, size_t vlen);
/* Sets the value of every key of table @table to @val. */
void fx_raw_set_table(char table, const void *val, size_t vlen);
void fx_setup(void);
void fx_teardown(void);
/* Opens the fixture's map again with @flags (FHMAP_OPEN_*). */
fhmap *fx_open(unsigned int flags);
/* As fx_open, in sync mode @sync (deferred: flushed every @interval_ms). */
fhmap *fx_open_mode(unsigned int flags, fhmap_sync_mode sync, unsigned int interval_ms);
/* LMDB's last transaction id of the fixture's map (mdb_stat -e: an LMDB
 * environment may be open once per process): a counter of commits. */
uint64_t fx_txnid(void);
/* Runs @fn in a child process and returns what it returned. The child
 * ends with SIGKILL (fx_crash()), whether @fn returns or crashes itself:
 * it leaves nothing behind of the parent's map, and valgrind does not
 * count the heap it inherited as its leaks. */
int fx_in_child(int (*fn)(void *), void *arg);
/* Closes the fixture's map (fx.map NULL until opened again). */
void fx_close(void);
/* A crash of this (child) process: SIGKILL, so that nothing runs at exit
 * (nor a leak check under valgrind). */
__attribute__((noreturn)) void fx_crash(void);
/* Waits until @n threads of this process other than the caller sleep
 * (blocked on a lock or condition), for at most 10 s. */
void fx_wait_sleepers(int n);
void fx_reopen(void);
/* Creates @rel (relative to the fixture dir) with @content; dirs end in '/'. */
void fx_make(const char *rel, const char *content);
void fx_path(char *out, size_t size, const char *rel);
fhmap_realfh fx_realfh(uint32_t layer, const char *rel_in_layer);
/* Binds lower/@rel under @parent as @name with the file's own type. */
uint64_t fx_bind(const char *rel_in_lower, uint64_t parent, const char *name);
/* A synthetic 8-byte real handle (as ext4's FILEID_INO32_GEN) for scale tests. */
fhmap_realfh fx_fake_fh(uint32_t layer, uint64_t n);
void fx_rmrf(const char *path);
Suite *fx_suite(const char *name, TCase **tc);
int fx_run(Suite *s);

#endif
