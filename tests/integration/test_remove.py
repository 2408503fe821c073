"""control/remove as a user types it: a line without credentials removes
every credential variant of its scheme, host and port (and only those),
persistently; a line the pool never had is still kept out, and logged.

One daemon of the test's own over a local list of the session's peers;
`sync` is the readiness signal, and a restart shows what was persisted.
"""

import os

from conftest import Mounts, wait_until
from test_sources_remote import write_conf

READY_TIMEOUT = 30.0


def whole_log(d):
    with open(d.logpath, "rb") as f:
        return f.read().decode(errors="replace")


def write_list(path, lines):
    with open(path + ".new", "w") as f:
        f.write("".join("%s\n" % line for line in lines))
    os.replace(path + ".new", path)


def test_remove_bare_line_takes_credential_variants(binary, peer_set, tmp_path):
    ps = peer_set
    tmp = str(tmp_path)
    t, s5a, s5 = ps.tinyproxy, ps.socks5_auth, ps.socks5
    # tinyproxy asks for no credentials, so it is alive with or without.
    t_cred = "http://bob:pw@%s:%d" % (t.host, t.port)
    listed = [t.uri, t_cred, s5a.uri, s5.uri]
    path = os.path.join(tmp, "list.txt")
    write_list(path, listed)
    conf = write_conf(tmp, ps.judge, [("local", {"url": path})])
    mounts = Mounts(binary, tmp)
    try:
        d = mounts.new(conf).start()
        wait_until(lambda: d.live() == set(listed), READY_TIMEOUT, "all listed live")

        # socks5://H:P removes socks5://alice:s3cret@H:P; nothing else.
        bare = "socks5://%s:%d" % (s5a.host, s5a.port)
        d.write("control/remove", bare + "\n")
        want = {t.uri, t_cred, s5.uri}
        wait_until(lambda: d.live() == want, READY_TIMEOUT, "live.txt == %r" % sorted(want))
        # http://H:P removes itself and its credential variant.
        d.write("control/remove", t.uri + "\n")
        wait_until(lambda: d.live() == {s5.uri}, READY_TIMEOUT, "only socks5 left")
        d.sync()  # the list still names them all: they stay out
        assert d.live() == {s5.uri}
        assert d.read_json("stat.json")["pool"]["removed"] == 4  # 3 variants + the bare line
        # The variants are named in the log by their user, never with the
        # password.
        assert "also its variant with user alice" in d.log()
        assert "s3cret" not in d.log() and ":pw@" not in d.log()
        d.stop()

        d = mounts.new(conf).start()
        d.sync()
        assert d.live() == {s5.uri}
        # Adding a variant back lifts that one line only.
        d.write("control/add", t_cred + "\n")
        wait_until(lambda: d.live() == {s5.uri, t_cred}, READY_TIMEOUT, "t_cred back")
        d.stop()
    finally:
        mounts.cleanup()


def test_remove_unknown_is_kept_out_and_logged(binary, peer_set, tmp_path):
    ps = peer_set
    tmp = str(tmp_path)
    path = os.path.join(tmp, "list.txt")
    write_list(path, [ps.socks5.uri])
    conf = write_conf(tmp, ps.judge, [("local", {"url": path})])
    mounts = Mounts(binary, tmp)
    try:
        d = mounts.new(conf).start()
        wait_until(lambda: d.live() == {ps.socks5.uri}, READY_TIMEOUT, "socks5 live")
        uri = ps.socks4.uri
        d.write("control/remove", uri + "\n")
        d.sync()  # the remove was applied before the rescan it queued behind
        assert "remove %s: not in the pool" % uri in whole_log(d)
        # A source that lists it later does not bring it in.
        write_list(path, [ps.socks5.uri, uri])
        d.sync()
        assert d.live() == {ps.socks5.uri}
        # A known proxy removed is not reported as unknown.
        d.write("control/remove", ps.socks5.uri + "\n")
        d.sync()
        assert d.live() == set()
        assert "remove %s: not in the pool" % ps.socks5.uri not in whole_log(d)
        d.stop()
    finally:
        mounts.cleanup()
