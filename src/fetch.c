/* fetch: downloading proxy lists with libcurl; see fetch.h.
 *
 * The fetcher thread drives every transfer through one curl multi handle:
 * it takes new jobs from a queue filled by fetcher_submit(), runs the multi
 * handle, and waits in curl_multi_poll(), which curl_multi_wakeup() from
 * another thread interrupts. A job owns its easy handle, its copies of the
 * request's strings, the body received so far, and the result it will hand
 * over (allocated at submit, so finishing a job cannot fail). libcurl's
 * codes are turned into errnos here, at the module's edge. Nothing here
 * logs a failed download: the caller does, once, naming the source.
 */
#include "fetch.h"
#include "thread.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#ifndef PROXYFS_VERSION
#define PROXYFS_VERSION "0"
#endif

#define FETCH_POLL_MS 1000 /* longest wait when libcurl has no timer due */

struct fetch_job {
	struct fetch_job *next;
	CURL *easy;
	struct curl_slist *headers;
	fetch_done_fn fn;
	void *arg;
	char *url;
	char *etag;
	char *last_modified;
	char *ca_file;
	long connect_timeout_ms;
	long timeout_ms;
	size_t max_bytes;
	char *body; /* what came so far, NUL-terminated when not NULL */
	size_t len;
	size_t cap;
	bool too_big;
	struct fetch_result *res;
	char curl_error[CURL_ERROR_SIZE];
};

struct fetcher {
	pthread_t thread;
	CURLM *multi;
	pthread_mutex_t lock; /* guards queue_head, queue_tail and stopping */
	struct fetch_job *queue_head;
	struct fetch_job *queue_tail;
	bool stopping;
	struct fetch_job *active; /* in transfer; the fetcher thread's alone */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc; /* written once under curl_once */

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- jobs --- */

static void job_free(struct fetch_job *j)
{
	if (j->easy)
		curl_easy_cleanup(j->easy);
	curl_slist_free_all(j->headers);
	free(j->url);
	free(j->etag);
	free(j->last_modified);
	free(j->ca_file);
	free(j->body);
	fetch_result_free(j->res);
	free(j);
}

/* strdup that keeps NULL as NULL; false when out of memory. */
static bool dup_opt(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return !src || *dst;
}

static struct fetch_job *job_new(const struct fetch_req *req, fetch_done_fn fn, void *arg)
{
	struct fetch_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->fn = fn;
	j->arg = arg;
	j->connect_timeout_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
							    : FETCH_DEFAULT_CONNECT_TIMEOUT_MS;
	j->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : FETCH_DEFAULT_TIMEOUT_MS;
	j->max_bytes = req->max_bytes ? req->max_bytes : FETCH_DEFAULT_MAX_BYTES;
	if (j->max_bytes > SIZE_MAX / 4) /* keeps the buffer arithmetic from overflowing */
		j->max_bytes = SIZE_MAX / 4;
	j->res = calloc(1, sizeof(*j->res));
	if (!j->res || !dup_opt(&j->url, req->url) || !dup_opt(&j->etag, req->etag) ||
	    !dup_opt(&j->last_modified, req->last_modified) ||
	    !dup_opt(&j->ca_file, req->ca_file)) {
		job_free(j);
		return NULL;
	}
	return j;
}

/* Hands the job's result to its owner and frees the rest of the job. */
static void job_finish(struct fetch_job *j)
{
	struct fetch_result *res = j->res;

	j->res = NULL;
	j->fn(j->arg, res);
	job_free(j);
}

__attribute__((format(printf, 3, 4))) static void job_fail(struct fetch_job *j, int err,
							   const char *fmt, ...)
{
	va_list ap;

	j->res->err = err;
	va_start(ap, fmt);
	vsnprintf(j->res->error, sizeof(j->res->error), fmt, ap);
	va_end(ap);
}

/* --- libcurl callbacks and setup --- */

/* Appends body bytes; refusing them (returning less than given) makes
 * libcurl abort the transfer with CURLE_WRITE_ERROR. */
static size_t job_body_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct fetch_job *j = userdata;
	size_t n = size * nmemb;
	char *grown;
	size_t cap;

	if (n > j->max_bytes - j->len) {
		j->too_big = true;
		return 0;
	}
	if (j->len + n + 1 > j->cap) {
		cap = j->cap ? j->cap : 16384;
		while (cap < j->len + n + 1)
			cap *= 2;
		if (cap > j->max_bytes + 1)
			cap = j->max_bytes + 1;
		grown = realloc(j->body, cap);
		if (!grown)
			return 0;
		j->body = grown;
		j->cap = cap;
	}
	memcpy(j->body + j->len, data, n);
	j->len += n;
	j->body[j->len] = '\0';
	return n;
}

