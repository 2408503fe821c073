/* test_check: whole checks against scripted peers on loopback.
 *
 * One event_base runs both sides: the check under test, and a tiny server
 * playing a proxy from a script (expect these exact bytes, send those, hold,
 * close), optionally cutting its output short after n bytes or sending one
 * byte per loop turn. The scripted proxy answers as if it had fetched the
 * judge, so no real judge is needed; for an https judge it turns, once the
 * tunnel is open, into the judge's TLS server (OpenSSL on memory BIOs, with
 * a CA and certificates made at start), so cuts and dribbling apply to TLS
 * records too. Every case also checks that done ran exactly once, never
 * inside chk_start, and that no descriptor was left open. Also covers
 * judge URL parsing, body capture, chk_cancel and fd exhaustion.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "resolve.h"
#include "testutil.h"

#ifndef PROXYFS_VERSION
#define PROXYFS_VERSION "dev"
#endif

#define JUDGE_URL "http://127.0.0.1:8080/judge?q=1"
#define EXPECT "proxyfs-judge-ok"
/* TOKEN in an expected step matches any token (and is remembered); in a
 * step to send it is replaced by the last token seen. */
#define TOKEN "################"
#define PREV_TOKEN "%%%%%%%%%%%%%%%%" /* to send: the token before the last */
#define UA_HEADERS                                                                                 \
	"User-Agent: proxyfs/" PROXYFS_VERSION " " CHK_ECHO_MARKER TOKEN                           \
	"\r\nAccept: */*\r\nConnection: close\r\n"
#define UA UA_HEADERS "\r\n"
#define REQ_ABSOLUTE_HEAD "GET http://127.0.0.1:8080/judge?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
#define REQ_ORIGIN_HEAD "GET /judge?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
#define REQ_ABSOLUTE REQ_ABSOLUTE_HEAD UA
#define REQ_ORIGIN REQ_ORIGIN_HEAD UA
#define ANSWER                                                                                     \
	"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 47\r\n\r\n"                 \
	"<html>you are 127.0.0.1 " EXPECT "</html>"
#define ANSWER_CHUNKED                                                                             \
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"                                    \
	"7\r\nproxyfs\r\n9;x=y\r\n-judge-ok\r\n0\r\n\r\n"
#define CONNECT_REQ "CONNECT 127.0.0.1:8080 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
#define CONNECT_OK "HTTP/1.1 200 Connection established\r\n\r\n"
/* base64("user:pass") */
#define AUTH_LINE "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"

/* ---- the scripted peer ---- */

/* S_TLS: from here on the peer is the judge's TLS server (data: its
 * SSL_CTX), and EXPECT and SEND are plaintext through it. S_CLOSE_NOTIFY
 * sends TLS's close_notify. */
enum step_kind { S_END, S_EXPECT, S_SEND, S_HOLD, S_TLS, S_CLOSE_NOTIFY };

struct step {
	enum step_kind kind;
	const void *data;
	size_t len;
};

#define BYTES(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define STEP(...) ((struct step){__VA_ARGS__})
#define EXPECT_B(...) STEP(S_EXPECT, BYTES(__VA_ARGS__))
#define SEND_B(...) STEP(S_SEND, BYTES(__VA_ARGS__))
#define EXPECT_S(s) STEP(S_EXPECT, (s), sizeof(s) - 1)
#define SEND_S(s) STEP(S_SEND, (s), sizeof(s) - 1)
#define END STEP(S_END, NULL, 0)
#define HOLD STEP(S_HOLD, NULL, 0)
#define TLS_AS(ctx) STEP(S_TLS, (ctx), 0)
#define CLOSE_NOTIFY STEP(S_CLOSE_NOTIFY, NULL, 0)

#define CONN_MAX 8

struct conn {
	int fd;
	struct event *ev;   /* readable */
	struct event *drip; /* the next byte, when dribbling */
	size_t step;
	SSL *ssl;     /* after S_TLS: a server on memory BIOs; the socket stays ours */
	uint8_t *out; /* bytes queued for the socket (TLS records after S_TLS) */
	size_t out_len, out_off, out_cap;
	uint8_t in[4096]; /* received (decrypted after S_TLS), not yet expected */
	size_t in_len;
};

static struct event_base *base;
static struct chk_judge judge;
static struct event *listen_ev, *guard_ev;
static struct sockaddr_in peer_addr;

/* The case being played; one at a time. */
static const struct step *script;
static size_t send_limit; /* close once this many bytes were sent in all */
static size_t sent_total;
static bool dribble; /* one byte per loop turn */
static struct conn *conns[CONN_MAX];

static void conn_close(struct conn *k)
{
	for (int i = 0; i < CONN_MAX; i++) {
		if (conns[i] == k)
			conns[i] = NULL;
	}
	event_free(k->ev);
	event_free(k->drip);
	SSL_free(k->ssl);
	close(k->fd);
	free(k->out);
	free(k);
}

static void conns_close_all(void)
{
	for (int i = 0; i < CONN_MAX; i++) {
		if (conns[i])
			conn_close(conns[i]);
	}
}

static void print_escaped(const char *what, const uint8_t *p, size_t n)
{
	fprintf(stderr, "  %s: \"", what);
	for (size_t i = 0; i < n; i++) {
		if (p[i] >= ' ' && p[i] < 127)
			fputc(p[i], stderr);
		else
			fprintf(stderr, "\\x%02x", p[i]);
	}
	fprintf(stderr, "\"\n");
}

/* The last token a check sent, and the one before it. */
static char last_token[CHK_TOKEN_LEN + 1], prev_token[CHK_TOKEN_LEN + 1];

/* Whether got matches want, where TOKEN in want stands for any token. */
static bool bytes_match(const uint8_t *got, const uint8_t *want, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (i + CHK_TOKEN_LEN <= len && memcmp(want + i, TOKEN, CHK_TOKEN_LEN) == 0) {
			for (size_t k = 0; k < CHK_TOKEN_LEN; k++)
				if (!strchr("0123456789abcdef", got[i + k]) || !got[i + k])
					return false;
			memcpy(prev_token, last_token, sizeof(prev_token));
			memcpy(last_token, got + i, CHK_TOKEN_LEN);
			i += CHK_TOKEN_LEN - 1;
		} else if (got[i] != want[i]) {
			return false;
		}
	}
	return true;
}

/* Returns false once the connection is closed. */
static bool conn_expect(struct conn *k, const struct step *st)
{
	if (!bytes_match(k->in, st->data, st->len)) {
		CHECK(!"the check sent what the script did not expect");
		print_escaped("expected", st->data, st->len);
		print_escaped("got", k->in, st->len);
		conn_close(k);
		return false;
	}
	memmove(k->in, k->in + st->len, k->in_len - st->len);
	k->in_len -= st->len;
	k->step++;
	return true;
}

static void conn_queue(struct conn *k, const void *p, size_t n)
{
	if (k->out_len + n > k->out_cap) {
		k->out_cap = (k->out_len + n) * 2;
		k->out = realloc(k->out, k->out_cap);
		if (!k->out)
			abort();
	}
	memcpy(k->out + k->out_len, p, n);
	k->out_len += n;
}

/* Moves what the TLS server wrote into the socket's queue. */
static void conn_tls_out(struct conn *k)
{
	BIO *w = SSL_get_wbio(k->ssl);
	char buf[4096];
	int n;

	while ((n = BIO_read(w, buf, sizeof(buf))) > 0)
		conn_queue(k, buf, (size_t)n);
}

/* Runs the TLS server over what arrived: the handshake, then plaintext
 * into k->in. Its failures are the check's to report, not the peer's. */
static void conn_tls_pump(struct conn *k)
{
	ERR_clear_error();
	if (!SSL_is_init_finished(k->ssl))
		SSL_do_handshake(k->ssl);
	while (SSL_is_init_finished(k->ssl) && k->in_len < sizeof(k->in)) {
		size_t n;

		if (SSL_read_ex(k->ssl, k->in + k->in_len, sizeof(k->in) - k->in_len, &n) != 1)
			break;
		k->in_len += n;
	}
	ERR_clear_error();
	conn_tls_out(k);
}

