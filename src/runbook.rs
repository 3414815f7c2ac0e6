//! Recovery runbooks: the exact steps to bring a cluster back from a staged snapshot, per
//! bootstrap method. Pure: built from what the restore knows, rendered by the CLI as text or JSON.
//! The `etcdutl snapshot restore` arguments are built here once, for the runbook text and for
//! `restore --exec` alike.

use serde::Serialize;

/// How the cluster will be bootstrapped from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `talosctl bootstrap --recover-from`.
    Talos,
    /// `etcdutl snapshot restore` on each member, then start etcd.
    Etcdutl,
    /// kubeadm static-pod control planes.
    Kubeadm,
    /// k3s (or RKE2) embedded etcd: `--cluster-reset --cluster-reset-restore-path`.
    K3s,
}

/// Revision bump recommended for Kubernetes (etcd's recovery guide uses 1,000,000,000): far
/// above any revision watchers may have seen, so none sees the revision go backwards.
pub const KUBERNETES_REVISION_BUMP: u64 = 1_000_000_000;

/// The `etcdutl snapshot restore` settings for one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreParams {
    /// `--name` of the member being restored.
    pub name: Option<String>,
    /// `--initial-cluster`, e.g. `m1=https://10.0.0.1:2380,m2=...`.
    pub initial_cluster: Option<String>,
    /// `--initial-advertise-peer-urls` of this member.
    pub initial_advertise_peer_urls: Option<String>,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<String>,
    /// `--bump-revision N --mark-compacted`.
    pub bump_revision: Option<u64>,
    /// `--skip-hash-check` (the snapshot has no SHA-256 trailer).
    pub skip_hash_check: bool,
}

impl RestoreParams {
    /// Arguments after `snapshot restore SNAPSHOT`; unset values become `<placeholders>` when
    /// `placeholders` is true (for the printed runbook) and are left out otherwise (for
    /// `--exec`, where etcdutl's defaults apply).
    pub fn args(&self, placeholders: bool) -> Vec<String> {
        let mut out = Vec::new();
        let flags = [
            ("name", &self.name, Some("<MEMBER-NAME>")),
            (
                "initial-cluster",
                &self.initial_cluster,
                Some("<NAME1>=https://<IP1>:2380,<NAME2>=https://<IP2>:2380,..."),
            ),
            (
                "initial-advertise-peer-urls",
                &self.initial_advertise_peer_urls,
                Some("https://<THIS-MEMBER-IP>:2380"),
            ),
            ("initial-cluster-token", &self.initial_cluster_token, None),
            ("data-dir", &self.data_dir, Some("<DATA-DIR>")),
        ];
        for (name, value, hole) in flags {
            match (value, hole) {
                (Some(v), _) => out.extend([format!("--{name}"), v.clone()]),
                (None, Some(h)) if placeholders => out.extend([format!("--{name}"), h.to_owned()]),
                (None, _) => {}
            }
        }
        if let Some(n) = self.bump_revision {
            out.extend([
                "--bump-revision".to_owned(),
                n.to_string(),
                "--mark-compacted".to_owned(),
            ]);
        }
        if self.skip_hash_check {
            out.push("--skip-hash-check".to_owned());
        }
        out
    }
}

/// What the runbook is built from.
#[derive(Debug, Clone)]
pub struct RunbookInput {
    pub target: Target,
    /// Absolute path of the staged snapshot.
    pub snapshot: String,
    /// Backup id, when it came from a backup.
    pub backup_id: Option<String>,
    /// The snapshot's revision.
    pub revision: i64,
    /// `snapshot status` values to compare with what the bootstrap tool prints.
    pub hash: u32,
    pub total_key: u64,
    pub live_keys: u64,
    /// etcd version of the member the snapshot came from, when known.
    pub etcd_version: Option<String>,
    /// Node address for talosctl, when given.
    pub node: Option<String>,
    pub params: RestoreParams,
    /// A point-in-time restore: the revision the log was replayed to.
    pub replayed_to: Option<i64>,
}

/// One step: what to do, the commands, and what to look for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub title: String,
    pub commands: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// The runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Runbook {
    pub target: Target,
    pub snapshot: String,
    pub skip_hash_check: bool,
    pub steps: Vec<Step>,
    /// Warnings to read before starting.
    pub warnings: Vec<String>,
}

