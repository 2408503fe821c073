/* config: reading the INI file into a struct cfg.
 *
 * inih splits lines into sections and key = value pairs; this file feeds it
 * one line at a time through its own reader, which counts lines (the
 * Debian build of inih does not pass line numbers to the handler), strips
 * leading blanks (so an indented key is never taken for a continuation of
 * the previous value) and handles section headers itself, so that empty,
 * unknown and repeated sections are caught too. Every key is looked up in
 * one table giving its section, type and range. The file is read into a
 * fresh struct that replaces the caller's only when all of it was good.
 * Does not apply settings and does not read the source lists.
 */
#include "config.h"
#include "pick.h"
#include "session.h"
#include "snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define CFG_DEFAULT_JUDGE "http://azenv.net/"
#define CFG_DEFAULT_EXPECT "REMOTE_ADDR" /* CHK_EXPECT_DEFAULT: the checker knows it too */
#define SOURCE_PREFIX "source:"
#define SOURCE_NAME_MAX PICK_SOURCE_NAME_MAX
#define SECTION_MAX 80 /* longer than any valid section name */
#define VALUE_SHOWN 80 /* bytes of a bad value quoted in a message */

enum cfg_section {
	SECT_NONE,
	SECT_PROXYFS,
	SECT_CHECK,
	SECT_HTTP,
	SECT_GATEWAY,
	SECT_GEO,
	SECT_SOURCE
};

enum cfg_key_type {
	KEY_INT,
	KEY_STR,
	KEY_HTTP_URL,
	KEY_JUDGE, /* a judge URL; may be given more than once */
	KEY_PATH,
	KEY_URL,
	KEY_LOG_LEVEL,
	KEY_PROTO,
	KEY_BOOL,  /* yes/no, true/false, on/off, 1/0; stored as int */
	KEY_GROUP, /* a group name (or number) that exists; its id goes to cfg.gid */
	KEY_MODE,  /* octal, read bits only (reader files are never writable) */
	KEY_LISTEN, /* [http], [gateway] listen: ADDR:PORT; may be given more than once */
	KEY_TOKEN_FILE, /* a path whose first line is the token */
	KEY_RATE,  /* N or N/s */
	KEY_GW_POLICY,	   /* random, round_robin, fastest */
	KEY_GW_PROTOS,	   /* a comma list of protocol folder names */
	KEY_GW_ANONS,	   /* a comma list of anonymity grades */
	KEY_GW_SOURCES,	   /* a comma list of source names */
	KEY_GW_AUTH,	   /* user:pass */
	KEY_GW_USERS_FILE, /* a path whose lines are user:pass */
	KEY_GEO_PATH,	   /* a path, or empty for off */
};

/* One settable key. off is into struct cfg, or into struct cfg_source for
 * SECT_SOURCE keys; min and max bound KEY_INT values. */
struct cfg_key {
	enum cfg_section sect;
	const char *name;
	enum cfg_key_type type;
	size_t off;
	int min, max;
};

static const struct cfg_key cfg_keys[] = {
    {SECT_PROXYFS, "db", KEY_PATH, offsetof(struct cfg, db), 0, 0},
    {SECT_PROXYFS, "log_level", KEY_LOG_LEVEL, offsetof(struct cfg, log_level), 0, 0},
    {SECT_PROXYFS, "pid_file", KEY_PATH, offsetof(struct cfg, pid_file), 0, 0},
    {SECT_PROXYFS, "log_file", KEY_PATH, offsetof(struct cfg, log_file), 0, 0},
    {SECT_PROXYFS, "group", KEY_GROUP, offsetof(struct cfg, group), 0, 0},
    {SECT_PROXYFS, "file_mode", KEY_MODE, offsetof(struct cfg, file_mode), 0, 0444},
    {SECT_PROXYFS, "hide_credentials", KEY_BOOL, offsetof(struct cfg, hide_credentials), 0, 1},
    {SECT_PROXYFS, "session_ttl_s", KEY_INT, offsetof(struct cfg, session_ttl_s), 1, 604800},
    {SECT_PROXYFS, "sessions_max", KEY_INT, offsetof(struct cfg, sessions_max), 1, 10000000},
    {SECT_CHECK, "judge", KEY_JUDGE, offsetof(struct cfg, judge), 0, 0},
    {SECT_CHECK, "ca_file", KEY_PATH, offsetof(struct cfg, ca_file), 0, 0},
    {SECT_CHECK, "recheck_s", KEY_INT, offsetof(struct cfg, recheck_s), 1, 31536000},
    {SECT_CHECK, "retry_min_s", KEY_INT, offsetof(struct cfg, retry_min_s), 1, 31536000},
    {SECT_CHECK, "retry_max_s", KEY_INT, offsetof(struct cfg, retry_max_s), 1, 31536000},
    {SECT_CHECK, "max_fails", KEY_INT, offsetof(struct cfg, max_fails), 1, 1000000},
    {SECT_CHECK, "dead_ttl_s", KEY_INT, offsetof(struct cfg, dead_ttl_s), 0, 315360000},
    {SECT_CHECK, "judge_probe_s", KEY_INT, offsetof(struct cfg, judge_probe_s), 1, 86400},
    {SECT_CHECK, "probe_judges", KEY_BOOL, offsetof(struct cfg, probe_judges), 0, 1},
    {SECT_CHECK, "expect", KEY_STR, offsetof(struct cfg, expect), 0, 0},
    {SECT_CHECK, "require_echo", KEY_BOOL, offsetof(struct cfg, require_echo), 0, 1},
    {SECT_CHECK, "timeout_ms", KEY_INT, offsetof(struct cfg, timeout_ms), 100, 600000},
    {SECT_CHECK, "connect_timeout_ms", KEY_INT, offsetof(struct cfg, connect_timeout_ms), 50,
     600000},
    {SECT_CHECK, "concurrency", KEY_INT, offsetof(struct cfg, concurrency), 1, 1000000},
    {SECT_CHECK, "interval_s", KEY_INT, offsetof(struct cfg, interval_s), 1, 31536000},
    {SECT_CHECK, "publish_ms", KEY_INT, offsetof(struct cfg, publish_ms), 10, 600000},
    {SECT_CHECK, "retries", KEY_INT, offsetof(struct cfg, retries), 0, 10},
    {SECT_HTTP, "listen", KEY_LISTEN, offsetof(struct cfg, http.listen), 0, 0},
    {SECT_HTTP, "token", KEY_STR, offsetof(struct cfg, http.token), 0, 0},
    {SECT_HTTP, "token_file", KEY_TOKEN_FILE, offsetof(struct cfg, http.token_file), 0, 0},
    {SECT_HTTP, "private", KEY_BOOL, offsetof(struct cfg, http.private_), 0, 1},
    {SECT_HTTP, "rate", KEY_RATE, offsetof(struct cfg, http.rate), 0, 1000000},
    {SECT_HTTP, "burst", KEY_INT, offsetof(struct cfg, http.burst), 1, 1000000},
    {SECT_HTTP, "max_connections", KEY_INT, offsetof(struct cfg, http.max_connections), 1,
     100000},
    {SECT_HTTP, "idle_timeout_s", KEY_INT, offsetof(struct cfg, http.idle_timeout_s), 1, 86400},
    {SECT_HTTP, "request_timeout_s", KEY_INT, offsetof(struct cfg, http.request_timeout_s), 1,
     3600},
    {SECT_HTTP, "threads", KEY_INT, offsetof(struct cfg, http.threads), 1, 64},
    {SECT_GATEWAY, "listen", KEY_LISTEN, offsetof(struct cfg, gateway.listen), 0, 0},
    {SECT_GATEWAY, "policy", KEY_GW_POLICY, offsetof(struct cfg, gateway.policy), 0, 0},
    {SECT_GATEWAY, "protocol", KEY_GW_PROTOS, offsetof(struct cfg, gateway.protos), 0, 0},
    {SECT_GATEWAY, "anonymity", KEY_GW_ANONS, offsetof(struct cfg, gateway.anons), 0, 0},
    {SECT_GATEWAY, "source", KEY_GW_SOURCES, offsetof(struct cfg, gateway.sources), 0, 0},
    {SECT_GATEWAY, "retries", KEY_INT, offsetof(struct cfg, gateway.retries), 0, 10},
    {SECT_GATEWAY, "eject_after", KEY_INT, offsetof(struct cfg, gateway.eject_after), 0, 1000},
    {SECT_GATEWAY, "auth", KEY_GW_AUTH, offsetof(struct cfg, gateway.users), 0, 0},
    {SECT_GATEWAY, "users_file", KEY_GW_USERS_FILE, offsetof(struct cfg, gateway.users_file), 0, 0},
    {SECT_GATEWAY, "max_connections", KEY_INT, offsetof(struct cfg, gateway.max_connections), 1,
     1000000},
    {SECT_GATEWAY, "per_client", KEY_INT, offsetof(struct cfg, gateway.per_client), 0, 1000000},
    {SECT_GATEWAY, "handshake_timeout_s", KEY_INT,
     offsetof(struct cfg, gateway.handshake_timeout_s), 1, 3600},
    {SECT_GATEWAY, "idle_timeout_s", KEY_INT, offsetof(struct cfg, gateway.idle_timeout_s), 1,
     86400},
    {SECT_GEO, "country_db", KEY_GEO_PATH, offsetof(struct cfg, geo.country_db), 0, 0},
    {SECT_GEO, "asn_db", KEY_GEO_PATH, offsetof(struct cfg, geo.asn_db), 0, 0},
    {SECT_SOURCE, "url", KEY_URL, offsetof(struct cfg_source, url), 0, 0},
    {SECT_SOURCE, "protocol", KEY_PROTO, offsetof(struct cfg_source, proto), 0, 0},
    {SECT_SOURCE, "interval_s", KEY_INT, offsetof(struct cfg_source, interval_s), 1, 31536000},
};

