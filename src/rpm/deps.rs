//! Parsing dependencies in the text forms rpm and zypper take: simple ones (`name`,
//! `name >= 1.0-2`, `/bin/sh`, `perl(Foo::Bar) >= 1`) and rich (boolean) ones (`(a or b)`,
//! `(a if b else c)`, `(a with b)`, nested), with rpm's syntax rules: different operators are
//! not mixed without parentheses (only `and`, `or` and `with` chain), `if` and `unless` take at
//! most one `else`, and `with`/`without` operands are packages (simple dependencies, or
//! parenthesised `with`, `without` and `or` of them).

use std::fmt;

use super::package::{Cmp, Dep, Requirement, Rich};
use super::version::Evr;

/// A dependency that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepError {
    /// The text is not a valid dependency.
    #[error("bad dependency {text:?} at byte {pos}: {message}")]
    Syntax {
        /// The whole dependency text.
        text: String,
        /// Byte offset of the problem in `text`.
        pos: usize,
        /// What is wrong there.
        message: String,
    },
    /// A primary.xml `<rpm:entry>` whose attributes do not fit together.
    #[error("bad dependency entry {name:?}: {message}")]
    Entry {
        /// The entry's `name` attribute.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Parses a dependency as written in a spec file or on zypper's command line: a simple one
/// (`name [op evr]`, operators `<`, `<=`, `=`, `>=`, `>` and rpm's spellings `=<`, `==`, `=>`)
/// or a rich one in parentheses.
pub fn parse_requirement(s: &str) -> Result<Requirement, DepError> {
    let mut p = Parser { text: s, pos: 0 };
    p.skip_white();
    if p.pos == s.len() {
        return Err(p.error("empty dependency"));
    }
    let req = if p.peek() == Some(b'(') {
        Requirement::Rich(Box::new(p.rich()?))
    } else {
        Requirement::Simple(p.simple()?)
    };
    p.skip_white();
    if p.pos != s.len() {
        return Err(p.error("unexpected text after the dependency"));
    }
    Ok(req)
}

/// The requirement one primary.xml `<rpm:entry>` describes: `name` with the comparison
/// `flags` (`EQ`, `GE`, …) against `epoch:ver-rel`, or, when `name` starts with `(`, the rich
/// dependency it spells (such entries carry no flags). `pre` is the entry's `pre="1"`.
pub fn requirement_from_entry(
    name: &str,
    flags: Option<&str>,
    epoch: Option<&str>,
    ver: Option<&str>,
    rel: Option<&str>,
    pre: bool,
) -> Result<Requirement, DepError> {
    let entry_error = |message: &str| DepError::Entry {
        name: name.to_string(),
        message: message.to_string(),
    };
    if name.starts_with('(') {
        if flags.is_some() || ver.is_some() {
            return Err(entry_error("a rich dependency cannot carry a version"));
        }
        return parse_requirement(name);
    }
    if name.is_empty() {
        return Err(entry_error("empty name"));
    }
    if name.chars().any(char::is_whitespace) {
        return Err(entry_error("white space in the name"));
    }
    let version = match flags {
        None => {
            if ver.is_some() {
                return Err(entry_error("a version without comparison flags"));
            }
            None
        }
        Some(f) => {
            let cmp = Cmp::from_flags(f)
                .ok_or_else(|| entry_error(&format!("unknown comparison flags {f:?}")))?;
            let version = ver
                .filter(|v| !v.is_empty())
                .ok_or_else(|| entry_error("comparison flags without a version"))?;
            let epoch = match epoch {
                None => None,
                Some(e) => Some(
                    e.parse::<u32>()
                        .map_err(|_| entry_error(&format!("bad epoch {e:?}")))?,
                ),
            };
            Some((
                cmp,
                Evr {
                    epoch,
                    version: version.to_string(),
                    release: rel.filter(|r| !r.is_empty()).map(str::to_string),
                },
            ))
        }
    };
    Ok(Requirement::Simple(Dep {
        name: name.to_string(),
        version,
        pre,
    }))
}

/// A rich operator, as the parser meets it between operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
    If,
    Unless,
    Else,
    With,
    Without,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "and" => Op::And,
            "or" => Op::Or,
            "if" => Op::If,
            "unless" => Op::Unless,
            "else" => Op::Else,
            "with" => Op::With,
            "without" => Op::Without,
            _ => return None,
        })
    }

    fn word(self) -> &'static str {
        match self {
            Op::And => "and",
            Op::Or => "or",
            Op::If => "if",
            Op::Unless => "unless",
            Op::Else => "else",
            Op::With => "with",
            Op::Without => "without",
        }
    }
}

