/* cli_check: `proxyfs check`, the one-shot checker.
 *
 * Runs the same engine as the mount once over the lists given (the
 * config's sources when none and -c names some, else stdin, never a
 * terminal): live proxies go to stdout as they are found (URI lines, or
 * JSON lines), progress and a summary with what each list held go to
 * stderr. Lists are named in messages as the user gave them. It mounts
 * nothing and writes no database.
 */
#include "cli_check.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "engine.h"
#include "fetch.h"
#include "log.h"
#include "sbuf.h"
#include "snapshot.h"

#define EXIT_USAGE 2
#define SUMMARY_SAMPLES 3 /* invalid lines of a list shown in the summary */
#define RATE_MIN_S 1.0    /* a run shorter than this gets no checks/s figure */

struct check_run {
	bool json;
	bool all;          /* --all: failed proxies are printed too (JSON only) */
	bool tty;          /* stderr is a terminal: draw a bar */
	int proto_default; /* enum proxy_proto of lines without a scheme */
	bool remote_dns;   /* and whether in its remote-DNS form (socks4a, socks5h) */
	struct sbuf line;  /* reused for JSON output */
	struct sbuf lists; /* the summary's lines about each list */
	unsigned lists_failed;
};

static void check_usage(FILE *out)
{
	fprintf(out,
		"usage: proxyfs check [-c FILE] [--judge URL] [--expect TEXT] [--concurrency N]\n"
		"                     [--timeout MS] [--connect-timeout MS] [--retries N]\n"
		"                     [--protocol P] [--ca-file PEM] [--no-probe]\n"
		"                     [--json [--all]] [FILE|URL|- ...]\n"
		"\n"
		"Checks every proxy of the lists once (files, http(s) URLs, - for stdin) and\n"
		"prints the live ones on stdout as they are found; progress and a summary (what\n"
		"each list held, its first invalid lines) go to stderr. With no list: the\n"
		"sources of -c FILE, else stdin (not a terminal). Settings come from the\n"
		"[check] section of -c FILE, overridden by the flags.\n"
		"\n"
		"  -c, --config FILE      read settings (and sources) from FILE\n"
		"      --judge URL        check against URL (repeatable; replaces the config's)\n"
		"      --expect TEXT      text a judge's answer must contain\n"
		"      --concurrency N    checks at once (1..1000000)\n"
		"      --timeout MS       whole-check timeout (100..600000)\n"
		"      --connect-timeout MS  connect timeout (50..600000)\n"
		"      --retries N        retries of a timeout or reset (0..10)\n"
		"      --protocol P       protocol of lines without a scheme: http, https,\n"
		"                         socks4, socks4a, socks5, socks5h (default http)\n"
		"      --ca-file PEM      CA bundle for https judges and lists\n"
		"      --no-probe         do not probe the judges directly first (for judges\n"
		"                         only the proxies reach)\n"
		"      --json             one JSON object a line: uri, protocol, latency_ms,\n"
		"                         anonymity, exit_ip, alive, result, detail\n"
		"      --all              with --json, the failed proxies too\n"
		"  -h, --help             this text\n"
		"\n"
		"Exit status: 0 when the run ended (whatever was alive), 1 when it could not\n"
		"check (no judge answers, or no list could be read and nothing was checked),\n"
		"2 for a usage or config error. The manual: man 8 proxyfs (CHECK).\n");
}

static int parse_num(const char *opt, const char *v, int lo, int hi, int *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi) {
		fprintf(stderr, "proxyfs check: --%s: '%s' is not a number in %d..%d\n", opt, v,
			lo, hi);
		return -EINVAL;
	}
	*out = (int)n;
	return 0;
}

static int set_str(char **field, const char *v)
{
	char *p = strdup(v);

	if (!p)
		return -ENOMEM;
	free(*field);
	*field = p;
	return 0;
}

/* What is known of why a check failed beyond its class: the errno behind
 * it, or the status the judge's answer had; "" when nothing more. */
static void result_detail(const struct engine_result *r, char *buf, size_t size)
{
	buf[0] = '\0';
	if (r->alive)
		return;
	if (r->http_status)
		snprintf(buf, size, "HTTP %u", (unsigned)r->http_status);
	else if (r->err)
		snprintf(buf, size, "%s", strerror(r->err));
}

