/* test_config: reading INI files into struct cfg, and checking it.
 *
 * Each case writes a temporary file under /tmp, loads it and looks at the
 * result or at the one-line message a user would see.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "pick.h"
#include "snapshot.h"
#include "testutil.h"

/* Writes text to a new file in dir; path receives its name. */
static void write_file(const char *dir, const char *text, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/proxyfs-cfg-XXXXXX", dir);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK_INT(write(fd, text, strlen(text)), strlen(text));
	close(fd);
}

/* Loads text into c; err receives the message, path the file's name. */
static int load_text(const char *text, struct cfg *c, char *err, size_t errlen, char *path)
{
	int rc;

	write_file("/tmp", text, path, PATH_MAX);
	rc = cfg_load(path, c, err, errlen);
	unlink(path);
	return rc;
}

static void check_contains(const char *s, const char *part)
{
	CHECK(strstr(s, part) != NULL);
	if (!strstr(s, part))
		fprintf(stderr, "  \"%s\" lacks \"%s\"\n", s, part);
}

static void test_defaults(void)
{
	struct cfg c;
	char err[512] = "", path[PATH_MAX];

	cfg_init(&c);
	CHECK(c.file == NULL);
	CHECK_STR(c.db, "/var/lib/proxyfs/proxyfs.db");
	CHECK_INT(c.log_level, LOG_LVL_INFO);
	CHECK_STR(c.judge, "http://azenv.net/");
	CHECK_STR(c.expect, "REMOTE_ADDR");
	CHECK_INT(c.timeout_ms, 5000);
	CHECK_INT(c.connect_timeout_ms, 2000);
	CHECK_INT(c.concurrency, 1000);
	CHECK_INT(c.interval_s, 300);
	CHECK_INT(c.publish_ms, 500);
	CHECK_INT(c.retries, 1);
	CHECK_INT(c.nsources, 0);
	CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);

	/* an empty file (comments only) gives the defaults too */
	CHECK_INT(load_text("; nothing\n# here\n\n", &c, err, sizeof(err), path), 0);
	CHECK_STR(c.file, path);
	CHECK_STR(c.judge, "http://azenv.net/");
	CHECK_INT(c.timeout_ms, 5000);
	CHECK_INT(c.nsources, 0);
	cfg_free(&c);
	CHECK(c.file == NULL && c.db == NULL && c.sources == NULL);
	cfg_free(&c);
}

static void test_every_key(void)
{
	static const char text[] = "\xEF\xBB\xBF; a full file\n"
				   "[proxyfs]\n"
				   "db = /srv/p.db\n"
				   "log_level = debug\n"
				   "\n"
				   "[source:a.list_1-x]\n"
				   "url = /srv/a.txt\n"
				   "protocol = socks5h\n"
				   "\n"
				   "[source:b]\r\n"
				   "  url = https://lists.example/b.txt ; inline comment\r\n"
				   "  protocol = HTTPS\r\n"
				   "  interval_s = 60\r\n"
				   "[source:c]\n"
				   "url: /srv/c.txt\n"
				   "protocol = socks4a\n"
				   "[check]\n"
				   "judge = https://judge.example:8443/j?x=1\n"
				   "expect =\n"
				   "require_echo = yes\n"
				   "timeout_ms = 600000\n"
				   "connect_timeout_ms = 50\n"
				   "concurrency = 1000000\n"
				   "interval_s = 31536000\n"
				   "publish_ms = 10\n"
				   "retries = 0\n";
	struct cfg c;
	char err[512] = "", path[PATH_MAX];

	cfg_init(&c);
	CHECK_INT(load_text(text, &c, err, sizeof(err), path), 0);
	CHECK_STR(err, "");
	CHECK_STR(c.db, "/srv/p.db");
	CHECK_INT(c.log_level, LOG_LVL_DEBUG);
	CHECK_STR(c.judge, "https://judge.example:8443/j?x=1");
	CHECK_STR(c.expect, "");
	CHECK_INT(c.require_echo, 1);
	CHECK_INT(c.timeout_ms, 600000);
	CHECK_INT(c.connect_timeout_ms, 50);
	CHECK_INT(c.concurrency, 1000000);
	CHECK_INT(c.interval_s, 31536000);
	CHECK_INT(c.publish_ms, 10);
	CHECK_INT(c.retries, 0);
	CHECK_INT(c.nsources, 3);
	if (c.nsources == 3) {
		CHECK_STR(c.sources[0].name, "a.list_1-x");
		CHECK_STR(c.sources[0].url, "/srv/a.txt");
		CHECK_STR(c.sources[0].path, "/srv/a.txt");
		CHECK_INT(c.sources[0].proto, PROXY_SOCKS5);
		CHECK(c.sources[0].remote_dns); /* socks5h is kept as written */
		CHECK_INT(c.sources[0].interval_s, 31536000); /* [check] came later */
		CHECK_STR(c.sources[1].name, "b");
		CHECK_STR(c.sources[1].url, "https://lists.example/b.txt");
		CHECK(c.sources[1].path == NULL);
		CHECK_INT(c.sources[1].proto, PROXY_HTTPS);
		CHECK(!c.sources[1].remote_dns);
		CHECK_INT(c.sources[1].interval_s, 60);
		CHECK_STR(c.sources[2].path, "/srv/c.txt");
		CHECK_INT(c.sources[2].proto, PROXY_SOCKS4);
		CHECK(c.sources[2].remote_dns); /* socks4a */
	}
	CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);
	cfg_free(&c);

	cfg_init(&c);
	CHECK_INT(load_text("[proxyfs]\nlog_level = warning\n[source:x]\nurl = /a\n", &c, err,
			    sizeof(err), path),
		  0);
	CHECK_INT(c.log_level, LOG_LVL_WARN);
	CHECK_INT(c.sources[0].proto, PROXY_HTTP);
	CHECK_INT(c.sources[0].interval_s, 300);
	cfg_free(&c);
}

