/* judge: the URL every check fetches, parsed and prepared once.
 *
 * Parses http[s]://host[:port][/path], takes the host's address when it is
 * one (a name is looked up by the caller, off the loop), and builds the two
 * requests every check sends: the absolute-URI form for a plain HTTP proxy
 * and the origin form for a tunnel, up to the Host line (each check adds
 * its own: the User-Agent with its token). For an https
 * judge it also builds the one TLS client context every check shares, and
 * makes each check's TLS client: verified certificate chain and host name,
 * and a socket BIO of our own that sends with MSG_NOSIGNAL, since OpenSSL's
 * would raise SIGPIPE on a proxy that closed. Also says which errnos are our
 * own side's fault. Does not fetch
 * anything and drives no TLS handshake: the checks do.
 */
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "http_answer.h"

/* Longer expected texts are refused: the KMP table is 4 bytes a character. */
#define JUDGE_EXPECT_MAX 4096

bool chk_errno_is_local(int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
	case EADDRNOTAVAIL:
	case ENOBUFS:
	case ENOMEM:
	case EAGAIN:
		return true;
	default:
		return false;
	}
}

__attribute__((format(printf, 4, 5))) static int judge_fail(char *err, size_t errlen, int ret,
							    const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static bool judge_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

/* Host and optional port from the authority part [s, end). */
static int judge_parse_authority(struct chk_judge *j, const char *s, const char *end, char *err,
				 size_t errlen)
{
	const char *host = s, *hend, *p;
	unsigned long port = j->tls ? 443 : 80;
	struct in6_addr a6;

	if (memchr(s, '@', (size_t)(end - s)))
		return judge_fail(err, errlen, -EINVAL,
				  "credentials in a judge URL are not supported");
	if (*s == '[') {
		host = s + 1;
		hend = memchr(host, ']', (size_t)(end - host));
		if (!hend)
			return judge_fail(err, errlen, -EINVAL, "unclosed [ in the judge's host");
		p = hend + 1;
	} else {
		for (hend = s; hend < end && judge_host_char(*hend); hend++)
			;
		p = hend;
	}
	if (hend == host || hend - host > (ptrdiff_t)sizeof(j->host) - 1)
		return judge_fail(err, errlen, -EINVAL, "bad host in the judge URL");
	memcpy(j->host, host, (size_t)(hend - host));
	j->host[hend - host] = '\0';
	if (*s == '[' && inet_pton(AF_INET6, j->host, &a6) != 1)
		return judge_fail(err, errlen, -EINVAL, "bad IPv6 address in the judge URL");
	if (p < end && *p == ':') {
		port = 0;
		for (p++; p < end && *p >= '0' && *p <= '9' && port <= 65535; p++)
			port = port * 10 + (unsigned long)(*p - '0');
		if (port == 0 || port > 65535 || p[-1] == ':')
			return judge_fail(err, errlen, -EINVAL, "bad port in the judge URL");
	}
	if (p != end)
		return judge_fail(err, errlen, -EINVAL, "bad host or port in the judge URL");
	j->port = (uint16_t)port;
	return 0;
}

/* The path with its query, without any fragment; "/" when empty. */
static int judge_parse_path(struct chk_judge *j, const char *s, char *err, size_t errlen)
{
	size_t len = strcspn(s, "#");
	const char *lead = *s == '/' ? "" : "/";

	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return judge_fail(err, errlen, -EINVAL,
					  "space or control character in the judge's path");
	}
	if (asprintf(&j->path, "%s%.*s", lead, (int)len, s) < 0) {
		j->path = NULL;
		return judge_fail(err, errlen, -ENOMEM, "out of memory");
	}
	return 0;
}

static int judge_parse_url(struct chk_judge *j, const char *url, char *err, size_t errlen)
{
	static const char http[] = "http://", https[] = "https://";
	const char *auth, *end;
	int ret;

	if (strncasecmp(url, https, sizeof(https) - 1) == 0) {
		j->tls = true;
		auth = url + sizeof(https) - 1;
	} else if (strncasecmp(url, http, sizeof(http) - 1) == 0) {
		auth = url + sizeof(http) - 1;
	} else {
		return judge_fail(err, errlen, -EINVAL,
				  "judge URL must start with http:// or https://");
	}
	end = auth + strcspn(auth, "/?#");
	ret = judge_parse_authority(j, auth, end, err, errlen);
	if (ret)
		return ret;
	return judge_parse_path(j, end, err, errlen);
}

