/* check_result: the words for how a check ended, shared by every part.
 *
 * The checker (checker/) produces these outcomes; the snapshot counts them,
 * the store keeps them, and the renderers (fs/) name them. They live here,
 * in the common part, so that fs/ never needs a checker header.
 */
#ifndef PROXYFS_CHECK_RESULT_H
#define PROXYFS_CHECK_RESULT_H

enum chk_result {
	CHK_OK,          /* alive: judge's answer whole, status 200, contains expect */
	CHK_TIMEOUT,     /* connect or whole-check timeout */
	CHK_REFUSED,     /* connection refused / host unreachable */
	CHK_RESET,       /* connection reset or closed early */
	CHK_PROTO_ERR,   /* the proxy broke its protocol (bad SOCKS reply, garbage status line) */
	CHK_BAD_ANSWER,  /* well-formed answer but not the judge's (status != 200, expect missing, too big) */
	CHK_AUTH,        /* the proxy refused our credentials */
	CHK_LOCAL_ERR,   /* our side failed (EMFILE, ENFILE, EADDRNOTAVAIL, ENOBUFS, ENOMEM): not the proxy's fault */
	CHK_TLS_ERR,     /* TLS through the tunnel failed: handshake, certificate or host name */
	CHK_UNREACHABLE, /* our host has no route to the proxy's network or address family
			  * (ENETUNREACH, ENETDOWN; EADDRNOTAVAIL or EAFNOSUPPORT for a family
			  * without a route): says nothing about the proxy */
	CHK_RESULT_COUNT /* how many result classes there are */
};

/* "ok", "timeout", "refused", "reset", "protocol_error", "wrong_answer",
 * "auth", "local_error", "tls_error", "unreachable". */
const char *chk_result_name(enum chk_result r);

/* Where a check ended: tells "timeout connecting" from "timeout after
 * connect", and so on. */
enum chk_stage {
	CHK_STAGE_RESOLVE,   /* looking up the proxy's name */
	CHK_STAGE_CONNECT,   /* the TCP connect to the proxy */
	CHK_STAGE_HANDSHAKE, /* the proxy's own handshake (CONNECT, SOCKS) */
	CHK_STAGE_TLS,	     /* TLS with the judge through the tunnel */
	CHK_STAGE_ANSWER,    /* our request to the judge sent (or going), its answer read */
};

/* Why an answer did not count (CHK_BAD_ANSWER, and CHK_PROTO_ERR for
 * CHK_WHY_EARLY). */
enum chk_why {
	CHK_WHY_NONE,
	CHK_WHY_STATUS,	   /* a status other than 200 (other than 2xx to CONNECT) */
	CHK_WHY_NO_EXPECT, /* 200 without the expected text */
	CHK_WHY_TOKEN,	   /* an echo of another check's request: cached or replayed */
	CHK_WHY_TOO_BIG,   /* head or body over the limit */
	CHK_WHY_EARLY,	   /* the peer spoke before our request went out */
};

#endif
