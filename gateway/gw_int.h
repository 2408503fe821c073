/* gw_int: the gateway's shared state, for its own files only.
 *
 * One struct gw_conn per client connection, moving through an explicit
 * state: reading what the client asks (gw_client.c), reaching the target
 * through an upstream (gw_upstream.c), relaying (gw_relay.c). Everything
 * here lives on the gateway's one thread.
 */
#ifndef PROXYFS_GW_INT_H
#define PROXYFS_GW_INT_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "gateway.h"
#include "gw_stats.h"
#include "gw_user.h"
#include "http_answer.h"
#include "proxy.h"
#include "session.h"
#include "socks.h"

/* Most upstreams one client connection tries. */
#define GW_TRIES_MAX 11
/* An HTTP client's request head (request line and headers) at most. */
#define GW_HTTP_HEAD_MAX 16384
/* Relay: stop reading one side while the other's output holds this much. */
#define GW_RELAY_HIGH (256 * 1024)
/* Relay: the most one read takes. */
#define GW_RELAY_READ (128 * 1024)
#define GW_PER_CLIENT_BUCKETS 1024
/* A tunnel's first bytes from the client kept for a replay, at most. */
#define GW_REPLAY_MAX (64 * 1024)
/* Upstreams that carried a connection lately, newest first: a retry goes
 * to one of them before an unknown one. */
#define GW_GOOD_KEEP 16

enum gw_client_proto { GW_CL_UNKNOWN, GW_CL_SOCKS5, GW_CL_SOCKS4, GW_CL_HTTP };

enum gw_state {
	GW_ST_FIRST,	  /* nothing read yet */
	GW_ST_S5_METHODS, /* SOCKS5 greeting */
	GW_ST_S5_AUTH,	  /* RFC 1929 user/password */
	GW_ST_S5_REQUEST, /* SOCKS5 CONNECT */
	GW_ST_S4_REQUEST, /* SOCKS4/4a CONNECT */
	GW_ST_HTTP_HEAD,  /* HTTP request line and headers */
	GW_ST_UPSTREAM,	  /* reaching the target through an upstream */
	GW_ST_RELAY,	  /* tunnel up: bytes copied both ways */
	GW_ST_CLOSING,	  /* an error answer being flushed to the client */
};

/* Where the client wants to go. */
struct gw_target {
	char host[256]; /* a domain name, or an IP literal (no brackets) */
	uint16_t port;
	int family; /* AF_INET, AF_INET6 for a literal; AF_UNSPEC for a name */
	uint8_t ip[16];
};

/* The upstream handshake's step. */
enum gw_up_step {
	GW_UP_CONNECT,
	GW_UP_HTTP,
	GW_UP_S5_METHOD,
	GW_UP_S5_AUTH,
	GW_UP_S5_REPLY,
	GW_UP_S4_REPLY
};

struct gw_client_count;

/* What a connection needs until its tunnel is up; freed then, so an open
 * relayed connection costs only its struct gw_conn and buffers. */
struct gw_hs {
	struct gw_target target;
	char user[256], pass[256];
	bool has_user;
	bool user_done; /* options read and password checked */
	/* HTTP absolute-form: the request head rewritten to origin form, sent
	 * to the target once the tunnel is up; NULL for CONNECT and SOCKS. */
	struct evbuffer *head;
	/* The user name's options; filter's source names may point into it. */
	struct gw_user opts;
	/* The config's filter and the user name's together. */
	struct pick_filter filter;
	/* Upstream attempts: the URIs tried so far (owned), the last the
	 * current one. */
	char *tried[GW_TRIES_MAX];
	int ntried;
	struct proxy_addr upa;
	uint64_t up_gen;   /* the current upstream: the snapshot it came from */
	uint32_t up_index; /* and its index into that snapshot's live[] */
	uint8_t up_step;   /* enum gw_up_step */
	struct chk_socks_reply sr;
	struct chk_answer ans;
	int up_err;	       /* errno of the last upstream failure, 0 if none */
	uint8_t up_socks_code; /* SOCKS5 reply of the last refusal, 0 if none */
	char why[160];	       /* the last failure, in words */
	struct timespec t0;    /* when the client's request was whole (monotonic) */
	/* A tunnel being made again after its upstream closed before
	 * answering (the client was told already; gw_replay) */
	bool again;
	int first_try; /* tried[] index where this round of attempts began */
	/* The client's request is absolute-form (kept when head is gone, for
	 * a tunnel made again), and the current upstream, an HTTP proxy
	 * proven to forward, takes it as it is rather than through a tunnel. */
	bool absolute;
	bool forward;
	/* The lookup of an upstream given by host name, while it runs. */
	struct evdns_getaddrinfo_request *dns;
};

/* What it takes to make a tunnel again once it is up and the client was
 * told, kept until the first byte comes back through it. An upstream that
 * dies then (killed, its host gone) has taken the client's first bytes and
 * answered nothing: the tunnel is made again through another upstream and
 * those bytes sent again, so the client never sees the death. Kept small
 * (the handshake's struct gw_hs is freed): an idle tunnel holds it. */