/// rpm's comparison operators, longest first so `<=` is not read as `<`.
const COMPARISONS: [(&str, Cmp); 8] = [
    ("<=", Cmp::Le),
    ("=<", Cmp::Le),
    (">=", Cmp::Ge),
    ("=>", Cmp::Ge),
    ("==", Cmp::Eq),
    ("<", Cmp::Lt),
    (">", Cmp::Gt),
    ("=", Cmp::Eq),
];

/// Nesting deeper than this is refused: hostile metadata must not exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> DepError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: &str) -> DepError {
        DepError::Syntax {
            text: self.text.to_string(),
            pos,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_white(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// A word as rpm delimits one: up to white space, a comma, or a `)` that closes no `(`
    /// opened inside the word (so `perl(Foo::Bar)` and `pattern()` are single words).
    fn word(&mut self) -> &str {
        let start = self.pos;
        let mut level = 0usize;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || c == b',' {
                break;
            }
            if c == b')' {
                if level == 0 {
                    break;
                }
                level -= 1;
            }
            if c == b'(' {
                level += 1;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// `name [op evr]`.
    fn simple(&mut self) -> Result<Dep, DepError> {
        let start = self.pos;
        let name = self.word().to_string();
        if name.is_empty() {
            return Err(self.error_at(start, "name required"));
        }
        let after_name = self.pos;
        self.skip_white();
        let op = self.word().to_string();
        let cmp = COMPARISONS.iter().find(|(s, _)| *s == op).map(|&(_, c)| c);
        let Some(cmp) = cmp else {
            self.pos = after_name;
            return Ok(Dep::named(name));
        };
        self.skip_white();
        let evr_start = self.pos;
        let evr = self.word().to_string();
        if evr.is_empty() {
            return Err(self.error_at(evr_start, "version required"));
        }
        if evr.contains('(') {
            return Err(self.error_at(evr_start, "parenthesis in a version"));
        }
        Ok(Dep {
            name,
            version: Some((cmp, Evr::parse(&evr))),
            pre: false,
        })
    }

    fn rich(&mut self) -> Result<Rich, DepError> {
        self.rich_at(0)
    }

    /// `( operand (op operand)* )`, at nesting `depth`.
    fn rich_at(&mut self, depth: usize) -> Result<Rich, DepError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("rich dependency nested too deeply"));
        }
        let open = self.pos;
        if self.peek() != Some(b'(') {
            return Err(self.error("rich dependency does not start with '('"));
        }
        self.pos += 1;
        let mut operands: Vec<(Requirement, usize)> = Vec::new();
        let mut ops: Vec<(Op, usize)> = Vec::new();
        loop {
            self.skip_white();
            match self.peek() {
                None => return Err(self.error_at(open, "unterminated rich dependency")),
                Some(b')') => {
                    let message = if ops.is_empty() {
                        "empty rich dependency"
                    } else {
                        "missing argument to rich dependency operator"
                    };
                    return Err(self.error(message));
                }
                _ => {}
            }
            let at = self.pos;
            let operand = if self.peek() == Some(b'(') {
                Requirement::Rich(Box::new(self.rich_at(depth + 1)?))
            } else {
                Requirement::Simple(self.simple()?)
            };
            operands.push((operand, at));
            self.skip_white();
            match self.peek() {
                None => return Err(self.error_at(open, "unterminated rich dependency")),
                Some(b')') => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let op_at = self.pos;
            let word = self.word();
            let Some(op) = Op::from_word(word) else {
                let message = if word.is_empty() {
                    "expected a rich dependency operator".to_string()
                } else {
                    format!("unknown rich dependency operator {word:?}")
                };
                return Err(self.error_at(op_at, &message));
            };
            // rpm's chaining rules: after `if`/`unless` one `else` may follow; otherwise the
            // same operator may repeat, and only `and`, `or` and `with` repeat.
            if let Some(&(prev, _)) = ops.last() {
                let else_ok =
                    op == Op::Else && matches!(prev, Op::If | Op::Unless) && ops.len() == 1;
                if !else_ok {
                    if op != prev || ops.iter().any(|(o, _)| *o != op) {
                        return Err(self.error_at(
                            op_at,
                            &format!(
                                "cannot chain different operators ({} after {}) without parentheses",
                                op.word(),
                                prev.word()
                            ),
                        ));
                    }
                    if !matches!(op, Op::And | Op::Or | Op::With) {
                        return Err(self.error_at(
                            op_at,
                            &format!("only and, or and with can be chained, not {}", op.word()),
                        ));
                    }
                }
            } else if op == Op::Else {
                return Err(self.error_at(op_at, "else without if or unless"));
            }
            ops.push((op, op_at));
        }
        let first = ops.first().map(|&(o, _)| o);
        // `with`/`without` operands name packages: only sets of packages may appear there.
        if matches!(first, Some(Op::With | Op::Without)) {
            for (operand, at) in &operands {
                if !is_package_set(operand) {
                    return Err(self.error_at(
                        *at,
                        "with/without operands may only be simple dependencies or with, without and or expressions",
                    ));
                }
            }
        }
        let mut all: Vec<Requirement> = operands.into_iter().map(|(r, _)| r).collect();
        let rich = match first {
            // A lone operand in parentheses: `(a)` means `a`.
            None => match all.pop() {
                Some(Requirement::Rich(r)) => *r,
                Some(simple) => Rich::And(vec![simple]),
                None => return Err(self.error_at(open, "empty rich dependency")),
            },
            Some(Op::And) => Rich::And(all),
            Some(Op::Or) => Rich::Or(all),
            Some(Op::With) => Rich::With(all),
            Some(op) => {
                // Two operands, or three with `else`: the chaining rules above guarantee it.
                let mut it = all.into_iter();
                let (Some(a), Some(b)) = (it.next(), it.next()) else {
                    return Err(self.error_at(open, "missing operand"));
                };
                let c = it.next();
                match op {
                    Op::Without => Rich::Without(a, b),
                    Op::If => Rich::If(a, b, c),
                    Op::Unless => Rich::Unless(a, b, c),
                    _ => return Err(self.error_at(open, "else without if or unless")),
                }
            }
        };
        Ok(rich)
    }
}

/// Whether `r` denotes a set of packages (what `with` and `without` combine): a simple
/// dependency, or `with`, `without` and `or` of such sets.
fn is_package_set(r: &Requirement) -> bool {
    match r {
        Requirement::Simple(_) => true,
        Requirement::Rich(rich) => match &**rich {
            Rich::With(v) | Rich::Or(v) => v.iter().all(is_package_set),
            Rich::Without(a, b) => is_package_set(a) && is_package_set(b),
            Rich::And(v) => v.len() == 1 && is_package_set(&v[0]),
            Rich::If(..) | Rich::Unless(..) => false,
        },
    }
}

impl fmt::Display for Requirement {
    /// rpm's spelling: `name >= 1.0`, `(a or (b and c))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Simple(d) => d.fmt(f),
            Requirement::Rich(r) => r.fmt(f),
        }
    }
}

