//! `imgbuild validate PATH…`: load each description and report every problem found.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Check descriptions without building anything.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Description files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Exit 0 when every description is valid, 1 otherwise (errors on stderr, one per line,
/// `imgbuild: error: file:line:col: …`; warnings as `imgbuild: warning: …`).
pub fn run(args: &ValidateArgs) -> ExitCode {
    let mut failed = false;
    for path in &args.paths {
        match imgbuild::description::load(path) {
            Ok(d) => {
                for w in &d.warnings {
                    eprintln!("imgbuild: warning: {w}");
                }
                println!(
                    "{}: valid (schema {} → 8.5)",
                    d.path.display(),
                    d.declared_schemaversion
                );
            }
            Err(e) => {
                failed = true;
                // One line per problem, each in the error style every command uses.
                if e.diagnostics().is_empty() {
                    eprintln!(
                        "imgbuild: error: {}",
                        super::error::text(&anyhow::Error::new(e))
                    );
                } else {
                    for d in e.diagnostics() {
                        eprintln!("imgbuild: error: {d}");
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
