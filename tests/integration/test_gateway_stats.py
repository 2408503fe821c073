"""What the gateway shows of itself: stat.json's "gateway" object and the
proxyfs_gateway_ metric families, after real traffic through it, and a
bad user-name option as a client and the log see it.

Uses test_gateway's upstreams (real microsocks, tinyproxy, danted) and its
daemon helper; the figures are live (read at render time), so each check
waits until the gateway has closed every connection it counted.
"""

import os
import re
import shutil
import subprocess

import peers
import test_gateway
from conftest import wait_until
from test_gateway import S5_AUTH_OUT, S5_OUT, curl, remote_addr, ups  # noqa: F401

PROMTOOL = "/tmp/prom/usr/bin/promtool"


def gateway_figures(d):
    return d.read_json("stat.json")["gateway"]


def settled(d, total):
    """The gateway's figures once no connection is open and total have
    been counted; else None."""
    g = gateway_figures(d)
    return g if g["connections"] == 0 and sum(g["connections_total"].values()) == total else None


def metric(text, name):
    """The value of one sample line NAME VALUE of the exposition text."""
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, "no %s in the metrics" % name
    return float(m.group(1))


def test_figures_follow_real_traffic(mounts, tmp_path, peer_set, ups):
    d, addr = test_gateway.gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups,
                                          "auth = erin:pw5\nmax_connections = 300\n")
    g = gateway_figures(d)
    assert g["enabled"] is True and g["max_connections"] == 300
    assert g["connections"] == 0 and sum(g["connections_total"].values()) == 0
    assert "proxyfs_gateway_connections 0\n" in d.read_text("metrics")

    # Three tunnels: plain HTTP proxy, CONNECT, SOCKS5 with a session.
    bodies = []
    for args in (["-x", "http://" + addr],
                 ["-p", "-x", "http://" + addr],
                 ["-x", "socks5h://" + addr]):
        user = "erin-session-st1-proto-socks5:pw5" if "socks5h" in args[-1] else "erin:pw5"
        rc, out, err = curl(*args, "--proxy-user", user, peer_set.judge_url)
        assert rc == 0 and peers.JUDGE_TOKEN in out, err
        bodies.append(out)
    assert remote_addr(bodies[2]) in (S5_OUT, S5_AUTH_OUT)
    # Two refused: a wrong password, a bad option with the right one.
    rc, out, err = curl("-i", "-x", "http://" + addr, "--proxy-user", "erin:nope",
                        peer_set.judge_url)
    assert " 407 " in out.splitlines()[0], out
    rc, out, err = curl("-i", "-x", "http://" + addr, "--proxy-user", "erin-proto-ftp:pw5",
                        peer_set.judge_url)
    assert " 407 " in out.splitlines()[0], out
    # Why, in the log at debug (the config's log_level), in gw_user's words.
    wait_until(lambda: "proto: 'ftp' is not one of http, https, socks4, socks5" in d.log(), 5,
               "the bad option's reason in the log")

    g = wait_until(lambda: settled(d, 5), 10, "every connection counted and closed")
    assert g["connections_total"]["ok"] == 3, g
    assert g["connections_total"]["auth_failed"] == 2, g
    assert g["connections_total"]["upstream_failed"] == 0, g
    assert g["retries"] == 0 and g["ejections"] == 0, g
    # Every byte the judge sent came back out to a client.
    assert g["bytes_out"] >= sum(len(b) for b in bodies), g
    assert g["bytes_in"] > 0, g
    assert g["handshake_seconds"]["count"] == 3 and g["handshake_seconds"]["sum"] > 0, g
    assert g["sessions_active"] >= 1, g  # st1 is in the one table

    text = d.read_text("metrics")
    assert metric(text, 'proxyfs_gateway_connections_total{outcome="ok"}') == 3
    assert metric(text, 'proxyfs_gateway_connections_total{outcome="auth_failed"}') == 2
    assert metric(text, "proxyfs_gateway_connections") == 0
    assert metric(text, "proxyfs_gateway_max_connections") == 300
    assert metric(text, 'proxyfs_gateway_bytes_total{direction="out"}') >= g["bytes_out"]
    assert metric(text, "proxyfs_gateway_retries_total") == 0
    assert metric(text, "proxyfs_gateway_handshake_seconds_count") == 3
    assert metric(text, 'proxyfs_gateway_handshake_seconds_bucket{le="+Inf"}') == 3
    assert metric(text, 'proxyfs_ejections_total{by="gateway"}') == 0
    promtool = PROMTOOL if os.path.exists(PROMTOOL) else shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
    d.stop()


def test_no_gateway_no_families(mounts, tmp_path, peer_set):
    """Without [gateway] listen: the object says off, the metrics have no
    gateway family (but the ejections by gateway, 0)."""
    d = mounts.new(test_gateway.write_config(
        str(tmp_path), peer_set.judge,
        test_gateway.write_list(str(tmp_path), peer_set.list_text(slow=False)))).start()
    g = gateway_figures(d)
    assert g["enabled"] is False and g["connections"] == 0
    text = d.read_text("metrics")
    assert "proxyfs_gateway_" not in text
    assert 'proxyfs_ejections_total{by="gateway"} 0\n' in text
    d.stop()


def test_share_of_open_files_is_clamped_and_shown(mounts, tmp_path, peer_set, ups):
    """A max_connections the open-file limit cannot hold is clamped (said
    in the log), shown in stat.json as the share kept, and the checks keep
    the concurrency they were configured with; the gateway still serves."""
    d, addr = test_gateway.gateway_daemon(mounts, str(tmp_path), peer_set.judge, ups,
                                          "max_connections = 1000000\n")
    st = d.read_json("stat.json")
    share = st["gateway"]["max_connections"]
    assert 0 < share < 1000000, st["gateway"]
    assert "[gateway] max_connections 1000000 clamped to %d" % share in d.log()
    assert st["engine"]["concurrency_max"] == st["engine"]["concurrency_configured"], st["engine"]
    rc, out, err = curl("-x", "http://" + addr, peer_set.judge_url)
    assert rc == 0 and peers.JUDGE_TOKEN in out, err
    d.stop()
