#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct worker {
	const bench_kind *k;
	void *tctx;
	size_t ops;
	uint32_t *lat; /* ns per operation of the timed pass */
	pthread_barrier_t *bar;
	int rc;
} worker;


static int run_ops(const bench_kind *k, void *tctx, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		int rc = k->op(tctx, i);
		if (rc)
			return rc;
	}
	return 0;
}

static int run_timed(worker *w)
{
	uint64_t prev = bench_now_ns();
	for (size_t i = 0; i < w->ops; i++) {
		int rc = w->k->op(w->tctx, i);
		uint64_t now = bench_now_ns();
		if (rc)
			return rc;
		w->lat[i] = (uint32_t)(now - prev > UINT32_MAX ? UINT32_MAX : now - prev);
		prev = now;
	}
	return 0;
}

/* Barriers: 1 start, 2 plain pass done, 3 timed pass done. A worker that
 * fails still passes every barrier so that nobody waits forever. */
static void *worker_main(void *arg)
{
	worker *w = arg;
	int rc = w->k->init ? w->k->init(w->tctx) : 0;
	pthread_barrier_wait(w->bar);
	if (!rc)
		rc = run_ops(w->k, w->tctx, 0, w->ops);
	pthread_barrier_wait(w->bar);
	if (!rc)
		rc = run_timed(w);
	pthread_barrier_wait(w->bar);
	if (w->k->fini)
		w->k->fini(w->tctx);
	w->rc = rc;
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

void bench_summarize(bench_result *out, uint32_t *lat, size_t n)
{
	qsort(lat, n, sizeof *lat, cmp_u32);
	out->median_ns = lat[n / 2];
	out->p99_ns = lat[(size_t)((double)n * 0.99)];
}

void bench_measure(bench_result *out, const bench_kind *k, void **tctx, unsigned int threads, size_t ops)
{
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, threads + 1);
	worker w[8];
	pthread_t tid[8];
	uint32_t *lat = calloc(ops * threads, sizeof *lat);
	if (!lat || threads > 8)
		bench_die("measure: out of memory or too many threads", 0);
	for (unsigned int t = 0; t < threads; t++) {
		w[t] = (worker){ .k = k, .tctx = tctx[t], .ops = ops, .lat = lat + t * ops, .bar = &bar };
		if (pthread_create(&tid[t], NULL, worker_main, &w[t]) != 0)
			bench_die("pthread_create", 0);
	}
	pthread_barrier_wait(&bar);
	uint64_t t0 = bench_now_ns();
	pthread_barrier_wait(&bar);
	uint64_t t1 = bench_now_ns();
	pthread_barrier_wait(&bar);
	for (unsigned int t = 0; t < threads; t++) {
		pthread_join(tid[t], NULL);
		if (w[t].rc) {
			char what[96];
			snprintf(what, sizeof what, "%s (thread %u)", k->name, t);
			bench_die(what, w[t].rc);
		}
	}
	pthread_barrier_destroy(&bar);
	out->ops_s = (double)ops * threads * 1e9 / (double)(t1 - t0);
	bench_summarize(out, lat, ops * threads);
	free(lat);
}

void bench_measure_once(bench_result *out, const bench_kind *k, void *tctx, size_t ops)
{
	uint32_t *lat = calloc(ops, sizeof *lat);
	if (!lat)
		bench_die("measure: out of memory", 0);
	if (k->init && k->init(tctx) != 0)
		bench_die(k->name, 0);
	worker w = { .k = k, .tctx = tctx, .ops = ops, .lat = lat };
	uint64_t t0 = bench_now_ns();
	int rc = run_timed(&w);
	uint64_t t1 = bench_now_ns();
	if (k->fini)
		k->fini(tctx);
	if (rc)
		bench_die(k->name, rc);
	out->ops_s = (double)ops * 1e9 / (double)(t1 - t0);
	bench_summarize(out, lat, ops);
	free(lat);
}

typedef struct pair_worker {
	const bench_kind *k[2];
	void *tctx[2];
	size_t ops, block;
	double *ratios; /* ops / block of them */
	pthread_barrier_t *bar;
	int rc;
} pair_worker;

/* Times operations [from, to) of @k after an untimed warm-up over the
 * block before (samples both kinds ran already; the first block warms up
 * on the last), so the timed block runs on caches this kind filled, not
 * the other kind. */
static int run_block(const bench_kind *k, void *tctx, size_t from, size_t to, size_t ops, uint64_t *ns)
{
	size_t len = to - from, wfrom = from >= len ? from - len : ops - len;
	int rc = run_ops(k, tctx, wfrom, wfrom + len);
	uint64_t t0 = bench_now_ns();
	if (!rc)
		rc = run_ops(k, tctx, from, to);
	*ns = bench_now_ns() - t0;
	return rc;
}

