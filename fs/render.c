/* render: the bytes of every file in the mounted tree; see render.h.
 *
 * Three groups: the pool lists (random/next, live.txt, live.json), the
 * figures as JSON (stat.json) and as Prometheus text (metrics), and health.
 * Everything here is a pure function of the snapshot; nothing is logged and
 * nothing is cached here (snap_cached does that for the caller).
 */
#include "render.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_result.h"
#include "geo.h"
#include "gw_stats.h"
#include "http_stats.h"
#include "proxy.h"
#include "session.h"

/* --- credentials --- */

/* Where the part after user:pass@ begins (uri itself when it has none):
 * the last '@' before the path, after an optional scheme://. */
static const char *after_userinfo(const char *uri)
{
	const char *sep = strstr(uri, "://");
	const char *auth = sep ? sep + 3 : uri;
	const char *end = auth + strcspn(auth, "/?#");
	const char *at = NULL;

	for (const char *c = auth; c < end; c++) {
		if (*c == '@')
			at = c;
	}
	return at ? at + 1 : uri;
}

/* Appends uri without its user:pass@. */
static void add_without_userinfo(const char *uri, struct sbuf *out)
{
	const char *rest = after_userinfo(uri);
	const char *sep = strstr(uri, "://");

	if (rest != uri && sep)
		sbuf_add(out, uri, (size_t)(sep + 3 - uri));
	sbuf_adds(out, rest);
}

void render_uri(const struct snapshot *s, const char *uri, struct sbuf *out)
{
	if (s->stats.hide_credentials)
		add_without_userinfo(uri, out);
	else
		sbuf_adds(out, uri);
}

void render_uri_json(const struct snapshot *s, const char *uri, struct sbuf *out)
{
	struct sbuf scratch;

	if (!s->stats.hide_credentials || after_userinfo(uri) == uri) {
		sbuf_add_json_str(out, uri);
		return;
	}
	sbuf_init(&scratch);
	add_without_userinfo(uri, &scratch);
	sbuf_add_json_str(out, sbuf_cstr(&scratch));
	if (sbuf_failed(&scratch))
		out->failed = true;
	sbuf_free(&scratch);
}

/* --- the pool lists --- */

uint32_t render_count(const struct snapshot *s, int folder)
{
	const struct snap_country *c;

	if (folder >= SNAP_VIEW_COUNTRY) {
		c = snap_view_country(s, folder);
		return c ? c->n : 0;
	}
	if (folder < 0 || (uint32_t)folder >= s->nviews)
		return s->nlive;
	return s->nby_folder[folder];
}

/* The indexes into s->live of folder's proxies, in order; NULL for the top
 * level, which is live[] itself. */
static const uint32_t *folder_index(const struct snapshot *s, int folder)
{
	const struct snap_country *c;

	if (folder >= SNAP_VIEW_COUNTRY) {
		c = snap_view_country(s, folder);
		return c ? c->idx : NULL;
	}
	if (folder < 0 || (uint32_t)folder >= s->nviews)
		return NULL;
	return s->by_folder[folder];
}

/* Live proxy number k of the list idx (NULL: of live[] itself). */
static const struct snap_proxy *nth_live(const struct snapshot *s, const uint32_t *idx, uint32_t k)
{
	return &s->live[idx ? idx[k] : k];
}

void render_pick(const struct snapshot *s, int folder, uint32_t index, struct sbuf *out)
{
	uint32_t n = render_count(s, folder);

	if (n == 0)
		return;
	render_uri(s, nth_live(s, folder_index(s, folder), index % n)->uri, out);
	sbuf_addc(out, '\n');
}

void render_live_txt(const struct snapshot *s, int folder, struct sbuf *out)
{
	render_live_txt_of(s, folder_index(s, folder), render_count(s, folder), out);
}

void render_live_txt_of(const struct snapshot *s, const uint32_t *idx, uint32_t n, struct sbuf *out)
{
	for (uint32_t i = 0; i < n; i++) {
		render_uri(s, nth_live(s, idx, i)->uri, out);
		sbuf_addc(out, '\n');
	}
}

/* A JSON string, or null when s is empty. */
static void json_str_or_null(struct sbuf *out, const char *s)
{
	if (s && *s)
		sbuf_add_json_str(out, s);
	else
		sbuf_adds(out, "null");
}

/* The comma-joined source names as a JSON array of strings. scratch is a
 * buffer the caller reuses across proxies. */
static void json_source_list(struct sbuf *out, const char *joined, struct sbuf *scratch)
{
	const char *p = joined, *comma;
	bool first = true;

	sbuf_addc(out, '[');
	while (p && *p) {
		comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);

		if (n) {
			sbuf_reset(scratch);
			sbuf_add(scratch, p, n);
			if (!first)
				sbuf_addc(out, ',');
			sbuf_add_json_str(out, sbuf_cstr(scratch));
			first = false;
		}
		if (sbuf_failed(scratch))
			out->failed = true;
		p = comma ? comma + 1 : NULL;
	}
	sbuf_addc(out, ']');
}

