/* judge_set: judge health, choice and lifetime; see judge_set.h. */
#include "judge_set.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.h"
#include "log.h"

#define JUDGE_LOOKUP_RETRY_S 10 /* a host that did not resolve is asked again after this */

static void judges_free(struct judge_set *js)
{
	for (size_t i = 0; i < js->n; i++) {
		chk_judge_free(&js->v[i].chk);
		free(js->v[i].url);
	}
	free(js);
}

static int judge_init(struct judge_set *js, struct judge *j, const struct cfg *c, size_t i,
		      char *err, size_t errlen)
{
	int rc = chk_judge_init(&j->chk, c->judges[i], c->expect, err, errlen);

	if (rc < 0)
		return rc;
	js->n = i + 1;
	rc = chk_judge_set_ca(&j->chk, c->ca_file, err, errlen);
	if (rc < 0)
		return rc;
	j->url = strdup(c->judges[i]);
	if (!j->url)
		return -ENOMEM;
	j->set = js;
	j->chk.capture_body = true;
	j->chk.require_echo = c->require_echo || !c->expect[0];
	j->by_name = !j->chk.have_addr;
	j->healthy = !js->probe && !j->by_name;
	snprintf(j->error, sizeof(j->error), "%s",
		 j->healthy ? "" : js->probe ? "not probed yet" : "not looked up yet");
	return 0;
}

struct judge_set *judges_new(const struct cfg *c, bool probe, char *err, size_t errlen)
{
	struct judge_set *js = calloc(1, sizeof(*js));

	if (!js) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	js->probe = probe;
	js->refs = 1;
	for (size_t i = 0; i < c->njudges && i < JUDGES_MAX; i++) {
		if (judge_init(js, &js->v[i], c, i, err, errlen) < 0) {
			judges_free(js);
			return NULL;
		}
	}
	if (c->njudges > JUDGES_MAX)
		log_warn("only the first %d judges are used", JUDGES_MAX);
	return js;
}

struct judge_set *judges_ref(struct judge_set *js)
{
	js->refs++;
	return js;
}

void judges_unref(struct judge_set *js)
{
	if (!js || --js->refs > 0)
		return;
	log_debug("judge set %llu freed", (unsigned long long)js->id);
	judges_free(js);
}

struct judge *judges_pick(struct judge_set *js)
{
	for (size_t k = 0; k < js->n; k++) {
		struct judge *j = &js->v[js->rr++ % js->n];

		if (j->healthy)
			return j;
	}
	return NULL;
}

bool judges_all_probed(const struct judge_set *js)
{
	for (size_t i = 0; i < js->n; i++)
		if (!js->v[i].last_probe && !js->v[i].healthy)
			return false;
	return true;
}

bool judges_any_healthy(const struct judge_set *js)
{
	for (size_t i = 0; i < js->n; i++)
		if (js->v[i].healthy)
			return true;
	return false;
}

bool judges_probe_due(struct judge *j, int64_t now, bool force)
{
	if (j->probing || (!force && now < j->next_probe))
		return false;
	/* Nothing to learn about an address that is not probed. */
	if (!j->by_name && !j->set->probe)
		return false;
	j->probing = true;
	return true;
}

enum judge_step judges_next_step(const struct judge *j, bool looked_up)
{
	if (j->by_name && !looked_up)
		return JUDGE_LOOKUP;
	return j->set->probe ? JUDGE_PROBE : JUDGE_READY;
}

/* Health changed: say so once. A judge's first answer is no news (it was
 * never said to be away): debug; its return after being set aside, info. */
static bool judge_health_changed(const struct judge *j, bool was, bool first)
{
	if (was == j->healthy)
		return false;
	if (j->healthy)
		log_msg(first ? LOG_LVL_DEBUG : LOG_LVL_INFO, "judge %s answers%s", j->url,
			first ? "" : " again");
	else
		log_warn("judge %s set aside: %s", j->url, j->error);
	return true;
}

bool judges_unprobed_ok(struct judge *j, int64_t now, int probe_s)
{
	bool was = j->healthy, first = j->last_probe == 0;

	j->probing = false;
	j->last_probe = now;
	j->next_probe = now + probe_s;
	j->healthy = true;
	j->error[0] = '\0';
	return judge_health_changed(j, was, first);
}

