"""Judges seen from their side: looked up off the loop, never probed when
probing is off, and kept by the checks that use them across a reload.

The judge here is this module's own, served from a thread: it tells
requests that come straight from the daemon (127.0.0.1) from those that
come through a proxy (their outgoing address, judging.PROXY_OUT), counts
both, and can refuse the direct ones or hold the proxied ones until the
test lets them go. The proxies are judging's (tinyproxy, microsocks,
danted connecting out from PROXY_OUT), each stopped by its PID.

A name that starts resolving later is a unique name written into
/etc/hosts (getaddrinfo reads it at every lookup) and taken out again in
a finally; a name that never resolves is under .invalid (RFC 2606).
"""

import contextlib
import http.server
import subprocess
import threading
import uuid

import pytest

import judging
import peers
from conftest import wait_until
from judging import PROXY_OUT

TOKEN = "PROXYFS-RESOLVE-JUDGE-OK"
READY_TIMEOUT = 30.0   # a lookup or probe coming back, a scan ending
CHECK_TIMEOUT = 60.0   # a whole `proxyfs check` run
HOLD_TIMEOUT = 30.0    # how long a held answer waits for the test at most
HOSTS = "/etc/hosts"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        judge = self.server.judge
        proxied = self.client_address[0] == PROXY_OUT
        with judge.lock:
            if proxied:
                judge.proxied += 1
            else:
                judge.direct += 1
        if not proxied and judge.refuse_direct:
            self.send_error(403, "direct requests are refused here")
            return
        if proxied and judge.hold:
            judge.arrived.set()
            judge.release.wait(HOLD_TIMEOUT)
        body = ("%s\nREMOTE_ADDR = %s\n" % (TOKEN, self.client_address[0])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass



class Judge:
    """refuse_direct: a direct request gets 403 (the proxies' get the
    page). hold: a proxied request waits for release() (arrived is set)."""

    def __init__(self, refuse_direct=False, hold=False):
        self.refuse_direct = refuse_direct
        self.hold = hold
        self.lock = threading.Lock()
        self.direct = self.proxied = 0
        self.arrived = threading.Event()
        self.release = threading.Event()
        last = None
        for _ in range(20):
            try:
                self.server = peers._Server((judging.OUR, peers.free_port(judging.OUR)), _Handler)
                break
            except OSError as e:
                last = e
        else:
            raise last
        self.server.judge = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host=judging.OUR):
        return "http://%s:%d/" % (host, self.port)

    def counts(self):
        with self.lock:
            return self.direct, self.proxied

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxies(tmp_path):
    """An HTTP proxy, a SOCKS5 and a SOCKS4 one (danted: no 4a, so its
    check needs the judge's address), all reaching the judge from
    PROXY_OUT."""
    tmp = str(tmp_path)
    started = []
    try:
        for make in (judging.tinyproxy, judging.microsocks, judging.danted):
            started.append(make(tmp, "127.0.0.%d" % (41 + len(started))))
        yield started
    finally:
        for p in started:
            p.stop()


@pytest.fixture
def blackhole(tmp_path):
    """A proxy that accepts and never answers: a run with it in the list
    lasts the check timeout, longer than any probe of the judge takes."""
    p = peers.start_script_peer("blackhole", str(tmp_path), "127.0.0.45")
    try:
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def hosts_entry(name, addr):
    """name resolves to addr while inside; /etc/hosts is edited in place
    (it may be a bind mount) and restored to what it was."""
    with open(HOSTS) as f:
        before = f.read()
    with open(HOSTS, "a") as f:
        f.write("%s%s %s\n" % ("" if before.endswith("\n") or not before else "\n", addr, name))
    try:
        yield
    finally:
        with open(HOSTS, "r+") as f:
            f.seek(0)
            f.write(before)
            f.truncate()


def unique_name():
    return "proxyfs-judge-%s.test" % uuid.uuid4().hex[:12]


def write_list(tmp, proxies, extra=()):
    return judging.write_list(tmp, [p.line for p in proxies] + list(extra))


def health(d):
    return d.read_text("health").rstrip("\n")


def run_check(binary, judge_url, list_path, extra=()):
    argv = [binary, "check", "--judge", judge_url, "--expect", TOKEN, "--timeout", "1500",
            "--connect-timeout", "1000", "--retries", "0", *extra, list_path]
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("proxyfs check did not end within %.0fs" % CHECK_TIMEOUT)


# --- probing off (issue 10, item 5) ---


def test_probe_off_sends_the_judge_nothing_but_the_checks(mounts, proxies, blackhole,
                                                          tmp_path):
    """A judge that refuses every direct request but answers through the
    proxies: with probe_judges = no the daemon checks through it and never
    asks it anything itself. The blackhole makes each scan last the check
    timeout, so a probe sent at start would have reached the judge."""
    judge = Judge(refuse_direct=True)
    try:
        tmp = str(tmp_path)
        lst = write_list(tmp, proxies, [blackhole.line])
        conf = judging.write_conf(tmp, [judge.url()], lst, check={
            "expect": TOKEN, "probe_judges": "no", "judge_probe_s": 1, "timeout_ms": 1500,
            "retries": 0})
        d = mounts.new(conf).start()
        d.sync()
        d.sync()
        assert d.live() == {p.uri for p in proxies}, d.log()
        assert health(d) == "ok", d.log()
        st = d.read_json("stat.json")
        assert st["engine"]["paused"] is False
        assert st["judges"][0]["healthy"] is True, st["judges"]
        d.stop()
        direct, proxied = judge.counts()
        assert direct == 0, "the judge was probed %d times with probing off" % direct
        assert proxied >= 2 * len(proxies)
    finally:
        judge.close()


