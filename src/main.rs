use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Nothing lifeboat writes (spool files, identities, local backups) is for other users.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = lifeboat::cli::Cli::parse();
    ExitCode::from(lifeboat::cli::run(cli))
}
