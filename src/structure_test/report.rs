//! Results and their reports: text for people, JSON (the field names the upstream tool's JSON
//! report uses, so existing consumers read it) and JUnit XML for CI.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// `Command Test: NAME`, `File Existence Test: NAME`, `Metadata Test`, ...
    pub name: String,
    /// Whether every check of the test held.
    pub pass: bool,
    /// Why it failed, one line per check that did not hold.
    pub errors: Vec<String>,
    /// The command's standard output (command tests).
    pub stdout: String,
    /// The command's standard error (command tests).
    pub stderr: String,
    /// How long the test took.
    pub duration: Duration,
}

impl TestResult {
    pub(crate) fn new(name: String) -> TestResult {
        TestResult {
            name,
            pass: true,
            errors: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            duration: Duration::ZERO,
        }
    }

    /// Record a check that did not hold.
    pub(crate) fn fail(&mut self, reason: String) {
        self.pass = false;
        self.errors.push(reason);
    }
}

/// The results of one config file.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// The config file.
    pub path: PathBuf,
    /// Its results, in the order the tests ran.
    pub results: Vec<TestResult>,
}

/// The results of a run over one or more config files.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per config file, in the order given.
    pub files: Vec<FileReport>,
    /// Wall-clock time of the whole run.
    pub duration: Duration,
}

impl Report {
    fn all(&self) -> impl Iterator<Item = &TestResult> {
        self.files.iter().flat_map(|f| f.results.iter())
    }

    /// How many tests passed.
    pub fn passed(&self) -> usize {
        self.all().filter(|r| r.pass).count()
    }

    /// How many tests failed.
    pub fn failed(&self) -> usize {
        self.all().filter(|r| !r.pass).count()
    }

    /// How many tests ran.
    pub fn total(&self) -> usize {
        self.all().count()
    }

    /// Whether the run passed: at least one test ran and none failed (a config with no tests
    /// is a mistake, as for the upstream tool).
    pub fn success(&self) -> bool {
        self.total() > 0 && self.failed() == 0
    }
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// The header printed before a config file's results.
pub fn text_header(path: &std::path::Path) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let line = format!("=== {name} ===");
    format!(
        "{}\n{line}\n{}\n",
        "=".repeat(line.len()),
        "=".repeat(line.len())
    )
}

fn indent(label: &str, text: &str) -> String {
    let mut out = String::new();
    for (i, l) in text.trim_end_matches('\n').lines().enumerate() {
        let head = if i == 0 { label } else { "" };
        out.push_str(&format!("    {head:<7} {l}\n"));
    }
    out
}

/// One result as text: `PASS`/`FAIL`, the name and duration; for a failure every reason and
/// the command's output.
pub fn text_result(r: &TestResult) -> String {
    let mut out = format!(
        "{}  {} ({})\n",
        if r.pass { "PASS" } else { "FAIL" },
        r.name,
        ms(r.duration)
    );
    if !r.pass {
        for e in &r.errors {
            out.push_str(&format!("    - {e}\n"));
        }
        if !r.stdout.is_empty() {
            out.push_str(&indent("stdout:", &r.stdout));
        }
        if !r.stderr.is_empty() {
            out.push_str(&indent("stderr:", &r.stderr));
        }
    }
    out
}

/// The closing summary: counts, duration, and `PASS` or `FAIL`.
pub fn text_summary(report: &Report) -> String {
    let mut out = String::from("\n");
    if report.total() == 0 {
        out.push_str("No tests ran: the config files hold no tests.\n");
    }
    let _ = writeln!(out, "Passed:   {}", report.passed());
    let _ = writeln!(out, "Failed:   {}", report.failed());
    let _ = writeln!(out, "Total:    {}", report.total());
    let _ = writeln!(out, "Duration: {}", ms(report.duration));
    out.push('\n');
    out.push_str(if report.success() { "PASS\n" } else { "FAIL\n" });
    out
}

/// The whole report as text (headers, results, summary).
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.files {
        out.push_str(&text_header(&f.path));
        for r in &f.results {
            out.push_str(&text_result(r));
        }
    }
    out.push_str(&text_summary(report));
    out
}

/// The report as one JSON object (`Pass`, `Fail`, `Total`, `Duration` in nanoseconds, and
/// `Results` with `Name`, `Pass`, `Stdout`, `Stderr`, `Errors`, `Duration`), a newline after it.
pub fn json(report: &Report) -> String {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let results: Vec<serde_json::Value> = report
        .files
        .iter()
        .flat_map(|f| {
            f.results.iter().map(|r| {
                let mut o = serde_json::json!({
                    "Name": r.name,
                    "Pass": r.pass,
                    "Duration": nanos(r.duration),
                    "File": f.path,
                });
                if !r.stdout.is_empty() {
                    o["Stdout"] = r.stdout.clone().into();
                }
                if !r.stderr.is_empty() {
                    o["Stderr"] = r.stderr.clone().into();
                }
                if !r.errors.is_empty() {
                    o["Errors"] = r.errors.clone().into();
                }
                o
            })
        })
        .collect();
    let v = serde_json::json!({
        "Pass": report.passed(),
        "Fail": report.failed(),
        "Total": report.total(),
        "Duration": nanos(report.duration),
        "Results": results,
    });
    format!("{v}\n")
}

