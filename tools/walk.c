/* fhmapctl: object helpers shared by the commands (paths, resolving
 * OBJECT arguments, layer lists). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fhmapctl.h"

int ctl_object_path(char *out, size_t size, fhmap *map, uint64_t ino)
{
	int r = fhmap_path(out, size, map, ino);

	if (r != 0 && size > 0)
		out[0] = '\0';
	return r;
}

const char *ctl_layer_rel(const char *upath)
{
	while (*upath == '/')
		upath++;
	return upath;
}

int ctl_layers_load(fhmap_layer **out, size_t *count, fhmap *map)
{
	size_t n = 0;
	int r;

	*out = NULL;
	r = fhmap_layer_list(NULL, 0, &n, map);
	if (r != 0)
		return r;
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	r = fhmap_layer_list(*out, n, count, map);
	if (r != 0 || *count > n) {
		free(*out);
		*out = NULL;
		return r ? r : -EAGAIN;
	}
	return 0;
}

/* If @p path is @p root or below it, returns the part relative to root. */
static const char *under_root(const char *path, const char *root)
{
	size_t n = strlen(root);

	while (n > 1 && root[n - 1] == '/')
		n--;
	if (strncmp(path, root, n) != 0)
		return NULL;
	if (path[n] == '\0')
		return "";
	if (path[n] != '/')
		return NULL;
	return ctl_layer_rel(path + n);
}

/* Looks up the object of the file at @p rel on layer @p l. Returns 0,
 * -ENOENT when the file is not on the layer, -ENODATA (after saying so) when
 * it is but the map does not know it, or another -errno. */
static int lookup_on_layer(uint64_t *out, fhmap *map, const fhmap_layer *l, const char *rel,
                           const char *spec)
{
	fhmap_realfh fh;
	int r = fhmap_realfh_from_path(&fh, map, l->id, rel);

	if (r != 0)
		return r;
	if (l->role == FHMAP_LAYER_UPPER)
		r = fhmap_lookup_upper(out, map, &fh);
	else
		r = fhmap_lookup_origin(out, map, &fh);
	if (r == -ENOENT) {
		ctl_err("%s: the file exists on layer %u (%s) but is not in the map", spec,
		        (unsigned)l->id, l->root);
		return -ENODATA;
	}
	return r;
}

/* Union path: the topmost layer holding the path decides, as in overlayfs. */
static int resolve_union(uint64_t *out, fhmap *map, const fhmap_layer *ls, size_t n,
                         const char *spec)
{
	const char *rel = ctl_layer_rel(spec);

	for (int pass = 0; pass < 2; pass++) {
		fhmap_layer_role want = pass == 0 ? FHMAP_LAYER_UPPER : FHMAP_LAYER_LOWER;

		for (size_t i = 0; i < n; i++) {
			int r;

			if (ls[i].role != want)
				continue;
			r = lookup_on_layer(out, map, &ls[i], rel, spec);
			if (r != -ENOENT)
				return r;
		}
	}
	ctl_err("%s: no such file on any layer of the map", spec);
	return -ENODATA;
}

int ctl_resolve_object(uint64_t *out, fhmap *map, const char *spec)
{
	fhmap_layer *ls;
	size_t n;
	int r;

	if (ctl_parse_u64(out, spec) == 0)
		return 0;
	r = ctl_layers_load(&ls, &n, map);
	if (r != 0) {
		ctl_report("cannot list layers", r);
		return r;
	}
	r = 1; /* not inside any layer root */
	for (size_t i = 0; i < n && r == 1; i++) {
		const char *rel = spec[0] == '/' ? under_root(spec, ls[i].root) : NULL;

		if (rel)
			r = lookup_on_layer(out, map, &ls[i], rel, spec);
	}
	if (r == 1)
		r = resolve_union(out, map, ls, n, spec);
	else if (r == -ENOENT)
		ctl_err("%s: no such file", spec);
	free(ls);
	if (r == -ENODATA || r == -ENOENT)
		return -ENOENT;
	if (r != 0)
		ctl_report(spec, r);
	return r;
}

int ctl_intents_load(fhmap_copyup_intent **out, size_t *count, fhmap *map)
{
	fhmap_copyup_intent *in = NULL;
	size_t n = 0, cap;
	int r;

	/* The list may grow between two calls; retry until it fits. */
	do {
		free(in);
		cap = n + 16;
		in = calloc(cap, sizeof(*in));
		if (!in)
			return -ENOMEM;
		r = fhmap_copyup_pending(in, cap, &n, map);
	} while (r == 0 && n > cap);
	if (r != 0) {
		free(in);
		return r;
	}
	*out = in;
	*count = n;
	return 0;
}

int ctl_pid_alive(uint32_t pid)
{
	if (pid == 0 || pid > (uint32_t)INT32_MAX)
		return 0;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

uint64_t ctl_object_bound(fhmap *map)
{
	fhmap_info info;

	if (fhmap_info_get(&info, map) != 0 || info.next_ino < 1)
		return 0;
	return info.next_ino - 1;
}
