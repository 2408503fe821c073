"""Fixtures for the integration suite: the proxy peers, configs, and a
proxyfs daemon mounted in the foreground.

The daemon is run as `proxyfs -f -c CONF MOUNTPOINT` (PROXYFS_BIN, default
build/proxyfs), counted ready when os.path.ismount() holds for the
mountpoint (false for a stale mount left by a killed daemon), and stopped
with SIGTERM, which must unmount and exit 0. Daemons made with
background=True run as users run them, without -f: ready when the command
returns 0. Whatever happens, teardown leaves no mount and no
process behind: SIGKILL and `fusermount3 -uz`.

Every operation on the mount runs in a helper thread with a deadline, so a
hung daemon fails one test instead of hanging the suite; the teardown's
SIGKILL and lazy unmount release the stuck thread.
"""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

import peers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# An ASan build of the daemon reports leaks at exit; libfuse's own (see the
# file) are not ours to fail on.
os.environ.setdefault("LSAN_OPTIONS", "suppressions=%s" % os.path.join(REPO, "tests", "lsan.supp"))
# Geo databases on the machine (/usr/share/GeoIP, what fetch-geo-db.sh
# installed) must not leak into any test: the daemons search no default
# place unless a test names its own (tests/integration/test_geo.py).
os.environ.setdefault("PROXYFS_GEO_DIRS", "")
FS_TIMEOUT = 30.0   # one filesystem call (a sync rescan included)
MOUNT_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0


def proxyfs_bin():
    path = os.environ.get("PROXYFS_BIN", "build/proxyfs")
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    return path


@pytest.fixture(scope="session")
def binary():
    path = proxyfs_bin()
    if not os.access(path, os.X_OK):
        pytest.fail("proxyfs binary %s not found (build it, or set PROXYFS_BIN)" % path)
    return path


# --- mounts ---

