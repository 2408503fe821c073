/* render_all: the files that say why a proxy is what it is.
 *
 * /all.json (every tracked proxy with its state and last result),
 * /dead.txt, /removed.txt and /lookup/NAME, from a snapshot's all[]. The
 * last result is kept as a few numbers per proxy (struct snap_result) and
 * worded only here, e.g. "timeout after connect, waiting for the judge's
 * answer", "wrong_answer: 200 without the expected text", "auth: 407".
 * Pure functions of the snapshot, like the rest of render.c; not here:
 * live.txt, live.json and the figures.
 */
#include "render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check_result.h"
#include "proxy.h"

/* --- the last result in words --- */

static const char *const state_names[] = {
    [SNAP_ALIVE] = "alive",	[SNAP_DEAD] = "dead",	    [SNAP_UNKNOWN] = "unknown",
    [SNAP_DROPPED] = "dropped", [SNAP_REMOVED] = "removed",
};

const char *render_state_name(int state)
{
	if (state < 0 || (size_t)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[state];
}

/* The errnos a check reports, in words that do not depend on the locale
 * (strerror's do, and need not be thread-safe). */
static const char *errno_words(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return "connection refused";
	case ECONNRESET:
		return "connection reset";
	case ECONNABORTED:
		return "connection aborted";
	case EPIPE:
		return "broken pipe";
	case EHOSTUNREACH:
		return "host unreachable";
	case EHOSTDOWN:
		return "host down";
	case ENETUNREACH:
		return "network unreachable";
	case ENETDOWN:
		return "network down";
	case EAFNOSUPPORT:
		return "address family not supported";
	case EADDRNOTAVAIL:
		return "no local address";
	case EACCES:
	case EPERM:
		return "not permitted";
	case ETIMEDOUT:
		return "timed out";
	default:
		return NULL;
	}
}

static void add_errno(struct sbuf *out, int err)
{
	const char *w = errno_words(err);

	if (w)
		sbuf_adds(out, w);
	else
		sbuf_printf(out, "errno %d", err);
}

/* Where a check ended, as a phrase following its class. */
static const char *stage_words(int stage)
{
	switch (stage) {
	case CHK_STAGE_RESOLVE:
		return "looking up the proxy's name";
	case CHK_STAGE_CONNECT:
		return "connecting";
	case CHK_STAGE_HANDSHAKE:
		return "after connect, in the proxy's handshake";
	case CHK_STAGE_TLS:
		return "after connect, in TLS with the judge";
	default:
		return "after connect, waiting for the judge's answer";
	}
}

/* SOCKS5 reply codes (RFC 1928 6.), SOCKS4's 91-93. */
static const char *socks_words(uint8_t code)
{
	static const char *const s5[] = {
	    NULL,
	    "general failure",
	    "not allowed by its rules",
	    "network unreachable",
	    "host unreachable",
	    "connection refused",
	    "TTL expired",
	    "command not supported",
	    "address type not supported",
	};

	if (code < sizeof(s5) / sizeof(s5[0]))
		return s5[code];
	if (code == 91)
		return "request rejected or failed";
	if (code == 92 || code == 93)
		return "identd refused";
	if (code == 0xff)
		return "no acceptable authentication method";
	return NULL;
}

static void add_socks(struct sbuf *out, uint8_t code)
{
	const char *w = socks_words(code);

	sbuf_printf(out, "SOCKS reply %u", code);
	if (w)
		sbuf_printf(out, " (%s)", w);
}

static void why_refused(const struct snap_result *r, struct sbuf *out)
{
	if (r->stage == CHK_STAGE_RESOLVE && r->err == EHOSTUNREACH) {
		sbuf_adds(out, ": the proxy's name does not resolve");
	} else if (r->socks_reply) {
		sbuf_adds(out, ": ");
		add_socks(out, r->socks_reply);
	} else if (r->err) {
		sbuf_adds(out, ": ");
		add_errno(out, r->err);
	}
}

