/* gw_user: the gateway's user-name options and its password check.
 *
 * A user name is cut at each '-' into parts; the parts that are keywords
 * (session, proto, anon, source, country) start an option whose value is every
 * part up to the next keyword. What comes before the first keyword is the
 * plain user name. Values are checked with the rules every front uses
 * (session_key_valid, the folder words of proxy.h and snapshot.h, the
 * config's source names). Passwords are kept only as SHA-256 digests and
 * compared with CRYPTO_memcmp over every pair, so that neither which pair
 * nor where a guess goes wrong shows in the time taken.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "gw_user.h"
#include "proxy.h"
#include "snapshot.h"

/* Longest user name read at all, options included (HTTP Basic has no
 * bound of its own; SOCKS5 stops at 255). */
#define GW_USER_LINE_MAX 1024
#define GW_DIGEST_LEN 32

enum gw_opt {
	GW_OPT_SESSION,
	GW_OPT_PROTO,
	GW_OPT_ANON,
	GW_OPT_SOURCE,
	GW_OPT_COUNTRY,
	GW_OPT_NONE
};

static const char *const gw_opt_words[] = {"session", "proto", "anon", "source", "country"};

/* The option a part of the user name starts, or GW_OPT_NONE. */
static enum gw_opt gw_opt_of(const char *p, size_t n)
{
	for (int i = 0; i < GW_OPT_NONE; i++)
		if (strlen(gw_opt_words[i]) == n && memcmp(gw_opt_words[i], p, n) == 0)
			return (enum gw_opt)i;
	return GW_OPT_NONE;
}

/* Where the part starting at p ends ('-' or end). */
static const char *gw_part_end(const char *p, const char *end)
{
	const char *dash = memchr(p, '-', (size_t)(end - p));

	return dash ? dash : end;
}

/* The next keyword part at or after p: its start, its kind in *opt, and
 * where it ends in *kw_end; end (and GW_OPT_NONE) when there is none. */
static const char *gw_next_opt(const char *p, const char *end, enum gw_opt *opt,
			       const char **kw_end)
{
	while (p < end) {
		const char *e = gw_part_end(p, end);

		*opt = gw_opt_of(p, (size_t)(e - p));
		if (*opt != GW_OPT_NONE) {
			*kw_end = e;
			return p;
		}
		if (e == end)
			break;
		p = e + 1;
	}
	*opt = GW_OPT_NONE;
	*kw_end = end;
	return end;
}

static int gw_one_proto(struct gw_user *u, const char *item, size_t n, char *why, size_t ws)
{
	uint32_t bit = pick_proto_bit(item, n);

	if (!bit) {
		snprintf(why, ws, "proto: '%.*s' is not one of http, https, socks4, socks5",
			 (int)(n > 40 ? 40 : n), item);
		return -EINVAL;
	}
	u->filter.protos |= bit;
	return 0;
}

static int gw_one_anon(struct gw_user *u, const char *item, size_t n, char *why, size_t ws)
{
	uint32_t bit = pick_anon_bit(item, n);

	if (!bit) {
		snprintf(why, ws, "anon: '%.*s' is not one of elite, anonymous, transparent",
			 (int)(n > 40 ? 40 : n), item);
		return -EINVAL;
	}
	u->filter.anons |= bit;
	return 0;
}

/* A source name as the config takes it: 1..64 of [A-Za-z0-9._-]. */
static int gw_one_source(struct gw_user *u, const char *item, size_t n, char *why, size_t ws)
{
	uint32_t k = u->filter.nsources;

	if (!pick_source_name_valid(item, n)) {
		snprintf(why, ws, "source: '%.*s' is not a source name", (int)(n > 40 ? 40 : n),
			 item);
		return -EINVAL;
	}
	for (uint32_t j = 0; j < k; j++)
		if (strlen(u->sources[j]) == n && memcmp(u->sources[j], item, n) == 0)
			return 0;
	if (k == PICK_SOURCES_MAX) {
		snprintf(why, ws, "source: more than %d names", PICK_SOURCES_MAX);
		return -EINVAL;
	}
	memcpy(u->sources[k], item, n);
	u->sources[k][n] = '\0';
	u->filter.sources[k] = u->sources[k];
	u->filter.nsources = k + 1;
	return 0;
}

