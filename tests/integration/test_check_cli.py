"""`proxyfs check` says everything a user needs from a one-shot run.

Runs the binary against the session's real peers (conftest.PeerSet) and
lists served over HTTP (listserver.py): the summary counts a list's
invalid lines and shows the first; a list is named as the user gave it;
`-c FILE` alone checks the config's sources, and a terminal on stdin with
no list gets the usage, not a silent wait; --json carries anonymity,
exit_ip and the result; the ETA does not say 0 s while the last checks
still run, and a run of milliseconds gets no checks/s figure; a list URL
that fails is a non-zero exit when nothing was checked.
"""

import json
import os
import pty
import re
import select
import subprocess
import time

import peers
from conftest import write_config
from listserver import ListServer

CHECK_TIMEOUT = 60


def check_argv(binary, peer_set, *args, timeout_ms=2000):
    return [binary, "check", "--judge", peer_set.judge_url, "--expect", peers.JUDGE_TOKEN,
            "--timeout", str(timeout_ms), "--connect-timeout", "1000"] + list(args)


def run_check(argv, **kwargs):
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, capture_output=True, text=True, timeout=CHECK_TIMEOUT, **kwargs)


def write(tmp_path, name, text):
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_summary_counts_invalid_lines_and_shows_the_first(binary, peer_set, tmp_path):
    path = write(tmp_path, "list.txt", peer_set.list_text(slow=False))
    p = run_check(check_argv(binary, peer_set, path))
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("proxyfs check: %s:" % path)]
    assert len(line) == 1, "no summary line for the list:\n" + p.stderr
    assert "%d proxies" % peer_set.list_distinct(slow=False) in line[0], line[0]
    assert "%d invalid lines" % peer_set.LIST_INVALID in line[0], line[0]
    assert '"this is not a proxy"' in line[0] and '"http://127.0.0.1:99999"' in line[0], line[0]


def test_failed_list_url_is_named_and_fails_the_run(binary, peer_set):
    with ListServer() as srv:
        srv.route("/gone.txt", status=404)
        url = srv.url("/gone.txt")
        p = run_check(check_argv(binary, peer_set, url))
    assert p.returncode == 1, "exit %d for a run that checked nothing:\n%s" % (p.returncode,
                                                                            p.stderr)
    assert "%s: not read: HTTP 404" % url in p.stderr, p.stderr
    assert "nothing was checked" in p.stderr, p.stderr
    assert not re.search(r"\blist\d+\b", p.stderr), "an internal name:\n" + p.stderr


def test_failed_list_beside_a_good_one_is_named_but_the_run_counts(binary, peer_set,
                                                                    tmp_path):
    path = write(tmp_path, "good.txt", peer_set.tinyproxy.line + "\n")
    with ListServer() as srv:
        srv.route("/gone.txt", status=404)
        url = srv.url("/gone.txt")
        p = run_check(check_argv(binary, peer_set, path, url))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [peer_set.tinyproxy.uri], p.stderr
    assert "%s: not read: HTTP 404" % url in p.stderr, p.stderr


def test_config_sources_are_checked_when_no_list_is_given(binary, peer_set, tmp_path):
    path = write(tmp_path, "list.txt", peer_set.list_text(slow=False))
    conf = write_config(str(tmp_path), peer_set.judge, path)
    # Stdin holds a different proxy: it must not be what is read.
    p = run_check([binary, "check", "-c", conf], input=peer_set.extra.line + "\n",
                  stdin=None)
    assert p.returncode == 0, p.stderr
    assert set(p.stdout.split()) == peer_set.good_uris, p.stderr
    assert "proxyfs check: %s: " % path in p.stderr, "list not named by its file:\n" + p.stderr


