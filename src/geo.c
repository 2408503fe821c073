/* geo: MaxMind DB lookups of addresses (see geo.h).
 *
 * Each database is one struct geo_db: the path wanted, the last good
 * libmaxminddb handle, and the identity (device, inode, size, mtime) of the
 * file that handle was opened from, so that a cheap stat(2) tells whether
 * the file was replaced since. A file that failed to open is remembered by
 * the same identity and not tried again until it changes. Does not decide
 * when to look at the files; its caller does (the engine, every few
 * seconds and on reload).
 *
 * The files are mapped (libmaxminddb has no other mode). One written over
 * in place (cp onto it, a program truncating and writing it) instead of
 * renamed over shrinks or changes under its mapping, and a read of it
 * faults (SIGBUS) before the next look at the file notices. Every read of
 * a mapping runs guarded: the fault ends that read, not the daemon; the
 * file is dropped (its error says why and how to replace it) and opened
 * again once it is whole.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <maxminddb.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "geo.h"
#include "log.h"

#define GEO_ERR_MAX 256
#define ORG_MAX 256 /* bytes of an organisation name kept */

static const char *const default_dirs[] = {
    "/var/lib/proxyfs/geo",
    "/usr/share/GeoIP",
    "/var/lib/GeoIP",
};

static const char *const country_names[] = {
    "country.mmdb",	  "GeoLite2-Country.mmdb", "dbip-country-lite.mmdb",
    "GeoLite2-City.mmdb", "dbip-city-lite.mmdb",   NULL,
};

static const char *const asn_names[] = {
    "asn.mmdb",
    "GeoLite2-ASN.mmdb",
    "dbip-asn-lite.mmdb",
    NULL,
};

/* Which file a handle was opened from; ino 0 = none. */
struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct geo_db {
	bool configured;       /* [geo] names the file (else the default places are searched) */
	char *path;	       /* the file in use or wanted; NULL = off */
	MMDB_s *mmdb;	       /* the last good one, NULL when none */
	struct file_id loaded; /* ... and its file */
	struct file_id failed; /* the file as it was when it last failed to open */
	char error[GEO_ERR_MAX]; /* "" when fine */
};

struct geo {
	struct geo_db db[GEO_KINDS];
	uint32_t generation;
	uint64_t lookups;
	bool starting; /* in geo_new: a configured file's error is the caller's to say */
	/* Interned organisation names: names[id], names[0] = "". slots is an
	 * open-addressing table of ids (0 = empty), cap a power of two. */
	char **names;
	uint32_t nnames, capnames;
	uint32_t *slots;
	uint32_t capslots;
};

static const char *const *kind_names(enum geo_kind kind)
{
	return kind == GEO_COUNTRY ? country_names : asn_names;
}

static const char *kind_word(enum geo_kind kind)
{
	return kind == GEO_COUNTRY ? "country_db" : "asn_db";
}

/* --- finding the files --- */

static bool is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The first of kind's names present in dir (len bytes of it), or NULL. */
static char *find_in(enum geo_kind kind, const char *dir, size_t len)
{
	for (const char *const *n = kind_names(kind); *n; n++) {
		char *path;

		if (asprintf(&path, "%.*s/%s", (int)len, dir, *n) < 0)
			return NULL;
		if (is_file(path))
			return path;
		free(path);
	}
	return NULL;
}

char *geo_find(enum geo_kind kind, const char *configured)
{
	const char *env = getenv("PROXYFS_GEO_DIRS");
	char *found = NULL;

	if (configured)
		return *configured ? strdup(configured) : NULL;
	if (!env) {
		for (size_t i = 0; i < sizeof(default_dirs) / sizeof(default_dirs[0]) && !found;
		     i++)
			found = find_in(kind, default_dirs[i], strlen(default_dirs[i]));
		return found;
	}
	for (const char *p = env; *p && !found;) {
		size_t n = strcspn(p, ":");

		if (n)
			found = find_in(kind, p, n);
		p += n + (p[n] == ':');
	}
	return found;
}

/* --- opening --- */

static void file_id_of(const struct stat *st, struct file_id *id)
{
	*id = (struct file_id){
	    .dev = st->st_dev,
	    .ino = st->st_ino,
	    .size = st->st_size,
	    .mtime = st->st_mtim,
	};
}