/* A loaded config that must survive a failed load untouched. */
static void load_witness(struct cfg *c)
{
	char err[512], path[PATH_MAX];

	cfg_init(c);
	CHECK_INT(load_text("[check]\ntimeout_ms = 7777\n[source:w]\nurl = /w\n", c, err,
			    sizeof(err), path),
		  0);
}

static void check_witness(const struct cfg *c, const struct cfg *before)
{
	CHECK(memcmp(c, before, sizeof(*c)) == 0);
	CHECK_INT(c->timeout_ms, 7777);
	CHECK_INT(c->nsources, 1);
	CHECK_STR(c->sources[0].name, "w");
	CHECK_STR(c->judge, "http://azenv.net/");
}

/* Loads "[section]\nkey = value" after a comment line, so the key is on
 * line 3, and checks the message and that nothing changed. */
static void expect_bad_value(const char *section, const char *key, const char *value,
			     const char *why)
{
	struct cfg c, before;
	char text[1024], err[512] = "", path[PATH_MAX], where[PATH_MAX + 16];
	int rc;

	load_witness(&c);
	before = c;
	snprintf(text, sizeof(text), "; test\n[%s]\n%s = %s\n", section, key, value);
	rc = load_text(text, &c, err, sizeof(err), path);
	CHECK_INT(rc, -EINVAL);
	snprintf(where, sizeof(where), "%s:3: ", path);
	check_contains(err, where);
	check_contains(err, key);
	check_contains(err, why);
	check_witness(&c, &before);
	cfg_free(&c);
}

/* An empty expect is refused wherever require_echo is set (or not) in the
 * file, and the message names the expect line; with require_echo it loads. */
static void test_empty_expect(void)
{
	static const char no[] = "[check]\nexpect =\n\nrequire_echo = no\n";
	static const char yes[] = "[check]\nrequire_echo = yes\nexpect =\n";
	char err[512] = "", path[PATH_MAX], where[PATH_MAX + 64];
	struct cfg c;

	cfg_init(&c);
	CHECK_INT(load_text(no, &c, err, sizeof(err), path), -EINVAL);
	snprintf(where, sizeof(where), "%s:2: [check] expect: empty", path);
	check_contains(err, where);
	CHECK_STR(c.expect, "REMOTE_ADDR");
	err[0] = '\0';
	CHECK_INT(load_text(yes, &c, err, sizeof(err), path), 0);
	CHECK_STR(err, "");
	CHECK_STR(c.expect, "");
	CHECK_INT(c.require_echo, 1);
	CHECK_INT(cfg_validate(&c, err, sizeof(err)), 0);
	cfg_free(&c);
}