def _unescape_mountinfo(field):
    return (field.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def mount_ids(path):
    """The mount IDs of the mounts on path, from /proc/self/mountinfo
    (never blocks, even on a hung or dead FUSE daemon)."""
    path = os.path.realpath(path)
    ids = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == path:
                ids.add(int(fields[0]))
    return ids


def is_mounted(path):
    return bool(mount_ids(path))


def lazy_unmount(path):
    subprocess.run(["fusermount3", "-uz", path], capture_output=True, timeout=10)


def call_with_deadline(fn, timeout=FS_TIMEOUT, what="filesystem call"):
    """Runs fn() in a daemon thread; returns its value or raises its
    exception; fails the test if it has not returned within timeout."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail("%s did not return within %.0fs (daemon hung?)" % (what, timeout))
    if "error" in box:
        raise box["error"]
    return box.get("value")


def wait_until(pred, timeout, what, interval=0.05):
    """Polls pred() until it is truthy and returns that; fails the test at
    the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def config_db(conf):
    """The [proxyfs] db path a config file names."""
    with open(conf) as f:
        for line in f:
            key, _, value = line.partition("=")
            if key.strip() == "db":
                return value.strip()
    raise AssertionError("no db = in %s" % conf)


def pid_alive(pid):
    """pid exists and has not exited (a zombie has exited: the background
    daemon's parent is init, which reaps when it likes)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Daemon:
    """One proxyfs process and its mount.

    In the foreground (-f) it is our child. In the background (no -f, what
    users run) the command returns once the daemon is mounted and serving,
    and the daemon's pid comes from the database's lock file (DB.lock)."""

    def __init__(self, binary, conf, mnt, logpath, background=False):
        self.binary = binary
        self.conf = conf
        self.mnt = mnt
        self.logpath = logpath
        self.background = background
        self.proc = None
        self.pid = None  # the background daemon's

    # life cycle

    def start(self, extra_args=()):
        if not is_mounted(self.mnt):
            os.makedirs(self.mnt, exist_ok=True)
        if self.background:
            return self._start_background(extra_args)
        log = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "-f", "-c", self.conf, *extra_args, self.mnt],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not self._serving(deadline):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                pytest.fail("proxyfs exited with %s before mounting; log:\n%s" % (rc, self.log()))
            if time.monotonic() >= deadline:
                self.kill()
                pytest.fail("proxyfs did not mount within %.0fs; log:\n%s"
                            % (MOUNT_TIMEOUT, self.log()))
            time.sleep(0.01)
        return self

    def _start_background(self, extra_args):
        """The command's exit is the readiness signal: 0 only once mounted."""
        with open(self.logpath, "ab") as log:
            p = subprocess.run([self.binary, "-c", self.conf, *extra_args, self.mnt],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               timeout=MOUNT_TIMEOUT)
        if p.returncode != 0:
            pytest.fail("proxyfs exited with %s; log:\n%s" % (p.returncode, self.log()))
        assert is_mounted(self.mnt), "proxyfs returned 0 before its mount was there"
        assert call_with_deadline(lambda: os.path.ismount(self.mnt), what="lstat of the mount")
        with open(config_db(self.conf) + ".lock") as f:
            self.pid = int(f.read().split(",")[0])
        assert pid_alive(self.pid), "no daemon behind the mount"
        return self

    def wait_gone(self, timeout):
        """Waits for the background daemon to exit; False if it has not."""
        deadline = time.monotonic() + timeout
        while pid_alive(self.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def send_signal(self, sig):
        if self.background:
            os.kill(self.pid, sig)
        else:
            self.proc.send_signal(sig)

    def _stop_background(self, sig):
        self.send_signal(sig)
        gone = self.wait_gone(EXIT_TIMEOUT)
        if not gone:
            self.kill()
            pytest.fail("proxyfs did not exit within %.0fs of signal %d" % (EXIT_TIMEOUT, sig))
        self.pid = None
        still = is_mounted(self.mnt)
        if still:
            lazy_unmount(self.mnt)
        assert not still, "mount still there after proxyfs exited"

    def _serving(self, deadline):
        """A mount is on the path and answers: os.path.ismount is false for
        a stale mount (its lstat fails with ENOTCONN) and for the bare
        directory. It is called only once mountinfo shows a mount, and in a
        thread, since lstat blocks until the daemon serves."""
        if not is_mounted(self.mnt):
            return False
        return call_with_deadline(lambda: os.path.ismount(self.mnt),
                                  timeout=max(deadline - time.monotonic(), 0.1),
                                  what="lstat of the new mount")

    def stop(self, sig=signal.SIGTERM):
        """Sends sig (SIGTERM); requires exit status 0 (in the foreground,
        where it can be seen) and the mount gone."""
        if self.background:
            assert self.pid is not None, "daemon not running"
            return self._stop_background(sig)
        assert self.proc is not None, "daemon not running"
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("proxyfs did not exit within %.0fs of signal %d; log:\n%s"
                        % (EXIT_TIMEOUT, sig, self.log()))
        self.proc = None
        still = is_mounted(self.mnt)
        if still:
            lazy_unmount(self.mnt)
        assert rc == 0, "proxyfs exited with %s after signal %d; log:\n%s" % (rc, sig, self.log())
        assert not still, "mount still there after proxyfs exited"

    def kill(self, unmount=True):
        """SIGKILL (if running), and a lazy unmount unless told not to."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)
            self.proc = None
        if self.pid is not None:
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            assert self.wait_gone(EXIT_TIMEOUT), "pid %d survived SIGKILL" % self.pid
            self.pid = None
        # Stacked mounts (a daemon that mounted over a stale one) take one
        # unmount each.
        for _ in range(5 if unmount else 0):
            if not is_mounted(self.mnt):
                break
            lazy_unmount(self.mnt)

    def running(self):
        if self.background:
            return self.pid is not None and pid_alive(self.pid)
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-6000:].decode(errors="replace")
        except OSError:
            return ""

    # the files

    def path(self, rel):
        return os.path.join(self.mnt, rel)

    def read(self, rel):
        def run():
            with open(self.path(rel), "rb") as f:
                return f.read()
        return call_with_deadline(run, what="reading " + rel)

    def read_text(self, rel):
        return self.read(rel).decode()

    def read_lines(self, rel):
        return self.read_text(rel).splitlines()

    def read_json(self, rel):
        return json.loads(self.read(rel))

    def stat(self, rel):
        return call_with_deadline(lambda: os.stat(self.path(rel)), what="stat " + rel)

    def listdir(self, rel=""):
        return call_with_deadline(lambda: os.listdir(self.path(rel)), what="listing " + rel)

    def write(self, rel, data, timeout=FS_TIMEOUT):
        """One open/write/close, as `echo data > file` does; errors raise OSError."""
        def run():
            fd = os.open(self.path(rel), os.O_WRONLY)
            try:
                n = os.write(fd, data.encode() if isinstance(data, str) else data)
            finally:
                os.close(fd)
            return n
        return call_with_deadline(run, timeout=timeout, what="writing %r to %s" % (data, rel))

    def sync(self):
        """`echo sync > control/reload`: returns once the rescan is published."""
        self.write("control/reload", "sync\n")

    def live(self, rel="live.txt"):
        return set(self.read_lines(rel))


def write_config(tmp, judge, list_path, name="proxyfs.ini", extra="", edits=()):
    """The config every test starts from; extra is appended as is, and each
    (old, new) of edits replaces a line of the usual text."""
    conf = os.path.join(tmp, name)
    text = _usual_config(tmp, judge, list_path)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    with open(conf, "w") as f:
        f.write(text)
        f.write(extra)
    return conf


def concurrency_max_with(mounts, tmp, judge, extra):
    """The checks' concurrency_max of a daemon asked for as many as can be,
    with extra (config text) appended: what the open-file clamp leaves."""
    conf = write_config(tmp, judge, write_list(tmp, ""), extra=extra,
                        edits=[("concurrency = 100\n", "concurrency = 1000000\n")])
    d = mounts.new(conf).start()
    got = d.read_json("stat.json")["engine"]["concurrency_max"]
    d.stop()
    return got


def _usual_config(tmp, judge, list_path):
    return ("[proxyfs]\n"
            "db = %s\n"
            "log_level = debug\n"
            "\n"
            "[check]\n"
            "judge = http://%s:%d/\n"
            "expect = %s\n"
            "timeout_ms = 2000\n"
            "connect_timeout_ms = 1000\n"
            "concurrency = 100\n"
            "interval_s = 3600\n"
            "\n"
            "[source:local]\n"
            "url = %s\n"
            "protocol = http\n"
            % (os.path.join(tmp, "proxyfs.db"), judge.host, judge.port, peers.JUDGE_TOKEN,
               list_path))


# --- the peers ---

class PeerSet:
    """The judge, the good proxies and the bad ones, started and self-checked.

    good: proxies the judge answers through (their uri is what live.txt
    must list). bad: a closed port, a blackhole, a liar, and microsocks with
    the wrong password. extra: a good proxy not in the list (for control/add).
    """

    LIST_INVALID = 2  # malformed lines in list_text()

    def __init__(self, tmp):
        os.makedirs(tmp, exist_ok=True)
        self.tmp = tmp
        self.all = []
        try:
            self.judge = self._keep(peers.start_script_peer("judge", tmp, "127.0.0.1"))
            self.judge_url = "http://%s:%d/" % (self.judge.host, self.judge.port)
            self.tinyproxy = self._keep(peers.start_tinyproxy(tmp, "127.0.0.21"))
            self.socks5 = self._keep(peers.start_microsocks(tmp, "127.0.0.22"))
            self.socks5_auth = self._keep(peers.start_microsocks(tmp, "127.0.0.23",
                                                                 "alice", "s3cret"))
            self.socks4 = self._keep(peers.start_danted(tmp, "127.0.0.24"))
            self.closed = peers.ClosedPort("127.0.0.25")
            self.blackhole = self._keep(peers.start_script_peer("blackhole", tmp, "127.0.0.26"))
            self.liar = self._keep(peers.start_script_peer("liar", tmp, "127.0.0.27"))
            self.extra = self._keep(peers.start_tinyproxy(tmp, "127.0.0.28"))
            # Listed https://: an HTTP proxy checked through CONNECT, shown
            # in https/ and printed http://.
            self.tunnel = self._keep(peers.start_tinyproxy(tmp, "127.0.0.29"))
            self.tunnel.line = "https://%s:%d" % (self.tunnel.host, self.tunnel.port)
            self.wrong_password_uri = "socks5://alice:wrong@%s:%d" % (self.socks5_auth.host,
                                                                      self.socks5_auth.port)
            self.good = [self.tinyproxy, self.socks5, self.socks5_auth, self.socks4, self.tunnel]
            self.self_check()
        except BaseException:
            self.stop()
            raise

    def _keep(self, peer):
        self.all.append(peer)
        return peer

    @property
    def good_uris(self):
        return {p.uri for p in self.good}

    def bad_uris(self, slow=True):
        bad = {self.closed.uri, self.liar.uri, self.wrong_password_uri}
        if slow:
            bad.add(self.blackhole.uri)
        return bad

    def self_check(self):
        """curl through every peer: the good ones reach the judge, the bad
        ones do not; otherwise a proxyfs failure would prove nothing."""
        for p in self.good + [self.extra]:
            rc, out = peers.curl_through(p.uri, self.judge_url, tunnel=p is self.tunnel)
            assert rc == 0 and peers.JUDGE_TOKEN in out, \
                "peer %s does not reach the judge (curl %d): %s\nlog:\n%s" % (p, rc, out, p.log())
        for uri in (self.closed.uri, self.liar.uri, self.wrong_password_uri):
            rc, out = peers.curl_through(uri, self.judge_url, timeout=3)
            assert peers.JUDGE_TOKEN not in out, "%s reached the judge" % uri
        rc, out = peers.curl_through(self.blackhole.uri, self.judge_url, timeout=1)
        assert rc != 0, "the blackhole answered: %s" % out

    def stop_proxies(self):
        """Stops every peer but the judge."""
        for p in self.all:
            if p is not self.judge:
                p.stop()

    def stop(self):
        for p in self.all:
            p.stop()

    def list_text(self, slow=True):
        """The source list: every good and bad proxy in the forms
        DESIGN.md accepts, a duplicate, comments, and two malformed lines.
        slow=False leaves out the blackhole, whose check lasts the whole
        timeout, for tests that rescan often."""
        t = self.tinyproxy
        bad = [self.closed.line, self.liar.line, self.wrong_password_uri]
        if slow:
            bad.append(self.blackhole.line)
        return ("# proxyfs integration test list\n"
                "\n"
                "%s\n"              # bare host:port: the source's protocol (http)
                "http://%s:%d\n"    # the same proxy again, with its scheme
                "%s\n%s\n%s\n%s\n"
                "   # an indented comment\n"
                "%s\n"
                "this is not a proxy\n"
                "http://127.0.0.1:99999\n"
                % (t.line, t.host, t.port,
                   self.socks5.line, self.socks5_auth.line, self.socks4.line, self.tunnel.line,
                   "\n".join(bad)))

    def list_distinct(self, slow=True):
        """How many distinct proxies list_text(slow) names."""
        return len(self.good_uris) + len(self.bad_uris(slow))


@pytest.fixture(scope="session")
def peer_set(tmp_path_factory):
    ps = PeerSet(str(tmp_path_factory.mktemp("peers")))
    try:
        yield ps
    finally:
        ps.stop()


@pytest.fixture
def own_peers(tmp_path):
    """A peer set of the test's own, for tests that stop proxies."""
    ps = PeerSet(str(tmp_path / "peers"))
    try:
        yield ps
    finally:
        ps.stop()


class Mounts:
    """Daemons started by one test or module; all cleared at teardown."""

    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.daemons = []

    def new(self, conf, mnt=None, background=False):
        mnt = mnt or os.path.join(self.tmp, "mnt")
        d = Daemon(self.binary, conf, mnt,
                   os.path.join(self.tmp, "proxyfs-%d.log" % len(self.daemons)), background)
        self.daemons.append(d)
        return d

    def cleanup(self):
        for d in self.daemons:
            d.kill()


@pytest.fixture
def mounts(binary, tmp_path):
    m = Mounts(binary, str(tmp_path))
    try:
        yield m
    finally:
        m.cleanup()


def write_list(tmp, text, name="list.txt"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def pool_daemon(binary, peer_set, tmp, slow):
    """A daemon over the peer set's list, mounted and synced once; returns
    (Mounts, Daemon). The caller cleans up the Mounts."""
    os.makedirs(tmp, exist_ok=True)
    conf = write_config(tmp, peer_set.judge, write_list(tmp, peer_set.list_text(slow)))
    m = Mounts(binary, tmp)
    try:
        d = m.new(conf).start()
        d.sync()
    except BaseException:
        m.cleanup()
        raise
    return m, d


@pytest.fixture(scope="module")
def pool(binary, peer_set, tmp_path_factory):
    """A daemon over the full list for a whole module, synced once. Tests
    using it must not change the pool (control tests use their own)."""
    m, d = pool_daemon(binary, peer_set, str(tmp_path_factory.mktemp("pool")), slow=True)
    try:
        yield d
        if d.running():
            d.stop()
    finally:
        m.cleanup()


@pytest.fixture
def fresh_pool(binary, peer_set, tmp_path):
    """Like pool, but the test's own (it may change the pool), and without
    the blackhole so that rescans are quick."""
    m, d = pool_daemon(binary, peer_set, str(tmp_path), slow=False)
    try:
        yield d
        if d.running():
            d.stop()
    finally:
        m.cleanup()
