/* Unit tests for the renderers: every file of the tree rendered from
 * snapshots of 0, 1 and 3 proxies (IPv6, credentials, a proxy in two
 * folders), checked byte for byte where the format is fixed, parsed where it
 * is JSON, and handed to promtool when /tmp/prom/usr/bin/promtool (or
 * $PROMTOOL) exists. */
#include "check.h"
#include "gw_stats.h"
#include "render.h"
#include "testutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUILT_SEC 1700000100
#define STARTED 1700000000

static void fill_stats(struct snap_stats *st, uint32_t alive)
{
	memset(st, 0, sizeof(*st));
	st->generation = 42;
	st->built.tv_sec = BUILT_SEC;
	st->built.tv_nsec = 250000000;
	st->started = STARTED;
	st->total = alive + 7;
	st->alive = alive;
	st->dead = 5;
	st->unknown = 2;
	st->removed = 1;
	st->scan_running = true;
	st->scan_generation = 3;
	st->scan_checked = 9;
	st->scan_total = 11;
	st->scan_started = 1700000050;
	st->scan_finished = 1700000040;
	st->last_scan_seconds = 12.5;
	st->in_flight = 4;
	st->in_flight_max = 80;
	st->concurrency = 64;
	st->concurrency_conf = 100;
	st->concurrency_fd_max = 90;
	st->concurrency_why = SNAP_LIMIT_LATENCY;
	st->concurrency_lowered[SNAP_LIMIT_LOCAL_ERROR] = 1;
	st->concurrency_lowered[SNAP_LIMIT_LOOP_LAG] = 2;
	st->concurrency_lowered[SNAP_LIMIT_LATENCY] = 3;
	st->latency_ratio = 2.5;
	for (int r = 0; r < SNAP_RESULT_CLASSES; r++)
		st->checks_total[r] = 100 + (uint64_t)r;
	st->local_requeues_total = 6;
	st->retries_total = 8;
	st->store_writes_total = 1000;
	st->store_errors_total = 0;
	st->store_error = "";
	st->health = alive ? "ok" : "degraded: no live proxies (5 checked, all dead)";
	st->snapshots_total = 42;
}

static const struct snap_proxy three[] = {
    {.uri = "socks5h://user:pw@[2001:db8::1]:1080",
     .host = "2001:db8::1",
     .port = 1080,
     .proto = PROXY_SOCKS5,
     .folders = 1u << PROXY_SOCKS5,
     .anonymity = SNAP_ANON_ELITE,
     .latency_ms = 300,
     .last_checked = 1700000090,
     .exit_ip = "2001:db8::99",
     .country = "DE",
     .asn = 3320,
     .as_org = "Deutsche \"Telekom\" AG",
     .geo_from = SNAP_GEO_EXIT,
     .sources = "list-a,list-b"},
    {.uri = "http://10.0.0.1:8080",
     .host = "10.0.0.1",
     .port = 8080,
     .proto = PROXY_HTTP,
     .folders = (1u << PROXY_HTTP) | (1u << PROXY_HTTPS),
     .anonymity = SNAP_ANON_ANONYMOUS,
     .anon_split = true, /* listed http:// and https://, tunnel elite */
     .anon_http = SNAP_ANON_ANONYMOUS,
     .anon_https = SNAP_ANON_ELITE,
     .latency_ms = 20,
     .last_checked = 1700000080,
     .exit_ip = "",
     .country = "US",
     .geo_from = SNAP_GEO_ENTRY,
     .sources = "list-a"},
    {.uri = "socks4://10.0.0.2:1081",
     .host = "10.0.0.2",
     .port = 1081,
     .proto = PROXY_SOCKS4,
     .folders = 1u << PROXY_SOCKS4,
     .anonymity = SNAP_ANON_UNKNOWN,
     .latency_ms = 150,
     .last_checked = 1700000070,
     .exit_ip = "",
     .sources = ""},
};

static struct snapshot *make(uint32_t n)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st;
	struct snap_source a = {.name = "list-a",
				.url = "/etc/proxyfs/a.txt",
				.protocol = "socks5h",
				.proxies = 2,
				.invalid = 2,
				.alive = 2,
				.error = "",
				.last_read = 1700000010,
				.invalid_sample = {"not a proxy", "1.2.3.4:99999"}};
	struct snap_source q = {
	    .name = "we\"ird\\src", .url = "http://127.0.0.1:1/x", .error = "connect: refused"};

	CHECK(b != NULL);
	if (!b)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		CHECK_INT(snap_builder_add(b, &three[i]), 0);
	if (n > 0) {
		CHECK_INT(snap_builder_add_source(b, &a), 0);
		CHECK_INT(snap_builder_add_source(b, &q), 0);
	}
	fill_stats(&st, n);
	for (uint32_t i = 0; i < n; i++)
		for (int f = 0; f < PROXY_PROTO_COUNT; f++)
			st.alive_by_folder[f] += three[i].folders >> f & 1;
	snap_builder_set_stats(b, &st);
	return snap_builder_finish(b);
}