/// Quote `s` for a POSIX shell when it needs it. Placeholders (`<...>`) get quoted too, so a
/// command pasted before they are filled in fails instead of redirecting.
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn command(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn step(title: &str, commands: Vec<String>, check: Option<String>) -> Step {
    Step {
        title: title.to_owned(),
        commands,
        check,
    }
}

/// Major and minor of an etcd version string such as `3.5.1`.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl RunbookInput {
    fn etcdutl_restore(&self, data_dir_default: &str) -> String {
        let mut p = self.params.clone();
        if p.data_dir.is_none() {
            p.data_dir = Some(data_dir_default.to_owned());
        }
        let mut words = vec![
            "etcdutl".to_owned(),
            "snapshot".to_owned(),
            "restore".to_owned(),
            self.snapshot.clone(),
        ];
        words.extend(p.args(true));
        command(&words)
    }

    fn status_line(&self) -> String {
        format!(
            "hash {:08x}, revision {}, total keys {} (etcd 3.4/3.5 count; {} with etcd 3.6+)",
            self.hash, self.revision, self.total_key, self.live_keys
        )
    }

    fn common_warnings(&self, out: &mut Vec<String>) {
        let newer = self
            .etcd_version
            .as_deref()
            .and_then(major_minor)
            .is_some_and(|v| v >= (3, 6));
        if self.params.bump_revision.is_none() && newer {
            out.push(format!(
                "the cluster ran etcd {}: for Kubernetes add `--bump-revision {} \
                 --mark-compacted` to every `etcdutl snapshot restore` (lifeboat restore \
                 --bump-revision {0}), so watch caches and controllers see a newer, compacted \
                 revision instead of a revision that went backwards",
                self.etcd_version.as_deref().unwrap_or_default(),
                KUBERNETES_REVISION_BUMP
            ));
        } else if self.params.bump_revision.is_none() {
            out.push(format!(
                "for Kubernetes, etcdutl >= 3.5.10 (etcdctl >= 3.4.27) can add `--bump-revision \
                 {KUBERNETES_REVISION_BUMP} --mark-compacted` so watchers never see the \
                 revision go backwards (required practice from etcd 3.6)"
            ));
        }
        if self.params.skip_hash_check {
            out.push(
                "this snapshot has no SHA-256 trailer (a copy of member/snap/db): the restore \
                 cannot check its digest, so the skip flag is set; lifeboat checked its \
                 structure and status"
                    .to_owned(),
            );
        }
    }

    /// Build the runbook.
    pub fn build(&self) -> Runbook {
        let mut warnings = Vec::new();
        let snap = shell_quote(&self.snapshot);
        let steps = match self.target {
            Target::Talos => {
                let node = self.node.clone().unwrap_or_else(|| "<IP>".to_owned());
                let skip = if self.params.skip_hash_check {
                    " --recover-skip-hash-check"
                } else {
                    ""
                };
                if self.params.skip_hash_check {
                    warnings.push(
                        "the snapshot has no SHA-256 trailer (data-directory copy), so \
                         --recover-skip-hash-check is needed; lifeboat checked its structure"
                            .to_owned(),
                    );
                }
                vec![
                    step(
                        "Check that etcd on every control-plane node waits for bootstrap",
                        vec!["talosctl -n <IP1>,<IP2>,<IP3> service etcd".to_owned()],
                        Some(
                            "every node shows etcd in state Preparing; a node whose etcd has \
                             data must be wiped first: `talosctl -n <IP> reset --graceful=false \
                             --reboot --system-labels-to-wipe=EPHEMERAL`"
                                .to_owned(),
                        ),
                    ),
                    step(
                        "Bootstrap ONE control-plane node from the snapshot",
                        vec![format!(
                            "talosctl -n {node} bootstrap --recover-from={snap}{skip}"
                        )],
                        Some(format!(
                            "talosctl prints `recovering from snapshot`: expect {}",
                            self.status_line()
                        )),
                    ),
                    step(
                        "Watch etcd come up; the other control-plane nodes rejoin by themselves",
                        vec![
                            format!("talosctl -n {node} service etcd"),
                            format!("talosctl -n {node} etcd members"),
                            "kubectl get nodes".to_owned(),
                        ],
                        Some(
                            "etcd Running on every control-plane node, all members listed"
                                .to_owned(),
                        ),
                    ),
                ]
            }
            Target::Etcdutl => {
                self.common_warnings(&mut warnings);
                let dir = self
                    .params
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| "<DATA-DIR>".to_owned());
                let dir_q = shell_quote(&dir);
                vec![
                    step(
                        "Stop etcd on every member (and everything that writes to it)",
                        vec!["sudo systemctl stop etcd".to_owned()],
                        None,
                    ),
                    step(
                        "Copy the snapshot to every member host and move the old data directory \
                         aside (keep it until the cluster is healthy)",
                        vec![format!(
                            "sudo mv {dir_q} {}",
                            shell_quote(&format!("{dir}.before-restore"))
                        )],
                        None,
                    ),
                    step(
                        "Restore on EVERY member from the same snapshot: same --initial-cluster \
                         and token, each with its own --name and --initial-advertise-peer-urls",
                        vec![self.etcdutl_restore(&dir)],
                        Some(
                            "etcdutl 3.5+; with etcd 3.4 use `ETCDCTL_API=3 etcdctl snapshot \
                             restore` with the same flags"
                                .to_owned(),
                        ),
                    ),
                    step(
                        "Start etcd on every member with the same --name, URLs and --data-dir",
                        vec!["sudo systemctl start etcd".to_owned()],
                        None,
                    ),
                    step(
                        "Check the cluster",
                        vec![
                            "etcdctl endpoint status --cluster -w table".to_owned(),
                            "etcdctl endpoint health --cluster".to_owned(),
                        ],
                        Some(format!(
                            "every member healthy, revision {} or later",
                            self.revision
                        )),
                    ),
                ]
            }
            Target::Kubeadm => {
                self.common_warnings(&mut warnings);
                let dir = self
                    .params
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| "/var/lib/etcd".to_owned());
                let dir_q = shell_quote(&dir);
                vec![
                    step(
                        "On EVERY control-plane node: stop the static pods by moving their \
                         manifests away",
                        vec![
                            "sudo mkdir -p /etc/kubernetes/manifests.stopped".to_owned(),
                            "sudo mv /etc/kubernetes/manifests/*.yaml \
                             /etc/kubernetes/manifests.stopped/"
                                .to_owned(),
                            "sudo crictl ps | grep -E 'etcd|kube-apiserver' || echo stopped"
                                .to_owned(),
                        ],
                        Some("wait until etcd and kube-apiserver are gone".to_owned()),
                    ),
                    step(
                        "On EVERY control-plane node: copy the snapshot there and move the old \
                         etcd data aside",
                        vec![format!(
                            "sudo mv {dir_q} {}",
                            shell_quote(&format!("{dir}.before-restore"))
                        )],
                        None,
                    ),
                    step(
                        "On EVERY control-plane node: restore, with that node's --name and \
                         --initial-advertise-peer-urls from \
                         /etc/kubernetes/manifests.stopped/etcd.yaml and one --initial-cluster \
                         listing all of them",
                        vec![format!("sudo {}", self.etcdutl_restore(&dir))],
                        None,
                    ),
                    step(
                        "On EVERY control-plane node: start the static pods again",
                        vec![
                            "sudo mv /etc/kubernetes/manifests.stopped/*.yaml \
                             /etc/kubernetes/manifests/"
                                .to_owned(),
                            "sudo systemctl restart kubelet".to_owned(),
                        ],
                        None,
                    ),
                    step(
                        "Check the cluster",
                        vec![
                            "kubectl get nodes".to_owned(),
                            "kubectl -n kube-system get pods -l component=etcd".to_owned(),
                        ],
                        Some(
                            "nodes Ready; restart kube-scheduler, kube-controller-manager and \
                             kubelets if they keep stale state"
                                .to_owned(),
                        ),
                    ),
                ]
            }
            Target::K3s => {
                if self.params.skip_hash_check {
                    warnings.push(
                        "k3s always checks the snapshot's SHA-256 and has no skip option, so it \
                         cannot restore this trailer-less copy; use `--target etcdutl` to \
                         restore it into the data directory instead"
                            .to_owned(),
                    );
                }
                warnings.push(
                    "k3s needs the server token that was in use when the snapshot was taken \
                     (the snapshot's bootstrap data is encrypted with it): pass it with --token \
                     or keep /var/lib/rancher/k3s/server/token from the old server"
                        .to_owned(),
                );
                vec![
                    step(
                        "Stop k3s on EVERY server node",
                        vec!["sudo systemctl stop k3s".to_owned()],
                        None,
                    ),
                    step(
                        "On ONE server: reset the cluster from the snapshot",
                        vec![format!(
                            "sudo k3s server --cluster-reset --cluster-reset-restore-path={snap} \
                             --token=<ORIGINAL-SERVER-TOKEN>"
                        )],
                        Some(
                            "k3s logs `Managed etcd cluster membership has been reset, restart \
                             without --cluster-reset flag now` and exits"
                                .to_owned(),
                        ),
                    ),
                    step(
                        "Start k3s on that server",
                        vec!["sudo systemctl start k3s".to_owned()],
                        None,
                    ),
                    step(
                        "On every OTHER server: move the old etcd data aside and start k3s so it \
                         rejoins",
                        vec![
                            "sudo mv /var/lib/rancher/k3s/server/db \
                             /var/lib/rancher/k3s/server/db.before-restore"
                                .to_owned(),
                            "sudo systemctl start k3s".to_owned(),
                        ],
                        None,
                    ),
                    step(
                        "Check the cluster",
                        vec!["sudo k3s kubectl get nodes".to_owned()],
                        Some(format!(
                            "all nodes Ready; data as of revision {}",
                            self.revision
                        )),
                    ),
                ]
            }
        };
        if let Some(r) = self.replayed_to {
            warnings.push(format!(
                "this snapshot is the cluster as of revision {r}, replayed from the revision log. \
                 If the cluster being replaced went past revision {r}, clients (Kubernetes \
                 controllers and watch caches above all) must not see revisions go backwards: \
                 restore with --bump-revision 1000000000 --mark-compacted where the tool has \
                 them (etcdutl 3.5.10+, etcdctl 3.4.27+; rerun with --bump-revision), and \
                 expect everything written after revision {r} to be gone, including its effects \
                 outside etcd"
            ));
        }
        Runbook {
            target: self.target,
            snapshot: self.snapshot.clone(),
            skip_hash_check: self.params.skip_hash_check,
            steps,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(target: Target) -> RunbookInput {
        RunbookInput {
            target,
            snapshot: "/var/tmp/etcd restore/db.snapshot".into(),
            backup_id: Some("20261121T023000Z-3fa91c".into()),
            revision: 4193,
            hash: 0xc25f_d181,
            total_key: 1287,
            live_keys: 1000,
            etcd_version: Some("3.6.4".into()),
            node: Some("10.0.0.2".into()),
            params: RestoreParams::default(),
            replayed_to: None,
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/var/tmp/db"), "/var/tmp/db");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("<IP>"), "'<IP>'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn talos_carries_the_path_and_the_skip_flag_only_when_needed() {
        let mut i = input(Target::Talos);
        let rb = i.build();
        let all: String = rb.steps.iter().flat_map(|s| s.commands.clone()).collect();
        assert!(all.contains(
            "talosctl -n 10.0.0.2 bootstrap --recover-from='/var/tmp/etcd restore/db.snapshot'"
        ));
        assert!(!all.contains("skip"));
        i.params.skip_hash_check = true;
        let rb = i.build();
        let all: String = rb.steps.iter().flat_map(|s| s.commands.clone()).collect();
        assert!(all.contains("--recover-skip-hash-check"));
        assert!(rb.skip_hash_check);
    }

    #[test]
    fn etcdutl_fills_in_what_it_knows_and_marks_the_rest() {
        let mut i = input(Target::Etcdutl);
        i.params = RestoreParams {
            name: Some("m1".into()),
            initial_cluster: Some("m1=https://10.0.0.1:2380".into()),
            initial_advertise_peer_urls: None,
            initial_cluster_token: None,
            data_dir: Some("/var/lib/etcd".into()),
            bump_revision: None,
            skip_hash_check: true,
        };
        let rb = i.build();
        let restore = &rb.steps[2].commands[0];
        assert_eq!(
            restore,
            "etcdutl snapshot restore '/var/tmp/etcd restore/db.snapshot' --name m1 \
             --initial-cluster m1=https://10.0.0.1:2380 --initial-advertise-peer-urls \
             'https://<THIS-MEMBER-IP>:2380' --data-dir /var/lib/etcd --skip-hash-check"
        );
        // etcd 3.6 and no bump: the runbook says to bump.
        assert!(rb.warnings.iter().any(|w| w.contains("--bump-revision")));
        i.params.bump_revision = Some(KUBERNETES_REVISION_BUMP);
        let rb = i.build();
        assert!(rb.steps[2].commands[0].contains("--bump-revision 1000000000 --mark-compacted"));
        assert!(!rb.warnings.iter().any(|w| w.contains("the cluster ran")));
    }

    #[test]
    fn exec_args_leave_unset_flags_to_etcdutl() {
        let p = RestoreParams {
            data_dir: Some("/d".into()),
            skip_hash_check: true,
            ..Default::default()
        };
        assert_eq!(p.args(false), ["--data-dir", "/d", "--skip-hash-check"]);
    }

    #[test]
    fn kubeadm_and_k3s() {
        let rb = input(Target::Kubeadm).build();
        assert!(rb.steps[2].commands[0].contains("--data-dir /var/lib/etcd"));
        let mut i = input(Target::K3s);
        let rb = i.build();
        assert!(rb.steps[1].commands[0].contains(
            "--cluster-reset --cluster-reset-restore-path='/var/tmp/etcd restore/db.snapshot'"
        ));
        assert!(rb.warnings.iter().any(|w| w.contains("token")));
        i.params.skip_hash_check = true;
        assert!(
            i.build()
                .warnings
                .iter()
                .any(|w| w.contains("no skip option"))
        );
    }

    #[test]
    fn versions() {
        assert_eq!(major_minor("3.5.1"), Some((3, 5)));
        assert_eq!(major_minor("v3.6.0-rc.0"), Some((3, 6)));
        assert_eq!(major_minor("junk"), None);
    }
}
