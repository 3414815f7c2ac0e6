//! `lifeboat policy check`: parse and validate policy files, each error with file:line:column.

use super::*;

pub(super) fn policy_check(named: &[PathBuf]) -> u8 {
    let files = match ops::load::policy_files(named) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let mut code = 0;
    for f in &files {
        match ops::load_policy(f) {
            Ok(lp) => out!(
                "ok: {} (policy {}, {} endpoint(s), {} destination(s), {})",
                f.display(),
                lp.policy.name,
                lp.policy.cluster.endpoints.len(),
                lp.destinations.len(),
                if lp.recipients.is_empty() {
                    "unencrypted".to_owned()
                } else {
                    format!("{} age recipient(s)", lp.recipients.len())
                }
            ),
            Err(e) => {
                code = code.max(e.kind().exit_code());
                eprintln!("error: {}", e.chain());
            }
        }
    }
    code
}
