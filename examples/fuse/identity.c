/*
 * The map's identity, readable on the mount: every object answers the
 * read-only virtual xattr UFS_XATTR_MAP_UUID with the map's UUID as 36
 * lowercase characters (no NUL). It is what an NFS server needs for a
 * filesystem id that depends on the map only, not on the mount: Ganesha
 * gets it through examples/ganesha's preload library, knfsd through
 * `fsid=<uuid>` in /etc/exports.
 */
#define _GNU_SOURCE
#include "ops.h"

#include <errno.h>
#include <uuid/uuid.h>

void ufs_reply_map_uuid(fuse_req_t req, size_t size)
{
	char text[37];

	uuid_unparse_lower(ufs_of(req)->map_uuid, text);
	if (size == 0)
		fuse_reply_xattr(req, 36);
	else if (size < 36)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, text, 36);
}