/* An address given as such is taken at once; a name is left to the
 * caller's lookup (chk_judge_set_addr), since looking it up may block. */
static void judge_numeric_addr(struct chk_judge *j)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res;

	if (getaddrinfo(j->host, NULL, &hints, &res) != 0)
		return;
	chk_judge_set_addr(j, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
}

void chk_judge_set_addr(struct chk_judge *j, const struct sockaddr *sa, socklen_t len)
{
	if (len > sizeof(j->addr) || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return;
	memcpy(&j->addr, sa, len);
	j->addrlen = len;
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)&j->addr)->sin_port = htons(j->port);
	else
		((struct sockaddr_in6 *)&j->addr)->sin6_port = htons(j->port);
	j->have_addr = true;
}

/* The fixed start of both requests; check.c adds each check's own lines. */
static int judge_build_requests(struct chk_judge *j)
{
	bool v6 = strchr(j->host, ':') != NULL;
	char authority[sizeof(j->host) + 8];
	int n;

	snprintf(authority, sizeof(authority), "%s%s%s", v6 ? "[" : "", j->host, v6 ? "]" : "");
	if (j->port != (j->tls ? 443 : 80)) {
		size_t len = strlen(authority);

		snprintf(authority + len, sizeof(authority) - len, ":%u", j->port);
	}
	n = asprintf(&j->req_absolute, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\n", authority,
		     j->path, authority);
	if (n < 0) {
		j->req_absolute = NULL;
		return -ENOMEM;
	}
	j->req_absolute_len = (size_t)n;
	n = asprintf(&j->req_origin, "GET %s HTTP/1.1\r\nHost: %s\r\n", j->path, authority);
	if (n < 0) {
		j->req_origin = NULL;
		return -ENOMEM;
	}
	j->req_origin_len = (size_t)n;
	return 0;
}

static int judge_set_expect(struct chk_judge *j, const char *expect, char *err, size_t errlen)
{
	j->expect_len = expect ? strlen(expect) : 0;
	if (j->expect_len > JUDGE_EXPECT_MAX)
		return judge_fail(err, errlen, -EINVAL, "expected text longer than %d bytes",
				  JUDGE_EXPECT_MAX);
	j->expect = strdup(expect ? expect : "");
	j->expect_kmp = calloc(j->expect_len ? j->expect_len : 1, sizeof(*j->expect_kmp));
	if (!j->expect || !j->expect_kmp)
		return judge_fail(err, errlen, -ENOMEM, "out of memory");
	chk_kmp_build(j->expect, j->expect_len, j->expect_kmp);
	j->echo_suffices = strcmp(j->expect, CHK_EXPECT_DEFAULT) == 0;
	return 0;
}

/* ---- TLS: the shared context, and one client per check ---- */

/* The socket BIO's data is the descriptor, stored as a pointer. */
static int judge_bio_fd(BIO *b)
{
	return (int)(intptr_t)BIO_get_data(b);
}

static int judge_bio_write(BIO *b, const char *buf, size_t n, size_t *done)
{
	ssize_t w = send(judge_bio_fd(b), buf, n, MSG_NOSIGNAL);

	BIO_clear_retry_flags(b);
	if (w < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		return 0;
	}
	*done = (size_t)w;
	return 1;
}

/* A close by the peer is remembered for BIO_CTRL_EOF, as OpenSSL's own
 * socket BIO does, so that OpenSSL reports an unexpected EOF as such. */
static int judge_bio_read(BIO *b, char *buf, size_t n, size_t *done)
{
	ssize_t r = recv(judge_bio_fd(b), buf, n, 0);

	BIO_clear_retry_flags(b);
	if (r > 0) {
		*done = (size_t)r;
		return 1;
	}
	if (r == 0)
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);
	else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		BIO_set_retry_read(b);
	return 0;
}

static long judge_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	default:
		return 0;
	}
}

