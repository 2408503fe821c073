/* main: the proxyfs command line and the daemon's life cycle.
 *
 * Reads the config, opens the store, starts the engine and mounts the FUSE
 * front; SIGTERM/SIGINT unmount and flush, SIGHUP re-reads the sources. A
 * stale mount left by a crash is cleared before mounting; a live one is
 * refused. Everything that can be wrong with the config is found before
 * the daemon forks, so a bad start exits with status 2 and a message on
 * stderr; what fails after the fork (the database in use, the mount) still
 * reaches stderr and the exit status, since the parent waits for it.
 * A service manager is told when the mount is ready (notify.c), and a
 * pid_file names the daemon to whoever signals it.
 *
 * The map: src/ is what every part uses (config, proxy lines, snapshot,
 * store, sources, log); checker/ is the engine that keeps the pool checked
 * and publishes snapshots (engine.h); fs/ is the tree (tree.h) and its
 * FUSE front (fs.h); gateway/ is the proxy listener over the pool
 * (gateway.h). checker/, fs/ and gateway/ know nothing of each other: this
 * file and the commands (cli_check.c, cli_judge.c), built into the
 * executable, wire them together (struct fs_control and struct gw_report
 * below).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli_check.h"
#include "cli_judge.h"
#include "config.h"
#include "engine.h"
#include "fetch.h"
#include "fs.h"
#include "gateway.h"
#include "geo.h"
#include "http.h"
#include "judge_set.h"
#include "log.h"
#include "notify.h"
#include "session.h"
#include "snapshot.h"
#include "store.h"

#define EXIT_USAGE 2
#define DEFAULT_CONFIG "/etc/proxyfs/proxyfs.ini"

extern char **environ;

struct options {
	const char *config;
	const char *mountpoint;
	char *fuse_opts; /* comma-joined -o values, owned; nonempty taken out */
	bool nonempty;	 /* -o nonempty: mounting over files is consented to */
	bool foreground;
	bool debug;
	bool single_thread;
	char **http;	/* --http ADDR:PORT, in order; owned (the strings are argv's) */
	size_t nhttp;
	char **gateway; /* --gateway ADDR:PORT, the same way */
	size_t ngateway;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: proxyfs [-c FILE] [-f] [-d] [-s] [-o FUSEOPT,...] [--http ADDR:PORT]\n"
		"               [--gateway ADDR:PORT] MOUNTPOINT\n"
		"       proxyfs check [OPTION...] [FILE|URL ...]   (proxyfs check --help)\n"
		"       proxyfs judge --listen ADDR:PORT            (proxyfs judge --help)\n"
		"       proxyfs --help | --version\n"
		"\n"
		"Keeps a pool of proxies checked and shows it as files under MOUNTPOINT:\n"
		"random, next, live.txt, live.json, stat.json, metrics, health,\n"
		"all.json, dead.txt, removed.txt, lookup/PROXY, session/KEY,\n"
		"formats/{proxychains.conf,curl.txt},\n"
		"{http,https,socks4,socks5}/{random,next,live.txt,session/KEY},\n"
		"anonymity/{elite,anonymous,transparent}/{random,next,live.txt,session/KEY},\n"
		"sources/NAME/{random,next,live.txt,session/KEY},\n"
		"country/{XX,unknown}/{random,next,live.txt,session/KEY}, prometheus/proxyfs.prom,\n"
		"control/{reload,add,remove,bad}.\n"
		"\n"
		"  -c, --config FILE   settings (INI); default %s if it exists\n"
		"  -f, --foreground    do not daemonize; log to stderr\n"
		"  -d, --debug         FUSE debug output (implies -f)\n"
		"  -s                  single-threaded FUSE loop\n"

		"  -o OPT[,OPT...]     mount options: nonempty (mount over files), allow_other,\n"
		"                      and the other FUSE options\n"
		"      --http ADDR:PORT\n"
		"                      serve the tree over HTTP there too (repeatable; adds to\n"
		"                      [http] listen; IPv6 as [::1]:8080)\n"
		"      --gateway ADDR:PORT\n"
		"                      one proxy address over the pool there (HTTP, SOCKS4/5;\n"
		"                      repeatable; adds to [gateway] listen)\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n"
		"\n"
		"Country and network of each proxy's exit: [geo] country_db, asn_db (MaxMind DB\n"
		"files), else found in /var/lib/proxyfs/geo, /usr/share/GeoIP, /var/lib/GeoIP\n"
		"(PROXYFS_GEO_DIRS=DIR:... instead).\n"
		"\n"
		"Exit status: 0 clean unmount, 1 failure, 2 usage or configuration error.\n"
		"The manual: man 8 proxyfs.\n",
		DEFAULT_CONFIG);
}