/* Renders one file into a fresh string the caller frees. */
static char *render(snap_render_fn fn, const struct snapshot *s, int arg)
{
	struct sbuf b;
	char *text;

	sbuf_init(&b);
	fn(s, arg, &b);
	CHECK(!sbuf_failed(&b));
	text = strdup(sbuf_cstr(&b));
	sbuf_free(&b);
	return text;
}

static char *pick(const struct snapshot *s, int folder, uint32_t index)
{
	struct sbuf b;
	char *text;

	sbuf_init(&b);
	render_pick(s, folder, index, &b);
	CHECK(!sbuf_failed(&b));
	text = strdup(sbuf_cstr(&b));
	sbuf_free(&b);
	return text;
}

/* --- a small JSON validity check (RFC 8259 grammar, no semantics) --- */

static const char *json_value(const char *p, int depth);

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p != '"'; p++) {
		if (*p == '\0' || (unsigned char)*p < 0x20)
			return NULL;
		if (*p != '\\')
			continue;
		p++;
		if (*p == 'u') {
			for (int i = 1; i <= 4; i++)
				if (!isxdigit((unsigned char)p[i]))
					return NULL;
			p += 4;
		} else if (!strchr("\"\\/bfnrt", *p) || *p == '\0') {
			return NULL;
		}
	}
	return p + 1;
}

static const char *json_number(const char *p)
{
	const char *start;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (isdigit((unsigned char)*p))
		while (isdigit((unsigned char)*p))
			p++;
	else
		return NULL;
	if (*p == '.') {
		start = ++p;
		while (isdigit((unsigned char)*p))
			p++;
		if (p == start)
			return NULL;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		start = p;
		while (isdigit((unsigned char)*p))
			p++;
		if (p == start)
			return NULL;
	}
	return p;
}

/* Objects and arrays: members separated by ',', between open and close. */
static const char *json_compound(const char *p, int depth, char close, bool object)
{
	p = json_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			p = json_string(json_ws(p));
			if (!p || *(p = json_ws(p)) != ':')
				return NULL;
			p++;
		}
		p = json_value(p, depth + 1);
		if (!p)
			return NULL;
		p = json_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *json_value(const char *p, int depth)
{
	if (depth > 32)
		return NULL;
	p = json_ws(p);
	if (*p == '{')
		return json_compound(p, depth, '}', true);
	if (*p == '[')
		return json_compound(p, depth, ']', false);
	if (*p == '"')
		return json_string(p);
	if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	return json_number(p);
}

static bool json_valid(const char *text)
{
	const char *end = json_value(text, 0);

	return end && *json_ws(end) == '\0';
}

static void check_contains(const char *text, const char *what)
{
	test_checks++;
	if (!strstr(text, what)) {
		test_failures++;
		fprintf(stderr, "missing: %s\n--- in:\n%s---\n", what, text);
	}
}

/* --- promtool --- */

/* Runs promtool check metrics on text: its exit status, or -1 if no
 * promtool is there to run. */
