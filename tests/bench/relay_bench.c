/* relay_bench: what relaying one TCP connection costs, four ways.
 *
 * The gateway's relay (gateway/gw_relay.c) is a bufferevent pair. This
 * measures it beside what could replace it, on loopback: a sender thread
 * writes a stream (or a client pings 1 KiB messages to an echo thread), the
 * relay, running on the main thread's event loop, carries the bytes to a
 * receiver that reads and discards them (recv MSG_TRUNC, no copy). The ways:
 *
 *   bev       a bufferevent per socket, what one reads moved to the other's
 *             output, reading paused at 256 KiB queued (gw_relay.c today);
 *   bev-1m    the same with bufferevent_set_max_single_write(1 MiB);
 *   bev-bigrw the same also with bufferevent_set_max_single_read(256 KiB),
 *             which libevent 2.1's evbuffer_read still caps at 4096;
 *   ownread   bufferevents only write; each side is read by our own
 *             EV_READ|EV_PERSIST event, FIONREAD bytes (at most 256 KiB)
 *             read with readv straight into the other side's output
 *             (evbuffer_reserve_space / commit_space): libevent 2.1 reads at
 *             most 4096 bytes per read event (EVBUFFER_MAX_READ);
 *   ownread-w the same with bufferevent_set_max_single_write(256 KiB);
 *   splice    socket -> pipe -> socket per direction with splice(2), the
 *             pipe set to 256 KiB (F_SETPIPE_SZ), on raw events;
 *   splice-64k the same with the pipes at their default size (64 KiB,
 *             16 page slots instead of 64: less kernel memory per pipe).
 *
 * For each: MB/s of a --bytes stream and the relay thread's CPU seconds per
 * GiB (getrusage RUSAGE_THREAD), --pingpong round trips/s, each the best of
 * --rounds; then the memory each costs per idle relayed connection: malloc'd
 * bytes (mallinfo2), descriptors and the kernel's slab growth (a pipe's
 * structures; machine-wide, so noisy) with --idle relays set up, each
 * having carried 1 KiB each way. Half-close is kept as gw_relay.c keeps it: EOF
 * from one side is a shutdown(SHUT_WR) of the other once all is written.
 *
 *   relay_bench [--bytes N] [--pingpong N] [--rounds N] [--idle N]
 *               [--way bev,bev-1m,bev-bigrw,ownread,ownread-w,splice,splice-64k]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#define RB_HIGH (256 * 1024)	 /* queued bytes that pause reading (GW_RELAY_HIGH) */
#define RB_READ_MAX (256 * 1024) /* most one ownread read takes */
#define RB_PIPE_SZ (256 * 1024)	 /* the splice pipe asked for */
#define RB_MSG 1024		 /* a ping-pong message */
#define RB_CHUNK (1024 * 1024)	 /* the sender's and receiver's buffer */

enum rb_way {
	RB_BEV,
	RB_BEV_1M,
	RB_BEV_BIGRW,
	RB_OWNREAD,
	RB_OWNREAD_W,
	RB_SPLICE,
	RB_SPLICE_64K,
	RB_NWAYS
};

static const char *const rb_way_name[RB_NWAYS] = {"bev",       "bev-1m", "bev-bigrw", "ownread",
						  "ownread-w", "splice", "splice-64k"};

struct rb_relay;

/* One of the relay's two sockets, and what it reads towards the other. */
struct rb_side {
	struct rb_relay *r;
	int fd;
	struct bufferevent *bev; /* bev, bev-1m, ownread */
	struct event *rd;	 /* ownread: our read; splice: splice in */
	struct event *wr;	 /* splice: the other side's pipe out to fd */
	bool rd_on, wr_on;
	int pipe[2]; /* splice: bytes read from fd, not yet written */
	size_t piped, pipe_sz;
	bool eof;  /* fd read to its end */
	bool shut; /* fd's write side shut */
};

struct rb_relay {
	struct rb_side s[2];
	enum rb_way way;
	int error; /* -errno of the first failure, 0 */
	bool done;
};

