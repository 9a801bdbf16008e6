//! Parsing the user's `run` options as Docker reads them: sizes, volume specs, environment
//! variables and env files, user specs.

use super::{Result, RuntimeError};
use std::path::{Path, PathBuf};

/// Parse a memory size as Docker does (`RAMInBytes`): a number, optionally with a fraction,
/// then an optional binary unit `b`, `k`, `m`, `g`, `t` or `p` (any case), optionally followed
/// by `i` and/or `b` (`64m`, `64MiB`, `1.5g`, `1048576`).
// A size with a fraction (`1.5g`) is computed in f64; the range is checked before the cast back.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = |reason: &str| RuntimeError::InvalidSize {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let s = text.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad(
            "expected a number, optionally followed by b, k, m, g, t or p",
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| bad("expected a number, optionally followed by b, k, m, g, t or p"))?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let (mult, rest) = match unit.chars().next() {
        Some('k') => (1u64 << 10, &unit[1..]),
        Some('m') => (1 << 20, &unit[1..]),
        Some('g') => (1 << 30, &unit[1..]),
        Some('t') => (1 << 40, &unit[1..]),
        Some('p') => (1 << 50, &unit[1..]),
        _ => (1, unit.as_str()),
    };
    let rest = rest.strip_prefix('i').filter(|_| mult > 1).unwrap_or(rest);
    if !(rest.is_empty() || rest == "b") {
        return Err(bad(&format!(
            "unknown unit '{}' (use b, k, m, g, t or p)",
            &unit
        )));
    }
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

/// A `-v HOST:CONTAINER[:OPTIONS]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// The host path (absolute).
    pub host: PathBuf,
    /// The path inside the container (absolute).
    pub container: PathBuf,
    /// Mounted read-only (`ro`).
    pub read_only: bool,
}

impl std::str::FromStr for Volume {
    type Err = RuntimeError;

    /// Parse `HOST:CONTAINER[:ro|rw]`. Named volumes and anonymous volumes (no host part) are
    /// not supported: imgbuild keeps no volume store.
    fn from_str(spec: &str) -> Result<Volume> {
        let bad = |reason: String| RuntimeError::InvalidVolume {
            spec: spec.to_string(),
            reason,
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, opts) = match parts.as_slice() {
            [h, c] => (*h, *c, ""),
            [h, c, o] => (*h, *c, *o),
            [_] => {
                return Err(bad(
                    "expected HOST:CONTAINER[:ro]; anonymous volumes are not supported".into(),
                ));
            }
            _ => return Err(bad("too many ':' (expected HOST:CONTAINER[:ro])".into())),
        };
        if host.is_empty() || container.is_empty() {
            return Err(bad("empty host or container path".into()));
        }
        if !host.starts_with('/') {
            return Err(bad(format!(
                "host path '{host}' is not absolute (named volumes are not supported)"
            )));
        }
        if !container.starts_with('/') {
            return Err(bad(format!("container path '{container}' is not absolute")));
        }
        if Path::new(container) == Path::new("/") {
            return Err(bad("cannot mount over the container's /".into()));
        }
        let mut read_only = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => read_only = true,
                "rw" => read_only = false,
                other => return Err(bad(format!("unknown option '{other}' (use ro or rw)"))),
            }
        }
        Ok(Volume {
            host: PathBuf::from(host),
            container: PathBuf::from(container),
            read_only,
        })
    }
}

/// Parse one `-e` value: `KEY=VALUE`, or `KEY` alone to pass the variable from `lookup` (the
/// host environment), as Docker does; `None` when `KEY` is unset there.
pub fn parse_env(
    spec: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>> {
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (spec, None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) || key.contains('\0') {
        return Err(RuntimeError::InvalidEnv {
            spec: spec.to_string(),
            reason: "the variable name is empty or contains whitespace".into(),
        });
    }
    Ok(match value {
        Some(v) => Some((key.to_string(), v)),
        None => lookup(key).map(|v| (key.to_string(), v)),
    })
}

/// Parse an `--env-file` as Docker does: one `KEY=VALUE` or `KEY` per line, lines starting
/// with `#` and blank lines ignored, values taken literally (no quotes, no expansion).
pub fn parse_env_file(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let entry = parse_env(trimmed, lookup).map_err(|e| RuntimeError::EnvFile {
            path: path.to_path_buf(),
            line: n + 1,
            reason: e.to_string(),
        })?;
        out.extend(entry);
    }
    Ok(out)
}

/// A `-u USER[:GROUP]` or image `User`: names or numeric ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserSpec {
    /// User name or uid.
    pub user: String,
    /// Group name or gid.
    pub group: Option<String>,
}

