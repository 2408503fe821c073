/* main: the proxyfs command line and the daemon's life cycle.
 *
 * Reads the config, opens the store, starts the engine and mounts the FUSE
 * front; SIGTERM/SIGINT unmount and flush, SIGHUP re-reads the sources. A
 * stale mount left by a crash is cleared before mounting. Everything that
 * can be wrong with the config is found before the daemon forks, so a bad
 * start exits with status 2 and a message on stderr.
 */
#include <errno.h>
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
#include "judges.h"
#include "log.h"
#include "snapshot.h"
#include "store.h"

#define EXIT_USAGE 2
#define DEFAULT_CONFIG "/etc/proxyfs/proxyfs.ini"

extern char **environ;

struct options {
	const char *config;
	const char *mountpoint;
	char *fuse_opts; /* comma-joined -o values, owned */
	bool foreground;
	bool debug;
	bool single_thread;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: proxyfs [-c FILE] [-f] [-d] [-s] [-o FUSEOPT,...] MOUNTPOINT\n"
		"       proxyfs check [--judge URL] [--expect TEXT] [--concurrency N] [FILE ...]\n"
		"       proxyfs judge --listen ADDR:PORT\n"
		"       proxyfs --help | --version\n"
		"\n"
		"Keeps a pool of proxies checked and shows it as files under MOUNTPOINT:\n"
		"random, next, live.txt, live.json, stat.json, metrics, health,\n"
		"{http,https,socks4,socks5}/{random,next,live.txt}, prometheus/proxyfs.prom,\n"
		"control/{reload,add,remove}.\n"
		"\n"
		"  -c, --config FILE   settings (INI); default %s if it exists\n"
		"  -f, --foreground    do not daemonize; log to stderr\n"
		"  -d, --debug         FUSE debug output (implies -f)\n"
		"  -s                  single-threaded FUSE loop\n"
		"  -o OPT[,OPT...]     FUSE mount options (allow_other, ...)\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n",
		DEFAULT_CONFIG);
}

static int add_fuse_opt(struct options *o, const char *opt)
{
	size_t old = o->fuse_opts ? strlen(o->fuse_opts) : 0;
	char *p = realloc(o->fuse_opts, old + strlen(opt) + 2);

	if (!p)
		return -ENOMEM;
	if (old)
		p[old++] = ',';
	strcpy(p + old, opt);
	o->fuse_opts = p;
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
			if (add_fuse_opt(o, optarg) < 0)
				return -1;
			break;
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

static struct fuse *make_fuse(const struct options *o, struct engine *e)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse *f = NULL;

	if (fuse_opt_add_arg(&args, "proxyfs") < 0)
		goto out;
	if (o->debug && fuse_opt_add_arg(&args, "-d") < 0)
		goto out;
	if (o->fuse_opts && (fuse_opt_add_arg(&args, "-o") < 0 ||
			     fuse_opt_add_arg(&args, o->fuse_opts) < 0))
		goto out;
	f = fuse_new(&args, fs_operations(), sizeof(struct fuse_operations), e);
out:
	fuse_opt_free_args(&args);
	return f;
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

static int run(const struct options *o, const struct cfg *c)
{
	struct store *store = NULL;
	struct engine *e = NULL;
	struct fuse *f = NULL;
	char *mountpoint = NULL;
	char err[512];
	int rc, status = 1;

	rc = clear_stale_mount(o->mountpoint);
	if (rc < 0) {
		fprintf(stderr, "proxyfs: %s: %s\n", o->mountpoint, strerror(-rc));
		return 1;
	}
	/* Daemonizing moves to /: keep the mountpoint absolute. */
	mountpoint = realpath(o->mountpoint, NULL);
	if (!mountpoint) {
		fprintf(stderr, "proxyfs: %s: %s\n", o->mountpoint, strerror(errno));
		return 1;
	}
	store = store_open(c->db, err, sizeof(err));
	if (!store) {
		fprintf(stderr, "proxyfs: %s\n", err);
		goto out_mountpoint;
	}
	if (snap_system_init() < 0)
		goto out_store;
	e = engine_new(c, store);
	if (!e)
		goto out_snap;
	f = make_fuse(o, e);
	if (!f)
		goto out_engine;
	if (fuse_mount(f, mountpoint) != 0)
		goto out_fuse;
	if (fuse_set_signal_handlers(fuse_get_session(f)) != 0)
		goto out_unmount;
	install_hup(e);
	if (!o->foreground)
		log_use_syslog(true);
	if (fuse_daemonize(o->foreground) != 0)
		goto out_signals;
	if (store_start(store) < 0 || engine_start(e) < 0) {
		log_err("cannot start the store or engine thread");
		goto out_signals;
	}
	log_info("mounted on %s", mountpoint);
	rc = serve(f, o);
	status = rc >= 0 ? 0 : 1; /* a signal number when a signal ended the loop */
	log_info("unmounting %s", mountpoint);
out_signals:
	hup_engine = NULL;
	fuse_remove_signal_handlers(fuse_get_session(f));
out_unmount:
	fuse_unmount(f);
out_fuse:
	fuse_destroy(f);
out_engine:
	engine_free(e);
out_snap:
	snap_system_fini();
out_store:
	store_close(store);
out_mountpoint:
	free(mountpoint);
	return status;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct cfg c;
	int rc;

	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "judge") == 0)
		return judge_main(argc - 1, argv + 1);
	rc = parse_args(argc, argv, &o);
	if (rc != 0) {
		free(o.fuse_opts);
		return rc > 0 ? 0 : EXIT_USAGE;
	}
	if (load_config(&o, &c) < 0 || check_judge(&c) < 0) {
		cfg_free(&c);
		free(o.fuse_opts);
		return EXIT_USAGE;
	}
	log_set_level(c.log_level);
	signal(SIGPIPE, SIG_IGN);
	rc = run(&o, &c);
	fetch_global_cleanup();
	cfg_free(&c);
	free(o.fuse_opts);
	return rc;
}