static int add_fuse_opt(struct options *o, const char *opt, size_t len)
{
	size_t old = o->fuse_opts ? strlen(o->fuse_opts) : 0;
	char *p = realloc(o->fuse_opts, old + len + 2);

	if (!p)
		return -ENOMEM;
	if (old)
		p[old++] = ',';
	memcpy(p + old, opt, len);
	p[old + len] = '\0';
	o->fuse_opts = p;
	return 0;
}

/* One -o value: nonempty is ours (libfuse 3 mounts over files silently);
 * the rest goes to libfuse, which refuses what it does not know. */
static int add_fuse_opts(struct options *o, const char *opts)
{
	while (*opts) {
		size_t len = strcspn(opts, ",");

		if (len == strlen("nonempty") && strncmp(opts, "nonempty", len) == 0)
			o->nonempty = true;
		else if (len && add_fuse_opt(o, opts, len) < 0)
			return -ENOMEM;
		opts += len;
		if (*opts == ',')
			opts++;
	}
	return 0;
}

/* 0 to go on, 1 when done (help/version printed), -1 on a usage error. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "http", required_argument, NULL, 'H' },
		{ "gateway", required_argument, NULL, 'G' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:fdso:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = o->foreground = true;
			break;
		case 's':
			o->single_thread = true;
			break;
		case 'o':
			if (add_fuse_opts(o, optarg) < 0)
				return -1;
			break;
		case 'H': {
			char **grown = realloc(o->http, (o->nhttp + 1) * sizeof(*grown));

			if (!grown)
				return -1;
			o->http = grown;
			o->http[o->nhttp++] = optarg;
			break;
		}
		case 'G': {
			char **grown = realloc(o->gateway, (o->ngateway + 1) * sizeof(*grown));

			if (!grown)
				return -1;
			o->gateway = grown;
			o->gateway[o->ngateway++] = optarg;
			break;
		}
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("proxyfs %s\n", PROXYFS_VERSION);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "proxyfs: %s\n",
			optind >= argc ? "no MOUNTPOINT given" : "more than one MOUNTPOINT given");
		usage(stderr);
		return -1;
	}
	o->mountpoint = argv[optind];
	return 0;
}

static int load_config(const struct options *o, struct cfg *c)
{
	char err[512];
	const char *path = o->config;
	int rc;

	cfg_init(c);
	if (!path && access(DEFAULT_CONFIG, F_OK) == 0)
		path = DEFAULT_CONFIG;
	if (path) {
		/* Absolute, so SIGHUP finds it again after the daemon moved to /. */
		char *abs = realpath(path, NULL);

		rc = cfg_load(abs ? abs : path, c, err, sizeof(err));
		free(abs);
		if (rc < 0) {
			fprintf(stderr, "proxyfs: %s\n", err);
			return rc;
		}
	}
	for (size_t i = 0; i < o->nhttp; i++) {
		rc = cfg_add_http_listen(c, o->http[i], err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "proxyfs: %s\n", rc == -ENOMEM ? "out of memory" : err);
			return rc;
		}
	}
	for (size_t i = 0; i < o->ngateway; i++) {
		rc = cfg_add_gateway_listen(c, o->gateway[i], err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "proxyfs: %s\n", rc == -ENOMEM ? "out of memory" : err);
			return rc;
		}
	}
	rc = cfg_validate(c, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "proxyfs: %s%s%s\n", path ? path : "", path ? ": " : "", err);
		return rc;
	}
	return 0;
}

/* The judge URLs (and the CA file) must be well formed before the daemon
 * forks. Whether a judge's host resolves is not asked here: one that does
 * not yet (no network at boot) is looked up again until it does. */
