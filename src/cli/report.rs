//! Listings as podman prints them: human sizes and times, `--format json|table|'{{…}}'` with Go
//! templates (the `gtmpl` crate), and columns aligned as Go's `text/tabwriter` aligns them.

use anyhow::Context;
use gtmpl::Value;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// A size as podman prints it: decimal units, three significant digits, formatted as Go's
/// `%.3g` (go-units' `HumanSizeWithPrecision(size, 3)`), e.g. `139 MB`, `3.63 MB`, `1e+03 kB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    // Three significant digits are shown, so f64's 52-bit mantissa loses nothing visible.
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{} {}", go_g(v, 3), UNITS[i])
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` for a non-negative `v`: `prec` significant
/// digits, trailing zeros dropped, exponent form (`1e+03`) when the exponent is below -4 or not
/// below the precision.
fn go_g(v: f64, prec: usize) -> String {
    // Rust's exponent form rounds exactly (half to even), as Go's decimal rounding does.
    let e = format!("{:.*e}", prec.saturating_sub(1), v);
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match all.trim_end_matches('0') {
        "" => "0",
        d => d,
    };
    let nd = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let dp = exp + 1;
    let prec = i64::try_from(prec).unwrap_or(i64::MAX);
    let eprec = if prec > nd && nd >= dp { nd } else { prec };
    if exp < -4 || exp >= eprec {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let p = if prec > dp { nd } else { prec };
    let decimals = usize::try_from((p - dp).max(0)).unwrap_or(0);
    // The digits at positions 0.. with the decimal point after `dp` of them.
    let digit = |i: i64| -> char {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.as_bytes().get(i))
            .map_or('0', |b| char::from(*b))
    };
    let mut out = String::new();
    if dp <= 0 {
        out.push('0');
    } else {
        (0..dp).for_each(|i| out.push(digit(i)));
    }
    if decimals > 0 {
        out.push('.');
        (0..i64::try_from(decimals).unwrap_or(0)).for_each(|i| out.push(digit(dp + i)));
    }
    out
}

/// A duration as go-units' `HumanDuration` words it (`Less than a second`, `About a minute`,
/// `About an hour`, `3 days`, `2 weeks`, ...).
pub fn human_duration(secs: u64) -> String {
    let minutes = secs / 60;
    // Go rounds to the nearest hour (half away from zero) for the hour steps.
    let hours = (secs + 1800) / 3600;
    match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// Seconds since the Unix epoch now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `then` relative to `now`, as podman's tables show it: `2 weeks ago`.
pub fn ago(then: u64, now: u64) -> String {
    format!("{} ago", human_duration(now.saturating_sub(then)))
}

/// Seconds since the epoch of an RFC 3339 time (`2026-01-01T00:00:00Z`), if it is one.
pub fn parse_time(rfc3339: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// A time as Go's `time.Time` prints itself in UTC: `2026-01-01 00:00:00 +0000 UTC`.
pub fn go_time(secs: u64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    format!(
        "{} +0000 UTC",
        s.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// What `--format` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns under a header; the template of one row (fields separated by tabs).
    Table(String),
    /// The objects as a JSON array.
    Json,
    /// A Go template executed for each object.
    Template(String),
}

impl Format {
    /// Parse `--format` as podman does: none or `table` is the listing's default table,
    /// `json` a JSON array, `table …` a table of the template given (spaces and `\t` separate
    /// the columns), anything else a template (with `\t` and `\n` as tab and newline).
    pub fn parse(arg: Option<&str>, default_table: &str) -> Format {
        let with_newline = |mut s: String| {
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        };
        match arg.map(str::trim) {
            None | Some("table") => Format::Table(with_newline(default_table.to_string())),
            Some("json") => Format::Json,
            Some(t) if t.starts_with("table ") => Format::Table(with_newline(
                t["table ".len()..]
                    .replace("\\t", "\t")
                    .replace("\\n", "\n")
                    .replace(' ', "\t"),
            )),
            Some(t) => Format::Template(with_newline(t.replace("\\t", "\t").replace("\\n", "\n"))),
        }
    }
}

/// A listing's column headers: the field name split before its capitals and upper-cased
/// (`VirtualSize` → `VIRTUAL SIZE`), unless `overrides` names it.
pub fn header(field: &str, overrides: &[(&str, &str)]) -> String {
    if let Some((_, h)) = overrides.iter().find(|(f, _)| *f == field) {
        return (*h).to_string();
    }
    let chars: Vec<char> = field.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_upper = i > 0 && chars[i - 1].is_uppercase();
        if c.is_uppercase() && (prev_lower || (prev_upper && next_lower)) {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// Render `rows` (one JSON object each, the template's fields) in `format`. `fields` are the
/// listing's field names, for the header of a table (`--noheading` drops it); `json` is what
/// `--format json` prints.
pub fn render(
    format: &Format,
    rows: &[Map<String, Json>],
    fields: &[&str],
    overrides: &[(&str, &str)],
    noheading: bool,
    json: &Json,
) -> anyhow::Result<String> {
    let (template, heading) = match format {
        Format::Json => return Ok(serde_json::to_string_pretty(json)? + "\n"),
        Format::Table(t) => (t, !noheading),
        Format::Template(t) => (t, false),
    };
    let tmpl = compile(template)?;
    let mut text = String::new();
    if heading {
        let headers: HashMap<String, Value> = fields
            .iter()
            .map(|f| ((*f).to_string(), Value::String(header(f, overrides))))
            .collect();
        // A header cell that is no field (`{{.Config.Env}}`) shows nothing, as in podman.
        text.push_str(
            &tmpl
                .render(&gtmpl::Context::from(Value::Map(headers)))
                .unwrap_or_default(),
        );
    }
    for row in rows {
        let value = Value::Object(row.iter().map(|(k, v)| (k.clone(), to_value(v))).collect());
        text.push_str(
            &tmpl
                .render(&gtmpl::Context::from(value))
                .map_err(exec_error)?,
        );
    }
    Ok(tabwrite(&text, 12, 2))
}

/// A template's run-time error; an unknown field is named with the fields there are.
fn exec_error(e: gtmpl::error::ExecError) -> anyhow::Error {
    match e {
        gtmpl::error::ExecError::NoFiledFor(field, Value::Object(m) | Value::Map(m)) => {
            let mut known: Vec<String> = m.keys().map(|k| format!(".{k}")).collect();
            known.sort();
            anyhow::anyhow!(
                "--format: no field .{field}; the fields are {}",
                known.join(" ")
            )
        }
        e => anyhow::anyhow!("--format: {e}"),
    }
}

/// Parse a Go template, with podman's functions (`json`, `join`, `lower`, `upper`, `split`,
/// `truncate`) and values printed as Go prints them (`[a b]` for a list).
fn compile(template: &str) -> anyhow::Result<gtmpl::Template> {
    let mut t = gtmpl::Template::default();
    t.add_funcs(&[
        ("gofmt", go_fmt as gtmpl::Func),
        ("json", json_fn as gtmpl::Func),
        ("join", join_fn as gtmpl::Func),
        ("lower", lower_fn as gtmpl::Func),
        ("upper", upper_fn as gtmpl::Func),
        ("split", split_fn as gtmpl::Func),
        ("truncate", truncate_fn as gtmpl::Func),
    ]);
    t.parse(print_as_go(template)?)
        .map_err(|e| anyhow::anyhow!("--format: {e}"))
        .context("the template is not a valid Go template")?;
    Ok(t)
}

/// `gtmpl` prints a list as Rust's debug form; each printing action gets `| gofmt` appended so
/// values print as Go's `{{…}}` does. Control actions (`if`, `range`, `end`, …), comments and
/// variable declarations print nothing and are left alone.
fn print_as_go(template: &str) -> anyhow::Result<String> {
    const CONTROL: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let body = &rest[start + 2..];
        let end = action_end(body)
            .with_context(|| format!("--format: unclosed action in {template:?}"))?;
        let inner = &body[..end];
        rest = &body[end + 2..];
        let (lead, inner) = match inner.strip_prefix('-') {
            Some(i) if i.starts_with(char::is_whitespace) => ("-", i),
            _ => ("", inner),
        };
        let (inner, trail) = match inner.strip_suffix('-') {
            Some(i) if i.ends_with(char::is_whitespace) => (i, "-"),
            _ => (inner, ""),
        };
        let word = inner
            .trim_start()
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        let silent = inner.trim().is_empty()
            || inner.trim_start().starts_with("/*")
            || CONTROL.contains(&word)
            || (word.starts_with('$') && inner.contains('='));
        let prints = !silent;
        if prints {
            out.push_str(&format!("{{{{{lead}{inner} | gofmt {trail}}}}}"));
        } else {
            out.push_str(&format!("{{{{{lead}{inner}{trail}}}}}"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where an action's closing `}}` is, skipping string and character literals.
fn action_end(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_u64()
            .map(Value::from)
            .or_else(|| n.as_i64().map(Value::from))
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Nil),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => n
            .as_u64()
            .map(Json::from)
            .or_else(|| n.as_i64().map(Json::from))
            .or_else(|| n.as_f64().map(Json::from))
            .unwrap_or(Json::Null),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// A value as Go's `fmt` prints it with `%v`.
fn go_string(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".to_string(),
        Value::Nil => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) | Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_string(&m[k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, gtmpl::FuncError> {
    match args {
        [a] => Ok(a),
        _ => Err(gtmpl::FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

fn string_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => go_string(other),
    }
}

fn go_fmt(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    Ok(Value::String(go_string(one_arg("gofmt", args)?)))
}

fn json_fn(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    Ok(Value::String(to_json(one_arg("json", args)?).to_string()))
}

fn lower_fn(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    Ok(Value::String(
        string_arg(one_arg("lower", args)?).to_lowercase(),
    ))
}

fn upper_fn(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    Ok(Value::String(
        string_arg(one_arg("upper", args)?).to_uppercase(),
    ))
}

fn join_fn(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    match args {
        [Value::Array(a), sep] => Ok(Value::String(
            a.iter()
                .map(string_arg)
                .collect::<Vec<_>>()
                .join(&string_arg(sep)),
        )),
        [other, _] => Ok(Value::String(string_arg(other))),
        _ => Err(gtmpl::FuncError::ExactlyXArgs("join".into(), 2)),
    }
}

fn split_fn(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    match args {
        [s, sep] => Ok(Value::Array(
            string_arg(s)
                .split(&string_arg(sep))
                .map(|p| Value::String(p.to_string()))
                .collect(),
        )),
        _ => Err(gtmpl::FuncError::ExactlyXArgs("split".into(), 2)),
    }
}

fn truncate_fn(args: &[Value]) -> Result<Value, gtmpl::FuncError> {
    match args {
        [s, Value::Number(n)] => {
            let n = n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            Ok(Value::String(string_arg(s).chars().take(n).collect()))
        }
        _ => Err(gtmpl::FuncError::ExactlyXArgs("truncate".into(), 2)),
    }
}

/// Align tab-separated cells as Go's `text/tabwriter` does with podman's settings: a column is
/// as wide as its widest cell plus `padding`, at least `min_width`; a line's last cell (after
/// its last tab) is not padded; widths are per block of consecutive lines sharing the column.
pub fn tabwrite(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    if text.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        &lines,
        &mut widths,
        0,
        lines.len(),
        min_width,
        padding,
        &mut out,
    );
    out
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(lines: &[Vec<&str>], widths: &[usize], from: usize, to: usize, out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len()
                && let Some(w) = widths.get(j)
            {
                let pad = w.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_podman() {
        // Outputs of go-units' HumanSizeWithPrecision(size, 3), as `podman images` shows them.
        for (bytes, want) in [
            (0, "0 B"),
            (1, "1 B"),
            (999, "999 B"),
            (1000, "1 kB"),
            (1024, "1.02 kB"),
            (1500, "1.5 kB"),
            (12_345, "12.3 kB"),
            (100_000, "100 kB"),
            (999_499, "999 kB"),
            (999_500, "1e+03 kB"),
            (999_999, "1e+03 kB"),
            (1_000_000, "1 MB"),
            (3_626_055, "3.63 MB"),
            (7_620_000, "7.62 MB"),
            (12_345_678, "12.3 MB"),
            (139_228_000, "139 MB"),
            (1_000_000_000, "1 GB"),
            (1_234_567_890_123, "1.23 TB"),
            (u64::MAX, "18.4 EB"),
        ] {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn go_g_exponents() {
        assert_eq!(go_g(0.000_012_3, 3), "1.23e-05");
        assert_eq!(go_g(0.001_23, 3), "0.00123");
        assert_eq!(go_g(0.5, 3), "0.5");
        assert_eq!(go_g(10.0, 3), "10");
    }

    #[test]
    fn durations_match_podman() {
        // go-units' HumanDuration, which podman prints with " ago".
        for (secs, want) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (13 * 86400, "13 days"),
            (14 * 86400, "2 weeks"),
            (59 * 86400, "8 weeks"),
            (60 * 86400, "2 months"),
            (729 * 86400, "24 months"),
            (730 * 86400, "2 years"),
            (56 * 365 * 86400 + 20 * 86400, "56 years"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
        assert_eq!(ago(100, 100 + 14 * 86400), "2 weeks ago");
        assert_eq!(ago(200, 100), "Less than a second ago");
    }

    #[test]
    fn times_parse_and_print_as_go() {
        let t = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t, 1_767_225_600);
        assert_eq!(parse_time("2026-01-01T00:00:00.123456789Z"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(go_time(t), "2026-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn tables_align_as_go_tabwriter() {
        // podman's empty `images` and `ps` headers, byte for byte.
        assert_eq!(
            tabwrite("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\n", 12, 2),
            "REPOSITORY  TAG         IMAGE ID    CREATED     SIZE\n"
        );
        let t = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\n\
                 localhost/pmtest\t1\tf9ebfea954c1\t1 second ago\t3.63 MB\n";
        assert_eq!(
            tabwrite(t, 12, 2),
            "REPOSITORY        TAG         IMAGE ID      CREATED       SIZE\n\
             localhost/pmtest  1           f9ebfea954c1  1 second ago  3.63 MB\n"
        );
        // A line with fewer cells ends the column's block.
        assert_eq!(
            tabwrite("a\tb\nc\nlonger-than-12\td\n", 12, 2),
            "a           b\nc\nlonger-than-12  d\n"
        );
    }

    #[test]
    fn headers_split_field_names() {
        let o = [("ID", "IMAGE ID")];
        assert_eq!(header("ID", &o), "IMAGE ID");
        assert_eq!(header("VirtualSize", &o), "VIRTUAL SIZE");
        assert_eq!(header("ImageID", &o), "IMAGE ID");
        assert_eq!(header("CreatedAt", &o), "CREATED AT");
    }

    fn row(pairs: &[(&str, Json)]) -> Map<String, Json> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn templates_render_as_podman() {
        let rows = [row(&[
            ("Repository", Json::from("localhost/a")),
            ("Tag", Json::from("1")),
            ("ID", Json::from("abcdefabcdef")),
            ("Size", Json::from("3.63 MB")),
            ("Names", serde_json::json!(["localhost/a:1", "b:2"])),
            ("CreatedSince", Json::from("2 weeks ago")),
        ])];
        // CreatedSince is a field of the rows but has no header, as in podman.
        let fields = ["Repository", "Tag", "ID", "Size", "Names"];
        let over = [("ID", "IMAGE ID")];
        let json = Json::Null;
        let r = |f: &str, noheading| {
            render(
                &Format::parse(Some(f), ""),
                &rows,
                &fields,
                &over,
                noheading,
                &json,
            )
            .unwrap()
        };
        assert_eq!(
            r("{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}", false),
            "localhost/a:1 abcdefabcdef 3.63 MB\n"
        );
        assert_eq!(
            r("table {{.ID}}\\t{{.Names}}", false),
            "IMAGE ID      NAMES\nabcdefabcdef  [localhost/a:1 b:2]\n"
        );
        assert_eq!(r("table {{.ID}} {{.Tag}}", true), "abcdefabcdef  1\n");
        // A field with no header of its own shows podman's `<no value>`.
        assert_eq!(
            r("table {{.ID}} {{.CreatedSince}}", false).lines().next(),
            Some("IMAGE ID      <no value>")
        );
        assert_eq!(r("{{join .Names \",\"}}", false), "localhost/a:1,b:2\n");
        assert_eq!(
            r("{{range .Names}}<{{.}}>{{end}}", false),
            "<localhost/a:1><b:2>\n"
        );
        assert_eq!(r("{{if .Tag}}tagged{{end}}", false), "tagged\n");
        assert_eq!(r("{{upper .Tag}}{{lower \"X\"}}", false), "1x\n");
        let j: Json = serde_json::from_str(r("{{json .}}", false).trim()).unwrap();
        assert_eq!(j["Names"][1], "b:2");
        assert_eq!(j["ID"], "abcdefabcdef");
        assert_eq!(r("{{json .Names}}", false), "[\"localhost/a:1\",\"b:2\"]\n");
    }

    #[test]
    fn bad_templates_are_errors_naming_the_problem() {
        let rows = [row(&[("ID", Json::from("x"))])];
        let r = |f: &str| {
            render(
                &Format::parse(Some(f), ""),
                &rows,
                &["ID"],
                &[],
                false,
                &Json::Null,
            )
            .map_err(|e| format!("{e:#}"))
        };
        let e = r("{{.Nope}}").unwrap_err();
        assert!(e.contains("--format") && e.contains("Nope"), "{e}");
        let e = r("{{.ID").unwrap_err();
        assert!(e.contains("--format"), "{e}");
        assert_eq!(r("{{.ID}}").unwrap(), "x\n");
    }
}
