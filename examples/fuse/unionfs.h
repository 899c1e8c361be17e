/*
 * fhmap-unionfs: a libfuse3 low-level union filesystem whose object
 * identities (st_ino, FUSE nodeid, generation) come from libfhmap, so NFS
 * handles survive copy-up, rename, hardlinks, restarts and system crashes.
 *
 * Files, one concern each:
 *   main.c      options, layer registration, mount, the session loop
 *   node.c      the node table: per-object state, its locks and kept fds
 *   dir.c       a directory's layers, merged name lists, whiteouts
 *   lowers.c    a directory path through the lower layers, as overlayfs
 *               looks it up (redirects, whiteouts, opaque dirs on the way)
 *   resolve.c   a name through the layers: read-only scan, then bind
 *   copyup.c    copy-up (once per object), interrupted ones at mount
 *   durable.c   identity xattrs, map sync points, recovery after a crash
 *   readdir.c   directory handles, readdir and readdirplus
 *   ops_node.c  lookup, forget, attributes, symlinks, xattrs, statfs
 *   ops_ns.c    namespace changes: create, mkdir, link, unlink, rename...
 *   ops_file.c  open files: open, read, write, flush, fsync, release
 *   ops.c       connection setup and the operations table
 *   util.c      small helpers (temp names, /proc paths, removal)
 *   identity.c  the map's UUID as a virtual xattr (a stable NFS fsid)
 *   service.c   readiness (sd_notify) and syslog when detached
 *
 * Concurrency (README.md, "State and locks"): requests run on many
 * threads. The state is a struct ufs reached through fuse_req_userdata();
 * what changes while serving is in nodes (node.c), each with its own lock.
 * Lock order, outermost first:
 *   1. ufs.rename_lock   - cross-directory renames only;
 *   2. directory node locks, a directory before any directory below it
 *      (by name hints); two unrelated directories only under rename_lock;
 *   3. non-directory node locks, two of them in object number order;
 *   4. leaf locks, never held while taking another lock of 1-3: the node
 *      table lock, a node's mu, libfhmap's locks.
 * Copy-up (ufs_copyup) and node loading are called with no node lock held.
 */
#ifndef FHMAP_UNIONFS_H
#define FHMAP_UNIONFS_H

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
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
/* The union names of a hardlinked upper file (links.c). */
#define UFS_XATTR_NAMES "trusted.fhmap.names"
/* Identity of an upper file: map, object, generation, origin (durable.c). */
#define UFS_XATTR_ID "trusted.fhmap.id"
/* On the work dir while a daemon serves (durable.c). */
#define UFS_XATTR_RUNNING "trusted.fhmap.running"
/* Read-only virtual xattr of every object: the map's UUID (identity.c). */
#define UFS_XATTR_MAP_UUID "trusted.fhmap.uuid"
/* Default work directory, created inside the upper root and hidden. */
#define UFS_WORK_NAME ".fhmap-work"
#define UFS_INDEX_NAME "index"

struct ufs_layer {
	uint32_t id; /* libfhmap layer id */
	int fd;      /* O_RDONLY|O_DIRECTORY fd of the root */
	char *root;  /* canonical absolute path */
};

/* Settings from the command line. */
struct ufs_config {
	fhmap_sync_mode map_sync;  /* mode the map is opened in */
	int sync_full;             /* -o sync=full: sync before replying to an
	                              update the upper layer cannot restore */
	unsigned int flush_ms;     /* -o flush_interval */
	unsigned int threads;      /* -o threads (default two a core) */
	double entry_timeout;      /* -o entry_timeout */
	double attr_timeout;       /* -o attr_timeout */
	int writeback;             /* -o writeback */
	int splice;                /* splice /dev/fuse I/O (-o nosplice: 0) */
};

struct ufs_node;
struct ufs_handle;

struct ufs_nodes {
	pthread_rwlock_t lock;      /* the node table lock (leaf) */
	struct ufs_node **buckets;  /* protected by lock */
	size_t nbuckets, count;     /* protected by lock */
	atomic_uint_fast64_t epoch; /* bumped (under lock) when a node whose
	                               record this process changed is freed */
};

