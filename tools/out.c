/* fhmapctl: a small streaming JSON writer for --json output on stdout. */
#include <inttypes.h>
#include <stdio.h>

#include "fhmapctl.h"

#define JSON_DEPTH 16

/* need_comma[d]: a value was already written at nesting depth d. */
static int need_comma[JSON_DEPTH];
static int depth;

static void put_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", stdout);
		else if (*p == '\t')
			fputs("\\t", stdout);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

/* Writes the separator and key (inside objects) before a value. */
static void prefix(const char *key)
{
	if (need_comma[depth])
		putchar(',');
	need_comma[depth] = 1;
	if (key) {
		put_string(key);
		putchar(':');
	}
}

static void open_level(const char *key, char c)
{
	prefix(key);
	putchar(c);
	if (depth + 1 < JSON_DEPTH)
		depth++;
	need_comma[depth] = 0;
}

static void close_level(char c)
{
	putchar(c);
	if (depth > 0)
		depth--;
}

void json_obj_begin(const char *key)
{
	open_level(key, '{');
}

void json_obj_end(void)
{
	close_level('}');
}

void json_arr_begin(const char *key)
{
	open_level(key, '[');
}

void json_arr_end(void)
{
	close_level(']');
}

void json_str(const char *key, const char *value)
{
	prefix(key);
	if (value)
		put_string(value);
	else
		fputs("null", stdout);
}

void json_u64(const char *key, uint64_t value)
{
	prefix(key);
	printf("%" PRIu64, value);
}

void json_i64(const char *key, int64_t value)
{
	prefix(key);
	printf("%" PRId64, value);
}

void json_bool(const char *key, int value)
{
	prefix(key);
	fputs(value ? "true" : "false", stdout);
}

void json_realfh(const char *key, const fhmap_realfh *fh)
{
	char hex[2 * FHMAP_REALFH_MAX + 1];

	if (!fh) {
		json_str(key, NULL);
		return;
	}
	ctl_hex(hex, fh->data, fh->len <= FHMAP_REALFH_MAX ? fh->len : FHMAP_REALFH_MAX);
	json_obj_begin(key);
	json_u64("layer", fh->layer);
	json_i64("type", fh->type);
	json_str("handle", hex);
	json_obj_end();
}

void json_end(void)
{
	putchar('\n');
	depth = 0;
	need_comma[0] = 0;
}