int judges_lookup_done(struct judge *j, const struct resolve_result *r, int64_t now,
		       int probe_s)
{
	bool was = j->healthy;

	if (r->err == 0) {
		chk_judge_set_addr(&j->chk, (const struct sockaddr *)&r->addr, r->addrlen);
		return 0;
	}
	/* health says "does not resolve"; the resolver's reason goes to the log. */
	if (was || !j->last_probe)
		log_warn("judge %s set aside: %s does not resolve (%s)", j->url, j->chk.host,
			 r->error);
	j->probing = false;
	j->last_probe = now;
	/* Asking our own resolver costs the judge nothing: a network coming
	 * up (at boot) is noticed within seconds, not a probe interval. */
	j->next_probe = now + (probe_s < JUDGE_LOOKUP_RETRY_S ? probe_s : JUDGE_LOOKUP_RETRY_S);
	j->healthy = false;
	snprintf(j->error, sizeof(j->error), "does not resolve");
	return -EHOSTUNREACH;
}

void judges_probe_req(const struct judge *j, const struct cfg *c, struct fetch_req *req)
{
	memset(req, 0, sizeof(*req));
	req->url = j->url;
	req->connect_timeout_ms = c->connect_timeout_ms;
	req->timeout_ms = c->timeout_ms;
	req->max_bytes = 256 * 1024;
	req->ca_file = c->ca_file;
}

/* The distinct addresses the judges see for us. */
static void collect_ours(struct judge_set *js)
{
	js->nour = 0;
	for (size_t i = 0; i < js->n; i++) {
		const char *a = js->v[i].our_addr;
		bool seen = !*a;

		for (size_t k = 0; k < js->nour && !seen; k++)
			seen = strcmp(js->our[k], a) == 0;
		if (!seen)
			js->our[js->nour++] = a;
	}
}

static bool answer_ok(const struct judge *j, const struct fetch_result *r, char *why, size_t n)
{
	char addr[64];
	bool echo;

	if (r->err) {
		snprintf(why, n, "%s", r->error[0] ? r->error : strerror(-r->err));
		return false;
	}
	if (r->http_status != 200 || !r->data) {
		snprintf(why, n, "HTTP %ld", r->http_status);
		return false;
	}
	/* A direct probe carries no token: an answer in an echo form proxyfs
	 * reads is what stands in for the echo, where that is proof enough. */
	echo = ja_own_addr(r->data, r->len, addr, sizeof(addr)) == 0;
	if (j->chk.require_echo && !echo) {
		snprintf(why, n, "answer is not an echo proxyfs reads (require_echo = yes)");
		return false;
	}
	if (j->chk.expect[0] && !memmem(r->data, r->len, j->chk.expect, strlen(j->chk.expect)) &&
	    !(j->chk.echo_suffices && echo)) {
		snprintf(why, n, "answer lacks the expected text \"%.64s\"", j->chk.expect);
		return false;
	}
	return true;
}

bool judges_probe_done(struct judge_set *js, struct judge *j, const struct fetch_result *r,
		       int64_t now, int probe_s)
{
	bool was = j->healthy, first = j->last_probe == 0;
	char why[256];

	j->probing = false;
	j->last_probe = now;
	j->next_probe = now + probe_s;
	if (answer_ok(j, r, why, sizeof(why))) {
		j->healthy = true;
		j->error[0] = '\0';
		if (ja_own_addr(r->data, r->len, j->our_addr, sizeof(j->our_addr)) < 0)
			j->our_addr[0] = '\0';
		collect_ours(js);
		log_debug("judge %s probe: answers (HTTP %ld, %zu bytes), our address %s", j->url,
			  r->http_status, r->len, j->our_addr[0] ? j->our_addr : "unknown");
	} else {
		j->healthy = false;
		snprintf(j->error, sizeof(j->error), "%s", why);
		log_debug("judge %s probe: fails: %s", j->url, why);
	}
	return judge_health_changed(j, was, first);
}
