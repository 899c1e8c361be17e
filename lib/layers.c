/* Layers: stable small ids for the branches of the union, their roles,
 * UUIDs and root paths; and the cached root fds open_by_handle_at needs.
 * Record: u8 role, 3 zero bytes, 16-byte UUID, root path (no NUL). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "fhmap_int.h"

#define LAYER_HDR 20
#define LAYER_ID_MAX UINT16_MAX

static int layer_parse(fhmap_layer *out, uint32_t id, const fhmap__val *v)
{
	const unsigned char *p = v->data;
	size_t rootlen = v->size - LAYER_HDR;

	if (v->size < LAYER_HDR + 1 || rootlen >= FHMAP_PATH_MAX ||
	    (p[0] != FHMAP_LAYER_LOWER && p[0] != FHMAP_LAYER_UPPER) || memchr(p + LAYER_HDR, '\0', rootlen))
		return -EUCLEAN;
	out->id = id;
	out->role = (fhmap_layer_role)p[0];
	memcpy(out->uuid, p + 4, 16);
	memcpy(out->root, p + LAYER_HDR, rootlen);
	out->root[rootlen] = '\0';
	return 0;
}

/* The raw record of layer @id; -ENXIO when there is none. */
static int layer_val(const fhmap__txn *txn, fhmap *m, uint32_t id, fhmap__val *v)
{
	unsigned char key[4];
	int rc;

	if (id == 0 || id > LAYER_ID_MAX)
		return -ENXIO;
	fhmap__be32(key, id);
	rc = fhmap__get(txn, m, FHMAP__DB_LAYERS, key, 4, v);
	return rc == -ENOENT ? -ENXIO : rc;
}

static int layer_load(const fhmap__txn *txn, fhmap *m, uint32_t id, fhmap_layer *out)
{
	fhmap__val v;
	int rc = layer_val(txn, m, id, &v);

	return rc ? rc : layer_parse(out, id, &v);
}

int fhmap__layer_role(const fhmap__txn *txn, fhmap *m, uint32_t id, fhmap_layer_role *role)
{
	fhmap__val v;
	int rc = layer_val(txn, m, id, &v);

	if (rc)
		return rc;
	if (v.size < LAYER_HDR + 1)
		return -EUCLEAN;
	*role = (fhmap_layer_role)((const unsigned char *)v.data)[0];
	return 0;
}

/* Calls @fn for every layer in id order until it returns non-zero. */
static int layer_walk(const fhmap__txn *txn, fhmap *m, int (*fn)(const fhmap_layer *l, void *ctx), void *ctx)
{
	fhmap_layer *l = malloc(sizeof(*l));
	fhmap__cursor cur;
	fhmap__val k, v;
	int rc, mrc;

	if (!l)
		return -ENOMEM;
	if ((rc = fhmap__cursor_open(&cur, txn, m, FHMAP__DB_LAYERS)) != 0) {
		free(l);
		return rc;
	}
	for (mrc = fhmap__cursor_get(&cur, &k, &v, FHMAP__FIRST); mrc == 0;
	     mrc = fhmap__cursor_get(&cur, &k, &v, FHMAP__NEXT)) {
		const unsigned char *kp = k.data;

		if (k.size != 4) {
			rc = -EUCLEAN;
			break;
		}
		if ((rc = layer_parse(l, fhmap__get_be32(kp), &v)) != 0 || (rc = fn(l, ctx)) != 0)
			break;
	}
	fhmap__cursor_close(&cur);
	free(l);
	if (rc == 0 && mrc != -ENOENT)
		rc = mrc;
	return rc;
}

struct add_args {
	fhmap_layer_role role;
	const char *root;
	size_t rootlen;
	uint32_t skip_id; /* the layer being changed by set_root */
	uint32_t id;
};

static int conflicts(const fhmap_layer *l, void *ctx)
{
	struct add_args *a = ctx;

	if (l->id == a->skip_id)
		return 0;
	if (strlen(l->root) == a->rootlen && !memcmp(l->root, a->root, a->rootlen))
		return -EEXIST;
	if (a->role == FHMAP_LAYER_UPPER && l->role == FHMAP_LAYER_UPPER)
		return -EEXIST;
	return 0;
}

static int layer_store(fhmap__wtxn *w, uint32_t id, fhmap_layer_role role, const unsigned char uuid[16],
                       const char *root, size_t rootlen)
{
	unsigned char key[4], val[LAYER_HDR + FHMAP_PATH_MAX];

	fhmap__be32(key, id);
	memset(val, 0, LAYER_HDR);
	val[0] = (unsigned char)role;
	memcpy(val + 4, uuid, 16);
	memcpy(val + LAYER_HDR, root, rootlen);
	return fhmap__put(w, FHMAP__DB_LAYERS, key, 4, val, LAYER_HDR + rootlen);
}

static int do_layer_add(fhmap__wtxn *w, void *arg)
{
	struct add_args *a = arg;
	unsigned char uuid[16], buf[8];
	uint64_t next;
	int rc;

	if ((rc = layer_walk(&w->t, w->m, conflicts, a)) != 0)
		return rc;
	if ((rc = fhmap__meta_u64(&w->t, w->m, "next_layer", &next)) != 0)
		return rc;
	if (next > LAYER_ID_MAX)
		return -ENOSPC;
	a->id = (uint32_t)next;
	fhmap__put_le64(buf, next + 1);
	if ((rc = fhmap__put(w, FHMAP__DB_META, "next_layer", 10, buf, 8)) != 0)
		return rc;
	uuid_generate_random(uuid);
	return layer_store(w, a->id, a->role, uuid, a->root, a->rootlen);
}

