/* cli_check: `proxyfs check`, the one-shot checker.
 *
 * Runs the same engine as the mount once over the lists given (stdin when
 * none): live proxies go to stdout as they are found (URI lines, or JSON
 * lines), progress and a summary go to stderr. It mounts nothing and writes
 * no database.
 */
#include "cli_check.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
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

#define EXIT_USAGE 2

struct check_run {
	bool json;
	bool tty;          /* stderr is a terminal: draw a bar */
	int proto_default; /* enum proxy_proto of lines without a scheme */
	struct sbuf line;  /* reused for JSON output */
};

static void check_usage(FILE *out)
{
	fprintf(out,
		"usage: proxyfs check [-c FILE] [--judge URL] [--expect TEXT] [--concurrency N]\n"
		"                     [--timeout MS] [--connect-timeout MS] [--retries N]\n"
		"                     [--protocol P] [--ca-file PEM] [--no-probe] [--json]\n"
		"                     [FILE|URL ...]\n"
		"\n"
		"Checks every proxy of the lists once (files, http(s) URLs, or stdin when none\n"
		"or -) and prints the live ones on stdout as they are found. Settings come from\n"
		"the [check] section of -c FILE, overridden by the flags. The judges are probed\n"
		"directly first; --no-probe skips that (for judges only the proxies reach).\n"
		"\n"
		"  -c, --config FILE   the settings file\n"
		"  -h, --help          this text\n"
		"\n"
		"The manual: man 8 proxyfs (CHECK).\n");
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

static void on_result(void *arg, const struct engine_result *r)
{
	struct check_run *run = arg;

	if (!r->alive)
		return;
	if (!run->json) {
		fputs(r->uri, stdout);
		fputc('\n', stdout);
		return;
	}
	sbuf_reset(&run->line);
	sbuf_adds(&run->line, "{\"uri\":");
	sbuf_add_json_str(&run->line, r->uri);
	sbuf_printf(&run->line, ",\"protocol\":\"%s\",\"latency_ms\":%u}\n",
		    proxy_proto_name(r->proto), r->latency_ms);
	fputs(sbuf_cstr(&run->line), stdout);
}

static void on_progress(void *arg, const struct engine_progress *p)
{
	struct check_run *run = arg;
	double rate = p->elapsed_s > 0 ? p->checked / p->elapsed_s : 0;
	double eta = rate > 0 ? (p->total - p->checked) / rate : 0;

	if (run->tty) {
		int width = 30, done = p->total ? (int)((double)p->checked * width / p->total) : 0;

		fprintf(stderr, "\r[%.*s%*s] %u/%u alive %u  %.0f/s  ETA %.0fs   ", done,
			"##############################", width - done, "", p->checked, p->total,
			p->alive, rate, eta);
	} else {
		fprintf(stderr,
			"proxyfs check: %u/%u checked, %u alive, %.0f/s, in flight %u, ETA %.0fs\n",
			p->checked, p->total, p->alive, rate, p->in_flight, eta);
	}
	fflush(stderr);
}

static void summary(const struct engine_progress *p, bool tty)
{
	double rate = p->elapsed_s > 0 ? p->checked / p->elapsed_s : 0;

	if (tty)
		fputc('\n', stderr);
	fprintf(stderr,
		"proxyfs check: %u checked, %u alive, %u dead in %.2f s (%.0f checks/s); "
		"in flight max %u; retries %llu; local requeues %llu\n",
		p->checked, p->alive, p->checked - p->alive, p->elapsed_s, rate, p->in_flight_max,
		(unsigned long long)p->retries, (unsigned long long)p->local_requeues);
	fprintf(stderr, "proxyfs check: results:");
	for (int i = 0; i < CHK_RESULT_COUNT; i++)
		fprintf(stderr, " %s %llu", chk_result_name((enum chk_result)i),
			(unsigned long long)p->by_result[i]);
	fputc('\n', stderr);
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
		}
	}
	if (rc == 0 && cfg_validate(c, err, sizeof(err)) < 0) {
		fprintf(stderr, "proxyfs check: %s\n", err);
		rc = -EINVAL;
	}
	*first_file = optind;
	return rc;
}

/* The lists to read become the config's sources. */
static int add_lists(struct cfg *c, int argc, char **argv, int first, enum proxy_proto proto)
{
	char name[32];

	for (size_t i = 0; i < c->nsources; i++) {
		free(c->sources[i].name);
		free(c->sources[i].url);
		free(c->sources[i].path);
	}
	free(c->sources);
	c->sources = NULL;
	c->nsources = 0;
	if (first >= argc)
		return cfg_add_list(c, "stdin", "/dev/stdin", proto);
	for (int i = first; i < argc; i++) {
		const char *path = strcmp(argv[i], "-") == 0 ? "/dev/stdin" : argv[i];
		bool remote = !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);

		if (!remote && access(path, R_OK) < 0) {
			fprintf(stderr, "proxyfs check: %s: %s\n", argv[i], strerror(errno));
			return -errno;
		}
		snprintf(name, sizeof(name), "list%d", i - first + 1);
		if (cfg_add_list(c, name, path, proto) < 0)
			return -ENOMEM;
	}
	return 0;
}

int check_main(int argc, char **argv)
{
	struct check_run run = { .proto_default = PROXY_HTTP };
	struct engine_once_ops ops = { .result = on_result, .progress = on_progress };
	struct engine_progress fin;
	struct engine *e = NULL;
	struct cfg c;
	int first, rc, status = EXIT_USAGE;

	cfg_init(&c);
	log_set_level(LOG_LVL_WARN);
	sbuf_init(&run.line);
	rc = parse_check_args(argc, argv, &c, &run, &first);
	if (rc != 0) {
		status = rc > 0 ? 0 : EXIT_USAGE;
		goto out;
	}
	if (add_lists(&c, argc, argv, first, (enum proxy_proto)run.proto_default) < 0)
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
	summary(&fin, run.tty);
	status = 0;
out:
	engine_free(e);
	fetch_global_cleanup();
	sbuf_free(&run.line);
	cfg_free(&c);
	return status;
}
