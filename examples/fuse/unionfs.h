/*
 * fhmap-unionfs: a libfuse3 low-level union filesystem whose object
 * identities (st_ino, FUSE nodeid, generation) come from libfhmap, so NFS
 * handles survive copy-up, rename, hardlinks and daemon restarts.
 *
 * Shared declarations of the daemon's translation units:
 *   layers.c  layer scanning, entry resolution, merged listings, node cache
 *   copyup.c  crash-safe copy-up and its recovery at mount
 *   ops.c     the FUSE low-level operations
 *   main.c    options, layer registration, mount and signal handling
 *   identity.c the map's UUID as a virtual xattr (stable NFS fsid)
 */
#ifndef FHMAP_UNIONFS_H
#define FHMAP_UNIONFS_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fhmap/fhmap.h>

/* Overlayfs-compatible markers on the upper layer. */
#define UFS_XATTR_OPAQUE "trusted.overlay.opaque"
#define UFS_XATTR_REDIRECT "trusted.overlay.redirect"
/* Lower names still visible for an object copied up into the index. */
#define UFS_XATTR_LOWERLINKS "trusted.fhmap.lowerlinks"
/* Read-only virtual xattr of every object: the map's UUID (identity.c). */
#define UFS_XATTR_MAP_UUID "trusted.fhmap.uuid"
/* Default work directory, created inside the upper root and hidden. */
#define UFS_WORK_NAME ".fhmap-work"
#define UFS_INDEX_NAME "index"

struct ufs_layer {
	uint32_t id;    /* libfhmap layer id */
	int fd;         /* O_RDONLY|O_DIRECTORY fd of the root */
	char *root;     /* canonical absolute path */
};

struct ufs_node;

struct ufs {
	fhmap *map;
	struct ufs_layer upper;
	struct ufs_layer *lowers; /* topmost first */
	size_t nlowers;
	int work_fd;              /* work dir on the upper filesystem */
	int index_fd;             /* work/index: copied-up lower hardlinks */
	int hide_work;            /* work dir is UFS_WORK_NAME in the upper root */
	unsigned long tmp_seq;    /* unique temp names in the work dir */
	unsigned long copyups;    /* copy-ups done: open lower files recheck */
	struct ufs_node **buckets;/* nodeid cache (an optimisation only) */
	size_t nbuckets;
	size_t nnodes;
};

extern struct ufs ufs;

/* A directory object opened on every layer it spans. */
struct ufs_dir {
	fhmap_object obj;
	int upper_fd;      /* -1 when the directory has no upper part yet */
	int opaque;        /* upper part hides the lower layers */
	size_t nlower;
	int *lower_fd;     /* its real directories, topmost first */
	uint32_t *lower_id;/* layer id of each */
};

/* One name of a directory, resolved through the layers. */
struct ufs_entry {
	fhmap_object obj;   /* the object (valid when found) */
	int on_upper;       /* the name exists on the upper layer */
	int upper_whiteout; /* the upper layer has a whiteout at the name */
	int lower_entry;    /* a lower layer has a visible entry at the name:
	                       removing or renaming it needs a whiteout */
	struct stat lower_st; /* stat of the topmost lower entry */
};

/* Object and node helpers (layers.c). */
int ufs_obj_get(fhmap_object *obj, uint64_t ino);
int ufs_open_live(int *fd, const fhmap_object *obj, int flags);
int ufs_stat(struct stat *st, const fhmap_object *obj);
int ufs_lowerlinks(int fd, long *out);
int ufs_set_lowerlinks(int fd, long value);
int ufs_dir_open(struct ufs_dir *d, uint64_t ino);
void ufs_dir_close(struct ufs_dir *d);
int ufs_dir_upper(struct ufs_dir *d);
/* Path of the directory's first lower part below its layer root ("." for
 * the root), without a leading slash; free it. */
int ufs_dir_lower_path(char **out, const struct ufs_dir *d);
int ufs_resolve(struct ufs_entry *e, const struct ufs_dir *d, const char *name);
int ufs_is_whiteout(const struct stat *st);
int ufs_is_work_name(const struct ufs_dir *d, const char *name);

struct ufs_dirent {
	char *name;
	uint64_t ino;
	mode_t type;
};
struct ufs_list {
	struct ufs_dirent *ents;
	size_t count;
	size_t cap;
};
int ufs_list_merged(struct ufs_list *out, const struct ufs_dir *d, int resolve);
void ufs_list_free(struct ufs_list *l);
int ufs_clear_whiteouts(int dirfd);

void ufs_node_ref(uint64_t ino);
void ufs_node_forget(uint64_t ino, uint64_t nlookup);
void ufs_nodes_free(void);
/* Frees the open files and directories the kernel never released (ops.c). */
void ufs_open_free_all(void);
void ufs_node_keep(const fhmap_object *obj);
int ufs_node_kept_fd(uint64_t ino);
int ufs_node_kept_stat(struct stat *st, uint64_t ino);

/* Copy-up (copyup.c): makes sure object @ino lives on the upper layer;
 * @out, if not NULL, receives the object as it is then. */
int ufs_copyup(fhmap_object *out, uint64_t ino);
int ufs_recover_pending(void);
int ufs_work_clean(void);
int ufs_tmp_name(char *buf, size_t size, const char *prefix);
int ufs_proc_path(char *buf, size_t size, int fd);
DIR *ufs_opendir_at(int fd, int *err);
int ufs_xattr_private(const char *name);

/* FUSE operations (ops.c). */
struct fuse_lowlevel_ops;
struct fuse_req;
extern const struct fuse_lowlevel_ops ufs_ops;
/* Answers a getxattr of UFS_XATTR_MAP_UUID (identity.c). */
void ufs_reply_map_uuid(struct fuse_req *req, size_t size);

#endif