static void why_reset(const struct snap_result *r, struct sbuf *out)
{
	sbuf_adds(out, ": ");
	if (r->err)
		add_errno(out, r->err);
	else
		sbuf_adds(out, "closed");
	if (r->stage == CHK_STAGE_ANSWER)
		sbuf_adds(out, " before the judge's answer was whole");
	else
		sbuf_printf(out, " %s%s", r->stage == CHK_STAGE_CONNECT ? "while " : "",
			    stage_words(r->stage));
}

static void why_protocol(const struct snap_result *r, struct sbuf *out)
{
	if (r->why == CHK_WHY_EARLY) {
		sbuf_adds(out, ": the proxy sent data before our request");
	} else if (r->err) {
		sbuf_adds(out, ": the check could not start (");
		add_errno(out, r->err);
		sbuf_addc(out, ')');
	} else if (r->stage == CHK_STAGE_ANSWER) {
		sbuf_adds(out, ": a malformed answer");
	} else {
		sbuf_adds(out, ": a malformed handshake reply");
	}
}

static void why_wrong(const struct snap_result *r, struct sbuf *out)
{
	switch (r->why) {
	case CHK_WHY_STATUS:
		if (r->stage == CHK_STAGE_HANDSHAKE)
			sbuf_printf(out, ": CONNECT answered %u", r->status);
		else
			sbuf_printf(out, ": %u, not 200", r->status);
		break;
	case CHK_WHY_TOKEN:
		sbuf_adds(out, ": 200 echoing another check's request (a cached or replayed page)");
		break;
	case CHK_WHY_TOO_BIG:
		sbuf_adds(out, ": an answer over the size limit");
		break;
	default:
		sbuf_adds(out, ": 200 without the expected text");
		break;
	}
}

/* A SOCKS refusal of our credentials: SOCKS5's method reply (0xff: none
 * of ours), SOCKS4's identd codes, or else SOCKS5's password status. */
static void why_socks_auth(uint8_t code, struct sbuf *out)
{
	if (code == 0xff || code == 92 || code == 93)
		add_socks(out, code);
	else
		sbuf_printf(out, "SOCKS5 user and password refused (status %u)", code);
}

void render_result(const struct snap_result *r, struct sbuf *out)
{
	int res = r->result - 1;

	if (r->result == 0 || res >= CHK_RESULT_COUNT) {
		sbuf_adds(out, "not checked since start");
		return;
	}
	sbuf_adds(out, chk_result_name(res));
	switch (res) {
	case CHK_TIMEOUT:
		sbuf_addc(out, ' ');
		sbuf_adds(out, stage_words(r->stage));
		break;
	case CHK_REFUSED:
		why_refused(r, out);
		break;
	case CHK_RESET:
		why_reset(r, out);
		break;
	case CHK_PROTO_ERR:
		why_protocol(r, out);
		break;
	case CHK_BAD_ANSWER:
		why_wrong(r, out);
		break;
	case CHK_AUTH:
		if (r->socks_reply) {
			sbuf_adds(out, ": ");
			why_socks_auth(r->socks_reply, out);
		} else if (r->status) {
			sbuf_printf(out, ": %u", r->status);
		}
		break;
	case CHK_TLS_ERR:
		sbuf_adds(out, ": TLS with the judge failed through the tunnel");
		break;
	case CHK_LOCAL_ERR:
	case CHK_UNREACHABLE:
		if (r->err) {
			sbuf_adds(out, ": ");
			add_errno(out, r->err);
		}
		break;
	default:
		break;
	}
}

/* --- the records --- */

/* A decimal number without printf, which all.json would call 400,000
 * times at 100,000 proxies. */
static void add_num(struct sbuf *out, int64_t v)
{
	char buf[24], *p = buf + sizeof(buf);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	sbuf_add(out, p, (size_t)(buf + sizeof(buf) - p));
}

/* A JSON number, or null when 0 (never, not known). */
static void json_num_or_null(struct sbuf *out, int64_t v)
{
	if (v)
		add_num(out, v);
	else
		sbuf_adds(out, "null");
}