static int check_judge(const struct cfg *c)
{
	char err[256];
	struct judge_set *js = judges_new(c, false, err, sizeof(err));

	if (!js) {
		fprintf(stderr, "proxyfs: %s: [check] judge: %s\n", c->file ? c->file : "defaults",
			err);
		return -EINVAL;
	}
	judges_unref(js);
	return 0;
}

/* A mount whose daemon died answers ENOTCONN; lazily unmount it. */
static int clear_stale_mount(const char *mountpoint)
{
	struct stat st;
	char *argv[] = { "fusermount3", "-uz", (char *)mountpoint, NULL };
	pid_t pid;
	int status;

	if (stat(mountpoint, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno != ENOTCONN)
		return -errno;
	log_warn("%s: stale mount from an earlier run; unmounting it", mountpoint);
	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) != 0)
		return -ENOTCONN;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -ENOTCONN;
	return stat(mountpoint, &st) == 0 ? 0 : -errno;
}

/* Undoes the escapes of a /proc/self/mountinfo field in place. */
static void mountinfo_unescape(char *f)
{
	char *out = f;

	for (; *f; f++) {
		if (f[0] == '\\' && f[1] >= '0' && f[1] <= '3' && f[2] >= '0' && f[2] <= '7' &&
		    f[3] >= '0' && f[3] <= '7') {
			*out++ = (char)((f[1] - '0') * 64 + (f[2] - '0') * 8 + (f[3] - '0'));
			f += 3;
		} else {
			*out++ = *f;
		}
	}
	*out = '\0';
}

/* Whether something is mounted on path (absolute, resolved); its type
 * ("fuse.proxyfs", ...) goes to type. */
static bool mounted_on(const char *path, char *type, size_t typelen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		char *save = NULL, *field = strtok_r(line, " ", &save);

		for (int i = 1; field && i < 5; i++)
			field = strtok_r(NULL, " ", &save);
		if (!field)
			continue;
		mountinfo_unescape(field);
		if (strcmp(field, path) != 0)
			continue;
		found = true;
		while ((field = strtok_r(NULL, " ", &save)) && strcmp(field, "-") != 0)
			;
		field = field ? strtok_r(NULL, " ", &save) : NULL;
		snprintf(type, typelen, "%s", field ? field : "unknown");
	}
	free(line);
	fclose(f);
	return found;
}

/* --- running in the background ---
 *
 * The daemon forks before it opens anything that holds a lock or a thread
 * (the store's SQLite connection and its lock, the engine, the mount): a
 * forked child keeps no POSIX lock of its parent's and none of its threads.
 * The parent waits on a pipe until the child is mounted and serving, or has
 * failed (its messages still on the terminal's stderr), and exits with the
 * child's status, so `proxyfs MNT && cat MNT/random` works. */

/* In the child: the write end of the pipe the parent waits on, -1 once
 * told (or in the foreground). Main thread only. */
static int ready_fd = -1;

/* Forks. In the parent, waits for the child's word and exits with it;
 * returns 0 in the child (or -errno when the fork failed). */
static int daemon_fork(void)
{
	int fds[2];
	unsigned char status;
	pid_t pid;
	int ws;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -errno;
	}
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &status, 1) == 1)
			_exit(status);
		/* Gone without a word: its own exit status says why. */
		if (waitpid(pid, &ws, 0) == pid && WIFEXITED(ws))
			_exit(WEXITSTATUS(ws) ? WEXITSTATUS(ws) : 1);
		_exit(1);
	}
	close(fds[0]);
	ready_fd = fds[1];
	setsid();
	return 0;
}

/* Tells the waiting parent how the start went (once), and in the
 * background leaves the terminal: stdio to /dev/null, logs to syslog. */
static void daemon_ready(unsigned char status)
{
	int null;

	if (ready_fd < 0)
		return;
	if (status == 0) {
		log_use_syslog(true);
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
			close(null);
		}
	}
	if (write(ready_fd, &status, 1) != 1)
		log_warn("cannot tell the starting process: %s", strerror(errno));
	close(ready_fd);
	ready_fd = -1;
}

/* --- the pid file ---
 *
 * Written by the daemon itself (after the fork) once it holds the
 * database's lock, so a second daemon refused by that lock never
 * overwrites the first one's; removed at a clean exit. Written to a
 * temporary name and renamed, so a reader never sees it half written. */

