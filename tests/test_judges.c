/* test_judges: the judge set's life and states, and lookups off the
 * caller's thread (resolve.h).
 *
 * A set is made from a config without touching the network; its judges
 * go from "not looked up" or "not probed" to healthy by the steps the
 * engine drives; references keep it alive. Lookups use localhost (from
 * /etc/hosts) and a name under .invalid, which never resolves.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "judge_set.h"
#include "resolve.h"
#include "testutil.h"

static void make_cfg(struct cfg *c, const char *judge, const char *judge2)
{
	cfg_init(c);
	CHECK_INT(cfg_add_judge(c, judge), 0);
	if (judge2)
		CHECK_INT(cfg_add_judge(c, judge2), 0);
}

static void test_new(void)
{
	struct cfg c;
	struct judge_set *js;
	char err[256];

	/* an address and a name, probing on: neither usable before its answer */
	make_cfg(&c, "http://127.0.0.1:8080/", "http://judge.example:81/x");
	js = judges_new(&c, true, err, sizeof(err));
	CHECK(js != NULL);
	if (js) {
		CHECK_INT(js->n, 2);
		CHECK_INT(js->refs, 1);
		CHECK(!js->v[0].by_name && js->v[0].chk.have_addr);
		CHECK(js->v[1].by_name && !js->v[1].chk.have_addr);
		CHECK(!judges_any_healthy(js) && !judges_all_probed(js));
		CHECK(js->v[0].set == js && js->v[1].set == js);
		CHECK_INT(judges_next_step(&js->v[0], false), JUDGE_PROBE);
		CHECK_INT(judges_next_step(&js->v[1], false), JUDGE_LOOKUP);
		CHECK_INT(judges_next_step(&js->v[1], true), JUDGE_PROBE);
		judges_unref(js);
	}
	cfg_free(&c);

	/* probing off: an address is usable at once and never due; a name
	 * waits for its lookup, and nothing else */
	make_cfg(&c, "http://127.0.0.1:8080/", "http://judge.example/");
	js = judges_new(&c, false, err, sizeof(err));
	CHECK(js != NULL);
	if (js) {
		CHECK(js->v[0].healthy && !js->v[1].healthy);
		CHECK(!judges_probe_due(&js->v[0], 100, true));
		CHECK(judges_probe_due(&js->v[1], 100, false));
		CHECK(js->v[1].probing && !judges_probe_due(&js->v[1], 100, true));
		CHECK_INT(judges_next_step(&js->v[1], true), JUDGE_READY);
		CHECK(judges_pick(js) == &js->v[0]);
		judges_unref(js);
	}
	cfg_free(&c);

	/* a malformed URL is an error, a name that does not resolve is not */
	make_cfg(&c, "http://judge.invalid/", NULL);
	js = judges_new(&c, true, err, sizeof(err));
	CHECK(js != NULL);
	judges_unref(js);
	cfg_free(&c);
	make_cfg(&c, "http://a b/", NULL);
	err[0] = '\0';
	CHECK(judges_new(&c, true, err, sizeof(err)) == NULL);
	CHECK(err[0] != '\0');
	cfg_free(&c);
}

/* A name's lookup sets the address (the URL's port added) or sets the
 * judge aside; a probe-less judge is healthy once looked up. */
static void test_lookup_steps(void)
{
	struct resolve_result ok = {0}, bad = {.err = -EHOSTUNREACH};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ok.addr;
	struct judge_set *js;
	struct judge *j;
	struct cfg c;
	char err[256];

	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0x7f000001);
	ok.addrlen = sizeof(*sin);
	snprintf(bad.error, sizeof(bad.error), "Name or service not known");
	make_cfg(&c, "http://judge.example:81/", NULL);
	js = judges_new(&c, false, err, sizeof(err));
	CHECK(js != NULL);
	if (!js)
		goto out;
	j = &js->v[0];
	CHECK(judges_probe_due(j, 100, false));
	CHECK_INT(judges_lookup_done(j, &bad, 100, 5), -EHOSTUNREACH);
	CHECK(!j->healthy && !j->probing && judges_all_probed(js));
	CHECK_STR(j->error, "does not resolve");
	CHECK_INT(j->next_probe, 105);
	CHECK(!judges_probe_due(j, 104, false));
	CHECK(judges_probe_due(j, 105, false));
	/* a long probe interval: the lookup is tried again within seconds */
	CHECK_INT(judges_lookup_done(j, &bad, 105, 3600), -EHOSTUNREACH);
	CHECK_INT(j->next_probe, 115);
	CHECK(judges_probe_due(j, 115, false));
	CHECK_INT(judges_lookup_done(j, &ok, 115, 5), 0);
	CHECK(j->chk.have_addr);
	CHECK_INT(ntohs(((struct sockaddr_in *)&j->chk.addr)->sin_port), 81);
	CHECK_INT(judges_next_step(j, true), JUDGE_READY);
	CHECK(judges_unprobed_ok(j, 115, 5));
	CHECK(j->healthy && !j->probing && j->error[0] == '\0');
	CHECK(judges_pick(js) == j);
	judges_unref(js);
