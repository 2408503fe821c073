"""formats/: files the programs people chain through proxies take as they are.

formats/proxychains.conf is handed unchanged to the real proxychains4
(`proxychains4 -f MNT/formats/proxychains.conf curl JUDGE`), which must
reach the judge through the pool's proxies; formats/curl.txt is handed
line by line to `curl -x`. The pool is the peer set's full list (module
daemon): tinyproxy (http), the CONNECT-checked tinyproxy (https), microsocks
with and without a password (socks5), danted (socks4).

proxychains needs nothing added for a loopback judge: without a `localnet`
line it sends every TCP connection, 127.0.0.0/8 included, through the
chain, which is also what a user of the file wants.
"""

import os
import re
import shutil
import subprocess

import pytest

import peers

PROXYCHAINS = shutil.which("proxychains4")
CHAIN_OK = re.compile(r"\[proxychains\] Random chain\s+\.\.\.\s+(\S+):(\d+)\s+\.\.\.\s+\S+\s+\.\.\.\s+OK")


def proxy_list(conf_text):
    """The [ProxyList] lines of a proxychains config, comments left out."""
    lines = conf_text.splitlines()
    at = lines.index("[ProxyList]")
    return [l for l in lines[at + 1:] if l.strip() and not l.lstrip().startswith("#")]


def expected_lines(pool):
    """What the [ProxyList] must hold: CONNECT-verified HTTP proxies as
    http, SOCKS proxies as theirs; never a plain-forwarding-only one."""
    want = set()
    for folder, kind in (("https", "http"), ("socks4", "socks4"), ("socks5", "socks5")):
        for uri in pool.live(folder + "/live.txt"):
            m = re.match(r"^\w+://(?:([^:@]+):([^@]+)@)?([\d.]+):(\d+)$", uri)
            assert m, uri
            user, password, host, port = m.groups()
            want.add("\t".join([kind, host, port] + ([user, password] if user else [])))
    return want


def run_proxychains(conf, url, timeout=20):
    p = subprocess.run([PROXYCHAINS, "-f", conf, "curl", "-sS", "--max-time", "10", url],
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_proxychains_conf_is_complete(pool, peer_set):
    text = pool.read_text("formats/proxychains.conf")
    assert text.startswith("# proxychains-ng configuration")
    for line in ("random_chain", "chain_len = 1", "proxy_dns", "tcp_read_time_out 15000",
                 "tcp_connect_time_out 8000"):
        assert line in text.splitlines(), line
    listed = proxy_list(text)
    assert len(listed) == len(set(listed))
    assert set(listed) == expected_lines(pool)
    # Every kind of the peer set is there, the password too.
    assert "socks5\t%s\t%d\talice\ts3cret" % (peer_set.socks5_auth.host,
                                             peer_set.socks5_auth.port) in listed
    assert "socks4\t%s\t%d" % (peer_set.socks4.host, peer_set.socks4.port) in listed
    assert "http\t%s\t%d" % (peer_set.tunnel.host, peer_set.tunnel.port) in listed
    # A proxy that only forwards plain HTTP cannot carry CONNECT: left out.
    plain = pool.live("http/live.txt") - pool.live("https/live.txt")
    assert plain == {peer_set.tinyproxy.uri}
    for uri in plain:
        host, port = uri.split("://")[1].rsplit(":", 1)
        assert not any(l.split("\t")[1:3] == [host, port] for l in listed), uri
    # One rendering per snapshot: the same bytes, st_size their length.
    assert pool.read_text("formats/proxychains.conf") == text
    assert pool.stat("formats/proxychains.conf").st_size == len(text.encode())


@pytest.mark.skipif(PROXYCHAINS is None, reason="proxychains4 is not installed")
def test_proxychains_reaches_the_judge(pool, peer_set):
    """The file as it is: each run goes through one proxy picked at random,
    and reaches the judge; over the runs, several of the pool's proxies."""
    conf = pool.path("formats/proxychains.conf")
    listed = {tuple(l.split("\t")[1:3]) for l in proxy_list(pool.read_text("formats/proxychains.conf"))}
    used = set()
    for _ in range(12):
        rc, out, err = run_proxychains(conf, peer_set.judge_url)
        assert rc == 0 and peers.JUDGE_TOKEN in out, "proxychains4 failed: %s\n%s" % (out, err)
        chain = CHAIN_OK.findall(err)
        assert chain, "proxychains did not say which proxy it used: %s" % err
        assert set(chain) <= listed
        used |= set(chain)
    assert len(used) > 1, "12 random picks all took %s" % used


@pytest.mark.skipif(PROXYCHAINS is None, reason="proxychains4 is not installed")
def test_every_proxychains_line_works(pool, peer_set, tmp_path):
    """Each [ProxyList] line alone (a copy of the file with one proxy)
    carries curl to the judge."""
    text = pool.read_text("formats/proxychains.conf")
    head = text[:text.index("[ProxyList]\n") + len("[ProxyList]\n")]
    listed = proxy_list(text)
    assert listed
    for i, line in enumerate(listed):
        conf = tmp_path / ("one-%d.conf" % i)
        conf.write_text(head + line + "\n")
        rc, out, err = run_proxychains(str(conf), peer_set.judge_url)
        assert rc == 0 and peers.JUDGE_TOKEN in out, "%r: %s\n%s" % (line, out, err)
        assert CHAIN_OK.search(err), err


def test_curl_txt_every_line_works(pool, peer_set):
    lines = pool.read_lines("formats/curl.txt")
    live = pool.live()
    assert len(lines) == len(live)
    want = {re.sub(r"^socks5h?://", "socks5h://", u) for u in live}
    assert set(lines) == want
    for line in lines:
        assert re.match(r"^(http|socks4a?|socks5h)://", line), line
        rc, out = peers.curl_through(line, peer_set.judge_url)
        assert rc == 0 and peers.JUDGE_TOKEN in out, "curl -x %s: %s" % (line, out)
    assert pool.stat("formats/curl.txt").st_size == len(pool.read("formats/curl.txt"))


def test_formats_listing(pool):
    assert "formats" in pool.listdir()
    assert sorted(pool.listdir("formats")) == ["curl.txt", "proxychains.conf"]