/// Text made safe for XML 1.0: characters the format cannot hold (most control characters,
/// such as a terminal's escape) become U+FFFD; markup characters are escaped.
fn xml_text(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' => c,
            c if c >= '\u{10000}' => c,
            _ => '\u{FFFD}',
        })
        .collect();
    quick_xml::escape::escape(clean.as_str()).into_owned()
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The report as JUnit XML: `testsuites` with the totals, one `testsuite` per config file
/// (named by its file name), one `testcase` per test with a `failure` (the first reason as
/// its message, all of them as its text) and the command's `system-out`/`system-err`.
pub fn junit(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"imgbuild test\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">",
        report.total(),
        report.failed(),
        secs(report.duration)
    );
    for f in &report.files {
        let name = f.path.file_name().map_or_else(
            || f.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let name = xml_text(&name);
        let time: Duration = f.results.iter().map(|r| r.duration).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
            f.results.len(),
            f.results.iter().filter(|r| !r.pass).count(),
            secs(time)
        );
        for r in &f.results {
            let open = format!(
                "    <testcase name=\"{}\" classname=\"{name}\" time=\"{}\"",
                xml_text(&r.name),
                secs(r.duration)
            );
            let out_parts = (!r.stdout.is_empty() || !r.stderr.is_empty()) && !r.pass;
            if r.pass && !out_parts {
                let _ = writeln!(out, "{open}/>");
                continue;
            }
            let _ = writeln!(out, "{open}>");
            if !r.pass {
                let first = r.errors.first().map_or("failed", String::as_str);
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"failure\">{}</failure>",
                    xml_text(first),
                    xml_text(&r.errors.join("\n"))
                );
            }
            if !r.stdout.is_empty() {
                let _ = writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    xml_text(&r.stdout)
                );
            }
            if !r.stderr.is_empty() {
                let _ = writeln!(
                    out,
                    "      <system-err>{}</system-err>",
                    xml_text(&r.stderr)
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut ok = TestResult::new("Command Test: echo".into());
        ok.duration = Duration::from_millis(12);
        ok.stdout = "hi\n".into();
        let mut bad = TestResult::new("File Content Test: <os> & \"x\"".into());
        bad.fail("expected 'a' not found".into());
        bad.fail("excluded 'b' found".into());
        bad.stderr = "esc \u{1b}[1m bold\n".into();
        Report {
            files: vec![FileReport {
                path: PathBuf::from("/x/config.yaml"),
                results: vec![ok, bad],
            }],
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn counts_and_verdict() {
        let r = sample();
        assert_eq!((r.passed(), r.failed(), r.total()), (1, 1, 2));
        assert!(!r.success());
        assert!(!Report::default().success(), "no tests is a failure");
    }

    #[test]
    fn junit_is_escaped_and_counted() {
        let x = junit(&sample());
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"imgbuild test\" tests=\"2\" failures=\"1\" errors=\"0\" time=\"1.500\">"), "{x}");
        assert!(
            x.contains("<testsuite name=\"config.yaml\" tests=\"2\" failures=\"1\""),
            "{x}"
        );
        assert!(
            x.contains(
                "<testcase name=\"Command Test: echo\" classname=\"config.yaml\" time=\"0.012\"/>"
            ),
            "{x}"
        );
        assert!(
            x.contains("name=\"File Content Test: &lt;os&gt; &amp; &quot;x&quot;\""),
            "{x}"
        );
        assert!(x.contains("<failure message=\"expected &apos;a&apos; not found\" type=\"failure\">expected &apos;a&apos; not found\nexcluded &apos;b&apos; found</failure>"), "{x}");
        assert!(x.contains("esc \u{FFFD}[1m bold"), "{x}");
        assert!(!x.contains('\u{1b}'));
    }

    #[test]
    fn json_has_the_upstream_fields() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["Pass"], 1);
        assert_eq!(v["Fail"], 1);
        assert_eq!(v["Total"], 2);
        assert_eq!(v["Duration"], 1_500_000_000u64);
        assert_eq!(v["Results"][0]["Stdout"], "hi\n");
        assert_eq!(v["Results"][1]["Errors"][1], "excluded 'b' found");
    }

    #[test]
    fn text_shows_reasons_of_failures_only() {
        let t = text(&sample());
        assert!(t.contains("PASS  Command Test: echo (12 ms)\n"), "{t}");
        assert!(!t.contains("hi\n    "), "{t}");
        assert!(t.contains("    - expected 'a' not found\n"), "{t}");
        assert!(
            t.contains("Passed:   1\nFailed:   1\nTotal:    2\nDuration: 1.50 s\n\nFAIL\n"),
            "{t}"
        );
    }
}
