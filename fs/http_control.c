/* http_control: POST /control/{reload,add,remove} on a worker thread; see
 * http_int.h.
 *
 * A control write may wait (reload "sync" until the rescan is published),
 * so it never runs on a loop: the loop queues the body (a bounded queue: a
 * full one answers 503 at once), one worker thread hands it to
 * control_apply, and the answer goes back to the request's own loop
 * (event_base_once), which alone touches the request. A wait ends when the
 * front stops or the client goes away (its socket reads as closed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "http_int.h"
#include "thread.h"
#include "log.h"

struct http_job {
	struct http_job *next;
	struct http_thread *t; /* the loop the request is on */
	struct evhttp_request *req;
	enum control_kind kind;
	char *text;
	size_t len;
	int fd; /* the client's socket, to see it go away */
	int rc;
	char why[256];
	uint64_t t0;
};

static void job_free(struct http_job *j)
{
	free(j->text);
	free(j);
}

/* Asked by control_apply while it waits. */
static int job_stop(void *arg)
{
	struct http_job *j = arg;
	char c;
	ssize_t n;

	if (atomic_load(&j->t->front->stopping))
		return -ESHUTDOWN;
	if (j->fd < 0)
		return 0;
	n = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		return -ECONNRESET;
	return 0;
}

/* On the request's loop: the answer. */
static void job_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_job *j = arg;
	char text[300];
	int code;

	switch (j->rc) {
	case 0:
		code = 200;
		snprintf(text, sizeof(text), "ok");
		break;
	case -EINVAL:
		code = 400;
		snprintf(text, sizeof(text), "%s", j->why[0] ? j->why : "invalid");
		break;
	case -EMSGSIZE:
		code = 413;
		snprintf(text, sizeof(text), "too large: at most %d bytes", CONTROL_MAX);
		break;
	case -ESHUTDOWN:
	case -ECONNRESET:
		code = 503;
		snprintf(text, sizeof(text), "stopped waiting: %s",
			 j->rc == -ESHUTDOWN ? "shutting down" : "the client went away");
		break;
	case -EHOSTUNREACH: /* no judge answers: no rescan can run */
	case -EAGAIN:
	case -EBUSY:
		code = 503;
		snprintf(text, sizeof(text), "%s", strerror(-j->rc));
		break;
	default:
		code = 500;
		snprintf(text, sizeof(text), "%s", strerror(-j->rc));
		break;
	}
	http_send_text(j->req, code, text, HTTP_CLASS_CONTROL, j->t0);
	job_free(j);
}

static void *worker_main(void *arg)
{
	struct http_front *h = arg;
	struct timeval now = {0, 0};
	struct http_job *j;

	for (;;) {
		pthread_mutex_lock(&h->jobs_lock);
		while (!h->jobs_head && !h->worker_quit)
			pthread_cond_wait(&h->jobs_cond, &h->jobs_lock);
		j = h->jobs_head;
		if (j) {
			h->jobs_head = j->next;
			if (!h->jobs_head)
				h->jobs_tail = &h->jobs_head;
			h->njobs--;
		}
		pthread_mutex_unlock(&h->jobs_lock);
		if (!j)
			break;
		if (atomic_load(&h->stopping))
			j->rc = -ESHUTDOWN;
		else
			j->rc = control_apply(h->ctl, j->kind, j->text, j->len, job_stop, j, j->why,
					      sizeof(j->why));
		if (event_base_once(j->t->base, -1, EV_TIMEOUT, job_done_cb, j, &now) < 0) {
			log_err("http: cannot hand a control answer back to its loop");
			job_free(j); /* the request stays unanswered until the front stops */
		}
	}
	return NULL;
}

int http_control_start(struct http_front *h)
{
	int rc;

	rc = -thread_start(&h->worker, NULL, worker_main, h);
	h->worker_running = rc == 0;
	return rc;
}

void http_control_stop(struct http_front *h)
{
	if (!h->worker_running)
		return;
	pthread_mutex_lock(&h->jobs_lock);
	h->worker_quit = true;
	pthread_cond_broadcast(&h->jobs_cond);
	pthread_mutex_unlock(&h->jobs_lock);
	pthread_join(h->worker, NULL);
	h->worker_running = false;
}

void http_control_submit(struct http_thread *t, struct evhttp_request *req, enum control_kind kind,
			 uint64_t t0)
{
	struct http_front *h = t->front;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	struct http_job *j = calloc(1, sizeof(*j));
	size_t len = evbuffer_get_length(in);
	bool queued = false;

	if (!j || !(j->text = malloc(len + 1))) {
		http_send_text(req, 500, "out of memory", HTTP_CLASS_CONTROL, t0);
		goto out_free;
	}
	evbuffer_copyout(in, j->text, len);
	j->text[len] = '\0';
	j->len = len;
	j->t = t;
	j->req = req;
	j->kind = kind;
	j->t0 = t0;
	j->fd = bev ? bufferevent_getfd(bev) : -1;
	pthread_mutex_lock(&h->jobs_lock);
	if (!h->worker_quit && h->njobs < HTTP_JOBS_MAX) {
		*h->jobs_tail = j;
		h->jobs_tail = &j->next;
		h->njobs++;
		queued = true;
		pthread_cond_signal(&h->jobs_cond);
	}
	pthread_mutex_unlock(&h->jobs_lock);
	if (queued)
		return;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
	http_send_text(req, 503, "busy: too many control requests waiting", HTTP_CLASS_CONTROL, t0);
out_free:
	if (j)
		job_free(j);
}
