/**
 * @file fhmap.h
 * @brief libfhmap: persistent file handles for union (overlay) filesystems.
 *
 * libfhmap gives every object of a union filesystem a stable 64-bit object
 * number and a 32-bit generation, encodes them into small signed handles
 * that fit NFSv2/v3/v4, and keeps a durable map from origin (lower-layer)
 * objects to their copied-up (upper-layer) versions, all in one LMDB
 * environment.
 *
 * Conventions used by every function in this header:
 * - Functions return 0 on success or a negative errno value on failure.
 *   They never return an LMDB error code; fhmap_strerror() describes every
 *   code they return.
 * - Output parameters come first.
 * - The library never prints and never aborts on bad input. Diagnostics go
 *   to the optional log callback given to fhmap_open().
 * - Thread safety: one ::fhmap may be used by many threads at once. Reads
 *   (lookups, fhmap_get(), fhmap_decode(), fhmap_encode()) run in parallel,
 *   take no lock a writer holds and never wait for each other or for
 *   writers. Updates that threads make at the same time share one write
 *   transaction and its flushes (group commit); each call still returns
 *   only once its own update is as durable as the sync mode promises.
 *   Writers of different processes are serialized by LMDB's writer lock.
 *   A batch (fhmap_batch_begin()) belongs to the thread that began it.
 */
#ifndef FHMAP_FHMAP_H
#define FHMAP_FHMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @cond INTERNAL */
#if defined(FHMAP_BUILDING) && defined(__GNUC__)
#define FHMAP_EXTERN __attribute__((visibility("default")))
#else
#define FHMAP_EXTERN
#endif
/** @endcond */

/** Major version of the library (changes on ABI breaks). */
#define FHMAP_VERSION_MAJOR 0
/** Minor version of the library (changes when API is added). */
#define FHMAP_VERSION_MINOR 2
/** Patch version of the library. */
#define FHMAP_VERSION_PATCH 0

/** On-disk format version written by this library. */
#define FHMAP_FORMAT_VERSION 2

/** Object number of the union's root directory (also FUSE_ROOT_ID). */
#define FHMAP_ROOT_INO 1

/** Largest real (underlying filesystem) handle, as MAX_HANDLE_SZ. */
#define FHMAP_REALFH_MAX 128

/** Longest name of a directory entry, as NAME_MAX. */
#define FHMAP_NAME_MAX 255

/** Longest layer root path, including the terminating NUL. */
#define FHMAP_PATH_MAX 4096

/** Size of a non-connectable signed handle in bytes (fits NFSv2's 32). */
#define FHMAP_FH_SIZE 28
/** Size of a connectable signed handle in bytes (fits knfsd NFSv3's 56). */
#define FHMAP_FH_SIZE_CONNECTABLE 40
/** Largest handle fhmap_encode() produces. */
#define FHMAP_FH_MAX FHMAP_FH_SIZE_CONNECTABLE

/**
 * @brief An open handle map. Opaque; create with fhmap_open(), release with
 * fhmap_close().
 */
typedef struct fhmap fhmap;

/**
 * @brief Returns the library version as "MAJOR.MINOR.PATCH".
 * @return A static string; never NULL. Thread-safe.
 */
FHMAP_EXTERN const char *fhmap_version(void);

/**
 * @brief Describes an error code returned by any libfhmap function.
 *
 * The text is specific to the meaning libfhmap gives the code (for example
 * -EBADMSG is "handle authentication failed: forged or damaged handle").
 * @param err A return value of a libfhmap function (negative errno or 0).
 * @return A static string; never NULL. Thread-safe.
 */
FHMAP_EXTERN const char *fhmap_strerror(int err);

/* ------------------------------------------------------------------------ */
/** @name Opening and closing
 * @{ */

/**
 * Durability of updates: what a crash can cost (docs/durability.md). In
 * every mode a crash never corrupts the map and never makes it hand out an
 * object number or a generation again (numbers come from ranges reserved
 * durably before their first use), so no handle can reach another object.
 * A process crash (SIGKILL) loses nothing that returned, in every mode.
 */
typedef enum fhmap_sync_mode {
	/** Every update survives power loss once its call returned (two
	 *  device flushes a commit, shared by the updates of a group). */
	FHMAP_SYNC_FULL = 0,
	/** One flush a commit; a system crash may undo the last commits.
	 *  fhmap_sync() makes everything durable. */
	FHMAP_SYNC_LAZY = 1,
	/** Updates are visible at once and made durable together in the
	 *  background, at most ::fhmap_open_options.flush_interval_ms after
	 *  the first of them (no flush on the caller's path); fhmap_sync()
	 *  makes them durable at once, one commit for all callers at that
	 *  moment. A system crash loses the updates of at most the last
	 *  interval, and fhmap_recovery_needed() tells the next run. One
	 *  process at a time may open a map in this mode; it runs one
	 *  background thread. Other processes see the updates once they are
	 *  committed, and their updates wait for that commit. */
	FHMAP_SYNC_DEFERRED = 2
} fhmap_sync_mode;

/** Create the map if it does not exist (a directory holding the LMDB files). */
#define FHMAP_OPEN_CREATE 0x1u
/** Open read-only: every update returns -EROFS. Other processes may write. */
#define FHMAP_OPEN_RDONLY 0x2u
/**
 * Verify the map's LMDB pages before opening it. LMDB trusts its page and
 * node headers, so a damaged page (bad disk, stray write, careless copy)
 * can crash the process that reads it. With this flag fhmap_open() forks
 * (fork()) a child that opens the map read-only and walks every table from
 * its first entry to its last (LMDB's free list and its main table, which
 * holds all of the map's tables), reading every byte of every key and
 * value, and checks
 * that every entry lies inside its leaf page (or its overflow pages), the
 * number and bounds in the header of every such page, and that every page
 * on the free list lies inside the map. If the child
 * crashes or finds a damaged page, fhmap_open() fails with -EUCLEAN
 * and the caller never touches the damaged map (the child only reads
 * data.mdb; like any reader it takes a slot in lock.mdb).
 * The cost is linear in the size of the map (every page is read once; see
 * docs/reliability.md for figures). It covers damage present at open, not
 * damage that happens later while the map is open, nor damage LMDB can read
 * without faulting (a record that still parses: records carry checksums
 * for that). The child is waited for with waitpid(): SIGCHLD must not be
 * ignored, and no other thread may reap every child meanwhile.
 */
