/* http_serve: the tree's reader paths over HTTP; see http_int.h.
 *
 * Every path goes through the path table (tree_lookup, tree_content), so
 * the bytes are the mount's. What a snapshot caches goes out without a
 * copy: the answer's buffer holds a reference to the cached rendering and
 * the snapshot is dropped when the bytes are sent (or the connection is
 * gone). Only what a query narrows is rendered per request: a pick of
 * count proxies, or a list under a filter that is not a folder of the
 * tree (one that is gets that folder's cached file). Files fixed per
 * snapshot carry an ETag (the generation and the daemon's start) and
 * answer a matching If-None-Match with 304; picks and live figures never.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "http_int.h"
#include "http_query.h"
#include "pick.h"
#include "render.h"
#include "session.h"
#include "snapshot.h"

#define CTYPE_TEXT "text/plain; charset=utf-8"
#define CTYPE_JSON "application/json"
#define CTYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* One reader request being served. */
struct serve {
	struct evhttp_request *req;
	const struct tree_node *n;
	const char *path;
	struct http_query q;
	bool json; /* lists, picks, directories: answer in JSON */
	struct snapshot *s;
	enum http_class c;
	uint64_t t0;
	char source[SESSION_KEY_MAX + 1]; /* a source folder's name, for its filter */
};

enum http_class http_class_of(const struct tree_node *n)
{
	switch (n->kind) {
	case TREE_DIR:
		return HTTP_CLASS_DIR;
	case TREE_RANDOM:
	case TREE_NEXT:
	case TREE_SESSION:
		return HTTP_CLASS_PICK;
	default:
		break;
	}
	if (n->render == render_stat_json)
		return HTTP_CLASS_STAT;
	if (n->render == render_metrics)
		return HTTP_CLASS_METRICS;
	if (n->render == render_health)
		return HTTP_CLASS_HEALTH;
	return HTTP_CLASS_LIST;
}

static bool is_pick(const struct tree_node *n)
{
	return n->kind == TREE_RANDOM || n->kind == TREE_NEXT || n->kind == TREE_SESSION;
}

static bool is_list(const struct tree_node *n)
{
	return n->render == render_live_txt || n->render == render_live_json;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && strcmp(s + n - t, tail) == 0;
}

static const char *ctype_of(const struct serve *sv)
{
	if (sv->n->render == render_metrics)
		return CTYPE_METRICS;
	if (ends_with(sv->path, ".json") || sv->n->kind == TREE_LOOKUP)
		return CTYPE_JSON;
	return CTYPE_TEXT;
}

static void send_text(struct serve *sv, int code, const char *text)
{
	http_send_text(sv->req, code, text, sv->c, sv->t0);
}

static void drop_snap_cb(const void *data, size_t len, void *arg)
{
	snap_unref(arg);
}

/* Sends content, which s caches, without copying it: the buffer keeps a
 * snapshot reference until the bytes are gone. */
static void send_cached(struct serve *sv, int code, const char *ctype, const struct sbuf *content)
{
	struct evhttp_request *req = sv->req;
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char num[24];

	evhttp_add_header(oh, "Content-Type", ctype);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(num, sizeof(num), "%zu", content->len);
		evhttp_add_header(oh, "Content-Length", num);
	} else if (content->len && evbuffer_add_reference(out, content->data, content->len,
							  drop_snap_cb, snap_ref(sv->s)) < 0) {
		snap_unref(sv->s);
		http_send_text(req, 500, "out of memory", sv->c, sv->t0);
		return;
	}
	http_done(req, sv->c, code, sv->t0);
	evhttp_send_reply(req, code, NULL, NULL);
}

static void send_buf(struct serve *sv, int code, const char *ctype, const struct sbuf *b)
{
	if (sbuf_failed(b)) {
		send_text(sv, 500, "out of memory");
		return;
	}
	http_send(sv->req, code, ctype, b->data, b->len, sv->c, sv->t0);
}

/* The ETag of what is fixed per snapshot; 304 sent when the client has
 * it (true). */
static bool etag_match(struct serve *sv)
{
	char tag[64];
	const char *inm;

	snprintf(tag, sizeof(tag), "\"%" PRIu64 "-%" PRId64 "\"", sv->s->stats.generation,
		 sv->s->stats.started);
	evhttp_add_header(evhttp_request_get_output_headers(sv->req), "ETag", tag);
	inm = evhttp_find_header(evhttp_request_get_input_headers(sv->req), "If-None-Match");
	if (!inm || (!strstr(inm, tag) && strcmp(inm, "*") != 0))
		return false;
	http_send(sv->req, 304, NULL, NULL, 0, sv->c, sv->t0);
	return true;
}

/* --- files --- */

