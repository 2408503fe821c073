"""[gateway] and --gateway as the daemon takes them: what a user sees at
start and at a reload (the gateway itself: test_gateway.py).

[gateway] is read at start only; a reload that changes it says so in the
log, and the addresses --gateway added are no change. Bad values are a
usage error (status 2) naming the file, line and key before anything is
mounted.
"""

import collections
import os
import subprocess

import peers
from conftest import write_config, write_list

EXIT_USAGE = 2
# A judge nobody asks: these daemons never get as far as checking.
NO_JUDGE = collections.namedtuple("Judge", "host port")("127.0.0.1", 9)


def run_start(binary, tmp, conf, *args):
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt, exist_ok=True)
    return subprocess.run([binary, "-f", "-c", conf, *args, mnt], capture_output=True,
                          text=True, timeout=20)


def test_bad_gateway_settings_stop_the_start(binary, tmp_path):
    tmp = str(tmp_path)
    lst = write_list(tmp, "")
    conf = write_config(tmp, NO_JUDGE, lst)
    p = run_start(binary, tmp, conf, "--gateway", "localhost:8899")
    assert p.returncode == EXIT_USAGE
    assert "--gateway 'localhost:8899' has no numeric address" in p.stderr
    conf = write_config(tmp, NO_JUDGE, lst,
                        extra="\n[gateway]\nlisten = 127.0.0.1:8899\npolicy = fastest_first\n")
    p = run_start(binary, tmp, conf)
    assert p.returncode == EXIT_USAGE
    assert "[gateway] policy: 'fastest_first' is not one of random, round_robin, fastest" \
        in p.stderr
    # A user the user-name options would cut could never log in.
    conf = write_config(tmp, NO_JUDGE, lst,
                        extra="\n[gateway]\nauth = crawler-session-1:pw\n")
    p = run_start(binary, tmp, conf)
    assert p.returncode == EXIT_USAGE
    assert "[gateway] auth: " in p.stderr and "crawler-session-1" in p.stderr


def test_reload_that_changes_gateway_says_it_waits_for_a_restart(mounts, tmp_path, peer_set):
    port = peers.free_port("127.0.0.1")
    extra = peers.free_port("127.0.0.1")
    tmp = str(tmp_path)
    lst = write_list(tmp, peer_set.list_text(slow=False))
    conf = write_config(tmp, peer_set.judge, lst,
                        extra="\n[gateway]\nlisten = 127.0.0.1:%d\nretries = 1\n" % port)
    d = mounts.new(conf).start(extra_args=["--gateway", "127.0.0.1:%d" % extra])
    # The same file: the listen from --gateway is no change. The write of
    # reload returns once the file was read again.
    d.write("control/reload", "reload\n")
    assert "[gateway] changed" not in d.log()
    write_config(tmp, peer_set.judge, lst,
                 extra="\n[gateway]\nlisten = 127.0.0.1:%d\nretries = 3\n" % port)
    d.write("control/reload", "reload\n")
    assert "[gateway] changed; it takes effect at the next start" in d.log()
    d.stop()