static void test_bad_values(void)
{
	expect_bad_value("proxyfs", "db", "", "empty");
	expect_bad_value("proxyfs", "log_level", "loud", "'loud' is not one of");
	expect_bad_value("proxyfs", "log_level", "", "not one of");
	expect_bad_value("check", "expect", "", "[check] expect: empty: any 200 page");
	expect_bad_value("check", "require_echo", "maybe", "not yes or no");
	expect_bad_value("check", "judge", "ftp://x/", "http:// or https://");
	expect_bad_value("check", "judge", "azenv.net", "http:// or https://");
	expect_bad_value("check", "judge", "http://", "no host");
	expect_bad_value("check", "judge", "http://:80/", "no host");
	expect_bad_value("check", "judge", "http://[]/", "no host");
	expect_bad_value("check", "judge", "http://h:0/", "bad port");
	expect_bad_value("check", "judge", "http://h:65536/", "bad port");
	expect_bad_value("check", "judge", "http://h:8x/", "bad port");
	expect_bad_value("check", "judge", "http://h:/", "bad port");
	expect_bad_value("check", "judge", "http://h x/", "spaces");
	expect_bad_value("check", "timeout_ms", "", "not a decimal number");
	expect_bad_value("check", "timeout_ms", "5000x", "'5000x' is not a decimal number");
	expect_bad_value("check", "timeout_ms", "5.0", "not a decimal number");
	expect_bad_value("check", "timeout_ms", "0x100", "not a decimal number");
	expect_bad_value("check", "timeout_ms", "+5000", "not a decimal number");
	expect_bad_value("check", "timeout_ms", "-5000", "-5000: must be positive (100..600000)");
	expect_bad_value("check", "concurrency", "-1", "must be positive");
	expect_bad_value("check", "retries", "-1", "-1: must not be negative (0..10)");
	expect_bad_value("source:s", "interval_s", "-60", "must be positive");
	expect_bad_value("check", "timeout_ms", "-", "not a decimal number");
	expect_bad_value("check", "timeout_ms", "-5x", "not a decimal number");
	expect_bad_value("proxyfs", "group", "no-such-group-here", "no such group");
	expect_bad_value("proxyfs", "group", "", "no such group");
	expect_bad_value("proxyfs", "file_mode", "0640", "only read bits");
	expect_bad_value("proxyfs", "file_mode", "0777", "only read bits");
	expect_bad_value("proxyfs", "file_mode", "440x", "not an octal mode");
	expect_bad_value("proxyfs", "file_mode", "0448", "not an octal mode");
	expect_bad_value("proxyfs", "file_mode", "", "not an octal mode");
	expect_bad_value("proxyfs", "hide_credentials", "sometimes", "not yes or no");
	expect_bad_value("proxyfs", "session_ttl_s", "0", "out of range 1..604800");
	expect_bad_value("proxyfs", "session_ttl_s", "604801", "out of range 1..604800");
	expect_bad_value("proxyfs", "sessions_max", "0", "out of range 1..10000000");
	expect_bad_value("proxyfs", "sessions_max", "10000001", "out of range");
	expect_bad_value("proxyfs", "sessions_max", "-5", "must be positive");
	expect_bad_value("proxyfs", "log_file", "", "empty path");
	expect_bad_value("check", "timeout_ms", "1e4", "not a decimal number");
	expect_bad_value("check", "timeout_ms", "99", "out of range 100..600000");
	expect_bad_value("check", "timeout_ms", "600001", "out of range");
	expect_bad_value("check", "timeout_ms", "99999999999999999999999", "out of range");
	expect_bad_value("check", "connect_timeout_ms", "49", "out of range 50..600000");
	expect_bad_value("check", "connect_timeout_ms", "600001", "out of range");
	expect_bad_value("check", "concurrency", "0", "out of range 1..1000000");
	expect_bad_value("check", "concurrency", "1000001", "out of range");
	expect_bad_value("check", "interval_s", "0", "out of range 1..31536000");
	expect_bad_value("check", "interval_s", "31536001", "out of range");
	expect_bad_value("check", "publish_ms", "9", "out of range 10..600000");
	expect_bad_value("check", "publish_ms", "600001", "out of range");
	expect_bad_value("check", "retries", "11", "out of range 0..10");
	expect_bad_value("check", "retries", "many", "not a decimal number");
	expect_bad_value("source:s", "url", "", "empty");
	expect_bad_value("source:s", "url", "file://", "without a path");
	expect_bad_value("source:s", "url", "ftp://h/x", "unsupported URL scheme");
	expect_bad_value("source:s", "url", "http:///x", "no host");
	expect_bad_value("source:s", "protocol", "socks6", "'socks6' is not one of");
	expect_bad_value("source:s", "protocol", "", "not one of");
	expect_bad_value("source:s", "interval_s", "0", "out of range 1..31536000");
	expect_bad_value("source:s", "interval_s", "31536001", "out of range");
	expect_bad_value("source:s", "interval_s", "1m", "not a decimal number");
	expect_bad_value("check", "colour", "blue", "[check] colour: unknown key");
	expect_bad_value("proxyfs", "judge", "http://a/", "[proxyfs] judge: unknown key");
	expect_bad_value("source:s", "timeout_ms", "100", "[source:s] timeout_ms: unknown key");
}

/* Loads text and checks the error code and message parts. */
static void expect_error(const char *text, int code, const char *part1, const char *part2)
{
	struct cfg c, before;
	char err[512] = "", path[PATH_MAX];
	int rc;

	load_witness(&c);
	before = c;
	rc = load_text(text, &c, err, sizeof(err), path);
	CHECK_INT(rc, code);
	check_contains(err, path);
	check_contains(err, part1);
	check_contains(err, part2);
	check_witness(&c, &before);
	cfg_free(&c);
}

/* Keys that bound each other are refused with the line of the one given
 * (the first of the pair when both are). */
static void test_cross_field_lines(void)
{
	expect_error("[check]\nretry_max_s = 100\nretry_min_s = 200\n", -EINVAL,
		     ":3: [check] retry_min_s: 200 is more than retry_max_s (100)", "");
	expect_error("[check]\nretry_min_s = 200\n\nretry_max_s = 100\n", -EINVAL,
		     ":2: [check] retry_min_s: 200", "");
	expect_error("; c\n[check]\nretry_max_s = 30\n", -EINVAL,
		     ":3: [check] retry_max_s: 30 is less than retry_min_s (60)", "");
	expect_error("[check]\ntimeout_ms = 1000\n", -EINVAL,
		     ":2: [check] timeout_ms: 1000 is less than connect_timeout_ms (2000)", "");
	expect_error("[check]\ntimeout_ms = 3000\nconnect_timeout_ms = 4000\n", -EINVAL,
		     ":3: [check] connect_timeout_ms: 4000 is more than timeout_ms (3000)", "");
}