static int pid_file_write(const char *path)
{
	char tmp[4096], line[32];
	int fd, n, rc = 0;
	ssize_t w;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	w = write(fd, line, (size_t)n);
	if (w != n)
		rc = w < 0 ? -errno : -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* SIGHUP: the engine re-reads its sources. Set once before the handler is
 * installed, read-only afterwards. */
static struct engine *hup_engine;

static void hup_handler(int sig)
{
	(void)sig;
	if (hup_engine)
		engine_signal_reload(hup_engine);
}

static void install_hup(struct engine *e)
{
	struct sigaction sa = { .sa_handler = hup_handler };

	hup_engine = e;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
}

/* The control files' calls, wired to the engine (fs/ knows no engine). */
static int control_add(void *arg, const struct proxy_addr *list, size_t n)
{
	return engine_add(arg, list, n);
}

static int control_remove(void *arg, const struct proxy_addr *list, size_t n)
{
	return engine_remove(arg, list, n);
}

static int control_bad(void *arg, const struct proxy_addr *list, size_t n, size_t *at,
		       fs_stop_fn stop, void *stop_arg)
{
	return engine_bad(arg, list, n, at, stop, stop_arg);
}

static int control_rescan(void *arg, bool wait, fs_stop_fn stop, void *stop_arg)
{
	return engine_rescan(arg, wait, stop, stop_arg);
}

static int control_reload(void *arg, fs_stop_fn stop, void *stop_arg)
{
	return engine_reload(arg, stop, stop_arg);
}

/* The gateway's word on each upstream, wired to the engine (gateway/
 * knows no engine), which counts failures in a row and ejects. */
static void gateway_report(void *arg, const char *uri, bool ok, const char *why)
{
	int rc = engine_report(arg, uri, ok, why);

	if (rc < 0 && rc != -ESHUTDOWN)
		log_debug("gateway: report on %s: %s", uri, strerror(-rc));
}

/* The gateway's settings from [gateway] (gateway/ knows no config file). */
static struct gateway *start_gateway(const struct cfg *c, const struct gw_report *report,
				     char *err, size_t errlen)
{
	const struct cfg_gateway *g = &c->gateway;
	struct gw_conf gc = {
		.listen = (const char *const *)g->listen,
		.nlisten = g->nlisten,
		.policy = g->policy == CFG_GW_ROUND_ROBIN ? GW_POLICY_ROUND_ROBIN :
			  g->policy == CFG_GW_FASTEST	  ? GW_POLICY_FASTEST :
							    GW_POLICY_RANDOM,
		.users = g->users,
		.nusers = g->nusers,
		.retries = g->retries,
		.max_connections = g->max_connections,
		.per_client = g->per_client,
		.handshake_timeout_s = g->handshake_timeout_s,
		.idle_timeout_s = g->idle_timeout_s,
	};

	cfg_gateway_filter(g, &gc.filter);
	return gw_start(&gc, report, err, errlen);
}

/* A FUSE instance with the command line's options; debug adds -d. Its ops
 * get ctl back as their private data. */
static struct fuse *make_fuse(const struct options *o, const struct fuse_operations *ops,
			      bool debug, const struct fs_control *ctl)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse *f = NULL;

	/* Listed as type fuse.proxyfs (mount, df -t, findmnt), source proxyfs.
	 * default_permissions: the kernel checks every access against the
	 * modes and group getattr gives (file_mode, group), so with
	 * allow_other the credentials in the reader files stay with those
	 * who may read them. */
	if (fuse_opt_add_arg(&args, "proxyfs") < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, "subtype=proxyfs,fsname=proxyfs,default_permissions") < 0)
		goto out;
	if (debug && fuse_opt_add_arg(&args, "-d") < 0)
		goto out;
	if (o->fuse_opts && (fuse_opt_add_arg(&args, "-o") < 0 ||
			     fuse_opt_add_arg(&args, o->fuse_opts) < 0))
		goto out;
	f = fuse_new(&args, ops, sizeof(struct fuse_operations), (void *)ctl);
out:
	fuse_opt_free_args(&args);
	return f;
}

