#!/usr/bin/env bash
# Benchmark: `lifeboat k8s ls` (every object of a Kubernetes-shaped snapshot, with the file's
# trailer and structure checked first) and `lifeboat k8s get all -A --out DIR` (every object
# decoded to apply-ready YAML, one file each) against `etcdctl snapshot status` of the same file,
# the cheapest tool that reads the whole snapshot. One run, throwaway etcd 3.4 on 127.0.0.1.
#
#   bash bench/k8s.sh [SIZE_MIB]      (default 1024; results go to stdout)
#
# The snapshot holds protobuf ConfigMaps (k8s\0 + runtime.Unknown, as kube-apiserver writes
# them) of about 8 KiB in 200 namespaces, and JSON custom resources, some rewritten.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}

cargo build --release --quiet
LB=$PWD/target/release/lifeboat

bench_load() {
  python3 - "$1" "$2" <<'PY'
import base64, json, os, sys
sys.path.insert(0, "bench")
from gateway import Gateway, b64 as b
port, mib = int(sys.argv[1]), int(sys.argv[2])
txn = Gateway(port).txn
def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80); n >>= 7
    out.append(n); return bytes(out)
def fld(no, data): return varint(no << 3 | 2) + varint(len(data)) + data
def configmap(ns, name, i):
    meta = fld(1, name) + fld(3, ns) + fld(5, b"uid-%08d" % i) + fld(8, b"\x08\x80\xe4\xbd\xc8\x06") \
        + fld(11, fld(1, b"app") + fld(2, b"bench"))
    data = b"".join(fld(2, fld(1, b"key%02d" % k) + fld(2, base64.b64encode(os.urandom(150)))) for k in range(40))
    raw = fld(1, meta) + data
    return b"k8s\0" + fld(1, fld(1, b"v1") + fld(2, b"ConfigMap")) + fld(2, raw) + fld(3, b"") + fld(4, b"")
n = (mib << 20) // 8400
for start in range(0, n, 50):
    ops = []
    for i in range(start, min(start + 50, n)):
        ns, name = b"ns-%03d" % (i % 200), b"cm-%07d" % i
        if i % 10 == 0:
            v = json.dumps({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name.decode(), "namespace": ns.decode(), "uid": "w-%d" % i}, "spec": {"blob": base64.b64encode(os.urandom(6000)).decode()}}).encode()
            ops.append({"requestPut": {"key": b(b"/registry/example.com/widgets/" + ns + b"/" + name), "value": b(v)}})
        else:
            ops.append({"requestPut": {"key": b(b"/registry/configmaps/" + ns + b"/" + name), "value": b(configmap(ns, name, i))}})
    txn(ops)
for start in range(0, n // 20, 50):
    txn([{"requestPut": {"key": b(b"/registry/configmaps/ns-%03d/cm-%07d" % (i % 200, i)), "value": b(configmap(b"ns-%03d" % (i % 200), b"cm-%07d" % i, i))}} for i in range(start, min(start + 50, n // 20)) if i % 10])
PY
}

source bench/lib.sh

objects=$("$LB" k8s ls "$SNAP" -A --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
cat "$SNAP" >/dev/null
t_etcdctl=$(best etcdctl snapshot status "$SNAP" -w json)
t_ls=$(best "$LB" k8s ls "$SNAP" -A)
t_keys=$(best "$LB" inspect "$SNAP" --keys --json)
t_get=$(best sh -c "rm -rf '$WORK/out'; '$LB' k8s get '$SNAP' all -A --out '$WORK/out' >/dev/null 2>&1")
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
rss_etcdctl=$(rss etcdctl snapshot status "$SNAP" -w json)
rss_ls=$(rss "$LB" k8s ls "$SNAP" -A)
rm -rf "$WORK/out"
rss_get=$(/usr/bin/time -f %M "$LB" k8s get "$SNAP" all -A --out "$WORK/out" 2>&1 >/dev/null | tail -1)
files=$(ls "$WORK/out" | wc -l)
# One kind (the custom resources, a tenth of the objects): only their keys are held.
t_kind=$(best sh -c "'$LB' k8s get '$SNAP' widgets.example.com -A -o json >/dev/null")
rss_kind=$(rss "$LB" k8s get "$SNAP" widgets.example.com -A -o json)
# LB_BASELINE=/path/to/another/lifeboat measures that build's `get` of the same kind too.
if [ -n "${LB_BASELINE:-}" ]; then
  t_kind_base=$(best sh -c "'$LB_BASELINE' k8s get '$SNAP' widgets.example.com -A -o json >/dev/null")
  rss_kind_base=$(rss "$LB_BASELINE" k8s get "$SNAP" widgets.example.com -A -o json)
fi
# diff of the snapshot with itself: every key compared, nothing differs. With the default
# --index-memory both key lists are held at once; with smaller ones the keyspace is compared in
# partitions, one pass over both files each.
t_diff=$(best "$LB" diff "$SNAP" "$SNAP" --keys)
rss_diff=$(rss "$LB" diff "$SNAP" "$SNAP" --keys)
diff_rows=""
for m in 8MiB 2MiB; do
  t=$(best "$LB" diff "$SNAP" "$SNAP" --keys --index-memory $m)
  r=$(rss "$LB" diff "$SNAP" "$SNAP" --keys --index-memory $m)
  n=$("$LB" diff "$SNAP" "$SNAP" --keys --index-memory $m --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"])')
  diff_rows="$diff_rows$m $n $t $r
"
done

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "# $(date -u +%Y-%m-%d) $(nproc) cores, snapshot $((bytes >> 20)) MiB, $objects objects, best of $RUNS, tmpfs"
echo "| measure | seconds | ÷ etcdctl snapshot status | peak RSS MiB |"
echo "| --- | --- | --- | --- |"
echo "| etcdctl snapshot status | $t_etcdctl | 1.00 | $((rss_etcdctl / 1024)) |"
echo "| lifeboat inspect --keys --json | $t_keys | $(ratio "$t_keys" "$t_etcdctl") | |"
echo "| lifeboat k8s ls -A | $t_ls | $(ratio "$t_ls" "$t_etcdctl") | $((rss_ls / 1024)) |"
echo "| lifeboat k8s get all -A --out DIR ($files files) | $t_get | $(ratio "$t_get" "$t_etcdctl") | $((rss_get / 1024)) |"
echo "| lifeboat k8s get SNAP widgets.example.com -A -o json | $t_kind | $(ratio "$t_kind" "$t_etcdctl") | $((rss_kind / 1024)) |"
if [ -n "${LB_BASELINE:-}" ]; then
  echo "| baseline ($LB_BASELINE) k8s get SNAP widgets.example.com -A -o json | $t_kind_base | $(ratio "$t_kind_base" "$t_etcdctl") | $((rss_kind_base / 1024)) |"
fi
echo "| lifeboat diff SNAP SNAP --keys | $t_diff | $(ratio "$t_diff" "$t_etcdctl") | $((rss_diff / 1024)) |"
printf '%s' "$diff_rows" | while read -r m n t r; do
  echo "| lifeboat diff SNAP SNAP --keys --index-memory $m ($n partitions) | $t | $(ratio "$t" "$t_etcdctl") | $((r / 1024)) |"
done