#define FHMAP_OPEN_VERIFY 0x4u

/** Log levels passed to ::fhmap_log_fn. */
typedef enum fhmap_log_level {
	FHMAP_LOG_ERROR = 0, /**< an operation failed for a reason the caller
	                          may not see in the return code alone */
	FHMAP_LOG_WARN = 1,  /**< something needs attention (pending copy-ups) */
	FHMAP_LOG_INFO = 2,  /**< notable events (map grown, created) */
	FHMAP_LOG_DEBUG = 3  /**< details */
} fhmap_log_level;

/**
 * @brief Log callback. May be called from any thread using the map, with
 * no libfhmap lock held; it must not call back into the same map.
 * @param ctx The log_ctx given in ::fhmap_open_options.
 * @param level Severity.
 * @param msg A NUL-terminated message without trailing newline, valid only
 *            during the call.
 */
typedef void (*fhmap_log_fn)(void *ctx, fhmap_log_level level, const char *msg);

/** Current version of ::fhmap_open_options (1: up to @c log_ctx). */
#define FHMAP_OPEN_OPTIONS_VERSION 2

/** Options for fhmap_open(). Zero means default for every field. */
typedef struct fhmap_open_options {
	unsigned int version;    /**< must be ::FHMAP_OPEN_OPTIONS_VERSION */
	unsigned int flags;      /**< FHMAP_OPEN_CREATE, FHMAP_OPEN_RDONLY,
	                              FHMAP_OPEN_VERIFY */
	fhmap_sync_mode sync;    /**< durability; default ::FHMAP_SYNC_FULL */
	uint64_t map_size;       /**< initial LMDB map size in bytes; default
	                              64 MiB (or max_map_size if smaller). The
	                              map grows by itself. */
	uint64_t max_map_size;   /**< growth limit; 0 = 1 TiB. When reached,
	                              updates fail with -ENOSPC. */
	unsigned int max_readers;/**< LMDB reader slots shared by all processes;
	                              default 126 */
	fhmap_log_fn log;        /**< optional log callback */
	void *log_ctx;           /**< passed to @c log */
	unsigned int flush_interval_ms; /**< ::FHMAP_SYNC_DEFERRED: longest time
	                              an update waits for its commit; default
	                              1000 (version 2) */
} fhmap_open_options;

/** Initialiser for ::fhmap_open_options with all defaults. */
#define FHMAP_OPEN_OPTIONS_INIT { FHMAP_OPEN_OPTIONS_VERSION, 0, FHMAP_SYNC_FULL, 0, 0, 0, 0, 0, 0 }

/**
 * @brief Opens (and with FHMAP_OPEN_CREATE creates) a handle map.
 *
 * All or nothing: on failure nothing is left open and @p *out is NULL.
 * A newly created map gets a random UUID, a random 128-bit MAC secret and a
 * random generation base, so handles of a lost or recreated map never
 * resolve to an object of the new one. Copy-up intents left by a crash are
 * reported through the log callback; list them with fhmap_copyup_pending().
 * A map may be open once per process (an LMDB rule): share the ::fhmap
 * among threads; other processes may open it at the same time. Even a
 * read-only open needs to write the map's lock.mdb (LMDB's reader table),
 * except on a read-only filesystem. A writable open also creates
 * fhmap.lock in the map directory (locks between writers), commits the
 * deferred updates a crashed process left (::FHMAP_SYNC_DEFERRED), and in
 * lazy and deferred mode records that it writes (so that a later open
 * learns of a system crash: fhmap_recovery_needed()).
 *
 * @param out Receives the map.
 * @param path Directory of the map (created with FHMAP_OPEN_CREATE).
 * @param opts Options, or NULL for defaults.
 * @return 0, or
 *   -EINVAL (bad arguments or options version),
 *   -ENOENT (no map at @p path and no FHMAP_OPEN_CREATE),
 *   -EMEDIUMTYPE (@p path holds something that is not a libfhmap map),
 *   -EPROTONOSUPPORT (map written by another, unsupported format version),
 *   -EUCLEAN (map is damaged; with FHMAP_OPEN_VERIFY also: a page failed
 *   verification), -EACCES, -EROFS (cannot create on a read-only
 *   filesystem), -EBUSY (this process has the map open already), -ENOSPC,
 *   -ENOMEM (with FHMAP_OPEN_VERIFY also: fork() failed), -EIO, -EUSERS
 *   (no free LMDB reader slot), and with FHMAP_OPEN_VERIFY -EINTR (the
 *   check was killed by a signal other than a fault, e.g. the OOM killer's)
 *   and -ECHILD (another thread reaped the check's process).
 */
FHMAP_EXTERN int fhmap_open(fhmap **out, const char *path, const fhmap_open_options *opts);

/**
 * @brief Closes a map and frees everything it owns. NULL-safe.
 *
 * No other thread may be inside a call on @p map, and no batch or iterator
 * of it may be open. A writable map's last commit makes every update
 * durable (in every mode), gives back the object numbers this process had
 * reserved but not used, and records the clean close. If that commit fails
 * (full disk), the map is closed all the same: the updates of a deferred
 * map are then committed by its next writable open, and the next boot may
 * ask for a recovery.
 * @param map The map, or NULL.
 */
FHMAP_EXTERN void fhmap_close(fhmap *map);

