/**
 * @file fhmap_wire.h
 * @brief Consumer-side use of libfhmap handles by an NFS server that puts
 * them on the wire itself (a userspace server, or a Ganesha FSAL).
 *
 * The path of a request is: the client sends the opaque handle bytes ->
 * fhmap_wire_decode() checks them and resolves the object -> the server
 * opens the object's current real file with fhmap_wire_open() and serves
 * the request. Every failure comes back as the NFS status the server must
 * answer with: a handle of an object that is gone is STALE (the client
 * drops it and looks the name up again); a handle that was never valid
 * (truncated, malformed, forged, bad MAC) is BADHANDLE.
 *
 * Budgets: NFSv3 allows 64 opaque bytes and NFSv4 128. Ganesha keeps 5 of
 * them for its own header (version, flags, export id), so a FSAL has 59
 * (v3) and 123 (v4); libfhmap handles take 28 (40 connectable).
 */
#ifndef FHMAP_WIRE_H
#define FHMAP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <fhmap/fhmap.h>

#ifdef __cplusplus
extern "C" {
#endif

/** NFS protocol a handle travels in. */
typedef enum fhmap_wire_proto {
	FHMAP_WIRE_NFS3 = 3,
	FHMAP_WIRE_NFS4 = 4
} fhmap_wire_proto;

/** Opaque bytes Ganesha leaves a FSAL under NFSv3 (64 - 5 header bytes). */
#define FHMAP_WIRE_GANESHA_V3_MAX 59
/** Opaque bytes Ganesha leaves a FSAL under NFSv4 (128 - 5 header bytes). */
#define FHMAP_WIRE_GANESHA_V4_MAX 123

/** NFS status codes used here. nfsstat3 (RFC 1813) and nfsstat4 (RFC 7530)
 *  share these numbers; only the names differ (NFS3ERR_x / NFS4ERR_x). */
typedef enum fhmap_wire_nfsstat {
	FHMAP_NFS_OK = 0,
	FHMAP_NFSERR_PERM = 1,
	FHMAP_NFSERR_NOENT = 2,
	FHMAP_NFSERR_IO = 5,
	FHMAP_NFSERR_NXIO = 6,
	FHMAP_NFSERR_ACCES = 13,
	FHMAP_NFSERR_EXIST = 17,
	FHMAP_NFSERR_NOTDIR = 20,
	FHMAP_NFSERR_ISDIR = 21,
	FHMAP_NFSERR_INVAL = 22,
	FHMAP_NFSERR_FBIG = 27,
	FHMAP_NFSERR_NOSPC = 28,
	FHMAP_NFSERR_ROFS = 30,
	FHMAP_NFSERR_NAMETOOLONG = 63,
	FHMAP_NFSERR_NOTEMPTY = 66,
	FHMAP_NFSERR_DQUOT = 69,
	FHMAP_NFSERR_STALE = 70,
	FHMAP_NFSERR_BADHANDLE = 10001,
	FHMAP_NFSERR_SERVERFAULT = 10006,
	FHMAP_NFSERR_JUKEBOX = 10008 /**< NFS4ERR_DELAY in NFSv4 */
} fhmap_wire_nfsstat;

/**
 * @brief Largest handle this protocol leaves a Ganesha FSAL.
 * @param proto ::FHMAP_WIRE_NFS3 or ::FHMAP_WIRE_NFS4.
 * @return 59, 123, or 0 for an unknown protocol.
 */
size_t fhmap_wire_budget(fhmap_wire_proto proto);

/**
 * @brief Encodes the wire handle of an object for @p proto.
 * @param out Buffer (FHMAP_FH_MAX bytes are always enough).
 * @param len In: size of @p out. Out: bytes written.
 * @param map The map.
 * @param ino Object number.
 * @param flags Flags of fhmap_encode() (FHMAP_FH_CONNECTABLE).
 * @param proto Protocol whose budget the handle must fit.
 * @return ::FHMAP_NFS_OK, or the status to answer with: STALE (object
 *   unlinked or unknown), SERVERFAULT (the handle would not fit the budget,
 *   the map is damaged), IO.
 */
fhmap_wire_nfsstat fhmap_wire_encode(void *out, size_t *len, fhmap *map, uint64_t ino,
                                     unsigned int flags, fhmap_wire_proto proto);

/**
 * @brief Decodes a wire handle and resolves its object.
 * @param out Receives the result of fhmap_decode(); out->status says why a
 *            handle was refused.
 * @param map The map.
 * @param fh Handle bytes as received.
 * @param len Their length.
 * @param proto Protocol it came in (longer handles are refused).
 * @return ::FHMAP_NFS_OK; BADHANDLE (too long for @p proto, truncated,
 *   malformed, unknown version, unsigned, bad MAC); STALE (foreign map,
 *   unknown object, unlinked, old generation); SERVERFAULT, IO.
 */
fhmap_wire_nfsstat fhmap_wire_decode(fhmap_decoded *out, fhmap *map, const void *fh, size_t len,
                                     fhmap_wire_proto proto);

/**
 * @brief Decodes a wire handle and opens the object's current real file:
 * the upper copy when it was copied up, else the origin.
 * @param out_fd Receives the file descriptor on success.
 * @param out Receives the decode result.
 * @param map The map.
 * @param fh Handle bytes.
 * @param len Their length.
 * @param flags open(2) flags.
 * @param proto Protocol the handle came in.
 * @return ::FHMAP_NFS_OK or the status of fhmap_wire_decode(); STALE when
 *   the real file is gone from its layer; another status from
 *   fhmap_wire_errno() when open fails otherwise.
 */
fhmap_wire_nfsstat fhmap_wire_open(int *out_fd, fhmap_decoded *out, fhmap *map, const void *fh,
                                   size_t len, int flags, fhmap_wire_proto proto);

/**
 * @brief Maps a libfhmap or system error (negative or positive errno) to
 * an NFS status.
 * @param err The error; 0 gives ::FHMAP_NFS_OK.
 * @return The status.
 */
fhmap_wire_nfsstat fhmap_wire_errno(int err);

/**
 * @brief Maps a decode status to an NFS status.
 * @param status A ::fhmap_fh_status.
 * @return OK, BADHANDLE or STALE.
 */
fhmap_wire_nfsstat fhmap_wire_fh_status(fhmap_fh_status status);

/**
 * @brief Names a status as the protocol does ("NFS3ERR_STALE",
 * "NFS4ERR_BADHANDLE", "NFS4ERR_DELAY", ...).
 * @param st The status.
 * @param proto The protocol.
 * @return A static string.
 */
const char *fhmap_wire_nfsstat_str(fhmap_wire_nfsstat st, fhmap_wire_proto proto);

#ifdef __cplusplus
}
#endif

#endif /* FHMAP_WIRE_H */