struct ufs {
	/* Set up before serving, read-only afterwards. */
	fhmap *map;
	unsigned char map_uuid[16];
	struct ufs_layer upper;   /* fd -1 in a union of lower layers only,
	                             which is read-only (no work dir either) */
	struct ufs_layer *lowers; /* topmost first */
	size_t nlowers;
	int work_fd;              /* work dir on the upper filesystem */
	int index_fd;             /* work/index: copied-up lower hardlinks */
	int hide_work;            /* work dir is UFS_WORK_NAME in the upper root */
	int running;              /* the work dir is marked (ufs_run_begin) */
	struct ufs_config cfg;
	long fd_cap;              /* fds nodes may keep open */
	struct ufs_node *root;    /* held for the whole mount */
	long pid;                 /* in temp names */
	/* Shared while serving, each with its own synchronisation. */
	struct ufs_nodes nodes;        /* its own lock */
	pthread_mutex_t rename_lock;   /* lock order 1 */
	/* Open files and directories (ops.c): a RELEASE still queued when the
	 * daemon stops never comes, so unmount frees what is left. */
	pthread_mutex_t handles_lock;  /* leaf */
	struct ufs_handle *handles;    /* protected by handles_lock */
	atomic_ulong tmp_seq;          /* unique temp names */
	atomic_long fds_kept;          /* fds held by nodes (fd_cap) */
	atomic_ulong map_writes;       /* updates made (ufs_map_sync) */
	atomic_ulong map_synced;       /* map_writes when last made durable */
	atomic_int writeback;          /* the kernel caches writes (ops.c) */
};

/* ------------------------------------------------------------------------ */
/* Nodes (node.c) */

/* A directory opened on every layer it spans. */
struct ufs_layers {
	int upper_fd;      /* -1 while the directory has no upper part */
	int opaque;        /* the upper part hides the lower layers */
	char *lpath;       /* path below its lower layer root ("." for the root)
	                      of the first lower part, or NULL */
	size_t nlower;
	struct { int fd; uint32_t id; } lower[]; /* topmost first */
};

/* The state of one object the kernel knows (a FUSE nodeid). */
struct ufs_node {
	uint64_t ino;                 /* immutable */
	struct ufs_node *next;        /* protected by the table lock */
	atomic_uint_fast64_t refs;    /* kernel lookups + holds; at 0 freed */
	atomic_uint_fast64_t nlookup; /* kernel lookups */
	pthread_rwlock_t lock;        /* the node lock (lock order 2 or 3) */
	/* Protected by lock; written with it held exclusively, always
	 * together with the map: */
	fhmap_object obj;             /* the object's record */
	int changed;                  /* obj was updated by this process */
	/* Protected by mu (leaf): */
	pthread_mutex_t mu;
	pthread_cond_t copied;        /* signalled when copying ends */
	int copying;                  /* a copy-up of this object runs */
	int indexed;                  /* lives in work/index: 1, 0, -1 unknown */
	struct timespec cache_mtime;  /* of the data the kernel may cache */
	off_t cache_size;
	int cache_known;
	/* Set once (under mu, with lock held); replaced or closed only with
	 * lock held exclusively; read with lock held: */
	_Atomic int fd;                          /* O_PATH of the live file */
	_Atomic(struct ufs_layers *) layers;     /* directories */
	/* Atomic: bumped by the copy-up (lock held exclusively), read by open
	 * files without any lock, to see that they may switch to the copy: */
	atomic_uint upper_gen;
};

int ufs_nodes_init(struct ufs *u);
void ufs_nodes_free(struct ufs *u);
uint64_t ufs_nodes_epoch(struct ufs *u);
/* A held node for @ino: in the table, or loaded from the map (-ESTALE for
 * unknown and unlinked objects). Release it with ufs_node_put(). */
int ufs_node_hold(struct ufs_node **out, struct ufs *u, uint64_t ino);
/* A held node for the object whose record @rec the caller read after
 * reading @epoch (ufs_nodes_epoch). */
int ufs_node_obtain(struct ufs_node **out, struct ufs *u, const fhmap_object *rec, uint64_t epoch);
void ufs_node_put(struct ufs *u, struct ufs_node *n);
/* One more reference to a node the caller holds. */
void ufs_node_get(struct ufs_node *n);
/* Kernel lookup counts: +1 before replying with an entry (undo with
 * ufs_node_forget(.., 1) when the reply fails); FORGET. */
void ufs_node_lookup(struct ufs_node *n);
void ufs_node_forget(struct ufs *u, uint64_t ino, uint64_t nlookup);

void ufs_node_rdlock(struct ufs_node *n);
void ufs_node_wrlock(struct ufs_node *n);
void ufs_node_unlock(struct ufs_node *n);
int ufs_locks_held(void);
/* Copies the record (taking the lock shared). */
void ufs_node_obj(fhmap_object *out, struct ufs_node *n);
/* Sets the record after a map update (lock held exclusively). */
void ufs_node_set_obj(struct ufs_node *n, const fhmap_object *obj);

/* The O_PATH fd of the object's live file (lock held): kept by the node,
 * or a new one (*owned = 1) that the caller closes. */
int ufs_node_fd(int *fd, int *owned, struct ufs *u, struct ufs_node *n);
/* Makes sure the node keeps an fd of the live file (lock held
 * exclusively): an unlinked object stays reachable while open. */
