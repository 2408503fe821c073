/* resolve: host names looked up on threads of their own; see resolve.h.
 *
 * The resolver is shared by its owner and by every lookup thread still
 * running, and freed by the last of them; a closed resolver has no
 * callback, so a lookup that ends after resolver_free() drops its result.
 */
#include "resolve.h"
#include "thread.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct resolver {
	pthread_mutex_t lock; /* guards fn (NULL once closed) and threads */
	resolve_done_fn fn;
	void *owner;
	unsigned threads;     /* lookups still running */
};

struct lookup {
	struct resolver *r;
	uint64_t tag;
	char host[256];
};

static int gai_errno(int rc)
{
	switch (rc) {
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	default:
		return -EHOSTUNREACH;
	}
}

int resolve_now(const char *host, struct resolve_result *out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
	struct addrinfo *res, *ai, *pick;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc) {
		out->err = gai_errno(rc);
		snprintf(out->error, sizeof(out->error), "%s",
			 rc == EAI_SYSTEM ? strerror(-out->err) : gai_strerror(rc));
		return out->err;
	}
	pick = res;
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	}
	memcpy(&out->addr, pick->ai_addr, pick->ai_addrlen);
	out->addrlen = pick->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void resolver_release(struct resolver *r)
{
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void *lookup_main(void *arg)
{
	struct lookup *l = arg;
	struct resolver *r = l->r;
	struct resolve_result res;
	bool last;

	resolve_now(l->host, &res);
	pthread_mutex_lock(&r->lock);
	if (r->fn)
		r->fn(r->owner, l->tag, &res);
	r->threads--;
	last = !r->fn && r->threads == 0;
	pthread_mutex_unlock(&r->lock);
	if (last)
		resolver_release(r);
	free(l);
	return NULL;
}

struct resolver *resolver_new(resolve_done_fn fn, void *owner)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	r->fn = fn;
	r->owner = owner;
	return r;
}

int resolver_lookup(struct resolver *r, const char *host, uint64_t tag)
{
	struct lookup *l = calloc(1, sizeof(*l));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!l)
		return -ENOMEM;
	l->r = r;
	l->tag = tag;
	snprintf(l->host, sizeof(l->host), "%s", host);
	if (pthread_attr_init(&attr)) {
		free(l);
		return -ENOMEM;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&r->lock);
	r->threads++;
	pthread_mutex_unlock(&r->lock);
	rc = thread_start(&t, &attr, lookup_main, l);
	pthread_attr_destroy(&attr);
	if (rc) {
		pthread_mutex_lock(&r->lock);
		r->threads--;
		pthread_mutex_unlock(&r->lock);
		free(l);
		return -rc;
	}
	return 0;
}

void resolver_free(struct resolver *r)
{
	bool last;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->fn = NULL;
	last = r->threads == 0;
	pthread_mutex_unlock(&r->lock);
	if (last)
		resolver_release(r);
}