static int run_pairs(pair_worker *w)
{
	uint64_t ns[2];
	int rc = 0;
	for (int j = 0; j < 2 && !rc; j++)
		rc = run_ops(w->k[j], w->tctx[j], 0, w->ops);
	for (size_t p = 0; p < w->ops / w->block && !rc; p++) {
		size_t from = p * w->block, to = from + w->block;
		int first = p & 1; /* alternate the order: neither kind always runs second */
		rc = run_block(w->k[first], w->tctx[first], from, to, w->ops, &ns[first]);
		if (!rc)
			rc = run_block(w->k[!first], w->tctx[!first], from, to, w->ops, &ns[!first]);
		w->ratios[p] = (double)ns[0] / (double)ns[1];
	}
	return rc;
}

static void *pair_main(void *arg)
{
	pair_worker *w = arg;
	int rc = w->k[0]->init ? w->k[0]->init(w->tctx[0]) : 0;
	if (!rc && w->k[1]->init)
		rc = w->k[1]->init(w->tctx[1]);
	pthread_barrier_wait(w->bar);
	if (!rc)
		rc = run_pairs(w);
	for (int j = 0; j < 2; j++)
		if (w->k[j]->fini)
			w->k[j]->fini(w->tctx[j]);
	w->rc = rc;
	return NULL;
}

size_t bench_measure_paired(double *out, const bench_kind *a, void **ta, const bench_kind *b, void **tb,
                            unsigned int threads, size_t ops, size_t block)
{
	pthread_barrier_t bar;
	pair_worker w[8];
	pthread_t tid[8];
	size_t per = ops / block;
	if (threads > 8 || !block)
		bench_die("measure: bad paired run", 0);
	pthread_barrier_init(&bar, NULL, threads);
	for (unsigned int t = 0; t < threads; t++) {
		w[t] = (pair_worker){ .k = { a, b }, .tctx = { ta[t], tb[t] }, .ops = ops, .block = block,
			              .ratios = out + t * per, .bar = &bar };
		if (pthread_create(&tid[t], NULL, pair_main, &w[t]) != 0)
			bench_die("pthread_create", 0);
	}
	for (unsigned int t = 0; t < threads; t++) {
		pthread_join(tid[t], NULL);
		if (w[t].rc)
			bench_die(a->name, w[t].rc);
	}
	pthread_barrier_destroy(&bar);
	return per * threads;
}

void bench_series_add(bench_series *s, const bench_result *r)
{
	if (s->n < BENCH_MAX_REPS)
		s->r[s->n++] = *r;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median_of(double *v, unsigned int n)
{
	qsort(v, n, sizeof *v, cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* field: 0 median, 1 p99, 2 ops/s */
double bench_series_median(const bench_series *s, int field)
{
	double v[BENCH_MAX_REPS];
	for (unsigned int i = 0; i < s->n; i++)
		v[i] = field == 0 ? s->r[i].median_ns : field == 1 ? s->r[i].p99_ns : s->r[i].ops_s;
	return s->n ? median_of(v, s->n) : NAN;
}

void bench_series_print(const bench_series *s, const char *scale)
{
	double lo = INFINITY, hi = 0;
	for (unsigned int i = 0; i < s->n; i++) {
		lo = fmin(lo, s->r[i].median_ns);
		hi = fmax(hi, s->r[i].median_ns);
	}
	double med = bench_series_median(s, 0);
	printf("@lat %s %s %u %.0f %.0f %.0f %.1f\n", scale, s->name, s->threads, med,
	       bench_series_median(s, 1), bench_series_median(s, 2), s->n ? 100.0 * (hi - lo) / med : 0.0);
	fflush(stdout);
}

void bench_pairs_print(const char *scale, const char *name, unsigned int threads, double *v, size_t n)
{
	if (!n)
		return;
	double med = median_of(v, (unsigned int)n); /* sorts @v */
	printf("@ratio %s %s %u %.3f %.3f %.3f\n", scale, name, threads, med, v[n / 10], v[n - 1 - n / 10]);
	fflush(stdout);
}

void bench_ratio_print(const char *scale, const char *name, const bench_series *a, const bench_series *b)
{
	double v[BENCH_MAX_REPS];
	unsigned int n = a->n < b->n ? a->n : b->n;
	if (!n)
		return;
	for (unsigned int i = 0; i < n; i++)
		v[i] = a->r[i].median_ns / b->r[i].median_ns;
	double med = median_of(v, n);
	printf("@ratio %s %s %u %.3f %.3f %.3f\n", scale, name, a->threads, med, v[0], v[n - 1]);
	fflush(stdout);
}