def test_check_no_probe_sends_the_judge_nothing_but_the_checks(binary, proxies, blackhole,
                                                               tmp_path):
    judge = Judge(refuse_direct=True)
    try:
        lst = write_list(str(tmp_path), proxies, [blackhole.line])
        p = run_check(binary, judge.url(), lst, ["--no-probe"])
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 0, err
        assert set(p.stdout.decode().split()) == {p.uri for p in proxies}, err
        direct, proxied = judge.counts()
        assert direct == 0, "the judge was probed %d times with --no-probe" % direct
        assert proxied == len(proxies)
    finally:
        judge.close()


# --- a judge that does not resolve (issue 10, item 3) ---


@pytest.mark.parametrize("probe", [True, False])
def test_check_with_a_judge_that_does_not_resolve_ends_with_the_reason(binary, proxies,
                                                                       tmp_path, probe):
    lst = write_list(str(tmp_path), proxies)
    p = run_check(binary, "http://judge.invalid/", lst, [] if probe else ["--no-probe"])
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert "http://judge.invalid/: does not resolve" in err, err
    assert "nothing was checked" in err, err
    assert p.stdout == b""


def test_a_judge_that_resolves_later(mounts, proxies, tmp_path):
    """Started while its judge's name does not resolve, the daemon mounts,
    serves the pool it remembers and says why it does not check; once the
    name resolves checking starts by itself, through the SOCKS4 proxy too
    (which needs the address). A reload to a name that does not resolve is
    taken, not refused."""
    judge = Judge()
    tmp = str(tmp_path)
    lst = write_list(tmp, proxies)
    good = {p.uri for p in proxies}
    keys = {"expect": TOKEN, "judge_probe_s": 1}
    try:
        d = mounts.new(judging.write_conf(tmp, [judge.url()], lst, check=keys)).start()
        d.sync()
        assert d.live() == good, d.log()
        d.stop()

        name = unique_name()
        url = judge.url(name)
        d = mounts.new(judging.write_conf(tmp, [url], lst, check=keys)).start()
        assert d.live() == good, "the remembered pool is not served:\n" + d.log()
        want = "degraded: no judge reachable (%s: does not resolve)" % url
        wait_until(lambda: health(d) == want, READY_TIMEOUT, "health to say " + want)
        st = d.read_json("stat.json")
        assert st["engine"]["paused"] is True
        assert st["judges"][0]["error"] == "does not resolve", st["judges"]
        proxied = judge.counts()[1]

        with hosts_entry(name, judging.OUR):
            wait_until(lambda: health(d) == "ok", READY_TIMEOUT,
                       "health to be ok once %s resolves" % name)
            d.sync()
            assert d.live() == good, d.log()
            assert judge.counts()[1] >= proxied + len(proxies)
            j = d.read_json("stat.json")["judges"][0]
            assert j["healthy"] is True and j["alive"] >= len(proxies), j

            other = judge.url(unique_name())
            judging.write_conf(tmp, [other], lst, check=keys)
            assert d.write("control/reload", "reload\n") == len("reload\n")
            want = "degraded: no judge reachable (%s: does not resolve)" % other
            wait_until(lambda: health(d) == want, READY_TIMEOUT, "health to say " + want)
            assert d.live() == good
        d.stop()
    finally:
        judge.close()


# --- a reload under checks in flight (issue 10, item 9) ---


def test_reload_leaves_checks_in_flight_their_judge(mounts, tmp_path):
    """An HTTP proxy checked through an http judge stays out of https/ when
    a reload swaps that judge for an https one while its check is in
    flight, the check's counts stay with its own judge, and the old judge
    set is freed when that check ends."""
    judge = Judge(hold=True)
    tmp = str(tmp_path)
    proxy = judging.tinyproxy(tmp, "127.0.0.46")
    try:
        lst = judging.write_list(tmp, [proxy.uri])
        keys = {"expect": TOKEN, "timeout_ms": 20000, "retries": 0}
        d = mounts.new(judging.write_conf(tmp, [judge.url()], lst, check=keys)).start()
        assert judge.arrived.wait(READY_TIMEOUT), "no check reached the judge:\n" + d.log()

        # An https judge nobody serves: its probe fails, so nothing is
        # checked through it and the held check's result is the last word.
        https = "https://%s:%d/" % (judging.OUR, peers.free_port(judging.OUR))
        judging.write_conf(tmp, [https], lst, check=keys)
        assert d.write("control/reload", "reload\n") == len("reload\n")
        judge.release.set()

        wait_until(lambda: proxy.uri in d.live(), READY_TIMEOUT,
                   "the held check's result:\n" + d.log())
        assert d.live("http/live.txt") == {proxy.uri}
        assert d.live("https/live.txt") == set(), \
            "an HTTP proxy checked through an http judge is listed in https/"
        j = d.read_json("stat.json")["judges"]
        assert [x["url"] for x in j] == [https]
        assert j[0]["checks"] == 0 and j[0]["alive"] == 0, \
            "the old judge's check was counted for the new one: %s" % j
        wait_until(lambda: "judge set 1 freed" in d.log(), READY_TIMEOUT,
                   "the old judge set to be freed:\n" + d.log())
        d.stop()
    finally:
        judge.close()
        proxy.stop()