/* group, file_mode, hide_credentials and log_file, and their defaults. */
static void test_access_keys(void)
{
	struct cfg c;
	char err[512] = "", path[PATH_MAX];

	cfg_init(&c);
	CHECK_INT(cfg_file_mode(&c), 0444);
	CHECK(c.group == NULL);
	CHECK_INT(c.hide_credentials, 0);
	CHECK_INT(load_text("[proxyfs]\ngroup = root\nhide_credentials = yes\n"
			    "log_file = /var/log/p.log\n",
			    &c, err, sizeof(err), path),
		  0);
	CHECK_STR(err, "");
	CHECK_STR(c.group, "root");
	CHECK_INT(c.gid, 0);
	CHECK_INT(cfg_file_mode(&c), 0440);
	CHECK_INT(c.hide_credentials, 1);
	CHECK_STR(c.log_file, "/var/log/p.log");
	cfg_free(&c);

	cfg_init(&c);
	CHECK_INT(
	    load_text("[proxyfs]\ngroup = 4321\nfile_mode = 0400\n", &c, err, sizeof(err), path),
	    0);
	CHECK_INT(c.gid, 4321);
	CHECK_INT(cfg_file_mode(&c), 0400);
	cfg_free(&c);
}

/* The session table's keys and their defaults. */
static void test_session_keys(void)
{
	struct cfg c;
	char err[512] = "", path[PATH_MAX];

	cfg_init(&c);
	CHECK_INT(c.session_ttl_s, 600);
	CHECK_INT(c.sessions_max, 100000);
	CHECK_INT(load_text("[proxyfs]\nsession_ttl_s = 604800\nsessions_max = 1\n", &c, err,
			    sizeof(err), path),
		  0);
	CHECK_STR(err, "");
	CHECK_INT(c.session_ttl_s, 604800);
	CHECK_INT(c.sessions_max, 1);
	cfg_free(&c);
}

static void test_http_keys(void)
{
	struct cfg c, d;
	char err[512] = "", path[PATH_MAX], tok[PATH_MAX], text[PATH_MAX + 512];
	const char *why;
	struct sockaddr_storage ss;
	unsigned int len;

	cfg_init(&c);
	CHECK_INT(c.http.nlisten, 0);
	CHECK_INT(c.http.rate, 50);
	CHECK_INT(c.http.burst, 100);
	CHECK_INT(c.http.max_connections, 1024);
	CHECK_INT(c.http.idle_timeout_s, 60);
	CHECK_INT(c.http.request_timeout_s, 10);
	CHECK_INT(c.http.threads, 1);
	write_file("/tmp", "s3cret\nignored\n", tok, sizeof(tok));
	snprintf(text, sizeof(text),
		 "[http]\nlisten = 127.0.0.1:8080\nlisten = [::1]:8081\ntoken_file = %s\n"
		 "private = yes\nrate = 7/s\nburst = 9\nmax_connections = 5\n"
		 "idle_timeout_s = 3\nrequest_timeout_s = 2\nthreads = 4\n",
		 tok);
	CHECK_INT(load_text(text, &c, err, sizeof(err), path), 0);
	unlink(tok);
	CHECK_INT(c.http.nlisten, 2);
	CHECK_STR(c.http.listen[1], "[::1]:8081");
	CHECK_STR(c.http.token, "s3cret");
	CHECK(c.http.private_ && c.http.rate == 7 && c.http.burst == 9);
	CHECK(c.http.max_connections == 5 && c.http.threads == 4);
	CHECK(c.http.idle_timeout_s == 3 && c.http.request_timeout_s == 2);
	/* --http adds a listen the file's comparison leaves out. */
	cfg_init(&d);
	CHECK_INT(load_text("[http]\nlisten = 127.0.0.1:8080\nlisten = [::1]:8081\n", &d, err,
			    sizeof(err), path),
		  0);
	CHECK(!cfg_http_same(&c, &d));
	c.http.private_ = 0;
	c.http.rate = 50;
	CHECK_INT(cfg_add_http_listen(&d, "nope", err, sizeof(err)), -EINVAL);
	check_contains(err, "--http");
	CHECK_INT(cfg_add_http_listen(&d, "127.0.0.2:1", err, sizeof(err)), 0);
	CHECK_INT(d.http.nlisten_cli, 1);
	cfg_free(&c);
	cfg_init(&c);
	CHECK_INT(load_text("[http]\nlisten = 127.0.0.1:8080\nlisten = [::1]:8081\n", &c, err,
			    sizeof(err), path),
		  0);
	CHECK(cfg_http_same(&c, &d));
	cfg_free(&c);
	cfg_free(&d);
	CHECK_INT(cfg_parse_listen("127.0.0.1:0", &ss, &len, &why), -EINVAL);
	CHECK_INT(cfg_parse_listen("::1:80", &ss, &len, &why), -EINVAL);
	CHECK_INT(cfg_parse_listen("[127.0.0.1]:80", &ss, &len, &why), -EINVAL);
	CHECK_INT(cfg_parse_listen("localhost:80", &ss, &len, &why), -EINVAL);
	CHECK_INT(cfg_parse_listen("[::]:80", &ss, &len, &why), 0);
	expect_bad_value("http", "listen", "127.0.0.1", "ADDR:PORT");
	expect_bad_value("http", "listen", "127.0.0.1:70000", "port");
	expect_bad_value("http", "rate", "5/m", "N/s");
	expect_bad_value("http", "rate", "-1", "negative");
	expect_bad_value("http", "threads", "0", "range");
	expect_bad_value("http", "token_file", "/nonexistent/token", "No such file");
	expect_error("[http]\ntoken = a\ntoken_file = /etc/hostname\n", -EINVAL, "token_file",
		     "not both");
	expect_error("[http]\nprivate = yes\n", -EINVAL, "private", "needs a token");
	expect_error("[http]\ntoken =\n", -EINVAL, "token", "empty");
	expect_error("[http]\n[http]\n", -EINVAL, "http", "twice");
}