/**
 * @brief Makes every update made so far durable. In deferred mode this
 * commits the pending updates (one commit for all threads that call it
 * together); in lazy mode it flushes the last commits; in full mode every
 * update is durable already.
 * @param map The map.
 * @return 0, -EINVAL (NULL map), -EBUSY (in deferred mode, this thread
 *   has a batch open), -EIO, -ENOSPC. Thread-safe.
 */
FHMAP_EXTERN int fhmap_sync(fhmap *map);

/**
 * @brief Writes a consistent, compacted copy of the map to a new map
 * directory while the map stays in use (readers and writers go on). The
 * copy keeps the identity, secret and every object, so handles encoded by
 * the original decode with the copy.
 * @param map The map.
 * @param dest_dir Directory to create; it must not exist yet.
 * @return 0, -EINVAL, -EEXIST (@p dest_dir exists), -ENOSPC, -EACCES,
 *   -EIO. On failure @p dest_dir is removed again.
 */
FHMAP_EXTERN int fhmap_backup(fhmap *map, const char *dest_dir);

/** Identity and settings of a map. */
typedef struct fhmap_info {
	unsigned char uuid[16];    /**< map identity (libuuid) */
	uint32_t format_version;   /**< on-disk format version */
	uint32_t gen_base;         /**< first generation handed out */
	uint64_t created;          /**< creation time, seconds since the epoch */
	uint64_t next_ino;         /**< every object number handed out so far
	                                (and reserved by open writers) is below
	                                it */
	int read_only;             /**< opened with FHMAP_OPEN_RDONLY */
	fhmap_sync_mode sync;      /**< durability mode of this handle */
} fhmap_info;

/**
 * @brief Reports the identity of a map. The MAC secret is never exposed.
 * @param out Receives the information.
 * @param map The map.
 * @return 0, -EINVAL, -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_info_get(fhmap_info *out, fhmap *map);

/**
 * @brief Tells whether a system crash may have lost updates of this map.
 *
 * Set when a writable open finds that a process wrote the map in lazy or
 * deferred mode and the system went down before it closed the map (the
 * updates it made in its last moments, at most one flush interval of them
 * in deferred mode, may be gone), and kept until fhmap_recovery_done().
 * Every object number and generation those updates handed out stays
 * reserved: a caller that keeps each object's identity elsewhere too (as
 * fhmap-unionfs does in the upper layer's xattrs) re-creates the lost
 * records with fhmap_object_restore(). Conservative: a lazy-mode process
 * that crashed on its own also counts at the next boot.
 * @param map The map.
 * @return 1 (recovery needed), 0, or -EINVAL, -EUCLEAN, -EIO.
 *   Thread-safe.
 */
FHMAP_EXTERN int fhmap_recovery_needed(fhmap *map);

/**
 * @brief Clears the flag fhmap_recovery_needed() reports, durably: call
 * it once the map was re-filled after a crash.
 * @param map The map.
 * @return 0, -EINVAL, -EROFS, -ENOSPC, -EIO. Thread-safe.
 */