/* A header value fit to send: no CR or LF that could start a new header. */
static bool header_value_ok(const char *v)
{
	return v && *v && !strpbrk(v, "\r\n");
}

static int job_add_header(struct fetch_job *j, const char *name, const char *value)
{
	char line[1024];
	struct curl_slist *l;

	if (!header_value_ok(value))
		return 0;
	if (snprintf(line, sizeof(line), "%s: %s", name, value) >= (int)sizeof(line))
		return 0;
	l = curl_slist_append(j->headers, line);
	if (!l)
		return -ENOMEM;
	j->headers = l;
	return 0;
}

/* Sets every option of the job's easy handle; 0, -ENOMEM or -EIO. */
static int job_setup(struct fetch_job *j)
{
	CURL *e;
	CURLcode cc = CURLE_OK;

	e = j->easy = curl_easy_init();
	if (!e)
		return -ENOMEM;
	if (job_add_header(j, "If-None-Match", j->etag) ||
	    job_add_header(j, "If-Modified-Since", j->last_modified))
		return -ENOMEM;
/* Keeps the first failure; later options are not even tried. */
#define SET(opt, val) (cc = cc != CURLE_OK ? cc : curl_easy_setopt(e, opt, val))
	SET(CURLOPT_PRIVATE, j);
	SET(CURLOPT_ERRORBUFFER, j->curl_error);
	SET(CURLOPT_URL, j->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 1L);
	SET(CURLOPT_MAXREDIRS, (long)FETCH_MAX_REDIRECTS);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_QUICK_EXIT, 1L); /* a cancel never waits for a DNS lookup */
	SET(CURLOPT_PROXY, ""); /* ignore http_proxy and friends from the environment */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_USERAGENT, "proxyfs/" PROXYFS_VERSION);
	SET(CURLOPT_FAILONERROR, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, j->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, j->timeout_ms);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)j->max_bytes);
	SET(CURLOPT_WRITEFUNCTION, job_body_cb);
	SET(CURLOPT_WRITEDATA, j);
	if (j->headers)
		SET(CURLOPT_HTTPHEADER, j->headers);
	if (j->ca_file)
		SET(CURLOPT_CAINFO, j->ca_file);
#undef SET
	if (cc == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	if (cc != CURLE_OK) {
		log_err("fetch: cannot set up a transfer: %s", curl_easy_strerror(cc));
		return -EIO;
	}
	return 0;
}

/* --- results --- */

static int curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return -EPROTO;
	case CURLE_HTTP_RETURNED_ERROR:
		return -EREMOTEIO;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_TOO_MANY_REDIRECTS:
		return -ELOOP;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EPROTONOSUPPORT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* The answer's header name, or fallback (the request's) when it has none. */