/* The -o options are a usage matter: libfuse is asked whether it takes
 * them before anything starts (it names the ones it does not know), so a
 * typo exits 2 like any other usage error. Nothing is mounted or opened. */
static int check_fuse_opts(const struct options *o)
{
	static const struct fuse_operations no_ops;
	struct fuse *f;

	if (!o->fuse_opts)
		return 0;
	f = make_fuse(o, &no_ops, false, NULL);
	if (!f) {
		fprintf(stderr, "proxyfs: -o %s: not accepted (see proxyfs(8), FUSE OPTIONS)\n",
			o->fuse_opts);
		return -EINVAL;
	}
	fuse_destroy(f);
	return 0;
}

static int serve(struct fuse *f, const struct options *o)
{
	struct fuse_loop_config *lc;
	int rc;

	if (o->single_thread)
		return fuse_loop(f);
	lc = fuse_loop_cfg_create();
	if (!lc)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_idle_threads(lc, 10);
	rc = fuse_loop_mt(f, lc);
	fuse_loop_cfg_destroy(lc);
	return rc;
}

/* Whether the directory holds anything (a mount would hide it). */
static bool dir_has_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	bool any = false;

	if (!d)
		return false;
	while (!any && (de = readdir(d)))
		any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return any;
}

/* Before anything is started: the mountpoint is a directory, not in use
 * (a stale mount of a dead daemon is cleared), and empty unless nonempty
 * says that hiding its files is wanted. Its absolute path, or NULL with
 * the reason on stderr. */
