/*
 * The node table: the state of every object the kernel holds a nodeid for
 * (as libfuse's passthrough_hp keeps its inodes).
 *
 * A nodeid is an object number and never a pointer: requests name objects
 * by number, and the table finds their node (or loads the record from
 * libfhmap for a nodeid the kernel kept in a file handle, after FORGET or
 * a restart). A node lives while its count of references is not 0: one
 * for every kernel lookup (nlookup) and one for every request using it.
 *
 * The table lock is a leaf: it is held only to find, insert or remove a
 * node, never while waiting for a node lock, so a long copy-up holding a
 * node lock never stalls lookups of other nodes. Counts are atomic; the
 * last put removes the node under the table lock after checking that no
 * other thread took a reference meanwhile.
 *
 * A node caches its object's record. Every update of the record in the
 * map is made holding the node (and its lock exclusively) and updates the
 * cache at once. A thread that read a record before its node existed may
 * hold an old copy if the node of a writer was freed in between: freeing a
 * node whose record changed bumps the table's epoch, and a node created
 * from a record read before the bump reloads it (ufs_node_obtain).
 */
#define _GNU_SOURCE
#include "unionfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Thread_local int locks_held; /* node locks this thread holds */

static size_t bucket_of(uint64_t ino, size_t nbuckets)
{
	ino *= 0x9E3779B97F4A7C15ull;
	return (size_t)(ino >> 32) & (nbuckets - 1);
}

int ufs_nodes_init(struct ufs *u)
{
	struct ufs_nodes *t = &u->nodes;

	t->nbuckets = 1024;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	pthread_rwlock_init(&t->lock, NULL);
	atomic_init(&t->epoch, 0);
	return 0;
}

static void node_free(struct ufs *u, struct ufs_node *n)
{
	ufs_node_reset_fds(u, n);
	pthread_rwlock_destroy(&n->lock);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->copied);
	free(n);
}

