/* sources: reading proxy lists; see sources.h. */
#include "sources.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "scrape.h"

#define SAMPLE_MAX 120 /* bytes of a bad line kept as a sample */

bool src_is_remote(const struct cfg_source *cs)
{
	return !cs->path;
}

FILE *src_open(struct src_state *st, const struct cfg_source *cs)
{
	FILE *f;

	st->last_try = (int64_t)time(NULL);
	f = fopen(cs->path, "re");
	if (!f) {
		char why[200];

		snprintf(why, sizeof(why), "%s: %s", cs->path, strerror(errno));
		src_failed(st, why, 0);
		log_warn("source %s: %s", cs->name, st->error);
	}
	return f;
}

static void sample_bad(struct src_state *st, const char *line, size_t len)
{
	char buf[SAMPLE_MAX + 1];
	size_t n = 0;

	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++) {
		if (st->sample[i])
			continue;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		for (size_t k = 0; k < len && n < SAMPLE_MAX; k++) {
			unsigned char c = (unsigned char)line[k];

			buf[n++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
		}
		buf[n] = '\0';
		st->sample[i] = strdup(buf);
		return;
	}
}

/* What the scraper hands back goes to the caller's fn. */
struct scrape_ctx {
	struct src_state *st;
	const struct cfg_source *cs;
	size_t idx;
	src_line_fn fn;
	void *arg;
	uint32_t found; /* proxies found, listed before or not */
	uint32_t added; /* of which new to this source */
};

/* A line without a scheme takes the source's protocol, remote DNS and all
 * (protocol = socks5h keeps its h). */
static const struct proxy_addr *with_default(const struct cfg_source *cs,
					     const struct proxy_addr *a, struct proxy_addr *tmp)
{
	if (a->scheme || !cs->remote_dns || a->remote_dns ||
	    (a->proto != PROXY_SOCKS4 && a->proto != PROXY_SOCKS5))
		return a;
	*tmp = *a;
	tmp->remote_dns = true;
	return tmp;
}

static int scraped_cb(void *arg, const struct proxy_addr *a)
{
	struct scrape_ctx *sc = arg;
	struct proxy_addr tmp;

	sc->found++;
	a = with_default(sc->cs, a, &tmp);
	if (sc->fn(sc->arg, sc->idx, a) == 0) {
		sc->st->proxies++;
		sc->added++;
	}
	return 0;
}

static struct scrape_ctx scrape(struct src_state *st, const struct cfg_source *cs, const char *text,
				size_t len, size_t idx, src_line_fn fn, void *arg)
{
	struct scrape_ctx sc = { .st = st, .cs = cs, .idx = idx, .fn = fn, .arg = arg };

	scrape_text(text, len, cs->proto, scraped_cb, &sc);
	return sc;
}

/* A line that is not a proxy line is scraped on its own, and each run of
 * such lines once more as one text, so that a record spread over lines
 * (pretty JSON, one <td> a line) is found too. A line in which nothing is
 * found counts as invalid: markup and prose are not errors of the list,
 * but counting them shows a source that broke. */
struct bad_run {
	const char *start, *end;
};

static void bad_line(struct src_state *st, const struct cfg_source *cs, struct bad_run *r,
		     const char *line, size_t len, size_t idx, src_line_fn fn, void *arg)
{
	struct scrape_ctx sc = scrape(st, cs, line, len, idx, fn, arg);

	st->scraped += sc.added;
	if (!sc.found) {
		st->invalid++;
		sample_bad(st, line, len);
	}
	if (!r->start)
		r->start = line;
	r->end = line + len;
}

static void run_flush(struct src_state *st, const struct cfg_source *cs, struct bad_run *r,
		      size_t idx, src_line_fn fn, void *arg)
{
	if (r->start)
		st->scraped += scrape(st, cs, r->start, (size_t)(r->end - r->start), idx, fn, arg)
				       .added;
	r->start = r->end = NULL;
}

static void read_begin(struct src_state *st)
{
	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++) {
		free(st->sample[i]);
		st->sample[i] = NULL;
	}
	st->proxies = st->invalid = st->scraped = 0;
	st->error[0] = '\0';
}

void src_read_text(struct src_state *st, const struct cfg_source *cs, const char *text,
		   size_t len, size_t idx, src_line_fn fn, void *arg)
{
	const char *p = text, *end = text + len;
	struct bad_run run = { NULL, NULL };

	read_begin(st);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		struct proxy_addr a, tmp;

		switch (proxy_parse_line(p, n, cs->proto, &a)) {
		case PROXY_LINE_OK:
			run_flush(st, cs, &run, idx, fn, arg);
			if (fn(arg, idx, with_default(cs, &a, &tmp)) == 0)
				st->proxies++;
			break;
		case PROXY_LINE_SKIP:
			if (run.start)
				run.end = p + n; /* blank lines do not split a record */
			break;
		case PROXY_LINE_BAD:
			bad_line(st, cs, &run, p, n, idx, fn, arg);
			break;
		}
		p += n;
	}
	run_flush(st, cs, &run, idx, fn, arg);
	st->last_read = (int64_t)time(NULL);
}

void src_read(struct src_state *st, const struct cfg_source *cs, FILE *f, size_t idx,
	      src_line_fn fn, void *arg)
{
	char *text = NULL;
	size_t size = 0;
	FILE *mem = open_memstream(&text, &size);
	char buf[65536];
	size_t n;
	bool failed = !mem;

	/* A terminal's end (Ctrl-D) is one empty read: stop at it, not at a
	 * second one that waits for more typing. */
	while (!failed && !feof(f) && (n = fread(buf, 1, sizeof(buf), f)) > 0)
		failed = fwrite(buf, 1, n, mem) != n;
	failed = failed || ferror(f);
	if (mem && fclose(mem) != 0)
		failed = true;
	fclose(f);
	if (failed)
		src_failed(st, "read error", 0);
	else
		src_read_text(st, cs, text, size, idx, fn, arg);
	free(text);
}

void src_failed(struct src_state *st, const char *why, long http_status)
{
	snprintf(st->error, sizeof(st->error), "%s", why);
	st->http_status = http_status;
	st->errors_total++;
}

void src_snapshot(const struct src_state *st, const struct cfg_source *cs, uint32_t alive,
		  struct snap_builder *b)
{
	struct snap_source s = {
		.name = cs->name, .url = cs->url, .proxies = st->proxies,
		.protocol = proxy_scheme_name(cs->proto, cs->remote_dns),
		.invalid = st->invalid, .alive = alive, .error = st->error,
		.last_read = st->last_read, .http_status = st->http_status,
		.last_try = st->last_try, .scraped = st->scraped,
		.fetches_total = st->fetches_total, .errors_total = st->errors_total,
	};

	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++)
		s.invalid_sample[i] = st->sample[i];
	snap_builder_add_source(b, &s);
}

void src_state_clear(struct src_state *st)
{
	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++)
		free(st->sample[i]);
	free(st->etag);
	free(st->last_modified);
	memset(st, 0, sizeof(*st));
}
