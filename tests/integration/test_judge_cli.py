"""`proxyfs judge` as a service: SIGHUP does not stop it, and
`--listen :PORT` listens on every address.

Uses test_judge.py's Judge (a `proxyfs judge` process, ready once it has
printed its listening line) and curl, like that file.
"""

import signal
import socket
import subprocess

import pytest

from test_judge import Judge, answer, curl


def test_sighup_is_ignored(binary, tmp_path):
    j = Judge(binary, str(tmp_path))
    try:
        j.proc.send_signal(signal.SIGHUP)
        rc, _, body = curl(j.url)
        assert rc == 0, "no answer after SIGHUP (exit %s); log:\n%s" % (j.proc.poll(), j.log())
        assert answer(body)[0]["method"] == "GET"
        # Exits 0 on SIGTERM, not killed by the SIGHUP before it.
        assert j.stop() == 0, j.log()
    finally:
        j.kill()


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_listen_colon_port_means_every_address(binary, tmp_path):
    j = Judge(binary, str(tmp_path), ":0")
    try:
        # Two IPv4 loopback addresses (127.0.0.1 and another of 127/8),
        # and IPv6's when the host has it.
        hosts = ["127.0.0.1", "127.0.0.2"] + (["[::1]"] if ipv6_loopback() else [])
        for host in hosts:
            rc, _, body = curl("-g", "http://%s:%d/" % (host, j.port))
            assert rc == 0, "no answer on %s; log:\n%s" % (host, j.log())
            # The kernel picks the source address: 127.0.0.1 for any of 127/8.
            addr = answer(body)[0]["remote_addr"]
            assert addr == "::1" if host == "[::1]" else addr.startswith("127."), body
        assert j.stop() == 0, j.log()
    finally:
        j.kill()


@pytest.mark.parametrize("spec", ["[]:80", ":", ":http"])
def test_listen_empty_host_forms_that_stay_usage_errors(binary, spec):
    p = subprocess.run([binary, "judge", "--listen", spec], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p.stderr
    assert b"--listen" in p.stderr