/* One all.json object, without a line end. */
static void json_record(const struct snapshot *s, struct sbuf *out, const struct snap_proxy *p,
			struct sbuf *scratch)
{
	const char *sep, *name;
	bool first = true;

	sbuf_adds(out, "{\"uri\":");
	render_uri_json(s, p->uri, out);
	sbuf_adds(out, ",\"protocol\":\"");
	sbuf_adds(out, proxy_proto_name(p->proto));
	sbuf_adds(out, "\",\"state\":\"");
	sbuf_adds(out, render_state_name(p->state));
	sbuf_adds(out, "\",\"result\":");
	if (p->ejected) {
		sbuf_adds(out, "\"reported_bad\"");
	} else if (p->last.result && p->last.result <= CHK_RESULT_COUNT) {
		sbuf_addc(out, '"');
		sbuf_adds(out, chk_result_name(p->last.result - 1));
		sbuf_addc(out, '"');
	} else {
		sbuf_adds(out, "null");
	}
	sbuf_reset(scratch);
	if (p->ejected)
		sbuf_adds(scratch, "reported bad through control/bad, out of the live set until "
				   "its re-check (queued at once); its last check: ");
	render_result(&p->last, scratch);
	sbuf_adds(out, ",\"detail\":");
	sbuf_add_json_str(out, sbuf_cstr(scratch));
	sbuf_adds(out, ",\"fails_in_row\":");
	add_num(out, p->fails_in_row);
	sbuf_adds(out, ",\"last_checked\":");
	json_num_or_null(out, p->last_checked);
	sbuf_adds(out, ",\"next_check\":");
	json_num_or_null(out, p->next_check);
	sbuf_adds(out, ",\"latency_ms\":");
	if (p->state == SNAP_ALIVE)
		add_num(out, p->latency_ms);
	else
		sbuf_adds(out, "null");
	render_geo_json(p, out);
	sbuf_adds(out, ",\"sources\":[");
	for (name = p->sources; name && *name; name = *sep ? sep + 1 : sep) {
		sep = name + strcspn(name, ",");
		if (sep == name)
			continue;
		sbuf_reset(scratch);
		sbuf_add(scratch, name, (size_t)(sep - name));
		if (!first)
			sbuf_addc(out, ',');
		sbuf_add_json_str(out, sbuf_cstr(scratch));
		first = false;
	}
	sbuf_addc(out, ']');
	if (sbuf_failed(scratch))
		out->failed = true;
	sbuf_addc(out, '}');
}

static int by_state_uri(const void *pa, const void *pb)
{
	const struct snap_proxy *a = *(const struct snap_proxy *const *)pa;
	const struct snap_proxy *b = *(const struct snap_proxy *const *)pb;

	if (a->state != b->state)
		return a->state < b->state ? -1 : 1;
	return strcmp(a->uri, b->uri);
}

/* The records that are not live, in state then URI order (the snapshot
 * keeps them in the pool's order): a malloc'ed array of *n, or NULL with
 * out marked failed. state < 0: every one. */
static const struct snap_proxy **others_sorted(const struct snapshot *s, int state, uint32_t *n,
					       struct sbuf *out)
{
	const struct snap_proxy **v = malloc(((size_t)s->nall - s->nlive + 1) * sizeof(*v));

	*n = 0;
	if (!v) {
		out->failed = true;
		return NULL;
	}
	for (uint32_t i = s->nlive; i < s->nall; i++)
		if (state < 0 || s->all[i].state == state)
			v[(*n)++] = &s->all[i];
	qsort(v, *n, sizeof(*v), by_state_uri);
	return v;
}

void render_all_json(const struct snapshot *s, int arg, struct sbuf *out)
{
	struct sbuf scratch;
	const struct snap_proxy **v;
	uint32_t n;

	(void)arg;
	v = others_sorted(s, -1, &n, out);
	if (!v)
		return;
	sbuf_init(&scratch);
	sbuf_adds(out, "[\n");
	for (uint32_t i = 0; i < s->nlive + n; i++) {
		json_record(s, out, i < s->nlive ? &s->live[i] : v[i - s->nlive], &scratch);
		sbuf_adds(out, i + 1 < s->nlive + n ? ",\n" : "\n");
	}
	sbuf_adds(out, "]\n");
	sbuf_free(&scratch);
	free(v);
}