impl fmt::Display for Rich {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, v: &[Requirement], op: &str| {
            f.write_str("(")?;
            for (i, r) in v.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                r.fmt(f)?;
            }
            f.write_str(")")
        };
        match self {
            Rich::And(v) => join(f, v, "and"),
            Rich::Or(v) => join(f, v, "or"),
            Rich::With(v) => join(f, v, "with"),
            Rich::Without(a, b) => write!(f, "({a} without {b})"),
            Rich::If(a, b, c) | Rich::Unless(a, b, c) => {
                let op = if matches!(self, Rich::If(..)) {
                    "if"
                } else {
                    "unless"
                };
                write!(f, "({a} {op} {b}")?;
                if let Some(c) = c {
                    write!(f, " else {c}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(name: &str) -> Requirement {
        Requirement::Simple(Dep::named(name))
    }

    fn rich(r: Rich) -> Requirement {
        Requirement::Rich(Box::new(r))
    }

    #[test]
    fn simple_forms() {
        assert_eq!(parse_requirement("bash").unwrap(), simple("bash"));
        assert_eq!(parse_requirement("/bin/sh").unwrap(), simple("/bin/sh"));
        assert_eq!(
            parse_requirement("  pattern()  ").unwrap(),
            simple("pattern()")
        );
        let Requirement::Simple(d) = parse_requirement("name >= 1.0-2").unwrap() else {
            panic!()
        };
        assert_eq!(d.name, "name");
        assert_eq!(d.version, Some((Cmp::Ge, Evr::parse("1.0-2"))));
        let Requirement::Simple(d) = parse_requirement("name = 1:2.3").unwrap() else {
            panic!()
        };
        assert_eq!(d.version.unwrap().1.epoch, Some(1));
        let Requirement::Simple(d) = parse_requirement("perl(Foo::Bar) >= 1").unwrap() else {
            panic!()
        };
        assert_eq!(d.name, "perl(Foo::Bar)");
        assert_eq!(d.to_string(), "perl(Foo::Bar) >= 1");
        let Requirement::Simple(d) = parse_requirement("pattern() = x").unwrap() else {
            panic!()
        };
        assert_eq!(
            (d.name.as_str(), d.version.unwrap().0),
            ("pattern()", Cmp::Eq)
        );
        for (text, cmp) in [
            ("a =< 1", Cmp::Le),
            ("a => 1", Cmp::Ge),
            ("a == 1", Cmp::Eq),
        ] {
            let Requirement::Simple(d) = parse_requirement(text).unwrap() else {
                panic!()
            };
            assert_eq!(d.version.unwrap().0, cmp, "{text}");
        }
    }

    #[test]
    fn rich_forms_nest() {
        assert_eq!(
            parse_requirement("(a or b)").unwrap(),
            rich(Rich::Or(vec![simple("a"), simple("b")]))
        );
        assert_eq!(
            parse_requirement("(a and (b or c))").unwrap(),
            rich(Rich::And(vec![
                simple("a"),
                rich(Rich::Or(vec![simple("b"), simple("c")]))
            ]))
        );
        assert_eq!(
            parse_requirement("(a if b else c)").unwrap(),
            rich(Rich::If(simple("a"), simple("b"), Some(simple("c"))))
        );
        assert_eq!(
            parse_requirement("(a unless b)").unwrap(),
            rich(Rich::Unless(simple("a"), simple("b"), None))
        );
        assert_eq!(
            parse_requirement("(a with b with c)").unwrap(),
            rich(Rich::With(vec![simple("a"), simple("b"), simple("c")]))
        );
        assert_eq!(
            parse_requirement("(a without b)").unwrap(),
            rich(Rich::Without(simple("a"), simple("b")))
        );
        let text = "((pkgA with capB) or (pkgB without capA))";
        assert_eq!(parse_requirement(text).unwrap().to_string(), text);
        let text = "((myPkg-langCZ and (font1-langCZ or font2-langCZ)) if langsupportCZ)";
        assert_eq!(parse_requirement(text).unwrap().to_string(), text);
        let text = "(python3-foo >= 1.2 if (python3 with python3-libs = 3.11) else foo-compat)";
        assert_eq!(parse_requirement(text).unwrap().to_string(), text);
        // Versions and provides with parentheses inside rich dependencies.
        let r = parse_requirement("(perl(Foo) >= 1.0 or pattern())").unwrap();
        assert_eq!(r.to_string(), "(perl(Foo) >= 1.0 or pattern())");
        // `(a)` is just `a`, and a rich expression in extra parentheses is itself.
        assert_eq!(
            parse_requirement("((a or b))").unwrap(),
            parse_requirement("(a or b)").unwrap()
        );
    }

    #[test]
    fn rpms_syntax_rules_are_enforced_with_positions() {
        let err = |s: &str| match parse_requirement(s) {
            Err(DepError::Syntax { pos, message, text }) => {
                assert_eq!(text, s);
                (pos, message)
            }
            other => panic!("{s}: {other:?}"),
        };
        assert!(err("(a and b or c)").1.contains("cannot chain"));
        assert_eq!(err("(a and b or c)").0, 9);
        assert!(
            err("(a if b if c)").1.contains("cannot chain")
                || err("(a if b if c)").1.contains("only and")
        );
        assert!(
            err("(a without b without c)")
                .1
                .contains("only and, or and with")
        );
        assert!(err("(a if b else c else d)").1.contains("cannot chain"));
        assert!(err("(a or b else c)").1.contains("cannot chain"));
        assert!(err("(a else b)").1.contains("else without"));
        assert!(err("()").1.contains("empty"));
        assert!(err("(a and )").1.contains("missing argument"));
        assert_eq!(err("(a or b").0, 0);
        assert!(err("(a or b").1.contains("unterminated"));
        assert!(err("(a xor b)").1.contains("unknown"));
        assert_eq!(err("(a xor b)").0, 3);
        assert!(err("(a >= )").1.contains("version required"));
        assert!(err("a >=").1.contains("version required"));
        assert!(err("a b").1.contains("unexpected text"));
        assert!(
            err("(a with (b and c))")
                .1
                .contains("with/without operands")
        );
        assert!(err("(a with (b if c))").1.contains("with/without operands"));
        assert!(err("").1.contains("empty"));
        let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
        assert!(err(&deep).1.contains("too deeply"));
        // Allowed: or inside with, with inside with.
        assert!(parse_requirement("(a with (b or c))").is_ok());
        assert!(parse_requirement("(a with (b without c))").is_ok());
    }

    #[test]
    fn primary_entries() {
        let r = requirement_from_entry(
            "glibc",
            Some("GE"),
            Some("0"),
            Some("2.34"),
            Some("1"),
            true,
        )
        .unwrap();
        let Requirement::Simple(d) = &r else { panic!() };
        assert!(d.pre);
        assert_eq!(d.to_string(), "glibc >= 2.34-1");
        let r = requirement_from_entry("foo", Some("EQ"), None, Some("1.0"), None, false).unwrap();
        assert_eq!(r.to_string(), "foo = 1.0");
        assert_eq!(
            requirement_from_entry("foo", None, None, None, None, false).unwrap(),
            simple("foo")
        );
        let r = requirement_from_entry("(a if b)", None, None, None, None, false).unwrap();
        assert_eq!(r, rich(Rich::If(simple("a"), simple("b"), None)));
        for (flags, epoch, ver) in [
            (Some("XX"), None, Some("1")),
            (Some("EQ"), None, None),
            (Some("EQ"), Some("x"), Some("1")),
            (None, None, Some("1")),
        ] {
            assert!(matches!(
                requirement_from_entry("foo", flags, epoch, ver, None, false),
                Err(DepError::Entry { .. })
            ));
        }
        assert!(matches!(
            requirement_from_entry("(a or", None, None, None, None, false),
            Err(DepError::Syntax { .. })
        ));
        assert!(
            requirement_from_entry("(a or b)", Some("EQ"), None, Some("1"), None, false).is_err()
        );
    }
}