/* Process-wide counters of the run. */
static unsigned rb_pipe_sz_failed; /* F_SETPIPE_SZ refused (main thread only) */

static struct rb_side *rb_other(struct rb_side *s)
{
	return s == &s->r->s[0] ? &s->r->s[1] : &s->r->s[0];
}

static void rb_fail(struct rb_relay *r, int err)
{
	if (!r->error)
		r->error = err;
	r->done = true;
}

/* dst's source is at EOF and all it sent was written: shut dst's write
 * side; both shut is the end of the relay. */
static void rb_maybe_shut(struct rb_side *dst)
{
	struct rb_relay *r = dst->r;

	if (dst->bev && evbuffer_get_length(bufferevent_get_output(dst->bev)) > 0) {
		/* The write callback comes once it is all written. */
		bufferevent_setwatermark(dst->bev, EV_WRITE, 0, 0);
		return;
	}
	if (!dst->shut) {
		dst->shut = true;
		shutdown(dst->fd, SHUT_WR);
	}
	if (r->s[0].shut && r->s[1].shut)
		r->done = true;
}

/* --- bev, bev-1m: gw_relay.c's way --- */

static void rb_bev_read_cb(struct bufferevent *bev, void *arg)
{
	struct rb_side *src = arg, *dst = rb_other(src);
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer *out = bufferevent_get_output(dst->bev);

	if (evbuffer_get_length(in) == 0)
		return;
	evbuffer_add_buffer(out, in);
	if (evbuffer_get_length(out) >= RB_HIGH) {
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(dst->bev, EV_WRITE, RB_HIGH / 2, 0);
	}
}

/* Ownread's own read event, declared for the shared write callback. */
static void rb_own_set_read(struct rb_side *s, bool on);

/* dst's output drained to its low watermark: its source reads again, or,
 * at EOF, dst's write side is shut. */
static void rb_bev_write_cb(struct bufferevent *bev, void *arg)
{
	struct rb_side *dst = arg, *src = rb_other(dst);

	if (src->eof) {
		rb_maybe_shut(dst);
		return;
	}
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	if (src->rd)
		rb_own_set_read(src, true);
	else
		bufferevent_enable(src->bev, EV_READ);
}

static void rb_bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rb_side *s = arg;

	if (what & BEV_EVENT_EOF) {
		rb_bev_read_cb(bev, s);
		s->eof = true;
		bufferevent_disable(bev, EV_READ);
		rb_maybe_shut(rb_other(s));
		return;
	}
	rb_fail(s->r, -ECONNRESET);
}

/* --- ownread: bufferevents write, we read --- */

static void rb_own_set_read(struct rb_side *s, bool on)
{
	if (on == s->rd_on)
		return;
	s->rd_on = on;
	if (on)
		event_add(s->rd, NULL);
	else
		event_del(s->rd);
}

static void rb_own_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rb_side *src = arg, *dst = rb_other(src);
	struct evbuffer *out = bufferevent_get_output(dst->bev);
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	int avail = 0, nvec;
	size_t want;
	ssize_t n;

	(void)what;
	if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
		avail = 4096; /* nothing said: an EOF or an error to see */
	want = (size_t)avail < RB_READ_MAX ? (size_t)avail : RB_READ_MAX;
	nvec = evbuffer_reserve_space(out, (ev_ssize_t)want, vec, 2);
	if (nvec < 0) {
		rb_fail(src->r, -ENOMEM);
		return;
	}
	for (int i = 0; i < nvec; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len;
	}
	n = readv(fd, iov, nvec);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			rb_fail(src->r, -errno);
		return;
	}
	if (n == 0) {
		src->eof = true;
		rb_own_set_read(src, false);
		rb_maybe_shut(dst);
		return;
	}
	for (int i = 0; i < nvec; i++) {
		size_t take = (size_t)n < vec[i].iov_len ? (size_t)n : vec[i].iov_len;

		vec[i].iov_len = take;
		n -= (ssize_t)take;
	}
	evbuffer_commit_space(out, vec, nvec);
	if (evbuffer_get_length(out) >= RB_HIGH) {
		rb_own_set_read(src, false);
		bufferevent_setwatermark(dst->bev, EV_WRITE, RB_HIGH / 2, 0);
	}
}