void render_geo_json(const struct snap_proxy *p, struct sbuf *out)
{
	sbuf_adds(out, ",\"country\":");
	if (p->country[0]) {
		sbuf_addc(out, '"');
		sbuf_add(out, p->country, strnlen(p->country, 2));
		sbuf_addc(out, '"');
	} else {
		sbuf_adds(out, "null");
	}
	if (p->asn)
		sbuf_printf(out, ",\"asn\":%" PRIu32 ",\"as_org\":", p->asn);
	else
		sbuf_adds(out, ",\"asn\":null,\"as_org\":");
	json_str_or_null(out, p->as_org);
	sbuf_adds(out, p->geo_from == SNAP_GEO_EXIT    ? ",\"geo_from\":\"exit\""
		       : p->geo_from == SNAP_GEO_ENTRY ? ",\"geo_from\":\"entry\""
						       : ",\"geo_from\":null");
}

static void json_proxy(const struct snapshot *s, struct sbuf *out, const struct snap_proxy *p,
		       struct sbuf *scratch)
{
	sbuf_adds(out, "{\"uri\":");
	render_uri_json(s, p->uri, out);
	sbuf_printf(out, ",\"protocol\":\"%s\",\"host\":", proxy_proto_name(p->proto));
	sbuf_add_json_str(out, p->host);
	sbuf_printf(out,
		    ",\"port\":%u,\"latency_ms\":%" PRIu32 ",\"anonymity\":\"%s\",\"exit_ip\":",
		    p->port, p->latency_ms, snap_anon_name(p->anonymity));
	json_str_or_null(out, p->exit_ip);
	render_geo_json(p, out);
	if (p->anon_split)
		sbuf_printf(out, ",\"anonymity_by_protocol\":{\"http\":\"%s\",\"https\":\"%s\"}",
			    snap_anon_name(p->anon_http), snap_anon_name(p->anon_https));
	sbuf_printf(out, ",\"last_checked\":%" PRId64 ",\"sources\":", p->last_checked);
	json_source_list(out, p->sources, scratch);
	sbuf_addc(out, '}');
}

void render_live_json(const struct snapshot *s, int folder, struct sbuf *out)
{
	render_live_json_of(s, folder_index(s, folder), render_count(s, folder), out);
}

void render_live_json_of(const struct snapshot *s, const uint32_t *idx, uint32_t n,
			 struct sbuf *out)
{
	struct sbuf scratch;

	sbuf_init(&scratch);
	sbuf_adds(out, "[\n");
	for (uint32_t i = 0; i < n; i++) {
		json_proxy(s, out, nth_live(s, idx, i), &scratch);
		sbuf_adds(out, i + 1 < n ? ",\n" : "\n");
	}
	sbuf_adds(out, "]\n");
	sbuf_free(&scratch);
}

/* --- stat.json --- */

/* The code label of the HTTP request counter's slot i: "200", or "other". */
static const char *http_code_label(int i)
{
	static _Thread_local char buf[8];
	int code = http_stats_code(i);

	if (!code)
		return "other";
	snprintf(buf, sizeof(buf), "%d", code);
	return buf;
}

/* Unix seconds with milliseconds, exact (no float rounding). */
static void add_time(struct sbuf *out, struct timespec t)
{
	sbuf_printf(out, "%lld.%03ld", (long long)t.tv_sec, t.tv_nsec / 1000000);
}

/* A duration for JSON or Prometheus: never NaN or infinite. */
static double finite_or_zero(double v)
{
	return isfinite(v) ? v : 0.0;
}

static void stat_pool(const struct snap_stats *st, struct sbuf *out)
{
	sbuf_printf(out,
		    "  \"pool\": {\"total\": %" PRIu32 ", \"alive\": %" PRIu32
		    ", \"dead\": %" PRIu32 ", \"unknown\": %" PRIu32 ", \"removed\": %" PRIu32
		    ", \"dropped\": %" PRIu32 ", \"alive_by_protocol\": {",
		    st->total, st->alive, st->dead, st->unknown, st->removed, st->dropped);
	for (int f = 0; f < PROXY_PROTO_COUNT; f++)
		sbuf_printf(out, "%s\"%s\": %" PRIu32, f ? ", " : "", proxy_proto_name(f),
			    st->alive_by_folder[f]);
	sbuf_adds(out, "}},\n");
}

/* Live proxies per country: {"DE": 12, ..., "unknown": 3}. */
static void stat_countries(const struct snapshot *s, struct sbuf *out)
{
	sbuf_adds(out, "  \"countries\": {");
	for (uint32_t i = 0; i < s->ncountries; i++)
		sbuf_printf(out, "%s\"%s\": %" PRIu32, i ? ", " : "",
			    s->countries[i].code[0] ? s->countries[i].code : "unknown",
			    s->countries[i].n);
	sbuf_adds(out, "},\n");
}

static void stat_scan(const struct snap_stats *st, struct sbuf *out)
{
	sbuf_printf(out,
		    "  \"scan\": {\"generation\": %" PRIu64
		    ", \"running\": %s, \"checked\": %" PRIu32 ", \"total\": %" PRIu32
		    ", \"started\": %" PRId64 ", \"finished\": %" PRId64
		    ", \"last_duration_seconds\": %.3f},\n",
		    st->scan_generation, st->scan_running ? "true" : "false", st->scan_checked,
		    st->scan_total, st->scan_started, st->scan_finished,
		    finite_or_zero(st->last_scan_seconds));
}

