//! The `imgbuild` command line: a thin layer over the library.

// Its print macros replace std's here too (see `cli::out`).
#[macro_use]
mod cli;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::try_parse().unwrap_or_else(|e| cli::out::clap_exit(&e));
    let format = args.log_format;
    let result = cli::run(args);
    // stdout or stderr closed by its reader: end quietly, as SIGPIPE ends other tools.
    cli::out::end_if_closed();
    // Stopped by a signal: whatever error the stop surfaced as, report the signal, as a shell
    // does, with 128 + its number.
    if let Some(stop) = imgbuild::interrupt::received() {
        cli::log::stopped(format, stop);
        return std::process::ExitCode::from(stop.exit_code());
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            cli::log::error(format, &cli::error::text(&err));
            std::process::ExitCode::from(1)
        }
    }
}
