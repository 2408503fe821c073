/* geo: the country and autonomous system of an address, from MaxMind DB
 * files ([geo] country_db, asn_db), read with libmaxminddb.
 *
 * Two databases at most: one naming a country per network, one naming the
 * autonomous system; they may be one file holding both, and each is also
 * asked for what the other lacks. Both record layouts in use are read:
 * GeoLite2's and DB-IP's (country.iso_code) and ip-location-db's
 * (country_code), with autonomous_system_number and
 * autonomous_system_organization for the network. An IPv4 address is found
 * in IPv4-only and IPv6 trees alike (libmaxminddb looks it up under
 * ::/96 in the latter).
 *
 * A file replaced while running (renamed over, as scripts/fetch-geo-db.sh
 * does) is opened again by geo_refresh(); one that goes missing or corrupt
 * keeps the last good one in use and says why in its status. Organisation
 * names are interned: 100,000 proxies in a few hundred networks keep one
 * copy of each name, for the life of the struct geo.
 *
 * Not thread-safe: one thread (the engine's) uses a struct geo at a time.
 * Knows nothing about proxies or snapshots.
 */
#ifndef PROXYFS_GEO_H
#define PROXYFS_GEO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum geo_kind { GEO_COUNTRY, GEO_ASN, GEO_KINDS };

/* What one address is, as far as the databases know. */
struct geo_result {
	char country[3]; /* ISO 3166 alpha-2, upper case; "" when unknown */
	uint32_t asn;	 /* 0 when unknown */
	uint32_t org;	 /* the interned organisation name (geo_org), 0 = none */
};

/* One database as stat.json shows it. Strings belong to the struct geo
 * and stay valid until its next geo_refresh(), geo_configure() or
 * geo_lookup() (which drops a file found written over): copy them at once. */
struct geo_db_status {
	const char *path;    /* the file in use or wanted; NULL when off */
	int64_t build_epoch; /* the metadata's build time (unix seconds), 0 = none loaded */
	const char *type;    /* the metadata's database_type, "" when none loaded */
	const char *error;   /* why the file is not (or no longer) read, "" when fine */
};

/* The file of a kind: configured is the [geo] value as written (NULL: not
 * given, so the default places are searched; "": off), or NULL when off or
 * nothing was found. The default places are the directories in
 * PROXYFS_GEO_DIRS (colon-separated; empty = none) when it is set, else
 * /var/lib/proxyfs/geo, /usr/share/GeoIP and /var/lib/GeoIP; in each, the
 * usual file names of the kind, in order. Returns a malloc'd path or NULL. */
char *geo_find(enum geo_kind kind, const char *configured);

/* Opens the databases configured as for geo_find (NULL: search, "": off).
 * A configured file that is missing or not a MaxMind DB fails: NULL with
 * "PATH: why" in err; so does running out of memory. A file found at the
 * default places that cannot be read is kept as an error in its status
 * instead. With both off the struct still works and finds nothing. */
struct geo *geo_new(const char *country_db, const char *asn_db, char *err, size_t errlen);
void geo_free(struct geo *g);

/* Sets what [geo] says now (a reload): a kind whose file changes is opened
 * at once; one that cannot be read keeps the last good one in use, with
 * the error in its status. Returns the flags of geo_refresh(). */
int geo_configure(struct geo *g, const char *country_db, const char *asn_db);

#define GEO_CHANGED_DATA 1   /* a database was loaded or dropped: look every address up again */
#define GEO_CHANGED_STATUS 2 /* an error appeared or went away */

/* Looks at the files again (inode, size, mtime; and the default places for
 * a kind not configured) and opens the ones that changed. Cheap when
 * nothing did: a stat(2) per database. Returns GEO_CHANGED_* flags. */
int geo_refresh(struct geo *g);

/* Bumped each time a database is loaded or dropped (starts at 1): an
 * answer given under another generation may be stale. */
uint32_t geo_generation(const struct geo *g);

/* Whether a database is loaded (else lookups find nothing). */
bool geo_active(const struct geo *g);

/* Looks addr up: family AF_INET (addr's first 4 bytes) or AF_INET6 (16
 * bytes; an IPv4-mapped address is looked up as IPv4). *out is cleared
 * first; whatever the databases do not know stays unknown. */
void geo_lookup(struct geo *g, int family, const uint8_t *addr, struct geo_result *out);

/* The organisation name of an interned id, "" for 0. Valid for the life
 * of g. */
const char *geo_org(const struct geo *g, uint32_t id);

/* Lookups done since geo_new (proxyfs_geo_lookups_total). */
uint64_t geo_lookups(const struct geo *g);

void geo_status(const struct geo *g, enum geo_kind kind, struct geo_db_status *out);

/* "YYYY-MM-DD" (UTC) of a build epoch into buf (at least 11 bytes). */
const char *geo_date(int64_t epoch, char *buf, size_t size);

#endif
