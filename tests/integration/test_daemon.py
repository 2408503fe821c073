"""The daemon as a process: the background mode users run, one daemon per
database and per mountpoint, and ends that always come, also while a writer
waits on the engine (`echo sync`) or checks are in flight.

A `sync` that waits needs a scan that cannot end soon: these tests list a
blackhole (accepts, never answers) under a long check timeout, and count a
writer as waiting once /proc shows it inside write(2) on the control file.
"""

import errno
import os
import signal
import sqlite3
import subprocess
import time

import peers
import pytest

from conftest import (call_with_deadline, config_db, is_mounted, mount_ids, wait_until,
                      write_config, write_list)

STOP_LIMIT = 2.0       # what the issue asks: the daemon ends within 2 s
WAIT_TIMEOUT = 10.0
SYS_WRITE = 1          # x86_64


def good_conf(ps, tmp, extra=""):
    lst = write_list(tmp, "".join(p.line + "\n" for p in ps.good))
    return write_config(tmp, ps.judge, lst, extra=extra)


@pytest.fixture
def slow_conf(peer_set, tmp_path):
    """A config whose every scan lasts a minute: a blackhole under a 60 s
    check timeout, beside a good proxy."""
    tmp = str(tmp_path)
    lst = write_list(tmp, "%s\n%s\n" % (peer_set.blackhole.line, peer_set.tinyproxy.line))
    return write_config(tmp, peer_set.judge, lst,
                        edits=[("\ntimeout_ms = 2000", "\ntimeout_ms = 60000")])


def in_write(pid):
    try:
        with open("/proc/%d/syscall" % pid) as f:
            return f.read().split()[0] == str(SYS_WRITE)
    except (OSError, IndexError):
        return False


def waiting_writer(d, word="sync"):
    """`echo sync > control/reload` in a shell, once it waits in write()."""
    w = subprocess.Popen(["sh", "-c", "echo %s > '%s'" % (word, d.path("control/reload"))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: in_write(w.pid) or w.poll() is not None, WAIT_TIMEOUT,
               "the writer to wait in write()")
    assert w.poll() is None, "echo sync returned at once: %s" % w.stderr.read()
    return w


def daemon_gone_within(d, limit):
    if d.background:
        gone = d.wait_gone(limit)
    else:
        try:
            d.proc.wait(timeout=limit)
            gone = True
        except subprocess.TimeoutExpired:
            gone = False
    return gone


def held_locks(pid):
    """The lock types /proc/locks lists for pid (POSIX: SQLite's; FLOCK: the
    database's lock file)."""
    kinds = []
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == str(pid):
                kinds.append(fields[1])
    return kinds


# --- background mode ---

def test_background_start_is_ready_when_the_command_returns(mounts, peer_set, tmp_path):
    d = mounts.new(good_conf(peer_set, str(tmp_path)), background=True).start()
    assert d.read_text("health")  # served the moment the command returned
    d.sync()
    assert d.live() == peer_set.good_uris
    # The daemon itself holds SQLite's locks and the database's lock, not
    # a parent that forked after opening them.
    kinds = held_locks(d.pid)
    assert "POSIX" in kinds and "FLOCK" in kinds, "locks held by %d: %s" % (d.pid, kinds)
    t0 = time.monotonic()
    d.stop()
    assert time.monotonic() - t0 < STOP_LIMIT + 0.5


def test_background_warm_start_after_a_clean_stop(mounts, own_peers, tmp_path):
    ps = own_peers
    tmp = str(tmp_path)
    d = mounts.new(good_conf(ps, tmp), background=True).start()
    d.sync()
    live = d.live()
    assert live == ps.good_uris
    d.stop()
    con = sqlite3.connect(config_db(d.conf))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    # With the proxies gone, only the store can give the restarted mount
    # its pool: it is there when the command returns, before any check.
    ps.stop_proxies()
    holes = [peers.Peer("blackhole", p.host, p.port,
                        [peers.PYTHON, peers.__file__, "blackhole", p.host, str(p.port)],
                        os.path.join(tmp, "hole-%d.log" % p.port)).start() for p in ps.good]
    try:
        d.start()
        assert d.live() == live
    finally:
        for h in holes:
            h.stop()
    d.stop()


def test_a_start_that_fails_after_the_fork_says_why(mounts, peer_set, tmp_path):
    # The database's directory cannot be made: a failure of the background
    # daemon's own start, which its command must report and exit non-zero.
    tmp = str(tmp_path)
    blocker = os.path.join(tmp, "file")
    open(blocker, "w").close()
    conf = good_conf(peer_set, tmp)
    with open(conf) as f:
        text = f.read().replace("db = %s" % config_db(conf),
                                "db = %s" % os.path.join(blocker, "sub", "p.db"))
    with open(conf, "w") as f:
        f.write(text)
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt)
    p = subprocess.run([mounts.binary, "-c", conf, mnt], capture_output=True, text=True,
                       timeout=15)
    assert p.returncode == 1, p
    assert "p.db" in p.stderr or "sub" in p.stderr, p.stderr
    assert not is_mounted(mnt)