static bool file_id_same(const struct file_id *a, const struct file_id *b)
{
	return a->ino && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* --- reads of a mapping, guarded --- */

/* The guard of the thread reading a mapping now, NULL when it reads none:
 * where the SIGBUS handler returns to. */
static __thread sigjmp_buf *guard_at;
/* Whether this thread lets SIGBUS through: the daemon's threads start
 * with every signal blocked, and a fault while SIGBUS is blocked kills
 * the process whatever the handler. */
static __thread bool guard_unblocked;
/* What SIGBUS did before the guard's handler (set once, never changed). */
static struct sigaction guard_prev;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_handler(int sig, siginfo_t *si, void *ctx)
{
	sigjmp_buf *at = guard_at;

	(void)sig;
	(void)si;
	(void)ctx;
	if (at) {
		guard_at = NULL;
		siglongjmp(*at, 1);
	}
	/* Not a guarded read: as it was without the guard (returning runs
	 * the faulting instruction again, which faults under it). */
	sigaction(SIGBUS, &guard_prev, NULL);
}

static void guard_install(void)
{
	/* SA_NODEFER: the jump out leaves SIGBUS unblocked, with no mask
	 * to save and restore per read. */
	struct sigaction sa = {.sa_sigaction = guard_handler, .sa_flags = SA_SIGINFO | SA_NODEFER};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &guard_prev);
}

#define GEO_FAULTED (-1000)

/* The calling thread ready for a guarded read. */
static void guard_thread(void)
{
	sigset_t bus;

	if (guard_unblocked)
		return;
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	guard_unblocked = true;
}

/* MMDB_open of path into m and a probe lookup (its error in *lerr), the
 * file's pages read under the guard: GEO_FAULTED when one faulted. */
static int db_open_guarded(const char *path, MMDB_s *m, int *lerr)
{
	struct sockaddr_in probe = {.sin_family = AF_INET};
	sigjmp_buf at;
	int rc;

	guard_thread();
	if (sigsetjmp(at, 0))
		return GEO_FAULTED;
	guard_at = &at;
	rc = MMDB_open(path, MMDB_MODE_MMAP, m);
	if (rc == MMDB_SUCCESS) {
		probe.sin_addr.s_addr = htonl(0x01010101);
		MMDB_lookup_sockaddr(m, (const struct sockaddr *)&probe, lerr);
	}
	guard_at = NULL;
	return rc;
}

/* Opens path into a new handle, or NULL with why in err. A file whose
 * metadata reads but whose search tree does not (a lookup fails) is
 * refused too. */
static MMDB_s *db_open(const char *path, char *err, size_t errlen)
{
	MMDB_s *m = calloc(1, sizeof(*m));
	int rc, lerr = MMDB_SUCCESS;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_once(&guard_once, guard_install);
	errno = 0;
	rc = db_open_guarded(path, m, &lerr);
	if (rc == GEO_FAULTED) {
		/* Its memory is lost with the jump: rare, and better than the
		 * daemon. */
		snprintf(err, errlen, "changed while being read");
		return NULL;
	}
	if (rc == MMDB_IO_ERROR || rc == MMDB_FILE_OPEN_ERROR) {
		snprintf(err, errlen, "%s", errno ? strerror(errno) : MMDB_strerror(rc));
		goto out_free;
	}
	if (rc != MMDB_SUCCESS) {
		snprintf(err, errlen, "not a MaxMind DB file (%s)", MMDB_strerror(rc));
		goto out_free;
	}
	if (lerr != MMDB_SUCCESS) {
		snprintf(err, errlen, "corrupt MaxMind DB file (%s)", MMDB_strerror(lerr));
		MMDB_close(m);
		goto out_free;
	}
	return m;
out_free:
	free(m);
	return NULL;
}

/* The loaded file's database_type, "" when none. */
static const char *db_type(const struct geo_db *d)
{
	return d->mmdb && d->mmdb->metadata.database_type ? d->mmdb->metadata.database_type : "";
}

static void db_close(struct geo_db *d)
{
	if (d->mmdb) {
		MMDB_close(d->mmdb);
		free(d->mmdb);
		d->mmdb = NULL;
	}
	d->loaded = (struct file_id){0};
}

/* Sets d's error (why "" = none); GEO_CHANGED_STATUS when it changed, and
 * then said in the log. */
static int db_set_error(const struct geo *g, struct geo_db *d, const char *why)
{
	if (strcmp(d->error, why) == 0)
		return 0;
	snprintf(d->error, sizeof(d->error), "%s", why);
	if (*why && g->starting && d->configured)
		return GEO_CHANGED_STATUS;
	if (*why)
		log_warn("geo: %s: %s%s", d->path, why,
			 d->mmdb ? " (the last good copy stays in use)" : "");
	else
		log_info("geo: %s: readable again", d->path);
	return GEO_CHANGED_STATUS;
}