static void on_result(void *arg, const struct engine_result *r)
{
	struct check_run *run = arg;
	char detail[128];

	if (!r->alive && !run->all)
		return;
	if (!run->json) {
		fputs(r->uri, stdout);
		fputc('\n', stdout);
		return;
	}
	result_detail(r, detail, sizeof(detail));
	sbuf_reset(&run->line);
	sbuf_adds(&run->line, "{\"uri\":");
	sbuf_add_json_str(&run->line, r->uri);
	sbuf_printf(&run->line, ",\"protocol\":\"%s\",\"alive\":%s,\"result\":\"%s\",\"detail\":",
		    proxy_proto_name(r->proto), r->alive ? "true" : "false", r->result);
	if (detail[0])
		sbuf_add_json_str(&run->line, detail);
	else
		sbuf_adds(&run->line, "null");
	if (r->alive) {
		sbuf_printf(&run->line, ",\"latency_ms\":%u,\"anonymity\":\"%s\",\"exit_ip\":",
			    r->latency_ms, snap_anon_name(r->anonymity));
		if (r->exit_ip[0])
			sbuf_add_json_str(&run->line, r->exit_ip);
		else
			sbuf_adds(&run->line, "null");
	}
	sbuf_adds(&run->line, "}\n");
	fputs(sbuf_cstr(&run->line), stdout);
}

/* One summary line per list: what it held, its first invalid lines, or
 * why it could not be read. */
static void on_source(void *arg, const struct engine_source *s)
{
	struct check_run *run = arg;
	struct sbuf *b = &run->lists;

	sbuf_printf(b, "proxyfs check: %s: ", strcmp(s->url, "/dev/stdin") ? s->url : "stdin");
	if (s->error[0]) {
		run->lists_failed++;
		sbuf_printf(b, "not read: %s\n", s->error);
		return;
	}
	sbuf_printf(b, "%u %s, %u invalid %s", s->proxies, s->proxies == 1 ? "proxy" : "proxies",
		    s->invalid, s->invalid == 1 ? "line" : "lines");
	for (int i = 0; i < s->nsample && i < SUMMARY_SAMPLES; i++) {
		sbuf_adds(b, i ? ", " : " (first: ");
		sbuf_add_json_str(b, s->sample[i]);
	}
	if (s->nsample)
		sbuf_adds(b, s->invalid > (uint32_t)s->nsample ? ", ...)" : ")");
	sbuf_addc(b, '\n');
}

/* Seconds left: the rate's estimate for what has not started, but never
 * less than the checks in flight may still take (the last ones of a run
 * are often those that time out, which the rate knows nothing of). ETA is
 * rounded up, so that "0s" is only shown at the very end. */
static double eta_s(const struct engine_progress *p, double rate)
{
	double eta = rate > 0 ? p->waiting / rate : 0;

	if (p->checked < p->total && p->tail_s > eta)
		eta = p->tail_s;
	return eta;
}

static void on_progress(void *arg, const struct engine_progress *p)
{
	struct check_run *run = arg;
	double rate = p->elapsed_s > 0 ? p->checked / p->elapsed_s : 0;
	double eta = eta_s(p, rate);

	if (run->tty) {
		int width = 30, done = p->total ? (int)((double)p->checked * width / p->total) : 0;

		fprintf(stderr, "\r[%.*s%*s] %u/%u alive %u  %.0f/s  ETA %.0fs   ", done,
			"##############################", width - done, "", p->checked, p->total,
			p->alive, rate, ceil(eta));
	} else {
		fprintf(stderr,
			"proxyfs check: %u/%u checked, %u alive, %.0f/s, in flight %u, ETA %.0fs\n",
			p->checked, p->total, p->alive, rate, p->in_flight, ceil(eta));
	}
	fflush(stderr);
}

/* A rate is only given over a second or more: "3 checks in 0.001 s" is
 * not 3000 checks/s. */
