/* cli_judge: `proxyfs judge`, a judge endpoint of your own.
 *
 * Listens on one address (libevent's evhttp) and answers every GET or HEAD,
 * to any path and in origin or absolute form, with 200 and a plain-text
 * echo of who asked and with which headers; any other method gets 405.
 * The answer, read by checker/echo.c, is one item a line:
 *
 *	proxyfs-judge 1              format name and version, always first
 *	remote_addr 127.0.0.2        the address that connected (IPv4-mapped
 *	                             IPv6 shown as IPv4)
 *	remote_port 40312
 *	method GET
 *	uri http://127.0.0.1:8080/   the request target as sent
 *	header Host: 127.0.0.1:8080  one line per request header, in order
 *	header Via: 1.1 tinyproxy (tinyproxy/1.11.1)
 *
 * Control characters in the echoed text are shown as '?', so each item
 * stays on its line. The checker's default expect accepts this judge (it
 * echoes each check's token in the User-Agent); "proxyfs-judge" also
 * works as an expected text. Keeps nothing between requests and logs nothing per
 * request; it asks to close each connection after its answer (evhttp keeps
 * a CONNECT's open until the 10 s idle timeout). A host name listens on the
 * first address it resolves to; ":PORT" listens on every address (IPv6 and
 * IPv4 on one socket where the host has IPv6). SIGHUP is ignored: a judge
 * has nothing to reload, and a closed terminal must not stop it.
 */
#include "cli_judge.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define EXIT_USAGE 2
#define JUDGE_FORMAT_VERSION 1
#define JUDGE_TIMEOUT_S 10
#define JUDGE_HEADERS_MAX (64 * 1024)
#define JUDGE_BODY_MAX (64 * 1024)
#define JUDGE_BACKLOG 1024

static void judge_usage(FILE *out)
{
	fprintf(out,
		"usage: proxyfs judge --listen ADDR:PORT\n"
		"\n"
		"Serves a judge: every GET or HEAD, to any path, is answered with 200 and a\n"
		"plain-text echo of the caller's address and request headers, first line\n"
		"\"proxyfs-judge %d\". Point the checker at it with\n"
		"judge = http://ADDR:PORT/ (the default expect accepts it).\n"
		"\n"
		"  -l, --listen ADDR:PORT  where to listen: 1.2.3.4:80, [::1]:80, host:80,\n"
		"                          :80 for every address; port 0 picks a free one\n"
		"                          (printed at start)\n"
		"  -h, --help              this text\n",
		JUDGE_FORMAT_VERSION);
}

/* Appends s with control characters replaced, so it stays on one line. */
static void judge_add_clean(struct evbuffer *b, const char *s)
{
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		evbuffer_add(b, (c < 0x20 && c != '\t') || c == 0x7f ? "?" : p, 1);
	}
}

static void judge_render(struct evhttp_request *req, struct evbuffer *b)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const char *uri = evhttp_request_get_uri(req);
	const char *method = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD ? "HEAD" : "GET";
	char *addr = NULL;
	ev_uint16_t port = 0;

	evhttp_connection_get_peer(conn, &addr, &port);
	if (addr && strncmp(addr, "::ffff:", 7) == 0 && strchr(addr + 7, '.'))
		addr += 7;
	evbuffer_add_printf(b, "proxyfs-judge %d\nremote_addr ", JUDGE_FORMAT_VERSION);
	judge_add_clean(b, addr ? addr : "");
	evbuffer_add_printf(b, "\nremote_port %u\nmethod %s\nuri ", (unsigned)port, method);
	judge_add_clean(b, uri ? uri : "");
	evbuffer_add(b, "\n", 1);
	for (struct evkeyval *h = in->tqh_first; h; h = h->next.tqe_next) {
		evbuffer_add(b, "header ", 7);
		judge_add_clean(b, h->key);
		evbuffer_add(b, ": ", 2);
		judge_add_clean(b, h->value);
		evbuffer_add(b, "\n", 1);
	}
}

static void judge_request_cb(struct evhttp_request *req, void *arg)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();
	char length[24];

	(void)arg;
	if (!body) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(out, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_add_header(out, "Connection", "close");
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(out, "Allow", "GET, HEAD");
		evbuffer_add_printf(body, "method not allowed: use GET or HEAD\n");
		evhttp_send_reply(req, 405, "Method Not Allowed", body);
		goto out_body;
	}
	judge_render(req, body);
	if (cmd == EVHTTP_REQ_GET) {
		evhttp_send_reply(req, HTTP_OK, "OK", body);
		goto out_body;
	}
	/* evhttp would send a body after a HEAD too: send its length only. */
	snprintf(length, sizeof(length), "%zu", evbuffer_get_length(body));
	evhttp_add_header(out, "Content-Length", length);
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
out_body:
	evbuffer_free(body);
}

static void judge_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

/* Splits ADDR:PORT ([v6]:PORT for IPv6) into host and port, both pointing
 * into buf (a copy of spec), host NULL for ":PORT" (every address);
 * -EINVAL when it is not of that form. */
