/* Real handles: name_to_handle_at / open_by_handle_at on a layer, so that
 * consumers need not repeat that code. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "fhmap_int.h"

union fh_buf {
	struct file_handle fh;
	unsigned char raw[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

static int take_handle(fhmap_realfh *out, uint32_t layer, int dirfd, const char *name, int flags)
{
	union fh_buf b;
	int mount_id;

	b.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(dirfd, name, &b.fh, &mount_id, flags) != 0)
		return errno == ENOTSUP ? -EOPNOTSUPP : -errno;
	if (b.fh.handle_bytes == 0 || b.fh.handle_bytes > FHMAP_REALFH_MAX)
		return -EOPNOTSUPP;
	out->layer = layer;
	out->type = b.fh.handle_type;
	out->len = b.fh.handle_bytes;
	memcpy(out->data, b.fh.f_handle, b.fh.handle_bytes);
	return 0;
}

int fhmap_realfh_at(fhmap_realfh *out, uint32_t layer, int dirfd, const char *name)
{
	if (!out || !name || layer == 0 || layer > UINT16_MAX)
		return -EINVAL;
	return take_handle(out, layer, dirfd, name, name[0] ? 0 : AT_EMPTY_PATH);
}

int fhmap_realfh_from_path(fhmap_realfh *out, fhmap *m, uint32_t layer, const char *path)
{
	fhmap_layer *l;
	char *full;
	int rc;

	if (!out || !m || !path)
		return -EINVAL;
	if (path[0] == '/')
		return fhmap_realfh_at(out, layer, AT_FDCWD, path);
	if (!(l = malloc(sizeof(*l) + FHMAP_PATH_MAX)))
		return -ENOMEM;
	full = (char *)(l + 1);
	if ((rc = fhmap_layer_get(l, m, layer)) == 0) {
		int dot = !path[0] || !strcmp(path, ".");

		if (snprintf(full, FHMAP_PATH_MAX, "%s/%s", l->root, dot ? "." : path) >= FHMAP_PATH_MAX)
			rc = -ENAMETOOLONG;
		else
			rc = fhmap_realfh_at(out, layer, AT_FDCWD, full);
	}
	free(l);
	return rc;
}

int fhmap_open_real(int *out_fd, fhmap *m, const fhmap_realfh *fh, int flags)
{
	union fh_buf b;
	int root, fd, rc;

	if (!out_fd || !m || fhmap__realfh_check(fh))
		return -EINVAL;
	*out_fd = -1;
	if ((rc = fhmap__layer_fd(m, fh->layer, &root)) != 0)
		return rc;
	b.fh.handle_bytes = fh->len;
	b.fh.handle_type = fh->type;
	memcpy(b.fh.f_handle, fh->data, fh->len);
	fd = open_by_handle_at(root, &b.fh, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*out_fd = fd;
	return 0;
}
