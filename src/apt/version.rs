//! Debian package versions (`[epoch:]upstream[-revision]`), parsed with dpkg's validity rules and
//! ordered exactly as `dpkg --compare-versions` orders them.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a version string is not a valid Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string was empty (or only whitespace).
    #[error("version string is empty")]
    Empty,
    /// The string contained whitespace inside it.
    #[error("version string {0:?} has embedded spaces")]
    EmbeddedSpace(String),
    /// The part before `:` was empty.
    #[error("epoch in version {0:?} is empty")]
    EmptyEpoch(String),
    /// The part before `:` was not a decimal number.
    #[error("epoch in version {0:?} is not a number")]
    EpochNotNumber(String),
    /// The epoch does not fit dpkg's signed 32-bit integer.
    #[error("epoch in version {0:?} is too big")]
    EpochTooBig(String),
    /// Nothing was left for the upstream part.
    #[error("nothing after colon in version {0:?}")]
    EmptyUpstream(String),
    /// A `-` was present but nothing followed it.
    #[error("revision in version {0:?} is empty")]
    EmptyRevision(String),
    /// The upstream part must start with a digit.
    #[error("version {0:?} does not start with a digit")]
    NoLeadingDigit(String),
    /// A character outside dpkg's allowed set.
    #[error("invalid character {ch:?} in {part} of version {version:?}")]
    InvalidChar {
        /// The whole version string.
        version: String,
        /// `upstream version` or `revision`.
        part: &'static str,
        /// The offending character.
        ch: char,
    },
    /// Longer than the 4 GiB a version is stored in.
    #[error("version string of {0} bytes is too long")]
    TooLong(usize),
}

/// A parsed Debian version. Equality and ordering follow dpkg, so `1.0` equals `1.0-0` and
/// `0:1.0`; the original spelling is kept for display.
#[derive(Clone)]
pub struct Version {
    // Compact on purpose: a repository's indexes hold several hundred thousand versions.
    text: Box<str>,
    epoch: u32,
    /// Byte range of the upstream part in `text`.
    upstream: (u32, u32),
    /// Start of the revision in `text` (it runs to the end; empty when absent).
    revision: u32,
}

impl Version {
    /// Parse `s` with dpkg's rules (leading/trailing whitespace is ignored, as dpkg does).
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(VersionError::Empty);
        }
        if t.contains(|c: char| c.is_whitespace()) {
            return Err(VersionError::EmbeddedSpace(t.to_string()));
        }
        let own = || t.to_string();
        let (epoch, up_start) = match t.find(':') {
            Some(colon) => {
                let e = &t[..colon];
                if e.is_empty() {
                    return Err(VersionError::EmptyEpoch(own()));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::EpochNotNumber(own()));
                }
                let n: u32 = e.parse().map_err(|_| VersionError::EpochTooBig(own()))?;
                if n > i32::MAX as u32 {
                    return Err(VersionError::EpochTooBig(own()));
                }
                (n, colon + 1)
            }
            None => (0, 0),
        };
        let rest = &t[up_start..];
        if rest.is_empty() {
            return Err(VersionError::EmptyUpstream(own()));
        }
        let (upstream, revision) = match rest.rfind('-') {
            Some(dash) => {
                if dash + 1 == rest.len() {
                    return Err(VersionError::EmptyRevision(own()));
                }
                (
                    up_start..up_start + dash,
                    up_start + dash + 1..up_start + rest.len(),
                )
            }
            None => (up_start..up_start + rest.len(), t.len()..t.len()),
        };
        let up = &t[upstream.clone()];
        if up.is_empty() {
            return Err(VersionError::EmptyUpstream(own()));
        }
        if !up.as_bytes()[0].is_ascii_digit() {
            return Err(VersionError::NoLeadingDigit(own()));
        }
        if let Some(ch) = up
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || ".-+~:".contains(c)))
        {
            return Err(VersionError::InvalidChar {
                version: own(),
                part: "upstream version",
                ch,
            });
        }
        if let Some(ch) = t[revision.clone()]
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || ".+~".contains(c)))
        {
            return Err(VersionError::InvalidChar {
                version: own(),
                part: "revision",
                ch,
            });
        }
        let small = |n: usize| u32::try_from(n).map_err(|_| VersionError::TooLong(t.len()));
        Ok(Version {
            text: t.into(),
            epoch,
            upstream: (small(upstream.start)?, small(upstream.end)?),
            revision: small(revision.start)?,
        })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream part.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0 as usize..self.upstream.1 as usize]
    }

    /// The Debian revision (empty when absent).
    pub fn revision(&self) -> &str {
        &self.text[self.revision as usize..]
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// dpkg's character weight: `~` before the end of the string, the end before letters, letters
/// before everything else.
fn order(c: u8) -> i32 {
    if c.is_ascii_digit() {
        0
    } else if c.is_ascii_alphabetic() {
        i32::from(c)
    } else if c == b'~' {
        -1
    } else if c == 0 {
        0
    } else {
        i32::from(c) + 256
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0i32;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(at(a, i));
            let bc = order(at(b, j));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_diff == 0 {
                first_diff = i32::from(at(a, i)) - i32::from(at(b, j));
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream().as_bytes(), other.upstream().as_bytes()))
            .then_with(|| verrevcmp(self.revision().as_bytes(), other.revision().as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", self.text)
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parts() {
        let x = v("2:1.0-3+b1");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (2, "1.0", "3+b1"));
        let y = v("1.2-3-4");
        assert_eq!((y.upstream(), y.revision()), ("1.2-3", "4"));
        let z = v("1:2:3");
        assert_eq!((z.epoch(), z.upstream(), z.revision()), (1, "2:3", ""));
        assert_eq!(v(" 1.0 ").to_string(), "1.0");
    }

    #[test]
    fn ordering() {
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1.0~~") < v("1.0~"));
        assert!(v("1.0") < v("1.0a"));
        assert!(v("1.0a") < v("1.0+"));
        assert!(v("1.0") < v("1.0.1"));
        assert!(v("1:0.1") > v("9.9"));
        assert!(v("1.010") == v("1.10"));
        assert!(v("1.0") == v("1.0-0"));
        assert!(v("0:1.0") == v("1.0"));
        assert!(v("2.0-1") < v("2.0-1+b1"));
        assert!(v("1.9") < v("1.10"));
    }

    #[test]
    fn invalid() {
        for (s, want) in [
            ("", VersionError::Empty),
            ("1 0", VersionError::EmbeddedSpace("1 0".into())),
            (":1", VersionError::EmptyEpoch(":1".into())),
            ("a:1", VersionError::EpochNotNumber("a:1".into())),
            (
                "9999999999:1",
                VersionError::EpochTooBig("9999999999:1".into()),
            ),
            ("1:", VersionError::EmptyUpstream("1:".into())),
            ("1.0-", VersionError::EmptyRevision("1.0-".into())),
            ("-1", VersionError::EmptyUpstream("-1".into())),
            ("a1", VersionError::NoLeadingDigit("a1".into())),
        ] {
            assert_eq!(Version::parse(s).unwrap_err(), want, "{s:?}");
        }
        assert!(matches!(
            Version::parse("1.0_1"),
            Err(VersionError::InvalidChar { ch: '_', .. })
        ));
        assert!(matches!(
            Version::parse("1.0-1_2"),
            Err(VersionError::InvalidChar {
                ch: '_',
                part: "revision",
                ..
            })
        ));
    }
}
