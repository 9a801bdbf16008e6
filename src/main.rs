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
            eprintln!("imgbuild: error: {}", report(&err));
            std::process::ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by ": ", as `{:#}` prints them, but leaving out a cause the
/// text before it already ends with: library errors embed their source in their own message.
fn report(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !out.ends_with(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("/x: {0}")]
        struct E(#[source] std::io::Error);
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(E(io)).context("loading y");
        assert_eq!(super::report(&err), "loading y: /x: disk on fire");
    }
}