#define N_CFG_KEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

_Static_assert(N_CFG_KEYS <= 64, "struct cfg_parse's seen has a bit for every key");

/* The state of one cfg_load(): the file, where in it we are, and the
 * struct being filled. */
struct cfg_parse {
	const char *file;
	FILE *fp;
	char *buf; /* getline's buffer */
	size_t cap;
	int read_errno;
	char *dir; /* absolute directory of the file, for relative paths */

	int lineno;
	enum cfg_section sect;
	char section[SECTION_MAX + 1]; /* as written between the brackets */
	int section_line;
	uint64_t seen;		      /* bit i: cfg_keys[i] given in this section */
	int proxyfs_line, check_line; /* where those sections began, or 0 */
	int http_line;
	int gateway_line;
	int geo_line;
	int expect_line;	      /* where expect was given, or 0 */
	int key_line[64];	      /* [proxyfs], [check], [http], [gateway]: where cfg_keys[i]
				       * was given, or 0 */

	struct cfg *c;
	char *err;
	size_t errlen;
	int err_line; /* 0 until the first error */
	int rc;	      /* that error: -EINVAL or -ENOMEM */
};

static __attribute__((format(printf, 3, 4))) void put_err(char *err, size_t errlen, const char *fmt,
							  ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Records "FILE:LINE: [section] key: why" (key may be NULL). */
static __attribute__((format(printf, 3, 4))) void parse_fail(struct cfg_parse *p, const char *key,
							     const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (p->err_line)
		return;
	p->err_line = p->lineno;
	p->rc = -EINVAL;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!p->section[0] && !key)
		put_err(p->err, p->errlen, "%s:%d: %s", p->file, p->lineno, why);
	else if (!p->section[0])
		put_err(p->err, p->errlen, "%s:%d: %s: %s", p->file, p->lineno, key, why);
	else
		put_err(p->err, p->errlen, "%s:%d: [%s]%s%s: %s", p->file, p->lineno, p->section,
			key ? " " : "", key ? key : "", why);
}