FHMAP_EXTERN int fhmap_recovery_done(fhmap *map);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Layers
 * @{ */

/** Role of a layer (branch) of the union. */
typedef enum fhmap_layer_role {
	FHMAP_LAYER_LOWER = 1, /**< read-only origin layer */
	FHMAP_LAYER_UPPER = 2  /**< writable layer; at most one per map */
} fhmap_layer_role;

/** A registered layer. */
typedef struct fhmap_layer {
	uint32_t id;                /**< stable small id, 1..65535 */
	fhmap_layer_role role;      /**< lower or upper */
	unsigned char uuid[16];     /**< identity of the layer (libuuid) */
	char root[FHMAP_PATH_MAX];  /**< absolute root path, as registered */
} fhmap_layer;

/**
 * @brief Registers a layer. Ids are handed out in order (1, 2, ...) and are
 * never reused; register lower layers topmost first. A map of lower layers
 * only (a read-only union) may get its upper layer later: the objects bound
 * before keep their numbers, generations and handles.
 * @param out_id Receives the layer id (may be NULL).
 * @param map The map.
 * @param role ::FHMAP_LAYER_LOWER or ::FHMAP_LAYER_UPPER.
 * @param root Absolute path of the layer's root directory. It is recorded as
 *             given; it need not exist at this moment.
 * @return 0, -EINVAL (bad role, relative or too long path), -EEXIST (a
 *   second upper layer, or a root already registered), -ENOSPC (65535
 *   layers), -EROFS, -EIO.
 */
FHMAP_EXTERN int fhmap_layer_add(uint32_t *out_id, fhmap *map, fhmap_layer_role role, const char *root);

/**
 * @brief Reads one layer.
 * @param out Receives the layer.
 * @param map The map.
 * @param id Layer id.
 * @return 0, -EINVAL, -ENXIO (no such layer), -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_layer_get(fhmap_layer *out, fhmap *map, uint32_t id);

/**
 * @brief Lists the layers in id order.
 * @param out Array receiving up to @p cap layers (may be NULL if cap is 0).
 * @param cap Capacity of @p out.
 * @param count Receives the total number of layers, which may exceed @p cap.
 * @param map The map.
 * @return 0, -EINVAL, -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_layer_list(fhmap_layer *out, size_t cap, size_t *count, fhmap *map);

/**
 * @brief Changes the recorded root of a layer (the layer was moved or
 * copied; see fhmapctl rebase). Real handles are not touched.
 * @param map The map.
 * @param id Layer id.
 * @param root New absolute root path.
 * @return 0, -EINVAL, -ENXIO, -EEXIST (root used by another layer), -EROFS,
 *   -EIO.
 */
FHMAP_EXTERN int fhmap_layer_set_root(fhmap *map, uint32_t id, const char *root);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Real handles (of the underlying filesystems)
 * @{ */

/** A handle of the underlying filesystem of one layer (name_to_handle_at). */
typedef struct fhmap_realfh {
	uint32_t layer;                      /**< layer id */
	int32_t type;                        /**< handle_type */
	uint32_t len;                        /**< handle_bytes, 1..128 */
	unsigned char data[FHMAP_REALFH_MAX];/**< f_handle */
} fhmap_realfh;

/**
 * @brief Takes the real handle of a path on a layer (name_to_handle_at,
 * symlinks not followed).
 * @param out Receives the handle, tagged with @p layer.
 * @param map The map (to find the layer root).
 * @param layer Layer id.
 * @param path Path relative to the layer root ("" or "." for the root), or
 *             an absolute path inside the layer.
 * @return 0, -EINVAL, -ENXIO (unknown layer), -EOPNOTSUPP (the filesystem
 *   cannot export handles), -ENAMETOOLONG, or the errno of
 *   name_to_handle_at (-ENOENT, -EACCES, ...).
 */
FHMAP_EXTERN int fhmap_realfh_from_path(fhmap_realfh *out, fhmap *map, uint32_t layer, const char *path);

/**
 * @brief Takes the real handle of @p name in directory @p dirfd
 * (name_to_handle_at with AT_SYMLINK_NOFOLLOW; an empty @p name means
 * @p dirfd itself). Needs no map: useful in a FUSE daemon's lookup path.
 * @param out Receives the handle, tagged with @p layer.
 * @param layer Layer id to record in @p out.
 * @param dirfd Directory file descriptor (or AT_FDCWD).
 * @param name Entry name or path relative to @p dirfd, or "".
 * @return 0, -EINVAL, -EOPNOTSUPP, or the errno of name_to_handle_at.
 */
FHMAP_EXTERN int fhmap_realfh_at(fhmap_realfh *out, uint32_t layer, int dirfd, const char *name);

/**
 * @brief Opens a real handle on its layer (open_by_handle_at against the
 * layer root). Needs CAP_DAC_READ_SEARCH.
 * @param out_fd Receives the new file descriptor (O_CLOEXEC is added).
 * @param map The map.
 * @param fh The real handle.
 * @param flags open(2) flags (O_RDONLY, O_PATH, ...).
 * @return 0, -EINVAL, -ENXIO (unknown layer), -ESTALE (the object is gone
 *   from the layer or the layer was replaced), -EPERM (no
 *   CAP_DAC_READ_SEARCH), or another errno of open/open_by_handle_at.
 */
FHMAP_EXTERN int fhmap_open_real(int *out_fd, fhmap *map, const fhmap_realfh *fh, int flags);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Objects
 * @{ */

/** Where an object is in its life. */
typedef enum fhmap_state {
	FHMAP_STATE_ORIGIN = 1,   /**< lives on a lower layer only */
	FHMAP_STATE_COPYUP = 2,   /**< copy-up intent recorded, not committed */
	FHMAP_STATE_UPPER = 3,    /**< lives on the upper layer (copied up or
	                               born there) */
	FHMAP_STATE_UNLINKED = 4  /**< forgotten; its handles decode to -ESTALE */
} fhmap_state;

/** The record of one object. */
typedef struct fhmap_object {
	uint64_t ino;            /**< object number: st_ino and FUSE nodeid */
	uint32_t gen;            /**< generation */
	uint32_t type;           /**< file type, one of the S_IF* values */
	fhmap_state state;       /**< life-cycle state */
	int has_origin;          /**< @c origin is valid */
	int has_upper;           /**< @c upper is valid */
	fhmap_realfh origin;     /**< origin (lower) real handle */
	fhmap_realfh upper;      /**< upper real handle */
	uint64_t parent;         /**< parent object of the primary link; 0 for
	                              the root */
	char name[FHMAP_NAME_MAX + 1]; /**< name of the primary link */
} fhmap_object;

/**
 * @brief Gets or creates the object of an origin (lower-layer) real handle.
 *
 * Binding the same lower inode again (another hardlink, another lookup, a
 * later run of the daemon) returns the same object; the name hint is kept
 * from the first bind. An object number is never reused. With
 * @p parent == 0 the object is the union root and gets ::FHMAP_ROOT_INO.
 *
 * @param out Receives the object number.
 * @param map The map.
 * @param origin Real handle on a lower layer.
 * @param parent Parent directory object (0 for the root).
 * @param name Name of the entry in @p parent ("" for the root).
 * @param type File type (S_IFREG, S_IFDIR, ...).
 * @return 0, -EINVAL (bad name, type or handle; the handle is bound to an
 *   object of another type), -ENAMETOOLONG, -ENXIO (unknown layer or not a
 *   lower layer), -ENOENT (@p parent unknown), -ENOTDIR (@p parent not a
 *   directory), -ESTALE (@p parent unlinked), -EEXIST (root already bound
 *   to another handle), -EROFS, -ENOSPC, -EAGAIN (inside a batch: see
 *   fhmap_batch_begin()), -EIO.
 */
FHMAP_EXTERN int fhmap_bind(uint64_t *out, fhmap *map, const fhmap_realfh *origin,
                            uint64_t parent, const char *name, uint32_t type);

/**
 * @brief Gets or creates an object born on the upper layer (no origin).
 * Same rules as fhmap_bind(), keyed by the upper real handle.
 * @param out Receives the object number.
 * @param map The map.
 * @param upper Real handle on the upper layer.
 * @param parent Parent directory object (0 for the root).
 * @param name Name of the entry in @p parent.
 * @param type File type (S_IF*).
 * @return As fhmap_bind(); -ENXIO when @p upper is not on the upper layer.
 */
FHMAP_EXTERN int fhmap_create_upper(uint64_t *out, fhmap *map, const fhmap_realfh *upper,
                                    uint64_t parent, const char *name, uint32_t type);

/**
 * @brief As fhmap_bind(), and hands back the object's record.
 *
 * A handle bound already is found by a read (no write transaction, no lock
 * a writer holds); a new object is created in a write shared with other
 * threads' updates (group commit).
 * @param out Receives the record (as fhmap_get() would read it).
 * @param created Receives 1 if the call created the object, 0 if it was
 *                bound already (may be NULL).
 * @param map The map.
 * @param origin Real handle on a lower layer.
 * @param parent Parent directory object (0 for the root).
 * @param name Name of the entry in @p parent ("" for the root).
 * @param type File type (S_IF*).
 * @return As fhmap_bind(); also -EUCLEAN when the origin index names an
 *   object that does not carry @p origin (a damaged index never yields
 *   another object). Thread-safe.
 */
FHMAP_EXTERN int fhmap_object_bind(fhmap_object *out, int *created, fhmap *map, const fhmap_realfh *origin,
                                   uint64_t parent, const char *name, uint32_t type);

/**
 * @brief As fhmap_create_upper(), and hands back the object's record.
 * @param out Receives the record.
 * @param created Receives 1 if the call created the object (may be NULL).
 * @param map The map.
 * @param upper Real handle on the upper layer.
 * @param parent Parent directory object.
 * @param name Name of the entry in @p parent.
 * @param type File type (S_IF*).
 * @return As fhmap_create_upper(); also -EUCLEAN (damaged upper index).
 *   Thread-safe.
 */
FHMAP_EXTERN int fhmap_object_create(fhmap_object *out, int *created, fhmap *map, const fhmap_realfh *upper,
                                     uint64_t parent, const char *name, uint32_t type);

/**
 * @brief Re-creates the record of an object that a crash took from the
 * map, with its own object number and generation (see
 * fhmap_recovery_needed()).
 *
 * For a caller that keeps every object's identity elsewhere as well, for
 * instance in an xattr of its upper file. The number and the generation
 * must have been handed out by this map (below its counters, and not held
 * by this process for later), and the number must be unknown to the map
 * (not even a tombstone), so the record can only be the object that had
 * them. Its handles must not be mapped to another object.
 * @param map The map.
 * @param obj The record: @c ino, @c gen, @c type, @c state
 *            (::FHMAP_STATE_UPPER with @c upper, and @c origin if it was
 *            copied up; or ::FHMAP_STATE_ORIGIN with @c origin only),
 *            @c parent (a live directory) and @c name.
 * @return 0, -EINVAL (bad record; number or generation never handed out),
 *   -ENAMETOOLONG, -EEXIST (the number is known, or a handle is mapped to
 *   another object), -ENOENT, -ENOTDIR, -ESTALE (parent), -ENXIO (layer),
 *   -EROFS, -ENOSPC, -EAGAIN, -EIO. Thread-safe.
 */
FHMAP_EXTERN int fhmap_object_restore(fhmap *map, const fhmap_object *obj);

/**
 * @brief Finds the object of an origin real handle.
 * @param out Receives the object number.
 * @param map The map.
 * @param origin Real handle on a lower layer.
 * @return 0, -EINVAL, -ENOENT (not bound), -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_lookup_origin(uint64_t *out, fhmap *map, const fhmap_realfh *origin);

/**
 * @brief Finds the object of an upper real handle.
 * @param out Receives the object number.
 * @param map The map.
 * @param upper Real handle on the upper layer.
 * @return 0, -EINVAL, -ENOENT (not mapped), -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_lookup_upper(uint64_t *out, fhmap *map, const fhmap_realfh *upper);

/**
 * @brief Reads the record of an object, including forgotten (unlinked)
 * ones, which are kept as tombstones until fhmap_purge().
 * @param out Receives the record.
 * @param map The map.
 * @param ino Object number.
 * @return 0, -EINVAL, -ENOENT (no such object), -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_get(fhmap_object *out, fhmap *map, uint64_t ino);

/**
 * @brief Moves the primary link of an object (rename). A directory rename is
 * this single update: paths of everything below follow. The first rename of
 * an object with an origin keeps its old hint as the origin hint (see
 * fhmap_origin_path()).
 * @param map The map.
 * @param ino Object to move.
 * @param new_parent New parent directory object.
 * @param new_name New name.
 * @return 0, -EINVAL (bad name, the root, or @p new_parent is @p ino or
 *   below it), -ENAMETOOLONG, -ENOENT, -ENOTDIR, -ESTALE (object or parent
 *   unlinked), -EROFS, -ENOSPC, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_rename(fhmap *map, uint64_t ino, uint64_t new_parent, const char *new_name);

/**
 * @brief Forgets an object whose last link is gone: it becomes a tombstone,
 * its generation is bumped and its index entries and copy-up intent are
 * dropped, so every handle of it decodes to -ESTALE from then on.
 * @param map The map.
 * @param ino Object number.
 * @return 0, -EINVAL (the root), -ENOENT, -ESTALE (already unlinked),
 *   -EROFS, -ENOSPC, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_unlink(fhmap *map, uint64_t ino);

/**
 * @brief Deletes the tombstone of an unlinked object. Its handles keep
 * decoding to -ESTALE (unknown object); its number is still never reused.
 * @param map The map.
 * @param ino Object number.
 * @return 0, -EINVAL, -ENOENT, -EBUSY (object not unlinked), -EROFS, -EIO.
 */
FHMAP_EXTERN int fhmap_purge(fhmap *map, uint64_t ino);

/**
 * @brief Gives an object a new generation: all its existing handles decode
 * to -ESTALE (for example when a name is reused for a new file that keeps
 * the object).
 * @param out_gen Receives the new generation (may be NULL).
 * @param map The map.
 * @param ino Object number.
 * @return 0, -EINVAL, -ENOENT, -ESTALE (unlinked), -EROFS, -ENOSPC,
 *   -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_gen_bump(uint32_t *out_gen, fhmap *map, uint64_t ino);

/**
 * @brief Rebuilds the path of an object from the union root by walking the
 * name hints ("/" for the root).
 * @param out Buffer for the path.
 * @param size Size of @p out.
 * @param map The map.
 * @param ino Object number.
 * @return 0, -EINVAL, -ENOENT (object or an ancestor unknown), -ESTALE (an
 *   ancestor is unlinked), -ERANGE (@p out too small), -ELOOP (hints form a
 *   cycle), -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_path(char *out, size_t size, fhmap *map, uint64_t ino);

/**
 * @brief Rebuilds the path of an object's origin relative to its lower
 * layer's root. Lower layers do not change, so this is the path of the
 * object at its first bind: renames in the union (of the object or of a
 * directory above it) leave an origin hint behind, which this follows.
 * Use it to find an origin again after the layer was copied (rebase).
 * @param out Buffer for the path.
 * @param size Size of @p out.
 * @param map The map.
 * @param ino Object number (unlinked objects and ancestors are followed).
 * @return 0, -EINVAL, -ENOENT (object or an ancestor unknown), -ERANGE,
 *   -ELOOP, -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_origin_path(char *out, size_t size, fhmap *map, uint64_t ino);

/**
 * @brief Replaces the real handles and name hint of an object (repair
 * tools: a layer was copied, an index entry was lost). Index entries follow.
 * @param map The map.
 * @param obj The record; @c ino selects the object. @c gen, @c state and
 *            @c type are kept from the stored record except that
 *            @c has_upper on a ::FHMAP_STATE_ORIGIN object makes it
 *            ::FHMAP_STATE_UPPER.
 * @return 0, -EINVAL, -ENOENT, -ESTALE, -EEXIST (a handle is mapped to
 *   another object), -ENXIO, -EROFS, -ENOSPC, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_object_update(fhmap *map, const fhmap_object *obj);

/** The two indexes from real handles to objects. */
typedef enum fhmap_index {
	FHMAP_INDEX_ORIGIN = 1, /**< origin (lower) real handle -> object */
	FHMAP_INDEX_UPPER = 2   /**< upper real handle -> object */
} fhmap_index;

/** One index entry. */
typedef struct fhmap_index_entry {
	fhmap_realfh fh; /**< the real handle (key) */
	uint64_t ino;    /**< the object it maps to */
} fhmap_index_entry;

/**
 * @brief Finds the object of a real handle and hands back its record, in
 * one read (as fhmap_lookup_origin() or fhmap_lookup_upper() followed by
 * fhmap_get(), without a second transaction). Takes no lock a writer
 * holds.
 * @param out Receives the record.
 * @param map The map.
 * @param index ::FHMAP_INDEX_ORIGIN or ::FHMAP_INDEX_UPPER.
 * @param fh The real handle.
 * @return 0, -EINVAL, -ENOENT (not mapped), -EUCLEAN (the entry names an
 *   object that does not carry @p fh: a damaged index never yields another
 *   object), -EIO. Thread-safe.
 */
FHMAP_EXTERN int fhmap_object_lookup(fhmap_object *out, fhmap *map, fhmap_index index, const fhmap_realfh *fh);

/**
 * @brief Returns the index entry that follows @p after in key order (the
 * first one when @p after is NULL). For consistency checks and repair.
 * @param out Receives the entry.
 * @param map The map.
 * @param index ::FHMAP_INDEX_ORIGIN or ::FHMAP_INDEX_UPPER.
 * @param after The previous entry's handle, or NULL.
 * @return 0, -ENOENT (no more entries), -EINVAL, -EUCLEAN (a damaged
 *   entry: if its key is readable, @p out->fh holds it and @p out->ino is 0,
 *   so the walk can go on after it and fhmap_index_remove() can drop it),
 *   -EIO.
 */
FHMAP_EXTERN int fhmap_index_next(fhmap_index_entry *out, fhmap *map, fhmap_index index,
                                  const fhmap_realfh *after);

/**
 * @brief Removes a dangling index entry: one whose object is unknown,
 * unlinked, or does not carry that handle.
 * @param map The map.
 * @param index ::FHMAP_INDEX_ORIGIN or ::FHMAP_INDEX_UPPER.
 * @param fh The real handle (key).
 * @return 0, -EINVAL, -ENOENT (no such entry), -EBUSY (the entry is valid:
 *   its object carries this handle), -EROFS, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_index_remove(fhmap *map, fhmap_index index, const fhmap_realfh *fh);

/** An iterator over objects in number order. */
typedef struct fhmap_iter fhmap_iter;

/**
 * @brief Starts iterating over all objects (tombstones included) from
 * object number @p start. The iterator holds no transaction between calls:
 * it sees updates made meanwhile, and the caller may update the map while
 * iterating.
 * @param out Receives the iterator; free it with fhmap_iter_free().
 * @param map The map.
 * @param start First object number to return (0 for all).
 * @return 0, -EINVAL, -ENOMEM.
 */
FHMAP_EXTERN int fhmap_iter_new(fhmap_iter **out, fhmap *map, uint64_t start);

/**
 * @brief Returns the next object.
 * @param out Receives the record.
 * @param it The iterator.
 * @return 0, -ENOENT (no more objects), -EINVAL, -EIO, -EUCLEAN: a damaged
 *   record (@p out->ino names it; the next call goes on past it), or a
 *   damaged B-tree the walk cannot go on through (every later call returns
 *   -ENOENT). Object numbers come back strictly ascending.
 */
FHMAP_EXTERN int fhmap_iter_next(fhmap_object *out, fhmap_iter *it);

/**
 * @brief Frees an iterator. NULL-safe.
 * @param it The iterator, or NULL.
 */
FHMAP_EXTERN void fhmap_iter_free(fhmap_iter *it);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Copy-up (two steps, crash-safe)
 * @{ */

/**
 * @brief Records the intent to copy an object up, before the upper file is
 * created. If the process dies before fhmap_copyup_commit(), the intent is
 * reported at the next fhmap_open() and by fhmap_copyup_pending().
 * @param map The map.
 * @param ino Object number (state ::FHMAP_STATE_ORIGIN).
 * @param upper_layer Upper layer id.
 * @return 0, -EINVAL, -ENOENT, -ESTALE (unlinked), -EEXIST (already lives
 *   on the upper layer), -EBUSY (an intent is already pending), -ENXIO
 *   (not the upper layer), -EROFS, -ENOSPC, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_copyup_begin(fhmap *map, uint64_t ino, uint32_t upper_layer);

/**
 * @brief Commits a copy-up once the upper file is in place: records the
 * upper real handle (redirect) and indexes it.
 * @param map The map.
 * @param ino Object number (state ::FHMAP_STATE_COPYUP).
 * @param upper Real handle of the new upper file.
 * @return 0, -EINVAL (no pending intent, bad handle), -ENOENT, -ESTALE,
 *   -ENXIO (handle not on the intent's layer), -EEXIST (the handle is
 *   mapped to another object), -EROFS, -ENOSPC, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_copyup_commit(fhmap *map, uint64_t ino, const fhmap_realfh *upper);

/**
 * @brief Records a copy-up in one step: the object, on its origin (or with
 * a pending intent for the same layer), now lives at @p upper. For a copy
 * made before the map is told (the file built aside and moved into place,
 * its identity kept in the file itself): no crash can come between an
 * intent and its commit. Adopting the handle the object has already
 * succeeds again (a recovery run twice).
 * @param out Receives the record afterwards (may be NULL).
 * @param map The map.
 * @param ino Object number.
 * @param upper Real handle of the upper file.
 * @return 0, -EINVAL, -ENOENT, -ESTALE (unlinked), -ENXIO (not the upper
 *   layer, or not the layer of the pending intent), -EEXIST (the handle is
 *   mapped to another object, or the object lives at another upper
 *   handle), -EROFS, -ENOSPC, -EAGAIN, -EIO. Thread-safe.
 */
FHMAP_EXTERN int fhmap_copyup_adopt(fhmap_object *out, fhmap *map, uint64_t ino, const fhmap_realfh *upper);

/**
 * @brief Drops a pending copy-up intent; the object lives on its origin.
 * @param map The map.
 * @param ino Object number.
 * @return 0, -EINVAL (no pending intent), -ENOENT, -EROFS, -EAGAIN, -EIO.
 */
FHMAP_EXTERN int fhmap_copyup_abort(fhmap *map, uint64_t ino);

/** A pending copy-up intent. */
typedef struct fhmap_copyup_intent {
	uint64_t ino;         /**< object being copied up */
	uint32_t upper_layer; /**< target layer */
	uint32_t pid;         /**< process that recorded it */
	uint64_t started;     /**< time recorded, seconds since the epoch */
} fhmap_copyup_intent;

/**
 * @brief Lists pending copy-up intents in object order.
 * @param out Array receiving up to @p cap intents (may be NULL if cap is 0).
 * @param cap Capacity of @p out.
 * @param count Receives the total number pending, which may exceed @p cap.
 * @param map The map.
 * @return 0, -EINVAL, -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_copyup_pending(fhmap_copyup_intent *out, size_t cap, size_t *count, fhmap *map);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Handles (what NFS clients hold)
 *
 * Layout, little-endian, in 4-byte words (docs/handle-format.md):
 * word 0 = version, type byte, length in words, 0; word 1 = map tag;
 * words 2-3 = object number; word 4 = generation; [words 5-6 = parent
 * object, word 7 = parent generation]; last two words = SipHash-2-4 MAC.
 * @{ */

/** Include the parent (connectable handle, like exportfs connectable). */
#define FHMAP_FH_CONNECTABLE 0x1u
/** Encode without MAC (8 bytes shorter); decode refuses such handles unless
 *  given ::FHMAP_FH_ALLOW_UNSIGNED. */
#define FHMAP_FH_UNSIGNED 0x2u
/** Decode: accept handles encoded with ::FHMAP_FH_UNSIGNED. */
#define FHMAP_FH_ALLOW_UNSIGNED 0x4u
/** Decode: resolve the parent of a connectable handle instead of the object
 *  (like exportfs fh_to_parent). */
#define FHMAP_FH_PARENT 0x8u

/** First handle type byte; the low two bits carry CONNECTABLE/UNSIGNED. */
#define FHMAP_FH_TYPE_BASE 0xE0

/** Why a handle was accepted or rejected, most specific first. */
typedef enum fhmap_fh_status {
	FHMAP_FH_OK = 0,          /**< decoded */
	FHMAP_FH_TRUNCATED,       /**< shorter than its type needs (-EINVAL) */
	FHMAP_FH_MALFORMED,       /**< bad type, length word, reserved byte or
	                               non-zero padding (-EINVAL) */
	FHMAP_FH_BAD_VERSION,     /**< unknown handle version (-EINVAL) */
	FHMAP_FH_FOREIGN,         /**< made by another map (-ESTALE) */
	FHMAP_FH_UNSIGNED_REFUSED,/**< no MAC and not allowed (-EBADMSG) */
	FHMAP_FH_BAD_MAC,         /**< MAC mismatch: forged or damaged
	                               (-EBADMSG) */
	FHMAP_FH_NO_PARENT,       /**< FHMAP_FH_PARENT on a non-connectable
	                               handle (-EINVAL) */
	FHMAP_FH_UNKNOWN,         /**< object number not in the map (-ESTALE) */
	FHMAP_FH_FORGOTTEN,       /**< object was unlinked (-ESTALE) */
	FHMAP_FH_STALE_GEN        /**< generation mismatch (-ESTALE) */
} fhmap_fh_status;

/**
 * @brief Names a handle status ("bad MAC", "stale generation", ...).
 * @param status A ::fhmap_fh_status.
 * @return A static string; never NULL. Thread-safe.
 */
FHMAP_EXTERN const char *fhmap_fh_status_str(fhmap_fh_status status);

/**
 * @brief Encodes the handle of an object.
 * @param out Buffer for the handle (at most ::FHMAP_FH_MAX bytes).
 * @param len In: size of @p out. Out: bytes written, a multiple of 4
 *            (::FHMAP_FH_SIZE, ::FHMAP_FH_SIZE_CONNECTABLE, or 8 less when
 *            unsigned), or the size needed on -EOVERFLOW.
 * @param map The map.
 * @param ino Object number.
 * @param parent With ::FHMAP_FH_CONNECTABLE: the parent directory object,
 *               or 0 for the object's primary parent. Ignored otherwise.
 * @param flags ::FHMAP_FH_CONNECTABLE, ::FHMAP_FH_UNSIGNED.
 * @return 0, -EINVAL (bad flags, connectable handle of the root),
 *   -EOVERFLOW (@p out too small), -ENOENT (unknown object or parent),
 *   -ESTALE (object or parent unlinked), -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_encode(void *out, size_t *len, fhmap *map, uint64_t ino,
                              uint64_t parent, unsigned int flags);

/** Result of fhmap_decode(). */
typedef struct fhmap_decoded {
	fhmap_fh_status status; /**< why it was accepted or rejected */
	uint64_t ino;           /**< object (or parent, with FHMAP_FH_PARENT) */
	uint32_t gen;           /**< its generation */
	uint32_t type;          /**< its file type (S_IF*) */
	fhmap_state state;      /**< its state */
	int connectable;        /**< the handle carried a parent */
	uint64_t parent;        /**< parent object carried by the handle */
	uint32_t parent_gen;    /**< parent generation carried by the handle */
	fhmap_realfh real;      /**< where it lives now: the upper real handle
	                             if it was copied up, else the origin */
} fhmap_decoded;

/**
 * @brief Decodes a handle and resolves the object it names.
 *
 * Accepts trailing zero padding. Never resolves to an object other than the
 * one encoded. Checks are made in this order: version, type and length
 * (with zero padding), map tag, MAC (constant time), object, generation. @c out->status says exactly
 * why a handle was rejected; fields other than status are valid only on 0.
 *
 * @param out Receives the result (status is set on every return but -EINVAL
 *            for NULL arguments).
 * @param map The map.
 * @param fh The handle bytes.
 * @param len Their length.
 * @param flags ::FHMAP_FH_ALLOW_UNSIGNED, ::FHMAP_FH_PARENT.
 * @return 0; -EINVAL (truncated, malformed, unknown version, parent asked of
 *   a non-connectable handle); -EBADMSG (bad MAC, or unsigned and not
 *   allowed); -ESTALE (foreign map, unknown object, unlinked, generation
 *   mismatch); -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_decode(fhmap_decoded *out, fhmap *map, const void *fh, size_t len,
                              unsigned int flags);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Batches (many updates, one commit)
 * @{ */

/**
 * @brief Starts a batch: until fhmap_batch_commit() or fhmap_batch_abort(),
 * every update this thread makes on @p map goes into one LMDB write
 * transaction, and this thread's reads see them. Other writers (threads or
 * processes) wait until the batch ends; readers do not.
 *
 * An update that fails with a validation error (-EINVAL, -ENOENT, ...)
 * changes nothing and the batch goes on. If the map must grow during a
 * batch, the batch is rolled back: that update and every later call until
 * fhmap_batch_abort() return -EAGAIN, and the caller redoes the batch (the
 * map has grown by then). Keep batches to a few thousand updates.
 *
 * Object numbers and generations handed out inside a batch are final only
 * when it commits: after an abort or roll-back the same numbers are handed
 * out again, so do not publish them (as st_ino, FUSE nodeids or handles)
 * before fhmap_batch_commit() returned 0.
 *
 * @param map The map.
 * @return 0, -EINVAL, -EBUSY (this thread already has a batch), -EROFS,
 *   -ENOSPC, -EIO.
 */
FHMAP_EXTERN int fhmap_batch_begin(fhmap *map);

/**
 * @brief Commits the batch of this thread (durably in full sync mode).
 * @param map The map.
 * @return 0, -EINVAL (no batch), -EAGAIN (rolled back, see
 *   fhmap_batch_begin(); the batch is ended), -ENOSPC, -EIO. On failure
 *   nothing of the batch is committed and the batch is ended.
 */
FHMAP_EXTERN int fhmap_batch_commit(fhmap *map);

/**
 * @brief Discards the batch of this thread. Nothing of it is committed.
 * @param map The map.
 * @return 0, -EINVAL (no batch).
 */
FHMAP_EXTERN int fhmap_batch_abort(fhmap *map);

/** @} */

/* ------------------------------------------------------------------------ */
/** @name Statistics
 * @{ */

/** Counts and storage figures of a map. */
typedef struct fhmap_map_stats {
	uint64_t objects;        /**< object records, tombstones included */
	uint64_t origin_only;    /**< objects in ::FHMAP_STATE_ORIGIN */
	uint64_t copying;        /**< objects in ::FHMAP_STATE_COPYUP */
	uint64_t upper;          /**< objects in ::FHMAP_STATE_UPPER */
	uint64_t unlinked;       /**< tombstones */
	uint64_t origin_entries; /**< origin index entries */
	uint64_t upper_entries;  /**< upper index entries */
	uint64_t pending;        /**< pending copy-up intents */
	uint32_t layers;         /**< registered layers */
	uint32_t page_size;      /**< LMDB page size */
	uint64_t map_size;       /**< current LMDB map size in bytes */
	uint64_t used_bytes;     /**< bytes of the map in use (last page) */
	uint64_t branch_pages;   /**< B-tree branch pages, all tables */
	uint64_t leaf_pages;     /**< B-tree leaf pages, all tables */
	uint64_t overflow_pages; /**< overflow pages, all tables */
	uint32_t depth;          /**< depth of the B-tree */
	uint32_t max_readers;    /**< reader slots */
	uint32_t readers;        /**< reader slots in use (all processes) */
} fhmap_map_stats;

/**
 * @brief Counts objects by state and reports LMDB storage figures. Walks
 * all objects and index entries: O(n).
 * @param out Receives the figures.
 * @param map The map.
 * @return 0, -EINVAL, -EUCLEAN, -EIO.
 */
FHMAP_EXTERN int fhmap_stats(fhmap_map_stats *out, fhmap *map);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* FHMAP_FHMAP_H */
