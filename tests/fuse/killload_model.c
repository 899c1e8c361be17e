/* killload: the model of what each thread's returned operations left, its
 * state file and journal lines (killload.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "killload.h"

struct kl_obj *kl_obj(struct kl_state *s, long id)
{
	long t = id / KL_ID_BASE - 1;
	size_t i = (size_t)(id % KL_ID_BASE);

	if (t < 0 || t >= s->nthreads || i >= s->th[t].n)
		return NULL;
	return &s->th[t].o[i];
}

struct kl_obj *kl_new_obj(struct kl_thread *th, int dir)
{
	if (th->n == th->cap) {
		size_t cap = th->cap ? 2 * th->cap : 64;
		struct kl_obj *o = realloc(th->o, cap * sizeof(*o));

		if (!o) {
			perror("killload: realloc");
			exit(2);
		}
		th->o = o;
		th->cap = cap;
	}
	struct kl_obj *o = &th->o[th->n];
	memset(o, 0, sizeof(*o));
	o->id = (th->t + 1) * KL_ID_BASE + (long)th->n++;
	o->dir = dir;
	return o;
}

struct kl_obj *kl_at(struct kl_thread *th, long parent, const char *name, int *link)
{
	for (size_t i = 0; i < th->n; i++)
		for (int k = 0; th->o[i].alive && k < th->o[i].nlinks; k++)
			if (th->o[i].l[k].parent == parent && !strcmp(th->o[i].l[k].name, name)) {
				if (link)
					*link = k;
				return &th->o[i];
			}
	return NULL;
}

void kl_path(char *buf, size_t size, struct kl_state *s, long id)
{
	struct kl_obj *o;

	if (id == 0)
		snprintf(buf, size, "%s", "");
	else if (id <= KL_TOPS)
		snprintf(buf, size, "d%ld", id - 1);
	else if ((o = kl_obj(s, id)) && o->nlinks)
		kl_link_path(buf, size, s, &o->l[0]);
	else
		snprintf(buf, size, "?%ld", id);
}

void kl_link_path(char *buf, size_t size, struct kl_state *s, const struct kl_link *l)
{
	char parent[4096];

	kl_path(parent, sizeof(parent), s, l->parent);
	snprintf(buf, size, "%s/%s", parent, l->name);
}

/* ROOT/path, when it fits (else ""). */
static char *rooted(char *buf, size_t size, const char *root, size_t *left)
{
	size_t n = strlen(root);

	buf[0] = '\0';
	if (n + 2 > size)
		return NULL;
	memcpy(buf, root, n);
	buf[n] = '/';
	*left = size - n - 1;
	return buf + n + 1;
}

void kl_root_path(char *buf, size_t size, const char *root, struct kl_state *s, long id)
{
	size_t left;
	char *p = rooted(buf, size, root, &left);

	if (p)
		kl_path(p, left, s, id);
}

void kl_root_link(char *buf, size_t size, const char *root, struct kl_state *s, const struct kl_link *l)
{
	size_t left;
	char *p = rooted(buf, size, root, &left);

	if (p)
		kl_link_path(p, left, s, l);
}

/* @id is @dir or below it. */
int kl_below(struct kl_state *s, long id, long dir)
{
	for (int depth = 0; id > KL_TOPS && depth < 1000; depth++) {
		struct kl_obj *o = kl_obj(s, id);

		if (id == dir)
			return 1;
		if (!o || !o->nlinks)
			return 0;
		id = o->l[0].parent;
	}
	return id == dir;
}

static void drop_link(struct kl_obj *o, int k)
{
	o->l[k] = o->l[--o->nlinks];
	if (!o->nlinks)
		o->alive = 0;
}

void kl_apply(struct kl_state *s, int t, const struct kl_op *op)
{
	struct kl_thread *th = &s->th[t];
	struct kl_obj *o = kl_obj(s, op->id), *target;
	int k, tk;

	switch (op->code) {
	case KL_CREATE:
	case KL_MKDIR:
		o->alive = 1;
		o->nlinks = 1;
		o->l[0].parent = op->p1;
		snprintf(o->l[0].name, KL_NAME, "%s", op->n1);
		break;
	case KL_WRITE:
		if (!o->ver)
			o->size = KL_REC;
		o->ver = op->v;
		break;
	case KL_XATTR_SET:
		o->xver = op->v;
		break;
	case KL_LINK:
		o->l[o->nlinks].parent = op->p2;
		snprintf(o->l[o->nlinks++].name, KL_NAME, "%s", op->n2);
		break;
	case KL_RENAME:
		o = kl_at(th, op->p1, op->n1, &k);
		target = kl_at(th, op->p2, op->n2, &tk);
		if (o == target)
			break; /* two names of one file: rename does nothing */
		if (target)
			drop_link(target, tk);
		o->l[k].parent = op->p2;
		snprintf(o->l[k].name, KL_NAME, "%s", op->n2);
		break;
	case KL_UNLINK:
	case KL_RMDIR:
		o = kl_at(th, op->p1, op->n1, &k);
		drop_link(o, k);
		break;
	}
}

/* The record names the object and the version; the rest of a big file is
 * the object's own filler, so content from another object shows. */
void kl_content(unsigned char *buf, long id, unsigned int ver, long size)
{
	char rec[KL_REC + 1];

	for (long i = 0; i < size; i++)
		buf[i] = (unsigned char)('a' + (id * 7 + i / 64) % 26);
	snprintf(rec, sizeof(rec), "kl id=%ld v=%u ", id, ver);
	memcpy(buf, rec, strlen(rec));
	if (size >= KL_REC)
		buf[KL_REC - 1] = '\n';
}

