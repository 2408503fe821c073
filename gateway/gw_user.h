/* gw_user: what a gateway client asks for through its user name, and
 * whether its password lets it in.
 *
 * Clients of the gateway choose their upstream the way scrapers already
 * talk to commercial proxy networks: options appended to the user name,
 * each a keyword and a value joined by '-', in any order:
 *
 *   alice-session-x7             the same upstream for key x7 while it lives
 *   alice-proto-socks5           protocol: http, https, socks4, socks5
 *   alice-anon-elite             anonymity: elite, anonymous, transparent
 *   alice-source-NAME            a source of the config
 *   alice-country-de             where it comes out: a country code (any
 *                                case) or unknown, as the HTTP query's country=
 *   alice-anon-elite-session-x7  combined
 *
 * The plain user name is what comes before the first keyword (it may be
 * empty: "session-x7" is options only). A value runs up to the next
 * keyword, so a session key or source name may hold '-' as long as no
 * part of it is a keyword by itself. proto, anon, source and country take comma
 * lists and may be repeated (either way adding to the set, as the HTTP
 * front's query does); session is given once. The words are those of the
 * tree's folders and the HTTP query, case and all.
 *
 * The password check ([gateway] auth or users_file) compares in time that
 * does not depend on where a guess differs. No I/O, no logging: the
 * gateway logs the reasons given here.
 */
#ifndef PROXYFS_GW_USER_H
#define PROXYFS_GW_USER_H

#include <stdbool.h>
#include <stddef.h>

#include "pick.h"
#include "session.h"

/* Longest user name taken (the SOCKS5 limit, RFC 1929). */
#define GW_USER_MAX 255
/* Longest source name (as the config takes them). */
#define GW_USER_SOURCE_MAX PICK_SOURCE_NAME_MAX

/* What one user name asks for. */
struct gw_user {
	char name[GW_USER_MAX + 1];	   /* the plain user name, options stripped */
	char session[SESSION_KEY_MAX + 1]; /* the session key, "" for none */
	size_t session_len;
	/* The upstreams allowed; its source names point into sources[],
	 * so the struct is used where it was filled (not copied). */
	struct pick_filter filter;
	char sources[PICK_SOURCES_MAX][GW_USER_SOURCE_MAX + 1];
};

/* Reads the user name user (len bytes, not NUL-ended; len 0 for a client
 * that gave none) into *out. 0, or -EINVAL for a bad option (an unknown
 * word, a missing value, a bad session key, a second session, too long),
 * with why (one line, NUL-ended, cut to why_size) for the log. */
int gw_user_parse(const char *user, size_t len, struct gw_user *out, char *why, size_t why_size);

/* The user:pass pairs a gateway lets in. */
struct gw_auth;

/* A table of the pairs in pairs[0..n), each "user:pass" split at its
 * first ':'; n == 0 gives a table that lets anyone in. NULL on a bad pair
 * (no ':', an empty user, a user gw_user_parse would not give back as
 * itself: over GW_USER_MAX, or with an option word in it) or no memory,
 * with why in err. The caller frees it with gw_auth_free. */
struct gw_auth *gw_auth_new(char *const *pairs, size_t n, char *err, size_t errlen);
void gw_auth_free(struct gw_auth *a);

/* Does user (the plain name, as gw_user_parse gives it) with pass
 * (plen bytes) match a pair of a? True for a table of no pairs. Its time
 * depends on the number of pairs and nothing else. */
bool gw_auth_check(const struct gw_auth *a, const char *user, const char *pass, size_t plen);

#endif