static int promtool(const char *text)
{
	const char *tool = getenv("PROMTOOL");
	char cmd[512];
	FILE *p;
	int status;

	if (!tool)
		tool = "/tmp/prom/usr/bin/promtool";
	if (access(tool, X_OK) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "'%s' check metrics", tool);
	p = popen(cmd, "w");
	if (!p)
		return -1;
	fputs(text, p);
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* --- the tests --- */

static void test_empty(void)
{
	struct snapshot *s = make(0);
	char *t;
	int rc;

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(render_count(s, RENDER_ALL), 0);
	t = pick(s, RENDER_ALL, 7);
	CHECK_STR(t, "");
	free(t);
	t = pick(s, PROXY_SOCKS4, 0);
	CHECK_STR(t, "");
	free(t);
	t = render(render_live_txt, s, RENDER_ALL);
	CHECK_STR(t, "");
	free(t);
	t = render(render_live_json, s, RENDER_ALL);
	CHECK_STR(t, "[\n]\n");
	CHECK(json_valid(t));
	free(t);
	t = render(render_health, s, 0);
	CHECK_STR(t, "degraded: no live proxies (5 checked, all dead)\n");
	free(t);
	t = render(render_stat_json, s, 0);
	CHECK(json_valid(t));
	check_contains(t, "\"sources\": []\n");
	check_contains(t, "\"health\": \"degraded: no live proxies (5 checked, all dead)\"");
	free(t);
	t = render(render_metrics, s, 0);
	check_contains(t, "\nproxyfs_healthy 0\n");
	check_contains(t, "# TYPE proxyfs_source_up gauge\n# HELP proxyfs_source_last_read");
	rc = promtool(t);
	CHECK(rc == 0 || rc == -1);
	free(t);
	snap_unref(s);
}

static void test_one(void)
{
	struct snapshot *s = make(1);
	char *t;

	CHECK(s != NULL);
	if (!s)
		return;
	for (uint32_t i = 0; i < 3; i++) {
		t = pick(s, RENDER_ALL, i);
		CHECK_STR(t, "socks5h://user:pw@[2001:db8::1]:1080\n");
		free(t);
	}
	t = pick(s, PROXY_SOCKS5, 5);
	CHECK_STR(t, "socks5h://user:pw@[2001:db8::1]:1080\n");
	free(t);
	t = pick(s, PROXY_HTTP, 0);
	CHECK_STR(t, "");
	free(t);
	t = render(render_live_json, s, RENDER_ALL);
	CHECK_STR(t, "[\n"
		     "{\"uri\":\"socks5h://user:pw@[2001:db8::1]:1080\",\"protocol\":\"socks5\","
		     "\"host\":\"2001:db8::1\",\"port\":1080,\"latency_ms\":300,"
		     "\"anonymity\":\"elite\",\"exit_ip\":\"2001:db8::99\","
		     "\"country\":\"DE\",\"asn\":3320,\"as_org\":\"Deutsche \\\"Telekom\\\" AG\","
		     "\"geo_from\":\"exit\","
		     "\"last_checked\":1700000090,\"sources\":[\"list-a\",\"list-b\"]}\n"
		     "]\n");
	CHECK(json_valid(t));
	free(t);
	t = render(render_health, s, 0);
	CHECK_STR(t, "ok\n");
	free(t);
	snap_unref(s);
}

static void test_lists(void)
{
	struct snapshot *s = make(3);
	char *t;

	CHECK(s != NULL);
	if (!s)
		return;
	t = render(render_live_txt, s, RENDER_ALL);
	CHECK_STR(t, "http://10.0.0.1:8080\n"
		     "socks4://10.0.0.2:1081\n"
		     "socks5h://user:pw@[2001:db8::1]:1080\n");
	free(t);
	t = render(render_live_txt, s, PROXY_HTTP);
	CHECK_STR(t, "http://10.0.0.1:8080\n");
	free(t);
	t = render(render_live_txt, s, PROXY_HTTPS);
	CHECK_STR(t, "http://10.0.0.1:8080\n");
	free(t);
	t = render(render_live_txt, s, PROXY_SOCKS5);
	CHECK_STR(t, "socks5h://user:pw@[2001:db8::1]:1080\n");
	free(t);
	/* a country's folder; one absent is empty, not the whole pool */
	t = render(render_live_txt, s, snap_country_view("de"));
	CHECK_STR(t, "socks5h://user:pw@[2001:db8::1]:1080\n");
	free(t);
	t = render(render_live_txt, s, snap_country_view(""));
	CHECK_STR(t, "socks4://10.0.0.2:1081\n");
	free(t);
	t = render(render_live_txt, s, snap_country_view("CN"));
	CHECK_STR(t, "");
	free(t);
	CHECK_INT(render_count(s, snap_country_view("US")), 1);
	CHECK_INT(render_count(s, snap_country_view("CN")), 0);
	t = render(render_live_json, s, snap_country_view("US"));
	CHECK(json_valid(t));
	CHECK(strstr(t, "\"uri\":\"http://10.0.0.1:8080\"") != NULL);
	CHECK(strstr(t, "socks") == NULL);
	free(t);
	/* round-robin order is the list order, wrapping */
	t = pick(s, RENDER_ALL, 4);
	CHECK_STR(t, "socks4://10.0.0.2:1081\n");
	free(t);
	t = pick(s, PROXY_HTTPS, 4000000000u);
	CHECK_STR(t, "http://10.0.0.1:8080\n");
	free(t);
	t = render(render_live_json, s, RENDER_ALL);
	CHECK(json_valid(t));
	check_contains(t, "[\n{\"uri\":\"http://10.0.0.1:8080\",\"protocol\":\"http\","
			  "\"host\":\"10.0.0.1\",\"port\":8080,\"latency_ms\":20,"
			  "\"anonymity\":\"anonymous\",\"exit_ip\":null,"
			  "\"country\":\"US\",\"asn\":null,\"as_org\":null,\"geo_from\":\"entry\","
			  "\"anonymity_by_protocol\":{\"http\":\"anonymous\",\"https\":\"elite\"},"
			  "\"last_checked\":1700000080,\"sources\":[\"list-a\"]},\n");
	check_contains(t, "\n{\"uri\":\"socks4://10.0.0.2:1081\",\"protocol\":\"socks4\","
			  "\"host\":\"10.0.0.2\",\"port\":1081,\"latency_ms\":150,"
			  "\"anonymity\":\"unknown\",\"exit_ip\":null,"
			  "\"country\":null,\"asn\":null,\"as_org\":null,\"geo_from\":null,"
			  "\"last_checked\":1700000070,\"sources\":[]},\n");
	check_contains(t, "\"sources\":[\"list-a\",\"list-b\"]}\n]\n");
	free(t);
	t = render(render_live_json, s, PROXY_SOCKS4);
	CHECK(json_valid(t));
	CHECK(strstr(t, "10.0.0.1") == NULL);
	free(t);
	snap_unref(s);
}

static void test_stat_json(void)
{
	struct snapshot *s = make(3);
	char *t;

	CHECK(s != NULL);
	if (!s)
		return;
	t = render(render_stat_json, s, 0);
	CHECK(json_valid(t));
	check_contains(t, "{\n  \"version\": \"" PROXYFS_VERSION "\",\n  \"generation\": 42,\n"
			  "  \"built\": 1700000100.250,\n  \"started\": 1700000000,\n"
			  "  \"uptime_seconds\": 100,\n");
	check_contains(t, "\"pool\": {\"total\": 10, \"alive\": 3, \"dead\": 5, \"unknown\": 2, "
			  "\"removed\": 1, \"dropped\": 0, \"alive_by_protocol\": {\"http\": 1, \"https\": 1, "
			  "\"socks4\": 1, \"socks5\": 1}},\n"
			  "  \"countries\": {\"DE\": 1, \"US\": 1, \"unknown\": 1},\n");
	check_contains(t, "\"scan\": {\"generation\": 3, \"running\": true, \"checked\": 9, "
			  "\"total\": 11, \"started\": 1700000050, \"finished\": 1700000040, "
			  "\"last_duration_seconds\": 12.500}");
	check_contains(t, "\"engine\": {\"in_flight\": 4, \"in_flight_max\": 80, "
			  "\"concurrency\": 64, \"concurrency_configured\": 100, "
			  "\"concurrency_max\": 90, \"concurrency_clamped\": true, \"checks\": {");
	for (int r = 0; r < CHK_RESULT_COUNT; r++) {
		char want[64];

		snprintf(want, sizeof(want), "\"%s\": %d", chk_result_name(r), 100 + r);
		check_contains(t, want);
	}
	check_contains(t, "}, \"local_requeues\": 6, \"retries\": 8, \"paused\": false, "
			  "\"held\": 0, \"concurrency_why\": \"latency\", \"latency_ratio\": 2.50, "
			  "\"concurrency_lowered\": {\"local_error\": 1, \"loop_lag\": 2, "
			  "\"latency\": 3}}");
	check_contains(t, "\"judges\": [],");
	check_contains(t, "\"store\": {\"writes\": 1000, \"errors\": 0, \"error\": null}");
	check_contains(t, "\"health\": \"ok\"");
	check_contains(t, "{\"name\": \"list-a\", \"url\": \"/etc/proxyfs/a.txt\", "
			  "\"protocol\": \"socks5h\", \"proxies\": 2, "
			  "\"invalid\": 2, \"alive\": 2, \"error\": null, "
			  "\"last_read\": 1700000010, \"last_try\": 0, \"http_status\": 0, "
			  "\"scraped\": 0, \"fetches\": 0, \"fetch_errors\": 0, "
			  "\"invalid_sample\": [\"not a proxy\", \"1.2.3.4:99999\"]}");
	check_contains(t, "{\"name\": \"we\\\"ird\\\\src\", \"url\": \"http://127.0.0.1:1/x\", "
			  "\"protocol\": null, \"proxies\": 0, \"invalid\": 0, \"alive\": 0, "
			  "\"error\": \"connect: refused\", \"last_read\": 0, \"last_try\": 0, "
			  "\"http_status\": 0, \"scraped\": 0, \"fetches\": 0, "
			  "\"fetch_errors\": 0, \"invalid_sample\": []}");
	free(t);
	snap_unref(s);
}

static void test_metrics(void)
{
	struct snapshot *s = make(3);
	char *t;
	int rc;

	CHECK(s != NULL);
	if (!s)
		return;
	t = render(render_metrics, s, 0);
	check_contains(t, "# HELP proxyfs_build_info proxyfs version, always 1.\n"
			  "# TYPE proxyfs_build_info gauge\n"
			  "proxyfs_build_info{version=\"" PROXYFS_VERSION "\"} 1\n");
	check_contains(t, "# TYPE proxyfs_proxies gauge\n"
			  "proxyfs_proxies{state=\"alive\"} 3\n"
			  "proxyfs_proxies{state=\"dead\"} 5\n"
			  "proxyfs_proxies{state=\"unknown\"} 2\n");
	check_contains(t, "proxyfs_proxies_alive{protocol=\"http\"} 1\n"
			  "proxyfs_proxies_alive{protocol=\"https\"} 1\n"
			  "proxyfs_proxies_alive{protocol=\"socks4\"} 1\n"
			  "proxyfs_proxies_alive{protocol=\"socks5\"} 1\n");
	check_contains(t, "# TYPE proxyfs_live_proxies_by_country gauge\n"
			  "proxyfs_live_proxies_by_country{country=\"DE\"} 1\n"
			  "proxyfs_live_proxies_by_country{country=\"US\"} 1\n"
			  "proxyfs_live_proxies_by_country{country=\"unknown\"} 1\n");
	check_contains(t, "# TYPE proxyfs_scans_total counter\nproxyfs_scans_total 3\n");
	check_contains(t, "\nproxyfs_scan_last_duration_seconds 12.500\n");
	check_contains(t, "# TYPE proxyfs_checks_total counter\n"
			  "proxyfs_checks_total{result=\"ok\"} 100\n"
			  "proxyfs_checks_total{result=\"timeout\"} 101\n");
	check_contains(t, "# TYPE proxyfs_check_concurrency_lowered_total counter\n"
			  "proxyfs_check_concurrency_lowered_total{reason=\"local_error\"} 1\n"
			  "proxyfs_check_concurrency_lowered_total{reason=\"loop_lag\"} 2\n"
			  "proxyfs_check_concurrency_lowered_total{reason=\"latency\"} 3\n");
	check_contains(t, "# TYPE proxyfs_check_latency_ratio gauge\n"
			  "proxyfs_check_latency_ratio 2.500\n");
	check_contains(t, "\nproxyfs_snapshot_timestamp_seconds 1700000100.250\n");
	check_contains(t, "\nproxyfs_start_time_seconds 1700000000\n");
	check_contains(t, "\nproxyfs_healthy 1\n");
	check_contains(t, "# TYPE proxyfs_renderings_total counter\nproxyfs_renderings_total ");
	check_contains(t, "proxyfs_source_up{source=\"list-a\"} 1\n"
			  "proxyfs_source_up{source=\"we\\\"ird\\\\src\"} 0\n");
	check_contains(t, "proxyfs_source_invalid_lines{source=\"list-a\"} 2\n");
	CHECK(t[strlen(t) - 1] == '\n');
	rc = promtool(t);
	if (rc == -1)
		printf("promtool not found: metrics lint skipped\n");
	else
		CHECK_INT(rc, 0);
	free(t);
	snap_unref(s);
}

/* The gateway's figures: stat.json's "gateway" object always (off:
 * zeros), its metric families only while it serves; counters as the
 * gateway left them in gw_stats, ejections from the snapshot. */
static void test_gateway_figures(void)
{
	struct snapshot *s = make(3);
	char *t;
	int rc;

	CHECK(s != NULL);
	if (!s)
		return;
	t = render(render_stat_json, s, 0);
	CHECK(json_valid(t));
	check_contains(t, "\"gateway\": {\"enabled\": false, \"connections\": 0, "
			  "\"max_connections\": 0, \"connections_total\": {\"ok\": 0, ");
	free(t);
	t = render(render_metrics, s, 0);
	CHECK(strstr(t, "proxyfs_gateway_") == NULL);
	free(t);

	gw_stats_set_enabled(true, 500);
	gw_stats_connection(1);
	gw_stats_connection(1);
	gw_stats_connection(1);
	gw_stats_connection(-1);
	gw_stats_outcome(GW_OUT_OK);
	gw_stats_outcome(GW_OUT_UPSTREAM_FAILED);
	gw_stats_outcome(GW_OUT_AUTH_FAILED);
	gw_stats_outcome(GW_OUT_AUTH_FAILED);
	gw_stats_bytes(1000, 250000);
	gw_stats_retry();
	gw_stats_retry();
	gw_stats_replay();
	gw_stats_handshake(3000);   /* 3 ms */
	gw_stats_handshake(700000); /* 0.7 s */
	s->stats.ejections_total[SNAP_EJECT_GATEWAY] = 4;

	t = render(render_stat_json, s, 0);
	CHECK(json_valid(t));
	check_contains(t, "\"gateway\": {\"enabled\": true, \"connections\": 2, "
			  "\"max_connections\": 500, \"connections_total\": {\"ok\": 1, "
			  "\"upstream_failed\": 1, \"client_error\": 0, \"auth_failed\": 2, "
			  "\"refused_limit\": 0}, \"bytes_in\": 1000, \"bytes_out\": 250000, "
			  "\"retries\": 2, \"replays\": 1, \"ejections\": 4, \"sessions_active\": 0, "
			  "\"handshake_seconds\": {\"count\": 2, \"sum\": 0.703000}},\n");
	/* Shown beside the others: the ejection count by who. */
	check_contains(t, "\"by\": {\"control\": 0, \"gateway\": 4}");
	free(t);

	t = render(render_metrics, s, 0);
	check_contains(t, "# TYPE proxyfs_gateway_connections gauge\n"
			  "proxyfs_gateway_connections 2\n");
	check_contains(t, "\nproxyfs_gateway_max_connections 500\n");
	check_contains(t, "# TYPE proxyfs_gateway_connections_total counter\n"
			  "proxyfs_gateway_connections_total{outcome=\"ok\"} 1\n"
			  "proxyfs_gateway_connections_total{outcome=\"upstream_failed\"} 1\n"
			  "proxyfs_gateway_connections_total{outcome=\"client_error\"} 0\n"
			  "proxyfs_gateway_connections_total{outcome=\"auth_failed\"} 2\n"
			  "proxyfs_gateway_connections_total{outcome=\"refused_limit\"} 0\n");
	check_contains(t, "# TYPE proxyfs_gateway_bytes_total counter\n"
			  "proxyfs_gateway_bytes_total{direction=\"in\"} 1000\n"
			  "proxyfs_gateway_bytes_total{direction=\"out\"} 250000\n");
	check_contains(t, "# TYPE proxyfs_gateway_retries_total counter\n"
			  "proxyfs_gateway_retries_total 2\n");
	check_contains(t, "# TYPE proxyfs_gateway_handshake_seconds histogram\n"
			  "proxyfs_gateway_handshake_seconds_bucket{le=\"0.001\"} 0\n"
			  "proxyfs_gateway_handshake_seconds_bucket{le=\"0.0025\"} 0\n"
			  "proxyfs_gateway_handshake_seconds_bucket{le=\"0.005\"} 1\n");
	check_contains(t, "proxyfs_gateway_handshake_seconds_bucket{le=\"0.5\"} 1\n"
			  "proxyfs_gateway_handshake_seconds_bucket{le=\"1\"} 2\n");
	check_contains(t, "proxyfs_gateway_handshake_seconds_bucket{le=\"+Inf\"} 2\n"
			  "proxyfs_gateway_handshake_seconds_sum 0.703000\n"
			  "proxyfs_gateway_handshake_seconds_count 2\n");
	check_contains(t, "proxyfs_ejections_total{by=\"gateway\"} 4\n");
	rc = promtool(t);
	if (rc != -1)
		CHECK_INT(rc, 0);
	free(t);
	gw_stats_set_enabled(false, 0);
	snap_unref(s);
}

/* --- why a proxy is what it is: all.json, dead.txt, removed.txt, lookup --- */

#define R(res) ((uint8_t)((res) + 1))

/* A tracked pool with one proxy of every kind of failure: each record's
 * detail is the words render_result gives its numbers. */
static const struct {
	struct snap_proxy p;
	const char *detail;
} tracked[] = {
    {{.uri = "http://10.0.1.1:8080",
      .host = "10.0.1.1",
      .port = 8080,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_TIMEOUT), .stage = CHK_STAGE_ANSWER},
      .fails_in_row = 3,
      .last_checked = 1700000060,
      .next_check = 1700000300},
     "timeout after connect, waiting for the judge's answer"},
    {{.uri = "http://10.0.1.2:8080",
      .host = "10.0.1.2",
      .port = 8080,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_TIMEOUT), .stage = CHK_STAGE_CONNECT},
      .fails_in_row = 1,
      .last_checked = 1700000061,
      .next_check = 1700000200},
     "timeout connecting"},
    {{.uri = "socks5://10.0.1.3:1080",
      .host = "10.0.1.3",
      .port = 1080,
      .proto = PROXY_SOCKS5,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_REFUSED), .stage = CHK_STAGE_CONNECT, .err = ECONNREFUSED},
      .fails_in_row = 1,
      .last_checked = 1700000062},
     "refused: connection refused"},
    {{.uri = "socks5://10.0.1.4:1080",
      .host = "10.0.1.4",
      .port = 1080,
      .proto = PROXY_SOCKS5,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_REFUSED), .stage = CHK_STAGE_HANDSHAKE, .socks_reply = 5},
      .fails_in_row = 1,
      .last_checked = 1700000063},
     "refused: SOCKS reply 5 (connection refused)"},
    {{.uri = "http://10.0.1.5:3128",
      .host = "10.0.1.5",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_BAD_ANSWER),
	       .stage = CHK_STAGE_ANSWER,
	       .status = 200,
	       .why = CHK_WHY_NO_EXPECT},
      .fails_in_row = 2,
      .last_checked = 1700000064},
     "wrong_answer: 200 without the expected text"},
    {{.uri = "http://10.0.1.6:3128",
      .host = "10.0.1.6",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_BAD_ANSWER),
	       .stage = CHK_STAGE_ANSWER,
	       .status = 503,
	       .why = CHK_WHY_STATUS},
      .fails_in_row = 1,
      .last_checked = 1700000065},
     "wrong_answer: 503, not 200"},
    {{.uri = "http://u:wrong@10.0.1.7:3128",
      .host = "10.0.1.7",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_AUTH), .stage = CHK_STAGE_ANSWER, .status = 407},
      .fails_in_row = 1,
      .last_checked = 1700000066},
     "auth: 407"},
    {{.uri = "http://10.0.1.8:3128",
      .host = "10.0.1.8",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_RESET), .stage = CHK_STAGE_ANSWER},
      .fails_in_row = 1,
      .last_checked = 1700000067},
     "reset: closed before the judge's answer was whole"},
    {{.uri = "http://10.0.1.9:3128",
      .host = "10.0.1.9",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_DEAD,
      .sources = "list-a",
      .exit_ip = "",
      .last = {.result = R(CHK_PROTO_ERR), .stage = CHK_STAGE_HANDSHAKE, .why = CHK_WHY_EARLY},
      .fails_in_row = 1,
      .last_checked = 1700000068},
     "protocol_error: the proxy sent data before our request"},
    {{.uri = "http://10.0.2.1:3128",
      .host = "10.0.2.1",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_UNKNOWN,
      .sources = "list-a",
      .exit_ip = ""},
     "not checked since start"},
    {{.uri = "https://10.0.2.2:3128",
      .host = "10.0.2.2",
      .port = 3128,
      .proto = PROXY_HTTP,
      .state = SNAP_REMOVED,
      .sources = "",
      .exit_ip = ""},
     "not checked since start"},
    {{.uri = "socks4://10.0.2.3:1081",
      .host = "10.0.2.3",
      .port = 1081,
      .proto = PROXY_SOCKS4,
      .state = SNAP_DROPPED,
      .sources = "list-b",
      .exit_ip = "",
      .last = {.result = R(CHK_TIMEOUT), .stage = CHK_STAGE_HANDSHAKE},
      .fails_in_row = 9,
      .last_checked = 1700000069},
     "timeout after connect, in the proxy's handshake"},
};