static void conn_tls_start(struct conn *k, SSL_CTX *ctx)
{
	k->ssl = SSL_new(ctx);
	if (!k->ssl)
		abort();
	SSL_set_bio(k->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_accept_state(k->ssl);
	if (k->in_len > 0) {
		BIO_write(SSL_get_rbio(k->ssl), k->in, (int)k->in_len);
		k->in_len = 0;
		conn_tls_pump(k);
	}
}

/* Plaintext to send: as is (TOKEN replaced by the last token seen), or as
 * TLS records. */
static void conn_send(struct conn *k, const struct step *st)
{
	uint8_t *data = malloc(st->len + 1);

	if (!data)
		abort();
	if (st->len)
		memcpy(data, st->data, st->len);
	for (size_t i = 0; i + CHK_TOKEN_LEN <= st->len; i++) {
		if (memcmp(data + i, TOKEN, CHK_TOKEN_LEN) == 0)
			memcpy(data + i, last_token, CHK_TOKEN_LEN);
		else if (memcmp(data + i, PREV_TOKEN, CHK_TOKEN_LEN) == 0)
			memcpy(data + i, prev_token, CHK_TOKEN_LEN);
	}
	if (!k->ssl) {
		conn_queue(k, data, st->len);
		free(data);
		return;
	}
	ERR_clear_error();
	if (st->kind == S_CLOSE_NOTIFY)
		SSL_shutdown(k->ssl);
	else if (SSL_write(k->ssl, data, (int)st->len) != (int)st->len)
		CHECK(!"the TLS server could not write");
	free(data);
	conn_tls_out(k);
}

/* Sends the queue within the cut and the dribble; returns false when it
 * must wait (or closed). */
static bool conn_flush(struct conn *k)
{
	while (k->out_off < k->out_len) {
		size_t n = k->out_len - k->out_off;
		ssize_t w;

		if (sent_total >= send_limit) {
			conn_close(k);
			return false;
		}
		if (n > send_limit - sent_total)
			n = send_limit - sent_total;
		if (dribble)
			n = 1;
		w = send(k->fd, k->out + k->out_off, n, MSG_NOSIGNAL);
		if (w < 0) {
			conn_close(k);
			return false;
		}
		k->out_off += (size_t)w;
		sent_total += (size_t)w;
		if (dribble) {
			struct timeval tv = {0, 0};

			evtimer_add(k->drip, &tv);
			return false;
		}
	}
	k->out_off = k->out_len = 0;
	return true;
}

/* Plays the script as far as it can go now. */
static void conn_run(struct conn *k)
{
	for (;;) {
		const struct step *st;

		if (!conn_flush(k))
			return;
		st = &script[k->step];
		switch (st->kind) {
		case S_EXPECT:
			if (k->in_len < st->len || !conn_expect(k, st))
				return;
			break;
		case S_SEND:
		case S_CLOSE_NOTIFY:
			conn_send(k, st);
			k->step++;
			break;
		case S_TLS:
			k->step++;
			conn_tls_start(k, (SSL_CTX *)st->data);
			break;
		case S_HOLD:
			return;
		default:
			conn_close(k);
			return;
		}
	}
}

static void conn_drip_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_run(arg);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;
	uint8_t buf[sizeof(k->in)];
	size_t room = k->ssl ? sizeof(buf) : sizeof(k->in) - k->in_len;
	ssize_t n = recv(fd, buf, room, 0);

	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		conn_close(k);
		return;
	}
	if (k->ssl) {
		BIO_write(SSL_get_rbio(k->ssl), buf, (int)n);
		conn_tls_pump(k);
	} else {
		memcpy(k->in + k->in_len, buf, (size_t)n);
		k->in_len += (size_t)n;
	}
	conn_run(k);
}

static void listen_cb(evutil_socket_t fd, short what, void *arg)
{
	int one = 1, cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct conn *k;
	int slot = -1;

	if (cfd < 0)
		return;
	for (int i = 0; i < CONN_MAX; i++) {
		if (!conns[i])
			slot = i;
	}
	k = calloc(1, sizeof(*k));
	if (slot < 0 || !k) {
		CHECK(!"too many peer connections");
		free(k);
		close(cfd);
		return;
	}
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	k->fd = cfd;
	k->ev = event_new(base, cfd, EV_READ | EV_PERSIST, conn_read_cb, k);
	k->drip = evtimer_new(base, conn_drip_cb, k);
	event_add(k->ev, NULL);
	conns[slot] = k;
	conn_run(k);
}

/* ---- running one check ---- */

struct result {
	int calls;
	struct chk_outcome out;
};

/* The judge the checks use; the body of the last outcome, copied in done
 * (out.body is valid only there). */
static const struct chk_judge *cur_judge = &judge;
static char last_body[CHK_BODY_MAX + 1];
static size_t last_body_len;
static bool last_body_set;

static void done_cb(void *arg, const struct chk_outcome *o)
{
	struct result *r = arg;

	r->calls++;
	r->out = *o;
	r->out.body = NULL;
	last_body_set = o->body != NULL;
	last_body_len = o->body_len;
	if (o->body) {
		CHECK(o->body_len > 0 && o->body_len <= CHK_BODY_MAX);
		CHECK(o->body[o->body_len] == '\0');
		memcpy(last_body, o->body, o->body_len < CHK_BODY_MAX ? o->body_len : CHK_BODY_MAX);
	} else {
		CHECK_INT(o->body_len, 0);
	}
	event_base_loopbreak(base);
}

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
	CHECK(!"a check took longer than 5 s");
	event_base_loopbreak(base);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static struct chk_target target(enum proxy_proto proto, const char *user, const char *pass)
{
	struct chk_target t = {.proto = proto, .user = user, .pass = pass};

	memcpy(&t.addr, &peer_addr, sizeof(peer_addr));
	t.addrlen = sizeof(peer_addr);
	return t;
}

static const struct chk_opts default_opts = {.connect_timeout_ms = 1000, .timeout_ms = 3000};

/* Set by a case: the peer accepts and plays its first steps right after
 * chk_start, before the check's loop runs, so what it sends at once is
 * waiting before the check could send anything. */
static bool accept_at_start;

static void accept_now(void)
{
	struct pollfd pfd = {.fd = event_get_fd(listen_ev), .events = POLLIN};

	CHECK(poll(&pfd, 1, 1000) == 1); /* the connection is queued */
	listen_cb(pfd.fd, EV_READ, NULL);
}

/* Runs one check to its end against the script; returns its outcome. */
static struct chk_outcome play(const struct chk_target *t, const struct chk_opts *o,
			       const struct step *s, size_t limit, bool drip)
{
	struct timeval five = {5, 0};
	struct result r = {0};
	int fds = count_fds();
	struct chk *c;

	script = s;
	send_limit = limit;
	sent_total = 0;
	dribble = drip;
	c = chk_start(base, t, cur_judge, o ? o : &default_opts, done_cb, &r);
	CHECK(c != NULL);
	if (!c) {
		r.out.result = CHK_RESULT_COUNT;
		return r.out;
	}
	CHECK_INT(r.calls, 0); /* never from inside chk_start */
	if (accept_at_start)
		accept_now();
	event_add(guard_ev, &five);
	event_base_dispatch(base);
	event_del(guard_ev);
	CHECK_INT(r.calls, 1);
	if (r.calls == 0)
		chk_cancel(c);
	conns_close_all();
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(r.calls, 1);
	CHECK_INT(count_fds(), fds);
	return r.out;
}

static void expect_outcome(int line, const struct chk_target *t, const struct step *s,
			   enum chk_result want, uint16_t status)
{
	struct chk_outcome out = play(t, NULL, s, SIZE_MAX, false);

	if (out.result != want || out.status != status)
		fprintf(stderr, "line %d: %s (status %u), expected %s (status %u)\n", line,
			chk_result_name(out.result), out.status, chk_result_name(want), status);
	CHECK_INT(out.result, want);
	CHECK_INT(out.status, status);
}

#define EXPECT_OUTCOME(t, s, want, status) expect_outcome(__LINE__, t, s, want, status)

/* The good script is OK whole and when dribbled; cut short after any
 * number of bytes (counted on the wire, TLS records included) it is never
 * OK and never crashes or hangs. */
static void expect_cuts(int line, const struct chk_target *t, const struct step *s)
{
	struct chk_outcome out;
	size_t total;

	out = play(t, NULL, s, SIZE_MAX, false);
	total = sent_total;
	CHECK_INT(out.result, CHK_OK);
	out = play(t, NULL, s, SIZE_MAX, true);
	CHECK_INT(out.result, CHK_OK);
	for (size_t cut = 0; cut < total; cut++) {
		out = play(t, NULL, s, cut, false);
		if (out.result == CHK_OK)
			fprintf(stderr, "line %d: OK when cut after %zu of %zu bytes\n", line, cut,
				total);
		CHECK(out.result != CHK_OK);
	}
}

/* ---- TLS: a test CA, certificates and server contexts made here ---- */

#define TLS_URL "https://127.0.0.1:8443/judge?q=1"
#define TLS_NAME_URL "https://localhost:8443/judge?q=1"
#define REQ_TLS "GET /judge?q=1 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n" UA
#define REQ_TLS_NAME "GET /judge?q=1 HTTP/1.1\r\nHost: localhost:8443\r\n" UA
#define CONNECT_TLS_REQ "CONNECT 127.0.0.1:8443 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\r\n"
/* SOCKS5: no auth, then CONNECT to 127.0.0.1:8443 */
#define S5_TO_TLS_JUDGE                                                                            \
	EXPECT_B(5, 1, 0), SEND_B(5, 0), EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x20, 0xfb),           \
	    SEND_B(5, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39)

static struct chk_judge tls_judge;   /* TLS_URL, trusting the test CA */
static struct chk_judge name_judge;  /* TLS_NAME_URL, trusting the test CA */
static struct chk_judge distrustful; /* TLS_URL, the default trust store only */
static SSL_CTX *srv_good;	     /* localhost and 127.0.0.1, from the test CA */
static SSL_CTX *srv_wrong_name;	     /* wrong.example and 127.0.0.2, from the test CA */
static SSL_CTX *srv_stranger;	     /* localhost and 127.0.0.1, from another CA */
static SSL_CTX *srv_expired;	     /* like srv_good, expired yesterday */
static SSL_CTX *srv_tls12;	     /* like srv_good, TLS 1.2 at most */
static char ca_path[] = "/tmp/proxyfs-test-ca-XXXXXX";