out:
	cfg_free(&c);
}

/* A check's reference keeps a set its owner let go of. */
static void test_refs(void)
{
	struct cfg c;
	struct judge_set *js;
	struct judge *held;
	char err[256];

	make_cfg(&c, "https://127.0.0.1:8443/", NULL);
	js = judges_new(&c, false, err, sizeof(err));
	CHECK(js != NULL);
	if (js) {
		held = judges_pick(js);
		CHECK(held != NULL);
		judges_ref(held->set);
		CHECK_INT(js->refs, 2);
		judges_unref(js); /* the owner's: a reload replaced it */
		CHECK_INT(held->set->refs, 1);
		CHECK(held->chk.tls && held->chk.tls_ctx);
		CHECK_STR(held->url, "https://127.0.0.1:8443/");
		judges_unref(held->set); /* the check ends: freed (ASan sees a leak otherwise) */
	}
	judges_unref(NULL);
	cfg_free(&c);
}

static void test_resolve_now(void)
{
	struct resolve_result r;

	CHECK_INT(resolve_now("localhost", &r), 0);
	CHECK(r.addr.ss_family == AF_INET); /* IPv4 first */
	CHECK_INT(r.addrlen, sizeof(struct sockaddr_in));
	CHECK_INT(resolve_now("127.0.0.9", &r), 0);
	CHECK_INT(ntohl(((struct sockaddr_in *)&r.addr)->sin_addr.s_addr), 0x7f000009);
	CHECK_INT(resolve_now("judge.invalid", &r), -EHOSTUNREACH);
	CHECK(r.error[0] != '\0');
}

/* What the lookups report, guarded by lock. */
struct seen {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int n;
	int err[4];
	uint64_t tag[4];
	int late;  /* reports after resolver_free returned */
	int freed; /* resolver_free has returned */
};

static struct seen seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void on_lookup(void *owner, uint64_t tag, const struct resolve_result *r)
{
	struct seen *s = owner;

	pthread_mutex_lock(&s->lock);
	if (s->freed)
		s->late++;
	if (s->n < 4) {
		s->err[s->n] = r->err;
		s->tag[s->n] = tag;
	}
	s->n++;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void test_resolver(void)
{
	struct seen *s = &seen;
	struct resolver *r = resolver_new(on_lookup, s);

	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_INT(resolver_lookup(r, "localhost", 7), 0);
	CHECK_INT(resolver_lookup(r, "judge.invalid", 9), 0);
	pthread_mutex_lock(&s->lock);
	while (s->n < 2)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < 2; i++)
		CHECK_INT(s->err[i], s->tag[i] == 7 ? 0 : -EHOSTUNREACH);
	CHECK(s->tag[0] + s->tag[1] == 16);

	/* Freed with lookups on their way: none reports afterwards. */
	for (int i = 0; i < 8; i++)
		CHECK_INT(resolver_lookup(r, "localhost", 100 + (uint64_t)i), 0);
	resolver_free(r);
	pthread_mutex_lock(&s->lock);
	s->freed = 1;
	pthread_mutex_unlock(&s->lock);
}

int main(void)
{
	test_resolver(); /* first: its freed lookups end while the rest runs */
	test_new();
	test_lookup_steps();
	test_refs();
	test_resolve_now();
	pthread_mutex_lock(&seen.lock);
	CHECK_INT(seen.late, 0);
	pthread_mutex_unlock(&seen.lock);
	return test_exit_code();
}