#define NTRACKED (sizeof(tracked) / sizeof(tracked[0]))

static struct snapshot *make_tracked(void)
{
	struct snap_builder *b = snap_builder_new();
	struct snap_stats st;

	CHECK(b != NULL);
	if (!b)
		return NULL;
	/* not in order: the files sort them */
	for (size_t i = NTRACKED; i-- > 0;)
		CHECK_INT(snap_builder_add(b, &tracked[i].p), 0);
	CHECK_INT(snap_builder_add(b, &three[0]), 0);
	fill_stats(&st, 1);
	snap_builder_set_stats(b, &st);
	return snap_builder_finish(b);
}

static void test_result_words(void)
{
	for (size_t i = 0; i < NTRACKED; i++) {
		struct sbuf b;

		sbuf_init(&b);
		render_result(&tracked[i].p.last, &b);
		CHECK_STR(sbuf_cstr(&b), tracked[i].detail);
		sbuf_free(&b);
	}
}

static void test_all_json(void)
{
	struct snapshot *s = make_tracked();
	char *t;

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(s->nlive, 1);
	CHECK_INT(s->nall, NTRACKED + 1);
	t = render(render_all_json, s, 0);
	CHECK(json_valid(t));
	/* the live one first, then dead, unknown, dropped, removed, by URI */
	check_contains(
	    t, "[\n{\"uri\":\"socks5h://user:pw@[2001:db8::1]:1080\",\"protocol\":"
	       "\"socks5\",\"state\":\"alive\",\"result\":null,\"detail\":\"not checked "
	       "since start\",\"fails_in_row\":0,\"last_checked\":1700000090,"
	       "\"next_check\":null,\"latency_ms\":300,\"country\":\"DE\",\"asn\":3320,"
	       "\"as_org\":\"Deutsche \\\"Telekom\\\" AG\",\"geo_from\":\"exit\","
	       "\"sources\":[\"list-a\",\"list-b\"]},\n"
	       "{\"uri\":\"http://10.0.1.1:8080\",");
	check_contains(
	    t, "{\"uri\":\"http://10.0.1.1:8080\",\"protocol\":\"http\",\"state\":\"dead\","
	       "\"result\":\"timeout\",\"detail\":\"timeout after connect, waiting for "
	       "the judge's answer\",\"fails_in_row\":3,\"last_checked\":1700000060,"
	       "\"next_check\":1700000300,\"latency_ms\":null,\"country\":null,\"asn\":null,"
	       "\"as_org\":null,\"geo_from\":null,\"sources\":[\"list-a\"]},\n");
	check_contains(t, "\"uri\":\"http://u:wrong@10.0.1.7:3128\",\"protocol\":\"http\","
			  "\"state\":\"dead\",\"result\":\"auth\",\"detail\":\"auth: 407\"");
	check_contains(t, "{\"uri\":\"http://10.0.1.9:3128\",");
	check_contains(
	    t, "\"state\":\"dead\",\"result\":\"protocol_error\",\"detail\":\"protocol_error: "
	       "the proxy sent data before our request\",\"fails_in_row\":1,"
	       "\"last_checked\":1700000068,\"next_check\":null,\"latency_ms\":null,"
	       "\"country\":null,\"asn\":null,\"as_org\":null,\"geo_from\":null,"
	       "\"sources\":[\"list-a\"]},\n");
	check_contains(t, "\"sources\":[\"list-a\"]},\n{\"uri\":\"http://10.0.2.1:3128\","
			  "\"protocol\":\"http\",\"state\":\"unknown\",\"result\":null,");
	check_contains(t, "\"sources\":[]}\n]\n"); /* the removed one last */
	check_contains(t, "\"state\":\"dropped\",\"result\":\"timeout\"");
	free(t);
	snap_unref(s);
}