void ufs_nodes_free(struct ufs *u)
{
	struct ufs_nodes *t = &u->nodes;

	for (size_t i = 0; i < t->nbuckets; i++) {
		for (struct ufs_node *n = t->buckets[i], *next; n; n = next) {
			next = n->next;
			node_free(u, n);
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = t->count = 0;
	pthread_rwlock_destroy(&t->lock);
}

uint64_t ufs_nodes_epoch(struct ufs *u)
{
	return atomic_load(&u->nodes.epoch);
}

/* Caller holds the table lock. */
static struct ufs_node *find(struct ufs_nodes *t, uint64_t ino)
{
	for (struct ufs_node *n = t->buckets[bucket_of(ino, t->nbuckets)]; n; n = n->next)
		if (n->ino == ino)
			return n;
	return NULL;
}

/* Caller holds the table lock exclusively. A failed growth keeps the old
 * table: chains get longer, nothing breaks. */
static void grow(struct ufs_nodes *t)
{
	size_t nb = t->nbuckets * 2;
	struct ufs_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		for (struct ufs_node *n = t->buckets[i], *next; n; n = next) {
			size_t h = bucket_of(n->ino, nb);

			next = n->next;
			n->next = b[h];
			b[h] = n;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
}

static struct ufs_node *node_new(const fhmap_object *rec)
{
	struct ufs_node *n = calloc(1, sizeof(*n));
	pthread_rwlockattr_t a;

	if (!n)
		return NULL;
	/* writers (namespace changes) must not starve behind lookups */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&n->lock, &a);
	pthread_rwlockattr_destroy(&a);
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->copied, NULL);
	n->ino = rec->ino;
	n->obj = *rec;
	n->indexed = -1;
	atomic_init(&n->refs, 1);
	atomic_init(&n->nlookup, 0);
	atomic_init(&n->fd, -1);
	atomic_init(&n->layers, NULL);
	atomic_init(&n->upper_gen, 0);
	return n;
}

int ufs_node_obtain(struct ufs_node **out, struct ufs *u, const fhmap_object *rec, uint64_t epoch)
{
	struct ufs_nodes *t = &u->nodes;
	fhmap_object fresh;

	for (;;) {
		pthread_rwlock_wrlock(&t->lock);
		struct ufs_node *n = find(t, rec->ino);

		if (n) {
			atomic_fetch_add(&n->refs, 1);
			pthread_rwlock_unlock(&t->lock);
			*out = n;
			return 0;
		}
		if (atomic_load(&t->epoch) == epoch) {
			n = node_new(rec);
			if (n) {
				if (t->count >= t->nbuckets)
					grow(t);
				size_t h = bucket_of(n->ino, t->nbuckets);

				n->next = t->buckets[h];
				t->buckets[h] = n;
				t->count++;
			}
			pthread_rwlock_unlock(&t->lock);
			*out = n;
			return n ? 0 : -ENOMEM;
		}
		/* a node whose record changed went away since @rec was read */
		epoch = atomic_load(&t->epoch);
		pthread_rwlock_unlock(&t->lock);
		int r = fhmap_get(&fresh, u->map, rec->ino);
		if (r < 0)
			return r == -ENOENT ? -ESTALE : r;
		if (fresh.state == FHMAP_STATE_UNLINKED)
			return -ESTALE;
		rec = &fresh;
	}
}

int ufs_node_hold(struct ufs_node **out, struct ufs *u, uint64_t ino)
{
	struct ufs_nodes *t = &u->nodes;
	fhmap_object rec;

	pthread_rwlock_rdlock(&t->lock);
	struct ufs_node *n = find(t, ino);
	if (n)
		atomic_fetch_add(&n->refs, 1);
	pthread_rwlock_unlock(&t->lock);
	if (n) {
		*out = n;
		return 0;
	}
	uint64_t epoch = ufs_nodes_epoch(u);
	int r = fhmap_get(&rec, u->map, ino);
	if (r == -ENOENT || (r == 0 && rec.state == FHMAP_STATE_UNLINKED))
		return -ESTALE; /* a nodeid never issued, or forgotten */
	if (r < 0)
		return r;
	return ufs_node_obtain(out, u, &rec, epoch);
}

void ufs_node_put(struct ufs *u, struct ufs_node *n)
{
	struct ufs_nodes *t = &u->nodes;
	uint64_t ino = n->ino;

	if (atomic_fetch_sub(&n->refs, 1) != 1)
		return;
	/* @n may be freed by now: find it again, by address, with no
	 * references (a node at the same address with none is one whose last
	 * put is under way, which may remove it as well as its own caller) */
	pthread_rwlock_wrlock(&t->lock);
	struct ufs_node **pp = &t->buckets[bucket_of(ino, t->nbuckets)], *gone = NULL;
	for (; *pp; pp = &(*pp)->next) {
		if (*pp == n && atomic_load(&n->refs) == 0) {
			gone = n;
			*pp = n->next;
			t->count--;
			if (n->changed)
				atomic_fetch_add(&t->epoch, 1);
			break;
		}
	}
	pthread_rwlock_unlock(&t->lock);
	if (gone)
		node_free(u, gone);
}

void ufs_node_get(struct ufs_node *n)
{
	atomic_fetch_add(&n->refs, 1);
}

void ufs_node_lookup(struct ufs_node *n)
{
	atomic_fetch_add(&n->nlookup, 1);
	atomic_fetch_add(&n->refs, 1);
}

void ufs_node_forget(struct ufs *u, uint64_t ino, uint64_t nlookup)
{
	struct ufs_nodes *t = &u->nodes;

	pthread_rwlock_rdlock(&t->lock);
	struct ufs_node *n = find(t, ino);
	if (n)
		atomic_fetch_add(&n->refs, 1);
	pthread_rwlock_unlock(&t->lock);
	if (!n)
		return;
	uint64_t have = atomic_load(&n->nlookup), take;
	do {
		take = nlookup < have ? nlookup : have;
	} while (!atomic_compare_exchange_weak(&n->nlookup, &have, have - take));
	if (take)
		atomic_fetch_sub(&n->refs, take); /* our own reference stays */
	ufs_node_put(u, n);
}

void ufs_node_rdlock(struct ufs_node *n)
{
	pthread_rwlock_rdlock(&n->lock);
	locks_held++;
}

void ufs_node_wrlock(struct ufs_node *n)
{
	pthread_rwlock_wrlock(&n->lock);
	locks_held++;
}

void ufs_node_unlock(struct ufs_node *n)
{
	locks_held--;
	pthread_rwlock_unlock(&n->lock);
}

int ufs_locks_held(void)
{
	return locks_held;
}

void ufs_node_obj(fhmap_object *out, struct ufs_node *n)
{
	ufs_node_rdlock(n);
	*out = n->obj;
	ufs_node_unlock(n);
}

void ufs_node_set_obj(struct ufs_node *n, const fhmap_object *obj)
{
	n->obj = *obj;
	n->changed = 1;
}

/* Takes @k fds from the budget of kept fds, or says no. */
static int fd_budget(struct ufs *u, long k)
{
	if (atomic_fetch_add(&u->fds_kept, k) + k <= u->fd_cap)
		return 1;
	atomic_fetch_sub(&u->fds_kept, k);
	return 0;
}

static int open_live(int *fd, struct ufs *u, const fhmap_object *obj, int flags)
{
	if (obj->state == FHMAP_STATE_UPPER && obj->has_upper)
		return fhmap_open_real(fd, u->map, &obj->upper, flags);
	if (obj->has_origin)
		return fhmap_open_real(fd, u->map, &obj->origin, flags);
	return -EIO;
}

int ufs_node_fd(int *fd, int *owned, struct ufs *u, struct ufs_node *n)
{
	int f = atomic_load(&n->fd), r;

	*owned = 0;
	if (f >= 0) {
		*fd = f;
		return 0;
	}
	if (n->obj.state == FHMAP_STATE_UNLINKED)
		return -ESTALE;
	r = open_live(&f, u, &n->obj, O_PATH);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->mu);
	if (atomic_load(&n->fd) >= 0) {
		close(f); /* another reader was first */
		f = atomic_load(&n->fd);
	} else if (fd_budget(u, 1)) {
		atomic_store(&n->fd, f);
	} else {
		*owned = 1;
	}
	pthread_mutex_unlock(&n->mu);
	*fd = f;
	return 0;
}

