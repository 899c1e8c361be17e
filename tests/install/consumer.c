/* A consumer built against the installed library only. */
#include <stdio.h>
#include <string.h>

#include <fhmap/fhmap.h>

int main(int argc, char **argv)
{
	fhmap_open_options o = FHMAP_OPEN_OPTIONS_INIT;
	fhmap *map;
	int rc;

	if (argc != 2)
		return 2;
	o.flags = FHMAP_OPEN_CREATE;
	rc = fhmap_open(&map, argv[1], &o);
	printf("libfhmap %s: open %s\n", fhmap_version(), fhmap_strerror(rc));
	fhmap_close(map);
	return rc == 0 && strcmp(fhmap_version(), "0.2.0") == 0 ? 0 : 1;
}