static void parse_oom(struct cfg_parse *p, const char *key)
{
	if (p->err_line)
		return;
	parse_fail(p, key, "out of memory");
	p->rc = -ENOMEM;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

/* --- values --- */

static bool has_prefix_nocase(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* ":digits" up to end, 1..65535 */
static const char *http_port_problem(const char *colon, const char *end)
{
	size_t len = (size_t)(end - colon - 1);
	long port;

	if (*colon != ':' || len == 0 || len > 5 || strspn(colon + 1, "0123456789") < len)
		return "has a bad port";
	port = strtol(colon + 1, NULL, 10);
	return port >= 1 && port <= 65535 ? NULL : "has a bad port";
}

/* Why an http(s) URL is unusable, or NULL if it looks right. */
static const char *http_url_problem(const char *url)
{
	const char *host, *end, *at, *port;

	for (const char *s = url; *s; s++) {
		if ((unsigned char)*s <= ' ' || (unsigned char)*s == 0x7f)
			return "contains spaces or control characters";
	}
	if (has_prefix_nocase(url, "http://"))
		host = url + 7;
	else if (has_prefix_nocase(url, "https://"))
		host = url + 8;
	else
		return "must start with http:// or https://";
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(end - host));
	if (at)
		host = at + 1;
	if (*host == '[') {
		port = memchr(host, ']', (size_t)(end - host));
		if (!port || port == host + 1)
			return "has no host";
		port++;
	} else {
		port = memchr(host, ':', (size_t)(end - host));
		if (!port)
			port = end;
		if (port == host)
			return "has no host";
	}
	return port == end ? NULL : http_port_problem(port, end);
}

/* Decimal digits only; fails with a message naming the range. */
static int parse_int(struct cfg_parse *p, const struct cfg_key *k, const char *v, int *out)
{
	char *end = NULL;
	long n = 0;

	errno = 0;
	if (v[0] == '-' && v[1] >= '0' && v[1] <= '9' &&
	    v[strspn(v + 1, "0123456789") + 1] == '\0') {
		parse_fail(p, k->name, "%.*s: %s (%d..%d)", VALUE_SHOWN, v,
			   k->min > 0 ? "must be positive" : "must not be negative", k->min,
			   k->max);
		return -EINVAL;
	}
	if (*v >= '0' && *v <= '9')
		n = strtol(v, &end, 10);
	if (!end || *end) {
		parse_fail(p, k->name, "'%.*s' is not a decimal number", VALUE_SHOWN, v);
		return -EINVAL;
	}
	if (errno == ERANGE || n < k->min || n > k->max) {
		parse_fail(p, k->name, "%.*s is out of range %d..%d", VALUE_SHOWN, v, k->min,
			   k->max);
		return -EINVAL;
	}
	*out = (int)n;
	return 0;
}

/* An absolute path for what the file names relative to its directory. */
static char *resolve_path(const struct cfg_parse *p, const char *path)
{
	char *abs;

	if (path[0] == '/')
		return strdup(path);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (asprintf(&abs, "%s/%s", p->dir, path) < 0)
		return NULL;
	return abs;
}

static int set_str(char **field, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

static int set_path(struct cfg_parse *p, const struct cfg_key *k, char **field, const char *v)
{
	char *s;

	if (!*v) {
		parse_fail(p, k->name, "empty path");
		return -EINVAL;
	}
	s = resolve_path(p, v);
	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

/* [geo] country_db, asn_db: a path, or nothing for off (no search of the
 * default places). */
static int set_geo_path(struct cfg_parse *p, const struct cfg_key *k, char **field,
			const char *v)
{
	char *s = *v ? resolve_path(p, v) : strdup("");

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

/* group = NAME (or a number): it must exist now, as it is the group the
 * reader files are shown with. */
static int set_group(struct cfg_parse *p, const struct cfg_key *k, const char *v)
{
	struct group gr, *found = NULL;
	char buf[4096], *end = NULL;
	unsigned long num = ULONG_MAX;

	if (getgrnam_r(v, &gr, buf, sizeof(buf), &found) == 0 && found) {
		p->c->gid = (unsigned int)found->gr_gid;
	} else {
		/* A number is a group id, named in the group database or not. */
		errno = 0;
		if (*v >= '0' && *v <= '9')
			num = strtoul(v, &end, 10);
		if (!end || *end || errno || num >= UINT_MAX) {
			parse_fail(p, k->name, "'%.*s': no such group", VALUE_SHOWN, v);
			return -EINVAL;
		}
		p->c->gid = (unsigned int)num;
	}
	return set_str(&p->c->group, v);
}

/* file_mode = octal read bits, such as 0440. */
static int set_mode(struct cfg_parse *p, const struct cfg_key *k, int *field, const char *v)
{
	char *end = NULL;
	unsigned long m = 0;

	if (*v >= '0' && *v <= '7')
		m = strtoul(v, &end, 8);
	if (!end || *end || strlen(v) > 4) {
		parse_fail(p, k->name, "'%.*s' is not an octal mode such as 0440", VALUE_SHOWN, v);
		return -EINVAL;
	}
	if (m & ~(unsigned long)k->max) {
		parse_fail(p, k->name,
			   "%s: only read bits (0444) can be given; reader files are never "
			   "writable or executable",
			   v);
		return -EINVAL;
	}
	*field = (int)m;
	return 0;
}

/* url = PATH | file://PATH | http(s)://...; sets path for local files. */
static int set_url(struct cfg_parse *p, const struct cfg_key *k, struct cfg_source *s,
		   const char *v)
{
	size_t scheme =
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
	const char *local = v; /* the path of a local file, NULL for http(s) */
	const char *why = NULL;

	if (!*v) {
		why = "empty";
	} else if (has_prefix_nocase(v, "http://") || has_prefix_nocase(v, "https://")) {
		why = http_url_problem(v);
		local = NULL;
	} else if (has_prefix_nocase(v, "file://")) {
		local = v + 7;
		why = *local ? NULL : "file:// without a path";
	} else if (scheme > 0 && strncmp(v + scheme, "://", 3) == 0) {
		why = "unsupported URL scheme (use a path, file://, http:// or https://)";
	}
	if (why) {
		parse_fail(p, k->name, "'%.*s' %s", VALUE_SHOWN, v, why);
		return -EINVAL;
	}
	if (set_str(&s->url, v) < 0)
		return -ENOMEM;
	free(s->path);
	s->path = local ? resolve_path(p, local) : NULL;
	return local && !s->path ? -ENOMEM : 0;
}

/* The file's first judge replaces the default; later ones add to it. */
int cfg_add_judge(struct cfg *c, const char *url)
{
	char **list;

	if (!c->judges_from_file) {
		for (size_t i = 0; i < c->njudges; i++)
			free(c->judges[i]);
		c->njudges = 0;
		c->judges_from_file = true;
	}
	list = realloc(c->judges, (c->njudges + 1) * sizeof(*list));
	if (!list)
		return -ENOMEM;
	c->judges = list;
	list[c->njudges] = strdup(url);
	if (!list[c->njudges])
		return -ENOMEM;
	c->njudges++;
	if (c->njudges == 1)
		return set_str(&c->judge, url);
	return 0;
}

/* --- [http] --- */

int cfg_parse_listen(const char *s, struct sockaddr_storage *ss, unsigned int *len,
		     const char **why)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char host[64];
	const char *colon, *hs = s, *he;
	char *end = NULL;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		hs = s + 1;
		he = strchr(hs, ']');
		colon = he ? he + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		he = colon;
	}
	if (!he || !colon || *colon != ':' || (*s != '[' && memchr(s, ':', (size_t)(he - s)))) {
		*why = "is not ADDR:PORT (IPv6 as [ADDR]:PORT)";
		return -EINVAL;
	}
	if (colon[1] >= '0' && colon[1] <= '9')
		port = strtoul(colon + 1, &end, 10);
	if (!end || *end || port < 1 || port > 65535) {
		*why = "has a bad port (1..65535)";
		return -EINVAL;
	}
	if ((size_t)(he - hs) >= sizeof(host) || he == hs) {
		*why = "has no numeric address";
		return -EINVAL;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (*s != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (*s == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	*why = "has no numeric address (such as 127.0.0.1 or [::1])";
	return -EINVAL;
}

/* Appends a copy of v to the list *listp of *n strings. */
static int push_str(char ***listp, size_t *n, const char *v)
{
	char **list = reallocarray(*listp, *n + 1, sizeof(*list));

	if (!list)
		return -ENOMEM;
	*listp = list;
	list[*n] = strdup(v);
	if (!list[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int add_listen(struct cfg_parse *p, const struct cfg_key *k, const char *v)
{
	struct sockaddr_storage ss;
	unsigned int len;
	const char *why;

	if (cfg_parse_listen(v, &ss, &len, &why) < 0) {
		parse_fail(p, k->name, "'%.*s' %s", VALUE_SHOWN, v, why);
		return -EINVAL;
	}
	if (p->sect == SECT_GATEWAY)
		return push_str(&p->c->gateway.listen, &p->c->gateway.nlisten, v);
	return push_str(&p->c->http.listen, &p->c->http.nlisten, v);
}

/* A listen address from the command line (flag names it in err): added
 * after the file's, and counted so that a reload can tell them apart. */
static int add_cli_listen(char ***list, size_t *n, size_t *ncli, const char *flag,
			  const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned int len;
	const char *why;
	int rc;

	if (cfg_parse_listen(addr, &ss, &len, &why) < 0) {
		put_err(err, errlen, "%s '%.*s' %s", flag, VALUE_SHOWN, addr, why);
		return -EINVAL;
	}
	rc = push_str(list, n, addr);
	if (rc == 0)
		(*ncli)++;
	return rc;
}

int cfg_add_http_listen(struct cfg *c, const char *addr, char *err, size_t errlen)
{
	return add_cli_listen(&c->http.listen, &c->http.nlisten, &c->http.nlisten_cli, "--http",
			      addr, err, errlen);
}

int cfg_add_gateway_listen(struct cfg *c, const char *addr, char *err, size_t errlen)
{
	return add_cli_listen(&c->gateway.listen, &c->gateway.nlisten, &c->gateway.nlisten_cli,
			      "--gateway", addr, err, errlen);
}

/* token_file = PATH: its first line (without the newline) is the token,
 * read now so that a missing or empty file is a config error. */
static int set_token_file(struct cfg_parse *p, const struct cfg_key *k, const char *v)
{
	char *path = NULL, *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int rc;

	rc = set_path(p, k, &path, v);
	if (rc < 0)
		return rc;
	f = fopen(path, "re");
	if (!f) {
		parse_fail(p, k->name, "%s: %s", path, strerror(errno));
		rc = -EINVAL;
		goto out;
	}
	n = getline(&line, &cap, f);
	fclose(f);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n <= 0) {
		parse_fail(p, k->name, "%s: empty (the token is its first line)", path);
		rc = -EINVAL;
		goto out;
	}
	free(p->c->http.token);
	p->c->http.token = line;
	line = NULL;
	free(p->c->http.token_file);
	p->c->http.token_file = path;
	path = NULL;
out:
	free(line);
	free(path);
	return rc;
}

/* rate = N or N/s. */
static int set_rate(struct cfg_parse *p, const struct cfg_key *k, int *field, const char *v)
{
	char num[16];
	size_t n = strcspn(v, "/");

	if (v[n] && strcmp(v + n, "/s") != 0) {
		parse_fail(p, k->name, "'%.*s' is not N or N/s (requests per second)", VALUE_SHOWN,
			   v);
		return -EINVAL;
	}
	if (n >= sizeof(num)) {
		parse_fail(p, k->name, "'%.*s' is out of range %d..%d", VALUE_SHOWN, v, k->min,
			   k->max);
		return -EINVAL;
	}
	memcpy(num, v, n);
	num[n] = '\0';
	return parse_int(p, k, num, field);
}

/* --- [gateway] --- */

static bool valid_source_name(const char *name);

static int set_gw_policy(struct cfg_parse *p, const struct cfg_key *k, int *field, const char *v)
{
	static const char *const names[] = {[CFG_GW_RANDOM] = "random",
					    [CFG_GW_ROUND_ROBIN] = "round_robin",
					    [CFG_GW_FASTEST] = "fastest"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(v, names[i]) == 0) {
			*field = (int)i;
			return 0;
		}
	}
	parse_fail(p, k->name, "'%.*s' is not one of random, round_robin, fastest", VALUE_SHOWN, v);
	return -EINVAL;
}

/* One word of a [gateway] filter list: its bit into *bits, or (sources)
 * its name onto the list. */
static int gw_list_item(struct cfg_parse *p, const struct cfg_key *k, const char *item)
{
	struct cfg_gateway *g = &p->c->gateway;
	uint32_t bit;

	if (k->type == KEY_GW_PROTOS) {
		bit = pick_proto_bit(item, strlen(item));
		if (!bit) {
			parse_fail(p, k->name, "'%.*s' is not one of http, https, socks4, socks5",
				   VALUE_SHOWN, item);
			return -EINVAL;
		}
		g->protos |= bit;
		return 0;
	}
	if (k->type == KEY_GW_ANONS) {
		bit = pick_anon_bit(item, strlen(item));
		if (!bit) {
			parse_fail(p, k->name, "'%.*s' is not one of elite, anonymous, transparent",
				   VALUE_SHOWN, item);
			return -EINVAL;
		}
		g->anons |= bit;
		return 0;
	}
	if (!valid_source_name(item)) {
		parse_fail(p, k->name, "'%.*s' is not a source name (1..%d of A-Z a-z 0-9 . _ -)",
			   VALUE_SHOWN, item, SOURCE_NAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < g->nsources; i++)
		if (strcmp(g->sources[i], item) == 0)
			return 0;
	if (g->nsources == PICK_SOURCES_MAX) {
		parse_fail(p, k->name, "more than %d names", PICK_SOURCES_MAX);
		return -EINVAL;
	}
	return push_str(&g->sources, &g->nsources, item);
}

/* protocol, anonymity, source: comma lists of the HTTP query's words
 * (blanks around each word allowed). */
static int set_gw_list(struct cfg_parse *p, const struct cfg_key *k, const char *v)
{
	char *copy = strdup(v), *save = NULL, *item;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	if (!*v || v[strlen(v) - 1] == ',' || *v == ',' || strstr(v, ",,")) {
		parse_fail(p, k->name, "'%.*s' has an empty item", VALUE_SHOWN, v);
		rc = -EINVAL;
	}
	for (item = strtok_r(copy, ",", &save); item && rc == 0;
	     item = strtok_r(NULL, ",", &save)) {
		size_t n;

		while (is_blank(*item))
			item++;
		n = strlen(item);
		while (n && is_blank(item[n - 1]))
			item[--n] = '\0';
		if (!n) {
			parse_fail(p, k->name, "'%.*s' has an empty item", VALUE_SHOWN, v);
			rc = -EINVAL;
			break;
		}
		rc = gw_list_item(p, k, item);
	}
	free(copy);
	return rc;
}

/* Does the user name user (n bytes) hold a '-'-separated part that is an
 * option word of the gateway's user names (gateway/gw_user.h)? Such a user
 * could never log in: its name would be cut there. */
static bool gw_user_has_option(const char *user, size_t n)
{
	static const char *const words[] = {"session", "proto", "anon", "source"};
	const char *end = user + n;

	while (user < end) {
		const char *dash = memchr(user, '-', (size_t)(end - user));
		size_t len = (size_t)((dash ? dash : end) - user);

		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (strlen(words[i]) == len && memcmp(words[i], user, len) == 0)
				return true;
		if (!dash)
			break;
		user = dash + 1;
	}
	return false;
}

/* One user:pass pair (the user not empty) onto the list; where says where
 * it came from in a message. */
static int gw_push_pair(struct cfg_parse *p, const struct cfg_key *k, const char *pair,
			const char *where)
{
	const char *colon = strchr(pair, ':');

	if (!colon || colon == pair) {
		parse_fail(p, k->name, "%s is not user:pass (a user name, ':', the password)",
			   where);
		return -EINVAL;
	}
	if (colon - pair > 255 || gw_user_has_option(pair, (size_t)(colon - pair))) {
		parse_fail(p, k->name,
			   "%s: user '%.*s' is over 255 bytes or holds a part session, proto, anon "
			   "or source (the options a user name carries)",
			   where, (int)(colon - pair > 40 ? 40 : colon - pair), pair);
		return -EINVAL;
	}
	return push_str(&p->c->gateway.users, &p->c->gateway.nusers, pair);
}

/* users_file = PATH: each line user:pass; blank lines and # comments
 * skipped. Read now, so that a missing, empty or bad file is a config
 * error naming its line. */
static int set_gw_users_file(struct cfg_parse *p, const struct cfg_key *k, const char *v)
{
	char *path = NULL, *line = NULL, where[PATH_MAX + 32];
	size_t cap = 0;
	ssize_t n;
	FILE *f = NULL;
	int rc, lineno = 0;

	rc = set_path(p, k, &path, v);
	if (rc < 0)
		return rc;
	f = fopen(path, "re");
	if (!f) {
		parse_fail(p, k->name, "%s: %s", path, strerror(errno));
		rc = -EINVAL;
		goto out;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *s = line;

		lineno++;
		while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
			s[--n] = '\0';
		while (is_blank(*s))
			s++;
		if (!*s || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		rc = gw_push_pair(p, k, s, where);
		if (rc < 0)
			goto out;
	}
	if (!p->c->gateway.nusers) {
		parse_fail(p, k->name, "%s: no user:pass line", path);
		rc = -EINVAL;
		goto out;
	}
	free(p->c->gateway.users_file);
	p->c->gateway.users_file = path;
	path = NULL;
out:
	if (f)
		fclose(f);
	free(line);
	free(path);
	return rc;
}

void cfg_gateway_filter(const struct cfg_gateway *g, struct pick_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->protos = g->protos;
	f->anons = g->anons;
	for (size_t i = 0; i < g->nsources && i < PICK_SOURCES_MAX; i++)
		f->sources[i] = g->sources[i];
	f->nsources = (uint32_t)(g->nsources < PICK_SOURCES_MAX ? g->nsources : PICK_SOURCES_MAX);
}

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool strs_same(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

bool cfg_gateway_same(const struct cfg *a, const struct cfg *b)
{
	const struct cfg_gateway *x = &a->gateway, *y = &b->gateway;

	return strs_same(x->listen, x->nlisten - x->nlisten_cli, y->listen,
			 y->nlisten - y->nlisten_cli) &&
	       x->policy == y->policy && x->protos == y->protos && x->anons == y->anons &&
	       strs_same(x->sources, x->nsources, y->sources, y->nsources) &&
	       x->retries == y->retries && x->eject_after == y->eject_after &&
	       strs_same(x->users, x->nusers, y->users, y->nusers) &&
	       str_same(x->users_file, y->users_file) && x->max_connections == y->max_connections &&
	       x->per_client == y->per_client && x->handshake_timeout_s == y->handshake_timeout_s &&
	       x->idle_timeout_s == y->idle_timeout_s;
}

bool cfg_http_same(const struct cfg *a, const struct cfg *b)
{
	const struct cfg_http *x = &a->http, *y = &b->http;
	size_t nx = x->nlisten - x->nlisten_cli, ny = y->nlisten - y->nlisten_cli;

	if (nx != ny || !str_same(x->token, y->token) || !str_same(x->token_file, y->token_file))
		return false;
	for (size_t i = 0; i < nx; i++)
		if (strcmp(x->listen[i], y->listen[i]) != 0)
			return false;
	return x->private_ == y->private_ && x->rate == y->rate && x->burst == y->burst &&
	       x->max_connections == y->max_connections &&
	       x->idle_timeout_s == y->idle_timeout_s &&
	       x->request_timeout_s == y->request_timeout_s && x->threads == y->threads;
}

static int set_value(struct cfg_parse *p, const struct cfg_key *k, void *base, const char *v)
{
	void *field = (char *)base + k->off;
	const char *why;
	int proto;

	switch (k->type) {
	case KEY_INT:
		return parse_int(p, k, v, field);
	case KEY_STR:
		return set_str(field, v);
	case KEY_HTTP_URL:
		why = http_url_problem(v);
		if (why) {
			parse_fail(p, k->name, "'%.*s' %s", VALUE_SHOWN, v, why);
			return -EINVAL;
		}
		return set_str(field, v);
	case KEY_JUDGE:
		why = http_url_problem(v);
		if (why) {
			parse_fail(p, k->name, "'%.*s' %s", VALUE_SHOWN, v, why);
			return -EINVAL;
		}
		return cfg_add_judge(p->c, v);
	case KEY_PATH:
		return set_path(p, k, field, v);
	case KEY_GROUP:
		return set_group(p, k, v);
	case KEY_MODE:
		return set_mode(p, k, field, v);
	case KEY_URL:
		return set_url(p, k, base, v);
	case KEY_LISTEN:
		return add_listen(p, k, v);
	case KEY_TOKEN_FILE:
		return set_token_file(p, k, v);
	case KEY_RATE:
		return set_rate(p, k, field, v);
	case KEY_GW_POLICY:
		return set_gw_policy(p, k, field, v);
	case KEY_GW_PROTOS:
	case KEY_GW_ANONS:
	case KEY_GW_SOURCES:
		return set_gw_list(p, k, v);
	case KEY_GW_AUTH:
		return gw_push_pair(p, k, v, "the value");
	case KEY_GW_USERS_FILE:
		return set_gw_users_file(p, k, v);
	case KEY_GEO_PATH:
		return set_geo_path(p, k, field, v);
	case KEY_LOG_LEVEL:
		if (log_level_parse(v, field) == 0)
			return 0;
		parse_fail(p, k->name, "'%.*s' is not one of error, warn, info, debug", VALUE_SHOWN,
			   v);
		return -EINVAL;
	case KEY_BOOL:
		if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") ||
		    !strcmp(v, "1")) {
			*(int *)field = 1;
			return 0;
		}
		if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") ||
		    !strcmp(v, "0")) {
			*(int *)field = 0;
			return 0;
		}
		parse_fail(p, k->name, "'%.*s' is not yes or no", VALUE_SHOWN, v);
		return -EINVAL;
	case KEY_PROTO:
		proto = proxy_proto_from_name(v);
		if (proto >= 0) {
			/* Only a source has a protocol: its remote-DNS form
			 * (socks4a, socks5h) is kept beside the enum. */
			struct cfg_source *src = base;

			src->proto = (enum proxy_proto)proto;
			src->remote_dns = proxy_name_remote_dns(v);
			return 0;
		}
		parse_fail(p, k->name,
			   "'%.*s' is not one of http, https, socks4, socks4a, socks5, socks5h",
			   VALUE_SHOWN, v);
		return -EINVAL;
	}
	return -EINVAL;
}

/* inih's handler: one key = value of the current section. */
static int cfg_key_cb(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_parse *p = user;
	void *base =
	    p->sect == SECT_SOURCE ? (void *)&p->c->sources[p->c->nsources - 1] : (void *)p->c;
	size_t i;
	int rc;

	if (p->err_line)
		return 0;
	if (p->sect == SECT_NONE) {
		parse_fail(p, name, "key outside any [section]");
		return 0;
	}
	for (i = 0; i < N_CFG_KEYS; i++) {
		if (cfg_keys[i].sect == p->sect && strcmp(cfg_keys[i].name, name) == 0)
			break;
	}
	if (i == N_CFG_KEYS) {
		parse_fail(p, name, "unknown key");
		return 0;
	}
	if ((p->seen & (UINT64_C(1) << i)) && cfg_keys[i].type != KEY_JUDGE &&
	    cfg_keys[i].type != KEY_LISTEN) {
		parse_fail(p, name, "given twice in this section");
		return 0;
	}
	p->seen |= UINT64_C(1) << i;
	if (p->sect != SECT_SOURCE)
		p->key_line[i] = p->lineno;
	if (p->sect == SECT_CHECK && strcmp(name, "expect") == 0)
		p->expect_line = p->lineno;
	rc = set_value(p, &cfg_keys[i], base, value);
	if (rc == -ENOMEM)
		parse_oom(p, name);
	return rc == 0;
}

/* --- sections --- */

static bool valid_source_name(const char *name)
{
	return pick_source_name_valid(name, strlen(name));
}

/* The checks that need the whole section: a source needs a url. */
static int end_section(struct cfg_parse *p)
{
	int line = p->lineno;

	if (p->sect != SECT_SOURCE || p->c->sources[p->c->nsources - 1].url)
		return 0;
	p->lineno = p->section_line;
	parse_fail(p, NULL, "no url in this source");
	p->lineno = line;
	return -EINVAL;
}

static int add_source(struct cfg_parse *p, const char *name)
{
	struct cfg *c = p->c;
	struct cfg_source *s;

	if (!valid_source_name(name)) {
		parse_fail(p, NULL, "source name must be 1..%d characters of A-Z a-z 0-9 . _ -",
			   SOURCE_NAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < c->nsources; i++) {
		if (strcmp(c->sources[i].name, name) == 0) {
			parse_fail(p, NULL, "section given twice");
			return -EINVAL;
		}
	}
	s = reallocarray(c->sources, c->nsources + 1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	c->sources = s;
	s = &c->sources[c->nsources];
	memset(s, 0, sizeof(*s));
	s->proto = PROXY_HTTP;
	s->name = strdup(name);
	if (!s->name)
		return -ENOMEM;
	c->nsources++;
	return 0;
}

/* [proxyfs] and [check] may each appear once. */
static int enter_once(struct cfg_parse *p, int *first_line)
{
	if (*first_line) {
		parse_fail(p, NULL, "section given twice (first on line %d)", *first_line);
		return -EINVAL;
	}
	*first_line = p->lineno;
	return 0;
}

static int enter_section(struct cfg_parse *p, const char *name, size_t len)
{
	int rc;

	snprintf(p->section, sizeof(p->section), "%.*s", (int)len, name);
	p->section_line = p->lineno;
	p->seen = 0;
	p->sect = SECT_NONE;
	if (strcmp(p->section, "proxyfs") == 0)
		p->sect = SECT_PROXYFS;
	else if (strcmp(p->section, "check") == 0)
		p->sect = SECT_CHECK;
	else if (strcmp(p->section, "http") == 0)
		p->sect = SECT_HTTP;
	else if (strcmp(p->section, "gateway") == 0)
		p->sect = SECT_GATEWAY;
	else if (strcmp(p->section, "geo") == 0)
		p->sect = SECT_GEO;
	else if (strncmp(p->section, SOURCE_PREFIX, strlen(SOURCE_PREFIX)) == 0)
		p->sect = SECT_SOURCE;
	if (p->sect == SECT_PROXYFS)
		return enter_once(p, &p->proxyfs_line);
	if (p->sect == SECT_CHECK)
		return enter_once(p, &p->check_line);
	if (p->sect == SECT_HTTP)
		return enter_once(p, &p->http_line);
	if (p->sect == SECT_GATEWAY)
		return enter_once(p, &p->gateway_line);
	if (p->sect == SECT_GEO)
		return enter_once(p, &p->geo_line);
	if (p->sect == SECT_NONE) {
		parse_fail(p, NULL, "unknown section");
		return -EINVAL;
	}
	rc = add_source(p, p->section + strlen(SOURCE_PREFIX));
	if (rc == -ENOMEM)
		parse_oom(p, NULL);
	if (rc < 0)
		p->sect = SECT_NONE;
	return rc;
}

/* line starts with '['; inih will see the same header. */
static int section_line(struct cfg_parse *p, const char *line)
{
	const char *close = strchr(line, ']');
	const char *rest;

	if (end_section(p) < 0)
		return -EINVAL;
	p->section[0] = '\0';
	p->sect = SECT_NONE;
	if (!close) {
		parse_fail(p, NULL, "missing ']' in section header");
		return -EINVAL;
	}
	rest = close + 1 + strspn(close + 1, " \t\r\n");
	if (*rest && *rest != ';' && *rest != '#') {
		parse_fail(p, NULL, "text after ']' in section header");
		return -EINVAL;
	}
	return enter_section(p, line + 1, (size_t)(close - line - 1));
}

/* inih's reader: hands over one whole line, counted, without leading
 * blanks; section headers are handled here. NULL ends the parse. */
static char *cfg_line_cb(char *str, int num, void *stream)
{
	struct cfg_parse *p = stream;
	ssize_t n;
	char *s;

	if (p->err_line)
		return NULL;
	n = getline(&p->buf, &p->cap, p->fp);
	if (n < 0) {
		p->read_errno = ferror(p->fp) ? errno : 0;
		return NULL;
	}
	p->lineno++;
	s = p->buf;
	if (p->lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
		n -= 3;
	}
	while (n > 0 && is_blank(*s)) {
		s++;
		n--;
	}
	if (memchr(s, '\0', (size_t)n))
		parse_fail(p, NULL, "NUL byte in line");
	else if (n >= num)
		parse_fail(p, NULL, "line longer than %d characters", num - 2);
	else if (*s == '[')
		section_line(p, s);
	if (p->err_line)
		return NULL;
	memcpy(str, s, (size_t)n + 1);
	return str;
}

/* --- loading --- */

static int dir_of(const char *path, char **out)
{
	char *copy = strdup(path);
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	*out = realpath(dirname(copy), NULL);
	if (!*out)
		rc = -errno;
	free(copy);
	return rc;
}

static void apply_source_defaults(struct cfg *c)
{
	for (size_t i = 0; i < c->nsources; i++) {
		if (c->sources[i].interval_s == 0)
			c->sources[i].interval_s = c->interval_s;
	}
}

static const char cfg_empty_expect[] =
    "empty: any 200 page, a captive portal's too, would count as alive; give the text "
    "the judge's answer contains, or set require_echo = yes for a judge that echoes the "
    "request (proxyfs judge, azenv, httpbin)";

/* The line where the file gave key, or 0. */
static int line_of(const struct cfg_parse *p, const char *key)
{
	for (size_t i = 0; i < N_CFG_KEYS; i++) {
		if (cfg_keys[i].sect != SECT_SOURCE && strcmp(cfg_keys[i].name, key) == 0)
			return p->key_line[i];
	}
	return 0;
}

/* The line where the file gave key in section sect, or 0. */
static int line_in(const struct cfg_parse *p, enum cfg_section sect, const char *key)
{
	for (size_t i = 0; i < N_CFG_KEYS; i++) {
		if (cfg_keys[i].sect == sect && strcmp(cfg_keys[i].name, key) == 0)
			return p->key_line[i];
	}
	return 0;
}

/* lo must not be more than hi: the message names the line of lo if the
 * file gave it, else the line of hi (one of the two was given, or both
 * would be their defaults, which agree). */
static void check_order(struct cfg_parse *p, const char *lo, int lo_v, const char *hi, int hi_v)
{
	if (lo_v <= hi_v)
		return;
	snprintf(p->section, sizeof(p->section), "check");
	if (line_of(p, lo)) {
		p->lineno = line_of(p, lo);
		parse_fail(p, lo, "%d is more than %s (%d)", lo_v, hi, hi_v);
	} else {
		p->lineno = line_of(p, hi);
		parse_fail(p, hi, "%d is less than %s (%d)", hi_v, lo, lo_v);
	}
}

/* [http]: one of token and token_file; private needs a token. */
static void check_http(struct cfg_parse *p)
{
	if (line_of(p, "token") && line_of(p, "token_file")) {
		p->lineno = line_of(p, "token_file");
		snprintf(p->section, sizeof(p->section), "http");
		parse_fail(p, "token_file", "give token or token_file, not both");
	} else if (line_of(p, "token") && !p->c->http.token[0]) {
		p->lineno = line_of(p, "token");
		snprintf(p->section, sizeof(p->section), "http");
		parse_fail(p, "token", "empty (leave the key out for no token)");
	} else if (p->c->http.private_ && !p->c->http.token) {
		p->lineno = line_of(p, "private");
		snprintf(p->section, sizeof(p->section), "http");
		parse_fail(p, "private", "yes needs a token (token = or token_file =)");
	}
}

/* [gateway]: one of auth and users_file. */
static void check_gateway(struct cfg_parse *p)
{
	if (line_in(p, SECT_GATEWAY, "auth") && line_in(p, SECT_GATEWAY, "users_file")) {
		p->lineno = line_in(p, SECT_GATEWAY, "users_file");
		snprintf(p->section, sizeof(p->section), "gateway");
		parse_fail(p, "users_file", "give auth or users_file, not both");
	}
}

/* Rules over the whole file: an empty expect is proof of nothing unless
 * the judge's echo of each check's token is required; the pairs that bound
 * each other are in order. Each message names the line of the key. */
static void check_file(struct cfg_parse *p)
{
	int line = p->lineno;

	if (p->expect_line && !p->c->expect[0] && !p->c->require_echo) {
		p->lineno = p->expect_line;
		snprintf(p->section, sizeof(p->section), "check");
		parse_fail(p, "expect", "%s", cfg_empty_expect);
	}
	check_http(p);
	check_gateway(p);
	check_order(p, "retry_min_s", p->c->retry_min_s, "retry_max_s", p->c->retry_max_s);
	check_order(p, "connect_timeout_ms", p->c->connect_timeout_ms, "timeout_ms",
		    p->c->timeout_ms);
	p->lineno = line;
}

/* Runs inih over the open file; 0 or -errno with the message set. */
static int parse_file(struct cfg_parse *p)
{
	int rc = ini_parse_stream(cfg_line_cb, p, cfg_key_cb, p);

	if (rc == 0 && !p->err_line && !p->read_errno)
		end_section(p);
	if (rc == 0 && !p->err_line && !p->read_errno)
		check_file(p);
	if (rc > 0 && (!p->err_line || rc < p->err_line)) {
		put_err(p->err, p->errlen,
			"%s:%d: syntax error (expected [section] or key = value)", p->file, rc);
		return -EINVAL;
	}
	if (p->err_line)
		return p->rc;
	if (p->read_errno) {
		put_err(p->err, p->errlen, "%s: %s", p->file, strerror(p->read_errno));
		return -p->read_errno;
	}
	if (rc < 0) {
		put_err(p->err, p->errlen, "%s: out of memory", p->file);
		return -ENOMEM;
	}
	return 0;
}

void cfg_init(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->db = strdup(CFG_DEFAULT_DB);
	c->log_level = LOG_LVL_INFO;
	c->judge = strdup(CFG_DEFAULT_JUDGE);
	c->expect = strdup(CFG_DEFAULT_EXPECT);
	c->timeout_ms = 5000;
	c->connect_timeout_ms = 2000;
	c->concurrency = 1000;
	c->interval_s = 300;
	c->publish_ms = 500;
	c->retries = 1;
	c->recheck_s = 300;
	c->retry_min_s = 60;
	c->retry_max_s = 3600;
	c->max_fails = 5;
	c->dead_ttl_s = 86400;
	c->judge_probe_s = 60;
	c->probe_judges = 1;
	c->file_mode = -1;
	c->http.rate = 50;
	c->http.burst = 100;
	c->http.max_connections = 1024;
	c->http.idle_timeout_s = 60;
	c->http.request_timeout_s = 10;
	c->http.threads = 1;
	c->gateway.policy = CFG_GW_RANDOM;
	c->gateway.retries = 2;
	c->gateway.eject_after = 3;
	c->gateway.max_connections = 1024;
	c->gateway.per_client = 64;
	c->gateway.handshake_timeout_s = 10;
	c->gateway.idle_timeout_s = 300;
	c->session_ttl_s = SESSION_TTL_DEFAULT;
	c->sessions_max = SESSION_MAX_DEFAULT;
	c->judges = calloc(1, sizeof(*c->judges));
	if (c->judges) {
		c->judges[0] = strdup(CFG_DEFAULT_JUDGE);
		c->njudges = c->judges[0] ? 1 : 0;
	}
}

void cfg_free(struct cfg *c)
{
	for (size_t i = 0; i < c->nsources; i++) {
		free(c->sources[i].name);
		free(c->sources[i].url);
		free(c->sources[i].path);
	}
	free(c->sources);
	free(c->file);
	free(c->db);
	free(c->pid_file);
	free(c->log_file);
	free(c->group);
	free(c->judge);
	for (size_t i = 0; i < c->njudges; i++)
		free(c->judges[i]);
	free(c->judges);
	free(c->ca_file);
	free(c->expect);
	for (size_t i = 0; i < c->http.nlisten; i++)
		free(c->http.listen[i]);
	free(c->http.listen);
	free(c->http.token);
	free(c->http.token_file);
	for (size_t i = 0; i < c->gateway.nlisten; i++)
		free(c->gateway.listen[i]);
	free(c->gateway.listen);
	for (size_t i = 0; i < c->gateway.nsources; i++)
		free(c->gateway.sources[i]);
	free(c->gateway.sources);
	for (size_t i = 0; i < c->gateway.nusers; i++) {
		/* The passwords are not left in freed memory. */
		explicit_bzero(c->gateway.users[i], strlen(c->gateway.users[i]));
		free(c->gateway.users[i]);
	}
	free(c->gateway.users);
	free(c->gateway.users_file);
	free(c->geo.country_db);
	free(c->geo.asn_db);
	memset(c, 0, sizeof(*c));
}

int cfg_add_list(struct cfg *c, const char *name, const char *path, enum proxy_proto proto,
		 bool remote_dns)
{
	struct cfg_source *list, *s;

	list = realloc(c->sources, (c->nsources + 1) * sizeof(*list));
	if (!list)
		return -ENOMEM;
	c->sources = list;
	s = &list[c->nsources];
	memset(s, 0, sizeof(*s));
	bool remote = has_prefix_nocase(path, "http://") || has_prefix_nocase(path, "https://");

	s->name = strdup(name);
	s->url = strdup(path);
	s->path = remote ? NULL : strdup(path);
	s->proto = proto;
	s->remote_dns = remote_dns;
	s->interval_s = c->interval_s;
	c->nsources++;
	if (!s->name || !s->url || (!remote && !s->path))
		return -ENOMEM;
	return 0;
}

unsigned int cfg_file_mode(const struct cfg *c)
{
	if (c->file_mode >= 0)
		return (unsigned int)c->file_mode;
	return c->group ? 0440 : 0444;
}

int cfg_load(const char *path, struct cfg *out, char *err, size_t errlen)
{
	struct cfg tmp;
	struct cfg_parse p = {.file = path, .c = &tmp, .err = err, .errlen = errlen};
	char scratch[512];
	int rc;

	if (!err || errlen == 0) {
		p.err = scratch;
		p.errlen = sizeof(scratch);
	}
	p.err[0] = '\0';
	cfg_init(&tmp);
	tmp.file = strdup(path);
	if (!tmp.db || !tmp.judge || !tmp.expect || !tmp.file) {
		put_err(p.err, p.errlen, "%s: out of memory", path);
		rc = -ENOMEM;
		goto out_free_tmp;
	}
	p.fp = fopen(path, "re");
	if (!p.fp) {
		rc = -errno;
		put_err(p.err, p.errlen, "%s: %s", path, strerror(-rc));
		goto out_free_tmp;
	}
	rc = dir_of(path, &p.dir);
	if (rc < 0) {
		put_err(p.err, p.errlen, "%s: %s", path, strerror(-rc));
		goto out_close;
	}
	rc = parse_file(&p);
	if (rc < 0)
		goto out_free_dir;
	apply_source_defaults(&tmp);
	cfg_free(out);
	*out = tmp;
	memset(&tmp, 0, sizeof(tmp));
out_free_dir:
	free(p.dir);
out_close:
	free(p.buf);
	fclose(p.fp);
out_free_tmp:
	cfg_free(&tmp);
	return rc;
}

/* --- validation --- */

static bool int_in_range(const char *key, int v, char *err, size_t errlen)
{
	for (size_t i = 0; i < N_CFG_KEYS; i++) {
		const struct cfg_key *k = &cfg_keys[i];

		if (k->type != KEY_INT || strcmp(k->name, key) != 0)
			continue;
		if (v >= k->min && v <= k->max)
			return true;
		put_err(err, errlen, "[%s] %s: %d is out of range %d..%d",
			k->sect == SECT_CHECK ? "check" : "source", key, v, k->min, k->max);
		return false;
	}
	return true;
}

static int validate_sources(const struct cfg *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->nsources; i++) {
		const struct cfg_source *s = &c->sources[i];

		if (!s->name || !valid_source_name(s->name)) {
			put_err(err, errlen, "source %zu: bad name", i + 1);
			return -EINVAL;
		}
		if (!s->url || !*s->url) {
			put_err(err, errlen, "[source:%s]: no url", s->name);
			return -EINVAL;
		}
		if ((unsigned)s->proto >= PROXY_PROTO_COUNT) {
			put_err(err, errlen, "[source:%s] protocol: unknown", s->name);
			return -EINVAL;
		}
		if (s->interval_s < 1 || s->interval_s > 31536000) {
			put_err(err, errlen,
				"[source:%s] interval_s: %d is out of range 1..31536000", s->name,
				s->interval_s);
			return -EINVAL;
		}
	}
	return 0;
}

int cfg_validate(const struct cfg *c, char *err, size_t errlen)
{
	const char *why;

	if (!c->db || !*c->db) {
		put_err(err, errlen, "[proxyfs] db: empty");
		return -EINVAL;
	}
	why = c->judge ? http_url_problem(c->judge) : "not set";
	if (why) {
		put_err(err, errlen, "[check] judge: '%.*s' %s", VALUE_SHOWN,
			c->judge ? c->judge : "", why);
		return -EINVAL;
	}
	if (!c->expect) {
		put_err(err, errlen, "[check] expect: not set");
		return -EINVAL;
	}
	if (!c->expect[0] && !c->require_echo) {
		put_err(err, errlen, "[check] expect: %s", cfg_empty_expect);
		return -EINVAL;
	}
	if (!int_in_range("timeout_ms", c->timeout_ms, err, errlen) ||
	    !int_in_range("connect_timeout_ms", c->connect_timeout_ms, err, errlen) ||
	    !int_in_range("concurrency", c->concurrency, err, errlen) ||
	    !int_in_range("publish_ms", c->publish_ms, err, errlen) ||
	    !int_in_range("retries", c->retries, err, errlen) ||
	    !int_in_range("interval_s", c->interval_s, err, errlen))
		return -EINVAL;
	for (size_t i = 0; i < c->njudges; i++) {
		why = http_url_problem(c->judges[i]);
		if (why) {
			put_err(err, errlen, "[check] judge: '%.*s' %s", VALUE_SHOWN, c->judges[i],
				why);
			return -EINVAL;
		}
	}
	if (c->retry_min_s > c->retry_max_s) {
		put_err(err, errlen, "[check] retry_min_s: %d is more than retry_max_s (%d)",
			c->retry_min_s, c->retry_max_s);
		return -EINVAL;
	}
	if (c->connect_timeout_ms > c->timeout_ms) {
		put_err(err, errlen, "[check] connect_timeout_ms: %d is more than timeout_ms (%d)",
			c->connect_timeout_ms, c->timeout_ms);
		return -EINVAL;
	}
	if (c->http.private_ && !c->http.token) {
		put_err(err, errlen, "[http] private: yes needs a token (token = or token_file =)");
		return -EINVAL;
	}
	return validate_sources(c, err, errlen);
}
