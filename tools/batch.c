/* fhmapctl: applies many updates in LMDB batches, redoing a batch that the
 * library rolled back because the map grew (-EAGAIN). */
#include <errno.h>
#include <stdlib.h>

#include "fhmapctl.h"

#define BATCH_SIZE 512
#define BATCH_TRIES 4

/* One try of items [from, from + n): fills res[] and returns 0, -EAGAIN to
 * redo, or the error that ended the batch. */
static int batch_try(fhmap *map, size_t from, size_t n, ctl_batch_fn fn, void *ctx, int *res)
{
	int r = fhmap_batch_begin(map);

	if (r != 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		res[k] = fn(ctx, map, from + k);
		if (res[k] == -EAGAIN || res[k] == -EIO || res[k] == -ENOSPC) {
			fhmap_batch_abort(map);
			return res[k];
		}
	}
	return fhmap_batch_commit(map);
}

int ctl_batch_apply(fhmap *map, size_t count, ctl_batch_fn fn, ctl_batch_done_fn done, void *ctx,
                    struct ctl_progress *bar)
{
	int res[BATCH_SIZE];

	for (size_t from = 0; from < count; from += BATCH_SIZE) {
		size_t n = count - from < BATCH_SIZE ? count - from : BATCH_SIZE;
		int r = -EAGAIN;

		for (int t = 0; t < BATCH_TRIES && r == -EAGAIN; t++)
			r = batch_try(map, from, n, fn, ctx, res);
		if (r != 0)
			return r;
		for (size_t k = 0; k < n; k++)
			done(ctx, from + k, res[k]);
		if (bar)
			ctl_progress_update(bar, from + n);
	}
	return 0;
}