def test_terminal_stdin_and_no_list_prints_usage(binary, peer_set):
    master, slave = pty.openpty()
    try:
        try:
            p = subprocess.run(check_argv(binary, peer_set), stdin=slave,
                               capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError("check waited on the terminal's stdin") from None
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 2, p.stderr
    assert "usage: proxyfs check" in p.stderr, p.stderr
    assert p.stdout == ""


def test_json_carries_anonymity_exit_ip_and_result(binary, peer_set, tmp_path):
    path = write(tmp_path, "list.txt", peer_set.list_text(slow=False))
    p = run_check(check_argv(binary, peer_set, "--json", path))
    assert p.returncode == 0, p.stderr
    recs = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert {r["uri"] for r in recs} == peer_set.good_uris
    for r in recs:
        assert r["alive"] is True and r["result"] == "ok" and r["detail"] is None, r
        # On loopback every proxy leaves from 127.0.0.1: the judge sees it.
        assert r["anonymity"] == "transparent", r
        assert r["exit_ip"] == "127.0.0.1", r
        assert isinstance(r["latency_ms"], int), r


def test_json_all_carries_each_failure_class(binary, peer_set, tmp_path):
    path = write(tmp_path, "list.txt", peer_set.list_text(slow=False))
    p = run_check(check_argv(binary, peer_set, "--json", "--all", path))
    assert p.returncode == 0, p.stderr
    recs = {r["uri"]: r for r in map(json.loads, p.stdout.splitlines())}
    assert set(recs) == peer_set.good_uris | peer_set.bad_uris(slow=False)
    assert recs[peer_set.closed.uri]["result"] == "refused"
    assert recs[peer_set.closed.uri]["detail"] == "Connection refused"
    assert recs[peer_set.liar.uri]["result"] == "wrong_answer"
    assert recs[peer_set.wrong_password_uri]["result"] == "auth"
    for uri in peer_set.bad_uris(slow=False):
        assert recs[uri]["alive"] is False and "anonymity" not in recs[uri], recs[uri]


def test_all_without_json_is_a_usage_error(binary, peer_set, tmp_path):
    path = write(tmp_path, "list.txt", peer_set.tinyproxy.line + "\n")
    p = run_check(check_argv(binary, peer_set, "--all", path))
    assert p.returncode == 2 and "--all needs --json" in p.stderr, p.stderr


def read_pty(fd, proc, timeout=CHECK_TIMEOUT):
    """(seconds since start, text) per update the bar drew on the pty,
    until the process has exited and the pty is drained; and the time the
    process was seen gone."""
    start = time.monotonic()
    updates, buf, end = [], "", None
    while time.monotonic() - start < timeout:
        if end is None and proc.poll() is not None:
            end = time.monotonic() - start
        ready, _, _ = select.select([fd], [], [], 0.05)
        data = ""
        if ready:
            try:
                data = os.read(fd, 4096).decode(errors="replace")
            except OSError:  # EIO: nobody has the pty open any more
                pass
        now = time.monotonic() - start
        buf += data
        parts = re.split(r"[\r\n]", buf)
        buf = parts.pop()
        updates += [(now, part) for part in parts if part.strip()]
        if end is not None and not data:
            return updates, end
    raise AssertionError("check still running after %d s" % timeout)


def test_eta_covers_the_checks_still_in_flight(binary, peer_set, tmp_path):
    """The fast proxies answer at once and the blackhole takes the whole
    3 s timeout: an ETA from the rate alone says 0 s all that time."""
    timeout_s = 3
    text = "".join(p.line + "\n" for p in peer_set.good if p is not peer_set.tunnel)
    path = write(tmp_path, "list.txt", text + peer_set.blackhole.line + "\n")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(check_argv(binary, peer_set, "--retries", "0", path,
                                           timeout_ms=timeout_s * 1000),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=slave)
        os.close(slave)
        slave = -1
        try:
            updates, end = read_pty(master, proc)
        finally:
            proc.kill()
            proc.wait()
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    bars = []
    for t, text in updates:
        m = re.search(r"(\d+)/(\d+) alive \d+ .* ETA (\d+)s", text)
        if m and int(m.group(1)) < int(m.group(2)):
            bars.append((t, int(m.group(3)), text))
    assert bars, "no progress drawn:\n%r" % updates
    for t, eta, text in bars:
        # Drawn at t with eta left: the run must not end much later.
        assert t + eta >= end - 1.0, "at %.1f s of %.1f: %r" % (t, end, text)


def test_short_run_gives_no_rate(binary, peer_set, tmp_path):
    text = "%s\n%s:1\n%s:2\n" % (peer_set.closed.line, peer_set.closed.host,
                                  peer_set.closed.host)
    path = write(tmp_path, "closed.txt", text)
    p = run_check(check_argv(binary, peer_set, path))
    assert p.returncode == 0, p.stderr
    # Under the clock's millisecond the run reads "<0.001 s", never 0.
    m = re.search(r"3 checked, 0 alive, 3 dead in <?(\d+\.\d+) s(.*?);", p.stderr)
    assert m, p.stderr
    elapsed = float(m.group(1))
    assert elapsed > 0, "a run shown as taking no time:\n" + p.stderr
    if elapsed < 1.0:
        assert "checks/s" not in m.group(0), m.group(0)


def test_dash_reads_a_terminal_and_says_so(binary, peer_set):
    """`-` asks for stdin even on a terminal: the run says what it waits
    for, and takes the lines typed up to Ctrl-D."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(check_argv(binary, peer_set, "-"), stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        slave = -1
        os.write(master, (peer_set.tinyproxy.line + "\n").encode() + b"\x04")
        try:
            out, err = proc.communicate(timeout=CHECK_TIMEOUT)
        finally:
            proc.kill()
            proc.wait()
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0, err
    assert "reading a list from the terminal" in err, err
    assert out.split() == [peer_set.tinyproxy.uri], err


def test_protocol_socks5h_keeps_remote_dns(binary, peer_set, tmp_path):
    """--protocol socks5h: lines without a scheme are socks5h:// (the judge's
    name goes to the proxy), as a source's protocol = socks5h is; the
    proxy is checked that way and reported under that URI."""
    s5 = peer_set.socks5
    path = write(tmp_path, "list.txt", "%s:%d\n" % (s5.host, s5.port))
    p = run_check(check_argv(binary, peer_set, "--protocol", "socks5h", "--json", path))
    assert p.returncode == 0, p.stderr
    recs = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [r["uri"] for r in recs] == ["socks5h://%s:%d" % (s5.host, s5.port)], recs
    assert recs[0]["alive"] is True, recs
