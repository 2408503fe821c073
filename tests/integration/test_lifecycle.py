"""The daemon's life: signals, SIGHUP, and a warm start after kill -9.

The warm-start tests stop their proxies, so they have peers of their own.
"""

import errno
import os
import signal
import sqlite3
import subprocess

import hostile
import peers
import pytest

from conftest import call_with_deadline, is_mounted, wait_until, write_config, write_list

APPEAR_TIMEOUT = 10.0
STORE_TIMEOUT = 10.0


def good_list(ps):
    return "".join(p.line + "\n" for p in ps.good) + ps.closed.line + "\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_unmounts_and_exits_0(mounts, peer_set, tmp_path, sig):
    tmp = str(tmp_path)
    d = mounts.new(write_config(tmp, peer_set.judge, write_list(tmp, good_list(peer_set))))
    d.start()
    d.sync()
    assert d.live() == peer_set.good_uris
    d.stop(sig)  # asserts exit status 0 and no mount left
    assert not is_mounted(d.mnt)


def test_fusermount_u_stops_the_daemon(mounts, peer_set, tmp_path):
    # What the systemd unit's ExecStop does.
    tmp = str(tmp_path)
    d = mounts.new(write_config(tmp, peer_set.judge, write_list(tmp, good_list(peer_set))))
    d.start()
    p = subprocess.run(["fusermount3", "-u", d.mnt], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    rc = d.proc.wait(timeout=15)
    d.proc = None
    assert rc == 0, "proxyfs exited with %s after fusermount3 -u; log:\n%s" % (rc, d.log())
    assert not is_mounted(d.mnt)


def test_sigterm_with_a_reader_holding_a_file(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    d = mounts.new(write_config(tmp, peer_set.judge, write_list(tmp, good_list(peer_set))))
    d.start()
    f = call_with_deadline(lambda: open(d.path("live.txt"), "rb", buffering=0))
    try:
        call_with_deadline(lambda: f.read(3))
        d.stop()
    finally:
        try:
            f.close()
        except OSError as e:
            # close() flushes through a connection that is gone.
            assert e.errno == errno.ENOTCONN, e


def test_sighup_rereads_sources(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    lst = write_list(tmp, good_list(peer_set))
    d = mounts.new(write_config(tmp, peer_set.judge, lst)).start()
    d.sync()
    uri = peer_set.extra.uri
    assert uri not in d.live()
    with open(lst, "a") as f:
        f.write(uri + "\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: uri in d.live(), APPEAR_TIMEOUT, "%s in live.txt after SIGHUP" % uri)
    assert d.running()
    d.stop()


def stored_alive(db):
    """URIs the store has written as alive (store.c: proxies.state 1)."""
    try:
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=1)
        try:
            return {hostile.printed(r[0])
                    for r in con.execute("SELECT uri FROM proxies WHERE state = 1")}
        finally:
            con.close()
    except sqlite3.Error:
        return set()


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
@pytest.mark.parametrize("unmount", [True, False], ids=["unmounted", "stale-mount"])
def test_warm_start_after_kill_9(mounts, own_peers, tmp_path, unmount, background):
    tmp = str(tmp_path)
    ps = own_peers
    conf = write_config(tmp, ps.judge, write_list(tmp, good_list(ps)))
    db = os.path.join(tmp, "proxyfs.db")
    d = mounts.new(conf, background=background).start()
    d.sync()
    live = d.live()
    assert live == ps.good_uris
    # Results reach the disk shortly after they are published; kill -9 only
    # once they are there, so the test is about the restart, not the race.
    wait_until(lambda: stored_alive(db) >= live, STORE_TIMEOUT, "the live set in the store")

    d.kill(unmount=unmount)
    if not unmount:
        assert is_mounted(d.mnt), "no stale mount to recover from"

    # The proxies go away; blackholes take their ports, so every check of
    # them lasts the whole timeout and none can end before the first read.
    ps.stop_proxies()
    holes = []
    try:
        for p in ps.good:
            holes.append(peers.Peer("blackhole", p.host, p.port,
                                    [peers.PYTHON, peers.__file__, "blackhole", p.host,
                                     str(p.port)],
                                    os.path.join(tmp, "hole-%d.log" % p.port)).start())
        d.start()
        assert d.live() == live, "a restarted mount does not serve the last known pool"
    finally:
        for h in holes:
            h.stop()
    d.sync()
    assert d.live() == set(), "proxies that are gone still listed after a rescan"
    assert d.read("random") == b""
    d.stop()
