//! The `imgbuild` command line: a thin layer over the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("imgbuild: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