static int judge_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *judge_bio_method_new(void)
{
	int type = BIO_get_new_index();
	BIO_METHOD *m;

	if (type < 0)
		return NULL;
	m = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "proxyfs check socket");
	if (!m)
		return NULL;
	if (!BIO_meth_set_write_ex(m, judge_bio_write) ||
	    !BIO_meth_set_read_ex(m, judge_bio_read) || !BIO_meth_set_ctrl(m, judge_bio_ctrl) ||
	    !BIO_meth_set_create(m, judge_bio_create)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/* OpenSSL's reason for the last failure, and an empty error queue. */
static const char *judge_tls_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());

	ERR_clear_error();
	return r ? r : "unknown error";
}

static int judge_tls_init(struct chk_judge *j, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	j->tls_ctx = ctx;
	j->tls_bio = judge_bio_method_new();
	if (!ctx || !j->tls_bio)
		return judge_fail(err, errlen, -ENOMEM, "cannot set up TLS: %s",
				  judge_tls_reason());
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		return judge_fail(err, errlen, -EINVAL, "cannot require TLS 1.2: %s",
				  judge_tls_reason());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* No trust store at all is not an error: a CA file may come next. */
	if (!SSL_CTX_set_default_verify_paths(ctx))
		ERR_clear_error();
	return 0;
}

int chk_judge_set_ca(struct chk_judge *j, const char *ca_file, char *err, size_t errlen)
{
	if (!j->tls || !ca_file || !ca_file[0])
		return 0;
	if (access(ca_file, R_OK) < 0)
		return judge_fail(err, errlen, -EINVAL, "cannot read CA file %s: %s", ca_file,
				  strerror(errno));
	if (!SSL_CTX_load_verify_locations(j->tls_ctx, ca_file, NULL))
		return judge_fail(err, errlen, -EINVAL, "cannot load CA file %s: %s", ca_file,
				  judge_tls_reason());
	return 0;
}

/* SNI and the name to verify for a host name; for an address literal no
 * SNI (RFC 6066 allows none) and the address checked against the
 * certificate's IP entries. */
static int judge_tls_peer(const struct chk_judge *j, SSL *ssl)
{
	struct in6_addr a;
	bool ok;

	if (inet_pton(AF_INET, j->host, &a) == 1 || inet_pton(AF_INET6, j->host, &a) == 1) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), j->host) == 1;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok =
		    SSL_set_tlsext_host_name(ssl, j->host) == 1 && SSL_set1_host(ssl, j->host) == 1;
	}
	return ok ? 0 : -ENOMEM;
}

SSL *chk_judge_tls_new(const struct chk_judge *j, int fd)
{
	SSL *ssl = SSL_new(j->tls_ctx);
	BIO *bio;

	if (!ssl)
		goto out_err;
	bio = BIO_new(j->tls_bio);
	if (!bio)
		goto out_free_ssl;
	BIO_set_data(bio, (void *)(intptr_t)fd);
	SSL_set_bio(ssl, bio, bio);
	if (judge_tls_peer(j, ssl) < 0)
		goto out_free_ssl;
	SSL_set_connect_state(ssl);
	return ssl;

out_free_ssl:
	SSL_free(ssl);
out_err:
	ERR_clear_error();
	return NULL;
}

int chk_judge_init(struct chk_judge *j, const char *url, const char *expect, char *err,
		   size_t errlen)
{
	int ret;

	memset(j, 0, sizeof(*j));
	ret = judge_parse_url(j, url, err, errlen);
	if (ret)
		goto out_free;
	ret = judge_set_expect(j, expect, err, errlen);
	if (ret)
		goto out_free;
	judge_numeric_addr(j);
	ret = judge_build_requests(j);
	if (ret) {
		judge_fail(err, errlen, ret, "out of memory");
		goto out_free;
	}
	if (j->tls) {
		ret = judge_tls_init(j, err, errlen);
		if (ret)
			goto out_free;
	}
	return 0;

out_free:
	chk_judge_free(j);
	return ret;
}

void chk_judge_free(struct chk_judge *j)
{
	SSL_CTX_free(j->tls_ctx);
	BIO_meth_free(j->tls_bio);
	free(j->path);
	free(j->expect);
	free(j->expect_kmp);
	free(j->req_absolute);
	free(j->req_origin);
	memset(j, 0, sizeof(*j));
}