/* [gateway]: every key, its defaults, the auth forms, and what a reload
 * compares. */
static void test_gateway_keys(void)
{
	struct cfg c, d;
	char err[512] = "", path[PATH_MAX], users[PATH_MAX], text[PATH_MAX + 512];
	struct pick_filter f;

	cfg_init(&c);
	CHECK_INT(c.gateway.nlisten, 0);
	CHECK_INT(c.gateway.policy, CFG_GW_RANDOM);
	CHECK_INT(c.gateway.protos | c.gateway.anons, 0);
	CHECK_INT(c.gateway.nsources, 0);
	CHECK_INT(c.gateway.retries, 2);
	CHECK_INT(c.gateway.eject_after, 3);
	CHECK_INT(c.gateway.nusers, 0);
	CHECK_INT(c.gateway.max_connections, 1024);
	CHECK_INT(c.gateway.per_client, 64);
	CHECK_INT(c.gateway.handshake_timeout_s, 10);
	CHECK_INT(c.gateway.idle_timeout_s, 300);
	write_file("/tmp", "# who may use the gateway\nalice:pw1\n\n  bob:p:w\r\n", users,
		   sizeof(users));
	snprintf(text, sizeof(text),
		 "[http]\nlisten = 127.0.0.1:8080\n[check]\nretries = 1\n"
		 "[gateway]\nlisten = 127.0.0.1:8899\nlisten = [::1]:1080\npolicy = fastest\n"
		 "protocol = socks5, http\nanonymity = elite\nsource = a,b-2\nretries = 4\n"
		 "eject_after = 5\nusers_file = %s\nmax_connections = 500\nper_client = 0\n"
		 "handshake_timeout_s = 3\nidle_timeout_s = 60\n",
		 users);
	CHECK_INT(load_text(text, &c, err, sizeof(err), path), 0);
	CHECK_INT(c.gateway.nlisten, 2);
	CHECK_STR(c.gateway.listen[1], "[::1]:1080");
	CHECK_INT(c.http.nlisten, 1);
	CHECK_INT(c.gateway.policy, CFG_GW_FASTEST);
	CHECK_INT(c.gateway.protos, (1u << PROXY_SOCKS5) | (1u << PROXY_HTTP));
	CHECK_INT(c.gateway.anons, 1u << SNAP_ANON_ELITE);
	CHECK_INT(c.gateway.nsources, 2);
	CHECK_STR(c.gateway.sources[1], "b-2");
	CHECK(c.gateway.retries == 4 && c.gateway.eject_after == 5);
	CHECK_INT(c.retries, 1); /* [check] retries untouched */
	CHECK_INT(c.gateway.nusers, 2);
	CHECK_STR(c.gateway.users[0], "alice:pw1");
	CHECK_STR(c.gateway.users[1], "bob:p:w");
	CHECK_STR(c.gateway.users_file, users);
	CHECK(c.gateway.max_connections == 500 && c.gateway.per_client == 0);
	CHECK(c.gateway.handshake_timeout_s == 3 && c.gateway.idle_timeout_s == 60);
	cfg_gateway_filter(&c.gateway, &f);
	CHECK_INT(f.protos, c.gateway.protos);
	CHECK_INT(f.anons, c.gateway.anons);
	CHECK_INT(f.nsources, 2);
	CHECK_STR(f.sources[0], "a");
	CHECK(!f.none && f.max_latency_ms == 0);

	/* A reload compares the file's [gateway]; --gateway is left out. */
	cfg_init(&d);
	CHECK_INT(load_text(text, &d, err, sizeof(err), path), 0);
	CHECK(cfg_gateway_same(&c, &d));
	CHECK_INT(cfg_add_gateway_listen(&d, "nope", err, sizeof(err)), -EINVAL);
	check_contains(err, "--gateway");
	CHECK_INT(cfg_add_gateway_listen(&d, "127.0.0.2:1", err, sizeof(err)), 0);
	CHECK_INT(d.gateway.nlisten_cli, 1);
	CHECK(cfg_gateway_same(&c, &d));
	d.gateway.eject_after = 6;
	CHECK(!cfg_gateway_same(&c, &d));
	d.gateway.eject_after = 5;
	d.gateway.protos = 0;
	CHECK(!cfg_gateway_same(&c, &d));
	cfg_free(&d);
	cfg_free(&c);
	unlink(users);

	cfg_init(&c);
	CHECK_INT(load_text("[gateway]\nauth = u:secret\npolicy = round_robin\n", &c, err,
			    sizeof(err), path),
		  0);
	CHECK_INT(c.gateway.nusers, 1);
	CHECK_STR(c.gateway.users[0], "u:secret");
	CHECK_INT(c.gateway.policy, CFG_GW_ROUND_ROBIN);
	CHECK_INT(c.gateway.nlisten, 0);
	cfg_init(&d);
	CHECK(!cfg_gateway_same(&c, &d));
	cfg_free(&d);
	cfg_free(&c);

	expect_bad_value("gateway", "listen", "127.0.0.1", "ADDR:PORT");
	expect_bad_value("gateway", "policy", "fastest_first", "random, round_robin, fastest");
	expect_bad_value("gateway", "protocol", "socks5h", "not one of http");
	expect_bad_value("gateway", "protocol", "http,,socks5", "empty item");
	expect_bad_value("gateway", "protocol", "http,", "empty item");
	expect_bad_value("gateway", "anonymity", "high", "elite, anonymous");
	expect_bad_value("gateway", "source", "a/b", "not a source name");
	expect_bad_value("gateway", "source", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16");
	expect_bad_value("gateway", "retries", "11", "range");
	expect_bad_value("gateway", "eject_after", "-1", "negative");
	expect_bad_value("gateway", "max_connections", "0", "range");
	expect_bad_value("gateway", "handshake_timeout_s", "0", "range");
	expect_bad_value("gateway", "idle_timeout_s", "x", "decimal");
	expect_bad_value("gateway", "auth", "nopassword", "not user:pass");
	expect_bad_value("gateway", "auth", ":pw", "not user:pass");
	expect_bad_value("gateway", "users_file", "/nonexistent/users", "No such file");
	expect_bad_value("gateway", "auth", "team-session-a:pw", "holds a part session");
	expect_bad_value("gateway", "auth", "proto:pw", "holds a part");
	expect_bad_value("gateway", "colour", "blue", "[gateway] colour: unknown key");
	write_file("/tmp", "c:d\n", users, sizeof(users));
	snprintf(text, sizeof(text), "[gateway]\nauth = a:b\nusers_file = %s\n", users);
	expect_error(text, -EINVAL, "users_file", "not both");
	unlink(users);
	expect_error("[gateway]\n[gateway]\n", -EINVAL, "gateway", "twice");
	expect_error("[gateway]\nretries = 1\nretries = 2\n", -EINVAL, ":3:", "twice");
	/* A users file's bad line is named by its own line number. */
	write_file("/tmp", "alice:pw\n# c\nbob\n", users, sizeof(users));
	snprintf(text, sizeof(text), "[gateway]\nusers_file = %s\n", users);
	snprintf(text + PATH_MAX, 512, "%.200s:3 is not user:pass", users);
	expect_error(text, -EINVAL, "users_file", text + PATH_MAX);
	unlink(users);
	write_file("/tmp", "# nobody\n\n", users, sizeof(users));
	snprintf(text, sizeof(text), "[gateway]\nusers_file = %s\n", users);
	expect_error(text, -EINVAL, "users_file", "no user:pass line");
	unlink(users);
}

static void test_bad_structure(void)
{
	char text[512];

	expect_error("[check]\ntimeout_ms = 100\n[checks]\n", -EINVAL, ":3: [checks]",
		     "unknown section");
	expect_error("[source]\nurl = /x\n", -EINVAL, ":1: [source]", "unknown section");
	expect_error("db = /x\n", -EINVAL, ":1: db", "outside any [section]");
	expect_error("[source:a]\nurl = /a\n[source:b]\nurl = /b\n\n[source:a]\nurl = /c\n",
		     -EINVAL, ":6: [source:a]", "given twice");
	expect_error("[check]\n[proxyfs]\n[check]\n", -EINVAL, ":3: [check]",
		     "given twice (first on line 1)");
	expect_error("[check]\nretries = 1\nretries = 2\n", -EINVAL, ":3: [check] retries",
		     "given twice");
	expect_error("[source:a]\nurl = /a\n[source:b]\nprotocol = http\n[check]\n", -EINVAL,
		     ":3: [source:b]", "no url");
	expect_error("[source:a]\nurl = /a\n[source:b]\n", -EINVAL, ":3: [source:b]", "no url");
	expect_error("[source:]\n", -EINVAL, ":1: [source:]", "source name");
	expect_error("[source:a b]\nurl = /x\n", -EINVAL, ":1: [source:a b]", "source name");
	expect_error("[source:a/b]\nurl = /x\n", -EINVAL, ":1:", "source name");
	expect_error("[check\n", -EINVAL, ":1: ", "missing ']'");
	expect_error("[check] x\n", -EINVAL, ":1: ", "text after ']'");
	expect_error("[check]\n\njust words\n", -EINVAL, ":3: ", "syntax error");

	snprintf(text, sizeof(text), "[source:%0*d]\nurl = /x\n", 65, 0);
	expect_error(text, -EINVAL, ":1: [source:", "source name must be 1..64");
	memset(text, 'x', 300);
	memcpy(text, "[check]\njudge = http://", 23);
	strcpy(text + 300, "/\n");
	expect_error(text, -EINVAL, ":2: ", "line longer than");
}

/* A NUL byte cannot come through a C string, so write it by hand. */
static void test_nul_byte(void)
{
	static const char text[] = "[check]\nretries = 1\0zz\n";
	struct cfg c;
	char err[512] = "", path[] = "/tmp/proxyfs-cfg-XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK_INT(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
	close(fd);
	cfg_init(&c);
	CHECK_INT(cfg_load(path, &c, err, sizeof(err)), -EINVAL);
	check_contains(err, ":2: ");
	check_contains(err, "NUL byte");
	CHECK_INT(c.retries, 1);
	cfg_free(&c);
	unlink(path);
}

static void test_good_structure(void)
{
	struct cfg c;
	char text[256], name[80], err[512], path[PATH_MAX];

	/* 64 characters is the longest source name */
	memset(name, 'n', 64);
	name[64] = '\0';
	snprintf(text, sizeof(text), "[source:%s] ; comment\nurl = /x\n", name);
	cfg_init(&c);
	CHECK_INT(load_text(text, &c, err, sizeof(err), path), 0);
	CHECK_INT(c.nsources, 1);
	CHECK_STR(c.sources[0].name, name);
	cfg_free(&c);

	/* indented keys are keys, not continuation lines */
	cfg_init(&c);
	CHECK_INT(load_text("[check]\n    timeout_ms = 4000\n    retries = 3\n\t[proxyfs]\n"
			    "\tdb = /d\n",
			    &c, err, sizeof(err), path),
		  0);
	CHECK_INT(c.timeout_ms, 4000);
	CHECK_INT(c.retries, 3);
	CHECK_STR(c.db, "/d");
	cfg_free(&c);

	/* err may be NULL */
	cfg_init(&c);
	CHECK_INT(load_text("[nope]\n", &c, NULL, 0, path), -EINVAL);
	cfg_free(&c);
}

static void test_paths(void)
{
	char dir[] = "/tmp/proxyfs-cfgdir-XXXXXX";
	char real[PATH_MAX], want[PATH_MAX + 32], path[PATH_MAX], cwd[PATH_MAX], err[512];
	struct cfg c;

	CHECK(mkdtemp(dir) != NULL);
	CHECK(realpath(dir, real) != NULL);
	write_file(dir,
		   "[source:rel]\nurl = lists/a.txt\n"
		   "[source:dot]\nurl = ./b.txt\n"
		   "[source:furl]\nurl = file://lists/c.txt\n"
		   "[source:fabs]\nurl = file:///srv/d.txt\n"
		   "[source:web]\nurl = http://127.0.0.1:8000/e.txt\n"
		   "[proxyfs]\ndb = state/p.db\n",
		   path, sizeof(path));

	cfg_init(&c);
	CHECK_INT(cfg_load(path, &c, err, sizeof(err)), 0);
	CHECK_INT(c.nsources, 5);
	if (c.nsources == 5) {
		snprintf(want, sizeof(want), "%s/lists/a.txt", real);
		CHECK_STR(c.sources[0].path, want);
		CHECK_STR(c.sources[0].url, "lists/a.txt");
		snprintf(want, sizeof(want), "%s/b.txt", real);
		CHECK_STR(c.sources[1].path, want);
		snprintf(want, sizeof(want), "%s/lists/c.txt", real);
		CHECK_STR(c.sources[2].path, want);
		CHECK_STR(c.sources[2].url, "file://lists/c.txt");
		CHECK_STR(c.sources[3].path, "/srv/d.txt");
		CHECK(c.sources[4].path == NULL);
		CHECK_STR(c.sources[4].url, "http://127.0.0.1:8000/e.txt");
	}
	snprintf(want, sizeof(want), "%s/state/p.db", real);
	CHECK_STR(c.db, want);
	cfg_free(&c);

	/* a config named by a relative path still gives absolute paths */
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK_INT(chdir(dir), 0);
	cfg_init(&c);
	CHECK_INT(cfg_load(strrchr(path, '/') + 1, &c, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/lists/a.txt", real);
	if (c.nsources > 0)
		CHECK_STR(c.sources[0].path, want);
	cfg_free(&c);
	CHECK_INT(chdir(cwd), 0);

	unlink(path);
	rmdir(dir);
}

static void test_unreadable(void)
{
	struct cfg c, before;
	char err[512] = "", dir[] = "/tmp/proxyfs-cfgdir-XXXXXX";

	load_witness(&c);
	before = c;
	CHECK_INT(cfg_load("/tmp/proxyfs-no-such-dir/x.ini", &c, err, sizeof(err)), -ENOENT);
	CHECK_STR(err, "/tmp/proxyfs-no-such-dir/x.ini: No such file or directory");
	check_witness(&c, &before);

	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(cfg_load(dir, &c, err, sizeof(err)), -EISDIR);
	check_contains(err, dir);
	check_contains(err, "Is a directory");
	check_witness(&c, &before);
	rmdir(dir);
	cfg_free(&c);
}

static void expect_invalid(const struct cfg *c, const char *part)
{
	char err[512] = "";

	CHECK_INT(cfg_validate(c, err, sizeof(err)), -EINVAL);
	check_contains(err, part);
}

static void test_validate(void)
{
	struct cfg c;
	char *saved;

	cfg_init(&c);
	c.connect_timeout_ms = 6000;
	expect_invalid(&c, "connect_timeout_ms: 6000 is more than timeout_ms (5000)");
	c.connect_timeout_ms = 5000;
	CHECK_INT(cfg_validate(&c, NULL, 0), 0);
	c.timeout_ms = 0;
	expect_invalid(&c, "[check] timeout_ms: 0 is out of range");
	c.timeout_ms = 5000;
	c.concurrency = -1;
	expect_invalid(&c, "[check] concurrency");
	c.concurrency = 10;
	c.retries = 11;
	expect_invalid(&c, "[check] retries");
	c.retries = 0;

	saved = c.judge;
	c.judge = "ftp://x/";
	expect_invalid(&c, "[check] judge: 'ftp://x/' must start with http:// or https://");
	c.judge = "https://";
	expect_invalid(&c, "[check] judge");
	c.judge = "HTTPS://[::1]:8443/";
	CHECK_INT(cfg_validate(&c, NULL, 0), 0);
	c.judge = NULL;
	expect_invalid(&c, "[check] judge");
	c.judge = saved;

	saved = c.expect;
	c.expect = "";
	expect_invalid(&c, "[check] expect: empty: any 200 page");
	c.require_echo = 1;
	CHECK_INT(cfg_validate(&c, NULL, 0), 0);
	c.require_echo = 0;
	c.expect = NULL;
	expect_invalid(&c, "[check] expect");
	c.expect = saved;

	saved = c.db;
	c.db = "";
	expect_invalid(&c, "[proxyfs] db");
	c.db = saved;

	CHECK_INT(cfg_validate(&c, NULL, 0), 0);
	cfg_free(&c);
}

/* [geo]: a path (relative to the file), empty for off, absent for the
 * default places; once per file, each key once. */
static void test_geo_keys(void)
{
	char dir[] = "/tmp/proxyfs-cfgdir-XXXXXX";
	char real[PATH_MAX], want[PATH_MAX + 32], path[PATH_MAX], err[512];
	struct cfg c;

	cfg_init(&c);
	CHECK(c.geo.country_db == NULL && c.geo.asn_db == NULL);
	cfg_free(&c);
	CHECK(mkdtemp(dir) != NULL);
	CHECK(realpath(dir, real) != NULL);
	write_file(dir, "[geo]\ncountry_db = geo/c.mmdb\nasn_db =\n", path, sizeof(path));
	cfg_init(&c);
	CHECK_INT(cfg_load(path, &c, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/geo/c.mmdb", real);
	CHECK_STR(c.geo.country_db, want);
	CHECK_STR(c.geo.asn_db, "");
	cfg_free(&c);
	unlink(path);
	rmdir(dir);
	cfg_init(&c);
	CHECK_INT(load_text("[geo]\nasn_db = /srv/a.mmdb\n", &c, err, sizeof(err), path), 0);
	CHECK(c.geo.country_db == NULL);
	CHECK_STR(c.geo.asn_db, "/srv/a.mmdb");
	cfg_free(&c);
	expect_error("[geo]\nasn_db = /a\nasn_db = /b\n", -EINVAL, ":3: [geo] asn_db",
		     "given twice");
	expect_error("[geo]\n[geo]\n", -EINVAL, ":2: [geo]", "section given twice");
	expect_error("[geo]\ncity_db = /a\n", -EINVAL, "[geo] city_db", "unknown key");
}

int main(void)
{
	test_defaults();
	test_every_key();
	test_bad_values();
	test_empty_expect();
	test_bad_structure();
	test_cross_field_lines();
	test_access_keys();
	test_session_keys();
	test_http_keys();
	test_gateway_keys();
	test_nul_byte();
	test_good_structure();
	test_paths();
	test_unreadable();
	test_validate();
	test_geo_keys();
	return test_exit_code();
}
