/* fhmapctl: printable names of types, states, roles, handles and times. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fhmapctl.h"

const char *ctl_type_name(uint32_t type)
{
	switch (type & S_IFMT) {
	case S_IFREG:
		return "file";
	case S_IFDIR:
		return "dir";
	case S_IFLNK:
		return "symlink";
	case S_IFCHR:
		return "chardev";
	case S_IFBLK:
		return "blockdev";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	default:
		return "unknown";
	}
}

const char *ctl_state_name(fhmap_state state)
{
	switch (state) {
	case FHMAP_STATE_ORIGIN:
		return "origin";
	case FHMAP_STATE_COPYUP:
		return "copyup";
	case FHMAP_STATE_UPPER:
		return "upper";
	case FHMAP_STATE_UNLINKED:
		return "unlinked";
	default:
		return "unknown";
	}
}

const char *ctl_role_name(fhmap_layer_role role)
{
	switch (role) {
	case FHMAP_LAYER_LOWER:
		return "lower";
	case FHMAP_LAYER_UPPER:
		return "upper";
	default:
		return "unknown";
	}
}

void ctl_hex(char *out, const void *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
}

void ctl_uuid_str(char out[37], const unsigned char uuid[16])
{
	char hex[33];

	ctl_hex(hex, uuid, 16);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

void ctl_realfh_str(char *out, size_t size, const fhmap_realfh *fh)
{
	char hex[2 * FHMAP_REALFH_MAX + 1];
	size_t len = fh->len <= FHMAP_REALFH_MAX ? fh->len : FHMAP_REALFH_MAX;

	ctl_hex(hex, fh->data, len);
	snprintf(out, size, "%u:%d:%s", (unsigned)fh->layer, (int)fh->type, hex);
}

int ctl_realfh_equal(const fhmap_realfh *a, const fhmap_realfh *b)
{
	return a->layer == b->layer && a->type == b->type && a->len == b->len &&
	       a->len <= FHMAP_REALFH_MAX && memcmp(a->data, b->data, a->len) == 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ctl_unhex(unsigned char *out, size_t cap, const char *hex)
{
	size_t n = strlen(hex);

	if (n >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
		hex += 2;
		n -= 2;
	}
	if (n == 0 || n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return (int)(n / 2);
}

void ctl_time_str(char out[32], uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "%llu", (unsigned long long)t);
}
