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
	char lower[300];
	char upper[300];
	char db[300];
	fhmap *map;
	uint32_t lower_id, upper_id;
	uint64_t root;
};

extern struct fx fx;

#define CK_OK(call) ck_assert_msg((call) == 0, "%s: %s", #call, fhmap_strerror(call))

void fx_setup(void);
void fx_teardown(void);
/* Opens the fixture's map again with @flags (FHMAP_OPEN_*). */
fhmap *fx_open(unsigned int flags);
/* As fx_open, in sync mode @sync (deferred: flushed every @interval_ms). */
fhmap *fx_open_mode(unsigned int flags, fhmap_sync_mode sync, unsigned int interval_ms);
/* LMDB's last transaction id of the fixture's map, read by a child process
 * (an LMDB environment may be open once per process): commits counter. */
uint64_t fx_txnid(void);
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