static void test_dead_removed(void)
{
	struct snapshot *s = make_tracked();
	char *t;

	CHECK(s != NULL);
	if (!s)
		return;
	t = render(render_dead_txt, s, 0);
	CHECK_STR(t, "http://10.0.1.1:8080 timeout after connect, waiting for the judge's answer\n"
		     "http://10.0.1.2:8080 timeout connecting\n"
		     "http://10.0.1.5:3128 wrong_answer: 200 without the expected text\n"
		     "http://10.0.1.6:3128 wrong_answer: 503, not 200\n"
		     "http://10.0.1.8:3128 reset: closed before the judge's answer was whole\n"
		     "http://10.0.1.9:3128 protocol_error: the proxy sent data before our request\n"
		     "http://u:wrong@10.0.1.7:3128 auth: 407\n"
		     "socks5://10.0.1.3:1080 refused: connection refused\n"
		     "socks5://10.0.1.4:1080 refused: SOCKS reply 5 (connection refused)\n");
	free(t);
	t = render(render_removed_txt, s, 0);
	CHECK_STR(t, "https://10.0.2.2:3128\n");
	free(t);
	snap_unref(s);
}

/* lookup output for name, as a string the caller frees; *n its records. */
static char *lookup(const struct snapshot *s, const char *name, uint32_t *n)
{
	struct sbuf b;
	char *text;

	sbuf_init(&b);
	*n = render_lookup(s, name, &b);
	CHECK(!sbuf_failed(&b));
	text = strdup(sbuf_cstr(&b));
	sbuf_free(&b);
	return text;
}

