/* listen: a front's listening socket; see listen.h. */
#include "listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"

int listen_open(const char *addr, const char *what, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned int len;
	const char *why;
	int fd, rc, one = 1;

	if (cfg_parse_listen(addr, &ss, &len, &why) < 0) {
		snprintf(err, errlen, "%s listen %s: %s", what, addr, why);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_error;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
		goto out_close;
	return fd;
out_close:
	rc = errno;
	close(fd);
	errno = rc;
out_error:
	rc = errno;
	snprintf(err, errlen, "%s listen %s: %s", what, addr, strerror(rc));
	return -rc;
}
