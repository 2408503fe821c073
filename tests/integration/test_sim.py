"""`proxyfs check` against the simulator: 2,000 proxies of every kind (alive
HTTP, SOCKS4, SOCKS5, SOCKS5 with a password, slow; refused, blackholes,
liars, garbage, early closes) whose truth is known. What a user sees on
stdout must be exactly the live ones, each once, also when descriptors are
scarce (`ulimit -n 256` with `--concurrency 5000`): fewer descriptors may
cost time, never a wrong answer.

The simulator is tests/sim/proxysim (PROXYSIM_BIN, default
build/tests/sim/proxysim), started in its own session, ready when it writes
"ready" to a pipe, and stopped by its PID with SIGTERM, which must exit 0.
It also serves the judge, which proxyfs probes directly before checking;
the simulated proxies answer as if they had fetched it.
"""

import os
import signal
import subprocess

import pytest

import peers

SIM_COUNT = 2000
SIM_SEED = 4242
EXPECT = "PROXYFS-SIM-OK"
READY_TIMEOUT = 15.0
CHECK_TIMEOUT = 60.0
ALIVE_KINDS = ("alive_http", "alive_socks4", "alive_socks5", "alive_socks5_auth", "slow")


class Sim:
    """One proxysim: its list, its truth, and each proxy's kind."""

    def __init__(self, tmp, count, seed):
        binary = peers.proxysim_bin()
        if not os.access(binary, os.X_OK):
            pytest.fail("proxysim %s not found (build it, or set PROXYSIM_BIN)" % binary)
        self.list = os.path.join(tmp, "sim.list")
        self.truth_path = os.path.join(tmp, "sim.truth")
        self.kinds_path = os.path.join(tmp, "sim.kinds")
        self.logpath = os.path.join(tmp, "proxysim.log")
        judge_file = os.path.join(tmp, "sim.judge")
        self.proc, said = peers.start_ready(
            [binary, "--count", str(count), "--seed", str(seed), "--list", self.list,
             "--truth", self.truth_path, "--kinds", self.kinds_path,
             "--judge-file", judge_file, "--expect", EXPECT],
            self.logpath, READY_TIMEOUT)
        if said != b"ready\n":
            self.kill()
            pytest.fail("proxysim did not get ready; log:\n%s" % self.log())
        with open(judge_file) as f:
            self.judge = f.read().strip()
        with open(self.truth_path) as f:
            self.truth = set(f.read().split())
        self.kind = {}
        with open(self.kinds_path) as f:
            for line in f:
                kind, uri = line.split()
                self.kind[uri] = kind

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def stop(self):
        """SIGTERM; the simulator must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("proxysim ignored SIGTERM")
        assert rc == 0, "proxysim exited %s; log:\n%s" % (rc, self.log())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def first_of(self, kind):
        return next(u for u, k in self.kind.items() if k == kind)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Sim(str(tmp_path_factory.mktemp("sim")), SIM_COUNT, SIM_SEED)
    try:
        yield s
        s.stop()
    finally:
        s.kill()


def run_check(binary, sim, *extra, nofile=None):
    """`proxyfs check` on the simulator's list; skips the test while the
    command says it is not implemented."""
    argv = [binary, "check", "--judge", sim.judge, "--expect", EXPECT, "--timeout", "2000",
            *extra, sim.list]
    if nofile:
        argv = ["bash", "-c", 'ulimit -n %d && exec "$@"' % nofile, "bash", *argv]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("proxyfs check did not finish within %.0fs" % CHECK_TIMEOUT)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0 and "not implemented" in err.lower():
        pytest.skip("proxyfs check is not implemented yet: " + err.strip()[:200])
    assert p.returncode == 0, "proxyfs check exited %d:\n%s" % (p.returncode, err[-3000:])
    return p.stdout.decode().splitlines(), err


def assert_truth(sim, lines, err):
    got = set(lines)
    fp = sorted(got - sim.truth)
    fn = sorted(sim.truth - got)
    detail = "".join("\n  false positive: %s (%s)" % (u, sim.kind.get(u, "not listed"))
                     for u in fp[:10])
    detail += "".join("\n  false negative: %s (%s)" % (u, sim.kind[u]) for u in fn[:10])
    assert not fp and not fn, ("%d false positives, %d false negatives:%s\nstderr:\n%s"
                               % (len(fp), len(fn), detail, err[-2000:]))
    assert len(lines) == len(got), "a live proxy printed more than once"
    assert "checked" in err and str(SIM_COUNT) in err, "no summary on stderr:\n" + err[-2000:]


def test_simulator_behaves_as_its_truth_says(sim):
    """curl through one proxy of each kind: the alive ones reach the judge,
    the others do not; otherwise a proxyfs result would prove nothing. The
    judge answers directly too."""
    assert {sim.kind[u] for u in sim.truth} == set(ALIVE_KINDS)
    rc, out = peers.curl_through("", sim.judge, timeout=1)
    assert rc == 0 and EXPECT in out, "the judge does not answer: curl %d: %s" % (rc, out)
    for kind in sorted(set(sim.kind.values())):
        uri = sim.first_of(kind)
        rc, out = peers.curl_through(uri, sim.judge, timeout=1)
        if kind in ALIVE_KINDS:
            assert rc == 0 and EXPECT in out, "%s %s: curl %d: %s" % (kind, uri, rc, out)
        else:
            assert EXPECT not in out, "%s %s reached the judge" % (kind, uri)


def test_check_prints_exactly_the_live_proxies(binary, sim):
    lines, err = run_check(binary, sim)
    assert_truth(sim, lines, err)


def test_check_is_exact_when_descriptors_are_scarce(binary, sim):
    lines, err = run_check(binary, sim, "--concurrency", "5000", nofile=256)
    assert_truth(sim, lines, err)