/* A country code (either case) or "unknown", as country= takes it. */
static int gw_one_country(struct gw_user *u, const char *item, size_t n, char *why, size_t ws)
{
	int rc = pick_filter_add_country(&u->filter, item, n);

	if (rc == -E2BIG)
		snprintf(why, ws, "country: more than %d codes", PICK_COUNTRIES_MAX);
	else if (rc < 0)
		snprintf(why, ws, "country: '%.*s' is not a two-letter country code nor unknown",
			 (int)(n > 40 ? 40 : n), item);
	return rc < 0 ? -EINVAL : 0;
}

typedef int (*gw_item_fn)(struct gw_user *u, const char *item, size_t n, char *why, size_t ws);

/* A comma list of words, each handed to one. */
static int gw_each_item(struct gw_user *u, const char *v, size_t n, gw_item_fn one, char *why,
			size_t ws)
{
	const char *end = v + n;

	for (;;) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *e = comma ? comma : end;
		int rc;

		if (e == v) {
			snprintf(why, ws, "an empty item in a comma list");
			return -EINVAL;
		}
		rc = one(u, v, (size_t)(e - v), why, ws);
		if (rc < 0 || !comma)
			return rc;
		v = comma + 1;
	}
}

static int gw_set_session(struct gw_user *u, const char *v, size_t n, char *why, size_t ws)
{
	if (u->session_len) {
		snprintf(why, ws, "session given twice");
		return -EINVAL;
	}
	if (!session_key_valid(v, n)) {
		snprintf(why, ws,
			 "session: '%.*s' is not a session key (1 to %d of A-Z a-z 0-9 . _ -)",
			 (int)(n > 40 ? 40 : n), v, SESSION_KEY_MAX);
		return -EINVAL;
	}
	memcpy(u->session, v, n);
	u->session[n] = '\0';
	u->session_len = n;
	return 0;
}

/* The value v (n bytes) of option opt. */
static int gw_set_opt(struct gw_user *u, enum gw_opt opt, const char *v, size_t n, char *why,
		      size_t ws)
{
	if (n == 0) {
		snprintf(why, ws, "%s: no value", gw_opt_words[opt]);
		return -EINVAL;
	}
	switch (opt) {
	case GW_OPT_SESSION:
		return gw_set_session(u, v, n, why, ws);
	case GW_OPT_PROTO:
		return gw_each_item(u, v, n, gw_one_proto, why, ws);
	case GW_OPT_ANON:
		return gw_each_item(u, v, n, gw_one_anon, why, ws);
	case GW_OPT_SOURCE:
		return gw_each_item(u, v, n, gw_one_source, why, ws);
	case GW_OPT_COUNTRY:
		return gw_each_item(u, v, n, gw_one_country, why, ws);
	case GW_OPT_NONE:
		break;
	}
	return -EINVAL;
}

/* Every byte printable (no control byte, no NUL, no DEL). */
static bool gw_printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

int gw_user_parse(const char *user, size_t len, struct gw_user *out, char *why, size_t why_size)
{
	const char *end = user + len, *kw, *kw_end, *next, *next_end;
	enum gw_opt opt, next_opt;
	size_t name_len;
	int rc;

	memset(out, 0, sizeof(*out));
	if (why_size)
		why[0] = '\0';
	if (len == 0)
		return 0;
	if (len > GW_USER_LINE_MAX) {
		snprintf(why, why_size, "user name over %d bytes", GW_USER_LINE_MAX);
		return -EINVAL;
	}
	if (!gw_printable(user, len)) {
		snprintf(why, why_size, "user name holds a control byte");
		return -EINVAL;
	}
	kw = gw_next_opt(user, end, &opt, &kw_end);
	/* The name ends before the '-' that leads to the first keyword. */
	name_len = kw > user ? (size_t)(kw - user) - (kw < end ? 1 : 0) : 0;
	if (name_len > GW_USER_MAX) {
		snprintf(why, why_size, "user name over %d bytes", GW_USER_MAX);
		return -EINVAL;
	}
	memcpy(out->name, user, name_len);
	out->name[name_len] = '\0';
	while (opt != GW_OPT_NONE) {
		const char *v = kw_end < end ? kw_end + 1 : end;
		const char *v_end;

		next = gw_next_opt(v, end, &next_opt, &next_end);
		/* The value stops before the '-' of the next keyword. */
		v_end = next < end ? next - 1 : end;
		if (v_end < v)
			v_end = v;
		rc = gw_set_opt(out, opt, v, (size_t)(v_end - v), why, why_size);
		if (rc < 0) {
			memset(&out->filter, 0, sizeof(out->filter));
			return rc;
		}
		opt = next_opt;
		kw_end = next_end;
	}
	return 0;
}