int kl_thread_copy(struct kl_thread *dst, const struct kl_thread *src)
{
	*dst = *src;
	dst->o = malloc((src->cap ? src->cap : 1) * sizeof(*dst->o));
	if (!dst->o)
		return -ENOMEM;
	memcpy(dst->o, src->o, src->n * sizeof(*dst->o));
	return 0;
}

void kl_hex(char *out, const unsigned char *b, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

unsigned int kl_unhex(unsigned char *out, const char *hex, unsigned int max)
{
	unsigned int n = 0;

	while (n < max && sscanf(hex + 2 * n, "%2hhx", &out[n]) == 1)
		n++;
	return n;
}

int kl_owner(const char *name)
{
	int t;
	char c, us;

	if (sscanf(name, "%c%d%c", &c, &t, &us) != 3 || us != '_' || t < 0 || t >= KL_MAXT)
		return -1;
	return t;
}

/* ------------------------------------------------------------------------ */
/* State file: "T thread seq count", then one "O" line per object. */

static void save_obj(FILE *f, const struct kl_obj *o)
{
	char hex[2 * KL_HMAX + 1] = "-";

	fprintf(f, "O %ld %d %d %u %u %ld %" PRIu64 " %d", o->id, o->dir, o->alive, o->ver, o->xver, o->size,
	        o->ino, o->nlinks);
	for (int k = 0; k < o->nlinks; k++)
		fprintf(f, " %ld %s", o->l[k].parent, o->l[k].name);
	if (o->hlen)
		kl_hex(hex, o->fh, o->hlen);
	fprintf(f, " %d %s\n", o->htype, hex);
}

int kl_state_save(const struct kl_state *s, const char *path)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	if (!(f = fopen(tmp, "w")))
		return -errno;
	fprintf(f, "N %d\n", s->nthreads);
	for (int t = 0; t < s->nthreads; t++) {
		fprintf(f, "T %d %lu %zu\n", t, s->th[t].seq, s->th[t].n);
		for (size_t i = 0; i < s->th[t].n; i++)
			save_obj(f, &s->th[t].o[i]);
	}
	if (fclose(f) || rename(tmp, path) < 0)
		return -errno;
	return 0;
}

static int load_obj(struct kl_thread *th, char *line)
{
	struct kl_obj *o = kl_new_obj(th, 0);
	char hex[2 * KL_HMAX + 2];
	long id;
	int used;
	char *p = line;

	if (sscanf(p, "O %ld %d %d %u %u %ld %" SCNu64 " %d%n", &id, &o->dir, &o->alive, &o->ver, &o->xver,
	           &o->size, &o->ino, &o->nlinks, &used) != 8 ||
	    id != o->id || o->nlinks < 0 || o->nlinks > KL_LINKS)
		return -EINVAL;
	p += used;
	for (int k = 0; k < o->nlinks; k++, p += used)
		if (sscanf(p, " %ld %23s%n", &o->l[k].parent, o->l[k].name, &used) != 2)
			return -EINVAL;
	if (sscanf(p, " %d %257s", &o->htype, hex) != 2)
		return -EINVAL;
	o->hlen = strcmp(hex, "-") ? kl_unhex(o->fh, hex, KL_HMAX) : 0;
	return 0;
}

int kl_state_load(struct kl_state *s, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	unsigned long seq;
	int t = -1, r = 0;

	memset(s, 0, sizeof(*s));
	if (!f)
		return -errno;
	while (r == 0 && fgets(line, sizeof(line), f)) {
		if (line[0] == 'N' && sscanf(line, "N %d", &s->nthreads) == 1 && s->nthreads > 0 &&
		    s->nthreads <= KL_MAXT) {
			for (int i = 0; i < s->nthreads; i++)
				s->th[i].t = i;
		} else if (line[0] == 'T' && sscanf(line, "T %d %lu", &t, &seq) == 2 && t >= 0 &&
		           t < s->nthreads) {
			s->th[t].seq = seq;
		} else if (line[0] == 'O' && t >= 0) {
			r = load_obj(&s->th[t], line);
		} else {
			r = -EINVAL;
		}
	}
	fclose(f);
	if (r == 0 && !s->nthreads)
		r = -EINVAL;
	return r;
}

void kl_state_free(struct kl_state *s)
{
	for (int t = 0; t < KL_MAXT; t++)
		free(s->th[t].o);
}

/* ------------------------------------------------------------------------ */
/* Journal: "B thread seq code id p1 n1 p2 n2 v" before, "E thread seq rc"
 * after; "I thread id ino" and "H thread id type hex" as they are learned. */

int kl_op_format(char *buf, size_t size, int t, unsigned long seq, const struct kl_op *op)
{
	return snprintf(buf, size, "B %d %lu %d %ld %ld %s %ld %s %u\n", t, seq, op->code, op->id, op->p1,
	                op->n1[0] ? op->n1 : "-", op->p2, op->n2[0] ? op->n2 : "-", op->v);
}

int kl_op_parse(struct kl_op *op, int *t, unsigned long *seq, const char *line)
{
	memset(op, 0, sizeof(*op));
	if (sscanf(line, "B %d %lu %d %ld %ld %23s %ld %23s %u", t, seq, &op->code, &op->id, &op->p1, op->n1,
	           &op->p2, op->n2, &op->v) != 9)
		return -EINVAL;
	if (!strcmp(op->n1, "-"))
		op->n1[0] = '\0';
	if (!strcmp(op->n2, "-"))
		op->n2[0] = '\0';
	return 0;
}