static void tls_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);

	if (!e || !X509_add_ext(x, e, -1))
		abort();
	X509_EXTENSION_free(e);
}

/* A certificate for key, signed by issuer (NULL: self-signed CA), valid
 * from `from` to `to` seconds from now. Ed25519 keys give signatures of
 * one length, so every handshake is as long as the last. */
static X509 *tls_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
		      const char *san, long from, long to)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX v3;

	if (!x)
		abort();
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (issuer) {
		tls_ext(x, &v3, NID_basic_constraints, "CA:FALSE");
		tls_ext(x, &v3, NID_subject_alt_name, san);
	} else {
		tls_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
		tls_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
	}
	if (!X509_sign(x, issuer_key ? issuer_key : key, NULL))
		abort();
	return x;
}

static EVP_PKEY *tls_key(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	if (!k)
		abort();
	return k;
}

/* A server context with a new leaf for san, signed by ca. */
static SSL_CTX *tls_server(X509 *ca, EVP_PKEY *ca_key, const char *san, long to)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = tls_key();
	X509 *leaf = tls_cert(key, "judge", ca, ca_key, san, -86400 * 2, to);

	if (!ctx || !SSL_CTX_use_certificate(ctx, leaf) || !SSL_CTX_use_PrivateKey(ctx, key))
		abort();
	SSL_CTX_set_num_tickets(ctx, 0);
	X509_free(leaf);
	EVP_PKEY_free(key);
	return ctx;
}

/* A judge given by name is looked up as the engine does, off chk_judge_init. */
static void tls_judge_init(struct chk_judge *j, const char *url, const char *ca)
{
	struct resolve_result r;
	char err[256];

	if (chk_judge_init(j, url, EXPECT, err, sizeof(err)) ||
	    chk_judge_set_ca(j, ca, err, sizeof(err))) {
		fprintf(stderr, "TLS judge %s: %s\n", url, err);
		abort();
	}
	if (!j->have_addr) {
		if (resolve_now(j->host, &r) < 0) {
			fprintf(stderr, "TLS judge %s: %s\n", url, r.error);
			abort();
		}
		chk_judge_set_addr(j, (struct sockaddr *)&r.addr, r.addrlen);
	}
}

static void tls_setup(void)
{
	EVP_PKEY *ca_key = tls_key(), *other_key = tls_key();
	X509 *ca = tls_cert(ca_key, "proxyfs test CA", NULL, NULL, NULL, -86400 * 2, 86400);
	X509 *other = tls_cert(other_key, "another CA", NULL, NULL, NULL, -86400 * 2, 86400);
	const char *good = "DNS:localhost,IP:127.0.0.1";
	int fd = mkstemp(ca_path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!f || !PEM_write_X509(f, ca) || fclose(f))
		abort();
	srv_good = tls_server(ca, ca_key, good, 86400);
	srv_wrong_name = tls_server(ca, ca_key, "DNS:wrong.example,IP:127.0.0.2", 86400);
	srv_stranger = tls_server(other, other_key, good, 86400);
	srv_expired = tls_server(ca, ca_key, good, -86400);
	srv_tls12 = tls_server(ca, ca_key, good, 86400);
	SSL_CTX_set_max_proto_version(srv_tls12, TLS1_2_VERSION);
	tls_judge_init(&tls_judge, TLS_URL, ca_path);
	tls_judge_init(&name_judge, TLS_NAME_URL, ca_path);
	tls_judge_init(&distrustful, TLS_URL, NULL);
	X509_free(ca);
	X509_free(other);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
}

static void tls_teardown(void)
{
	chk_judge_free(&tls_judge);
	chk_judge_free(&name_judge);
	chk_judge_free(&distrustful);
	SSL_CTX_free(srv_good);
	SSL_CTX_free(srv_wrong_name);
	SSL_CTX_free(srv_stranger);
	SSL_CTX_free(srv_expired);
	SSL_CTX_free(srv_tls12);
	unlink(ca_path);
}

/* ---- the cases ---- */

