/*
 * libfhmap-fsid.so: gives fhmap-unionfs mounts a filesystem id that
 * depends only on their map, for NFS-Ganesha's FSAL_VFS.
 *
 *   LD_PRELOAD=/path/to/libfhmap-fsid.so ganesha.nfsd -F -f ganesha.conf ...
 *
 * FSAL_VFS puts the filesystem id into every NFS handle. It takes it from
 * the libblkid UUID of the mount's block device, else statfs()'s f_fsid,
 * else the device number. A FUSE mount has no block device, FUSE has no way
 * to report f_fsid (the kernel leaves it 0), and the device number is an
 * anonymous one handed out in mount order, so without help every handle
 * would name the mount instead of the map.
 *
 * This library wraps the statfs and statvfs families. When the call
 * succeeds on a FUSE filesystem and f_fsid is 0, it reads the mount's
 * trusted.fhmap.uuid xattr (fhmap-unionfs answers it with the map's UUID
 * on every object) and returns the UUID folded to 64 bits as f_fsid:
 * words (u0 ^ u2, u1 ^ u3) of the UUID read as four big-endian 32-bit
 * words, never both 0. Every other filesystem, and a FUSE filesystem that
 * does not answer the xattr, gets the kernel's answer untouched; errno is
 * kept as the real call left it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/magic.h>
#include <stdint.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <uuid/uuid.h>

#define FSID_XATTR "trusted.fhmap.uuid"

/* The next definition of NAME (libc's), looked up on first use; NULL when
 * there is none. */
static void *next_fn(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (!f) {
		f = dlsym(RTLD_NEXT, name);
		__atomic_store_n(slot, f, __ATOMIC_RELEASE);
	}
	return f;
}

static void *next_statfs, *next_statfs64, *next_fstatfs, *next_fstatfs64;
static void *next_statvfs, *next_statvfs64, *next_fstatvfs, *next_fstatvfs64;

/* Calls libc's NAME(a, buf) and returns its result and errno. */
#define CALL_NEXT(name, arg_t, buf_t, a, buf)                                                                \
	({                                                                                                   \
		int (*f_)(arg_t, buf_t *) = (int (*)(arg_t, buf_t *))next_fn(&next_##name, #name);           \
		f_ ? f_(a, buf) : (errno = ENOSYS, -1);                                                      \
	})

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The map-derived fsid of the FUSE filesystem at PATH (or FD when PATH is
 * NULL). Returns 0 and fills val, or -1 when it is not an fhmap mount. */
static int map_fsid(const char *path, int fd, int val[2])
{
	char text[40];
	uuid_t u;
	ssize_t n;
	int saved = errno, bad;

	n = path ? getxattr(path, FSID_XATTR, text, sizeof(text) - 1)
	         : fgetxattr(fd, FSID_XATTR, text, sizeof(text) - 1);
	if (n == 36)
		text[n] = '\0';
	bad = n != 36 || uuid_parse(text, u) < 0;
	errno = saved; /* the caller's call succeeded: errno stays as it was */
	if (bad)
		return -1;
	val[0] = (int)(be32(u) ^ be32(u + 8));
	val[1] = (int)(be32(u + 4) ^ be32(u + 12));
	if (val[0] == 0 && val[1] == 0)
		val[1] = 1; /* 0 would send FSAL_VFS back to the device number */
	return 0;
}

/* Fills in a zero f_fsid of a FUSE filesystem (statfs and statfs64). */
static void fix_statfs(const char *path, int fd, __fsword_t type, __fsid_t *fsid)
{
	if (type == FUSE_SUPER_MAGIC && fsid->__val[0] == 0 && fsid->__val[1] == 0)
		map_fsid(path, fd, fsid->__val);
}

/* Same for statvfs, which has no f_type: only a zero f_fsid is checked,
 * with one more statfs to see whether it is FUSE. */
static void fix_statvfs(const char *path, int fd, unsigned long *fsid)
{
	struct statfs sf;
	int saved = errno, r;

	if (*fsid != 0)
		return;
	r = path ? CALL_NEXT(statfs, const char *, struct statfs, path, &sf)
	         : CALL_NEXT(fstatfs, int, struct statfs, fd, &sf);
	errno = saved;
	if (r == 0 && sf.f_type == FUSE_SUPER_MAGIC && map_fsid(path, fd, sf.f_fsid.__val) == 0)
		*fsid = (unsigned long)(uint32_t)sf.f_fsid.__val[0] |
		        (unsigned long)(uint32_t)sf.f_fsid.__val[1] << 32;
}

/* Defines NAME(arg_t a, buf_t *buf): libc's answer, with FIX applied when
 * it succeeded. */
#define WRAP(name, arg_t, buf_t, fix)                                                                        \
	int name(arg_t a, buf_t *buf)                                                                        \
	{                                                                                                    \
		int r = CALL_NEXT(name, arg_t, buf_t, a, buf);                                               \
                                                                                                             \
		if (r == 0)                                                                                  \
			fix;                                                                                 \
		return r;                                                                                    \
	}

WRAP(statfs, const char *, struct statfs, fix_statfs(a, -1, buf->f_type, &buf->f_fsid))
WRAP(statfs64, const char *, struct statfs64, fix_statfs(a, -1, buf->f_type, &buf->f_fsid))
WRAP(fstatfs, int, struct statfs, fix_statfs(NULL, a, buf->f_type, &buf->f_fsid))
WRAP(fstatfs64, int, struct statfs64, fix_statfs(NULL, a, buf->f_type, &buf->f_fsid))
WRAP(statvfs, const char *, struct statvfs, fix_statvfs(a, -1, &buf->f_fsid))
WRAP(statvfs64, const char *, struct statvfs64, fix_statvfs(a, -1, &buf->f_fsid))
WRAP(fstatvfs, int, struct statvfs, fix_statvfs(NULL, a, &buf->f_fsid))
WRAP(fstatvfs64, int, struct statvfs64, fix_statvfs(NULL, a, &buf->f_fsid))
