"""The benchmarks' loaders: etcd's JSON gateway on one keep-alive connection."""
import base64
import http.client
import json


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


class Gateway:
    def __init__(self, port: int):
        self.c = http.client.HTTPConnection("127.0.0.1", port)

    def txn(self, ops):
        """One transaction of puts ({"requestPut": {"key": b64, "value": b64}})."""
        self.c.request("POST", "/v3/kv/txn", json.dumps({"success": ops}))
        r = self.c.getresponse()
        body = r.read()
        assert r.status == 200, body