# --- one daemon per database, one mount per mountpoint ---

@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_second_daemon_on_the_same_database_is_refused(mounts, peer_set, tmp_path, background):
    tmp = str(tmp_path)
    conf = good_conf(peer_set, tmp)
    first = mounts.new(conf, background=True).start()
    other = os.path.join(tmp, "mnt2")
    os.makedirs(other)
    argv = [mounts.binary, "-c", conf, other] if background else \
        [mounts.binary, "-f", "-c", conf, other]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    finally:
        if is_mounted(other):
            subprocess.run(["fusermount3", "-uz", other])
    assert p.returncode != 0
    assert "in use by another proxyfs" in p.stderr and str(first.pid) in p.stderr, p.stderr
    assert not is_mounted(other)
    assert first.running()
    first.sync()
    first.stop()


@pytest.mark.parametrize("again", [[], ["-f"]], ids=["background", "foreground"])
def test_mounting_twice_is_refused(mounts, peer_set, tmp_path, again):
    conf = good_conf(peer_set, str(tmp_path))
    d = mounts.new(conf, background=True).start()
    before = mount_ids(d.mnt)
    p = subprocess.run([mounts.binary, *again, "-c", conf, d.mnt], capture_output=True,
                       text=True, timeout=15)
    assert p.returncode == 1, p
    assert "already mounted" in p.stderr, p.stderr
    assert mount_ids(d.mnt) == before, "a second mount was stacked"
    d.stop()
    assert not is_mounted(d.mnt)


# --- ends that always come ---

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_signal_ends_the_daemon_while_a_sync_waits(mounts, slow_conf, sig, background):
    d = mounts.new(slow_conf, background=background).start()
    w = waiting_writer(d)
    try:
        d.send_signal(sig)
        assert daemon_gone_within(d, STOP_LIMIT), "daemon still running %.0fs after signal %d" \
            % (STOP_LIMIT, sig)
        rc = w.wait(timeout=STOP_LIMIT)
    finally:
        if w.poll() is None:
            w.kill()
    assert rc != 0, "the waiting writer was told it succeeded"
    d.proc = d.pid = None
    wait_until(lambda: not is_mounted(d.mnt), WAIT_TIMEOUT, "the mount to go")