/* --- splice: socket -> pipe -> socket --- */

static void rb_ev_set(struct event *ev, bool *on, bool want)
{
	if (want == *on)
		return;
	*on = want;
	if (want)
		event_add(ev, NULL);
	else
		event_del(ev);
}

/* Moves what src has towards the other side until either blocks. Reading
 * stops while the pipe holds bytes the other side cannot take yet (the
 * pipe is the buffer; a pipe full by its page slots before pipe_sz bytes
 * would otherwise wake us for nothing). */
static void rb_splice_pump(struct rb_side *src)
{
	struct rb_side *dst = rb_other(src);
	bool in_dry = false, out_blocked = false, moved;
	ssize_t n;

	do {
		moved = false;
		if (!src->eof && !in_dry && src->piped < src->pipe_sz) {
			size_t ask = src->pipe_sz - src->piped;

			n = splice(src->fd, NULL, src->pipe[1], NULL, ask,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				src->piped += (size_t)n;
				moved = true;
				/* Less than asked: the socket is most likely dry. */
				in_dry = (size_t)n < ask;
			} else if (n == 0) {
				src->eof = true;
			} else if (errno == EAGAIN) {
				in_dry = true;
			} else {
				rb_fail(src->r, -errno);
				return;
			}
		}
		if (src->piped > 0 && !out_blocked) {
			n = splice(src->pipe[0], NULL, dst->fd, NULL, src->piped,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				src->piped -= (size_t)n;
				moved = true;
			} else if (n < 0 && errno == EAGAIN) {
				out_blocked = true;
			} else {
				rb_fail(src->r, n < 0 ? -errno : -EPIPE);
				return;
			}
		}
	} while (moved);
	rb_ev_set(src->rd, &src->rd_on, !src->eof && src->piped == 0);
	rb_ev_set(dst->wr, &dst->wr_on, src->piped > 0);
	if (src->eof && src->piped == 0)
		rb_maybe_shut(dst);
}

static void rb_splice_in_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rb_splice_pump(arg);
}

/* fd can take more: the other side's pipe goes on. */
static void rb_splice_out_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rb_splice_pump(rb_other(arg));
}

/* --- setting a relay up and down --- */

static void rb_relay_free(struct rb_relay *r)
{
	for (int i = 0; i < 2; i++) {
		struct rb_side *s = &r->s[i];

		if (s->bev)
			bufferevent_free(s->bev);
		if (s->rd)
			event_free(s->rd);
		if (s->wr)
			event_free(s->wr);
		if (s->pipe[0] >= 0)
			close(s->pipe[0]);
		if (s->pipe[1] >= 0)
			close(s->pipe[1]);
	}
	free(r);
}