static const char *const limit_why[SNAP_LIMIT_WHY_COUNT] = {
	[SNAP_LIMIT_CONFIGURED] = "configured", [SNAP_LIMIT_LOCAL_ERROR] = "local_error",
	[SNAP_LIMIT_LOOP_LAG] = "loop_lag",     [SNAP_LIMIT_LATENCY] = "latency",
	[SNAP_LIMIT_RECOVERING] = "recovering",
};

/* The reasons the limit is lowered for (the others only say where it is). */
static const enum snap_limit_why lowered_why[] = {
	SNAP_LIMIT_LOCAL_ERROR, SNAP_LIMIT_LOOP_LAG, SNAP_LIMIT_LATENCY,
};
#define NLOWERED (sizeof(lowered_why) / sizeof(lowered_why[0]))

static void stat_limit(const struct snap_stats *st, struct sbuf *out)
{
	sbuf_printf(out,
		    ", \"concurrency_why\": \"%s\", \"latency_ratio\": %.2f"
		    ", \"concurrency_lowered\": {",
		    limit_why[st->concurrency_why], finite_or_zero(st->latency_ratio));
	for (size_t i = 0; i < NLOWERED; i++)
		sbuf_printf(out, "%s\"%s\": %" PRIu64, i ? ", " : "", limit_why[lowered_why[i]],
			    st->concurrency_lowered[lowered_why[i]]);
	sbuf_printf(out, "}");
}

static void stat_engine(const struct snap_stats *st, struct sbuf *out)
{
	sbuf_printf(out,
		    "  \"engine\": {\"in_flight\": %" PRIu32 ", \"in_flight_max\": %" PRIu32
		    ", \"concurrency\": %" PRIu32 ", \"concurrency_configured\": %" PRIu32
		    ", \"concurrency_max\": %" PRIu32 ", \"concurrency_clamped\": %s"
		    ", \"checks\": {",
		    st->in_flight, st->in_flight_max, st->concurrency, st->concurrency_conf,
		    st->concurrency_fd_max,
		    st->concurrency_fd_max < st->concurrency_conf ? "true" : "false");
	for (int r = 0; r < SNAP_RESULT_CLASSES && r < CHK_RESULT_COUNT; r++)
		sbuf_printf(out, "%s\"%s\": %" PRIu64, r ? ", " : "", chk_result_name(r),
			    st->checks_total[r]);
	sbuf_printf(out,
		    "}, \"local_requeues\": %" PRIu64 ", \"retries\": %" PRIu64
		    ", \"paused\": %s, \"held\": %" PRIu64,
		    st->local_requeues_total, st->retries_total, st->paused ? "true" : "false",
		    st->held_total);
	stat_limit(st, out);
	sbuf_printf(out, "},\n");
}

/* The names of enum snap_eject_by, for stat.json and the metrics. */
static const char *const eject_by[SNAP_EJECT_BY_COUNT] = {
    [SNAP_EJECT_NONE] = "none",
    [SNAP_EJECT_CONTROL] = "control",
    [SNAP_EJECT_GATEWAY] = "gateway",
};

/* Live proxies taken out of the live set before a check said so, and the
 * last few of them with why. */
static void stat_ejections(const struct snapshot *s, struct sbuf *out)
{
	const struct snap_stats *st = &s->stats;
	uint64_t total = 0;

	for (int b = SNAP_EJECT_CONTROL; b < SNAP_EJECT_BY_COUNT; b++)
		total += st->ejections_total[b];
	sbuf_printf(out, "  \"ejections\": {\"total\": %" PRIu64 ", \"by\": {", total);
	for (int b = SNAP_EJECT_CONTROL; b < SNAP_EJECT_BY_COUNT; b++)
		sbuf_printf(out, "%s\"%s\": %" PRIu64, b > SNAP_EJECT_CONTROL ? ", " : "",
			    eject_by[b], st->ejections_total[b]);
	sbuf_adds(out, "}, \"last\": [");
	for (uint32_t i = 0; i < st->nejected && i < SNAP_EJECTED_KEEP; i++) {
		const struct snap_ejection *x = &st->ejected[i];

		sbuf_adds(out, i ? ", {\"uri\": " : "{\"uri\": ");
		render_uri_json(s, x->uri, out);
		sbuf_printf(out, ", \"by\": \"%s\", \"at\": %" PRId64 ", \"why\": ",
			    x->by < SNAP_EJECT_BY_COUNT ? eject_by[x->by] : "none", x->at);
		sbuf_add_json_str(out, x->why);
		sbuf_addc(out, '}');
	}
	sbuf_adds(out, "]},\n");
}

