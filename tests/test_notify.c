/* test_notify: the sd_notify protocol as a service manager receives it.
 *
 * Plays systemd: binds a datagram socket (a path, then an abstract name),
 * names it in NOTIFY_SOCKET and reads what notify_send puts there; and
 * checks the STATUS= summary of a hand-made snapshot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "snapshot.h"
#include "testutil.h"

/* Binds a datagram socket to name (a leading '@': abstract), with a
 * receive deadline so a missing message fails instead of hanging. */
static int listen_on(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	memcpy(a.sun_path, name, len);
	if (name[0] == '@')
		a.sun_path[0] = '\0';
	else
		len++;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void check_roundtrip(const char *name)
{
	char buf[128];
	ssize_t n;
	int fd = listen_on(name);

	CHECK(fd >= 0);
	setenv("NOTIFY_SOCKET", name, 1);
	CHECK_INT(notify_init(), 0);
	CHECK(getenv("NOTIFY_SOCKET") == NULL); /* not passed on to children */
	CHECK_INT(notify_send("READY=1\nSTATUS=x"), 0);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	CHECK_INT(n, 16);
	buf[n > 0 ? n : 0] = '\0';
	CHECK_STR(buf, "READY=1\nSTATUS=x");
	notify_fini();
	close(fd);
}

static void test_socket(void)
{
	char path[] = "/tmp/proxyfs-notify-XXXXXX";
	char name[128];

	CHECK(mkdtemp(path) != NULL);
	snprintf(name, sizeof(name), "%s/notify", path);
	check_roundtrip(name);
	unlink(name);
	rmdir(path);
	snprintf(name, sizeof(name), "@proxyfs-test-notify-%d", (int)getpid());
	check_roundtrip(name);
}

static void test_unset_or_unusable(void)
{
	unsetenv("NOTIFY_SOCKET");
	CHECK_INT(notify_init(), 0);
	CHECK_INT(notify_send("READY=1"), 0); /* nothing to tell: a no-op */
	notify_fini();
	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	CHECK_INT(notify_init(), -EAFNOSUPPORT);
	CHECK_INT(notify_send("READY=1"), 0);
	notify_fini();
}

static void test_status_text(void)
{
	struct snapshot s;
	char buf[256];

	memset(&s, 0, sizeof(s));
	s.stats.alive = 12;
	s.stats.total = 40;
	s.stats.dead = 20;
	s.stats.unknown = 8;
	s.stats.removed = 1;
	s.stats.health = "ok";
	notify_status_text(&s, buf, sizeof(buf));
	CHECK_STR(buf, "12 alive of 40 (20 dead, 8 unknown, 1 removed); ok");
	s.stats.scan_running = true;
	s.stats.scan_checked = 30;
	s.stats.scan_total = 40;
	s.stats.health = "degraded: no judge reachable";
	notify_status_text(&s, buf, sizeof(buf));
	CHECK_STR(buf, "12 alive of 40 (20 dead, 8 unknown, 1 removed); scan 30/40; "
		       "degraded: no judge reachable");
	notify_status_text(&s, buf, 10); /* cut, still a string */
	CHECK_INT(strlen(buf), 9);
}

int main(void)
{
	test_socket();
	test_unset_or_unusable();
	test_status_text();
	return test_exit_code();
}