/* --- the password check --- */

struct gw_auth {
	size_t n;
	/* Per pair: SHA-256 of the user's length (4 bytes, big-endian), the
	 * user and the password, so "a:b" + "c" and "a" + "b:c" differ. */
	unsigned char (*digest)[GW_DIGEST_LEN];
};

static int gw_digest(const char *user, size_t ulen, const char *pass, size_t plen,
		     unsigned char out[GW_DIGEST_LEN])
{
	unsigned char head[4] = {(unsigned char)(ulen >> 24), (unsigned char)(ulen >> 16),
				 (unsigned char)(ulen >> 8), (unsigned char)ulen};
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, head, 4) &&
	     EVP_DigestUpdate(ctx, user, ulen) && EVP_DigestUpdate(ctx, pass, plen) &&
	     EVP_DigestFinal_ex(ctx, out, &n) && n == GW_DIGEST_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -ENOMEM;
}

/* Is user (n bytes) a name gw_user_parse gives back as itself? */
static bool gw_plain_name(const char *user, size_t n)
{
	struct gw_user *u = malloc(sizeof(*u));
	char why[8];
	bool ok;

	if (!u)
		return false;
	ok = gw_user_parse(user, n, u, why, sizeof(why)) == 0 && strlen(u->name) == n &&
	     !u->session_len && !u->filter.protos && !u->filter.anons && !u->filter.nsources &&
	     !u->filter.ncountries;
	free(u);
	return ok;
}

struct gw_auth *gw_auth_new(char *const *pairs, size_t n, char *err, size_t errlen)
{
	struct gw_auth *a = calloc(1, sizeof(*a));

	if (errlen)
		err[0] = '\0';
	if (!a)
		goto out_nomem;
	a->digest = n ? calloc(n, sizeof(*a->digest)) : NULL;
	if (n && !a->digest)
		goto out_nomem;
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(pairs[i], ':');
		size_t ulen = colon ? (size_t)(colon - pairs[i]) : 0;

		if (!colon || ulen == 0) {
			snprintf(err, errlen, "pair %zu: not user:pass", i + 1);
			goto out_free;
		}
		if (ulen > GW_USER_MAX || !gw_plain_name(pairs[i], ulen)) {
			snprintf(err, errlen,
				 "user '%.*s': not a plain user name (at most %d bytes, printable, "
				 "no -session-, -proto-, -anon-, -source-, -country- part)",
				 (int)(ulen > 40 ? 40 : ulen), pairs[i], GW_USER_MAX);
			goto out_free;
		}
		if (gw_digest(pairs[i], ulen, colon + 1, strlen(colon + 1), a->digest[i]) < 0)
			goto out_nomem;
		a->n = i + 1;
	}
	a->n = n;
	return a;

out_nomem:
	snprintf(err, errlen, "out of memory");
out_free:
	gw_auth_free(a);
	return NULL;
}

void gw_auth_free(struct gw_auth *a)
{
	if (!a)
		return;
	if (a->digest)
		OPENSSL_cleanse(a->digest, a->n * sizeof(*a->digest));
	free(a->digest);
	free(a);
}

bool gw_auth_check(const struct gw_auth *a, const char *user, const char *pass, size_t plen)
{
	unsigned char d[GW_DIGEST_LEN];
	unsigned int match = 0;

	if (!a || a->n == 0)
		return true;
	if (gw_digest(user, strlen(user), pass, plen, d) < 0)
		return false;
	/* Every pair is compared, whichever matched. */
	for (size_t i = 0; i < a->n; i++)
		match |= (unsigned int)(CRYPTO_memcmp(d, a->digest[i], GW_DIGEST_LEN) == 0);
	OPENSSL_cleanse(d, sizeof(d));
	return match != 0;
}
