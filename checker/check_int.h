/* check_int: what the files of one check share (check.c and its
 * protocols, TLS and name resolution); see check.c for the design.
 *
 * Only check*.c include this. A check is one struct chk, owned by its
 * event: every function here runs on the check's loop.
 */
#ifndef PROXYFS_CHECK_INT_H
#define PROXYFS_CHECK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

#include "check.h"
#include "http_answer.h"
#include "socks.h"

#define CHK_TIMEOUT_DEFAULT_MS 10000
#define CHK_READ_CHUNK (16 * 1024)
#define CHK_MSGS 4
#define CHK_MSG_REQ (CHK_MSGS - 1) /* the judge's request: always the last message */
#define CHK_RAND_WORDS 512	   /* 64-bit tokens drawn per getrandom() call */

#ifndef PROXYFS_VERSION
#define PROXYFS_VERSION "dev"
#endif

/* The socket is registered once, for both directions, edge-triggered: the
 * kernel tells of a change, not of a state, so what it said is kept here
 * until a call finds the socket empty (read) or full (write). One
 * registration per check instead of one per turn of the conversation. */
#define CHK_CAN_READ 1
#define CHK_CAN_WRITE 2

enum chk_state {
	CHK_ST_RESOLVING,  /* waiting for the proxy's name to resolve */
	CHK_ST_CONNECTING, /* waiting for connect() to finish */
	CHK_ST_SENDING,	   /* out[out_off..out_len) still to send */
	CHK_ST_READING,	   /* waiting for the peer */
	CHK_ST_DONE,	   /* outcome recorded; finished by the callback */
};

enum chk_phase {
	CHK_PH_HANDSHAKE, /* talking to the proxy */
	CHK_PH_TLS,	  /* the tunnel is open: TLS handshake with the judge */
	CHK_PH_ANSWER,	  /* the judge's request is out (or going), reading its answer */
};

struct chk_proto;

struct chk {
	struct event ev; /* the socket, both ways, edge-triggered; the deadline */
	const struct chk_proto *proto;
	const struct chk_judge *judge;
	SSL *ssl;      /* https judge: from the tunnel's opening on, else NULL */
	struct evdns_getaddrinfo_request *dns; /* the name being resolved, else NULL */
	uint8_t *body; /* the answer's body being kept (judge->capture_body) */
	const struct chk_opts *opts;
	chk_done_fn done;
	void *arg;
	const uint8_t *out; /* being sent: a message in tail */
	uint32_t out_len, out_off;
	uint64_t start_ns;
	uint64_t wait_ns; /* when the proxy's turn began: connect, or our last send */
	int fd;
	uint8_t state;	/* enum chk_state */
	uint8_t phase;	/* enum chk_phase */
	bool with_auth; /* credentials were sent in an HTTP header */
	uint8_t ready;	/* CHK_CAN_*: what the kernel said and no call has used up */
	uint16_t port;	/* of the proxy given by name */
	struct chk_outcome res;
	struct chk_answer ans;	    /* the CONNECT reply's head, then the judge's answer */
	struct chk_socks_reply sr;  /* the SOCKS reply being read */
	uint32_t msg_len[CHK_MSGS]; /* messages in tail, one after another */
	uint8_t tail[];
};

struct chk_proto {
	/* At least the bytes build() writes into the tail. */
	size_t (*msg_size)(const struct chk_target *t, const struct chk_judge *j);
	/* Builds this check's messages into c->tail; 0 or -errno. */
	int (*build)(struct chk *c, const struct chk_target *t);
	/* Connected: sets the first thing to send. */
	void (*connected)(struct chk *c);
	/* Handshake bytes from the proxy; returns how many were used, which is
	 * at least one unless the check is over. */
	size_t (*feed)(struct chk *c, const uint8_t *p, size_t n);
	/* The proxy's own HTTP layer answers the judge's request, so a 407
	 * (or a 401 to our credentials) in the answer is the proxy's refusal. */
	bool proxy_answers;
};

/* One table per protocol: check_http.c, check_socks4.c, check_socks5.c. */
extern const struct chk_proto chk_http_plain;
extern const struct chk_proto chk_http_connect;
extern const struct chk_proto chk_socks4;
extern const struct chk_proto chk_socks5;

static inline uint64_t chk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline bool chk_has_user(const struct chk_target *t)
{
	return t->user && t->user[0];
}

static inline const char *chk_pass(const struct chk_target *t)
{
	return t->pass ? t->pass : "";
}

static inline uint8_t *chk_msg(struct chk *c, unsigned i)
{
	uint8_t *p = c->tail;

	for (unsigned k = 0; k < i; k++)
		p += c->msg_len[k];
	return p;
}

/* The User-Agent line of every request, around the check's token. */
static const char chk_ua[] = "User-Agent: proxyfs/" PROXYFS_VERSION " " CHK_ECHO_MARKER;
static const char chk_req_end[] = "\r\nAccept: */*\r\nConnection: close\r\n\r\n";

/* check.c. Records the outcome and sets CHK_ST_DONE (the event callback
 * finishes the check); chk_end_errno tells the result by errno. */
void chk_end_why(struct chk *c, enum chk_result r, int err, enum chk_why why, uint8_t socks_reply);
void chk_end(struct chk *c, enum chk_result r, int err);
void chk_end_errno(struct chk *c, int err);
/* Sets msg (len bytes, kept by the caller) as the next thing to send. */
void chk_send_msg(struct chk *c, const void *msg, size_t len);
/* The tunnel to the judge is open: TLS first for an https judge, else
 * chk_begin_answer. */
void chk_tunnel_up(struct chk *c);
/* The handshake is over: send this check's request, read the answer. */
void chk_begin_answer(struct chk *c);
/* Writes a fresh token, CHK_TOKEN_LEN hex digits. */
void chk_token(char *dst);
/* True when bytes wait before our request went: the peer spoke first. */
bool chk_peer_spoke_first(struct chk *c);
/* Is an HTTP status in the answer the proxy refusing our credentials? */
bool chk_status_is_auth(const struct chk *c, uint16_t status);
/* The judge's request, the tail's last message: its size and build. */
size_t chk_req_size(const struct chk_target *t, const struct chk_judge *j, bool absolute);
int chk_req_build(struct chk *c, const struct chk_target *t, bool absolute);
/* The peer closed; bytes of the judge's answer read. */
void chk_eof(struct chk *c);
void chk_consume_answer(struct chk *c, const uint8_t *p, size_t n);
/* Ends the check from the loop soon (never from inside chk_start). */
void chk_report_soon(struct chk *c);
/* Sets the event's timeout to the current deadline; 0 or -errno. */
int chk_arm(struct chk *c);
/* Connects to the proxy and waits on the socket; 0 or -errno (our side). */
int chk_connect(struct chk *c, const struct sockaddr *addr, socklen_t len);

/* check_http.c: the Proxy-Authorization line (with CRLF) for t's
 * credentials, 0 bytes when it has none (and when out of memory, for
 * chk_auth_write). */
size_t chk_auth_size(const struct chk_target *t);
size_t chk_auth_write(char *dst, const struct chk_target *t);

/* check_tls.c: TLS to an https judge through the tunnel. */
void chk_tls_io(struct chk *c);

/* check_dns.c: resolving a proxy given by name, then connecting. */
int chk_resolve(struct chk *c, const struct chk_target *t);

#endif