/* A relay between fd0 and fd1 (non-blocking, still ours to close). */
static struct rb_relay *rb_relay_new(struct event_base *base, enum rb_way way, int fd0, int fd1)
{
	struct rb_relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->way = way;
	r->s[0].fd = fd0;
	r->s[1].fd = fd1;
	for (int i = 0; i < 2; i++) {
		struct rb_side *s = &r->s[i];

		s->r = r;
		s->pipe[0] = s->pipe[1] = -1;
	}
	for (int i = 0; i < 2; i++) {
		struct rb_side *s = &r->s[i];

		if (way == RB_SPLICE || way == RB_SPLICE_64K) {
			int sz = -1;

			if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
				goto out_free;
			if (way == RB_SPLICE)
				sz = fcntl(s->pipe[1], F_SETPIPE_SZ, RB_PIPE_SZ);
			if (sz < 0) {
				rb_pipe_sz_failed += way == RB_SPLICE;
				sz = fcntl(s->pipe[1], F_GETPIPE_SZ);
			}
			s->pipe_sz = sz > 0 ? (size_t)sz : 65536;
			s->rd = event_new(base, s->fd, EV_READ | EV_PERSIST, rb_splice_in_cb, s);
			s->wr = event_new(base, s->fd, EV_WRITE | EV_PERSIST, rb_splice_out_cb, s);
			if (!s->rd || !s->wr)
				goto out_free;
			continue;
		}
		s->bev = bufferevent_socket_new(base, s->fd, 0);
		if (!s->bev)
			goto out_free;
		if ((way == RB_BEV_1M || way == RB_BEV_BIGRW) &&
		    bufferevent_set_max_single_write(s->bev, 1024 * 1024) < 0)
			goto out_free;
		if (way == RB_OWNREAD_W && bufferevent_set_max_single_write(s->bev, RB_HIGH) < 0)
			goto out_free;
		if (way == RB_BEV_BIGRW && bufferevent_set_max_single_read(s->bev, RB_READ_MAX) < 0)
			goto out_free;
		if (way == RB_OWNREAD || way == RB_OWNREAD_W) {
			s->rd = event_new(base, s->fd, EV_READ | EV_PERSIST, rb_own_read_cb, s);
			if (!s->rd)
				goto out_free;
			bufferevent_setcb(s->bev, NULL, rb_bev_write_cb, rb_bev_event_cb, s);
		} else {
			bufferevent_setcb(s->bev, rb_bev_read_cb, rb_bev_write_cb, rb_bev_event_cb,
					  s);
		}
	}
	for (int i = 0; i < 2; i++) {
		struct rb_side *s = &r->s[i];

		if (s->pipe[0] >= 0)
			rb_ev_set(s->rd, &s->rd_on, true);
		else if (s->rd)
			bufferevent_enable(s->bev, EV_WRITE), rb_own_set_read(s, true);
		else
			bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	}
	return r;

out_free:
	rb_relay_free(r);
	return NULL;
}

/* --- loopback sockets --- */

static int rb_listener = -1;
static struct sockaddr_in rb_listen_addr;

static int rb_listen(void)
{
	socklen_t len = sizeof(rb_listen_addr);

	rb_listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (rb_listener < 0)
		return -errno;
	rb_listen_addr.sin_family = AF_INET;
	rb_listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(rb_listener, (struct sockaddr *)&rb_listen_addr, sizeof(rb_listen_addr)) < 0 ||
	    listen(rb_listener, 4096) < 0 ||
	    getsockname(rb_listener, (struct sockaddr *)&rb_listen_addr, &len) < 0)
		return -errno;
	return 0;
}

/* A connected loopback pair: fds[0] blocking (an end: sender, receiver),
 * fds[1] non-blocking (the relay's). */
static int rb_tcp_pair(int fds[2])
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), a;

	if (c < 0)
		return -errno;
	if (connect(c, (struct sockaddr *)&rb_listen_addr, sizeof(rb_listen_addr)) < 0) {
		int err = -errno;

		close(c);
		return err;
	}
	a = accept4(rb_listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (a < 0) {
		int err = -errno;

		close(c);
		return err;
	}
	fds[0] = c;
	fds[1] = a;
	return 0;
}

/* --- the ends --- */

