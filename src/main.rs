//! The `imgbuild` command line: a thin layer over the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let result = cli::run(args);
    // Stopped by a signal: whatever error the stop surfaced as, report the signal, as a shell
    // does, with 128 + its number.
    if let Some(stop) = imgbuild::interrupt::received() {
        eprintln!("imgbuild: {stop}");
        return std::process::ExitCode::from(stop.exit_code());
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("imgbuild: error: {}", cli::error::text(&err));
            std::process::ExitCode::from(1)
        }
    }
}
