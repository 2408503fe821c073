"""A judge that goes down between its probes, under pools of any size.

The judge is probed once an hour here (judge_probe_s = 3600), so the only
thing that can notice it gone is the checks: the live proxies are
re-checked every second and all fail once the judge stops. A run of
failures covering most of what was alive must make the daemon probe the
judges before applying any of them, whatever the pool's size: so the pool
stays as it was, health says why checking waits, and once the judge is
back checking resumes with nothing lost.

The pool is N live proxies served by one microsocks listening on every
loopback address: socks5://127.0.0.K:PORT for N values of K are N
proxies to the daemon. The judge is `proxyfs judge`, stopped by its PID
and restarted on the same port.
"""

import os

import pytest

import judging
import peers
from conftest import wait_until

OUTAGE_TIMEOUT = 20.0   # the re-checks noticing the judge gone, or back


def wide_microsocks(tmp):
    """One microsocks on 0.0.0.0, connecting out from PROXY_OUT."""
    def make(port):
        return peers.Peer("microsocks-any", "127.0.0.1", port,
                          ["microsocks", "-i", "0.0.0.0", "-p", str(port),
                           "-b", judging.PROXY_OUT],
                          os.path.join(tmp, "microsocks-any-%d.log" % port))
    return judging._start("0.0.0.0", make)


def health(d):
    return d.read_text("health").rstrip("\n")


def pool_counts(d):
    pool = d.read_json("stat.json")["pool"]
    return {k: pool[k] for k in ("total", "alive", "dead", "unknown")}


@pytest.mark.parametrize("n", [3, 300])
def test_judge_down_between_probes_keeps_the_pool(binary, mounts, tmp_path, n):
    tmp = str(tmp_path)
    judge = judging.start_judge(binary, tmp)
    socks = wide_microsocks(tmp)
    try:
        uris = ["socks5://127.0.%d.%d:%d" % (3 + k // 200, 10 + k % 200, socks.port)
                for k in range(n)]
        lst = judging.write_list(tmp, uris)
        conf = judging.write_conf(tmp, [judge.url], lst,
                                  check={"recheck_s": 1, "judge_probe_s": 3600,
                                         "retry_min_s": 1, "retry_max_s": 1})
        d = mounts.new(conf).start()
        d.sync()
        live = sorted(uris)
        assert sorted(d.live()) == live, d.log()
        pool = pool_counts(d)
        assert pool["alive"] == n, pool

        port = judge.port
        assert judge.stop() == 0, judge.log()
        # Every live proxy is re-checked within a second or two and fails.
        h = wait_until(lambda: (health(d).startswith("degraded: no judge reachable")
                                or pool_counts(d)["alive"] < n) and health(d),
                       OUTAGE_TIMEOUT, "the outage to be noticed")
        assert pool_counts(d) == pool, "proxies lost to a judge outage:\n%s" % d.log()
        assert sorted(d.live()) == live
        assert h.startswith("degraded: no judge reachable"), h
        st = d.read_json("stat.json")
        assert st["engine"]["paused"] is True and st["engine"]["held"] > 0, st["engine"]
        assert st["engine"]["checks"].get("ok", 0) >= n

        judge = judging.start_judge(binary, tmp, port)
        d.write("control/reload", "reload\n")  # a config reload probes the judges
        wait_until(lambda: health(d) == "ok", OUTAGE_TIMEOUT, "health to be ok again")
        d.sync()
        assert sorted(d.live()) == live
        assert pool_counts(d) == pool
        d.stop()
    finally:
        judge.kill()
        socks.stop()