static void stat_judges(const struct snapshot *s, struct sbuf *out)
{
	sbuf_adds(out, "  \"judges\": [");
	for (uint32_t i = 0; i < s->njudges; i++) {
		const struct snap_judge *j = &s->judges[i];

		sbuf_adds(out, i ? ",\n    {\"url\": " : "\n    {\"url\": ");
		render_uri_json(s, j->url, out);
		sbuf_printf(out, ", \"healthy\": %s, \"last_probe\": %" PRId64 ", \"error\": ",
			    j->healthy ? "true" : "false", j->last_probe);
		json_str_or_null(out, j->error);
		sbuf_adds(out, ", \"our_address\": ");
		json_str_or_null(out, j->our_addr);
		sbuf_printf(out, ", \"checks\": %" PRIu64 ", \"alive\": %" PRIu64 "}", j->checks,
			    j->ok);
	}
	sbuf_adds(out, s->njudges ? "\n  ],\n" : "],\n");
}

static void stat_source(const struct snapshot *s, const struct snap_source *src, struct sbuf *out)
{
	bool first = true;

	sbuf_adds(out, "    {\"name\": ");
	sbuf_add_json_str(out, src->name);
	sbuf_adds(out, ", \"url\": ");
	render_uri_json(s, src->url, out);
	sbuf_adds(out, ", \"protocol\": ");
	json_str_or_null(out, src->protocol);
	sbuf_printf(out,
		    ", \"proxies\": %" PRIu32 ", \"invalid\": %" PRIu32 ", \"alive\": %" PRIu32
		    ", \"error\": ",
		    src->proxies, src->invalid, src->alive);
	json_str_or_null(out, src->error);
	sbuf_printf(out,
		    ", \"last_read\": %" PRId64 ", \"last_try\": %" PRId64
		    ", \"http_status\": %ld, \"scraped\": %" PRIu32 ", \"fetches\": %" PRIu64
		    ", \"fetch_errors\": %" PRIu64 ", \"invalid_sample\": [",
		    src->last_read, src->last_try, src->http_status, src->scraped,
		    src->fetches_total, src->errors_total);
	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++) {
		if (!src->invalid_sample[i])
			continue;
		if (!first)
			sbuf_adds(out, ", ");
		render_uri_json(s, src->invalid_sample[i], out);
		first = false;
	}
	sbuf_adds(out, "]}");
}

static void stat_sources(const struct snapshot *s, struct sbuf *out)
{
	if (s->nsources == 0) {
		sbuf_adds(out, "  \"sources\": []\n");
		return;
	}
	sbuf_adds(out, "  \"sources\": [\n");
	for (uint32_t i = 0; i < s->nsources; i++) {
		stat_source(s, &s->sources[i], out);
		sbuf_adds(out, i + 1 < s->nsources ? ",\n" : "\n");
	}
	sbuf_adds(out, "  ]\n");
}

/* The HTTP front's live figures (http_stats.h), as of now. */
static void stat_http(struct sbuf *out)
{
	struct http_stats hs;
	bool first = true;

	http_stats_get(&hs);
	sbuf_printf(out,
		    "  \"http\": {\"enabled\": %s, \"connections\": %" PRIu64
		    ", \"connections_total\": %" PRIu64 ", \"connections_refused\": %" PRIu64
		    ", \"rate_limited\": %" PRIu64 ", \"requests\": {",
		    hs.enabled ? "true" : "false", hs.connections, hs.connections_total,
		    hs.connections_refused, hs.rate_limited);
	for (int c = 0; c < HTTP_CLASS_COUNT; c++) {
		for (int i = 0; i < HTTP_STATS_CODES; i++) {
			if (!hs.requests[c][i])
				continue;
			sbuf_printf(out, "%s\"%s %s\": %" PRIu64, first ? "" : ", ",
				    http_class_name(c), http_code_label(i), hs.requests[c][i]);
			first = false;
		}
	}
	sbuf_printf(out,
		    "}, \"latency_seconds\": {\"count\": %" PRIu64 ", \"sum\": %.6f}},\n",
		    hs.latency_count, finite_or_zero(hs.latency_sum));
}

/* The session table's figures: live ones, read now, not the snapshot's. */
static void stat_sessions(struct sbuf *out)
{
	struct session_stats ss;

	session_get_stats(&ss);
	sbuf_printf(out,
		    "  \"sessions\": {\"active\": %" PRIu32 ", \"max\": %" PRIu32
		    ", \"ttl_s\": %" PRIu32 ", \"created_total\": %" PRIu64
		    ", \"moved_total\": %" PRIu64 ", \"dropped_total\": %" PRIu64 "},\n",
		    ss.active, ss.max, ss.ttl_s, ss.created_total, ss.moved_total,
		    ss.dropped_total);
}

/* The gateway's live figures (gw_stats.h), as of now; its ejections are
 * the snapshot's (the engine's), the sessions the one table's. */
