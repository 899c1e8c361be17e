/* fhmapctl: the consistency scan of check and repair. It walks both
 * indexes (every entry names a live object that carries its handle), then
 * every object (each of its handles is indexed to it), then the copy-up
 * intents. Fixes are the callback's business; removing bad index entries
 * first lets repair rebuild the right ones during the object walk. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

const char *check_kind_name(enum check_kind kind)
{
	static const char *const names[] = {
		[CHECK_INDEX_MISSING] = "index-missing",
		[CHECK_INDEX_CONFLICT] = "index-conflict",
		[CHECK_INDEX_DANGLING] = "index-dangling",
		[CHECK_INDEX_DAMAGED] = "index-damaged",
		[CHECK_PATH] = "path",
		[CHECK_STATE] = "state",
		[CHECK_COPYUP_CRASHED] = "copyup-crashed",
		[CHECK_COPYUP_RUNNING] = "copyup-running",
		[CHECK_LAYER_UNREACHABLE] = "layer-unreachable",
		[CHECK_HANDLE_STALE] = "handle-stale",
		[CHECK_HINT_MISSING] = "hint-missing",
		[CHECK_HINT_MISMATCH] = "hint-mismatch",
		[CHECK_MAP_DAMAGED] = "map-damaged",
	};

	return names[kind];
}

/* Per-layer state of a deep scan: root directory descriptor or -1. */
struct scan_layer {
	fhmap_layer layer;
	int fd;
};

struct scan {
	fhmap *map;
	int deep;
	check_fn fn;
	void *ctx;
	struct check_totals *t;
	struct scan_layer *layers;
	size_t nlayers;
	fhmap_copyup_intent *intents;     /* pending, in object order */
	size_t nintents;
	char path[CTL_PATH_MAX];          /* of the object being visited */
};

static int report(struct scan *s, struct check_problem *p)
{
	if (p->kind != CHECK_COPYUP_RUNNING)
		s->t->problems++;
	if (!p->path)
		p->path = "";
	return s->fn(s->ctx, s->map, p);
}

static void problem_init(struct check_problem *p, enum check_kind kind, const fhmap_object *o,
                         const char *path)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->path = path;
	if (o) {
		p->obj = *o;
		p->ino = o->ino;
	}
}

static struct scan_layer *scan_layer_find(struct scan *s, uint32_t id)
{
	for (size_t i = 0; i < s->nlayers; i++)
		if (s->layers[i].layer.id == id)
			return &s->layers[i];
	return NULL;
}

/* Every real handle of a live object must be indexed to that object. */
static void check_index(struct scan *s, const fhmap_object *o, int upper)
{
	const fhmap_realfh *fh = upper ? &o->upper : &o->origin;
	const char *which = upper ? "upper" : "origin";
	struct check_problem p;
	uint64_t found = 0;
	int r = upper ? fhmap_lookup_upper(&found, s->map, fh) : fhmap_lookup_origin(&found, s->map, fh);

	if (r == 0 && found == o->ino)
		return;
	if (r != 0 && r != -ENOENT && r != -EUCLEAN) {
		s->t->error = r;
		return;
	}
	problem_init(&p, r == -ENOENT ? CHECK_INDEX_MISSING : CHECK_INDEX_CONFLICT, o, s->path);
	p.which = which;
	p.layer = fh->layer;
	if (r == -ENOENT) {
		snprintf(p.reason, sizeof(p.reason), "%s index entry missing", which);
	} else if (r == -EUCLEAN) {
		p.kind = CHECK_INDEX_DAMAGED;
		snprintf(p.reason, sizeof(p.reason), "%s index entry damaged", which);
	} else {
		snprintf(p.reason, sizeof(p.reason),
		         "%s handle is indexed to object %" PRIu64 " instead", which, found);
	}
	report(s, &p);
}