int ufs_node_keep_fd(struct ufs *u, struct ufs_node *n)
{
	int f;

	if (atomic_load(&n->fd) >= 0)
		return 0;
	int r = open_live(&f, u, &n->obj, O_PATH);
	if (r < 0)
		return r;
	atomic_fetch_add(&u->fds_kept, 1); /* needed whatever the cap */
	atomic_store(&n->fd, f);
	return 0;
}

void ufs_node_reset_fds(struct ufs *u, struct ufs_node *n)
{
	struct ufs_layers *l = atomic_exchange(&n->layers, NULL);
	int fd = atomic_exchange(&n->fd, -1);

	if (fd >= 0) {
		close(fd);
		atomic_fetch_sub(&u->fds_kept, 1);
	}
	if (l) {
		atomic_fetch_sub(&u->fds_kept, ufs_layers_nfds(l));
		ufs_layers_close(l);
	}
}

/* Whether an object living on the upper layer is a copied-up lower
 * hardlink kept in the index: fixed at its copy-up, so asked once. */
static int node_indexed(struct ufs_node *n, int fd)
{
	long lower;
	int v;

	if (n->obj.state != FHMAP_STATE_UPPER || !n->obj.has_origin || n->obj.type == S_IFDIR)
		return 0; /* born on the upper layer, or not copied up */
	pthread_mutex_lock(&n->mu);
	v = n->indexed;
	pthread_mutex_unlock(&n->mu);
	if (v >= 0)
		return v;
	v = ufs_lowerlinks(fd, &lower) == 0;
	pthread_mutex_lock(&n->mu);
	n->indexed = v;
	pthread_mutex_unlock(&n->mu);
	return v;
}

int ufs_node_stat(struct stat *st, struct ufs *u, struct ufs_node *n)
{
	int fd, owned, r = ufs_node_fd(&fd, &owned, u, n);
	long lower;

	if (r < 0)
		return r;
	if (fstat(fd, st) < 0)
		r = -errno;
	else if (n->obj.state == FHMAP_STATE_UNLINKED)
		st->st_nlink = 0; /* kept for the kernel after its last name went */
	else if (S_ISDIR(st->st_mode))
		r = ufs_dir_nlink(st, u, n);
	else if (node_indexed(n, fd) && ufs_lowerlinks(fd, &lower) == 0)
		st->st_nlink = (nlink_t)lower + st->st_nlink - 1; /* minus the index link */
	st->st_ino = n->ino;
	if (owned)
		close(fd);
	return r;
}

int ufs_dir_nlink(struct stat *st, struct ufs *u, struct ufs_node *n)
{
	struct ufs_dirref ref;
	int r = ufs_dir_get(&ref, u, n);

	if (r < 0)
		return r;
	if (ufs_layers_nfds(ref.l) > 1)
		st->st_nlink = 1;
	else if (n->ino == FHMAP_ROOT_INO && ref.l->upper_fd >= 0 && u->hide_work && st->st_nlink > 2)
		st->st_nlink--; /* the hidden work dir */
	ufs_dir_put(&ref);
	return 0;
}

int ufs_node_links(long *links, int *indexed, struct ufs *u, struct ufs_node *n)
{
	struct stat st;
	long lower;
	int fd, owned, r;

	*indexed = 0;
	if (n->obj.state != FHMAP_STATE_UPPER) {
		*links = 1; /* lower files with more links are copied up first */
		return 0;
	}
	r = ufs_node_fd(&fd, &owned, u, n);
	if (r < 0)
		return r;
	if (fstat(fd, &st) < 0) {
		r = -errno;
	} else if (node_indexed(n, fd) && ufs_lowerlinks(fd, &lower) == 0) {
		*indexed = 1;
		*links = lower + (long)st.st_nlink - 1;
	} else {
		*links = (long)st.st_nlink;
	}
	if (owned)
		close(fd);
	return r;
}

int ufs_dir_get(struct ufs_dirref *ref, struct ufs *u, struct ufs_node *n)
{
	struct ufs_layers *l = atomic_load(&n->layers);
	int r;

	ref->owned = 0;
	if (l) {
		ref->l = l;
		return 0;
	}
	if (n->obj.type != S_IFDIR)
		return -ENOTDIR;
	if (n->obj.state == FHMAP_STATE_UNLINKED)
		return -ESTALE;
	r = ufs_layers_open(&l, u, &n->obj);
	if (r < 0)
		return r;
	pthread_mutex_lock(&n->mu);
	if (atomic_load(&n->layers)) {
		ufs_layers_close(l);
		l = atomic_load(&n->layers);
	} else if (fd_budget(u, ufs_layers_nfds(l))) {
		atomic_store(&n->layers, l);
	} else {
		ref->owned = 1;
	}
	pthread_mutex_unlock(&n->mu);
	ref->l = l;
	return 0;
}

void ufs_dir_put(struct ufs_dirref *ref)
{
	if (ref->owned)
		ufs_layers_close(ref->l);
	ref->l = NULL;
	ref->owned = 0;
}