static void stat_gateway(const struct snapshot *s, struct sbuf *out)
{
	struct gw_stats g;
	struct session_stats ss;

	gw_stats_get(&g);
	session_get_stats(&ss);
	sbuf_printf(out,
		    "  \"gateway\": {\"enabled\": %s, \"connections\": %" PRIu64
		    ", \"max_connections\": %" PRIu64 ", \"connections_total\": {",
		    g.enabled ? "true" : "false", g.connections, g.max_connections);
	for (int o = 0; o < GW_OUT_COUNT; o++)
		sbuf_printf(out, "%s\"%s\": %" PRIu64, o ? ", " : "", gw_outcome_name(o),
			    g.connections_total[o]);
	sbuf_printf(
	    out,
	    "}, \"bytes_in\": %" PRIu64 ", \"bytes_out\": %" PRIu64 ", \"retries\": %" PRIu64
	    ", \"replays\": %" PRIu64 ", \"ejections\": %" PRIu64 ", \"sessions_active\": %" PRIu32
	    ", \"handshake_seconds\": {\"count\": %" PRIu64 ", \"sum\": %.6f}},\n",
	    g.bytes_in, g.bytes_out, g.retries, g.replays,
	    s->stats.ejections_total[SNAP_EJECT_GATEWAY],
	    ss.active, g.handshake_count, finite_or_zero(g.handshake_sum));
}

static const char *const geo_db_key[2] = { "country_db", "asn_db" };
static const char *const geo_db_label[2] = { "country", "asn" };

/* The [geo] databases: each one's file, build date, type and error (all
 * null when off), and the lookups made. */
static void stat_geo(const struct snap_stats *st, struct sbuf *out)
{
	char date[16];

	sbuf_adds(out, "  \"geo\": {");
	for (int k = 0; k < 2; k++) {
		const struct snap_geo_db *g = &st->geo[k];

		sbuf_printf(out, "\"%s\": {\"path\": ", geo_db_key[k]);
		json_str_or_null(out, g->path);
		sbuf_adds(out, ", \"build_date\": ");
		json_str_or_null(out, g->build_epoch ? geo_date(g->build_epoch, date, sizeof(date))
						     : NULL);
		sbuf_adds(out, ", \"type\": ");
		json_str_or_null(out, g->build_epoch ? g->type : NULL);
		sbuf_adds(out, ", \"error\": ");
		json_str_or_null(out, g->error);
		sbuf_adds(out, "}, ");
	}
	sbuf_printf(out, "\"lookups_total\": %" PRIu64 "},\n", st->geo_lookups_total);
}

void render_stat_json(const struct snapshot *s, int arg, struct sbuf *out)
{
	const struct snap_stats *st = &s->stats;
	int64_t uptime = (int64_t)st->built.tv_sec - st->started;

	sbuf_printf(out, "{\n  \"version\": \"%s\",\n  \"generation\": %" PRIu64 ",\n  \"built\": ",
		    PROXYFS_VERSION, st->generation);
	add_time(out, st->built);
	sbuf_printf(out, ",\n  \"started\": %" PRId64 ",\n  \"uptime_seconds\": %" PRId64 ",\n",
		    st->started, uptime > 0 ? uptime : 0);
	stat_pool(st, out);
	stat_countries(s, out);
	stat_scan(st, out);
	stat_engine(st, out);
	stat_ejections(s, out);
	sbuf_printf(out,
		    "  \"store\": {\"writes\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"error\": ",
		    st->store_writes_total, st->store_errors_total);
	json_str_or_null(out, st->store_error);
	sbuf_adds(out, "},\n  \"health\": ");
	sbuf_add_json_str(out, st->health);
	sbuf_adds(out, ",\n");
	stat_geo(st, out);
	stat_http(out);
	stat_gateway(s, out);
	stat_sessions(out);
	stat_judges(s, out);
	stat_sources(s, out);
	sbuf_adds(out, "}\n");
}

/* --- metrics --- */

