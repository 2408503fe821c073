"""Proxies given by host name: resolved at each check (/etc/hosts, then the
name servers of /etc/resolv.conf), so `http://localhost:PORT` in a list is
checked like `http://127.0.0.1:PORT` and listed by the name it was given. A
name that does not exist (RFC 6761's .invalid) leaves its proxy dead, and
nothing else. Checked through a mount and through `proxyfs check`.
"""

import subprocess

import peers
from conftest import write_config, write_list

CHECK_TIMEOUT = 60.0


def named_list(tmp, tinyproxy):
    """localhost for the proxy on 127.0.0.1, a name that never resolves,
    and the same proxy by address."""
    good = "http://localhost:%d" % tinyproxy.port
    bad = "http://proxy.does-not-exist.invalid:%d" % tinyproxy.port
    by_addr = "http://127.0.0.1:%d" % tinyproxy.port
    return write_list(tmp, "%s\n%s\n%s\n" % (good, bad, by_addr)), {good, by_addr}, bad


def test_named_proxies_in_a_mount(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    tinyproxy = peers.start_tinyproxy(tmp, "127.0.0.1")
    try:
        path, alive, bad = named_list(tmp, tinyproxy)
        d = mounts.new(write_config(tmp, peer_set.judge, path)).start()
        d.sync()
        assert d.live() == alive
        assert d.live("http/live.txt") == alive
        stat = d.read_json("stat.json")
        assert stat["pool"]["total"] == 3
        entries = {e["uri"]: e for e in d.read_json("live.json")}
        assert entries["http://localhost:%d" % tinyproxy.port]["host"] == "localhost"
        assert bad not in entries
    finally:
        tinyproxy.stop()


def test_named_proxies_in_check(binary, peer_set, tmp_path):
    tmp = str(tmp_path)
    tinyproxy = peers.start_tinyproxy(tmp, "127.0.0.1")
    try:
        path, alive, _ = named_list(tmp, tinyproxy)
        p = subprocess.run([binary, "check", "--judge", peer_set.judge_url, "--expect",
                            peers.JUDGE_TOKEN, "--timeout", "2000", path],
                           capture_output=True, text=True, timeout=CHECK_TIMEOUT)
        assert p.returncode == 0, p.stderr
        assert set(p.stdout.split()) == alive, p.stderr
        assert "3 checked, 2 alive, 1 dead" in p.stderr
    finally:
        tinyproxy.stop()
