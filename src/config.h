/* config: the settings, read from an INI file with inih.
 *
 * Every setting has a default that works. A file is read whole into a new
 * struct cfg; on any error nothing of it is used, and the message names the
 * file, line and key. Does not apply settings; the caller does.
 */
#ifndef PROXYFS_CONFIG_H
#define PROXYFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"
#include "proxy.h"

#define CFG_DEFAULT_DB "/var/lib/proxyfs/proxyfs.db"

struct cfg_source {
	char *name;     /* [source:NAME]; letters, digits, '.', '_', '-' only */
	char *url;      /* as written: a path, file://path, later http(s):// */
	char *path;     /* resolved local path (relative to the config file's dir), or NULL for http(s) */
	enum proxy_proto proto; /* for lines without a scheme; default http */
	bool remote_dns;        /* ... written socks4a or socks5h: the proxy resolves names */
	int interval_s;         /* re-read period; default = check.interval_s */
};

/* [http]: the HTTP front (fs/http.h); off when listen is empty. Read at
 * start only: a reload that changes it is logged and waits for a restart. */
struct cfg_http {
	char **listen;           /* ADDR:PORT (IPv6 as [ADDR]:PORT), each parsed by cfg_parse_listen */
	size_t nlisten;
	size_t nlisten_cli;      /* the last ones of listen[] came from --http, not the file */
	char *token;             /* token = or token_file's first line; NULL = none */
	char *token_file;        /* as given (absolute), or NULL */
	int private_;            /* every path needs the token; default 0 */
	int rate;                /* requests per second per client address, 0 = off; default 50 */
	int burst;               /* the bucket's size; default 100 */
	int max_connections;     /* default 1024 */
	int idle_timeout_s;      /* keep-alive idle; default 60 */
	int request_timeout_s;   /* a whole request must arrive within; default 10 */
	int threads;             /* event loops serving it; default 1 */
};

/* How the gateway chooses an upstream for a connection without a session. */
enum cfg_gw_policy {
	CFG_GW_RANDOM,	    /* any matching live proxy, uniformly */
	CFG_GW_ROUND_ROBIN, /* each in turn */
	CFG_GW_FASTEST,	    /* weighted towards lower latency, not always the first */
};

/* [gateway]: one proxy address over the pool (gateway/); off when listen is
 * empty. Read at start only: a reload that changes it is logged and waits
 * for a restart. */
struct cfg_gateway {
	char **listen;           /* ADDR:PORT (IPv6 as [ADDR]:PORT), each parsed by cfg_parse_listen */
	size_t nlisten;
	size_t nlisten_cli;      /* the last ones of listen[] came from --gateway, not the file */
	int policy;              /* enum cfg_gw_policy; default random */
	/* Default filters, for clients whose user name gives none (the same
	 * words as the HTTP query): bits as in struct pick_filter, 0 = any. */
	unsigned int protos;     /* protocol = http,socks5: bit (1 << enum proxy_proto) */
	unsigned int anons;      /* anonymity = elite: bit (1 << enum snap_anon) */
	char **sources;          /* source = NAME,...: source names, at most PICK_SOURCES_MAX */
	size_t nsources;
	int retries;             /* other upstreams tried after a failed one; default 2 */
	int eject_after;         /* failures of real traffic in a row that eject; 0 = never; default 3 */
	/* user:pass pairs a client must give (auth = or users_file's lines);
	 * none: any user name is taken as options only. */
	char **users;
	size_t nusers;
	char *users_file;        /* as given (absolute), or NULL */
	int max_connections;     /* client connections at once; default 1024 */
	int per_client;          /* ... from one client address; 0 = no bound; default 64 */
	int handshake_timeout_s; /* a client's handshake, and the upstream's, within; default 10 */
	int idle_timeout_s;      /* a relayed connection with no bytes either way; default 300 */
};

/* [geo]: the MaxMind DB files (src/geo.h). Each NULL when not given (the
 * default places are searched), "" when given empty (off). */
struct cfg_geo {
	char *country_db;        /* a country per network */
	char *asn_db;            /* autonomous_system_number / _organization per network */
};

struct cfg {
	char *file; /* the file read, or NULL for defaults only */

	/* [proxyfs] */
	char *db;                /* default CFG_DEFAULT_DB */
	enum log_level log_level; /* default info */
	char *pid_file;          /* the daemon's pid is written there; NULL = none */
	char *log_file;          /* logs are appended there; NULL = stderr, or syslog once
				  * in the background (stderr kept when there is no syslog) */
	char *group;             /* reader files belong to this group; NULL = the daemon's */
	unsigned int gid;        /* ... its id, looked up when the file was read */
	int file_mode;           /* reader files' mode; -1 = 0440 with a group, else 0444 */
	int hide_credentials;    /* user:pass@ left out of every reader file; default 0 */
	int session_ttl_s;       /* a session key unused this long is placed afresh; default 600 */
	int sessions_max;        /* session keys kept at most (oldest dropped); default 100000 */

