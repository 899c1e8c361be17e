/*
 * killload: SIGKILL of fhmap-unionfs under concurrent load (killload.sh).
 *
 * Every worker thread owns its objects: files and directories it made or
 * was given on the lower layer, under the shared top directories d0..dN
 * (never moved). No two threads touch one object, so the model of each
 * thread (what its returned operations left) predicts the union exactly;
 * the daemon still serves them all at once, in shared directories, with
 * cross-directory renames taking its rename lock. Each thread logs every
 * operation to a journal outside the mount before ("B") and after ("E")
 * it, so after a kill each thread has at most one operation whose outcome
 * is unknown: the union must show the model with it done or not done.
 *
 * Names carry their owner: a letter, the thread, '_', a number.
 */
#ifndef KILLLOAD_H
#define KILLLOAD_H

#include <stddef.h>
#include <stdint.h>

#define KL_TOPS 4  /* shared top directories d0..d3 */
#define KL_MAXT 16 /* threads */
#define KL_LINKS 4 /* names of one file */
#define KL_NAME 24
#define KL_HMAX 128         /* handle bytes */
#define KL_REC 64           /* the record at offset 0 of every file */
#define KL_BIG (256 << 10)  /* size of the big lower files (long copy-ups) */
#define KL_ID_BASE 1000000L /* object ids: (thread + 1) * base + index */
#define KL_XATTR "user.kl"

struct kl_link {
	long parent; /* object id: 0 the root, 1..KL_TOPS a top dir */
	char name[KL_NAME];
};

struct kl_obj {
	long id;
	int dir;
	int alive;
	unsigned int ver;  /* content: 0 empty (just created), else record ver */
	unsigned int xver; /* KL_XATTR "x<xver>", 0 none */
	long size;         /* when ver > 0 */
	uint64_t ino;      /* 0: not seen yet */
	int nlinks;
	struct kl_link l[KL_LINKS];
	int htype;         /* its handle, taken through the mount */
	unsigned int hlen; /* 0: none yet */
	unsigned char fh[KL_HMAX];
};

struct kl_thread {
	int t;
	unsigned long seq; /* next operation number (also in new names) */
	struct kl_obj *o;  /* index = id % KL_ID_BASE */
	size_t n, cap;
};

struct kl_state {
	int nthreads;
	struct kl_thread th[KL_MAXT];
};

enum kl_opcode { KL_CREATE, KL_MKDIR, KL_WRITE, KL_XATTR_SET, KL_RENAME, KL_LINK, KL_UNLINK, KL_RMDIR };

/* One operation: id (new object or the one written/linked), the entry it
 * acts on (p1/n1), the new entry (p2/n2), the new version v. */
struct kl_op {
	int code;
	long id;
	long p1, p2;
	char n1[KL_NAME], n2[KL_NAME];
	unsigned int v;
};

/* Model */
struct kl_obj *kl_obj(struct kl_state *s, long id);
struct kl_obj *kl_new_obj(struct kl_thread *th, int dir);
struct kl_obj *kl_at(struct kl_thread *th, long parent, const char *name, int *link);
/* Path of @id below the mount ("" for the root), of one of its links. */
void kl_path(char *buf, size_t size, struct kl_state *s, long id);
void kl_link_path(char *buf, size_t size, struct kl_state *s, const struct kl_link *l);
/* The same below @root. */
void kl_root_path(char *buf, size_t size, const char *root, struct kl_state *s, long id);
void kl_root_link(char *buf, size_t size, const char *root, struct kl_state *s, const struct kl_link *l);
int kl_below(struct kl_state *s, long id, long dir);
/* Applies a returned operation to its thread's model. */
void kl_apply(struct kl_state *s, int t, const struct kl_op *op);
/* The content of a file at version @ver of @size bytes. */
void kl_content(unsigned char *buf, long id, unsigned int ver, long size);
int kl_thread_copy(struct kl_thread *dst, const struct kl_thread *src);

/* State file and journal lines */
int kl_state_load(struct kl_state *s, const char *path);
int kl_state_save(const struct kl_state *s, const char *path);
void kl_state_free(struct kl_state *s);
int kl_op_format(char *buf, size_t size, int t, unsigned long seq, const struct kl_op *op);
int kl_op_parse(struct kl_op *op, int *t, unsigned long *seq, const char *line);
void kl_hex(char *out, const unsigned char *b, unsigned int n);
unsigned int kl_unhex(unsigned char *out, const char *hex, unsigned int max);
/* The owner thread of a name, or -1. */
int kl_owner(const char *name);

int kl_run(int argc, char **argv);
int kl_check(int argc, char **argv);

#endif