static int judge_split(const char *spec, char *buf, size_t size, char **host, char **port)
{
	char *colon, *end;
	long n;

	if (strlen(spec) >= size)
		return -EINVAL;
	strcpy(buf, spec);
	if (buf[0] == '[') {
		end = strchr(buf, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		*end = '\0';
		*host = buf + 1;
		colon = end + 1;
	} else {
		colon = strrchr(buf, ':');
		if (!colon || memchr(buf, ':', (size_t)(colon - buf)))
			return -EINVAL; /* no port, or IPv6 without brackets */
		*colon = '\0';
		*host = buf;
	}
	*port = colon + 1;
	errno = 0;
	n = strtol(*port, &end, 10);
	if (**port < '0' || **port > '9' || *end || errno || n > 65535)
		return -EINVAL;
	if (**host == '\0') {
		if (buf[0] == '[')
			return -EINVAL; /* "[]:PORT" */
		*host = NULL;
	}
	return 0;
}

/* True when this host can make an IPv6 socket. */
static bool judge_has_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* A listening, non-blocking socket on spec. Returns the fd, or -1 after a
 * message; *status tells which exit status that message calls for. */
static int judge_listen(const char *spec, int *status)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char buf[300], *host, *port;
	int fd = -1, one = 1, zero = 0, rc;

	*status = EXIT_USAGE;
	if (judge_split(spec, buf, sizeof(buf), &host, &port) < 0) {
		fprintf(stderr,
			"proxyfs judge: --listen '%s': expected ADDR:PORT, [IPV6]:PORT or :PORT\n",
			spec);
		return -1;
	}
	/* Every address: the IPv6 wildcard taking IPv4 too, or the IPv4
	 * one on a host without IPv6. */
	if (!host)
		hints.ai_family = judge_has_ipv6() ? AF_INET6 : AF_INET;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "proxyfs judge: --listen '%s': %s\n", spec, gai_strerror(rc));
		return -1;
	}
	*status = 1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_error;
	if (!host && ai->ai_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		goto out_close;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, JUDGE_BACKLOG) < 0)
		goto out_close;
	freeaddrinfo(ai);
	return fd;
out_close:
	rc = errno;
	close(fd);
	errno = rc;
out_error:
	fprintf(stderr, "proxyfs judge: cannot listen on %s: %s\n", spec, strerror(errno));
	freeaddrinfo(ai);
	return -1;
}

/* "proxyfs judge: listening on ADDR:PORT", with the port the kernel gave. */
static void judge_announce(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[NI_MAXHOST], port[NI_MAXSERV];

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		fprintf(stderr, "proxyfs judge: listening\n");
	} else {
		fprintf(stderr, ss.ss_family == AF_INET6 ? "proxyfs judge: listening on [%s]:%s\n"
							 : "proxyfs judge: listening on %s:%s\n",
			host, port);
	}
	fflush(stderr);
}

static struct evhttp *judge_http_new(struct event_base *base)
{
	struct evhttp *http = evhttp_new(base);

	if (!http)
		return NULL;
	/* Every method reaches the callback, which answers 405 itself. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						 EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(http, JUDGE_TIMEOUT_S);
	evhttp_set_max_headers_size(http, JUDGE_HEADERS_MAX);
	evhttp_set_max_body_size(http, JUDGE_BODY_MAX);
	evhttp_set_gencb(http, judge_request_cb, NULL);
	return http;
}

/* Serves on fd (taken over) until a signal; returns the exit status. */
static int judge_serve(int fd)
{
	struct event_base *base = event_base_new();
	struct event *sigterm = NULL, *sigint = NULL;
	struct evhttp *http = NULL;
	int status = 1;

	if (!base)
		goto out_fd;
	sigterm = evsignal_new(base, SIGTERM, judge_signal_cb, base);
	sigint = evsignal_new(base, SIGINT, judge_signal_cb, base);
	if (!sigterm || !sigint || event_add(sigterm, NULL) < 0 || event_add(sigint, NULL) < 0)
		goto out_signals;
	http = judge_http_new(base);
	if (!http)
		goto out_signals;
	if (!evhttp_accept_socket_with_handle(http, fd))
		goto out_http;
	judge_announce(fd);
	fd = -1; /* closed by evhttp_free from now on */
	status = event_base_dispatch(base) < 0 ? 1 : 0;
out_http:
	evhttp_free(http);
out_signals:
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	event_base_free(base);
out_fd:
	if (fd >= 0)
		close(fd);
	if (status)
		fprintf(stderr, "proxyfs judge: cannot serve\n");
	return status;
}

int judge_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_on = NULL;
	int opt, fd, status;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "l:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_on = optarg;
			break;
		case 'h':
			judge_usage(stdout);
			return 0;
		default:
			judge_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (!listen_on || optind != argc) {
		fprintf(stderr, "proxyfs judge: %s\n",
			listen_on ? "unexpected argument" : "--listen ADDR:PORT is required");
		judge_usage(stderr);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	fd = judge_listen(listen_on, &status);
	if (fd < 0)
		return status;
	return judge_serve(fd);
}
