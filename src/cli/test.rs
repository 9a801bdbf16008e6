//! `test`: run container-structure-test configs against an image; also what `build --test`
//! runs on the image it has just built.

use super::store::open_store;
use anyhow::Context;
use clap::{Args, ValueEnum};
use imgbuild::storage::Store;
use imgbuild::structure_test::{Config, Progress, Report, Tester, report};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Each test as it ends, then a summary.
    Text,
    /// One JSON object (counts and results).
    Json,
    /// JUnit XML, for CI.
    Junit,
}

/// Options of `test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// A test config file, YAML or JSON (schema version 2.0.0); repeatable, run in order.
    #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    /// Report format on stdout.
    #[arg(short = 'o', long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
    /// Also write the report to FILE (in the `--output` format; JSON when that is text).
    #[arg(long, value_name = "FILE")]
    pub test_report: Option<PathBuf>,
    /// The image: `name[:tag]`, id, id prefix or manifest digest, or an archive (docker-archive,
    /// oci-archive, OCI layout directory) to load first, as `run` takes it.
    pub image: String,
}

/// Read every config; the first invalid one is the error.
pub fn load_configs(paths: &[PathBuf]) -> anyhow::Result<Vec<Config>> {
    paths
        .iter()
        .map(|p| Config::load(p).map_err(anyhow::Error::from))
        .collect()
}

/// Run `configs` on `image` of `store`, printing the report on stdout in `format` (text as the
/// tests end) and writing it to `report_file`. The report says whether everything passed.
pub fn run_tests(
    store: &Store,
    image: &str,
    configs: &[Config],
    format: ReportFormat,
    report_file: Option<&Path>,
) -> anyhow::Result<Report> {
    let tester = Tester::new(store, image)?;
    let mut stdout = std::io::stdout();
    let report = tester.run(configs, &mut |p| {
        if format == ReportFormat::Text {
            let text = match p {
                Progress::File(path) => report::text_header(path),
                Progress::Result(r) => report::text_result(r),
            };
            // A closed stdout must not stop the tests; the exit code still tells.
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    let full = match format {
        ReportFormat::Text => report::text_summary(&report),
        ReportFormat::Json => report::json(&report),
        ReportFormat::Junit => report::junit(&report),
    };
    print!("{full}");
    if let Some(path) = report_file {
        let text = match format {
            ReportFormat::Junit => report::junit(&report),
            ReportFormat::Json | ReportFormat::Text => report::json(&report),
        };
        imgbuild::atomic::write(path, text.as_bytes())
            .with_context(|| format!("writing the test report {}", path.display()))?;
    }
    Ok(report)
}

/// `imgbuild test`: exit 0 when every test passed, 1 when one failed, 125 when the tests could
/// not be run (invalid config, missing image, a container that cannot be made), 128 + N when
/// signal N stopped it between tests.
pub fn run(args: &TestArgs, root: Option<&Path>, driver: Option<&str>) -> ExitCode {
    let result = (|| -> anyhow::Result<Report> {
        // The configs first: a typo is reported before any image is loaded.
        let configs = load_configs(&args.config)?;
        let store = open_store(root, driver)?;
        let image = match super::run::archive_path(&args.image) {
            Some(archive) => super::run::load_for_run(&store, &archive)?,
            None => args.image.clone(),
        };
        run_tests(
            &store,
            &image,
            &configs,
            args.output,
            args.test_report.as_deref(),
        )
    })();
    match result {
        Ok(r) if r.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        // Stopped by a signal: `main` reports it, with 128 + its number.
        Err(_) if imgbuild::interrupt::received().is_some() => ExitCode::from(125),
        Err(e) => {
            eprintln!("imgbuild: error: {}", super::error::text(&e));
            ExitCode::from(125)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn configs_repeat_and_the_image_is_positional() {
        let cli = crate::cli::Cli::try_parse_from([
            "imgbuild", "test", "-c", "a.yaml", "img:1", "--config", "b.json", "-o", "junit",
        ])
        .unwrap();
        let crate::cli::Command::Test(args) = cli.command else {
            panic!("not test");
        };
        assert_eq!(args.image, "img:1");
        assert_eq!(
            args.config,
            [std::path::PathBuf::from("a.yaml"), "b.json".into()]
        );
        assert_eq!(args.output, super::ReportFormat::Junit);
        // A config is required.
        assert!(crate::cli::Cli::try_parse_from(["imgbuild", "test", "img"]).is_err());
    }
}
