"""A real Prometheus scrapes the HTTP front's /metrics.

The daemon runs with `--http` on a free loopback port; Debian's prometheus
server (installed by scripts/install-deps.sh as /usr/local/bin/prometheus)
is started on another, with its own storage directory and a scrape config
of one job, `proxyfs`, scraping /metrics every second. The test waits for
its /-/ready, then asks its query API until `up{job="proxyfs"}` is 1 and a
`proxyfs_` series of that job is stored: what a user's Prometheus would
show. Prometheus is stopped by its PID.
"""

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

import peers
from conftest import wait_until, write_config, write_list

READY_TIMEOUT = 10.0  # the front, and Prometheus, to serve
SCRAPE_TIMEOUT = 10.0  # the first scrapes (every second) to be queryable


def prometheus_bin():
    for p in (shutil.which("prometheus"), "/usr/local/bin/prometheus"):
        if p and os.access(p, os.X_OK):
            return p
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus missing in CI (scripts/install-deps.sh installs it)")
    pytest.skip("prometheus not installed (scripts/install-deps.sh installs it)")


def http_get(url, timeout=2.0):
    """(status, body) of a GET; (None, reason) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()


class Prometheus:
    """One prometheus server on loopback, scraping target's /metrics."""

    def __init__(self, binary, tmp, target):
        self.tmp = tmp
        self.port = peers.free_port("127.0.0.1")
        self.url = "http://127.0.0.1:%d" % self.port
        conf = os.path.join(tmp, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: proxyfs\n"
                    "    metrics_path: /metrics\n"
                    "    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        self.logpath = os.path.join(tmp, "prometheus.log")
        with open(self.logpath, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--config.file=" + conf,
                 "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % self.port],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def ready(self):
        if self.proc.poll() is not None:
            pytest.fail("prometheus exited with %s; log:\n%s" % (self.proc.returncode,
                                                                 self.log()))
        return http_get(self.url + "/-/ready")[0] == 200

    def query(self, expr):
        """The result vector of an instant query (a list of samples)."""
        status, body = http_get(self.url + "/api/v1/query?" +
                                urllib.parse.urlencode({"query": expr}))
        assert status == 200, "query %r: %s %r" % (expr, status, body[:500])
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def test_prometheus_scrapes_the_http_front(mounts, peer_set, tmp_path):
    prom_binary = prometheus_bin()
    tmp = str(tmp_path)
    port = peers.free_port("127.0.0.1")
    conf = write_config(tmp, peer_set.judge, write_list(tmp, "%s\n" % peer_set.tinyproxy.line))
    d = mounts.new(conf).start(extra_args=("--http", "127.0.0.1:%d" % port))
    front = "http://127.0.0.1:%d" % port
    wait_until(lambda: http_get(front + "/metrics")[0] == 200, READY_TIMEOUT,
               "the HTTP front's /metrics")

    prom = Prometheus(prom_binary, tmp, "127.0.0.1:%d" % port)
    try:
        wait_until(prom.ready, READY_TIMEOUT, "prometheus /-/ready")

        def up():
            r = prom.query('up{job="proxyfs"}')
            return r and r[0]["value"][1] == "1"
        wait_until(up, SCRAPE_TIMEOUT, 'up{job="proxyfs"} == 1', interval=0.2)

        series = wait_until(
            lambda: prom.query('{job="proxyfs",__name__=~"proxyfs_.+"}'), SCRAPE_TIMEOUT,
            "a proxyfs_ series in prometheus", interval=0.2)
        names = {s["metric"]["__name__"] for s in series}
        assert "proxyfs_build_info" in names, sorted(names)
        # The front's own figures are among them, counted by the scrapes.
        requests = prom.query('sum(proxyfs_http_requests_total{job="proxyfs"})')
        assert requests and float(requests[0]["value"][1]) >= 1, requests
        # No scrape failed: every sample was parsed.
        failed = prom.query('scrape_samples_post_metric_relabeling{job="proxyfs"} == 0')
        assert failed == [], failed
    finally:
        prom.stop()
    assert d.running(), "proxyfs died while scraped; log:\n%s" % d.log()
    d.stop()