static void test_http(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_target ta = target(PROXY_HTTP, "user", "pass");
	struct step good[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER), END};
	struct step chunked[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER_CHUNKED), HOLD};
	struct step to_eof[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S("HTTP/1.0 200 OK\r\n\r\n" EXPECT),
				END};
	struct step wrong[] = {EXPECT_S(REQ_ABSOLUTE),
			       SEND_S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), END};
	struct step missing[] = {EXPECT_S(REQ_ABSOLUTE),
				 SEND_S("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
				 HOLD};
	struct step authed[] = {EXPECT_S("GET http://127.0.0.1:8080/judge?q=1 HTTP/1.1\r\n"
					 "Host: 127.0.0.1:8080\r\n" AUTH_LINE UA),
				SEND_S(ANSWER), END};
	struct step need_auth[] = {
	    EXPECT_S(REQ_ABSOLUTE),
	    SEND_S("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
	    HOLD};
	struct step bad_auth[] = {EXPECT_S("GET http://127.0.0.1:8080/judge?q=1 HTTP/1.1\r\n"
					   "Host: 127.0.0.1:8080\r\n" AUTH_LINE UA),
				  SEND_S("HTTP/1.0 401 Unauthorized\r\n\r\n"), END};
	struct chk_outcome out;

	out = play(&t, NULL, good, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_OK);
	CHECK_INT(out.status, 200);
	CHECK_INT(out.err, 0);
	CHECK(out.latency_ms < 1000);
	/* done as soon as the body is whole, without waiting for a close */
	EXPECT_OUTCOME(&t, chunked, CHK_OK, 200);
	EXPECT_OUTCOME(&t, to_eof, CHK_OK, 200);
	EXPECT_OUTCOME(&t, wrong, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(&t, missing, CHK_BAD_ANSWER, 404);
	EXPECT_OUTCOME(&ta, authed, CHK_OK, 200);
	EXPECT_OUTCOME(&t, need_auth, CHK_AUTH, 407);
	EXPECT_OUTCOME(&ta, bad_auth, CHK_AUTH, 401);
	expect_cuts(__LINE__, &t, good);
	expect_cuts(__LINE__, &t,
		    (struct step[]){EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER_CHUNKED), END});
}

static void test_connect(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_target ta = target(PROXY_HTTP, "user", "pass");
	struct step good[] = {EXPECT_S(CONNECT_REQ "\r\n"), SEND_S(CONNECT_OK),
			      EXPECT_S(REQ_ORIGIN), SEND_S(ANSWER), END};
	struct step authed[] = {EXPECT_S(CONNECT_REQ AUTH_LINE "\r\n"), SEND_S(CONNECT_OK),
				EXPECT_S(REQ_ORIGIN), SEND_S(ANSWER), END};
	struct step need_auth[] = {EXPECT_S(CONNECT_REQ "\r\n"),
				   SEND_S("HTTP/1.1 407 Proxy Authentication Required\r\n"
					  "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n"),
				   HOLD};
	struct step forbidden[] = {EXPECT_S(CONNECT_REQ "\r\n"),
				   SEND_S("HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\n"
					  "forbidden"),
				   END};
	/* a page arrives with the CONNECT reply, before our request: not
	 * the judge's answer, whatever it says */
	struct step eager[] = {EXPECT_S(CONNECT_REQ "\r\n"), SEND_S(CONNECT_OK ANSWER),
			       EXPECT_S(REQ_ORIGIN), HOLD};

	t.tunnel = true;
	ta.tunnel = true;
	EXPECT_OUTCOME(&t, good, CHK_OK, 200);
	EXPECT_OUTCOME(&ta, authed, CHK_OK, 200);
	EXPECT_OUTCOME(&t, need_auth, CHK_AUTH, 407);
	EXPECT_OUTCOME(&t, forbidden, CHK_BAD_ANSWER, 403);
	EXPECT_OUTCOME(&t, eager, CHK_PROTO_ERR, 0);
	t.proto = PROXY_HTTPS;
	EXPECT_OUTCOME(&t, good, CHK_OK, 200);
	expect_cuts(__LINE__, &t, good);
}

static void test_socks5(void)
{
	struct chk_target t = target(PROXY_SOCKS5, NULL, NULL);
	struct chk_target ta = target(PROXY_SOCKS5, "user", "pass");
	struct step good[] = {EXPECT_B(5, 1, 0),
			      SEND_B(5, 0),
			      EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
			      SEND_B(5, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39),
			      EXPECT_S(REQ_ORIGIN),
			      SEND_S(ANSWER),
			      END};
	struct step by_name[] = {
	    EXPECT_B(5, 1, 0),
	    SEND_B(5, 0),
	    EXPECT_B(5, 1, 0, 3, 9, '1', '2', '7', '.', '0', '.', '0', '.', '1', 0x1f, 0x90),
	    SEND_B(5, 0, 0, 3, 3, 'a', 'b', 'c', 0x30, 0x39),
	    EXPECT_S(REQ_ORIGIN),
	    SEND_S(ANSWER),
	    END};
	struct step authed[] = {
	    EXPECT_B(5, 2, 0, 2),
	    SEND_B(5, 2),
	    EXPECT_B(1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's'),
	    SEND_B(1, 0),
	    EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
	    SEND_B(5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x30, 0x39),
	    EXPECT_S(REQ_ORIGIN),
	    SEND_S(ANSWER),
	    END};
	/* offered auth, but the proxy needs none */
	struct step no_auth_needed[] = {EXPECT_B(5, 2, 0, 2),
					SEND_B(5, 0),
					EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
					SEND_B(5, 0, 0, 1, 0, 0, 0, 0, 0, 0),
					EXPECT_S(REQ_ORIGIN),
					SEND_S(ANSWER),
					END};
	struct step wrong_pass[] = {EXPECT_B(5, 2, 0, 2), SEND_B(5, 2),
				    EXPECT_B(1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's'),
				    SEND_B(1, 1), END};
	struct step no_method[] = {EXPECT_B(5, 1, 0), SEND_B(5, 0xff), END};
	struct step unasked_auth[] = {EXPECT_B(5, 1, 0), SEND_B(5, 2), HOLD};
	struct step refused[] = {EXPECT_B(5, 1, 0), SEND_B(5, 0),
				 EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
				 SEND_B(5, 5, 0, 1, 0, 0, 0, 0, 0, 0), HOLD};
	/* a page arrives with the CONNECT reply, before our request */
	struct step eager[] = {EXPECT_B(5, 1, 0), SEND_B(5, 0),
			       EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
			       STEP(S_SEND, "\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00" ANSWER,
				    10 + sizeof(ANSWER) - 1),
			       HOLD};

	EXPECT_OUTCOME(&t, good, CHK_OK, 200);
	EXPECT_OUTCOME(&ta, authed, CHK_OK, 200);
	EXPECT_OUTCOME(&ta, no_auth_needed, CHK_OK, 200);
	EXPECT_OUTCOME(&ta, wrong_pass, CHK_AUTH, 0);
	EXPECT_OUTCOME(&t, no_method, CHK_AUTH, 0);
	EXPECT_OUTCOME(&t, unasked_auth, CHK_PROTO_ERR, 0);
	EXPECT_OUTCOME(&t, refused, CHK_REFUSED, 0);
	EXPECT_OUTCOME(&t, eager, CHK_PROTO_ERR, 0);
	t.remote_dns = true;
	EXPECT_OUTCOME(&t, by_name, CHK_OK, 200);
	t.remote_dns = false;
	expect_cuts(__LINE__, &t, good);
	expect_cuts(__LINE__, &ta, authed);
}

static void test_socks4(void)
{
	struct chk_target t = target(PROXY_SOCKS4, NULL, NULL);
	struct chk_target tu = target(PROXY_SOCKS4, "u", NULL);
	struct step good[] = {EXPECT_B(4, 1, 0x1f, 0x90, 127, 0, 0, 1, 0),
			      SEND_B(0, 90, 0, 0, 0, 0, 0, 0), EXPECT_S(REQ_ORIGIN), SEND_S(ANSWER),
			      END};
	struct step socks4a[] = {EXPECT_B(4, 1, 0x1f, 0x90, 0, 0, 0, 1, 'u', 0, '1', '2', '7', '.',
					  '0', '.', '0', '.', '1', 0),
				 SEND_B(0, 90, 0, 0, 0, 0, 0, 0), EXPECT_S(REQ_ORIGIN),
				 SEND_S(ANSWER), END};
	struct step rejected[] = {EXPECT_B(4, 1, 0x1f, 0x90, 127, 0, 0, 1, 0),
				  SEND_B(0, 91, 0, 0, 0, 0, 0, 0), END};
	struct step ident[] = {EXPECT_B(4, 1, 0x1f, 0x90, 127, 0, 0, 1, 0), SEND_B(0, 92), END};
	struct step garbage[] = {EXPECT_B(4, 1, 0x1f, 0x90, 127, 0, 0, 1, 0),
				 SEND_S("HTTP/1.1 400 Bad Request\r\n\r\n"), END};

	EXPECT_OUTCOME(&t, good, CHK_OK, 200);
	EXPECT_OUTCOME(&t, rejected, CHK_REFUSED, 0);
	EXPECT_OUTCOME(&t, ident, CHK_AUTH, 0);
	EXPECT_OUTCOME(&t, garbage, CHK_PROTO_ERR, 0);
	tu.remote_dns = true;
	EXPECT_OUTCOME(&tu, socks4a, CHK_OK, 200);
	expect_cuts(__LINE__, &t, good);
}

static void test_garbage(void)
{
	static const char flood[] = "HTTP/1.1 200 OK\r\nX-Flood: ";
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_target t5 = target(PROXY_SOCKS5, NULL, NULL);
	struct step tls[] = {EXPECT_S(REQ_ABSOLUTE),
			     SEND_B(0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc), END};
	struct step text[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S("SSH-2.0-OpenSSH_9.2\r\n"), HOLD};
	struct step s5[] = {EXPECT_B(5, 1, 0), SEND_S("HTTP/1.1 400 Bad Request\r\n\r\n"), HOLD};
	struct step early[] = {SEND_S("220 smtp ready\r\n"), HOLD};
	char *big = malloc(70000);
	struct step endless[] = {EXPECT_S(REQ_ABSOLUTE), STEP(S_SEND, big, 20000), HOLD};
	struct step huge[] = {EXPECT_S(REQ_ABSOLUTE), STEP(S_SEND, big, 70000), HOLD};

	EXPECT_OUTCOME(&t, tls, CHK_PROTO_ERR, 0);
	EXPECT_OUTCOME(&t, text, CHK_PROTO_ERR, 0);
	EXPECT_OUTCOME(&t5, s5, CHK_PROTO_ERR, 0);
	EXPECT_OUTCOME(&t5, early, CHK_PROTO_ERR, 0);
	memset(big, 'a', 70000);
	memcpy(big, flood, sizeof(flood) - 1);
	EXPECT_OUTCOME(&t, endless, CHK_BAD_ANSWER, 200);
	memcpy(big, "HTTP/1.1 200 OK\r\n\r\n", 19);
	EXPECT_OUTCOME(&t, huge, CHK_BAD_ANSWER, 200);
	free(big);
}

/* Nothing that arrives before our request is sent counts as the answer,
 * and a judge's echo must carry this check's token: a canned page, one
 * sent at once or replayed from an earlier check, never passes. */
static void test_talks_first(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct step at_once[] = {SEND_S(ANSWER), HOLD};
	struct step good[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER), END};

	/* plain forwarding: the page is there before our GET went out */
	accept_at_start = true;
	EXPECT_OUTCOME(&t, at_once, CHK_PROTO_ERR, 0);
	/* through a tunnel: the page follows the reply at once (the reply and
	 * the page in one segment is in test_connect and test_socks5) */
	t.tunnel = true;
	EXPECT_OUTCOME(&t, ((struct step[]){SEND_S(CONNECT_OK ANSWER), HOLD}), CHK_PROTO_ERR, 0);
	t.tunnel = false;
	accept_at_start = false;
	/* the same page after our request is the answer */
	EXPECT_OUTCOME(&t, good, CHK_OK, 200);
}

/* What tells failures of one class apart: where the check ended, why an
 * answer did not count, the SOCKS reply code. */