struct gw_replay {
	char *host; /* the target */
	uint16_t port;
	uint8_t family;
	uint8_t ip[16];
	struct pick_filter filter; /* its source names point into names */
	char *names;		   /* the filter's source names, NUL-separated */
	char *session;		   /* the session key, NULL for none */
	bool absolute;		   /* an absolute-form request (gw_hs.absolute) */
	char **tried;		   /* the upstreams tried so far (owned) */
	int ntried;
	int agains; /* times the tunnel was made again: at most [gateway] retries */
	/* What the client sent through the tunnel so far (the rewritten head
	 * of an absolute-form request included); NULL when nothing yet. */
	struct evbuffer *sent;
};

struct gw_conn {
	struct gateway *gw;
	struct gw_conn *prev, *next; /* the gateway's list of open connections */
	struct bufferevent *client;
	struct bufferevent *up; /* NULL until an upstream is being reached */
	struct event *timer;	/* handshake deadline, then idle checks */
	struct gw_client_count *cc;
	struct gw_hs *hs; /* until the tunnel is up */
	struct gw_replay *replay; /* from then until the first byte back */
	/* The relay's read events, [0] the client's, [1] the upstream's
	 * (gw_relay.c); NULL before the relay. */
	struct event *pump[2];
	uint8_t proto;	  /* enum gw_client_proto */
	uint8_t state;	  /* enum gw_state */
	bool outcome_said;
	bool client_eof, up_eof;   /* read EOF from that side */
	bool client_shut, up_shut; /* shutdown(SHUT_WR) sent to that side */
	struct timeval last;	   /* last byte relayed either way */
};

struct gw_client_count {
	struct gw_client_count *next;
	uint8_t addr[16];
	uint8_t family;
	uint32_t n;
};

/* An upstream that carried a connection, where its snapshot had it. */
struct gw_good {
	char *uri; /* owned; NULL for an empty slot */
	uint64_t gen;
	uint32_t index;
};

struct gateway {
	struct event_base *base;
	pthread_t tid;
	bool running;
	struct evconnlistener **listeners;
	size_t nlisteners;
	struct gw_report report;
	enum gw_policy policy;
	struct pick_filter filter; /* the config's; its source names are sources[] */
	char **sources;
	struct gw_auth *auth; /* lets anyone in when auth_required is false */
	bool auth_required;
	int retries;
	uint32_t max_connections, per_client;
	struct timeval handshake_timeout, idle_timeout;
	uint32_t nconns;       /* open client connections; the loop's thread alone */
	struct gw_conn *conns; /* their list, for the stop */
	struct event *resume;  /* re-enables the listeners after an accept error */
	struct gw_client_count *per_client_tab[GW_PER_CLIENT_BUCKETS];
	struct gw_good good[GW_GOOD_KEEP]; /* newest first */
	/* Resolves upstreams given by host name (made at the first one; NULL
	 * before, or when it could not be made: dns_failed). */
	struct evdns_base *dns;
	bool dns_failed;
};

/* gateway.c */
void gw_conn_free(struct gw_conn *c);
/* Frees what only the handshake needed (at the tunnel, or with c). */
void gw_conn_hs_free(struct gw_conn *c);
/* Says the connection's outcome to gw_stats, once. */
void gw_conn_outcome(struct gw_conn *c, enum gw_outcome o);
/* Ends c after what the client's output holds is written. */
void gw_conn_close_after_flush(struct gw_conn *c);

/* gw_client.c: reads the client's request; calls gw_upstream_start when
 * whole, else answers the client's error itself. */
void gw_client_read_cb(struct bufferevent *bev, void *arg);
/* Tells the client the tunnel is up (SOCKS success, HTTP 200 for CONNECT;
 * nothing for an absolute-form request, whose head goes upstream). */
void gw_client_granted(struct gw_conn *c);
/* Tells the client no upstream could reach its target, in its own
 * protocol, then closes. */
void gw_client_failed(struct gw_conn *c);
/* Tells the client its credentials or user options were refused. */
void gw_client_auth_failed(struct gw_conn *c, const char *why);

/* gw_upstream.c: picks an upstream not tried yet and reaches the target
 * through it; on success starts the relay, on failure tries the next or
 * fails the client. */
void gw_upstream_start(struct gw_conn *c);

/* Forgets the upstreams that carried connections (at the stop). */
void gw_upstream_good_free(struct gateway *g);

/* The tunnel's upstream closed before a byte came back: makes it again
 * through another upstream (c->replay says where to), then sends what the
 * client had sent and relays on; closes the client when none is left. */
void gw_upstream_again(struct gw_conn *c);
/* Frees c's replay state (the first byte came back, or c ends). */
void gw_replay_free(struct gw_conn *c);
/* May what the client sent first (sent) go to a target a second time? */
bool gw_replay_allowed(struct evbuffer *sent);

/* gw_relay.c: bytes both ways until both sides are done or idle. */
void gw_relay_start(struct gw_conn *c);

#endif