static char *answer_header(CURL *e, const char *name, const char *fallback)
{
	struct curl_header *h;

	if (curl_easy_header(e, name, 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h->value[0])
		return strdup(h->value);
	return fallback ? strdup(fallback) : NULL;
}

/* Fills the job's result from how its transfer ended. */
static void job_conclude(struct fetch_job *j, CURLcode cc)
{
	struct fetch_result *res = j->res;
	long status = 0;

	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
	res->http_status = status;
	if (j->too_big || cc == CURLE_FILESIZE_EXCEEDED)
		job_fail(j, -EFBIG, "answer larger than %zu bytes", j->max_bytes);
	else if (cc == CURLE_HTTP_RETURNED_ERROR ||
		 (cc == CURLE_OK && status != 304 && (status < 200 || status > 299)))
		job_fail(j, -EREMOTEIO, "HTTP %ld", status);
	else if (cc != CURLE_OK)
		job_fail(j, curl_errno(cc), "%s",
			 j->curl_error[0] ? j->curl_error : curl_easy_strerror(cc));
	else if (status != 304 && j->len == 0)
		job_fail(j, -ENODATA, "empty answer");
	if (res->err)
		return;
	res->not_modified = status == 304;
	if (!res->not_modified) {
		res->data = j->body;
		res->len = j->len;
		j->body = NULL;
	}
	res->etag = answer_header(j->easy, "ETag", res->not_modified ? j->etag : NULL);
	res->last_modified =
	    answer_header(j->easy, "Last-Modified", res->not_modified ? j->last_modified : NULL);
}

/* --- the fetcher thread --- */

static void active_unlink(struct fetcher *f, struct fetch_job *j)
{
	struct fetch_job **pp = &f->active;

	while (*pp && *pp != j)
		pp = &(*pp)->next;
	if (*pp)
		*pp = j->next;
	j->next = NULL;
}

static struct fetch_job *queue_take_all(struct fetcher *f)
{
	struct fetch_job *jobs = f->queue_head;

	f->queue_head = f->queue_tail = NULL;
	return jobs;
}

static void job_start(struct fetcher *f, struct fetch_job *j)
{
	int rc = job_setup(j);

	if (rc == 0 && curl_multi_add_handle(f->multi, j->easy) != CURLM_OK)
		rc = -EIO;
	if (rc) {
		job_fail(j, rc, "cannot start the transfer: %s", strerror(-rc));
		job_finish(j);
		return;
	}
	j->next = f->active;
	f->active = j;
}

/* Starts what was queued; false once the fetcher is stopping. */
static bool start_queued(struct fetcher *f)
{
	struct fetch_job *jobs, *next;
	bool stopping;

	pthread_mutex_lock(&f->lock);
	stopping = f->stopping;
	jobs = stopping ? NULL : queue_take_all(f);
	pthread_mutex_unlock(&f->lock);
	for (; jobs; jobs = next) {
		next = jobs->next;
		jobs->next = NULL;
		job_start(f, jobs);
	}
	return !stopping;
}

static void reap_finished(struct fetcher *f)
{
	struct fetch_job *j;
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(f->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
		curl_multi_remove_handle(f->multi, j->easy);
		active_unlink(f, j);
		job_conclude(j, msg->data.result);
		job_finish(j);
	}
}

static void cancel_list(struct fetch_job *jobs)
{
	struct fetch_job *next;

	for (; jobs; jobs = next) {
		next = jobs->next;
		job_fail(jobs, -ECANCELED, "cancelled");
		job_finish(jobs);
	}
}

static void cancel_all(struct fetcher *f)
{
	struct fetch_job *queued;

	for (struct fetch_job *j = f->active; j; j = j->next)
		curl_multi_remove_handle(f->multi, j->easy);
	cancel_list(f->active);
	f->active = NULL;
	pthread_mutex_lock(&f->lock);
	queued = queue_take_all(f);
	pthread_mutex_unlock(&f->lock);
	cancel_list(queued);
}

static void *fetcher_main(void *arg)
{
	struct fetcher *f = arg;
	int running;

	while (start_queued(f)) {
		curl_multi_perform(f->multi, &running);
		reap_finished(f);
		curl_multi_poll(f->multi, NULL, 0, FETCH_POLL_MS, NULL);
	}
	cancel_all(f);
	return NULL;
}

/* --- the API --- */

struct fetcher *fetcher_new(void)
{
	struct fetcher *f;
	int rc;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		log_err("fetch: libcurl failed to initialise: %s",
			curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->multi = curl_multi_init();
	if (!f->multi)
		goto out_free;
	pthread_mutex_init(&f->lock, NULL);
	rc = thread_start(&f->thread, NULL, fetcher_main, f);
	if (rc) {
		log_err("fetch: cannot start the fetcher thread: %s", strerror(rc));
		goto out_destroy;
	}
	return f;

out_destroy:
	pthread_mutex_destroy(&f->lock);
	curl_multi_cleanup(f->multi);
out_free:
	free(f);
	return NULL;
}

static bool url_is_http(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

int fetcher_submit(struct fetcher *f, const struct fetch_req *req, fetch_done_fn fn, void *arg)
{
	struct fetch_job *j;
	int rc = 0;

	if (!req->url || !fn)
		return -EINVAL;
	if (!url_is_http(req->url))
		return -EPROTONOSUPPORT;
	j = job_new(req, fn, arg);
	if (!j)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	if (f->stopping) {
		rc = -ESHUTDOWN;
	} else if (f->queue_tail) {
		f->queue_tail->next = j;
		f->queue_tail = j;
	} else {
		f->queue_head = f->queue_tail = j;
	}
	pthread_mutex_unlock(&f->lock);
	if (rc) {
		job_free(j);
		return rc;
	}
	curl_multi_wakeup(f->multi);
	return 0;
}

void fetcher_free(struct fetcher *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	pthread_mutex_unlock(&f->lock);
	curl_multi_wakeup(f->multi);
	pthread_join(f->thread, NULL);
	curl_multi_cleanup(f->multi);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

void fetch_result_free(struct fetch_result *res)
{
	if (!res)
		return;
	free(res->data);
	free(res->etag);
	free(res->last_modified);
	free(res);
}

void fetch_global_cleanup(void)
{
	curl_global_cleanup();
}