int ufs_node_keep_fd(struct ufs *u, struct ufs_node *n);
/* Drops the kept fd and layers after the object moved (lock exclusive). */
void ufs_node_reset_fds(struct ufs *u, struct ufs_node *n);
/* Attributes of the object (lock held). */
int ufs_node_stat(struct stat *st, struct ufs *u, struct ufs_node *n);
/* The link count of directory @n (lock held) in @st, which holds the
 * attributes of its live file: the real one where the directory spans one
 * layer, as overlayfs reports it; 1 ("unknown", as overlayfs and btrfs
 * say) for a merged one, whose subdirectories only a listing counts. */
int ufs_dir_nlink(struct stat *st, struct ufs *u, struct ufs_node *n);
/* Union link count of a non-directory and whether it is in the index. */
int ufs_node_links(long *links, int *indexed, struct ufs *u, struct ufs_node *n);

/* A directory's layers (lock held): the node's, or transient ones when
 * the fd cap is reached. */
struct ufs_dirref {
	struct ufs_layers *l;
	int owned;
};
int ufs_dir_get(struct ufs_dirref *ref, struct ufs *u, struct ufs_node *n);
void ufs_dir_put(struct ufs_dirref *ref);

/* ------------------------------------------------------------------------ */
/* Directories (dir.c) */

int ufs_layers_open(struct ufs_layers **out, struct ufs *u, const fhmap_object *obj);
void ufs_layers_close(struct ufs_layers *l);
int ufs_layers_nfds(const struct ufs_layers *l);
/* Path of the first lower part below its layer root; free it. */
int ufs_layers_lower_path(char **out, struct ufs *u, const struct ufs_layers *l);

struct ufs_dirent {
	char *name;
	mode_t type;
};
struct ufs_names {
	struct ufs_dirent *ents;
	size_t count, cap;
};
/* The merged names of a directory (lock held), in layer order. */
int ufs_names_list(struct ufs_names *out, struct ufs *u, uint64_t dir_ino, const struct ufs_layers *l);
void ufs_names_free(struct ufs_names *l);
int ufs_clear_whiteouts(int dirfd);
int ufs_is_whiteout(const struct stat *st);
int ufs_fd_opaque(int fd);
int ufs_is_work_name(const struct ufs *u, uint64_t dir_ino, const char *name);

/* ------------------------------------------------------------------------ */
/* Lower layers (lowers.c) */

/* A directory path looked up layer after layer, topmost first. */
struct ufs_walk {
	char path[FHMAP_PATH_MAX]; /* below the layer roots ("" for the roots),
	                              as redirects on the way made it */
	int stop;                  /* the layers below do not count */
};
int ufs_walk_init(struct ufs_walk *w, const char *path);
/* Looks w->path up on lower layer @i: *fd, the directory there; -ENOENT
 * when the layer has none (w->stop says if the layers below count). */
int ufs_walk_layer(int *fd, struct ufs_walk *w, struct ufs *u, size_t i);
/* The redirect xattr of a directory: its length, 0 if none, -EINVAL
 * when overlayfs would refuse it. */
int ufs_redirect_get(char *buf, size_t size, int fd);
/* -EACCES for "." and "..", which a redirect may not name. */
int ufs_lookup_name_ok(const char *name);

/* ------------------------------------------------------------------------ */
/* Resolution (resolve.c) */

/* What the layers show at one name: a read-only scan. */
struct ufs_scan {
	int on_upper;         /* the name exists on the upper layer */
	int upper_whiteout;   /* the upper layer has a whiteout at the name */
	int lower_entry;      /* a lower layer shows an entry at the name:
	                         removing or renaming it needs a whiteout */
	size_t li;            /* its index in the directory's lower stack */
	int lower_done;       /* the lower layers were looked at */
	struct stat st;       /* the entry that shows (upper, else lower) */
	struct stat lower_st; /* the lower entry */
};

/* A resolved name: its scan and the object's node (held). */
struct ufs_entry {
	struct ufs_scan s;
	struct ufs_node *n;
	fhmap_object obj;     /* the record as the node had it */
	int created;          /* resolution created the record */
};

/* Scans @name in the directory @dir_ino (its lock held): -ENOENT when
 * nothing shows. Without @full, the lower layers are not looked at below
 * an upper entry (lookups need not know; namespace changes do). */
int ufs_scan(struct ufs_scan *s, struct ufs *u, uint64_t dir_ino, const struct ufs_layers *l,
             const char *name, int full);
/* Scan, then bind: finds or makes the object of @name (@d's lock held). */
int ufs_resolve(struct ufs_entry *e, struct ufs *u, struct ufs_node *d, const struct ufs_layers *l,
                const char *name, int full);
/* Resolves @n names of @d at once (rc[i]: the result for names[i]); the
 * objects new lower entries need are made in one commit. */