static void serve_file(struct serve *sv)
{
	const struct sbuf *content;
	struct sbuf buf;
	bool fixed = sv->n->kind == TREE_CACHED || sv->n->render == render_health;
	int code = 200, rc;

	if (fixed && etag_match(sv))
		return;
	sbuf_init(&buf);
	rc = tree_content(sv->n, sv->s, sv->path, &buf, &content);
	if (rc == -ENOENT) {
		send_text(sv, 404, "no such path");
	} else if (rc < 0) {
		send_text(sv, 500, "out of memory");
	} else {
		if (sv->n->render == render_health &&
		    strncmp(content->data ? content->data : "", "ok", 2) != 0)
			code = 503;
		if (content != &buf)
			send_cached(sv, code, ctype_of(sv), content);
		else
			send_buf(sv, code, ctype_of(sv), &buf);
	}
	sbuf_free(&buf);
}

/* --- directories --- */

struct dir_fill {
	struct sbuf *out;
	bool json;
	bool first;
};

static int dir_fill_cb(void *arg, const char *name)
{
	struct dir_fill *d = arg;

	if (d->json) {
		if (!d->first)
			sbuf_adds(d->out, ",\n");
		sbuf_add_json_str(d->out, name);
	} else {
		sbuf_adds(d->out, name);
		sbuf_addc(d->out, '\n');
	}
	d->first = false;
	return sbuf_failed(d->out);
}

static void serve_dir(struct serve *sv)
{
	struct sbuf out;
	struct dir_fill d = {.out = &out, .json = sv->json, .first = true};

	sbuf_init(&out);
	if (sv->json)
		sbuf_adds(&out, "[\n");
	tree_list(sv->n, dir_fill_cb, &d);
	if (sv->json)
		sbuf_adds(&out, d.first ? "]\n" : "\n]\n");
	send_buf(sv, 200, sv->json ? CTYPE_JSON : CTYPE_TEXT, &out);
	sbuf_free(&out);
}

/* --- filters --- */

/* The folder's filter and the query's: false (400 sent) when they do not
 * fit in one filter. */
static bool filter_of(struct serve *sv, struct pick_filter *f)
{
	const char *name = sv->path + strlen("/sources/");
	size_t len = strcspn(name, "/");

	/* A source's folder by its name: the view its lookup found may be
	 * another one in this snapshot (the sources change with reloads). */
	if (strncmp(sv->path, "/sources/", 9) == 0 && len < sizeof(sv->source)) {
		memset(f, 0, sizeof(*f));
		memcpy(sv->source, name, len);
		sv->source[len] = '\0';
		f->sources[0] = sv->source;
		f->nsources = 1;
	} else {
		pick_filter_of_view(f, sv->s, sv->n->arg);
	}
	if (pick_filter_and(f, &sv->q.filter) == 0)
		return true;
	send_text(sv, 400, "source: too many names with the folder's");
	return false;
}

/* The path of the cached list of view in the tree ("/socks5/live.txt"),
 * or NULL when the tree caches none for it. */
static const char *view_list_path(int view, bool json, char *buf, size_t size)
{
	static const int grades[] = {SNAP_ANON_ELITE, SNAP_ANON_ANONYMOUS, SNAP_ANON_TRANSPARENT};

	if (view < 0)
		return json ? "/live.json" : "/live.txt";
	if (json)
		return NULL;
	if (view < PROXY_PROTO_COUNT)
		snprintf(buf, size, "/%s/live.txt", proxy_proto_name((enum proxy_proto)view));
	else if (view < SNAP_VIEW_SOURCES)
		snprintf(buf, size, "/anonymity/%s/live.txt",
			 snap_anon_name(grades[view - SNAP_VIEW_ELITE]));
	else
		return NULL;
	return buf;
}

/* A filter that is a folder of the tree whose list the snapshot caches:
 * that file, sent (true). */
static bool serve_view_list(struct serve *sv, const struct pick_filter *f)
{
	struct tree_node vn;
	const struct sbuf *content;
	char buf[64];
	const char *vpath;
	int view;

	if (sv->q.count || !pick_filter_is_view(f, sv->s, &view))
		return false;
	vpath = view_list_path(view, sv->json, buf, sizeof(buf));
	if (!vpath || !tree_lookup(vpath, &vn) || vn.kind != TREE_CACHED ||
	    tree_content(&vn, sv->s, vpath, NULL, &content) < 0)
		return false;
	send_cached(sv, 200, sv->json ? CTYPE_JSON : CTYPE_TEXT, content);
	return true;
}

/* The live proxies idx[0..n) as live.txt or live.json lines, 200. */
static void send_rendered(struct serve *sv, const uint32_t *idx, uint32_t n)
{
	struct sbuf out;

	sbuf_init(&out);
	if (sv->json)
		render_live_json_of(sv->s, idx, n, &out);
	else
		render_live_txt_of(sv->s, idx, n, &out);
	send_buf(sv, 200, sv->json ? CTYPE_JSON : CTYPE_TEXT, &out);
	sbuf_free(&out);
}

static void serve_list(struct serve *sv)
{
	struct pick_filter f;
	uint32_t *idx = NULL, n = 0;

	if (!filter_of(sv, &f) || serve_view_list(sv, &f))
		return;
	if (pick_list(sv->s, &f, sv->q.count, &idx, &n) < 0) {
		send_text(sv, 500, "out of memory");
		return;
	}
	send_rendered(sv, idx, n);
	free(idx);
}

