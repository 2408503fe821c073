/* sources: reading proxy lists; see sources.h. */
#include "sources.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define SAMPLE_MAX 120 /* bytes of a bad line kept as a sample */

FILE *src_open(struct src_state *st, const struct cfg_source *cs)
{
	FILE *f;

	if (!cs->path) {
		snprintf(st->error, sizeof(st->error), "%s: only local files are read so far",
			 cs->url);
		return NULL;
	}
	f = fopen(cs->path, "re");
	if (!f) {
		snprintf(st->error, sizeof(st->error), "%s: %s", cs->path, strerror(errno));
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

void src_read(struct src_state *st, const struct cfg_source *cs, FILE *f, size_t idx,
	      src_line_fn fn, void *arg)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	src_state_clear(st);
	while ((len = getline(&line, &cap, f)) >= 0) {
		struct proxy_addr a;

		switch (proxy_parse_line(line, (size_t)len, cs->proto, &a)) {
		case PROXY_LINE_OK:
			if (fn(arg, idx, &a) == 0)
				st->proxies++;
			break;
		case PROXY_LINE_SKIP:
			break;
		case PROXY_LINE_BAD:
			st->invalid++;
			sample_bad(st, line, (size_t)len);
			break;
		}
	}
	if (ferror(f))
		snprintf(st->error, sizeof(st->error), "%s: read error", cs->path);
	else
		st->last_read = (int64_t)time(NULL);
	free(line);
	fclose(f);
}

void src_snapshot(const struct src_state *st, const struct cfg_source *cs, uint32_t alive,
		  struct snap_builder *b)
{
	struct snap_source s = {
		.name = cs->name, .url = cs->url, .proxies = st->proxies,
		.invalid = st->invalid, .alive = alive, .error = st->error,
		.last_read = st->last_read,
	};

	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++)
		s.invalid_sample[i] = st->sample[i];
	snap_builder_add_source(b, &s);
}

void src_state_clear(struct src_state *st)
{
	for (int i = 0; i < SNAP_SAMPLE_INVALID; i++) {
		free(st->sample[i]);
		st->sample[i] = NULL;
	}
	st->proxies = 0;
	st->invalid = 0;
	st->error[0] = '\0';
}
