//! How an error reaches the user: one line, `<what failed>: <cause>`, each cause said once.

/// The error and its causes joined by ": ", as `{:#}` prints them, but leaving out a cause the
/// text before it already says: library errors embed their source in their own message, and a
/// wrapper may repeat what it wraps.
pub fn text(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !cause.is_empty() && !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    without_errno(&out)
}

/// The problems an error's text lists, one per line (several blockers of a description, the
/// preflight's findings), each with the indented lines that follow it (a solver's explanation):
/// each is printed as an error of its own.
pub fn problems(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        match out.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) || line.is_empty() => {
                last.push('\n');
                last.push_str(line);
            }
            _ => out.push(line.to_string()),
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// `text` without the ` (os error N)` Rust adds to an OS error's description: the description
/// says it, and the number means nothing to a user.
fn without_errno(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::text;

    #[derive(Debug, thiserror::Error)]
    #[error("/x: {0}")]
    struct Embeds(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("container c1: {0}")]
    struct Wraps(#[source] Embeds);

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(Embeds(io)).context("loading y");
        assert_eq!(text(&err), "loading y: /x: disk on fire");
    }

    #[test]
    fn a_cause_said_in_the_middle_is_not_repeated_at_the_end() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(Wraps(Embeds(io)));
        assert_eq!(text(&err), "container c1: /x: disk on fire");
        let err = err.context("running");
        assert_eq!(text(&err), "running: container c1: /x: disk on fire");
    }

    #[test]
    fn each_listed_problem_is_its_own_error_and_indented_lines_stay_with_theirs() {
        assert_eq!(
            super::problems("a.xml:1:2: one\na.xml:3:4: two"),
            ["a.xml:1:2: one", "a.xml:3:4: two"]
        );
        assert_eq!(
            super::problems("cannot be installed together:\n  a needs b\n    b is missing"),
            ["cannot be installed together:\n  a needs b\n    b is missing"]
        );
        assert_eq!(super::problems(""), [""]);
    }

    #[test]
    fn os_error_numbers_are_left_out() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = anyhow::Error::new(io).context("nosuch");
        assert_eq!(text(&err), "nosuch: No such file or directory");
        assert_eq!(
            super::without_errno("a (os error x) b (os error 13): c"),
            "a (os error x) b: c"
        );
    }

    #[test]
    fn a_cause_not_yet_said_is_added() {
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(text(&err), "outer: inner");
    }
}
