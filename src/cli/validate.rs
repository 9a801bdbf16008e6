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

/// Exit 0 when every description is valid, 1 otherwise (errors on stderr, one per line).
pub fn run(args: &ValidateArgs) -> ExitCode {
    let mut failed = false;
    for path in &args.paths {
        match imgbuild::description::load(path) {
            Ok(d) => {
                for w in &d.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: valid (schema {} → 8.5)",
                    d.path.display(),
                    d.declared_schemaversion
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
