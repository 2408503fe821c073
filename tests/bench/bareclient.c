/* bareclient: the machine's own limit for proxy checks over loopback.
 *
 * The least a checker must do, as fast as libevent allows: connect to an
 * HTTP proxy, send a short absolute-URI GET, read the answer to its end,
 * close with SO_LINGER {1,0} (no TIME_WAIT). Raw descriptors and one event
 * per connection, a fixed number in flight, the list's proxies taken round
 * and round until --total checks are done. It judges an answer by its status
 * line only and prints the rate; it is a yardstick, not a checker: no SOCKS,
 * no retries, no expected text.
 *
 *   bareclient --list FILE [--concurrency N] [--total N] [--timeout MS]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#define BC_FD_RESERVE 16
#define BC_STATUS_LEN 12

static const char bc_request[] = "GET http://127.0.0.1:9/ HTTP/1.1\r\n"
				 "Host: 127.0.0.1:9\r\n"
				 "Connection: close\r\n\r\n";
static const char bc_ok_status[] = "HTTP/1.1 200";

struct bc_opts {
	const char *list;
	unsigned concurrency;
	uint64_t total; /* 0: each proxy of the list once */
	int timeout_ms;
};

struct bc_stats {
	uint64_t ok, failed, timeouts, local, max_inflight;
};

struct bc_run;

/* One connection in flight; slots are reused, never freed mid-run. */
struct bc_check {
	struct event ev;
	struct bc_run *run;
	struct bc_check *next_free;
	int fd;
	bool sent;
	uint8_t got; /* bytes of the status line seen */
	char status[BC_STATUS_LEN];
};

struct bc_run {
	struct bc_opts o;
	struct sockaddr_in *targets;
	size_t ntargets, next_target;
	struct event_base *base;
	struct bc_check *slots, *free_slots;
	uint64_t started, finished, inflight;
	struct timeval timeout;
	struct bc_stats st;
};

static double bc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "http://A.B.C.D:PORT" lines; anything else (SOCKS, credentials) skipped. */
static int bc_parse_line(const char *line, struct sockaddr_in *out)
{
	unsigned a, b, c, d, port;
	char tail = '\0';

	if (sscanf(line, "http://%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &tail) < 5)
		return -EINVAL;
	if (a > 255 || b > 255 || c > 255 || d > 255 || !port || port > 65535)
		return -EINVAL;
	if (tail != '\n' && tail != '\r' && tail != '\0')
		return -EINVAL;
	*out = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				     .sin_addr.s_addr = htonl(a << 24 | b << 16 | c << 8 | d) };
	return 0;
}

static int bc_load(struct bc_run *r)
{
	FILE *f = fopen(r->o.list, "r");
	char line[512];
	size_t cap = 0;
	int rc = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		struct sockaddr_in a;

		if (bc_parse_line(line, &a) < 0)
			continue;
		if (r->ntargets == cap) {
			size_t ncap = cap ? cap * 2 : 1024;
			struct sockaddr_in *t = realloc(r->targets, ncap * sizeof(*t));

			if (!t) {
				rc = -ENOMEM;
				break;
			}
			r->targets = t;
			cap = ncap;
		}
		r->targets[r->ntargets++] = a;
	}
	fclose(f);
	return rc;
}

static void bc_check_cb(evutil_socket_t fd, short what, void *arg);
static void bc_launch(struct bc_run *r);

/* Closes with a reset (SO_LINGER {1,0} was set) and counts. */
static void bc_release(struct bc_check *c, uint64_t *counter)
{
	struct bc_run *r = c->run;

	event_del(&c->ev);
	close(c->fd);
	(*counter)++;
	c->next_free = r->free_slots;
	r->free_slots = c;
	r->inflight--;
	r->finished++;
}

/* A check is over: start the next, or end the run after the last. */
static void bc_finish(struct bc_check *c, uint64_t *counter)
{
	struct bc_run *r = c->run;

	bc_release(c, counter);
	bc_launch(r);
}

static void bc_wait(struct bc_check *c, short events)
{
	event_del(&c->ev);
	event_assign(&c->ev, c->run->base, c->fd, events | EV_PERSIST, bc_check_cb, c);
	event_add(&c->ev, &c->run->timeout);
}

/* Connected (or not): send the request, then wait for the answer. */
static void bc_on_writable(struct bc_check *c)
{
	struct bc_run *r = c->run;
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		bc_finish(c, &r->st.failed);
		return;
	}
	if (send(c->fd, bc_request, sizeof(bc_request) - 1, MSG_NOSIGNAL) !=
	    (ssize_t)sizeof(bc_request) - 1) {
		bc_finish(c, &r->st.failed);
		return;
	}
	c->sent = true;
	bc_wait(c, EV_READ);
}

/* Reads to the end; the answer is good if it starts with a 200 status. */
static void bc_on_readable(struct bc_check *c)
{
	struct bc_run *r = c->run;
	char buf[4096];
	ssize_t n;

	while ((n = recv(c->fd, buf, sizeof(buf), 0)) > 0) {
		size_t take = BC_STATUS_LEN - c->got;

		if ((size_t)n < take)
			take = (size_t)n;
		memcpy(c->status + c->got, buf, take);
		c->got = (uint8_t)(c->got + take);
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 0 && c->got == BC_STATUS_LEN &&
	    memcmp(c->status, bc_ok_status, BC_STATUS_LEN) == 0)
		bc_finish(c, &r->st.ok);
	else
		bc_finish(c, &r->st.failed);
}