impl UserSpec {
    /// Parse `USER[:GROUP]`.
    pub fn parse(spec: &str) -> Result<UserSpec> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(RuntimeError::InvalidUser {
                spec: spec.to_string(),
                reason: "expected USER[:GROUP] (names or numeric ids)".into(),
            });
        }
        Ok(UserSpec {
            user: user.to_string(),
            group: group.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("10b").unwrap(), 10);
        assert_eq!(parse_size("2 k").unwrap(), 2048);
        for bad in ["", "m", "64x", "-1", "1..5m", ".5m", "64mm", "64ib", "1e3"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
        assert!(parse_size("99999999999p").is_err());
    }

    #[test]
    fn volume_specs() {
        let v: Volume = "/srv/data:/data:ro".parse().unwrap();
        assert_eq!(
            v,
            Volume {
                host: "/srv/data".into(),
                container: "/data".into(),
                read_only: true
            }
        );
        let v: Volume = "/a:/b".parse().unwrap();
        assert!(!v.read_only);
        for (bad, why) in [
            ("/data", "anonymous"),
            ("data:/data", "named volumes"),
            ("/a:b", "not absolute"),
            ("/a:/b:rx", "unknown option 'rx'"),
            ("/a:/b:ro:x", "too many"),
            (":/b", "empty"),
            ("/a:/", "container's /"),
        ] {
            let err = bad.parse::<Volume>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn env_and_env_files() {
        let lookup = |k: &str| (k == "HOSTVAR").then(|| "fromhost".to_string());
        assert_eq!(
            parse_env("A=b=c", &lookup).unwrap(),
            Some(("A".into(), "b=c".into()))
        );
        assert_eq!(
            parse_env("HOSTVAR", &lookup).unwrap(),
            Some(("HOSTVAR".into(), "fromhost".into()))
        );
        assert_eq!(parse_env("UNSET", &lookup).unwrap(), None);
        assert!(parse_env("=x", &lookup).is_err());
        let text = "# comment\n\nA=1\n  B=two words \nHOSTVAR\nUNSET\nQ=\"quoted\"\n";
        assert_eq!(
            parse_env_file(Path::new("f.env"), text, &lookup).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words ".into()),
                ("HOSTVAR".into(), "fromhost".into()),
                ("Q".into(), "\"quoted\"".into()),
            ]
        );
        let err = parse_env_file(Path::new("f.env"), "A=1\nbad key=1\n", &lookup)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.env:2"), "{err}");
    }

    #[test]
    fn user_specs() {
        assert_eq!(
            UserSpec::parse("app:staff").unwrap(),
            UserSpec {
                user: "app".into(),
                group: Some("staff".into())
            }
        );
        assert_eq!(UserSpec::parse("1000").unwrap().group, None);
        assert!(UserSpec::parse("").is_err());
        assert!(UserSpec::parse("a:").is_err());
        assert!(UserSpec::parse(":g").is_err());
    }
}

/// The `RLIMIT_*` resources `--ulimit` names, as Docker spells them.
const ULIMITS: &[(&str, u32)] = &[
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

/// A `--ulimit NAME=SOFT[:HARD]` (`-1` for unlimited; the hard limit defaults to the soft).
pub fn parse_ulimit(text: &str) -> Result<(u32, u64, u64)> {
    let bad = |reason: String| RuntimeError::InvalidOption {
        option: "--ulimit",
        reason: format!("'{text}': {reason}"),
    };
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]".into()))?;
    let resource = ULIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, r)| r)
        .ok_or_else(|| bad(format!("unknown limit '{name}'")))?;
    let value = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(libc::RLIM_INFINITY);
        }
        v.parse::<u64>()
            .map_err(|_| bad(format!("'{v}' is not a number")))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit exceeds the hard limit".into()));
    }
    Ok((resource, soft, hard))
}

/// A signal as podman takes it (`--stop-signal`, `kill -s`, the image's `StopSignal`): a name
/// with or without `SIG` in any case (`TERM`, `SIGQUIT`, `sigwinch`) or a number (`9`).
pub fn parse_signal(text: &str) -> Result<i32> {
    let bad = |reason: &str| RuntimeError::InvalidOption {
        option: "signal",
        reason: format!("'{text}': {reason}"),
    };
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad("not a signal number (1 to 64)"))
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let base = libc::SIGRTMIN();
        let off = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('+')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(|| bad("unknown signal"))?
        };
        return if base + off <= libc::SIGRTMAX() {
            Ok(base + off)
        } else {
            Err(bad("unknown signal"))
        };
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad("unknown signal"))
}

#[cfg(test)]
mod signal_tests {
    use super::parse_signal;

    #[test]
    fn ulimits_as_docker_spells_them() {
        use super::parse_ulimit;
        assert_eq!(
            parse_ulimit("nofile=1024:2048").unwrap(),
            (libc::RLIMIT_NOFILE, 1024, 2048)
        );
        assert_eq!(
            parse_ulimit("core=-1").unwrap(),
            (libc::RLIMIT_CORE, libc::RLIM_INFINITY, libc::RLIM_INFINITY)
        );
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigquit").unwrap(), libc::SIGQUIT);
        assert_eq!(parse_signal("SIGWINCH").unwrap(), libc::SIGWINCH);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
    }
}