def test_sigint_stops_a_daemon_started_with_sigint_ignored(mounts, peer_set, tmp_path):
    # What `proxyfs ... &` in a script does: the shell starts it with
    # SIGINT ignored; the daemon must still stop on it.
    d = mounts.new(good_conf(peer_set, str(tmp_path)), background=True)
    os.makedirs(d.mnt, exist_ok=True)
    # Its log goes to a file: with no syslog the daemon keeps the stderr it
    # was given, and a pipe would never see its end.
    with open(d.logpath, "ab") as log:
        p = subprocess.run([d.binary, "-c", d.conf, d.mnt], stdout=log, stderr=log, timeout=15,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert p.returncode == 0, d.log()
    with open(config_db(d.conf) + ".lock") as f:
        d.pid = int(f.read().split(",")[0])
    d.stop(signal.SIGINT)


def test_unmount_ends_the_daemon_with_checks_in_flight(mounts, slow_conf):
    d = mounts.new(slow_conf).start()
    wait_until(lambda: d.read_json("stat.json")["engine"]["in_flight"] >= 1, WAIT_TIMEOUT,
               "a check in flight")
    p = subprocess.run(["fusermount3", "-u", d.mnt], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert daemon_gone_within(d, STOP_LIMIT)
    assert d.proc.returncode == 0
    d.proc = None


def test_ctrl_c_stops_a_waiting_writer_at_once(mounts, slow_conf):
    d = mounts.new(slow_conf).start()
    w = waiting_writer(d)
    w.send_signal(signal.SIGINT)
    try:
        w.wait(timeout=STOP_LIMIT)
    except subprocess.TimeoutExpired:
        w.kill()
        pytest.fail("a writer interrupted by SIGINT still waits")
    # A writer interrupted by a signal it handles gets EINTR, and the
    # daemon goes on serving.
    code = ("import os, signal\n"
            "class Stop(Exception): pass\n"
            "def on_alarm(*a): raise Stop()\n"
            "signal.signal(signal.SIGALRM, on_alarm)\n"
            "fd = os.open(%r, os.O_WRONLY)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.5)\n"
            "try:\n"
            "    os.write(fd, b'sync')\n"
            "    print('returned')\n"
            "except Stop:\n"
            "    print('interrupted')\n" % d.path("control/reload"))
    p = subprocess.run([peers.PYTHON, "-c", code], capture_output=True, text=True,
                       timeout=STOP_LIMIT + 5)
    assert p.stdout.strip() == "interrupted", p
    assert d.read_text("health")
    d.stop()


def test_sync_without_an_answering_judge_fails_at_once(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    conf = good_conf(peer_set, tmp)
    with open(conf) as f:
        text = f.read().replace("judge = %s" % peer_set.judge_url.rstrip("/") + "/",
                                "judge = http://127.0.0.1:19/")
    with open(conf, "w") as f:
        f.write(text)
    d = mounts.new(conf).start()
    wait_until(lambda: d.read_json("stat.json")["judges"][0]["error"] not in (None, "not probed yet"),
               WAIT_TIMEOUT, "the judge's first probe to fail")
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        d.write("control/reload", "sync\n", timeout=STOP_LIMIT)
    assert e.value.errno == errno.EHOSTUNREACH
    assert time.monotonic() - t0 < 1.0
    assert "judge" in d.read_text("health")
    d.stop()


# --- control writes: one open is one unit, and what close() returned from
# has reached the engine ---

def test_a_failed_write_fails_the_whole_open(fresh_pool, peer_set):
    uri = peer_set.extra.uri
    # bash's printf writes one line at a time: the good line's write
    # succeeds, the bad one's fails, and nothing may be applied.
    p = subprocess.run(["bash", "-c", "printf '%%s\\nnot a proxy\\n' '%s' > '%s'"
                        % (uri, fresh_pool.path("control/add"))],
                       capture_output=True, text=True, timeout=15)
    assert p.returncode != 0
    assert "Invalid argument" in p.stderr, p.stderr

    def two_writes():
        fd = os.open(fresh_pool.path("control/add"), os.O_WRONLY)
        try:
            os.write(fd, (uri + "\n").encode())
            with pytest.raises(OSError) as e:
                os.write(fd, b"garbage\n")
            assert e.value.errno == errno.EINVAL
        finally:
            with pytest.raises(OSError) as e:
                os.close(fd)
            assert e.value.errno == errno.EINVAL
    call_with_deadline(two_writes)
    fresh_pool.sync()
    assert uri not in fresh_pool.live()
    total = fresh_pool.read_json("stat.json")["pool"]["total"]
    assert total == peer_set.list_distinct(slow=False)


def test_add_then_sync_never_races(fresh_pool, peer_set):
    uri = peer_set.extra.uri
    for i in range(40):
        fresh_pool.write("control/add", uri + "\n")
        fresh_pool.sync()
        assert uri in fresh_pool.live(), "round %d: sync returned before the added proxy" % i
        fresh_pool.write("control/remove", uri + "\n")
        fresh_pool.sync()
        assert uri not in fresh_pool.live(), "round %d: removed proxy still live" % i
