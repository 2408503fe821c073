/* geo_pool: the country and network of each pool entry.
 *
 * An entry is looked up on the exit address the judge saw, or on the
 * address it is listed at while no exit is known, and only when one of
 * those or the databases changed: eng_geo_sync compares the entry's
 * geo_gen with the databases' generation, and learn_anonymity (scan.c)
 * clears it when the exit changes. So a check that learns nothing new costs
 * no lookup, and a database replaced while running costs one lookup per
 * entry, at the next publish. Engine thread only; the lookups themselves
 * are src/geo.c's.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "engine_int.h"
#include "geo.h"
#include "log.h"

void engine_set_geo(struct engine *e, struct geo *g)
{
	geo_free(e->geo);
	e->geo = g;
	e->geo_polled_ms = eng_now_ms();
	eng_publish(e); /* the pool loaded from the store, with its countries */
}

void eng_geo_sync(struct engine *e, struct pool_entry *pe)
{
	struct geo_result r;
	uint32_t gen;

	if (!e->geo || pe->geo_gen == (gen = geo_generation(e->geo)))
		return;
	pe->geo_gen = gen;
	pe->geo_from = SNAP_GEO_NONE;
	memset(&r, 0, sizeof(r));
	if (!geo_active(e->geo)) {
		/* off: nothing to say */
	} else if (pe->exit_family) {
		geo_lookup(e->geo, pe->exit_family, pe->exit_addr, &r);
		pe->geo_from = SNAP_GEO_EXIT;
	} else if (pe->have_addr && pe->addr.sa.sa_family == AF_INET) {
		geo_lookup(e->geo, AF_INET, (const uint8_t *)&pe->addr.in.sin_addr, &r);
		pe->geo_from = SNAP_GEO_ENTRY;
	} else if (pe->have_addr && pe->addr.sa.sa_family == AF_INET6) {
		geo_lookup(e->geo, AF_INET6, (const uint8_t *)&pe->addr.in6.sin6_addr, &r);
		pe->geo_from = SNAP_GEO_ENTRY;
	}
	memcpy(pe->country, r.country, sizeof(pe->country));
	pe->asn = r.asn;
	pe->as_org = r.org;
}

static void geo_changed(struct engine *e, int changed)
{
	if (changed)
		eng_mark_dirty(e); /* data: every entry's geo_gen is stale; status: health */
}

void eng_geo_poll(struct engine *e, bool force)
{
	uint64_t now = eng_now_ms();

	if (!e->geo || (!force && now - e->geo_polled_ms < GEO_POLL_MS))
		return;
	e->geo_polled_ms = now;
	geo_changed(e, geo_refresh(e->geo));
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_geo(const struct cfg *a, const struct cfg *b)
{
	return same_str(a->geo.country_db, b->geo.country_db) &&
	       same_str(a->geo.asn_db, b->geo.asn_db);
}

int eng_geo_check(struct engine *e, const struct cfg *nc, char *err, size_t errlen)
{
	struct geo *trial;

	if (!e->geo || same_geo(e->cfg, nc))
		return 0;
	trial = geo_new(nc->geo.country_db, nc->geo.asn_db, err, errlen);
	if (!trial)
		return -EINVAL;
	geo_free(trial);
	return 0;
}

void eng_geo_apply(struct engine *e, const struct cfg *nc)
{
	if (!e->geo)
		return;
	if (same_geo(e->cfg, nc)) {
		eng_geo_poll(e, true);
		return;
	}
	e->geo_polled_ms = eng_now_ms();
	geo_changed(e, geo_configure(e->geo, nc->geo.country_db, nc->geo.asn_db));
}