int ufs_resolve_many(struct ufs_entry *e, int *rc, struct ufs *u, struct ufs_node *d, const struct ufs_layers *l,
                     char *const *names, size_t n, int full);
void ufs_entry_put(struct ufs *u, struct ufs_entry *e);
/* Attributes for an entry reply, from the scan where it is enough. */
int ufs_entry_attr(struct stat *st, struct ufs *u, struct ufs_entry *e);

/* ------------------------------------------------------------------------ */
/* Copy-up (copyup.c) */

/* Makes sure the object of @n lives on the upper layer; called with no
 * node lock held. Concurrent callers wait for one copy. */
int ufs_copyup(struct ufs *u, struct ufs_node *n);
int ufs_recover_pending(struct ufs *u);
/* Before serving: copies the origin of @obj up again, for a record whose
 * upper copy a crash took (-EAGAIN: its parent has to be first). */
int ufs_copy_again(struct ufs *u, const fhmap_object *obj);
int ufs_xattr_private(const char *name);

/* ------------------------------------------------------------------------ */
/* Names of hardlinked files (links.c); the node locked exclusively, except
 * where said */

/* @n got the name @parent/@name (link). */
void ufs_links_add(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name);
/* The name @oldp/@oldname of @n is now @newp/@newname (rename). */
void ufs_links_move(struct ufs *u, struct ufs_node *n, uint64_t oldp, const char *oldname, uint64_t newp,
                    const char *newname);
/* The name @parent/@name of @n went, others stay: the hint moves to one. */
void ufs_links_gone(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name);
/* A lookup or readdirplus found @n (not locked) at the lower name
 * @parent/@name: when its hint names none of its names any more (the
 * hinted name of a lower hardlink in the index went, and the union learns
 * the others only as they are looked up), the hint moves here. */
void ufs_links_seen(struct ufs *u, struct ufs_node *n, uint64_t parent, const char *name);

/* ------------------------------------------------------------------------ */
/* Durability (durable.c) */

/* Writes the identity of @obj (origin too if @with_origin) on the file
 * @path names (not followed) or, when @path is NULL, on @fd. */
int ufs_id_set(struct ufs *u, int fd, const char *path, const fhmap_object *obj, int with_origin);
/* An unmapped upper entry: the object its identity xattr names, made
 * consistent with the map (restored or adopted), or -ENOENT. */
int ufs_id_claim(fhmap_object *out, struct ufs *u, int dirfd, const char *name, const fhmap_realfh *upper,
                 uint64_t parent);
/* Counts an update the upper layer cannot restore; with sync=full makes
 * the map durable before the reply. */
int ufs_map_changed(struct ufs *u, int unrecoverable);
/* Makes every update durable (fsync, unmount); skips when none came. */
int ufs_map_sync(struct ufs *u);
/* After a system crash or a daemon that died (@died): makes the map agree
 * with the upper layer (restores records, finishes removals and renames). */
int ufs_recover_crash(struct ufs *u, int died);
/* Marks the work dir while serving; *died: the last daemon did not end. */
int ufs_run_begin(struct ufs *u, int *died);
void ufs_run_end(struct ufs *u);
/* Removes the work dir's temporaries, forgetting objects never placed. */
int ufs_work_clean(struct ufs *u);

/* ------------------------------------------------------------------------ */
/* Helpers (util.c) */

int ufs_tmp_name(struct ufs *u, char *buf, size_t size, const char *prefix);
int ufs_proc_path(char *buf, size_t size, int fd);
int ufs_proc_at(char *buf, size_t size, int dirfd, const char *name);
void ufs_remove_any(int dirfd, const char *name);
/* @in as printable ASCII for a log line (other bytes as \xNN), cut to fit
 * @size; returns @out. Layer contents are not ours to print raw. */
const char *ufs_printable(char *out, size_t size, const char *in);
int ufs_opendir_at(DIR **dir, int fd);
int ufs_lowerlinks(int fd, long *out);
/* The same, and 1 with the name being hidden (@parent, @name of at least
 * FHMAP_NAME_MAX + 1 bytes) while the count is marked. */
int ufs_lowerlinks_get(int fd, long *out, uint64_t *parent, char *name, size_t size);
/* Marks the count @value of @fd: the lower name @parent/@name is about to
 * be hidden, and a crash before the count drops leaves the mark. */
int ufs_lowerlinks_hiding(int fd, long value, uint64_t parent, const char *name);
/* Sets the lower link count of @name in @fd, or of @fd itself ("") */
int ufs_set_lowerlinks(int fd, const char *name, long value);
void ufs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------------ */
/* FUSE operations (ops*.c) */

struct fuse_lowlevel_ops;
extern const struct fuse_lowlevel_ops ufs_ops;

#endif
