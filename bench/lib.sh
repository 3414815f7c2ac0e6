# Shared by the benchmarks: a throwaway etcd 3.4 on 127.0.0.1 loaded with SIZE_MIB of data and
# its snapshot, and a best-of-N timer. Source it after setting SIZE_MIB and RUNS; it sets WORK,
# EP, SNAP and bytes, and removes everything on exit.

WORK=$(mktemp -d /dev/shm/lifeboat-bench.XXXXXX)
pid=""
extra_pids=""
cleanup() { for p in $pid $extra_pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port=$((30000 + RANDOM % 20000))
EP=http://127.0.0.1:$port
etcd --name b --data-dir "$WORK/data" --quota-backend-bytes $((8 << 30)) \
  --listen-client-urls $EP --advertise-client-urls $EP \
  --listen-peer-urls http://127.0.0.1:$((port + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((port + 1)) \
  --initial-cluster b=http://127.0.0.1:$((port + 1)) >"$WORK/etcd.log" 2>&1 &
pid=$!
export ETCDCTL_API=3
until etcdctl --endpoints=$EP endpoint health >/dev/null 2>&1; do sleep 0.2; done

# A benchmark may define bench_load (called with the client port and SIZE_MIB) to load its own
# data. The default loads through the JSON gateway on one keep-alive connection: a fifth of the
# bytes as 1 KiB values (many small keys, like Kubernetes objects), the rest as 64 KiB values;
# some overwrites.
if declare -F bench_load >/dev/null; then bench_load "$port" "$SIZE_MIB"; else
python3 - "$port" "$SIZE_MIB" <<'PY'
import os, sys
sys.path.insert(0, "bench")
from gateway import Gateway, b64 as b
port, mib = int(sys.argv[1]), int(sys.argv[2])
txn = Gateway(port).txn
small = (mib << 20) // 5 // 1024
for start in range(0, small, 100):
    txn([{"requestPut": {"key": b(b"/registry/small/%08d" % i), "value": b(os.urandom(768) + b"x" * 256)}} for i in range(start, min(start + 100, small))])
big = (mib << 20) * 4 // 5 // 65536
for start in range(0, big, 16):
    txn([{"requestPut": {"key": b(b"/registry/big/%06d" % i), "value": b(os.urandom(32768) + b"y" * 32768)}} for i in range(start, min(start + 16, big))])
for start in range(0, small // 10, 100):
    txn([{"requestPut": {"key": b(b"/registry/small/%08d" % i), "value": b(b"overwritten")}} for i in range(start, min(start + 100, small // 10))])
PY
fi
SNAP=$WORK/snap.db
etcdctl --endpoints=$EP snapshot save "$SNAP" >/dev/null
sync
bytes=$(stat -c %s "$SNAP")

# best-of-$RUNS wall time in seconds; the file stays in the page cache (warm) for every tool.
best() {
  python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
t = []
for _ in range(runs):
    s = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t.append(time.perf_counter() - s)
print(f"{min(t):.3f}")
PY
}

# start_moto: an S3 server (moto, $MOTO) on a free loopback port with a bucket "bench"; sets
# s3_port and the AWS_* variables lifeboat reads; stopped on exit.
start_moto() {
  s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$MOTO" -H 127.0.0.1 -p "$s3_port" >"$WORK/moto.log" 2>&1 &
  extra_pids="$extra_pids $!"
  until curl -fsS "http://127.0.0.1:$s3_port/" >/dev/null 2>&1; do sleep 0.2; done
  curl -fsS -X PUT "http://127.0.0.1:$s3_port/bench" >/dev/null
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
}
