/* The texts of the error codes, and the log. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fhmap_int.h"

const char *fhmap_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument or malformed handle";
	case -ESTALE:
		return "stale handle: object unlinked, unknown, of another generation or of another map";
	case -EBADMSG:
		return "handle authentication failed: forged or damaged handle";
	case -ENOENT:
		return "no such object, entry or map";
	case -EEXIST:
		return "already exists or already mapped to another object";
	case -EROFS:
		return "map opened read-only";
	case -ENOSPC:
		return "no space: the map cannot grow (disk full or max_map_size reached)";
	case -EAGAIN:
		return "batch rolled back (the map had to grow or an update failed midway): redo the batch";
	case -EMEDIUMTYPE:
		return "not a libfhmap map (or its LMDB header is destroyed)";
	case -EPROTONOSUPPORT:
		return "unsupported format version (map or LMDB written by another version)";
	case -EUCLEAN:
		return "map is damaged: a record or page failed validation";
	case -ENXIO:
		return "unknown layer, or a layer of the wrong role";
	case -EBUSY:
		return "busy: a copy-up intent or a batch is pending";
	case -EUSERS:
		return "no free LMDB reader slot (raise max_readers)";
	case -E2BIG:
		return "transaction too large: split the batch";
	case -EOVERFLOW:
		return "buffer too small for the handle";
	case -ERANGE:
		return "buffer too small for the result";
	case -ELOOP:
		return "name hints form a cycle";
	case -ENOTDIR:
		return "parent is not a directory";
	case -ENAMETOOLONG:
		return "name or path too long";
	case -EOPNOTSUPP:
		return "the layer's filesystem cannot export file handles";
	case -EPERM:
		return "operation not permitted (open_by_handle_at needs CAP_DAC_READ_SEARCH)";
	case -EACCES:
		return "permission denied";
	case -ENOMEM:
		return "out of memory";
	case -EIO:
		return "I/O error";
	default:
		break;
	}
	if (err < 0) {
		const char *s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "unknown error";
}

void fhmap__log(fhmap *m, fhmap_log_level level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!m->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	m->log(m->log_ctx, level, msg);
}