static void bc_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bc_check *c = arg;

	if (what & EV_TIMEOUT)
		bc_finish(c, &c->run->st.timeouts);
	else if (!c->sent)
		bc_on_writable(c);
	else
		bc_on_readable(c);
}

/* Starts checks until the concurrency is reached or the total started. */
static void bc_launch(struct bc_run *r)
{
	static const struct linger reset = { 1, 0 };

	while (r->free_slots && r->started < r->o.total) {
		struct bc_check *c = r->free_slots;
		const struct sockaddr_in *a = &r->targets[r->next_target];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			r->st.local++;
			if (r->inflight)
				return;
			fprintf(stderr, "bareclient: socket: %s\n", strerror(errno));
			event_base_loopexit(r->base, NULL);
			return;
		}
		r->next_target = (r->next_target + 1) % r->ntargets;
		r->free_slots = c->next_free;
		r->started++;
		r->inflight++;
		if (r->inflight > r->st.max_inflight)
			r->st.max_inflight = r->inflight;
		c->fd = fd;
		c->sent = false;
		c->got = 0;
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
		event_assign(&c->ev, r->base, fd, EV_WRITE | EV_PERSIST, bc_check_cb, c);
		if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0 && errno != EINPROGRESS) {
			bc_release(c, errno == EADDRNOTAVAIL ? &r->st.local : &r->st.failed);
			continue;
		}
		event_add(&c->ev, &r->timeout);
	}
	if (r->finished == r->o.total)
		event_base_loopexit(r->base, NULL);
}

/* The concurrency the descriptor limit allows, the limit raised first. */
static unsigned bc_fit_concurrency(unsigned want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return want;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && want > rl.rlim_cur - BC_FD_RESERVE)
		want = (unsigned)(rl.rlim_cur - BC_FD_RESERVE);
	return want;
}

static int bc_parse_args(struct bc_opts *o, int argc, char **argv)
{
	static const struct option longs[] = {
		{ "list", required_argument, NULL, 'l' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "total", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*o = (struct bc_opts){ .concurrency = 1000, .timeout_ms = 3000 };
	while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		char *end = NULL;
		unsigned long long v = 0;

		if (opt != 'l')
			v = strtoull(optarg, &end, 10);
		if (opt == 'l')
			o->list = optarg;
		else if (opt == 'c' && *end == '\0' && v > 0 && v < 1000000)
			o->concurrency = (unsigned)v;
		else if (opt == 'n' && *end == '\0')
			o->total = v;
		else if (opt == 't' && *end == '\0' && v > 0 && v < 3600000)
			o->timeout_ms = (int)v;
		else
			return -EINVAL;
	}
	return o->list && optind == argc ? 0 : -EINVAL;
}

static int bc_run_all(struct bc_run *r)
{
	double t0, t1;

	r->slots = calloc(r->o.concurrency, sizeof(*r->slots));
	r->base = event_base_new();
	if (!r->slots || !r->base)
		return -ENOMEM;
	for (unsigned i = 0; i < r->o.concurrency; i++) {
		r->slots[i].run = r;
		r->slots[i].next_free = r->free_slots;
		r->free_slots = &r->slots[i];
	}
	r->timeout = (struct timeval){ r->o.timeout_ms / 1000, r->o.timeout_ms % 1000 * 1000 };
	t0 = bc_now();
	bc_launch(r);
	if (r->finished < r->o.total)
		event_base_dispatch(r->base);
	t1 = bc_now();
	printf("bareclient: %" PRIu64 " checks in %.2f s: %.0f checks/s (ok %" PRIu64
	       ", failed %" PRIu64 ", timeouts %" PRIu64 ", local errors %" PRIu64
	       "); concurrency %u, max in flight %" PRIu64 "\n",
	       r->finished, t1 - t0, (double)r->finished / (t1 - t0), r->st.ok, r->st.failed,
	       r->st.timeouts, r->st.local, r->o.concurrency, r->st.max_inflight);
	return r->finished == r->o.total ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	struct bc_run r = { 0 };
	int rc;

	if (bc_parse_args(&r.o, argc, argv) < 0) {
		fprintf(stderr, "usage: bareclient --list FILE [--concurrency N] [--total N] "
				"[--timeout MS]\n");
		return 2;
	}
	rc = bc_load(&r);
	if (rc == 0 && r.ntargets == 0)
		rc = -ENOENT;
	if (rc) {
		fprintf(stderr, "bareclient: %s: no http://A.B.C.D:PORT lines read (%s)\n", r.o.list,
			strerror(-rc));
		goto out_targets;
	}
	if (!r.o.total)
		r.o.total = r.ntargets;
	r.o.concurrency = bc_fit_concurrency(r.o.concurrency);
	rc = bc_run_all(&r);
	if (r.base)
		event_base_free(r.base);
	free(r.slots);
out_targets:
	free(r.targets);
	return rc ? 1 : 0;
}
