//! `lifeboat revlog`: the revision-log streamer of one policy in the foreground.

use super::*;

pub(super) async fn revlog(
    policy: &std::path::Path,
    textfile: Option<&std::path::Path>,
) -> Result<(), Error> {
    use std::sync::Arc;
    let lp = Arc::new(ops::load_policy(policy)?);
    let status = Arc::new(ops::revlog::RevlogStatus::default());
    let stop = tokio_util::sync::CancellationToken::new();
    cancel_on_signals(&stop);
    if let Some(path) = textfile {
        let (status, stop, name, path) = (
            status.clone(),
            stop.clone(),
            lp.policy.name.clone(),
            path.to_owned(),
        );
        tokio::spawn(async move {
            let metrics = crate::daemon::metrics::Metrics::new();
            loop {
                metrics.revlog(&name, &status);
                if let Err(e) = metrics.write_textfile(&path) {
                    eprintln!("warning: {}", e.chain());
                }
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    // The streamer is driven on a blocking thread: its futures are not provably `Send`
    // (rust-lang/rust#102211), which tokio::spawn would need.
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(ops::revlog::run(lp, status, stop)))
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("revision log task failed: {e}")))?
}