static int intent_listed(const struct scan *s, uint64_t ino)
{
	size_t lo = 0, hi = s->nintents;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->intents[mid].ino == ino)
			return 1;
		if (s->intents[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* A copy-up may begin while the map is walked: reread the list on a miss. */
static int has_intent(struct scan *s, uint64_t ino)
{
	fhmap_copyup_intent *in;
	size_t n;

	if (intent_listed(s, ino))
		return 1;
	if (ctl_intents_load(&in, &n, s->map) != 0)
		return 0;
	free(s->intents);
	s->intents = in;
	s->nintents = n;
	return intent_listed(s, ino);
}

static const char *state_contradiction(struct scan *s, const fhmap_object *o)
{
	switch (o->state) {
	case FHMAP_STATE_ORIGIN:
		if (!o->has_origin)
			return "state origin but no origin handle";
		return o->has_upper ? "state origin but it has an upper handle" : NULL;
	case FHMAP_STATE_COPYUP:
		if (!o->has_origin)
			return "state copyup but no origin handle";
		return has_intent(s, o->ino) ? NULL : "state copyup but no copy-up intent";
	case FHMAP_STATE_UPPER:
		return o->has_upper ? NULL : "state upper but no upper handle";
	default:
		return "unknown state";
	}
}

int check_fresh_handle(fhmap_realfh *out, fhmap *map, uint32_t layer, const char *path,
                       uint32_t type)
{
	char full[2 * CTL_PATH_MAX];
	fhmap_layer l;
	struct stat st;
	int r = fhmap_layer_get(&l, map, layer);

	if (r != 0)
		return r;
	snprintf(full, sizeof(full), "%s/%s", l.root, ctl_layer_rel(path));
	if (lstat(full, &st) != 0)
		return -errno;
	if ((st.st_mode & S_IFMT) != (type & S_IFMT))
		return -EMEDIUMTYPE;
	return fhmap_realfh_from_path(out, map, layer, ctl_layer_rel(path));
}

/* The upper copy of a lower file with several links lives outside the
 * tree (fhmap-unionfs keeps it in its work dir's index, as overlayfs does
 * with index=on): its names are the lower ones, which show through. */
static int copy_of_hardlink(struct scan *s, const fhmap_object *o)
{
	struct stat st;
	int fd, many;

	if (!o->has_origin || (o->type & S_IFMT) == S_IFDIR ||
	    fhmap_open_real(&fd, s->map, &o->origin, O_PATH))
		return 0;
	many = fstat(fd, &st) == 0 && st.st_nlink > 1;
	close(fd);
	return many;
}

/* Compares the object a real handle opens with the file at @hint, its
 * path on the handle's layer. */
static void check_hint(struct scan *s, const fhmap_object *o, const fhmap_realfh *fh, int fd,
                       const char *which, const char *hint)
{
	struct scan_layer *sl = scan_layer_find(s, fh->layer);
	const char *rel = ctl_layer_rel(hint);
	struct check_problem p;
	struct stat a, b;

	if (fstat(fd, &a) != 0)
		return;
	problem_init(&p, CHECK_HINT_MISSING, o, s->path);
	p.which = which;
	p.layer = fh->layer;
	if (fstatat(sl->fd, rel[0] ? rel : ".", &b, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT && fh == &o->upper && copy_of_hardlink(s, o))
			return;
		snprintf(p.reason, sizeof(p.reason), "%s handle opens, but no file at %s on layer %u",
		         which, hint, (unsigned)fh->layer);
		report(s, &p);
	} else if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		p.kind = CHECK_HINT_MISMATCH;
		snprintf(p.reason, sizeof(p.reason),
		         "%s handle opens another file than %s on layer %u (layer copied or file "
		         "replaced?)",
		         which, hint, (unsigned)fh->layer);
		report(s, &p);
	}
}

/* --deep: the real handle opens on its layer and names the hinted file. */
static void check_real(struct scan *s, const fhmap_object *o, int upper)
{
	const fhmap_realfh *fh = upper ? &o->upper : &o->origin;
	const char *which = upper ? "upper" : "origin";
	struct scan_layer *sl = scan_layer_find(s, fh->layer);
	int lives_here = upper || o->state != FHMAP_STATE_UPPER;
	char origin_path[CTL_PATH_MAX];
	const char *hint = s->path;
	struct check_problem p;
	int fd = -1, r;

	if (!sl || sl->fd < 0)
		return; /* unknown or unreachable layer: reported once */
	/* An origin stays where it was bound on its lower layer, however the
	 * union renamed it since. */
	if (!upper)
		hint = fhmap_origin_path(origin_path, sizeof(origin_path), s->map, o->ino) == 0 ? origin_path : "";
	r = fhmap_open_real(&fd, s->map, fh, O_PATH);
	if (r == 0) {
		if (lives_here && hint[0])
			check_hint(s, o, fh, fd, which, hint);
		close(fd);
		return;
	}
	problem_init(&p, CHECK_HANDLE_STALE, o, s->path);
	p.which = which;
	p.layer = fh->layer;
	snprintf(p.reason, sizeof(p.reason), "%s handle does not open on layer %u: %s", which,
	         (unsigned)fh->layer, strerror(-r));
	if (hint[0])
		p.has_fresh = check_fresh_handle(&p.fresh, s->map, fh->layer, hint, o->type) == 0;
	report(s, &p);
}

static void check_object(struct scan *s, const fhmap_object *o)
{
	struct check_problem p;
	const char *bad;
	int r;

	if (o->state == FHMAP_STATE_UNLINKED)
		return;
	r = ctl_object_path(s->path, sizeof(s->path), s->map, o->ino);
	if (r != 0) {
		problem_init(&p, CHECK_PATH, o, "");
		snprintf(p.reason, sizeof(p.reason),
		         "path cannot be rebuilt from name hints (parent %" PRIu64 ", name \"%s\"): %s",
		         o->parent, o->name, fhmap_strerror(r));
		report(s, &p);
	}
	bad = state_contradiction(s, o);
	if (bad) {
		problem_init(&p, CHECK_STATE, o, s->path);
		snprintf(p.reason, sizeof(p.reason), "%s", bad);
		report(s, &p);
	}
	if (o->has_origin)
		check_index(s, o, 0);
	if (o->has_upper)
		check_index(s, o, 1);
	if (s->deep && o->has_origin)
		check_real(s, o, 0);
	if (s->deep && o->has_upper)
		check_real(s, o, 1);
}

static void walk_objects(struct scan *s)
{
	struct ctl_progress bar;
	fhmap_iter *it;
	fhmap_object o;
	int r = fhmap_iter_new(&it, s->map, 0);

	if (r != 0) {
		s->t->error = r;
		return;
	}
	ctl_progress_start(&bar, s->deep ? "deep check" : "check", ctl_object_bound(s->map));
	while (!s->t->error && (r = fhmap_iter_next(&o, it)) == 0) {
		s->t->objects++;
		check_object(s, &o);
		ctl_progress_update(&bar, o.ino);
	}
	ctl_progress_end(&bar);
	fhmap_iter_free(it);
	if (r != 0 && r != -ENOENT && !s->t->error)
		s->t->error = r;
}

static void check_intent(struct scan *s, const fhmap_copyup_intent *in)
{
	struct check_problem p;
	fhmap_object o;
	int r = fhmap_get(&o, s->map, in->ino);

	if (r == -ENOENT) {
		problem_init(&p, CHECK_STATE, NULL, "");
		p.ino = in->ino;
		p.intent = *in;
		snprintf(p.reason, sizeof(p.reason), "copy-up intent for an object not in the map");
		report(s, &p);
		return;
	}
	if (r == 0 && o.state != FHMAP_STATE_COPYUP) {
		problem_init(&p, CHECK_STATE, &o, "");
		snprintf(p.reason, sizeof(p.reason), "copy-up intent pending but state is %s",
		         ctl_state_name(o.state));
		report(s, &p);
		return;
	}
	if (r != 0) {
		s->t->error = r;
		return;
	}
	ctl_object_path(s->path, sizeof(s->path), s->map, o.ino);
	problem_init(&p, CHECK_COPYUP_CRASHED, &o, s->path);
	p.intent = *in;
	p.layer = in->upper_layer;
	p.has_fresh = s->path[0] &&
	              check_fresh_handle(&p.fresh, s->map, in->upper_layer, s->path, o.type) == 0;
	if (ctl_pid_alive(in->pid)) {
		p.kind = CHECK_COPYUP_RUNNING;
		snprintf(p.reason, sizeof(p.reason), "copy-up in progress by running pid %u",
		         (unsigned)in->pid);
	} else {
		snprintf(p.reason, sizeof(p.reason), "crashed copy-up to layer %u (pid %u gone); %s",
		         (unsigned)in->upper_layer, (unsigned)in->pid,
		         p.has_fresh ? "upper file present: repair rolls it forward"
		                     : "no upper file: repair rolls it back");
	}
	report(s, &p);
}

static void walk_intents(struct scan *s)
{
	for (size_t k = 0; k < s->nintents && !s->t->error; k++) {
		s->t->pending++;
		check_intent(s, &s->intents[k]);
	}
}

static int carries(const fhmap_object *o, fhmap_index index, const fhmap_realfh *fh)
{
	if (index == FHMAP_INDEX_UPPER)
		return o->has_upper && ctl_realfh_equal(&o->upper, fh);
	return o->has_origin && ctl_realfh_equal(&o->origin, fh);
}

static int index_lookup(uint64_t *out, fhmap *map, fhmap_index index, const fhmap_realfh *fh)
{
	if (index == FHMAP_INDEX_UPPER)
		return fhmap_lookup_upper(out, map, fh);
	return fhmap_lookup_origin(out, map, fh);
}

/* Why an index entry is bad, or NULL when it names a live object that
 * carries its handle. */
static const char *entry_fault(struct scan *s, fhmap_index index, const fhmap_index_entry *e)
{
	fhmap_object o;
	int r = fhmap_get(&o, s->map, e->ino);

	if (r == -ENOENT)
		return "which is not in the map";
	if (r != 0) {
		s->t->error = r;
		return NULL;
	}
	if (o.state == FHMAP_STATE_UNLINKED)
		return "which is unlinked";
	return carries(&o, index, &e->fh) ? NULL : "which does not carry that handle";
}

static void check_entry(struct scan *s, fhmap_index index, const fhmap_index_entry *e)
{
	const char *which = index == FHMAP_INDEX_UPPER ? "upper" : "origin";
	char fh[2 * FHMAP_REALFH_MAX + 32];
	struct check_problem p;
	const char *why = entry_fault(s, index, e);
	uint64_t now;
	int r;

	/* A running union may have changed the entry since it was read; the
	 * library refuses an entry that still names an object without its
	 * handle (-EUCLEAN). */
	if (!why)
		return;
	if ((r = index_lookup(&now, s->map, index, &e->fh)) != -EUCLEAN && (r != 0 || now != e->ino))
		return;
	problem_init(&p, CHECK_INDEX_DANGLING, NULL, "");
	p.which = which;
	p.layer = e->fh.layer;
	p.fresh = e->fh;
	p.has_fresh = 1;
	ctl_realfh_str(fh, sizeof(fh), &e->fh);
	snprintf(p.reason, sizeof(p.reason), "%s index entry %s names object %" PRIu64 ", %s", which,
	         fh, e->ino, why);
	report(s, &p);
}

/* A damaged entry ends the walk of its index: the next key is unknown. */
static void walk_index(struct scan *s, fhmap_index index)
{
	fhmap_index_entry e;
	fhmap_realfh after;
	struct check_problem p;
	int r, first = 1;

	while (!s->t->error &&
	       (r = fhmap_index_next(&e, s->map, index, first ? NULL : &after)) == 0) {
		s->t->entries++;
		check_entry(s, index, &e);
		after = e.fh;
		first = 0;
	}
	if (s->t->error || r == -ENOENT)
		return;
	if (r != -EUCLEAN) {
		s->t->error = r;
		return;
	}
	problem_init(&p, CHECK_INDEX_DAMAGED, NULL, "");
	p.which = index == FHMAP_INDEX_UPPER ? "upper" : "origin";
	snprintf(p.reason, sizeof(p.reason),
	         "%s index has a damaged entry; the entries after it were not checked", p.which);
	report(s, &p);
}

static void open_layers(struct scan *s)
{
	fhmap_layer *ls;
	size_t n;
	int r = ctl_layers_load(&ls, &n, s->map);

	if (r != 0) {
		s->t->error = r;
		return;
	}
	s->layers = calloc(n ? n : 1, sizeof(*s->layers));
	if (!s->layers) {
		free(ls);
		s->t->error = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct check_problem p;

		s->layers[i].layer = ls[i];
		s->layers[i].fd = open(ls[i].root, O_PATH | O_DIRECTORY | O_CLOEXEC);
		s->nlayers++;
		if (!s->deep || s->layers[i].fd >= 0)
			continue;
		problem_init(&p, CHECK_LAYER_UNREACHABLE, NULL, "");
		p.layer = ls[i].id;
		snprintf(p.reason, sizeof(p.reason),
		         "layer %u root %s cannot be opened: %s (mount it, or if it moved run "
		         "'fhmapctl rebase DB %u NEWROOT'); its handles were not checked",
		         (unsigned)ls[i].id, ls[i].root, strerror(errno), (unsigned)ls[i].id);
		report(s, &p);
	}
	free(ls);
}

void check_scan(struct check_totals *t, fhmap *map, int deep, check_fn fn, void *ctx)
{
	struct scan s = { .map = map, .deep = deep, .fn = fn, .ctx = ctx, .t = t };

	memset(t, 0, sizeof(*t));
	/* Intents first: the walk needs them to judge copy-up states. */
	t->error = ctl_intents_load(&s.intents, &s.nintents, map);
	if (!t->error)
		open_layers(&s);
	if (!t->error)
		walk_index(&s, FHMAP_INDEX_ORIGIN);
	if (!t->error)
		walk_index(&s, FHMAP_INDEX_UPPER);
	if (!t->error)
		walk_objects(&s);
	if (!t->error)
		walk_intents(&s);
	for (size_t i = 0; i < s.nlayers; i++)
		if (s.layers[i].fd >= 0)
			close(s.layers[i].fd);
	free(s.layers);
	free(s.intents);
}
