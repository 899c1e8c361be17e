/* fhmapctl: progress bar for long walks, shown only when stderr is a terminal. */
#include <time.h>
#include <unistd.h>

#include "fhmapctl.h"

#define BAR_WIDTH 40

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ctl_progress_start(struct ctl_progress *p, const char *label, uint64_t total)
{
	p->enabled = isatty(STDERR_FILENO) && total > 0;
	p->label = label;
	p->total = total;
	p->last_ms = 0;
}

static void draw(const struct ctl_progress *p, uint64_t done)
{
	uint64_t d = done > p->total ? p->total : done;
	int fill = (int)(d * BAR_WIDTH / p->total);
	char bar[BAR_WIDTH + 1];

	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
	fprintf(stderr, "\r%s [%s] %3d%%", p->label, bar, (int)(d * 100 / p->total));
	fflush(stderr);
}

/* Redraws at most ten times a second so the walk is not slowed down. */
void ctl_progress_update(struct ctl_progress *p, uint64_t done)
{
	uint64_t t;

	if (!p->enabled)
		return;
	t = now_ms();
	if (t - p->last_ms < 100)
		return;
	p->last_ms = t;
	draw(p, done);
}

void ctl_progress_end(struct ctl_progress *p)
{
	if (!p->enabled)
		return;
	draw(p, p->total);
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->enabled = 0;
}
