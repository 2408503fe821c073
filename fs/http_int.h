/* http_int.h: what the HTTP front's files share (http.c: sockets,
 * threads, connections and the gate every request passes; http_serve.c:
 * the tree's reader paths; http_control.c: the control worker). Not for
 * other parts.
 */
#ifndef PROXYFS_HTTP_INT_H
#define PROXYFS_HTTP_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "control.h"
#include "http.h"
#include "http_stats.h"
#include "tree.h"

/* Control requests waiting for the worker at most; one more is a 503. */
#define HTTP_JOBS_MAX 16

struct http_job;

/* One event loop serving the front. */
struct http_thread {
	struct http_front *front;
	struct event_base *base;
	struct evhttp *http;
	pthread_t tid;
	bool running; /* tid was started and is to be joined */
};

struct http_front {
	const struct fs_control *ctl;
	char *token; /* NULL: no token set */
	size_t token_len;
	bool private_;
	uint32_t max_connections;
	struct timeval request_timeout;
	struct ratelimit *rl;
	int *fds; /* the listening sockets */
	size_t nfds;
	struct http_thread *threads;
	int nthreads;
	/* Set once when the front stops: ends every wait of the worker. */
	atomic_bool stopping;
	/* Connections open on every loop, refused ones included until they
	 * are gone: the bound max_connections holds. */
	atomic_int conns;

	/* The control worker (http_control.c). jobs_lock guards the queue
	 * and njobs and worker_quit; jobs_cond signals a job or the quit. */
	pthread_t worker;
	bool worker_running;
	pthread_mutex_t jobs_lock;
	pthread_cond_t jobs_cond;
	struct http_job *jobs_head, **jobs_tail;
	unsigned njobs;
	bool worker_quit;
};

/* Microseconds of a monotonic clock. */
uint64_t http_now_us(void);

/* Sends code with body[0..len) of type ctype (no body for HEAD, with its
 * Content-Length), and counts the request as class c, begun at t0. */
void http_send(struct evhttp_request *req, int code, const char *ctype, const char *body,
	       size_t len, enum http_class c, uint64_t t0);
/* Counts an answer sent (and says it at debug level; never at info). */
void http_done(struct evhttp_request *req, enum http_class c, int code, uint64_t t0);
/* The same with a short text body and "\n" added when text is not empty. */
void http_send_text(struct evhttp_request *req, int code, const char *text, enum http_class c,
		    uint64_t t0);

/* Serves the reader node n (path as looked up, the query string or NULL)
 * with GET or HEAD; sends the answer and counts it. */
void http_serve_reader(struct evhttp_request *req, const struct tree_node *n, const char *path,
		       const char *query, enum http_class c, uint64_t t0);

/* The class of a reader node for the request counter. */
enum http_class http_class_of(const struct tree_node *n);

/* Control: starts and stops the worker; submits one POST of kind (the
 * answer is sent when the worker is done, or at once when the queue is
 * full or the front stops). */
int http_control_start(struct http_front *h);
void http_control_stop(struct http_front *h);
void http_control_submit(struct http_thread *t, struct evhttp_request *req, enum control_kind kind,
			 uint64_t t0);

#endif
