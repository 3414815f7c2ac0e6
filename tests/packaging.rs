//! What operators install: every example policy parses and can be scheduled, the systemd units
//! pass `systemd-analyze verify` (where systemd is installed), and the CLI generates shell
//! completions and a man page.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_policy_parses_and_has_a_schedule() {
    let dir = root().join("policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            let text = std::fs::read_to_string(&p).unwrap();
            let policy = lifeboat::policy::parse(&p.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(policy.schedule.is_some(), "{}: no schedule", p.display());
            n += 1;
        }
    }
    assert!(n >= 4, "expected the example policies, found {n}");
}

#[test]
fn systemd_units_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze not installed; skipping");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The units name /usr/local/bin/lifeboat; verify checks that the binary exists.
    let bin = env!("CARGO_BIN_EXE_lifeboat");
    for e in std::fs::read_dir(root().join("systemd")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            tmp.path().join(p.file_name().unwrap()),
            text.replace("/usr/local/bin/lifeboat", bin),
        )
        .unwrap();
    }
    for unit in [
        "lifeboat.service",
        "lifeboat-backup@.service",
        "lifeboat-backup@.timer",
        "lifeboat-revlog@.service",
    ] {
        // --man=no: the man page (`lifeboat man`) is installed by the operator, not here.
        let o = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .arg(tmp.path().join(unit))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{unit}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

fn lifeboat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let o = lifeboat(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let text = String::from_utf8(o.stdout).unwrap();
        for sub in ["backup", "prune", "daemon", "restore"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let o = lifeboat(&["man"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.starts_with(".ie") || text.contains(".TH lifeboat"),
        "{text:.200}"
    );
    assert!(text.contains("daemon"));
}
