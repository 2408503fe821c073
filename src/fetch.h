/* fetch: downloading proxy lists over http(s), on a thread of its own.
 *
 * A fetcher owns one thread that drives libcurl; fetcher_submit() only
 * queues a request, so the engine's event loop never waits on the network.
 * Each finished request is handed to a callback on the fetcher thread, which
 * is expected to pass the result on to its own thread. Only http:// and
 * https:// are fetched (also across redirects); local files are the
 * caller's business. This module does not parse what it downloads.
 */
#ifndef PROXYFS_FETCH_H
#define PROXYFS_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#define FETCH_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define FETCH_DEFAULT_TIMEOUT_MS 60000
#define FETCH_DEFAULT_MAX_BYTES (16u << 20)
#define FETCH_MAX_REDIRECTS 5

/* One download. Strings are copied by fetcher_submit(); NULL or 0 where
 * unused. A zero timeout or max_bytes takes the FETCH_DEFAULT_ value. */
struct fetch_req {
	const char *url;	   /* http:// or https:// */
	const char *etag;	   /* sent as If-None-Match */
	const char *last_modified; /* sent as If-Modified-Since, verbatim */
	long connect_timeout_ms;
	long timeout_ms;     /* the whole transfer, redirects included */
	size_t max_bytes;    /* of the decoded body */
	const char *ca_file; /* PEM bundle to verify with instead of the system's */
};

/* What became of a request. err is 0 or a negative errno naming the kind
 * of failure, with error[] saying it for a human:
 *   -ECANCELED        the fetcher was freed first
 *   -ETIMEDOUT        connect or total timeout
 *   -ECONNREFUSED     nothing listens / cannot connect
 *   -EHOSTUNREACH     the name does not resolve
 *   -EPROTO           TLS failed (handshake, certificate, CA file)
 *   -EREMOTEIO        HTTP status other than 2xx or 304 ("HTTP 404")
 *   -EFBIG            "answer larger than N bytes"
 *   -ENODATA          "empty answer" (a 2xx without a body)
 *   -ELOOP            more than FETCH_MAX_REDIRECTS redirects
 *   -EPROTONOSUPPORT  a redirect to a scheme other than http(s)
 *   -ENOMEM, -EIO     anything else
 * On success either not_modified is set (a 304: data is NULL) or data holds
 * len bytes plus a NUL not counted in len. data is NULL whenever err is set.
 * etag and last_modified are the answer's validators to send next time
 * (the request's own when a 304 did not repeat them), NULL when none. */
struct fetch_result {
	int err;
	long http_status; /* the last answer's, 0 when none came */
	bool not_modified;
	char *data;
	size_t len;
	char *etag;
	char *last_modified;
	char error[256]; /* "" when err is 0 */
};

/* Called once per submitted request, on the fetcher thread, with no lock
 * held. The callee owns res and frees it with fetch_result_free(). It may
 * call fetcher_submit() but never fetcher_free(). */
typedef void (*fetch_done_fn)(void *arg, struct fetch_result *res);

struct fetcher;

/* Initialises libcurl once per process (thread-safe) and starts the
 * fetcher thread. NULL on failure (logged). */
struct fetcher *fetcher_new(void);

/* Queues a request; fn(arg, result) follows exactly once, later and from
 * the fetcher thread, unless this returns an error: -EINVAL (no URL or
 * fn), -EPROTONOSUPPORT (not http:// or https://), -ENOMEM, or -ESHUTDOWN
 * (called from a callback while fetcher_free() runs). Any thread, but
 * never racing with fetcher_free(). */
int fetcher_submit(struct fetcher *f, const struct fetch_req *req, fetch_done_fn fn, void *arg);

/* Stops the thread. Every request still queued or in transfer is aborted
 * and its callback is called with -ECANCELED before this returns, so no
 * callback ever runs after it; a callback must therefore not wait for the
 * thread calling this. Never blocks on the network. */
void fetcher_free(struct fetcher *f);

void fetch_result_free(struct fetch_result *res);

/* Releases libcurl's global state; call once at exit, after the last
 * fetcher_free(). No fetcher may be made afterwards. */
void fetch_global_cleanup(void);

#endif