static char *claim_mountpoint(const char *path, bool nonempty)
{
	char type[64], *abs;
	int rc = clear_stale_mount(path);

	if (rc < 0) {
		fprintf(stderr, "proxyfs: %s: %s\n", path, strerror(-rc));
		return NULL;
	}
	/* Running in the background moves to /: keep the mountpoint absolute. */
	abs = realpath(path, NULL);
	if (!abs) {
		fprintf(stderr, "proxyfs: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (mounted_on(abs, type, sizeof(type))) {
		fprintf(stderr, "proxyfs: %s: already mounted (%s); unmount it first\n", abs, type);
		free(abs);
		return NULL;
	}
	if (!nonempty && dir_has_entries(abs)) {
		fprintf(stderr,
			"proxyfs: %s: not empty (the mount would hide its files); "
			"give -o nonempty to mount over them\n",
			abs);
		free(abs);
		return NULL;
	}
	return abs;
}

/* The [geo] databases, opened before the daemon forks: a file the config
 * names that is missing or not a MaxMind DB stops the start (exit 2). */
static struct geo *open_geo(const struct cfg *c)
{
	char err[512];
	struct geo *g = geo_new(c->geo.country_db, c->geo.asn_db, err, sizeof(err));

	if (!g)
		fprintf(stderr, "proxyfs: geo: %s\n", err);
	return g;
}

/* Takes over geo (the engine's from then on). */
static int run(const struct options *o, const struct cfg *c, struct geo *geo)
{
	struct store *store = NULL;
	struct engine *e = NULL;
	struct fs_control ctl = { .add = control_add, .remove = control_remove,
				  .rescan = control_rescan, .reload = control_reload,
				  .bad = control_bad };
	struct fuse *f = NULL;
	struct http_front *http = NULL;
	struct gw_report gw_rep = { .report = gateway_report };
	struct gateway *gw = NULL;
	char *mountpoint;
	char err[512];
	bool wrote_pid = false;
	int rc, status = 1;

	mountpoint = claim_mountpoint(o->mountpoint, o->nonempty);
	if (!mountpoint) {
		geo_free(geo);
		return 1;
	}
	if (!o->foreground && (rc = daemon_fork()) < 0) {
		fprintf(stderr, "proxyfs: fork: %s\n", strerror(-rc));
		goto out_mountpoint;
	}
	store = store_open(c->db, err, sizeof(err));
	if (!store) {
		fprintf(stderr, "proxyfs: %s\n", err);
		goto out_mountpoint;
	}
	store_set_owner(store, mountpoint);
	if (c->pid_file && (rc = pid_file_write(c->pid_file)) < 0) {
		fprintf(stderr, "proxyfs: [proxyfs] pid_file %s: %s\n", c->pid_file, strerror(-rc));
		goto out_store;
	}
	wrote_pid = c->pid_file != NULL;
	if (snap_system_init() < 0)
		goto out_store;
	session_configure((uint32_t)c->session_ttl_s, (uint32_t)c->sessions_max);
	e = engine_new(c, store);
	if (!e)
		goto out_snap;
	engine_set_geo(e, geo);
	geo = NULL;
	ctl.arg = e;
	gw_rep.arg = e;
	f = make_fuse(o, fs_operations(), o->debug, &ctl);
	if (!f)
		goto out_engine;
	if (fuse_mount(f, mountpoint) != 0)
		goto out_fuse;
	/* libfuse leaves a signal its parent ignored alone, and a shell runs
	 * `proxyfs ... &` from a script with SIGINT ignored: the daemon is
	 * to stop on SIGINT and SIGTERM whoever started it. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (fuse_set_signal_handlers(fuse_get_session(f)) != 0)
		goto out_unmount;
	install_hup(e);
	if (store_start(store) < 0 || engine_start(e) < 0) {
		log_err("cannot start the store or engine thread");
		goto out_signals;
	}
	/* After the engine (libevent's threading is on), before the word to
	 * the parent: the command returning means the front and the gateway
	 * listen. Both stop before the engine. */
	if (c->http.nlisten && !(http = http_front_start(&c->http, &ctl, err, sizeof(err)))) {
		log_err("%s", err);
		goto out_signals;
	}
	if (c->gateway.nlisten && !(gw = start_gateway(c, &gw_rep, err, sizeof(err)))) {
		log_err("%s", err);
		goto out_signals;
	}
	log_info("mounted on %s", mountpoint);
	if (chdir("/") < 0)
		log_warn("chdir /: %s", strerror(errno));
	daemon_ready(0);
	notify_ready();
	rc = serve(f, o);
	status = rc >= 0 ? 0 : 1; /* a signal number when a signal ended the loop */
	notify_stopping();
	log_info("unmounting %s", mountpoint);
out_signals:
	gw_stop(gw);
	http_front_stop(http);
	hup_engine = NULL;
	fuse_remove_signal_handlers(fuse_get_session(f));
out_unmount:
	fuse_unmount(f);
out_fuse:
	fuse_destroy(f);
out_engine:
	engine_free(e);
out_snap:
	session_clear();
	snap_system_fini();
out_store:
	if (wrote_pid)
		unlink(c->pid_file);
	store_close(store);
out_mountpoint:
	geo_free(geo);
	free(mountpoint);
	daemon_ready((unsigned char)status); /* when the start failed: the parent exits too */
	return status;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct geo *geo;
	struct cfg c;
	int rc;

	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "judge") == 0)
		return judge_main(argc - 1, argv + 1);
	rc = parse_args(argc, argv, &o);
	if (rc != 0) {
		free(o.fuse_opts);
		free(o.http);
		free(o.gateway);
		return rc > 0 ? 0 : EXIT_USAGE;
	}
	if (load_config(&o, &c) < 0 || check_judge(&c) < 0 || check_fuse_opts(&o) < 0) {
		cfg_free(&c);
		free(o.fuse_opts);
		free(o.http);
		free(o.gateway);
		return EXIT_USAGE;
	}
	log_set_level(c.log_level);
	if (c.log_file && (rc = log_open_file(c.log_file)) < 0) {
		fprintf(stderr, "proxyfs: %s: [proxyfs] log_file %s: %s\n", c.file, c.log_file,
			strerror(-rc));
		cfg_free(&c);
		free(o.fuse_opts);
		free(o.http);
		free(o.gateway);
		return EXIT_USAGE;
	}
	geo = open_geo(&c);
	if (!geo) {
		cfg_free(&c);
		free(o.fuse_opts);
		free(o.http);
		free(o.gateway);
		return EXIT_USAGE;
	}
	fs_set_access(c.group != NULL, c.gid, cfg_file_mode(&c));
	signal(SIGPIPE, SIG_IGN);
	notify_init();
	rc = run(&o, &c, geo);
	notify_fini();
	fetch_global_cleanup();
	cfg_free(&c);
	free(o.fuse_opts);
	free(o.http);
	free(o.gateway);
	return rc;
}