/* Opens d's file again when it is not the one loaded (nor the one that
 * failed last). GEO_CHANGED_* flags. */
static int db_refresh(struct geo *g, struct geo_db *d)
{
	char why[GEO_ERR_MAX], date[16];
	struct file_id id;
	struct stat st;
	MMDB_s *m;

	if (!d->path)
		return 0;
	if (stat(d->path, &st) < 0)
		return db_set_error(g, d, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return db_set_error(g, d,
				    S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
	file_id_of(&st, &id);
	if (file_id_same(&id, &d->loaded))
		return db_set_error(g, d, "");
	if (file_id_same(&id, &d->failed))
		return 0; /* the same bytes that failed: said already */
	m = db_open(d->path, why, sizeof(why));
	if (!m) {
		d->failed = id;
		return db_set_error(g, d, why);
	}
	db_close(d);
	d->mmdb = m;
	d->loaded = id;
	d->failed = (struct file_id){0};
	g->generation++;
	log_info("geo: %s: %s, built %s", d->path, db_type(d),
		 geo_date((int64_t)m->metadata.build_epoch, date, sizeof(date)));
	return GEO_CHANGED_DATA | db_set_error(g, d, "");
}

/* Points d at path (owned; NULL = off), dropping what it had when that
 * was another file. GEO_CHANGED_* flags. */
static int db_set_path(struct geo *g, struct geo_db *d, char *path)
{
	int changed = 0;

	if ((!path && !d->path) || (path && d->path && strcmp(path, d->path) == 0)) {
		free(path);
		return 0;
	}
	if (d->mmdb) {
		db_close(d);
		g->generation++;
		changed |= GEO_CHANGED_DATA;
	}
	if (d->error[0])
		changed |= GEO_CHANGED_STATUS;
	d->error[0] = '\0';
	d->failed = (struct file_id){0};
	free(d->path);
	d->path = path;
	return changed;
}

/* The file of kind as configured now; when searched and nothing is found,
 * the one in use is kept (its going missing is an error to show, not a
 * reason to turn geo off). 0 with *out set (NULL = off), or -ENOMEM. */
static int want_path(const struct geo_db *d, enum geo_kind kind, const char *configured, char **out)
{
	*out = NULL;
	if (configured) {
		if (*configured && !(*out = strdup(configured)))
			return -ENOMEM;
		return 0;
	}
	*out = geo_find(kind, NULL);
	if (!*out && d->path && !d->configured && !(*out = strdup(d->path)))
		return -ENOMEM;
	return 0;
}

int geo_configure(struct geo *g, const char *country_db, const char *asn_db)
{
	const char *conf[GEO_KINDS] = {country_db, asn_db};
	int changed = 0;

	for (int k = 0; k < GEO_KINDS; k++) {
		struct geo_db *d = &g->db[k];
		char *path;

		if (want_path(d, (enum geo_kind)k, conf[k], &path) < 0) {
			log_warn("geo: out of memory setting %s", kind_word((enum geo_kind)k));
			continue;
		}
		changed |= db_set_path(g, d, path);
		d->configured = conf[k] != NULL;
	}
	for (int k = 0; k < GEO_KINDS; k++)
		changed |= db_refresh(g, &g->db[k]);
	return changed;
}

int geo_refresh(struct geo *g)
{
	int changed = 0;

	for (int k = 0; k < GEO_KINDS; k++) {
		struct geo_db *d = &g->db[k];
		char *path;

		if (!d->configured && want_path(d, (enum geo_kind)k, NULL, &path) == 0)
			changed |= db_set_path(g, d, path);
		changed |= db_refresh(g, d);
	}
	return changed;
}

struct geo *geo_new(const char *country_db, const char *asn_db, char *err, size_t errlen)
{
	const char *conf[GEO_KINDS] = {country_db, asn_db};
	struct geo *g = calloc(1, sizeof(*g));

	if (!g)
		goto out_nomem;
	g->generation = 1;
	g->names = calloc(1, sizeof(*g->names));
	if (!g->names)
		goto out_nomem;
	g->capnames = 1;
	g->names[g->nnames++] = NULL; /* id 0: none */
	g->starting = true;
	geo_configure(g, country_db, asn_db);
	g->starting = false;
	for (int k = 0; k < GEO_KINDS; k++) {
		const struct geo_db *d = &g->db[k];

		if (conf[k] && *conf[k] && !d->path)
			goto out_nomem;
		if (conf[k] && *conf[k] && d->error[0]) {
			snprintf(err, errlen, "%s: %s", d->path, d->error);
			geo_free(g);
			return NULL;
		}
	}
	return g;
out_nomem:
	snprintf(err, errlen, "out of memory");
	geo_free(g);
	return NULL;
}

void geo_free(struct geo *g)
{
	if (!g)
		return;
	for (int k = 0; k < GEO_KINDS; k++) {
		db_close(&g->db[k]);
		free(g->db[k].path);
	}
	for (uint32_t i = 1; i < g->nnames; i++)
		free(g->names[i]);
	free(g->names);
	free(g->slots);
	free(g);
}

uint32_t geo_generation(const struct geo *g)
{
	return g->generation;
}

bool geo_active(const struct geo *g)
{
	return g->db[GEO_COUNTRY].mmdb || g->db[GEO_ASN].mmdb;
}

uint64_t geo_lookups(const struct geo *g)
{
	return g->lookups;
}

void geo_status(const struct geo *g, enum geo_kind kind, struct geo_db_status *out)
{
	const struct geo_db *d = &g->db[kind];

	*out = (struct geo_db_status){
	    .path = d->path,
	    .build_epoch = d->mmdb ? (int64_t)d->mmdb->metadata.build_epoch : 0,
	    .type = db_type(d),
	    .error = d->error,
	};
}

const char *geo_date(int64_t epoch, char *buf, size_t size)
{
	time_t t = (time_t)epoch;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d", &tm))
		snprintf(buf, size, "%s", "");
	return buf;
}

/* --- interning --- */

static uint32_t name_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

/* Doubles the slot table (kept at most half full). false when out of memory. */
static bool slots_grow(struct geo *g)
{
	uint32_t cap = g->capslots ? g->capslots * 2 : 64;
	uint32_t *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return false;
	for (uint32_t id = 1; id < g->nnames; id++) {
		uint32_t i = name_hash(g->names[id], strlen(g->names[id])) & (cap - 1);

		while (slots[i])
			i = (i + 1) & (cap - 1);
		slots[i] = id;
	}
	free(g->slots);
	g->slots = slots;
	g->capslots = cap;
	return true;
}

/* The id of the name s (n bytes, not terminated), added if new; 0 when
 * empty or out of memory. */
static uint32_t org_intern(struct geo *g, const char *s, size_t n)
{
	uint32_t h, i;
	char *copy;

	if (n > ORG_MAX)
		n = ORG_MAX;
	if (!n)
		return 0;
	if ((g->nnames + 1) * 2 > g->capslots && !slots_grow(g))
		return 0;
	h = name_hash(s, n);
	for (i = h & (g->capslots - 1); g->slots[i]; i = (i + 1) & (g->capslots - 1)) {
		const char *x = g->names[g->slots[i]];

		if (strncmp(x, s, n) == 0 && x[n] == '\0')
			return g->slots[i];
	}
	if (g->nnames == g->capnames) {
		char **names = reallocarray(g->names, g->capnames * 2, sizeof(*names));

		if (!names)
			return 0;
		g->names = names;
		g->capnames *= 2;
	}
	copy = strndup(s, n);
	if (!copy)
		return 0;
	g->names[g->nnames] = copy;
	g->slots[i] = g->nnames;
	return g->nnames++;
}

const char *geo_org(const struct geo *g, uint32_t id)
{
	return id && id < g->nnames ? g->names[id] : "";
}

/* --- lookups --- */

/* A string at path in the record, or NULL (and *n = 0). */
static const char *get_str(MMDB_entry_s *entry, size_t *n, const char *a, const char *b)
{
	MMDB_entry_data_s v;

	*n = 0;
	if (MMDB_get_value(entry, &v, a, b, NULL) != MMDB_SUCCESS || !v.has_data ||
	    v.type != MMDB_DATA_TYPE_UTF8_STRING)
		return NULL;
	*n = v.data_size;
	return v.utf8_string;
}

/* country.iso_code (GeoLite2, DB-IP; registered_country when the network
 * has no country of its own) or country_code (ip-location-db): two
 * letters, upper-cased into out. */
static void read_country(MMDB_entry_s *entry, char out[3])
{
	static const char *const paths[][2] = {
	    {"country", "iso_code"},
	    {"registered_country", "iso_code"},
	    {"country_code", NULL},
	};
	const char *s;
	size_t n;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		s = get_str(entry, &n, paths[i][0], paths[i][1]);
		if (n != 2 || !((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z') ||
		    !((s[1] | 0x20) >= 'a' && (s[1] | 0x20) <= 'z'))
			continue;
		out[0] = (char)(s[0] & ~0x20);
		out[1] = (char)(s[1] & ~0x20);
		out[2] = '\0';
		return;
	}
}

static void read_asn(struct geo *g, MMDB_entry_s *entry, struct geo_result *out)
{
	MMDB_entry_data_s v;
	const char *s;
	size_t n;

	if (MMDB_get_value(entry, &v, "autonomous_system_number", NULL) == MMDB_SUCCESS &&
	    v.has_data) {
		if (v.type == MMDB_DATA_TYPE_UINT32)
			out->asn = v.uint32;
		else if (v.type == MMDB_DATA_TYPE_UINT16)
			out->asn = v.uint16;
		else if (v.type == MMDB_DATA_TYPE_UINT64 && v.uint64 <= UINT32_MAX)
			out->asn = (uint32_t)v.uint64;
		else if (v.type == MMDB_DATA_TYPE_INT32 && v.int32 > 0)
			out->asn = (uint32_t)v.int32;
	}
	s = get_str(entry, &n, "autonomous_system_organization", NULL);
	if (s)
		out->org = org_intern(g, s, n);
}

/* d's mapping faulted: its file was written over in place. Dropped, so
 * nothing reads it again; the next look at the file opens it afresh once
 * it is a whole database again. */
static void db_faulted(struct geo *g, struct geo_db *d)
{
	char why[GEO_ERR_MAX];

	db_close(d);
	d->failed = (struct file_id){0};
	g->generation++;
	snprintf(why, sizeof(why),
		 "written over while in use (replace it by renaming a new file over it)");
	db_set_error(g, d, why);
}

/* The record of sa in m, or false when none (not in the database, an IPv6
 * address asked of an IPv4-only one, or a corrupt tree). */
static bool db_find(MMDB_s *m, const struct sockaddr *sa, MMDB_entry_s *entry)
{
	MMDB_lookup_result_s r;
	int err = MMDB_SUCCESS;

	r = MMDB_lookup_sockaddr(m, sa, &err);
	if (err != MMDB_SUCCESS || !r.found_entry)
		return false;
	*entry = r.entry;
	return true;
}

/* The lookups of sa in cm and am (either NULL) into out, under the guard:
 * -1, or the kind whose mapping faulted. */
static int find_guarded(struct geo *g, MMDB_s *const cm, MMDB_s *const am,
			const struct sockaddr *const sa, struct geo_result *const out)
{
	MMDB_entry_s entry;
	sigjmp_buf at;
	volatile int reading = GEO_COUNTRY;

	guard_thread();
	if (sigsetjmp(at, 0))
		return reading;
	guard_at = &at;
	if (cm && db_find(cm, sa, &entry)) {
		read_country(&entry, out->country);
		if (!am)
			read_asn(g, &entry, out);
	}
	reading = GEO_ASN;
	if (am && db_find(am, sa, &entry)) {
		read_asn(g, &entry, out);
		if (!cm)
			read_country(&entry, out->country);
	}
	guard_at = NULL;
	return -1;
}

void geo_lookup(struct geo *g, int family, const uint8_t *addr, struct geo_result *out)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	const struct sockaddr *sa;
	MMDB_s *cm = g->db[GEO_COUNTRY].mmdb, *am = g->db[GEO_ASN].mmdb;
	int faulted;

	memset(out, 0, sizeof(*out));
	if (!cm && !am)
		return;
	if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
		family = AF_INET;
		addr += 12;
	}
	if (family == AF_INET) {
		memcpy(&in.sin_addr, addr, 4);
		sa = (const struct sockaddr *)&in;
	} else if (family == AF_INET6) {
		memcpy(&in6.sin6_addr, addr, 16);
		sa = (const struct sockaddr *)&in6;
	} else {
		return;
	}
	g->lookups++;
	/* Each field from its own kind's file; from the other when that one
	 * is not loaded (a single file holding both). */
	if (cm && am && file_id_same(&g->db[GEO_COUNTRY].loaded, &g->db[GEO_ASN].loaded))
		am = NULL; /* one file for both: one lookup */
	faulted = find_guarded(g, cm, am, sa, out);
	if (faulted >= 0) {
		/* That kind's file was written over in place. */
		db_faulted(g, &g->db[faulted]);
		memset(out, 0, sizeof(*out));
	}
}
