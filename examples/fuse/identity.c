/*
 * The map's identity, readable on the mount: every object answers the
 * read-only virtual xattr UFS_XATTR_MAP_UUID with the map's UUID as 36
 * lowercase characters (no NUL). It is what an NFS server needs for a
 * filesystem id that depends on the map only, not on the mount: Ganesha
 * gets it through examples/ganesha's preload library, knfsd through
 * `fsid=<uuid>` in /etc/exports.
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include "unionfs.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <uuid/uuid.h>

void ufs_reply_map_uuid(fuse_req_t req, size_t size)
{
	fhmap_info info;
	char text[37];
	int r = fhmap_info_get(&info, ufs.map);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	uuid_unparse_lower(info.uuid, text);
	if (size == 0)
		fuse_reply_xattr(req, 36);
	else if (size < 36)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, text, 36);
}
