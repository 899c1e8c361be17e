/* Consumer-side wire handles: see fhmap_wire.h. */
#include "fhmap_wire.h"

#include <errno.h>

size_t fhmap_wire_budget(fhmap_wire_proto proto)
{
	switch (proto) {
	case FHMAP_WIRE_NFS3: return FHMAP_WIRE_GANESHA_V3_MAX;
	case FHMAP_WIRE_NFS4: return FHMAP_WIRE_GANESHA_V4_MAX;
	}
	return 0;
}

fhmap_wire_nfsstat fhmap_wire_errno(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return FHMAP_NFS_OK;
	case EPERM: return FHMAP_NFSERR_PERM;
	case ENOENT: return FHMAP_NFSERR_NOENT;
	case EIO: return FHMAP_NFSERR_IO;
	case ENXIO: return FHMAP_NFSERR_NXIO;
	case EACCES: return FHMAP_NFSERR_ACCES;
	case EEXIST: return FHMAP_NFSERR_EXIST;
	case ENOTDIR: return FHMAP_NFSERR_NOTDIR;
	case EISDIR: return FHMAP_NFSERR_ISDIR;
	case EINVAL: return FHMAP_NFSERR_INVAL;
	case EFBIG: return FHMAP_NFSERR_FBIG;
	case ENOSPC: return FHMAP_NFSERR_NOSPC;
	case EROFS: return FHMAP_NFSERR_ROFS;
	case ENAMETOOLONG: return FHMAP_NFSERR_NAMETOOLONG;
	case ENOTEMPTY: return FHMAP_NFSERR_NOTEMPTY;
	case EDQUOT: return FHMAP_NFSERR_DQUOT;
	case ESTALE: return FHMAP_NFSERR_STALE;
	case EBADMSG: return FHMAP_NFSERR_BADHANDLE;
	case EAGAIN: return FHMAP_NFSERR_JUKEBOX;
	default: return FHMAP_NFSERR_SERVERFAULT;
	}
}

fhmap_wire_nfsstat fhmap_wire_fh_status(fhmap_fh_status status)
{
	switch (status) {
	case FHMAP_FH_OK:
		return FHMAP_NFS_OK;
	/* Never a valid handle of this server: the client must not retry it. */
	case FHMAP_FH_TRUNCATED:
	case FHMAP_FH_MALFORMED:
	case FHMAP_FH_BAD_VERSION:
	case FHMAP_FH_UNSIGNED_REFUSED:
	case FHMAP_FH_BAD_MAC:
	case FHMAP_FH_NO_PARENT:
		return FHMAP_NFSERR_BADHANDLE;
	/* Was valid once (or made by an earlier map of this export): the
	 * object is gone, the client drops the handle and looks up again. */
	case FHMAP_FH_FOREIGN:
	case FHMAP_FH_UNKNOWN:
	case FHMAP_FH_FORGOTTEN:
	case FHMAP_FH_STALE_GEN:
		return FHMAP_NFSERR_STALE;
	}
	return FHMAP_NFSERR_BADHANDLE;
}

fhmap_wire_nfsstat fhmap_wire_encode(void *out, size_t *len, fhmap *map, uint64_t ino,
                                     unsigned int flags, fhmap_wire_proto proto)
{
	size_t budget = fhmap_wire_budget(proto);
	int rc;

	if (!out || !len || budget == 0)
		return FHMAP_NFSERR_SERVERFAULT;
	if (*len > budget)
		*len = budget;
	rc = fhmap_encode(out, len, map, ino, 0, flags);
	if (rc == -EOVERFLOW || rc == -EINVAL || rc == -EUCLEAN)
		return FHMAP_NFSERR_SERVERFAULT;
	if (rc == -ENOENT)
		return FHMAP_NFSERR_STALE;
	return fhmap_wire_errno(rc);
}

fhmap_wire_nfsstat fhmap_wire_decode(fhmap_decoded *out, fhmap *map, const void *fh, size_t len,
                                     fhmap_wire_proto proto)
{
	size_t budget = fhmap_wire_budget(proto);
	int rc;

	if (!out || !map || budget == 0)
		return FHMAP_NFSERR_SERVERFAULT;
	if (!fh || len > budget) {
		out->status = FHMAP_FH_MALFORMED;
		return FHMAP_NFSERR_BADHANDLE;
	}
	rc = fhmap_decode(out, map, fh, len, 0);
	if (rc == 0 || rc == -EINVAL || rc == -EBADMSG || rc == -ESTALE)
		return fhmap_wire_fh_status(out->status);
	/* -EUCLEAN, -EIO: the handle may be fine, the map is not. */
	return rc == -EIO ? FHMAP_NFSERR_IO : FHMAP_NFSERR_SERVERFAULT;
}