/* --- picks --- */

static void send_picked(struct serve *sv, const uint32_t *idx, uint32_t n)
{
	evhttp_add_header(evhttp_request_get_output_headers(sv->req), "Cache-Control", "no-store");
	if (n == 0) {
		http_send(sv->req, 404, sv->json ? CTYPE_JSON : CTYPE_TEXT, NULL, 0, sv->c, sv->t0);
		return;
	}
	send_rendered(sv, idx, n);
}

static void serve_pick(struct serve *sv)
{
	struct pick_filter f;
	uint32_t count = sv->q.count ? sv->q.count : 1, *idx, n;

	if (!filter_of(sv, &f))
		return;
	if (sv->n->kind == TREE_SESSION) {
		const char *key = strrchr(sv->path, '/') + 1;
		int rc = session_pick(sv->s, &f, key, strlen(key), &count);

		if (rc == -EINVAL)
			send_text(sv, 404, "no such path");
		else if (rc < 0 && rc != -ENOENT)
			send_text(sv, 500, "out of memory");
		else
			send_picked(sv, &count, rc == 0);
		return;
	}
	if (count > sv->s->nlive)
		count = sv->s->nlive ? sv->s->nlive : 1;
	idx = calloc(count, sizeof(*idx));
	if (!idx) {
		send_text(sv, 500, "out of memory");
		return;
	}
	if (sv->n->kind == TREE_NEXT)
		n = pick_next(sv->s, &f, count, idx);
	else
		n = pick_random(sv->s, &f, count, idx);
	send_picked(sv, idx, n);
	free(idx);
}

/* /random, /next with no query: the mount's own pick. */
static void serve_plain_pick(struct serve *sv)
{
	const struct sbuf *content;
	struct sbuf buf;

	sbuf_init(&buf);
	evhttp_add_header(evhttp_request_get_output_headers(sv->req), "Cache-Control", "no-store");
	if (tree_content(sv->n, sv->s, sv->path, &buf, &content) < 0)
		send_text(sv, 500, "out of memory");
	else if (content->len == 0)
		http_send(sv->req, 404, CTYPE_TEXT, NULL, 0, sv->c, sv->t0);
	else
		send_buf(sv, 200, CTYPE_TEXT, content);
	sbuf_free(&buf);
}

/* --- the entry --- */

/* Does the client ask for JSON (format=json, or an Accept naming it)? */
static bool wants_json(struct evhttp_request *req, const struct http_query *q, bool dflt)
{
	const char *accept;

	if (q->format != HTTP_FORMAT_DEFAULT)
		return q->format == HTTP_FORMAT_JSON;
	accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
	return (accept && strstr(accept, "application/json")) || dflt;
}

/* 0 when the query suits the node; else the 400 was sent. */
static int check_query(struct serve *sv)
{
	char why[160];
	const char *unknown;
	bool narrows = is_pick(sv->n) || is_list(sv->n);

	if (!narrows && (sv->q.filtered || sv->q.count)) {
		snprintf(why, sizeof(why), "%s takes no filter nor count (lists and picks do)",
			 sv->path);
		send_text(sv, 400, why);
		return -EINVAL;
	}
	if (!narrows && sv->n->kind != TREE_DIR && sv->q.format != HTTP_FORMAT_DEFAULT) {
		snprintf(why, sizeof(why), "format: %s has one format", sv->path);
		send_text(sv, 400, why);
		return -EINVAL;
	}
	if (sv->n->kind == TREE_SESSION && sv->q.count) {
		send_text(sv, 400, "count: a session has one proxy");
		return -EINVAL;
	}
	unknown = pick_unknown_source(&sv->q.filter, sv->s);
	if (unknown) {
		snprintf(why, sizeof(why), "source: no source named '%.64s'", unknown);
		send_text(sv, 400, why);
		return -EINVAL;
	}
	return 0;
}

void http_serve_reader(struct evhttp_request *req, const struct tree_node *n, const char *path,
		       const char *query, enum http_class c, uint64_t t0)
{
	struct serve sv = {.req = req, .n = n, .path = path, .c = c, .t0 = t0};
	char why[160];

	if (http_query_parse(query, query ? strlen(query) : 0, &sv.q, why, sizeof(why)) < 0) {
		send_text(&sv, 400, why);
		return;
	}
	sv.json = wants_json(req, &sv.q, n->render == render_live_json);
	sv.s = snap_current();
	if (check_query(&sv) < 0)
		goto out;
	if (n->kind == TREE_DIR)
		serve_dir(&sv);
	else if (is_pick(n) && (sv.q.filtered || sv.q.count || sv.json))
		serve_pick(&sv);
	else if (is_pick(n))
		serve_plain_pick(&sv);
	else if (is_list(n) &&
		 (sv.q.filtered || sv.q.count || sv.json != (n->render == render_live_json)))
		serve_list(&sv);
	else
		serve_file(&sv);
out:
	snap_unref(sv.s);
}