static void summary(const struct engine_progress *p, struct check_run *run)
{
	char rate[48] = "";

	if (run->tty)
		fputc('\n', stderr);
	if (p->elapsed_s >= RATE_MIN_S)
		snprintf(rate, sizeof(rate), " (%.0f checks/s)", p->checked / p->elapsed_s);
	fprintf(stderr,
		"proxyfs check: %u checked, %u alive, %u dead in %s%.*f s%s; "
		"in flight max %u; retries %llu; local requeues %llu\n",
		p->checked, p->alive, p->checked - p->alive,
		p->elapsed_s < 0.001 ? "<" : "", /* the clock counts whole ms */
		p->elapsed_s < 10 ? 3 : 1, p->elapsed_s < 0.001 ? 0.001 : p->elapsed_s, rate,
		p->in_flight_max, (unsigned long long)p->retries,
		(unsigned long long)p->local_requeues);
	fprintf(stderr, "proxyfs check: results:");
	for (int i = 0; i < CHK_RESULT_COUNT; i++)
		fprintf(stderr, " %s %llu", chk_result_name((enum chk_result)i),
			(unsigned long long)p->by_result[i]);
	fputc('\n', stderr);
	fputs(sbuf_cstr(&run->lists), stderr);
	if (p->limit_max < p->limit_conf)
		fprintf(stderr,
			"proxyfs check: concurrency %u clamped to %u by the open-file limit\n",
			p->limit_conf, p->limit_max);
}

/* Applies the flags on top of the config; 0, or -EINVAL after a message. */
static int parse_check_args(int argc, char **argv, struct cfg *c, struct check_run *run,
			    int *first_file)
{
	enum {
		O_JUDGE = 256,
		O_EXPECT,
		O_CONC,
		O_TIMEOUT,
		O_CTIMEOUT,
		O_RETRIES,
		O_PROTO,
		O_JSON,
		O_CA,
		O_NOPROBE,
		O_ALL,
	};
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "judge", required_argument, NULL, O_JUDGE },
		{ "expect", required_argument, NULL, O_EXPECT },
		{ "concurrency", required_argument, NULL, O_CONC },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "connect-timeout", required_argument, NULL, O_CTIMEOUT },
		{ "retries", required_argument, NULL, O_RETRIES },
		{ "protocol", required_argument, NULL, O_PROTO },
		{ "json", no_argument, NULL, O_JSON },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "no-probe", no_argument, NULL, O_NOPROBE },
		{ "all", no_argument, NULL, O_ALL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char err[512];
	bool judge_given = false;
	int opt, rc = 0;

	/* -c first, so the flags override the file whatever their order. */
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		if (opt == 'c' && cfg_load(optarg, c, err, sizeof(err)) < 0) {
			fprintf(stderr, "proxyfs check: %s\n", err);
			return -EINVAL;
		}
		if (opt == 'h') {
			check_usage(stdout);
			return 1;
		}
		if (opt == '?') {
			check_usage(stderr);
			return -EINVAL;
		}
	}
	optind = 1;
	while (rc == 0 && (opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (opt) {
		case O_JUDGE:
			/* The first --judge replaces the config's judges. */
			if (!judge_given)
				c->judges_from_file = false;
			judge_given = true;
			rc = cfg_add_judge(c, optarg);
			break;
		case O_EXPECT:
			rc = set_str(&c->expect, optarg);
			break;
		case O_CONC:
			rc = parse_num("concurrency", optarg, 1, 1000000, &c->concurrency);
			break;
		case O_TIMEOUT:
			rc = parse_num("timeout", optarg, 100, 600000, &c->timeout_ms);
			if (rc == 0 && c->connect_timeout_ms > c->timeout_ms)
				c->connect_timeout_ms = c->timeout_ms;
			break;
		case O_CTIMEOUT:
			rc = parse_num("connect-timeout", optarg, 50, 600000, &c->connect_timeout_ms);
			break;
		case O_RETRIES:
			rc = parse_num("retries", optarg, 0, 10, &c->retries);
			break;
		case O_PROTO: {
			int p = proxy_proto_from_name(optarg);

			if (p < 0) {
				fprintf(stderr, "proxyfs check: --protocol: unknown '%s'\n", optarg);
				rc = -EINVAL;
			}
			run->proto_default = p;
			run->remote_dns = proxy_name_remote_dns(optarg);
			break;
		}
		case O_JSON:
			run->json = true;
			break;
		case O_CA:
			rc = set_str(&c->ca_file, optarg);
			break;
		case O_NOPROBE:
			c->probe_judges = 0;
			break;
		case O_ALL:
			run->all = true;
			break;
		}
	}
	if (rc == 0 && run->all && !run->json) {
		fprintf(stderr, "proxyfs check: --all needs --json\n");
		rc = -EINVAL;
	}
	if (rc == 0 && cfg_validate(c, err, sizeof(err)) < 0) {
		fprintf(stderr, "proxyfs check: %s\n", err);
		rc = -EINVAL;
	}
	*first_file = optind;
	return rc;
}

