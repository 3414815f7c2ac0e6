#!/usr/bin/env bash
# Benchmark of the revision log (spec.pitr), in one run against a throwaway etcd 3.4 on tmpfs:
#
#  1. recovery point under a steady load: for every write, the time from its acknowledgement
#     to the commit of the segment holding it (the segment manifest's mtime);
#  2. the streamer's memory (VmRSS sampled every second, and VmHWM) while clients write as fast
#     as the cluster takes them;
#  3. replay speed: `lifeboat restore --to-revision <head>` over everything written, in
#     revisions per second, set against the rate the same etcd took the writes at.
#
#   bash bench/pitr.sh [STEADY_RATE] [STEADY_SECONDS] [BURST_SECONDS] [SEGMENT_MAX_AGE]
#   (defaults 200 writes/s, 60 s, 30 s, 10s; results go to stdout)
#
# Needs etcd/etcdctl 3.4, age (apt install age), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-200}
STEADY=${2:-60}
BURST=${3:-30}
AGE=${4:-10s}
SIZE_MIB=16
RUNS=1
command -v age-keygen >/dev/null || { echo "pitr.sh: age not found (apt-get install age)" >&2; exit 1; }

cargo build --release --quiet
LB=$PWD/target/release/lifeboat
source bench/lib.sh

age-keygen -o "$WORK/key.txt" 2>/dev/null
rcpt=$(age-keygen -y "$WORK/key.txt")
mkdir -p "$WORK/spool" "$WORK/local" "$WORK/out"
cat >"$WORK/policy.yaml" <<YAML
apiVersion: lifeboat/v1
kind: BackupPolicy
metadata: {name: bench}
spec:
  cluster: {endpoints: ["$EP"]}
  snapshot: {spoolDir: $WORK/spool}
  encryption: {recipients: ["$rcpt"]}
  destinations:
    - {name: local, url: "file://$WORK/local"}
  pitr: {segmentMaxAge: $AGE}
YAML
"$LB" revlog --policy "$WORK/policy.yaml" 2>"$WORK/revlog.log" &
rl=$!
extra_pids=$rl
until ls "$WORK"/local/bench/*.manifest.json >/dev/null 2>&1; do sleep 0.2; done

# Load: a steady rate, then bursts from 8 connections; every acknowledged write's revision and
# time go to writes.tsv; the streamer's VmRSS is sampled every second.
python3 - "$port" "$RATE" "$STEADY" "$BURST" "$rl" "$WORK" <<'PY'
import base64, http.client, json, os, sys, threading, time
port, rate, steady, burst, rl, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
b = lambda s: base64.b64encode(s).decode()
def conn(): return http.client.HTTPConnection("127.0.0.1", port)
def put(c, k, v):
    c.request("POST", "/v3/kv/put", json.dumps({"key": b(k), "value": b(v)}))
    r = c.getresponse(); body = json.loads(r.read())
    return int(body["header"]["revision"])
rss = []
stop = threading.Event()
def sample():
    while not stop.is_set():
        for line in open(f"/proc/{rl}/status"):
            if line.startswith("VmRSS:"): rss.append(int(line.split()[1]))
        time.sleep(1)
threading.Thread(target=sample, daemon=True).start()
out = open(f"{work}/writes.tsv", "w")
c = conn()
t0 = time.time(); n = 0
while time.time() - t0 < steady:
    due = t0 + n / rate
    if due > time.time(): time.sleep(due - time.time())
    rev = put(c, b"/steady/%08d" % (n % 5000), os.urandom(200))
    out.write(f"steady\t{rev}\t{time.time():.6f}\n"); n += 1
lock = threading.Lock(); counts = [0]
def burster(i):
    c = conn(); t = time.time(); k = 0
    while time.time() - t < burst:
        rev = put(c, b"/burst/%d/%06d" % (i, k % 2000), os.urandom(200))
        with lock:
            counts[0] += 1
            out.write(f"burst\t{rev}\t{time.time():.6f}\n")
        k += 1
tb = time.time()
ts = [threading.Thread(target=burster, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
took = time.time() - tb
stop.set(); out.close()
json.dump({"steady": n, "burst": counts[0], "burst_rate": counts[0] / took, "rss_kib": rss}, open(f"{work}/load.json", "w"))
PY
head_rev=$(etcdctl --endpoints=$EP get x -w json | python3 -c 'import json,sys;print(json.load(sys.stdin)["header"]["revision"])')
until python3 - "$WORK" "$head_rev" <<'PY'
import glob, os, sys
work, head = sys.argv[1], int(sys.argv[2])
lasts = [int(os.path.basename(p).split("-")[1].split(".")[0]) for p in glob.glob(f"{work}/local/bench/revlog/*/*.seg.json")]
sys.exit(0 if lasts and max(lasts) >= head else 1)
PY
do sleep 0.5; done
hwm=$(awk '/VmHWM/ {print $2}' /proc/$rl/status)
kill -TERM $rl; wait $rl 2>/dev/null || true

# Replay everything written into a throwaway etcd and stage it.
s=$(date +%s.%N)
"$LB" restore --policy "$WORK/policy.yaml" --to-revision "$head_rev" --identity "$WORK/key.txt" \
  --output "$WORK/out/pit.db" --yes --json >"$WORK/restore.json" 2>"$WORK/restore.log"
e=$(date +%s.%N)

python3 - "$WORK" "$head_rev" "$hwm" "$s" "$e" "$RATE" "$AGE" <<'PY'
import glob, json, os, statistics, sys
work, head, hwm, s, e, rate, age = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
segs = []
for p in glob.glob(f"{work}/local/bench/revlog/*/*.seg.json"):
    m = json.load(open(p))
    segs.append((m["firstRevision"], m["lastRevision"], os.path.getmtime(p), m["stored"]["size"], m["plaintextSize"]))
segs.sort()
def committed_at(rev):
    for f, l, t, _, _ in segs:
        if f <= rev <= l: return t
rpo = {"steady": [], "burst": []}
for line in open(f"{work}/writes.tsv"):
    phase, rev, t = line.split("\t"); c = committed_at(int(rev))
    rpo[phase].append(c - float(t))
load = json.load(open(f"{work}/load.json"))
r = json.load(open(f"{work}/restore.json"))["pointInTime"]
replayed, took = r["revisionsReplayed"], e - s
q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
print(f"machine: {os.cpu_count()} cores, etcd 3.4 on tmpfs, local destination on tmpfs, age + zstd 3; segmentMaxAge {age}")
print(f"segments: {len(segs)}, {sum(x[4] for x in segs)/2**20:.1f} MiB plaintext, {sum(x[3] for x in segs)/2**20:.1f} MiB stored")
for ph in ("steady", "burst"):
    v = rpo[ph]
    print(f"recovery point, {ph:6} ({len(v)} writes): p50 {q(v,.5):6.2f} s  p99 {q(v,.99):6.2f} s  max {max(v):6.2f} s")
print(f"burst write rate the cluster took (8 clients): {load['burst_rate']:.0f} revisions/s")
rss = load["rss_kib"]
print(f"streamer VmRSS during the load: min {min(rss)/1024:.1f} MiB, max {max(rss)/1024:.1f} MiB; VmHWM {hwm/1024:.1f} MiB")
print(f"replay: {replayed} revisions in {took:.1f} s (restore total: fetch, replay, snapshot, verify) = {replayed/took:.0f} revisions/s")
print(f"  ratio replay rate / burst write rate: {replayed/took/load['burst_rate']:.2f}")
print(f"  restore time per hour of log at {rate} writes/s: {rate*3600/(replayed/took)/60:.1f} min")
PY
