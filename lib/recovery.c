/* What a crash may have cost, for the caller's recovery.
 *
 * Full mode loses nothing. Lazy and deferred mode lose nothing in a process
 * crash (what they wrote is in the page cache), but a system crash may lose
 * their last updates. So a writer in either mode counts itself in the
 * map's "run" record (the boot it runs in, and how many such writers are
 * open) with a durable commit at open, and counts itself out at a clean
 * close. A later open that finds the record of another boot, or an overlay
 * of another boot (deferred.c), knows that updates may have been lost and
 * sets "recovery" until the caller, having re-filled the map from its
 * layers, calls fhmap_recovery_done(). A writer that crashed in this boot
 * stays counted: the next boot then asks for a recovery that finds nothing
 * lost (the overlay of a crashed deferred writer is committed instead, and
 * counts it out). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "fhmap_int.h"

#define RUN_SIZE 20

void fhmap__boot_id(unsigned char out[16])
{
	char text[64] = { 0 };
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n >= 36) {
		text[36] = '\0';
		if (uuid_parse(text, out) == 0)
			return;
	}
	/* Unknown: as if every open began a new boot (never trusts what a
	 * crash left, asks for recovery after every crash). */
	if (getrandom(out, 16, 0) != 16)
		uuid_generate_random(out);
}

static int run_get(const fhmap__txn *t, fhmap *m, unsigned char boot[16], uint32_t *count)
{
	fhmap__val v;
	int rc = fhmap__get(t, m, FHMAP__DB_META, "run", 3, &v);

	if (rc)
		return rc;
	if (v.size != RUN_SIZE)
		return -EUCLEAN;
	memcpy(boot, v.data, 16);
	*count = fhmap__get_le32((const unsigned char *)v.data + 16);
	return 0;
}

static int run_put(fhmap__wtxn *w, uint32_t count)
{
	unsigned char v[RUN_SIZE];

	if (count == 0) {
		int rc = fhmap__del(w, FHMAP__DB_META, "run", 3);

		return rc == -ENOENT ? 0 : rc;
	}
	memcpy(v, w->m->boot, 16);
	fhmap__put_le32(v + 16, count);
	return fhmap__put(w, FHMAP__DB_META, "run", 3, v, RUN_SIZE);
}

static int set_recovery(fhmap__wtxn *w)
{
	static const unsigned char one = 1;

	return fhmap__put(w, FHMAP__DB_META, "recovery", 8, &one, 1);
}

/* Writers of an earlier boot that never closed: set "recovery". */
static int run_check(fhmap__wtxn *w, uint32_t *count)
{
	unsigned char boot[16];
	int rc = run_get(&w->t, w->m, boot, count);

	if (rc == -ENOENT) {
		*count = 0;
		return 0;
	}
	if (rc)
		return rc;
	if (memcmp(boot, w->m->boot, 16) == 0)
		return 0;
	fhmap__log(w->m, FHMAP_LOG_WARN,
	           "the map was in use in lazy or deferred mode when the system went down: its last "
	           "updates may be lost (fhmap_recovery_needed())");
	*count = 0;
	return set_recovery(w);
}

static int do_run_begin(fhmap__wtxn *w, void *arg)
{
	uint32_t count;
	int rc = run_check(w, &count);

	(void)arg;
	if (rc == 0 && w->m->sync != FHMAP_SYNC_FULL)
		rc = run_put(w, count + 1);
	return rc;
}

int fhmap__run_ended(fhmap__wtxn *w, void *arg)
{
	uint32_t count;
	int rc = run_check(w, &count);

	(void)arg;
	return rc == 0 && count ? run_put(w, count - 1) : rc;
}

static int do_lost(fhmap__wtxn *w, void *arg)
{
	(void)arg;
	return set_recovery(w);
}

int fhmap__run_begin(fhmap *m)
{
	return fhmap__write_durable(m, do_run_begin, NULL);
}

int fhmap__run_lost(fhmap *m)
{
	return fhmap__write_durable(m, do_lost, NULL);
}

int fhmap__close_txn(fhmap__wtxn *w, void *arg)
{
	int rc = fhmap__alloc_release(w);

	(void)arg;
	if (rc == 0 && w->m->sync != FHMAP_SYNC_FULL)
		rc = fhmap__run_ended(w, NULL);
	return rc;
}

int fhmap_recovery_needed(fhmap *map)
{
	unsigned char boot[16];
	uint32_t count;
	fhmap__rtxn r;
	fhmap__val v;
	int rc;

	if (!map)
		return -EINVAL;
	if ((rc = fhmap__read_begin(map, &r)) != 0)
		return rc;
	rc = fhmap__get(&r.t, map, FHMAP__DB_META, "recovery", 8, &v);
	if (rc == -ENOENT) {
		/* A reader cannot set the flag: it looks at the record itself. */
		rc = run_get(&r.t, map, boot, &count);
		rc = rc == 0 ? memcmp(boot, map->boot, 16) != 0 : rc == -ENOENT ? 0 : rc;
	} else if (rc == 0) {
		rc = 1;
	}
	fhmap__read_end(map, &r);
	return rc;
}

static int do_recovered(fhmap__wtxn *w, void *arg)
{
	int rc = fhmap__del(w, FHMAP__DB_META, "recovery", 8);

	(void)arg;
	return rc == -ENOENT ? 0 : rc;
}

int fhmap_recovery_done(fhmap *map)
{
	int rc;

	if (!map)
		return -EINVAL;
	if ((rc = fhmap__write(map, do_recovered, NULL)) != 0)
		return rc;
	return fhmap__write_sync(map);
}