/* Messages name a source by its URL or file as written, not by the name
 * a config gave it. */
static int name_by_url(struct cfg *c)
{
	for (size_t i = 0; i < c->nsources; i++) {
		if (set_str(&c->sources[i].name, c->sources[i].url) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* The lists to read become the config's sources: those named on the
 * command line, else the config's own, else stdin. Stdin that is a
 * terminal is read only when asked for by "-": with nothing typed in, a
 * run would seem to hang. 0, or -errno after a message. */
static int add_lists(struct cfg *c, int argc, char **argv, int first, enum proxy_proto proto,
		     bool remote_dns)
{
	if (first >= argc && c->nsources)
		return name_by_url(c);
	if (first >= argc && isatty(STDIN_FILENO)) {
		fprintf(stderr, "proxyfs check: no list given and stdin is a terminal\n");
		check_usage(stderr);
		return -EINVAL;
	}
	for (size_t i = 0; i < c->nsources; i++) {
		free(c->sources[i].name);
		free(c->sources[i].url);
		free(c->sources[i].path);
	}
	free(c->sources);
	c->sources = NULL;
	c->nsources = 0;
	if (first >= argc)
		return cfg_add_list(c, "stdin", "/dev/stdin", proto, remote_dns);
	for (int i = first; i < argc; i++) {
		const char *path = strcmp(argv[i], "-") == 0 ? "/dev/stdin" : argv[i];
		bool remote = !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);
		int err;

		if (!remote && access(path, R_OK) < 0) {
			err = errno;
			fprintf(stderr, "proxyfs check: %s: %s\n", argv[i], strerror(err));
			return -err;
		}
		if (cfg_add_list(c, path, path, proto, remote_dns) < 0)
			return -ENOMEM;
		if (path != argv[i] && isatty(STDIN_FILENO))
			fprintf(stderr, "proxyfs check: reading a list from the terminal: one proxy "
					"a line, Ctrl-D to end\n");
	}
	return 0;
}

int check_main(int argc, char **argv)
{
	struct check_run run = { .proto_default = PROXY_HTTP };
	struct engine_once_ops ops = {
		.result = on_result, .progress = on_progress, .source = on_source,
	};
	struct engine_progress fin;
	struct engine *e = NULL;
	struct cfg c;
	int first, rc, status = EXIT_USAGE;

	cfg_init(&c);
	log_set_level(LOG_LVL_WARN);
	sbuf_init(&run.line);
	sbuf_init(&run.lists);
	rc = parse_check_args(argc, argv, &c, &run, &first);
	if (rc != 0) {
		status = rc > 0 ? 0 : EXIT_USAGE;
		goto out;
	}
	if (add_lists(&c, argc, argv, first, (enum proxy_proto)run.proto_default,
		      run.remote_dns) < 0)
		goto out;
	run.tty = isatty(STDERR_FILENO);
	ops.progress_ms = run.tty ? 200 : 5000;
	e = engine_new(&c, NULL);
	if (!e)
		goto out;
	rc = engine_run_once(e, &ops, &run, &fin);
	fflush(stdout);
	if (rc < 0) {
		if (rc != -EHOSTUNREACH) /* no judge answers: the engine has said why */
			fprintf(stderr, "proxyfs check: %s\n", strerror(-rc));
		status = 1;
		goto out;
	}
	summary(&fin, &run);
	status = 0;
	if (fin.checked == 0 && run.lists_failed) {
		fprintf(stderr, "proxyfs check: nothing was checked: %u of %zu lists not read\n",
			run.lists_failed, c.nsources);
		status = 1;
	}
out:
	engine_free(e);
	fetch_global_cleanup();
	sbuf_free(&run.line);
	sbuf_free(&run.lists);
	cfg_free(&c);
	return status;
}
