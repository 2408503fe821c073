/* lat_hist: see lat_hist.h. */
#include "lat_hist.h"

void lat_hist_add(struct lat_hist *h, uint64_t micros)
{
	int b;

	for (b = 0; b < h->n && micros > h->bound_us[b]; b++)
		;
	atomic_fetch_add_explicit(&h->count[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, micros, memory_order_relaxed);
}

void lat_hist_read(struct lat_hist *h, uint64_t *cum, uint64_t *count, double *sum_s)
{
	uint64_t total = 0;

	for (int b = 0; b <= h->n; b++) {
		total += atomic_load_explicit(&h->count[b], memory_order_relaxed);
		if (b < h->n)
			cum[b] = total;
	}
	*count = total;
	*sum_s = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
}

const char *lat_hist_bound(const struct lat_hist *h, int i)
{
	return i >= 0 && i < h->n ? h->bound_name[i] : "+Inf";
}