/* Absolute, not too long; trailing slashes dropped so roots compare. */
static int root_check(const char *root, size_t *len)
{
	size_t n;

	if (!root || root[0] != '/')
		return -EINVAL;
	n = strlen(root);
	if (n >= FHMAP_PATH_MAX)
		return -EINVAL;
	while (n > 1 && root[n - 1] == '/')
		n--;
	*len = n;
	return 0;
}

int fhmap_layer_add(uint32_t *out_id, fhmap *m, fhmap_layer_role role, const char *root)
{
	struct add_args a = { role, root, 0, 0, 0 };
	int rc;

	if (!m || (role != FHMAP_LAYER_LOWER && role != FHMAP_LAYER_UPPER))
		return -EINVAL;
	if ((rc = root_check(root, &a.rootlen)) != 0)
		return rc;
	if ((rc = fhmap__write(m, do_layer_add, &a)) == 0 && out_id)
		*out_id = a.id;
	return rc;
}

int fhmap_layer_get(fhmap_layer *out, fhmap *m, uint32_t id)
{
	fhmap__rtxn r;
	int rc;

	if (!out || !m)
		return -EINVAL;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = layer_load(&r.t, m, id, out);
	fhmap__read_end(m, &r);
	return rc;
}

struct list_ctx {
	fhmap_layer *out;
	size_t cap, count;
};

static int list_one(const fhmap_layer *l, void *ctx)
{
	struct list_ctx *c = ctx;

	if (c->count < c->cap)
		c->out[c->count] = *l;
	c->count++;
	return 0;
}

int fhmap_layer_list(fhmap_layer *out, size_t cap, size_t *count, fhmap *m)
{
	struct list_ctx c = { out, cap, 0 };
	fhmap__rtxn r;
	int rc;

	if (!count || !m || (cap && !out))
		return -EINVAL;
	if ((rc = fhmap__read_begin(m, &r)) != 0)
		return rc;
	rc = layer_walk(&r.t, m, list_one, &c);
	fhmap__read_end(m, &r);
	*count = c.count;
	return rc;
}

static int do_set_root(fhmap__wtxn *w, void *arg)
{
	struct add_args *a = arg;
	fhmap_layer *l = malloc(sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	if ((rc = layer_load(&w->t, w->m, a->skip_id, l)) == 0) {
		a->role = FHMAP_LAYER_LOWER; /* only the root may conflict */
		if ((rc = layer_walk(&w->t, w->m, conflicts, a)) == 0)
			rc = layer_store(w, l->id, l->role, l->uuid, a->root, a->rootlen);
	}
	free(l);
	return rc;
}

int fhmap_layer_set_root(fhmap *m, uint32_t id, const char *root)
{
	struct add_args a = { FHMAP_LAYER_LOWER, root, 0, id, id };
	int rc;

	if (!m || !id)
		return -EINVAL;
	if ((rc = root_check(root, &a.rootlen)) != 0)
		return rc;
	if ((rc = fhmap__write(m, do_set_root, &a)) != 0)
		return rc;
	/* Reopen the root on next use. The old fd may still be in use by a
	 * concurrent fhmap_open_real(), so it stays open until fhmap_close(). */
	pthread_mutex_lock(&m->fd_lock);
	if (id < m->nlayer_fds && m->layer_fds[id] >= 0) {
		int *grown = realloc(m->layer_fds, (m->nlayer_fds + 1) * sizeof(int));

		if (grown) {
			m->layer_fds = grown;
			m->layer_fds[m->nlayer_fds++] = m->layer_fds[id]; /* retired slot */
			m->layer_fds[id] = -1;
		}
	}
	pthread_mutex_unlock(&m->fd_lock);
	return 0;
}

/* Root fds are cached by layer id in layer_fds[0..LAYER_ID_MAX]; entries
 * past that hold retired fds of roots that were changed. */
int fhmap__layer_fd(fhmap *m, uint32_t id, int *fd)
{
	fhmap_layer *l;
	int rc = 0;

	if (id == 0 || id > LAYER_ID_MAX)
		return -ENXIO;
	pthread_mutex_lock(&m->fd_lock);
	if (!m->layer_fds) {
		m->layer_fds = malloc((LAYER_ID_MAX + 1) * sizeof(int));
		if (!m->layer_fds) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i <= LAYER_ID_MAX; i++)
			m->layer_fds[i] = -1;
		m->nlayer_fds = LAYER_ID_MAX + 1;
	}
	if (m->layer_fds[id] < 0) {
		if (!(l = malloc(sizeof(*l)))) {
			rc = -ENOMEM;
			goto out;
		}
		if ((rc = fhmap_layer_get(l, m, id)) == 0) {
			m->layer_fds[id] = open(l->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (m->layer_fds[id] < 0)
				rc = -errno;
		}
		free(l);
	}
	*fd = m->layer_fds[id];
out:
	pthread_mutex_unlock(&m->fd_lock);
	return rc;
}

void fhmap__layer_fds_close(fhmap *m)
{
	for (size_t i = 0; i < m->nlayer_fds; i++)
		if (m->layer_fds[i] >= 0)
			close(m->layer_fds[i]);
	free(m->layer_fds);
	m->layer_fds = NULL;
	m->nlayer_fds = 0;
}