void render_dead_txt(const struct snapshot *s, int arg, struct sbuf *out)
{
	const struct snap_proxy **v;
	uint32_t n;

	(void)arg;
	v = others_sorted(s, SNAP_DEAD, &n, out);
	for (uint32_t i = 0; v && i < n; i++) {
		render_uri(s, v[i]->uri, out);
		sbuf_addc(out, ' ');
		render_result(&v[i]->last, out);
		sbuf_addc(out, '\n');
	}
	free(v);
}

void render_removed_txt(const struct snapshot *s, int arg, struct sbuf *out)
{
	const struct snap_proxy **v;
	uint32_t n;

	(void)arg;
	v = others_sorted(s, SNAP_REMOVED, &n, out);
	for (uint32_t i = 0; v && i < n; i++) {
		render_uri(s, v[i]->uri, out);
		sbuf_addc(out, '\n');
	}
	free(v);
}

/* --- lookup/NAME --- */

/* name with %XX decoded into buf; false if it does not fit or a % is bad. */
static bool percent_decode(const char *name, char *buf, size_t size)
{
	size_t o = 0;

	for (const char *p = name; *p; p++) {
		int hi, lo;

		if (o + 1 >= size)
			return false;
		if (*p != '%') {
			buf[o++] = *p;
			continue;
		}
		hi = proxy_hex_digit(p[1]);
		lo = hi < 0 ? -1 : proxy_hex_digit(p[2]);
		if (lo < 0)
			return false;
		buf[o++] = (char)(hi << 4 | lo);
		p += 2;
	}
	buf[o] = '\0';
	return true;
}

/* What a lookup name asks for: a whole URI, or a host and port. An HTTP
 * proxy's URI names it in both forms: as live.txt prints it (http://) and
 * as removed.txt keeps a tunnel (https://), which is what an http:// line
 * in control/remove removes too. */
struct lookup_key {
	bool uri;
	char printed[PROXY_URI_MAX], tunnel[PROXY_URI_MAX];
	struct proxy_addr a;
};

static bool lookup_key_parse(const char *name, struct lookup_key *k)
{
	char line[PROXY_URI_MAX];

	if (!percent_decode(name, line, sizeof(line)) ||
	    proxy_parse_line(line, strlen(line), PROXY_HTTP, &k->a) != PROXY_LINE_OK)
		return false;
	k->uri = strstr(line, "://") != NULL;
	if (!k->uri)
		return true;
	k->tunnel[0] = '\0';
	if (proxy_format_uri(&k->a, k->printed, sizeof(k->printed)) < 0)
		return false;
	if (k->a.proto == PROXY_HTTP) {
		k->a.tunnel = true;
		if (proxy_format_key(&k->a, k->tunnel, sizeof(k->tunnel)) < 0)
			return false;
	}
	return true;
}

static bool lookup_match(const struct lookup_key *k, const struct snap_proxy *p)
{
	if (k->uri)
		return strcmp(p->uri, k->printed) == 0 || strcmp(p->uri, k->tunnel) == 0;
	return p->port == k->a.port && strcmp(p->host, k->a.host) == 0;
}

uint32_t render_lookup(const struct snapshot *s, const char *name, struct sbuf *out)
{
	struct lookup_key *k = malloc(sizeof(*k));
	struct sbuf scratch;
	uint32_t n = 0;

	if (!k) {
		out->failed = true;
		return 0;
	}
	sbuf_init(&scratch);
	if (lookup_key_parse(name, k)) {
		for (uint32_t i = 0; i < s->nall; i++) {
			if (!lookup_match(k, &s->all[i]))
				continue;
			json_record(s, out, &s->all[i], &scratch);
			sbuf_addc(out, '\n');
			n++;
		}
	}
	sbuf_free(&scratch);
	free(k);
	return n;
}
