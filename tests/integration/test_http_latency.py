"""A keep-alive client gets big answers at once, not a delayed ACK later.

An answer bigger than one of the front's writes (all.json of a pool with
300 dead proxies, some 70 KB) is asked for ten times on one keep-alive
connection, one request after the other, as a script that polls the API
does. Each must come in well under the 40 ms a client's delayed ACK
holds a segment that Nagle's rule keeps back; on loopback the answer
takes well under a millisecond.
"""

import http.client
import time

import hostile
import peers
from conftest import write_config, write_list

REQUESTS = 10
MEDIAN_MAX_MS = 20.0  # the delayed ACK is 40 ms at least


def test_big_answers_on_keep_alive_are_not_delayed(mounts, peer_set, tmp_path):
    tmp = str(tmp_path)
    port = peers.free_port("127.0.0.1")
    lst = write_list(tmp, peer_set.list_text(slow=False) + "".join(
        uri + "\n" for uri in hostile.closed_uris(300)))
    conf = write_config(tmp, peer_set.judge, lst,
                        extra="\n[http]\nlisten = 127.0.0.1:%d\nrate = 0\n" % port)
    d = mounts.new(conf).start()
    d.sync()
    want = d.read("all.json")
    assert len(want) > 65536, "all.json is only %d bytes" % len(want)

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    took = []
    for _ in range(REQUESTS):
        t0 = time.monotonic()
        c.request("GET", "/all.json")
        r = c.getresponse()
        body = r.read()
        took.append((time.monotonic() - t0) * 1000)
        assert r.status == 200 and len(body) > 65536, (r.status, len(body))
    c.close()
    took.sort()
    assert took[REQUESTS // 2] < MEDIAN_MAX_MS, \
        "GET /all.json (%d bytes) on a keep-alive connection: median %.1f ms, all %s" % (
            len(want), took[REQUESTS // 2], ["%.1f" % t for t in took])
    d.stop()
