/* check: one proxy check as a non-blocking state machine on a libevent loop.
 *
 * [resolve the proxy's name] -> connect -> proxy handshake (HTTP absolute-URI GET, HTTP CONNECT, SOCKS4/4a,
 * SOCKS5 with RFC 1929 auth) -> TLS to the judge through the tunnel when it
 * is https -> request to the judge -> read and validate the answer -> one
 * outcome, with the start of the answer's body when asked. Every phase has a
 * timeout. Knows nothing about the pool, scheduling or retries; the caller
 * decides what an outcome means.
 */
#ifndef PROXYFS_CHECK_H
#define PROXYFS_CHECK_H

#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check_result.h"
#include "http_answer.h"
#include "proxy.h"

/* CHK_ECHO_MARKER and CHK_TOKEN_LEN: http_answer.h (src/, the parser reads them). */
/* Most bytes of the judge's answer body handed to done (chk_outcome.body). */
#define CHK_BODY_MAX 8192

struct ssl_ctx_st;
struct bio_method_st;

/* The judge: where the check fetches its answer. Built once by
 * chk_judge_init(), then shared read-only by every check. */
struct chk_judge {
	char host[256];  /* as in the URL, without brackets */
	uint16_t port;
	char *path;      /* "/..." with query */
	char *expect;    /* substring the body must contain; "" = none (see require_echo) */
	bool have_addr;  /* addr is the host's (needed for SOCKS4 and SOCKS5 by address) */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/* The start of the request, up to and with the Host line; each check
	 * adds its own part (credentials, the User-Agent with its token). */
	char *req_absolute; /* for an HTTP proxy: GET http://host:port/path */
	char *req_origin;   /* through a tunnel: GET /path */
	size_t req_absolute_len, req_origin_len;
	size_t expect_len;
	uint32_t *expect_kmp; /* KMP failure table of expect, expect_len entries */
	bool tls;	      /* https: every check speaks TLS to the judge through a tunnel */
	bool capture_body;    /* set after init: done gets the body of an ok answer */
	bool require_echo;    /* set after init: only an answer echoing the check's token is ok */
	bool echo_suffices;   /* an answer echoing the check's token is ok without expect
			       * (set at init for the default expect, CHK_EXPECT_DEFAULT) */
	struct ssl_ctx_st *tls_ctx;	 /* https only: verifies the judge, shared by all checks */
	struct bio_method_st *tls_bio; /* https only: TLS on a check's socket, without SIGPIPE */
};

/* The default expected text: what azenv-style judges print. With it, an
 * answer that echoes the check's token (proxyfs judge, httpbin) is ok too. */
#define CHK_EXPECT_DEFAULT "REMOTE_ADDR"

/* Parses an http:// or https:// judge URL and builds the requests; a host
 * that is an address becomes addr, a name is not looked up (that may
 * block: the caller does it elsewhere and calls chk_judge_set_addr). For
 * https also builds the TLS client context: TLS 1.2 at least, the peer's
 * certificate verified against the default trust store (which honours
 * SSL_CERT_FILE and SSL_CERT_DIR) and the judge's host name or address. 0, or -EINVAL (bad URL, TLS setup failed)
 * or -ENOMEM with a message in err. */
int chk_judge_init(struct chk_judge *j, const char *url, const char *expect, char *err,
		   size_t errlen);

/* Trusts the CA certificates (PEM) in ca_file too, beside the default
 * trust store; call after chk_judge_init and before any check. Does nothing
 * for an http judge or a NULL or empty ca_file. 0, or -EINVAL (unreadable
 * file, no certificate in it) with a message in err. */
int chk_judge_set_ca(struct chk_judge *j, const char *ca_file, char *err, size_t errlen);
void chk_judge_free(struct chk_judge *j);

/* The address the judge's host name resolved to (the URL's port is added);
 * checks started from now on use it. */
void chk_judge_set_addr(struct chk_judge *j, const struct sockaddr *sa, socklen_t len);

struct ssl_st;

/* A TLS client for an https judge on the connected socket fd: SNI, the
 * judge's host name or address to verify, and I/O that never raises
 * SIGPIPE. The caller owns it (SSL_free; fd stays open). NULL when out of
 * memory. Used by the checks. */
struct ssl_st *chk_judge_tls_new(const struct chk_judge *j, int fd);

struct evdns_base;

struct chk_opts {
	int connect_timeout_ms; /* resolving the proxy's name and connecting */
	int timeout_ms;       /* the whole check, from its start to the last byte */
	size_t max_answer;    /* bytes of the judge's answer read at most; default 64 KiB if 0 */
	struct evdns_base *dns; /* resolves proxies given by name; NULL: they fail */
};

/* The proxy to check: its address, or (addr.ss_family AF_UNSPEC) its host
 * name and port, resolved through opts->dns at each check. */
struct chk_target {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	const char *host; /* a DNS name, when addr is AF_UNSPEC */
	uint16_t port;
	enum proxy_proto proto; /* PROXY_HTTP, PROXY_SOCKS4 or PROXY_SOCKS5 */
	bool tunnel;            /* PROXY_HTTP: use CONNECT instead of an absolute-URI GET */
	bool remote_dns;        /* socks4a / socks5h: send the judge's name, not its address */
	const char *user;       /* "" or NULL when none */
	const char *pass;
};

struct chk_outcome {
	enum chk_result result;
	uint8_t stage;	     /* enum chk_stage: where it ended */
	uint8_t why;	     /* enum chk_why */
	uint8_t socks_reply; /* the SOCKS reply code behind a SOCKS refusal or auth failure */
	int err;             /* errno behind a REFUSED/RESET/LOCAL_ERR, else 0 (a name
			      * that does not resolve: REFUSED, EHOSTUNREACH) */
	uint32_t latency_ms; /* the start (resolving a name included) to the last byte of
			      * the answer (CHK_OK only) */
	uint16_t status;     /* HTTP status from the judge's answer, 0 if none */
	uint32_t idle_ms;    /* CHK_TIMEOUT: how long the proxy had had its turn (since
			      * connect() or our last send) without answering it */
	/* With judge->capture_body, for CHK_OK: the answer's first bytes of
	 * body (CHK_BODY_MAX at most, de-chunked, NUL-terminated beyond
	 * body_len). Valid only during the done call; NULL and 0 otherwise,
	 * and for an empty body. */
	const char *body;
	size_t body_len;
};

typedef void (*chk_done_fn)(void *arg, const struct chk_outcome *out);

struct chk;

/* Starts a check. Copies what it needs from target (user/pass too); judge
 * and opts must outlive the check. Returns the check, or NULL with errno
 * set when it could not even start (EMFILE, ENOMEM, ...: always our side).
 * done is called exactly once, from the loop, never from inside chk_start;
 * the check frees itself right after done returns. */
struct chk *chk_start(struct event_base *base, const struct chk_target *target,
		      const struct chk_judge *judge, const struct chk_opts *opts, chk_done_fn done,
		      void *arg);

/* Stops a check early without calling done, and frees it. Not from inside
 * its own done callback. */
void chk_cancel(struct chk *c);

/* True if err is a failure of our own side (fd or port exhaustion, memory). */
bool chk_errno_is_local(int err);

#endif