static void test_lookup(void)
{
	struct snapshot *s = make_tracked();
	uint32_t n;
	char *t;

	CHECK(s != NULL);
	if (!s)
		return;
	t = lookup(s, "10.0.1.7:3128", &n);
	CHECK_INT(n, 1);
	CHECK(json_valid(t));
	CHECK(strncmp(t, "{\"uri\":\"http://u:wrong@10.0.1.7:3128\"", 37) == 0);
	CHECK(strchr(t, '\n') == t + strlen(t) - 1);
	free(t);
	t = lookup(s, "socks5:%2F%2F10.0.1.4:1080", &n);
	CHECK_INT(n, 1);
	check_contains(t, "\"detail\":\"refused: SOCKS reply 5 (connection refused)\"");
	free(t);
	/* a URI names one scheme only */
	t = lookup(s, "http:%2f%2f10.0.1.4:1080", &n);
	CHECK_INT(n, 0);
	CHECK_STR(t, "");
	free(t);
	/* the tunnel's key and its printed form both name the removed one */
	t = lookup(s, "https:%2F%2F10.0.2.2:3128", &n);
	CHECK_INT(n, 1);
	check_contains(t, "\"state\":\"removed\"");
	free(t);
	t = lookup(s, "http:%2F%2F10.0.2.2:3128", &n);
	CHECK_INT(n, 1);
	free(t);
	t = lookup(s, "[2001:db8::1]:1080", &n);
	CHECK_INT(n, 1);
	check_contains(t, "\"state\":\"alive\"");
	free(t);
	t = lookup(s, "10.9.9.9:1", &n);
	CHECK_INT(n, 0);
	free(t);
	t = lookup(s, "%zz", &n);
	CHECK_INT(n, 0);
	free(t);
	t = lookup(s, "not a proxy", &n);
	CHECK_INT(n, 0);
	free(t);
	snap_unref(s);
}

