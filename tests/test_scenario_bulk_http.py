"""Issue 14's scenario through the CLI: a bulk run of 20 hosts collects their IPs from a local HTTP service into
its result list; one host meets an HTTP 500, retried by `retry 2`, pauses; the service is fixed and the run
resumed; then the record of host 7 is made again with `weft rerun PARENT STEP --item 7`."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

pytestmark = pytest.mark.slow  # 20 sub-runs, several weft processes

FLOW = """
flow hosts(names: list[str], url: str) -> (ips: list[(ip: any)?]) {
    made = each h in names concurrency 5 {
        r = std.http.request(url: "${url}/hosts/${h}", method: "POST") retry 2 backoff 10ms
        return (ip: r.json.ip)
    }
    return (ips: made.results)
}
"""


class _Proxy(BaseHTTPRequestHandler):
    """POST /hosts/hN makes host N's record (its address 10.0.0.N); while `broken` holds a name, that host is a 500."""

    broken: ClassVar[set[str]] = set()
    made: ClassVar[Counter] = Counter()
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        name = self.path.rsplit("/", 1)[-1]
        with self.lock:
            if name in self.broken:
                status, body = 500, {"error": f"{name}: database locked"}
            else:
                self.made[name] += 1
                status, body = 201, {"ip": f"10.0.0.{name[1:]}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    handler = type("Proxy", (_Proxy,), {"broken": {"h13"}, "made": Counter()})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.handler = handler
    yield srv
    srv.shutdown()
    srv.server_close()


def test_twenty_hosts_one_500_resumed_then_host_7_made_again(weft, proxy):
    (weft.folder / "hosts.flow").write_text(FLOW)
    names = json.dumps([f"h{i}" for i in range(1, 21)])
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    rid, done = weft.run("hosts.flow", "-i", f"names={names}", "-i", f"url={url}", code=3)
    assert "1 of 20 sub-runs did not succeed" in done.stdout
    subs = {s["parent"]["index"] + 1: s for s in weft.show(rid)["steps"][0]["sub_runs"]}
    assert [i for i, s in subs.items() if s["state"] != "succeeded"] == [13]
    history = weft.show(subs[13]["id"])["history"]
    retries = [e["detail"] for e in history if e.get("step") == "r" and e.get("state") == "pending"]
    assert len(retries) == 2 and all('answered 500: \'{"error": "h13: database locked"}\'' in d for d in retries)

    proxy.handler.broken.clear()  # the service is fixed
    done = weft("resume", rid, code=0)
    result = json.loads(done.stdout.splitlines()[-1].removeprefix("result: "))
    assert result == {"ips": [{"ip": f"10.0.0.{i}"} for i in range(1, 21)]}
    assert proxy.handler.made == Counter({f"h{i}": 1 for i in range(1, 21)})

    done = weft("rerun", rid, "made", "--item", "7", code=0)  # the proxy lost host 7's record
    assert done.stdout.splitlines()[0] == f"run {subs[7]['id']} (item 7 of {rid} made): re-running r"
    assert proxy.handler.made["h7"] == 2 and sum(proxy.handler.made.values()) == 21
    assert weft.show(rid)["state"] == "succeeded" and weft.show(subs[7]["id"])["result"] == {"ip": "10.0.0.7"}
