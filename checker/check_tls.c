/* check_tls: TLS to an https judge through the tunnel (see check.c): the
 * handshake, the request and the answer, driven by the check's event. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "check_int.h"

/* A TLS call returned r <= 0 (err: errno right after it): wait for the
 * socket as OpenSSL asks, or end the check. A close_notify is a clean
 * EOF; a socket error is the connection's; anything else (alert, bad or
 * unverified certificate, wrong host, garbage, EOF without close_notify)
 * is a TLS failure. */
static void chk_tls_handle(struct chk *c, int r, int err)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ: /* its BIO found the socket empty */
		c->state = CHK_ST_READING;
		c->ready &= (uint8_t)~CHK_CAN_READ;
		return;
	case SSL_ERROR_WANT_WRITE:
		c->state = CHK_ST_SENDING;
		c->ready &= (uint8_t)~CHK_CAN_WRITE;
		return;
	case SSL_ERROR_ZERO_RETURN:
		chk_eof(c);
		break;
	case SSL_ERROR_SYSCALL:
		if (err)
			chk_end_errno(c, err);
		else
			chk_end(c, CHK_TLS_ERR, 0);
		break;
	default:
		chk_end(c, CHK_TLS_ERR, 0);
		break;
	}
	ERR_clear_error();
}

/* Each TLS call starts with an empty error queue, as SSL_get_error needs. */
static void chk_tls_prepare(void)
{
	ERR_clear_error();
	errno = 0;
}

/* True once the handshake is done and the judge's request is set to go. */
static bool chk_tls_handshake(struct chk *c)
{
	int r;

	chk_tls_prepare();
	r = SSL_connect(c->ssl);
	if (r != 1) {
		chk_tls_handle(c, r, errno);
		return false;
	}
	chk_begin_answer(c);
	return true;
}

/* True once the whole request is written. A retry passes the same bytes,
 * as SSL_write wants. */
static bool chk_tls_write(struct chk *c)
{
	while (c->out_off < c->out_len) {
		size_t n;
		int r;

		chk_tls_prepare();
		r = SSL_write_ex(c->ssl, c->out + c->out_off, c->out_len - c->out_off, &n);
		if (r != 1) {
			chk_tls_handle(c, r, errno);
			return false;
		}
		c->out_off += (uint32_t)n;
	}
	c->state = CHK_ST_READING;
	c->wait_ns = chk_now_ns();
	return true;
}

/* Reads until OpenSSL has nothing more: decrypted bytes may be waiting in
 * it while the socket is quiet, and no event would come for those. */
static void chk_tls_read(struct chk *c)
{
	uint8_t buf[CHK_READ_CHUNK];

	while (c->state != CHK_ST_DONE) {
		size_t n;
		int r;

		chk_tls_prepare();
		r = SSL_read_ex(c->ssl, buf, sizeof(buf), &n);
		if (r != 1) {
			chk_tls_handle(c, r, errno);
			return;
		}
		chk_consume_answer(c, buf, n);
	}
}

/* Drives TLS as far as it goes now: handshake, request, answer. */
void chk_tls_io(struct chk *c)
{
	if (c->state == CHK_ST_DONE)
		return;
	if (c->phase == CHK_PH_TLS && !chk_tls_handshake(c))
		return;
	if (c->out_off < c->out_len && !chk_tls_write(c))
		return;
	chk_tls_read(c);
}