static void test_why(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_target tc = target(PROXY_HTTP, NULL, NULL);
	struct chk_target t5 = target(PROXY_SOCKS5, NULL, NULL);
	struct chk_target t5a = target(PROXY_SOCKS5, "user", "pass");
	struct chk_opts quick = {.connect_timeout_ms = 200, .timeout_ms = 300};
	struct step wrong[] = {EXPECT_S(REQ_ABSOLUTE),
			       SEND_S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), END};
	struct step missing[] = {EXPECT_S(REQ_ABSOLUTE),
				 SEND_S("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
				 HOLD};
	struct step big[] = {EXPECT_S(REQ_ABSOLUTE),
			     SEND_S("HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n"), HOLD};
	struct step forbidden[] = {EXPECT_S(CONNECT_REQ "\r\n"),
				   SEND_S("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
				   HOLD};
	struct step refused[] = {EXPECT_B(5, 1, 0), SEND_B(5, 0),
				 EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
				 SEND_B(5, 5, 0, 1, 0, 0, 0, 0, 0, 0), HOLD};
	struct step wrong_pass[] = {EXPECT_B(5, 2, 0, 2), SEND_B(5, 2),
				    EXPECT_B(1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's'),
				    SEND_B(1, 1), END};
	struct step s5_silent[] = {EXPECT_B(5, 1, 0), HOLD};
	struct step silent[] = {EXPECT_S(REQ_ABSOLUTE), HOLD};
	struct step at_once[] = {SEND_S(ANSWER), HOLD};
	struct chk_outcome out;

	tc.tunnel = true;
	out = play(&t, NULL, wrong, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_BAD_ANSWER);
	CHECK_INT(out.why, CHK_WHY_NO_EXPECT);
	CHECK_INT(out.stage, CHK_STAGE_ANSWER);
	out = play(&t, NULL, missing, SIZE_MAX, false);
	CHECK_INT(out.why, CHK_WHY_STATUS);
	CHECK_INT(out.status, 404);
	out = play(&t, NULL, big, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_BAD_ANSWER);
	CHECK_INT(out.why, CHK_WHY_TOO_BIG);
	out = play(&tc, NULL, forbidden, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_BAD_ANSWER);
	CHECK_INT(out.why, CHK_WHY_STATUS);
	CHECK_INT(out.stage, CHK_STAGE_HANDSHAKE);
	out = play(&t5, NULL, refused, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_REFUSED);
	CHECK_INT(out.socks_reply, 5);
	CHECK_INT(out.stage, CHK_STAGE_HANDSHAKE);
	out = play(&t5a, NULL, wrong_pass, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_AUTH);
	CHECK_INT(out.socks_reply, 1);
	out = play(&t5, &quick, s5_silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	CHECK_INT(out.stage, CHK_STAGE_HANDSHAKE);
	out = play(&t, &quick, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	CHECK_INT(out.stage, CHK_STAGE_ANSWER);
	accept_at_start = true;
	out = play(&t, NULL, at_once, SIZE_MAX, false);
	accept_at_start = false;
	CHECK_INT(out.result, CHK_PROTO_ERR);
	CHECK_INT(out.why, CHK_WHY_EARLY);
}

#define ECHO_HEAD "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
#define AZENV_ECHO(tok)                                                                            \
	ECHO_HEAD "<pre>REMOTE_ADDR = 127.0.0.1\nHTTP_USER_AGENT = proxyfs/" PROXYFS_VERSION       \
		  " " CHK_ECHO_MARKER tok "\n" EXPECT "</pre>"
#define PROXYFS_ECHO(tok)                                                                          \
	ECHO_HEAD                                                                                  \
	    "proxyfs-judge 1\nremote_addr 127.0.0.1\nheader User-Agent: proxyfs/" PROXYFS_VERSION  \
	    " " CHK_ECHO_MARKER tok "\n"
#define JSON_ECHO(tok)                                                                             \
	ECHO_HEAD "{\"headers\": {\"User-Agent\": \"proxyfs/" PROXYFS_VERSION                      \
		  " " CHK_ECHO_MARKER tok "\"}, \"origin\": \"127.0.0.1\"}"

/* The token: fresh for each check, and the echo must carry it. */
static void test_token(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_target ts = target(PROXY_SOCKS5, NULL, NULL);
	struct step echo[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(AZENV_ECHO(TOKEN)), END};
	struct step replayed[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(AZENV_ECHO(PREV_TOKEN)), END};
	struct step json_replayed[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(JSON_ECHO(PREV_TOKEN)), END};
	struct step no_echo[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER), END};
	struct step ours[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(PROXYFS_ECHO(TOKEN)), END};
	struct step ours_old[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(PROXYFS_ECHO(PREV_TOKEN)), END};
	struct step json[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(JSON_ECHO(TOKEN)), END};
	struct step s5_replayed[] = {EXPECT_B(5, 1, 0),
				     SEND_B(5, 0),
				     EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90),
				     SEND_B(5, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39),
				     EXPECT_S(REQ_ORIGIN),
				     SEND_S(AZENV_ECHO(PREV_TOKEN)),
				     END};
	/* a judge's page captured by another client: it echoes a request, not ours */
	struct step canned[] = {EXPECT_S(REQ_ABSOLUTE),
				SEND_S(ECHO_HEAD "REMOTE_ADDR = 127.0.0.1\nHTTP_USER_AGENT = "
						 "curl/8.0\n" EXPECT "\n"),
				END};
	/* a judge that shows a few proxy headers only, not ours */
	struct step selective[] = {
	    EXPECT_S(REQ_ABSOLUTE),
	    SEND_S(ECHO_HEAD "REMOTE_ADDR = 127.0.0.1\nHTTP_VIA = 1.1 p\n" EXPECT "\n"), END};
	struct chk_judge dflt, bare;
	char err[128], first[CHK_TOKEN_LEN + 1];

	EXPECT_OUTCOME(&t, echo, CHK_OK, 200);
	memcpy(first, last_token, sizeof(first));
	/* a page from an earlier check: its echo shows another token */
	EXPECT_OUTCOME(&t, replayed, CHK_BAD_ANSWER, 200);
	CHECK(strcmp(first, prev_token) == 0);
	CHECK(strcmp(last_token, prev_token) != 0); /* a new token each check */
	EXPECT_OUTCOME(&t, json_replayed, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(&ts, s5_replayed, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(&t, canned, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(&t, selective, CHK_OK, 200);
	/* a judge that echoes nothing of ours: the expected text decides */
	EXPECT_OUTCOME(&t, no_echo, CHK_OK, 200);
	/* proxyfs's own judge lacks the configured text: not ok */
	EXPECT_OUTCOME(&t, ours, CHK_BAD_ANSWER, 200);

	/* the default expect: REMOTE_ADDR, or the echo of this check */
	CHECK_INT(chk_judge_init(&dflt, JUDGE_URL, CHK_EXPECT_DEFAULT, err, sizeof(err)), 0);
	cur_judge = &dflt;
	EXPECT_OUTCOME(&t, ours, CHK_OK, 200);
	EXPECT_OUTCOME(&t, json, CHK_OK, 200);
	EXPECT_OUTCOME(&t, echo, CHK_OK, 200);
	EXPECT_OUTCOME(&t, ours_old, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(&t, no_echo, CHK_BAD_ANSWER, 200);

	/* no expected text, the echo required: only an echo of this check */
	CHECK_INT(chk_judge_init(&bare, JUDGE_URL, "", err, sizeof(err)), 0);
	bare.require_echo = true;
	cur_judge = &bare;
	EXPECT_OUTCOME(&t, ours, CHK_OK, 200);
	EXPECT_OUTCOME(&t, no_echo, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(&t, ours_old, CHK_BAD_ANSWER, 200);
	EXPECT_OUTCOME(
	    &t,
	    ((struct step[]){EXPECT_S(REQ_ABSOLUTE),
			     SEND_S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), HOLD}),
	    CHK_BAD_ANSWER, 200);
	cur_judge = &judge;
	chk_judge_free(&dflt);
	chk_judge_free(&bare);
}

/* Writes v to a sysctl file of the current network namespace. */
static bool set_sysctl(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool ok = fd >= 0 && write(fd, v, strlen(v)) == (ssize_t)strlen(v);

	if (fd >= 0)
		close(fd);
	return ok;
}

/* In a network namespace of its own, where IPv6 is switched off and no
 * interface is up, a check to an IPv6 proxy (EADDRNOTAVAIL: no address of
 * that family to send from) and to an IPv4 one (ENETUNREACH) must come
 * out unreachable: our host's lack, not the proxies' failure nor our
 * overload. Exit status: 0 passed, 1 failed, 77 no namespace allowed. */
static int unreachable_child(void)
{
	struct chk_target t6 = {.proto = PROXY_SOCKS5}, t4 = {.proto = PROXY_HTTP};
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&t6.addr;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&t4.addr;
	struct result r6 = {0}, r4 = {0};

	if (unshare(CLONE_NEWNET) < 0)
		return 77;
	if (!set_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1") ||
	    !set_sysctl("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "1"))
		return 77;
	base = event_base_new(); /* the parent's shares its epoll: not ours to use */
	a6->sin6_family = AF_INET6;
	a6->sin6_port = htons(1080);
	inet_pton(AF_INET6, "2001:db8::1", &a6->sin6_addr);
	t6.addrlen = sizeof(*a6);
	a4->sin_family = AF_INET;
	a4->sin_port = htons(8080);
	inet_pton(AF_INET, "192.0.2.1", &a4->sin_addr);
	t4.addrlen = sizeof(*a4);
	CHECK(chk_start(base, &t6, &judge, &default_opts, done_cb, &r6) != NULL);
	event_base_dispatch(base);
	CHECK(chk_start(base, &t4, &judge, &default_opts, done_cb, &r4) != NULL);
	event_base_dispatch(base);
	CHECK_INT(r6.calls, 1);
	CHECK_INT(r6.out.result, CHK_UNREACHABLE);
	CHECK_INT(r6.out.err, EADDRNOTAVAIL);
	CHECK_INT(r4.calls, 1);
	CHECK_INT(r4.out.result, CHK_UNREACHABLE);
	CHECK_INT(r4.out.err, ENETUNREACH);
	CHECK_STR(chk_result_name(CHK_UNREACHABLE), "unreachable");
	return test_exit_code();
}

static void test_unreachable(void)
{
	pid_t pid = fork();
	int status = 0;

	CHECK(pid >= 0);
	if (pid == 0)
		_exit(unreachable_child());
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		fprintf(stderr, "test_unreachable: skipped (no network namespace allowed)\n");
		return;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static double ms_since(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

static void test_refused_and_timeouts(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_opts quick = {.connect_timeout_ms = 200, .timeout_ms = 300};
	struct step silent[] = {EXPECT_S(REQ_ABSOLUTE), HOLD};
	struct step slow[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S("HTTP/1.1 200 OK\r\n"), HOLD};
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	struct chk_outcome out;
	struct timespec t0;
	int fd, full;

	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &alen);
	close(fd);
	memcpy(&t.addr, &a, sizeof(a));
	out = play(&t, NULL, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_REFUSED);
	CHECK_INT(out.err, ECONNREFUSED);

	/* connect() fails at once (no route to a multicast address): done
	 * still comes from the loop; no route is our network's, not the
	 * proxy's failure */
	inet_pton(AF_INET, "224.0.0.1", &a.sin_addr);
	memcpy(&t.addr, &a, sizeof(a));
	out = play(&t, NULL, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_UNREACHABLE);
	CHECK_INT(out.err, ENETUNREACH);

	/* accepts, reads the request, never answers; answers half */
	t = target(PROXY_HTTP, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = play(&t, &quick, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	CHECK(ms_since(&t0) >= 290 && ms_since(&t0) < 1000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = play(&t, &quick, slow, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	CHECK_INT(out.status, 0);
	CHECK(ms_since(&t0) >= 290 && ms_since(&t0) < 1000);

	/* connect never completes: a listener whose queue is full */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	a.sin_port = 0;
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	listen(fd, 0);
	alen = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &alen);
	full = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	connect(full, (struct sockaddr *)&a, sizeof(a));
	memcpy(&t.addr, &a, sizeof(a));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = play(&t, &quick, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	CHECK(ms_since(&t0) >= 190 && ms_since(&t0) < 280);
	close(full);
	close(fd);
}

/* A connection's script got past a ClientHello (S5_TO_TLS_JUDGE and an
 * EXPECT of its first bytes: step 5). */
static bool hello_seen(void)
{
	for (int i = 0; i < CONN_MAX; i++) {
		if (conns[i] && conns[i]->step == 5)
			return true;
	}
	return false;
}

static void test_cancel(void)
{
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct step silent[] = {EXPECT_S(REQ_ABSOLUTE), HOLD};
	struct timeval tv = {0, 50000};
	struct sockaddr_in a = peer_addr;
	struct result r = {0};
	int fds = count_fds();
	struct chk *c;

	/* in flight */
	script = silent;
	send_limit = SIZE_MAX;
	dribble = false;
	c = chk_start(base, &t, &judge, &default_opts, done_cb, &r);
	CHECK(c != NULL);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	chk_cancel(c);
	conns_close_all();
	/* before the loop ever ran */
	c = chk_start(base, &t, &judge, &default_opts, done_cb, &r);
	CHECK(c != NULL);
	chk_cancel(c);
	/* in the TLS handshake, its SSL object made */
	script = (struct step[]){S5_TO_TLS_JUDGE, EXPECT_B(0x16, 3, 1), HOLD};
	t = target(PROXY_SOCKS5, NULL, NULL);
	c = chk_start(base, &t, &tls_judge, &default_opts, done_cb, &r);
	CHECK(c != NULL);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	CHECK(hello_seen()); /* so the check had made its SSL object */
	chk_cancel(c);
	conns_close_all();
	t = target(PROXY_HTTP, NULL, NULL);
	/* with its refusal already queued */
	inet_pton(AF_INET, "224.0.0.1", &a.sin_addr);
	memcpy(&t.addr, &a, sizeof(a));
	c = chk_start(base, &t, &judge, &default_opts, done_cb, &r);
	CHECK(c != NULL);
	chk_cancel(c);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	CHECK_INT(r.calls, 0);
	conns_close_all();
	CHECK_INT(count_fds(), fds);
}

/* A UDP socket on loopback for a resolver to ask; its port in *a. */
static int udp_socket(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	*a = (struct sockaddr_in){.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
	bind(fd, (struct sockaddr *)a, sizeof(*a));
	getsockname(fd, (struct sockaddr *)a, &len);
	return fd;
}

/* A name server that knows no name at all. */
static void nxdomain_cb(struct evdns_server_request *req, void *arg)
{
	evdns_server_request_respond(req, DNS_ERR_NOTEXIST);
}

/* A proxy given by name: resolved (from a hosts file, then from a name
 * server on loopback), then checked like any other; a name that does not
 * exist is unreachable; a server that never answers costs the connect
 * timeout; a check cancelled while its name resolves leaves nothing. */
static void test_resolve(void)
{
	struct step good[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER), END};
	struct step silent[] = {EXPECT_S(REQ_ABSOLUTE), HOLD};
	struct chk_opts o = {.connect_timeout_ms = 300, .timeout_ms = 3000};
	struct chk_target t = {.proto = PROXY_HTTP, .host = "proxy.test",
			       .port = ntohs(peer_addr.sin_port)};
	char hosts[] = "/tmp/test_check_hostsXXXXXX";
	struct timeval tv = {0, 50000};
	struct evdns_server_port *server;
	struct sockaddr_in ns, quiet;
	struct chk_outcome out;
	struct result r = {0};
	int fds = count_fds(), hfd = mkstemp(hosts), nfd = udp_socket(&ns);
	int qfd = udp_socket(&quiet);
	struct timespec t0;
	struct chk *c;

	CHECK(write(hfd, "127.0.0.1 proxy.test\n", 21) == 21);
	close(hfd);
	/* no resolver: unreachable */
	out = play(&t, NULL, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_REFUSED);
	CHECK_INT(out.err, EHOSTUNREACH);
	/* from the hosts file, answered inside chk_start */
	o.dns = evdns_base_new(base, 0);
	CHECK(evdns_base_load_hosts(o.dns, hosts) == 0);
	out = play(&t, &o, good, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_OK);
	CHECK_INT(out.status, 200);
	/* a server that says no such name */
	server = evdns_add_server_port_with_base(base, nfd, 0, nxdomain_cb, NULL);
	CHECK(evdns_base_nameserver_sockaddr_add(o.dns, (struct sockaddr *)&ns, sizeof(ns), 0) ==
	      0);
	t.host = "nowhere.test";
	out = play(&t, &o, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_REFUSED);
	CHECK_INT(out.err, EHOSTUNREACH);
	evdns_base_free(o.dns, 0);
	/* a server that never answers */
	o.dns = evdns_base_new(base, 0);
	evdns_base_nameserver_sockaddr_add(o.dns, (struct sockaddr *)&quiet, sizeof(quiet), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	out = play(&t, &o, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	CHECK(ms_since(&t0) >= 290 && ms_since(&t0) < 1000);
	/* cancelled while resolving: done never comes */
	c = chk_start(base, &t, &judge, &o, done_cb, &r);
	CHECK(c != NULL);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	chk_cancel(c);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base); /* the resolver's last callback */
	CHECK_INT(r.calls, 0);
	evdns_base_free(o.dns, 0);
	evdns_close_server_port(server);
	close(nfd);
	close(qfd);
	unlink(hosts);
	CHECK_INT(count_fds(), fds);
}

/* Out of descriptors: NULL with errno, never a done call. */
static void test_local_error(void)
{
	struct chk_target t = target(PROXY_SOCKS5, NULL, NULL);
	struct result r = {0};
	struct rlimit old, low;
	struct chk *c;
	int lowest = dup(0);

	close(lowest);
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = (rlim_t)lowest;
	setrlimit(RLIMIT_NOFILE, &low);
	errno = 0;
	c = chk_start(base, &t, &judge, &default_opts, done_cb, &r);
	setrlimit(RLIMIT_NOFILE, &old);
	CHECK(c == NULL);
	CHECK_INT(errno, EMFILE);
	CHECK(chk_errno_is_local(errno));
	if (c)
		chk_cancel(c);
	t.proto = PROXY_PROTO_COUNT;
	CHECK(chk_start(base, &t, &judge, &default_opts, done_cb, &r) == NULL);
	CHECK_INT(r.calls, 0);
}

/* An https judge through every kind of proxy; TLS failures of every kind
 * are CHK_TLS_ERR and never OK. */
static void test_tls(void)
{
	struct chk_target t5 = target(PROXY_SOCKS5, NULL, NULL);
	struct chk_target th = target(PROXY_HTTP, NULL, NULL);
	struct chk_target t4 = target(PROXY_SOCKS4, NULL, NULL);
	struct chk_opts quick = {.connect_timeout_ms = 200, .timeout_ms = 300};
	struct step good[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_good), EXPECT_S(REQ_TLS), SEND_S(ANSWER),
			      END};
	struct step chunked[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_good), EXPECT_S(REQ_TLS),
				 SEND_S(ANSWER_CHUNKED), HOLD};
	struct step by_name[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_good), EXPECT_S(REQ_TLS_NAME),
				 SEND_S(ANSWER), END};
	/* HTTP proxies tunnel even when not asked to */
	struct step connect[] = {EXPECT_S(CONNECT_TLS_REQ), SEND_S(CONNECT_OK), TLS_AS(srv_good),
				 EXPECT_S(REQ_TLS),	    SEND_S(ANSWER),	END};
	struct step tls12[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_tls12), EXPECT_S(REQ_TLS),
			       SEND_S(ANSWER), END};
	struct step socks4[] = {EXPECT_B(4, 1, 0x20, 0xfb, 127, 0, 0, 1, 0),
				SEND_B(0, 90, 0, 0, 0, 0, 0, 0),
				TLS_AS(srv_good),
				EXPECT_S(REQ_TLS),
				SEND_S(ANSWER),
				END};
	struct step to_eof[] = {S5_TO_TLS_JUDGE,   TLS_AS(srv_good),
				EXPECT_S(REQ_TLS), SEND_S("HTTP/1.0 200 OK\r\n\r\n" EXPECT),
				CLOSE_NOTIFY,	   END};
	/* the body ends with a bare close: a cut the proxy could have made */
	struct step cut_eof[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_good), EXPECT_S(REQ_TLS),
				 SEND_S("HTTP/1.0 200 OK\r\n\r\n" EXPECT), END};
	struct step wrong_name[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_wrong_name), HOLD};
	struct step stranger[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_stranger), HOLD};
	struct step expired[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_expired), HOLD};
	struct step garbage[] = {S5_TO_TLS_JUDGE, EXPECT_B(0x16, 3, 1),
				 SEND_S("HTTP/1.1 400 Bad Request\r\n\r\n"), HOLD};
	struct step half_hello[] = {S5_TO_TLS_JUDGE, EXPECT_B(0x16, 3, 1),
				    SEND_B(0x16, 3, 3, 0, 0x7a, 2, 0, 0), END};
	struct step closed[] = {S5_TO_TLS_JUDGE, EXPECT_B(0x16, 3, 1), END};
	struct step silent[] = {S5_TO_TLS_JUDGE, EXPECT_B(0x16, 3, 1), HOLD};
	/* bytes after the SOCKS reply, before our ClientHello */
	struct step eager[] = {
	    EXPECT_B(5, 1, 0), SEND_B(5, 0), EXPECT_B(5, 1, 0, 1, 127, 0, 0, 1, 0x20, 0xfb),
	    SEND_B(5, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39, 0x16, 3, 3, 0, 2, 2, 0), HOLD};
	struct step connect_eager[] = {EXPECT_S(CONNECT_TLS_REQ), SEND_S(CONNECT_OK ANSWER), HOLD};
	struct chk_outcome out;

	cur_judge = &tls_judge;
	out = play(&t5, NULL, good, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_OK);
	CHECK_INT(out.status, 200);
	CHECK(out.latency_ms < 1000);
	EXPECT_OUTCOME(&t5, chunked, CHK_OK, 200);
	EXPECT_OUTCOME(&t5, tls12, CHK_OK, 200);
	CHECK_INT(play(&t5, NULL, tls12, SIZE_MAX, true).result, CHK_OK);
	EXPECT_OUTCOME(&th, connect, CHK_OK, 200);
	EXPECT_OUTCOME(&t4, socks4, CHK_OK, 200);
	EXPECT_OUTCOME(&t5, to_eof, CHK_OK, 200);
	EXPECT_OUTCOME(&t5, cut_eof, CHK_TLS_ERR, 0);
	EXPECT_OUTCOME(&t5, wrong_name, CHK_TLS_ERR, 0);
	EXPECT_OUTCOME(&t5, stranger, CHK_TLS_ERR, 0);
	EXPECT_OUTCOME(&t5, expired, CHK_TLS_ERR, 0);
	EXPECT_OUTCOME(&t5, garbage, CHK_TLS_ERR, 0);
	EXPECT_OUTCOME(&t5, half_hello, CHK_TLS_ERR, 0);
	out = play(&t5, NULL, closed, SIZE_MAX, false);
	CHECK(out.result == CHK_TLS_ERR || out.result == CHK_RESET);
	/* the peer talks before our ClientHello */
	EXPECT_OUTCOME(&t5, eager, CHK_PROTO_ERR, 0);
	EXPECT_OUTCOME(&th, connect_eager, CHK_PROTO_ERR, 0);
	out = play(&t5, &quick, silent, SIZE_MAX, false);
	CHECK_INT(out.result, CHK_TIMEOUT);
	expect_cuts(__LINE__, &t5, good);

	cur_judge = &name_judge;
	EXPECT_OUTCOME(&t5, by_name, CHK_OK, 200);
	EXPECT_OUTCOME(&t5, wrong_name, CHK_TLS_ERR, 0);
	EXPECT_OUTCOME(&t5, stranger, CHK_TLS_ERR, 0);

	cur_judge = &distrustful;
	EXPECT_OUTCOME(&t5, good, CHK_TLS_ERR, 0);
	cur_judge = &judge;
}

static void expect_body(int line, const struct chk_target *t, const struct step *s, bool drip,
			const char *want, size_t want_len)
{
	struct chk_outcome out = play(t, NULL, s, SIZE_MAX, drip);

	CHECK_INT(out.result, CHK_OK);
	CHECK(last_body_set);
	CHECK_INT(last_body_len, want_len);
	if (!last_body_set || last_body_len != want_len || memcmp(last_body, want, want_len) != 0) {
		fprintf(stderr, "line %d: wrong body\n", line);
		CHECK(!"the body handed to done is the answer's");
	}
}

#define EXPECT_BODY(t, s, drip, want, len) expect_body(__LINE__, t, s, drip, want, len)

static void expect_no_body(int line, const struct chk_target *t, const struct step *s,
			   enum chk_result want)
{
	struct chk_outcome out = play(t, NULL, s, SIZE_MAX, false);

	if (out.result != want || last_body_set)
		fprintf(stderr, "line %d: %s, body %s\n", line, chk_result_name(out.result),
			last_body_set ? "set" : "NULL");
	CHECK_INT(out.result, want);
	CHECK(!last_body_set);
}

#define EXPECT_NO_BODY(t, s, want) expect_no_body(__LINE__, t, s, want)

#define BODY "<html>you are 127.0.0.1 " EXPECT "</html>"

/* The judge's body is handed to done, de-chunked and cut at CHK_BODY_MAX,
 * only when asked for and only for an ok answer. */
static void test_body(void)
{
	enum { BIG = CHK_BODY_MAX + 3000 };
	struct chk_target t = target(PROXY_HTTP, NULL, NULL);
	struct chk_target tc = target(PROXY_HTTP, NULL, NULL);
	struct chk_target t5 = target(PROXY_SOCKS5, NULL, NULL);
	struct step good[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER), END};
	struct step chunked[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S(ANSWER_CHUNKED), HOLD};
	struct step to_eof[] = {EXPECT_S(REQ_ABSOLUTE), SEND_S("HTTP/1.0 200 OK\r\n\r\n" EXPECT),
				END};
	struct step eager[] = {EXPECT_S(CONNECT_REQ "\r\n"), SEND_S(CONNECT_OK ANSWER),
			       EXPECT_S(REQ_ORIGIN), HOLD};
	struct step wrong[] = {EXPECT_S(REQ_ABSOLUTE),
			       SEND_S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), END};
	struct step missing[] = {EXPECT_S(REQ_ABSOLUTE),
				 SEND_S("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"),
				 HOLD};
	struct step tls[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_good), EXPECT_S(REQ_TLS), SEND_S(ANSWER),
			     END};
	struct step tls_chunked[] = {S5_TO_TLS_JUDGE, TLS_AS(srv_good), EXPECT_S(REQ_TLS),
				     SEND_S(ANSWER_CHUNKED), HOLD};
	char *big = malloc(BIG + 100), *big_chunked = malloc(BIG + 200), *body = malloc(BIG);
	struct step large[] = {EXPECT_S(REQ_ABSOLUTE), STEP(S_SEND, big, 0), END};
	struct step large_chunked[] = {EXPECT_S(REQ_ABSOLUTE), STEP(S_SEND, big_chunked, 0), HOLD};
	int head;

	/* a body longer than kept, expected text at its very end, in chunks
	 * that straddle the limit */
	for (int i = 0; i < BIG; i++)
		body[i] = (char)('a' + i % 26);
	memcpy(body + BIG - strlen(EXPECT), EXPECT, strlen(EXPECT));
	head = sprintf(big, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG);
	memcpy(big + head, body, BIG);
	large[1].len = (size_t)head + BIG;
	head = sprintf(big_chunked, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
		       CHK_BODY_MAX - 10);
	memcpy(big_chunked + head, body, CHK_BODY_MAX - 10);
	head += CHK_BODY_MAX - 10;
	head += sprintf(big_chunked + head, "\r\n%x\r\n", BIG - (CHK_BODY_MAX - 10));
	memcpy(big_chunked + head, body + CHK_BODY_MAX - 10, BIG - (CHK_BODY_MAX - 10));
	head += BIG - (CHK_BODY_MAX - 10);
	head += sprintf(big_chunked + head, "\r\n0\r\n\r\n");
	large_chunked[1].len = (size_t)head;

	EXPECT_NO_BODY(&t, good, CHK_OK); /* not asked for */
	judge.capture_body = true;
	tls_judge.capture_body = true;
	tc.tunnel = true;
	EXPECT_BODY(&t, good, false, BODY, strlen(BODY));
	EXPECT_BODY(&t, good, true, BODY, strlen(BODY));
	EXPECT_BODY(&t, chunked, false, EXPECT, strlen(EXPECT));
	EXPECT_BODY(&t, chunked, true, EXPECT, strlen(EXPECT));
	EXPECT_BODY(&t, to_eof, false, EXPECT, strlen(EXPECT));
	EXPECT_NO_BODY(&tc, eager, CHK_PROTO_ERR);
	EXPECT_BODY(&t, large, false, body, CHK_BODY_MAX);
	EXPECT_BODY(&t, large_chunked, false, body, CHK_BODY_MAX);
	EXPECT_NO_BODY(&t, wrong, CHK_BAD_ANSWER);
	EXPECT_NO_BODY(&t, missing, CHK_BAD_ANSWER);
	expect_cuts(__LINE__, &t, chunked);
	cur_judge = &tls_judge;
	EXPECT_BODY(&t5, tls, false, BODY, strlen(BODY));
	EXPECT_BODY(&t5, tls_chunked, true, EXPECT, strlen(EXPECT));
	cur_judge = &judge;
	judge.capture_body = false;
	tls_judge.capture_body = false;
	free(big);
	free(big_chunked);
	free(body);
}

/* ---- the judge ---- */

static void test_judge(void)
{
	static const char *const bad[] = {
	    "https://",
	    "https://1.2.3.4:0/",
	    "ftp://127.0.0.1/",
	    "http://",
	    "http:///x",
	    "http://1.2.3.4:0/",
	    "http://1.2.3.4:65536/",
	    "http://1.2.3.4:/",
	    "http://1.2.3.4:8x/",
	    "http://[::1/",
	    "http://[zz]/",
	    "http://a b/",
	    "http://u:p@1.2.3.4/",
	    "http://1.2.3.4/a b",
	    "http://1.2.3.4/\r\nX: y",
	    "127.0.0.1:80",
	};
	struct chk_judge j;
	char err[128];

	CHECK_INT(chk_judge_init(&j, JUDGE_URL, EXPECT, err, sizeof(err)), 0);
	CHECK_STR(j.host, "127.0.0.1");
	CHECK_INT(j.port, 8080);
	CHECK_STR(j.path, "/judge?q=1");
	CHECK_STR(j.expect, EXPECT);
	CHECK(j.have_addr && j.addr.ss_family == AF_INET);
	CHECK_INT(ntohs(((struct sockaddr_in *)&j.addr)->sin_port), 8080);
	/* the fixed start; each check adds its User-Agent line and the rest */
	CHECK_STR(j.req_absolute, REQ_ABSOLUTE_HEAD);
	CHECK_STR(j.req_origin, REQ_ORIGIN_HEAD);
	CHECK_INT(j.req_absolute_len, strlen(REQ_ABSOLUTE_HEAD));
	CHECK_INT(j.req_origin_len, strlen(REQ_ORIGIN_HEAD));
	CHECK(j.echo_suffices == false); /* not the default expect */
	chk_judge_free(&j);
	CHECK_INT(chk_judge_init(&j, JUDGE_URL, CHK_EXPECT_DEFAULT, err, sizeof(err)), 0);
	CHECK(j.echo_suffices == true);
	chk_judge_free(&j);

	CHECK_INT(chk_judge_init(&j, "HTTP://[::1]", NULL, err, sizeof(err)), 0);
	CHECK_STR(j.host, "::1");
	CHECK_INT(j.port, 80);
	CHECK_STR(j.expect, "");
	CHECK(j.have_addr && j.addr.ss_family == AF_INET6);
	CHECK_STR(j.req_absolute, "GET http://[::1]/ HTTP/1.1\r\nHost: [::1]\r\n");
	CHECK_STR(j.req_origin, "GET / HTTP/1.1\r\nHost: [::1]\r\n");
	chk_judge_free(&j);

	/* A name is not looked up by init (it may block); its address comes later. */
	CHECK_INT(chk_judge_init(&j, "http://localhost:81?x=1#frag", "a", err, sizeof(err)), 0);
	CHECK_STR(j.path, "/?x=1");
	CHECK(!j.have_addr);
	{
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};

		chk_judge_set_addr(&j, (struct sockaddr *)&sin, sizeof(sin));
		CHECK(j.have_addr && j.addr.ss_family == AF_INET);
		CHECK_INT(ntohs(((struct sockaddr_in *)&j.addr)->sin_port), 81);
	}
	chk_judge_free(&j);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_INT(chk_judge_init(&j, bad[i], "x", err, sizeof(err)), -EINVAL);
		CHECK(err[0] != '\0');
		chk_judge_free(&j);
	}
	chk_judge_init(&j, "ftp://x/", "", err, sizeof(err));
	CHECK(strstr(err, "https://") != NULL);

	/* https: port 443 unless told, left out of Host; a TLS context */
	CHECK_INT(chk_judge_init(&j, "HTTPS://127.0.0.1/j", EXPECT, err, sizeof(err)), 0);
	CHECK(j.tls && j.tls_ctx && j.tls_bio);
	CHECK_INT(j.port, 443);
	CHECK_STR(j.req_origin, "GET /j HTTP/1.1\r\nHost: 127.0.0.1\r\n");
	CHECK_INT(chk_judge_set_ca(&j, NULL, err, sizeof(err)), 0);
	CHECK_INT(chk_judge_set_ca(&j, "", err, sizeof(err)), 0);
	err[0] = '\0';
	CHECK_INT(chk_judge_set_ca(&j, "/nonexistent/ca.pem", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
	CHECK_INT(chk_judge_set_ca(&j, "/dev/null", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "/dev/null") != NULL);
	chk_judge_free(&j);
	CHECK_INT(chk_judge_init(&j, "https://[::1]:8443", NULL, err, sizeof(err)), 0);
	CHECK_INT(j.port, 8443);
	CHECK_STR(j.req_origin, "GET / HTTP/1.1\r\nHost: [::1]:8443\r\n");
	chk_judge_free(&j);
	/* http: no TLS, and 443 is just another port */
	CHECK_INT(chk_judge_init(&j, "http://127.0.0.1:443/", NULL, err, sizeof(err)), 0);
	CHECK(!j.tls && !j.tls_ctx);
	CHECK_STR(j.req_origin, "GET / HTTP/1.1\r\nHost: 127.0.0.1:443\r\n");
	CHECK_INT(chk_judge_set_ca(&j, "/nonexistent/ca.pem", err, sizeof(err)), 0);
	chk_judge_free(&j);
}

static void test_names(void)
{
	CHECK_STR(chk_result_name(CHK_OK), "ok");
	CHECK_STR(chk_result_name(CHK_TIMEOUT), "timeout");
	CHECK_STR(chk_result_name(CHK_REFUSED), "refused");
	CHECK_STR(chk_result_name(CHK_RESET), "reset");
	CHECK_STR(chk_result_name(CHK_PROTO_ERR), "protocol_error");
	CHECK_STR(chk_result_name(CHK_BAD_ANSWER), "wrong_answer");
	CHECK_STR(chk_result_name(CHK_AUTH), "auth");
	CHECK_STR(chk_result_name(CHK_LOCAL_ERR), "local_error");
	CHECK_STR(chk_result_name(CHK_TLS_ERR), "tls_error");
	CHECK(chk_errno_is_local(EMFILE) && chk_errno_is_local(ENFILE));
	CHECK(chk_errno_is_local(EADDRNOTAVAIL) && chk_errno_is_local(ENOBUFS));
	CHECK(chk_errno_is_local(ENOMEM));
	CHECK(!chk_errno_is_local(ECONNREFUSED) && !chk_errno_is_local(ECONNRESET));
	CHECK(!chk_errno_is_local(0));
}

static int peer_listen(void)
{
	socklen_t len = sizeof(peer_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	peer_addr.sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &peer_addr.sin_addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)&peer_addr, sizeof(peer_addr)) < 0 ||
	    listen(fd, 64) < 0 || getsockname(fd, (struct sockaddr *)&peer_addr, &len) < 0)
		return -1;
	return fd;
}

int main(void)
{
	char err[128];
	int lfd;

	test_names();
	test_judge();
	base = event_base_new();
	lfd = peer_listen();
	if (!base || lfd < 0 || chk_judge_init(&judge, JUDGE_URL, EXPECT, err, sizeof(err))) {
		fprintf(stderr, "setup failed: %s\n", err);
		return 1;
	}
	listen_ev = event_new(base, lfd, EV_READ | EV_PERSIST, listen_cb, NULL);
	guard_ev = evtimer_new(base, guard_cb, NULL);
	event_add(listen_ev, NULL);

	tls_setup();

	test_http();
	test_connect();
	test_socks5();
	test_socks4();
	test_garbage();
	test_talks_first();
	test_why();
	test_token();
	test_tls();
	test_body();
	test_refused_and_timeouts();
	test_unreachable();
	test_cancel();
	test_resolve();
	test_local_error();

	tls_teardown();
	event_free(guard_ev);
	event_free(listen_ev);
	close(lfd);
	chk_judge_free(&judge);
	event_base_free(base);
	return test_exit_code();
}