fhmap_wire_nfsstat fhmap_wire_open(int *out_fd, fhmap_decoded *out, fhmap *map, const void *fh,
                                   size_t len, int flags, fhmap_wire_proto proto)
{
	fhmap_wire_nfsstat st = fhmap_wire_decode(out, map, fh, len, proto);
	int rc;

	if (st != FHMAP_NFS_OK)
		return st;
	if (!out_fd)
		return FHMAP_NFSERR_SERVERFAULT;
	rc = fhmap_open_real(out_fd, map, &out->real, flags);
	/* The map knows the object but its file left the layer behind the
	 * union's back (or the layer was replaced): the handle is dead. */
	if (rc == -ESTALE || rc == -ENOENT || rc == -ENXIO)
		return FHMAP_NFSERR_STALE;
	return fhmap_wire_errno(rc);
}

const char *fhmap_wire_nfsstat_str(fhmap_wire_nfsstat st, fhmap_wire_proto proto)
{
	int v4 = proto == FHMAP_WIRE_NFS4;

	switch (st) {
	case FHMAP_NFS_OK: return v4 ? "NFS4_OK" : "NFS3_OK";
	case FHMAP_NFSERR_PERM: return v4 ? "NFS4ERR_PERM" : "NFS3ERR_PERM";
	case FHMAP_NFSERR_NOENT: return v4 ? "NFS4ERR_NOENT" : "NFS3ERR_NOENT";
	case FHMAP_NFSERR_IO: return v4 ? "NFS4ERR_IO" : "NFS3ERR_IO";
	case FHMAP_NFSERR_NXIO: return v4 ? "NFS4ERR_NXIO" : "NFS3ERR_NXIO";
	case FHMAP_NFSERR_ACCES: return v4 ? "NFS4ERR_ACCESS" : "NFS3ERR_ACCES";
	case FHMAP_NFSERR_EXIST: return v4 ? "NFS4ERR_EXIST" : "NFS3ERR_EXIST";
	case FHMAP_NFSERR_NOTDIR: return v4 ? "NFS4ERR_NOTDIR" : "NFS3ERR_NOTDIR";
	case FHMAP_NFSERR_ISDIR: return v4 ? "NFS4ERR_ISDIR" : "NFS3ERR_ISDIR";
	case FHMAP_NFSERR_INVAL: return v4 ? "NFS4ERR_INVAL" : "NFS3ERR_INVAL";
	case FHMAP_NFSERR_FBIG: return v4 ? "NFS4ERR_FBIG" : "NFS3ERR_FBIG";
	case FHMAP_NFSERR_NOSPC: return v4 ? "NFS4ERR_NOSPC" : "NFS3ERR_NOSPC";
	case FHMAP_NFSERR_ROFS: return v4 ? "NFS4ERR_ROFS" : "NFS3ERR_ROFS";
	case FHMAP_NFSERR_NAMETOOLONG: return v4 ? "NFS4ERR_NAMETOOLONG" : "NFS3ERR_NAMETOOLONG";
	case FHMAP_NFSERR_NOTEMPTY: return v4 ? "NFS4ERR_NOTEMPTY" : "NFS3ERR_NOTEMPTY";
	case FHMAP_NFSERR_DQUOT: return v4 ? "NFS4ERR_DQUOT" : "NFS3ERR_DQUOT";
	case FHMAP_NFSERR_STALE: return v4 ? "NFS4ERR_STALE" : "NFS3ERR_STALE";
	case FHMAP_NFSERR_BADHANDLE: return v4 ? "NFS4ERR_BADHANDLE" : "NFS3ERR_BADHANDLE";
	case FHMAP_NFSERR_SERVERFAULT: return v4 ? "NFS4ERR_SERVERFAULT" : "NFS3ERR_SERVERFAULT";
	case FHMAP_NFSERR_JUKEBOX: return v4 ? "NFS4ERR_DELAY" : "NFS3ERR_JUKEBOX";
	}
	return v4 ? "NFS4ERR_?" : "NFS3ERR_?";
}