	/* [check] */
	char *judge;            /* URL fetched through each proxy; default http://azenv.net/ */
	char *expect;           /* answer body must contain it; default "REMOTE_ADDR"; "" only
				 * with require_echo */
	int require_echo;       /* every answer must echo the check's token; default 0 */
	int timeout_ms;         /* whole check; default 5000 */
	int connect_timeout_ms; /* default 2000 */
	int concurrency;        /* checks in flight; default 1000 */
	int interval_s;         /* full rescan period; default 300 */
	int publish_ms;         /* snapshot publish period during a scan; default 500 */
	int retries;            /* retries after timeout/reset; default 1 */
	char **judges;          /* every judge = line, in order (judges[0] == judge) */
	size_t njudges;
	bool judges_from_file;  /* the file named a judge: later ones add to it */
	char *ca_file;          /* CA bundle for https judges and sources; NULL = system */
	int recheck_s;          /* a live proxy is re-checked this often; default 300 */
	int retry_min_s;        /* a failed one first after this, doubling ... default 60 */
	int retry_max_s;        /* ... up to this; default 3600 */
	int max_fails;          /* dropped after this many failures in a row ... default 5 */
	int dead_ttl_s;         /* ... once dead for longer than this; default 86400 */
	int judge_probe_s;      /* judges are probed directly this often; default 60 */
	int probe_judges;       /* 0: trust the judges without probing them; default 1 */

	struct cfg_http http;
	struct cfg_gateway gateway;
	struct cfg_geo geo;

	struct cfg_source *sources;
	size_t nsources;
};

/* Fills c with the defaults (allocates the default strings). */
void cfg_init(struct cfg *c);
/* Frees everything c owns and leaves it zeroed. */
void cfg_free(struct cfg *c);

/* Reads path into *out (which must be cfg_init'ed; on success it holds the
 * defaults overridden by the file; on failure it is left as it was).
 * Returns 0, or -errno: -ENOENT/-EACCES for an unreadable file, -EINVAL for
 * an unknown section or key, a bad value, or a duplicate source. err gets a
 * one-line message "FILE:LINE: [section] key: why" (or "FILE: why"). */
int cfg_load(const char *path, struct cfg *out, char *err, size_t errlen);

/* Adds a judge URL: the first one after cfg_init (or after judges_from_file
 * was cleared) replaces the list, later ones add to it. 0 or -ENOMEM. */
int cfg_add_judge(struct cfg *c, const char *url);

/* Appends a source reading the local list at path (as given, relative to
 * the current directory) or downloading an http(s) URL, for proxyfs check;
 * its lines without a scheme are proto (remote_dns: the socks4a/socks5h
 * form). 0 or -ENOMEM. */
int cfg_add_list(struct cfg *c, const char *name, const char *path, enum proxy_proto proto,
		 bool remote_dns);

/* Adds a listen address from the command line (--http ADDR:PORT). 0,
 * -EINVAL with why in err, or -ENOMEM. */
int cfg_add_http_listen(struct cfg *c, const char *addr, char *err, size_t errlen);

/* Adds a gateway listen address from the command line (--gateway
 * ADDR:PORT). 0, -EINVAL with why in err, or -ENOMEM. */
int cfg_add_gateway_listen(struct cfg *c, const char *addr, char *err, size_t errlen);

/* Parses ADDR:PORT ([ADDR]:PORT for IPv6; numeric addresses only) into
 * *ss and *len. 0, or -EINVAL with why (a static string) in *why. */
struct sockaddr_storage;
int cfg_parse_listen(const char *s, struct sockaddr_storage *ss, unsigned int *len,
		     const char **why);

/* Do a and b give the same [http] as their files wrote it (listen
 * addresses from the command line left out)? */
bool cfg_http_same(const struct cfg *a, const struct cfg *b);

/* Do a and b give the same [gateway] as their files wrote it (listen
 * addresses from the command line left out)? */
bool cfg_gateway_same(const struct cfg *a, const struct cfg *b);

/* The gateway's default filter into *f: its source names point into g,
 * which must outlive f. */
struct pick_filter;
void cfg_gateway_filter(const struct cfg_gateway *g, struct pick_filter *f);

/* The mode reader files get: file_mode, or its default. */
unsigned int cfg_file_mode(const struct cfg *c);

/* Checks the cross-field rules (judge URL parses, timeouts positive, ...)
 * after command-line overrides; 0 or -EINVAL with a message. */
int cfg_validate(const struct cfg *c, char *err, size_t errlen);

#endif
