/* echo: what a judge echoes (its answer) says about the proxy it came through.
 *
 * A judge echoes the address that connected to it and the request headers
 * it received. From that body this parser takes the proxy's exit address
 * and its anonymity, given the addresses the judge sees when we ask it
 * directly ("our" addresses). It reads three formats: azenv-style CGI
 * variables (`REMOTE_ADDR = 1.2.3.4`, `HTTP_VIA = ...`, often in HTML),
 * httpbin-style JSON (`"origin"`, `"headers": {...}`) and the answer of
 * `proxyfs judge` (see cli_judge.c). It is pure: no allocation, no globals,
 * work linear in the body, and any bytes are safe (NULs, truncation,
 * binary). It knows nothing about HTTP framing: it gets the body only.
 */
#ifndef PROXYFS_ECHO_H
#define PROXYFS_ECHO_H

#include <stdbool.h>
#include <stddef.h>

#include "snapshot.h"

/* The snapshot's grades (enum snap_anon), so that one is the other. */
enum ja_anon {
	JA_UNKNOWN = SNAP_ANON_UNKNOWN,		/* the answer was not understood */
	JA_TRANSPARENT = SNAP_ANON_TRANSPARENT, /* one of our addresses is visible to the judge */
	JA_ANONYMOUS = SNAP_ANON_ANONYMOUS,	/* a header shows a proxy, but not our address */
	JA_ELITE = SNAP_ANON_ELITE,		/* neither */
};

enum ja_format {
	JA_FORMAT_NONE,
	JA_FORMAT_AZENV,   /* REMOTE_ADDR = ..., HTTP_* = ... */
	JA_FORMAT_JSON,    /* httpbin: "origin", "headers" */
	JA_FORMAT_PROXYFS, /* proxyfs judge: "proxyfs-judge 1", remote_addr, header */
};

struct ja_result {
	enum ja_anon anon;
	char exit_ip[64]; /* the address the judge saw, "" if none */
	char header[48];  /* canonical name of the first proxy header seen, "" if none */
	int format;       /* enum ja_format */
};

/* Reads a judge's answer body (len bytes, not NUL-terminated, any content).
 * our_addrs (n_our C strings; NULL or "" entries are skipped) are the
 * addresses the judge sees for us without a proxy. An address counts only
 * as a whole token (1.2.3.4 is not in 11.2.3.45) in the client address or
 * a header value the judge echoed; the Host header, which names the judge,
 * is not searched. Returns 0 and fills *out when the format was recognised
 * and carried a valid client address; -EINVAL otherwise (out->anon is then
 * JA_UNKNOWN and exit_ip ""). */
int ja_parse(const char *body, size_t len, const char *const *our_addrs, size_t n_our,
	     struct ja_result *out);

/* Whether the body, read in its format, echoes a request header named
 * header (any case, '_' for '-'): azenv's HTTP_USER_AGENT, httpbin's
 * "headers", proxyfs judge's header lines. Such a judge echoes what it was
 * sent, so the check's token must be in its answer. */
bool ja_echoes(const char *body, size_t len, const char *header);

/* Learns our own address from the answer to a direct request (no proxy):
 * the client address of any of the three formats, written NUL-terminated
 * into addr. Returns 0, -EINVAL when the answer carries none, -ENOSPC when
 * size is too small. */
int ja_own_addr(const char *body, size_t len, char *addr, size_t size);

#endif