static void check_uri(const struct snapshot *s, const char *uri, const char *shown)
{
	struct sbuf b;

	sbuf_init(&b);
	render_uri(s, uri, &b);
	CHECK_STR(sbuf_cstr(&b), shown);
	sbuf_free(&b);
}

/* hide_credentials: user:pass@ is left out of every list and pick. */
static void test_hide_credentials(void)
{
	struct snapshot *s = make(3);
	char *text;

	if (!s)
		return;
	text = render(render_live_txt, s, RENDER_ALL);
	check_contains(text, "socks5h://user:pw@[2001:db8::1]:1080\n");
	free(text);
	s->stats.hide_credentials = true;
	text = render(render_live_txt, s, RENDER_ALL);
	CHECK(strstr(text, "user") == NULL);
	check_contains(text, "socks5h://[2001:db8::1]:1080\n");
	free(text);
	text = render(render_live_json, s, RENDER_ALL);
	CHECK(json_valid(text));
	CHECK(strstr(text, "user") == NULL);
	check_contains(text, "\"uri\":\"socks5h://[2001:db8::1]:1080\"");
	free(text);
	for (uint32_t i = 0; i < 3; i++) {
		text = pick(s, RENDER_ALL, i);
		CHECK(strstr(text, "user") == NULL);
		free(text);
	}
	text = render(render_all_json, s, 0);
	CHECK(json_valid(text));
	CHECK(strstr(text, "user") == NULL);
	check_contains(text, "\"uri\":\"socks5h://[2001:db8::1]:1080\"");
	free(text);
	check_uri(s, "http://a:b@c@10.0.0.1:80", "http://10.0.0.1:80");
	check_uri(s, "user:pass@10.0.0.1:80", "10.0.0.1:80");
	check_uri(s, "https://lists.example/a@b.txt", "https://lists.example/a@b.txt");
	check_uri(s, "https://u:t@lists.example/a@b.txt", "https://lists.example/a@b.txt");
	check_uri(s, "not a proxy", "not a proxy");
	snap_unref(s);
}

int main(void)
{
	test_empty();
	test_one();
	test_lists();
	test_stat_json();
	test_metrics();
	test_gateway_figures();
	test_result_words();
	test_all_json();
	test_dead_removed();
	test_lookup();
	test_hide_credentials();
	return test_exit_code();
}