static void family(struct sbuf *out, const char *name, const char *type, const char *help)
{
	sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram family: cumulative[0..n) per bound(i), then +Inf (= count),
 * the sum and the count. */
static void histogram(struct sbuf *out, const char *name, const char *help,
		      const char *(*bound)(int i), const uint64_t *cumulative, int n,
		      uint64_t count, double sum)
{
	family(out, name, "histogram", help);
	for (int b = 0; b < n; b++)
		sbuf_printf(out, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, bound(b),
			    cumulative[b]);
	sbuf_printf(out,
		    "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n",
		    name, count, name, finite_or_zero(sum), name, count);
}

/* A family of one unlabelled sample. */
static void scalar(struct sbuf *out, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	family(out, name, type, help);
	sbuf_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* A label value, escaped as the exposition format asks. */
static void label_value(struct sbuf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			sbuf_adds(out, "\\\\");
		else if (*v == '"')
			sbuf_adds(out, "\\\"");
		else if (*v == '\n')
			sbuf_adds(out, "\\n");
		else
			sbuf_addc(out, *v);
	}
}

static void labelled(struct sbuf *out, const char *name, const char *label, const char *value,
		     uint64_t v)
{
	sbuf_printf(out, "%s{%s=\"", name, label);
	label_value(out, value);
	sbuf_printf(out, "\"} %" PRIu64 "\n", v);
}

static void metrics_pool(const struct snap_stats *st, struct sbuf *out)
{
	family(out, "proxyfs_proxies", "gauge", "Proxies in the pool by check state.");
	labelled(out, "proxyfs_proxies", "state", "alive", st->alive);
	labelled(out, "proxyfs_proxies", "state", "dead", st->dead);
	labelled(out, "proxyfs_proxies", "state", "unknown", st->unknown);
	family(out, "proxyfs_proxies_alive", "gauge", "Live proxies by protocol folder.");
	for (int f = 0; f < PROXY_PROTO_COUNT; f++)
		labelled(out, "proxyfs_proxies_alive", "protocol", proxy_proto_name(f),
			 st->alive_by_folder[f]);
	scalar(out, "proxyfs_proxies_removed", "gauge",
	       "Proxies kept out of the pool by control/remove.", st->removed);
	scalar(out, "proxyfs_proxies_dropped", "gauge",
	       "Proxies dead for too long, kept but no longer checked.", st->dropped);
}

/* A sample per country some live proxy is in (a bounded label set). */
static void metrics_countries(const struct snapshot *s, struct sbuf *out)
{
	family(out, "proxyfs_live_proxies_by_country", "gauge",
	       "Live proxies by the country they come out in (unknown: no database or no entry).");
	for (uint32_t i = 0; i < s->ncountries; i++)
		labelled(out, "proxyfs_live_proxies_by_country", "country",
			 s->countries[i].code[0] ? s->countries[i].code : "unknown",
			 s->countries[i].n);
}

static void metrics_scan(const struct snap_stats *st, struct sbuf *out)
{
	scalar(out, "proxyfs_scan_running", "gauge", "1 while a scan of the pool runs.",
	       st->scan_running);
	scalar(out, "proxyfs_scans_total", "counter", "Scans of the pool started.",
	       st->scan_generation);
	scalar(out, "proxyfs_scan_checked", "gauge", "Proxies checked so far by the current scan.",
	       st->scan_checked);
	scalar(out, "proxyfs_scan_size", "gauge", "Proxies the current scan checks.",
	       st->scan_total);
	family(out, "proxyfs_scan_last_duration_seconds", "gauge",
	       "Duration of the last finished scan.");
	sbuf_printf(out, "proxyfs_scan_last_duration_seconds %.3f\n",
		    finite_or_zero(st->last_scan_seconds));
}

static void metrics_engine(const struct snap_stats *st, struct sbuf *out)
{
	family(out, "proxyfs_checks_total", "counter", "Finished checks by result.");
	for (int r = 0; r < SNAP_RESULT_CLASSES && r < CHK_RESULT_COUNT; r++)
		labelled(out, "proxyfs_checks_total", "result", chk_result_name(r),
			 st->checks_total[r]);
	scalar(out, "proxyfs_checks_in_flight", "gauge", "Checks in flight.", st->in_flight);
	scalar(out, "proxyfs_checks_in_flight_max", "gauge", "Most checks in flight at once.",
	       st->in_flight_max);
	scalar(out, "proxyfs_check_concurrency_limit", "gauge",
	       "Current (adaptive) limit of checks in flight.", st->concurrency);
	scalar(out, "proxyfs_check_concurrency_configured", "gauge",
	       "Limit of checks in flight the configuration asks for.", st->concurrency_conf);
	scalar(out, "proxyfs_check_concurrency_max", "gauge",
	       "Most checks in flight the open-file limit leaves room for.",
	       st->concurrency_fd_max);
	family(out, "proxyfs_check_concurrency_lowered_total", "counter",
	       "Times the limit of checks in flight was lowered, by reason.");
	for (size_t i = 0; i < NLOWERED; i++)
		labelled(out, "proxyfs_check_concurrency_lowered_total", "reason",
			 limit_why[lowered_why[i]], st->concurrency_lowered[lowered_why[i]]);
	family(out, "proxyfs_check_latency_ratio", "gauge",
	       "Latency of recent checks that succeeded over their proxies' usual (0: too few).");
	sbuf_printf(out, "proxyfs_check_latency_ratio %.3f\n", finite_or_zero(st->latency_ratio));
	scalar(out, "proxyfs_local_requeues_total", "counter",
	       "Checks requeued because our own side failed.", st->local_requeues_total);
	scalar(out, "proxyfs_check_retries_total", "counter", "Checks retried after a failure.",
	       st->retries_total);
	scalar(out, "proxyfs_checks_paused", "gauge",
	       "1 while checking waits for a judge to answer.", st->paused);
	scalar(out, "proxyfs_checks_held_total", "counter",
	       "Failed checks not applied while the judges were in doubt.", st->held_total);
}

static void metrics_ejections(const struct snap_stats *st, struct sbuf *out)
{
	family(out, "proxyfs_ejections_total", "counter",
	       "Live proxies taken out of the live set until their re-check, by who reported them.");
	for (int b = SNAP_EJECT_CONTROL; b < SNAP_EJECT_BY_COUNT; b++)
		labelled(out, "proxyfs_ejections_total", "by", eject_by[b], st->ejections_total[b]);
}

/* Counters are the families whose name ends in _total. */
static const char *type_by_name(const char *name)
{
	size_t n = strlen(name);

	return n > 6 && strcmp(name + n - 6, "_total") == 0 ? "counter" : "gauge";
}

/* One family with a sample per judge; field picks the figure. */
static void metrics_per_judge(const struct snapshot *s, struct sbuf *out, const char *name,
			      const char *help, uint64_t (*field)(const struct snap_judge *))
{
	family(out, name, type_by_name(name), help);
	for (uint32_t i = 0; i < s->njudges; i++)
		labelled(out, name, "judge", s->judges[i].url, field(&s->judges[i]));
}

static uint64_t judge_up(const struct snap_judge *j)
{
	return j->healthy;
}

static uint64_t judge_checks(const struct snap_judge *j)
{
	return j->checks;
}

static uint64_t judge_last_probe(const struct snap_judge *j)
{
	return j->last_probe > 0 ? (uint64_t)j->last_probe : 0;
}

static void metrics_judges(const struct snapshot *s, struct sbuf *out)
{
	metrics_per_judge(s, out, "proxyfs_judge_up",
			  "1 when the judge answered its last direct probe.", judge_up);
	metrics_per_judge(s, out, "proxyfs_judge_checks_total", "Checks sent through the judge.",
			  judge_checks);
	metrics_per_judge(s, out, "proxyfs_judge_last_probe_timestamp_seconds",
			  "Unix time of the judge's last direct probe, 0 if never.",
			  judge_last_probe);
}

static void metrics_life(const struct snap_stats *st, struct sbuf *out)
{
	scalar(out, "proxyfs_store_writes_total", "counter", "Results written to the store.",
	       st->store_writes_total);
	scalar(out, "proxyfs_store_errors_total", "counter", "Failed store writes.",
	       st->store_errors_total);
	scalar(out, "proxyfs_snapshots_total", "counter", "Snapshots of the pool published.",
	       st->snapshots_total);
	scalar(out, "proxyfs_renderings_total", "counter",
	       "Cached lists (live.txt, live.json, ...) rendered: one per snapshot read.",
	       snap_renderings());
	family(out, "proxyfs_snapshot_timestamp_seconds", "gauge",
	       "Unix time the current snapshot was built.");
	sbuf_adds(out, "proxyfs_snapshot_timestamp_seconds ");
	add_time(out, st->built);
	sbuf_addc(out, '\n');
	family(out, "proxyfs_start_time_seconds", "gauge", "Unix time the daemon started.");
	sbuf_printf(out, "proxyfs_start_time_seconds %" PRId64 "\n", st->started);
	scalar(out, "proxyfs_healthy", "gauge", "1 when health is ok, else 0.",
	       strcmp(st->health, "ok") == 0);
}

/* The [geo] databases loaded (one sample each) and the lookups made. */
static void metrics_geo(const struct snap_stats *st, struct sbuf *out)
{
	char date[16];

	scalar(out, "proxyfs_geo_lookups_total", "counter",
	       "Country and network lookups of proxy addresses in the [geo] databases.",
	       st->geo_lookups_total);
	family(out, "proxyfs_geo_database_info", "gauge",
	       "The [geo] database in use, by kind, with its file and build date; always 1.");
	for (int k = 0; k < 2; k++) {
		const struct snap_geo_db *g = &st->geo[k];

		if (!g->path || !g->build_epoch)
			continue;
		sbuf_printf(out, "proxyfs_geo_database_info{db=\"%s\",path=\"", geo_db_label[k]);
		label_value(out, g->path);
		sbuf_adds(out, "\",build_date=\"");
		label_value(out, geo_date(g->build_epoch, date, sizeof(date)));
		sbuf_adds(out, "\"} 1\n");
	}
}

/* One family with a sample per source; field picks the figure. */
static void metrics_per_source(const struct snapshot *s, struct sbuf *out, const char *name,
			       const char *help, uint64_t (*field)(const struct snap_source *))
{
	family(out, name, type_by_name(name), help);
	for (uint32_t i = 0; i < s->nsources; i++)
		labelled(out, name, "source", s->sources[i].name, field(&s->sources[i]));
}

static uint64_t src_proxies(const struct snap_source *src)
{
	return src->proxies;
}

static uint64_t src_invalid(const struct snap_source *src)
{
	return src->invalid;
}

static uint64_t src_alive(const struct snap_source *src)
{
	return src->alive;
}

static uint64_t src_up(const struct snap_source *src)
{
	return !src->error || !*src->error;
}

static uint64_t src_last_read(const struct snap_source *src)
{
	return src->last_read > 0 ? (uint64_t)src->last_read : 0;
}

static uint64_t src_fetches(const struct snap_source *src)
{
	return src->fetches_total;
}

static uint64_t src_errors(const struct snap_source *src)
{
	return src->errors_total;
}

static uint64_t src_status(const struct snap_source *src)
{
	return src->http_status > 0 ? (uint64_t)src->http_status : 0;
}

static void metrics_sources(const struct snapshot *s, struct sbuf *out)
{
	metrics_per_source(s, out, "proxyfs_source_fetches_total", "Downloads of the source.",
			   src_fetches);
	metrics_per_source(s, out, "proxyfs_source_errors_total",
			   "Failed reads or downloads of the source.", src_errors);
	metrics_per_source(s, out, "proxyfs_source_http_status",
			   "HTTP status of the source's last download, 0 for files.", src_status);
	metrics_per_source(s, out, "proxyfs_source_proxies",
			   "Valid distinct proxy lines in the source's last read.", src_proxies);
	metrics_per_source(s, out, "proxyfs_source_invalid_lines",
			   "Lines of the source's last read that did not parse.", src_invalid);
	metrics_per_source(s, out, "proxyfs_source_proxies_alive", "Live proxies the source lists.",
			   src_alive);
	metrics_per_source(s, out, "proxyfs_source_up", "1 when the source's last read succeeded.",
			   src_up);
	metrics_per_source(s, out, "proxyfs_source_last_read_timestamp_seconds",
			   "Unix time of the source's last read, 0 if never.", src_last_read);
}

/* The HTTP front's families, when it serves (read now, not from s). */
static void metrics_http(struct sbuf *out)
{
	struct http_stats hs;

	http_stats_get(&hs);
	if (!hs.enabled)
		return;
	family(out, "proxyfs_http_requests_total", "counter",
	       "HTTP requests answered, by path class and status code.");
	for (int c = 0; c < HTTP_CLASS_COUNT; c++)
		for (int i = 0; i < HTTP_STATS_CODES; i++)
			if (hs.requests[c][i])
				sbuf_printf(out,
					    "proxyfs_http_requests_total{class=\"%s\",code=\"%s\"} "
					    "%" PRIu64 "\n",
					    http_class_name(c), http_code_label(i), hs.requests[c][i]);
	scalar(out, "proxyfs_http_rate_limited_total", "counter",
	       "HTTP requests refused with 429 by the per-client rate limit.", hs.rate_limited);
	histogram(out, "proxyfs_http_request_duration_seconds",
		  "Time from a whole request to its answer, control waits included.",
		  http_stats_bound, hs.latency, HTTP_STATS_BUCKETS, hs.latency_count,
		  hs.latency_sum);
	scalar(out, "proxyfs_http_connections", "gauge", "HTTP connections open now.",
	       hs.connections);
	scalar(out, "proxyfs_http_connections_refused_total", "counter",
	       "HTTP connections closed at once: over max_connections.", hs.connections_refused);
}

/* The gateway's families, when it serves (read now, not from s). */
static void metrics_gateway(struct sbuf *out)
{
	struct gw_stats g;

	gw_stats_get(&g);
	if (!g.enabled)
		return;
	scalar(out, "proxyfs_gateway_connections", "gauge", "Gateway client connections open now.",
	       g.connections);
	scalar(out, "proxyfs_gateway_max_connections", "gauge",
	       "Gateway client connections allowed at once: its share of open files.",
	       g.max_connections);
	family(out, "proxyfs_gateway_connections_total", "counter",
	       "Gateway client connections by how they ended (ok: a tunnel was made).");
	for (int o = 0; o < GW_OUT_COUNT; o++)
		labelled(out, "proxyfs_gateway_connections_total", "outcome", gw_outcome_name(o),
			 g.connections_total[o]);
	family(out, "proxyfs_gateway_bytes_total", "counter",
	       "Bytes relayed by the gateway: in from clients, out back to them.");
	labelled(out, "proxyfs_gateway_bytes_total", "direction", "in", g.bytes_in);
	labelled(out, "proxyfs_gateway_bytes_total", "direction", "out", g.bytes_out);
	scalar(out, "proxyfs_gateway_retries_total", "counter",
	       "Upstreams tried again for a client after one failed.", g.retries);
	scalar(out, "proxyfs_gateway_replays_total", "counter",
	       "Tunnels made again through another upstream after theirs closed before "
	       "answering.",
	       g.replays);
	histogram(out, "proxyfs_gateway_handshake_seconds",
		  "Time from a client's request to its upstream tunnel, successful ones.",
		  gw_stats_bound, g.handshake, GW_STATS_BUCKETS, g.handshake_count,
		  g.handshake_sum);
}

/* The session table's figures, read now (see stat_sessions). */
static void metrics_sessions(struct sbuf *out)
{
	struct session_stats ss;

	session_get_stats(&ss);
	scalar(out, "proxyfs_sessions_active", "gauge",
	       "Session keys in the table, used within the time to live.", ss.active);
	scalar(out, "proxyfs_sessions_created_total", "counter",
	       "Session keys placed for the first time or after they expired.", ss.created_total);
	scalar(out, "proxyfs_sessions_moved_total", "counter",
	       "Session keys placed again because their proxy left.", ss.moved_total);
	scalar(out, "proxyfs_sessions_dropped_total", "counter",
	       "Session keys dropped because the table was full.", ss.dropped_total);
}

void render_metrics(const struct snapshot *s, int arg, struct sbuf *out)
{
	const struct snap_stats *st = &s->stats;

	family(out, "proxyfs_build_info", "gauge", "proxyfs version, always 1.");
	sbuf_printf(out, "proxyfs_build_info{version=\"%s\"} 1\n", PROXYFS_VERSION);
	metrics_pool(st, out);
	metrics_countries(s, out);
	metrics_scan(st, out);
	metrics_engine(st, out);
	metrics_ejections(st, out);
	metrics_life(st, out);
	metrics_geo(st, out);
	metrics_sessions(out);
	metrics_judges(s, out);
	metrics_sources(s, out);
	metrics_http(out);
	metrics_gateway(out);
}

/* --- health --- */

void render_health(const struct snapshot *s, int arg, struct sbuf *out)
{
	sbuf_adds(out, s->stats.health);
	sbuf_addc(out, '\n');
}