static double rb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rb_thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static bool rb_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Reads and drops to EOF; the count of bytes, or -1 on an error. */
static int64_t rb_drain(int fd)
{
	int64_t got = 0;

	for (;;) {
		ssize_t n = recv(fd, NULL, RB_CHUNK, MSG_TRUNC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return got;
		got += n;
	}
}

static bool rb_read_exact(int fd, char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

struct rb_end {
	int fd;
	uint64_t bytes; /* sender: to send; pingpong client: round trips */
	int64_t got;	/* receiver: bytes read */
	double t_end;	/* receiver, client: when done */
	bool ok;
};

static void *rb_sender_main(void *arg)
{
	struct rb_end *e = arg;
	char *buf = malloc(RB_CHUNK);
	uint64_t left = e->bytes;

	e->ok = buf != NULL;
	if (buf)
		memset(buf, 'x', RB_CHUNK);
	while (e->ok && left > 0) {
		size_t n = left < RB_CHUNK ? (size_t)left : RB_CHUNK;

		e->ok = rb_write_all(e->fd, buf, n);
		left -= n;
	}
	shutdown(e->fd, SHUT_WR);
	/* The relay passes on the receiver's half-close: that is the end. */
	if (rb_drain(e->fd) != 0)
		e->ok = false;
	free(buf);
	return NULL;
}

static void *rb_receiver_main(void *arg)
{
	struct rb_end *e = arg;

	e->got = rb_drain(e->fd);
	e->t_end = rb_now();
	e->ok = e->got >= 0;
	shutdown(e->fd, SHUT_WR);
	return NULL;
}

static void *rb_ping_main(void *arg)
{
	struct rb_end *e = arg;
	char msg[RB_MSG], back[RB_MSG];

	memset(msg, 'p', sizeof(msg));
	e->ok = true;
	for (uint64_t i = 0; e->ok && i < e->bytes; i++)
		e->ok = rb_write_all(e->fd, msg, sizeof(msg)) &&
			rb_read_exact(e->fd, back, sizeof(back));
	e->t_end = rb_now();
	shutdown(e->fd, SHUT_WR);
	if (rb_drain(e->fd) != 0)
		e->ok = false;
	return NULL;
}

static void *rb_echo_main(void *arg)
{
	struct rb_end *e = arg;
	char msg[RB_MSG];

	e->ok = true;
	while (rb_read_exact(e->fd, msg, sizeof(msg)))
		if (!rb_write_all(e->fd, msg, sizeof(msg))) {
			e->ok = false;
			break;
		}
	shutdown(e->fd, SHUT_WR);
	return NULL;
}

/* --- the runs --- */

struct rb_result {
	double secs, cpu;
	bool ok;
};

/* One relayed connection: a (end a) -> relay -> (end b) b, the ends'
 * threads started on fresh sockets; the relay runs here until both
 * directions are done. */
static struct rb_result rb_run_one(enum rb_way way, void *(*a_main)(void *),
				   void *(*b_main)(void *), uint64_t amount)
{
	struct rb_result res = {0};
	struct event_base *base = event_base_new();
	struct rb_end ea = {.bytes = amount}, eb = {0};
	int p0[2] = {-1, -1}, p1[2] = {-1, -1};
	struct rb_relay *r = NULL;
	pthread_t ta, tb;
	double t0, c0;

	if (!base || rb_tcp_pair(p0) < 0 || rb_tcp_pair(p1) < 0)
		goto out;
	r = rb_relay_new(base, way, p0[1], p1[1]);
	if (!r)
		goto out;
	ea.fd = p0[0];
	eb.fd = p1[0];
	c0 = rb_thread_cpu();
	t0 = rb_now();
	if (pthread_create(&ta, NULL, a_main, &ea) != 0)
		goto out;
	if (pthread_create(&tb, NULL, b_main, &eb) != 0) {
		shutdown(p0[1], SHUT_RDWR);
		pthread_join(ta, NULL);
		goto out;
	}
	while (!r->done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	res.cpu = rb_thread_cpu() - c0;
	if (r->error) {
		/* Unblock the ends. */
		shutdown(p0[1], SHUT_RDWR);
		shutdown(p1[1], SHUT_RDWR);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	if (a_main == rb_sender_main) {
		res.secs = eb.t_end - t0;
		res.ok = !r->error && ea.ok && eb.ok && (uint64_t)eb.got == amount;
	} else {
		res.secs = ea.t_end - t0;
		res.ok = !r->error && ea.ok && eb.ok;
	}
	if (r->error)
		fprintf(stderr, "relay_bench: %s: %s\n", rb_way_name[way], strerror(-r->error));
out:
	if (r)
		rb_relay_free(r);
	for (int i = 0; i < 2; i++) {
		if (p0[i] >= 0)
			close(p0[i]);
		if (p1[i] >= 0)
			close(p1[i]);
	}
	if (base)
		event_base_free(base);
	return res;
}

static size_t rb_heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* The kernel's slab in bytes (/proc/meminfo "Slab:"): where a pipe's
 * structures live. Machine-wide, so others' work is noise in it. */
static double rb_kernel_slab(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	double kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Slab: %lf kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static long rb_open_fds(void)
{
	long n = 0;

	for (int fd = 0; fd < 65536; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

/* count idle relays: malloc'd bytes and descriptors each, beyond the two
 * sockets each relay has anyway. Each carries 1 KiB each way first, so
 * what a relay allocates on its first bytes is counted. */
static int rb_idle(enum rb_way way, unsigned count, double *bytes_each, double *fds_each,
		   double *slab_each)
{
	struct event_base *base = event_base_new();
	struct rb_relay **rs = calloc(count, sizeof(*rs));
	int(*pairs)[2][2] = calloc(count, sizeof(*pairs));
	char msg[RB_MSG];
	size_t h0, h1;
	long f0, f1;
	double k0, k1;
	unsigned made = 0, pending;
	int err = -ENOMEM;

	memset(msg, 'i', sizeof(msg));
	if (!base || !rs || !pairs)
		goto out;
	for (made = 0; made < count; made++) {
		err = rb_tcp_pair(pairs[made][0]);
		if (err == 0 && (err = rb_tcp_pair(pairs[made][1])) < 0)
			close(pairs[made][0][0]), close(pairs[made][0][1]);
		if (err < 0)
			goto out;
	}
	f0 = rb_open_fds();
	k0 = rb_kernel_slab();
	h0 = rb_heap_used();
	for (unsigned i = 0; i < count; i++) {
		rs[i] = rb_relay_new(base, way, pairs[i][0][1], pairs[i][1][1]);
		if (!rs[i]) {
			err = -ENOMEM;
			goto out;
		}
		if (!rb_write_all(pairs[i][0][0], msg, sizeof(msg)) ||
		    !rb_write_all(pairs[i][1][0], msg, sizeof(msg))) {
			err = -EIO;
			goto out;
		}
	}
	/* Run the loop until every end has its 1 KiB. */
	pending = 2 * count;
	while (pending > 0) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		pending = 0;
		for (unsigned i = 0; i < count; i++)
			for (int j = 0; j < 2; j++) {
				int avail = 0;

				ioctl(pairs[i][j][0], FIONREAD, &avail);
				if (avail < RB_MSG)
					pending++;
			}
	}
	h1 = rb_heap_used();
	k1 = rb_kernel_slab();
	f1 = rb_open_fds();
	*bytes_each = ((double)h1 - (double)h0) / count;
	*slab_each = (k1 - k0) / count;
	*fds_each = (double)(f1 - f0) / count;
	err = 0;
out:
	for (unsigned i = 0; i < count; i++)
		if (rs && rs[i])
			rb_relay_free(rs[i]);
	for (unsigned i = 0; i < made; i++)
		for (int j = 0; j < 2; j++)
			close(pairs[i][j][0]), close(pairs[i][j][1]);
	free(pairs);
	free(rs);
	if (base)
		event_base_free(base);
	return err;
}

static double rb_load(void)
{
	double l[1] = {0};

	getloadavg(l, 1);
	return l[0];
}

static int rb_parse_ways(const char *arg, bool ways[RB_NWAYS])
{
	char *copy = strdup(arg), *save = NULL;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	memset(ways, 0, RB_NWAYS * sizeof(bool));
	for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		int k;

		for (k = 0; k < RB_NWAYS && strcmp(w, rb_way_name[k]) != 0; k++)
			;
		if (k == RB_NWAYS) {
			fprintf(stderr,
				"relay_bench: unknown way '%s' (bev, bev-1m, bev-bigrw, ownread, "
				"ownread-w, splice, splice-64k)\n",
				w);
			err = -EINVAL;
			break;
		}
		ways[k] = true;
	}
	free(copy);
	return err;
}

static bool rb_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		return false;
	*out = v;
	return true;
}

static void rb_usage(void)
{
	fprintf(stderr, "usage: relay_bench [--bytes N] [--pingpong N] [--rounds N] [--idle N]\n"
			"                   [--way "
			"bev,bev-1m,bev-bigrw,ownread,ownread-w,splice,splice-64k]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"bytes", required_argument, NULL, 'b'},
	    {"pingpong", required_argument, NULL, 'p'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"idle", required_argument, NULL, 'i'},
	    {"way", required_argument, NULL, 'w'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t bytes = 1ULL << 30, pingpong = 20000, rounds = 3, idle = 1000;
	bool ways[RB_NWAYS] = {true, true, true, true, true, true, true};
	int opt, failed = 0;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		bool ok = true;

		switch (opt) {
		case 'b':
			ok = rb_parse_u64(optarg, &bytes);
			break;
		case 'p':
			ok = rb_parse_u64(optarg, &pingpong);
			break;
		case 'r':
			ok = rb_parse_u64(optarg, &rounds) && rounds > 0;
			break;
		case 'i':
			ok = rb_parse_u64(optarg, &idle) && idle <= 4000;
			break;
		case 'w':
			ok = rb_parse_ways(optarg, ways) == 0;
			break;
		case 'h':
			rb_usage();
			return 0;
		default:
			rb_usage();
			return 2;
		}
		if (!ok) {
			fprintf(stderr,
				"relay_bench: bad value '%s' (counts are whole numbers, "
				"--rounds at least 1, --idle at most 4000)\n",
				optarg);
			rb_usage();
			return 2;
		}
	}
	if (optind < argc) {
		rb_usage();
		return 2;
	}
	if (rb_listen() < 0) {
		perror("relay_bench: listen on 127.0.0.1");
		return 1;
	}
	printf("relay_bench: %" PRIu64 " bytes stream, %" PRIu64 " ping-pongs of %d bytes, "
	       "best of %" PRIu64 ", %" PRIu64 " idle relays\n",
	       bytes, pingpong, RB_MSG, rounds, idle);
	for (int w = 0; w < RB_NWAYS; w++) {
		struct rb_result best = {0}, bestp = {0};
		double bytes_each = 0, fds_each = 0, slab_each = 0, load_s, load_p;
		int err = 0;

		if (!ways[w])
			continue;
		for (uint64_t i = 0; bytes > 0 && i < rounds; i++) {
			struct rb_result res =
			    rb_run_one(w, rb_sender_main, rb_receiver_main, bytes);

			if (!res.ok) {
				failed = 1;
				continue;
			}
			if (!best.ok || res.secs < best.secs)
				best = res;
		}
		load_s = rb_load();
		for (uint64_t i = 0; pingpong > 0 && i < rounds; i++) {
			struct rb_result res = rb_run_one(w, rb_ping_main, rb_echo_main, pingpong);

			if (!res.ok) {
				failed = 1;
				continue;
			}
			if (!bestp.ok || res.secs < bestp.secs)
				bestp = res;
		}
		load_p = rb_load();
		if (idle > 0)
			err = rb_idle(w, (unsigned)idle, &bytes_each, &fds_each, &slab_each);
		if (err < 0) {
			fprintf(stderr, "relay_bench: %s: idle relays: %s\n", rb_way_name[w],
				strerror(-err));
			failed = 1;
		}
		printf("way %-10s stream %s %.0f MB/s cpu %.3f s/GiB (load %.2f) | "
		       "pingpong %s %.0f rt/s cpu %.1f us/rt (load %.2f) | "
		       "idle %.0f bytes %.1f fds %.0f slab each\n",
		       rb_way_name[w],
		       !bytes	 ? "skipped"
		       : best.ok ? "ok"
				 : "FAILED",
		       best.ok ? (double)bytes / best.secs / 1e6 : 0.0,
		       best.ok ? best.cpu / ((double)bytes / (1 << 30)) : 0.0, load_s,
		       !pingpong  ? "skipped"
		       : bestp.ok ? "ok"
				  : "FAILED",
		       bestp.ok ? (double)pingpong / bestp.secs : 0.0,
		       bestp.ok ? bestp.cpu / (double)pingpong * 1e6 : 0.0, load_p, bytes_each,
		       fds_each, slab_each);
		fflush(stdout);
	}
	if (rb_pipe_sz_failed)
		printf("relay_bench: F_SETPIPE_SZ %d refused %u times (pipes left at their size)\n",
		       RB_PIPE_SZ, rb_pipe_sz_failed);
	return failed;
}
