//! RPM versions: `[epoch:]version[-release]`, ordered as rpm orders them (`rpmvercmp`, with
//! `~` sorting before everything and `^` after the end but before anything else).

use std::cmp::Ordering;
use std::fmt;

/// An epoch-version-release. In a dependency any part may be absent; absent parts compare as
/// rpm compares them (see [`Evr::cmp_dep`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Evr {
    /// The epoch; `None` when not written (it counts as 0 for packages).
    pub epoch: Option<u32>,
    /// The version.
    pub version: String,
    /// The release; `None` when not written.
    pub release: Option<String>,
}

impl Evr {
    /// Parses `[epoch:]version[-release]`; the release is what follows the last `-`.
    pub fn parse(s: &str) -> Evr {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().ok(), rest)
            }
            _ => (None, s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v.to_string(), Some(r.to_string())),
            None => (rest.to_string(), None),
        };
        Evr {
            epoch,
            version,
            release,
        }
    }

    /// The epoch, 0 when absent.
    pub fn epoch_or_zero(&self) -> u32 {
        self.epoch.unwrap_or(0)
    }

    /// Total order of two package EVRs: epoch (absent = 0), then version, then release (an
    /// absent release sorts below any present one), each part by [`rpmvercmp`].
    pub fn cmp_pkg(&self, other: &Evr) -> Ordering {
        self.epoch_or_zero()
            .cmp(&other.epoch_or_zero())
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
            })
    }

    /// Comparison as rpm makes it between a dependency's EVR and a provide's: a release absent
    /// on either side is not compared (`foo >= 1.0` holds for `1.0-3`).
    pub fn cmp_dep(&self, other: &Evr) -> Ordering {
        self.epoch_or_zero()
            .cmp(&other.epoch_or_zero())
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| match (&self.release, &other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                _ => Ordering::Equal,
            })
    }
}

/// `[epoch:]version[-release]` as zypper and rpm print it: an epoch of 0 is not shown, since
/// rpm-md metadata writes `epoch="0"` for packages that have none.
impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.epoch.filter(|e| *e != 0) {
            write!(f, "{e}:")?;
        }
        f.write_str(&self.version)?;
        if let Some(r) = &self.release {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

/// rpm's segment-wise version comparison: alphanumeric runs compared numerically (digits) or
/// lexically (letters), a numeric run newer than an alphabetic one, separators ignored, `~`
/// older than anything (even the end), `^` newer than the end but older than anything else.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while let Some((&c, rest)) = a.split_first()
            && sep(c)
        {
            a = rest;
        }
        while let Some((&c, rest)) = b.split_first()
            && sep(c)
        {
            b = rest;
        }
        // Tilde: older than anything, the end included.
        match (a.first() == Some(&b'~'), b.first() == Some(&b'~')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Caret: newer than the end, older than any other segment.
        match (a.first() == Some(&b'^'), b.first() == Some(&b'^')) {
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (true, false) => {
                return if b.is_empty() {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            (false, true) => {
                return if a.is_empty() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            _ => {}
        }
        if a.is_empty() || b.is_empty() {
            break;
        }
        let numeric = a[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (la, lb) = (run(a), run(b));
        let (sa, sb) = (&a[..la], &b[..lb]);
        if lb == 0 {
            // Different kinds of segment: the numeric one is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let ord = if numeric {
            let trim = |s: &[u8]| {
                let z = s.iter().take_while(|&&c| c == b'0').count();
                s[z..].to_vec()
            };
            let (ta, tb) = (trim(sa), trim(sb));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(&tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[la..];
        b = &b[lb..];
    }
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rpmvercmp_agrees_with_rpms_own_table() {
        // Cases from rpm's test suite (rpmvercmp.at).
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("8", "xyz.4", Greater),
            ("5.5p1", "5.5.p1", Equal),
            ("5.5p10", "5.5.p10", Equal),
            ("10b2", "10a1", Greater),
            ("1.0aa", "1.0a", Greater),
            ("6.0.rc1", "6.0", Greater),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2_0", "2_0", Equal),
            ("2.0", "2_0", Equal),
            ("a", "a", Equal),
            ("a+", "a_", Equal),
            ("+a", "_a", Equal),
            ("+_", "_+", Equal),
            ("1.0~rc1", "1.0~rc1", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0~rc1", Greater),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0^", Equal),
            ("1.0^", "1.0", Greater),
            ("1.0", "1.0^", Less),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0^20160101^git1", "1.0^20160101", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
        ] {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn evrs_parse_and_order_with_epochs_and_releases() {
        let e = Evr::parse("2:1.0-3.fc40");
        assert_eq!(
            (e.epoch, e.version.as_str(), e.release.as_deref()),
            (Some(2), "1.0", Some("3.fc40"))
        );
        assert_eq!(e.to_string(), "2:1.0-3.fc40");
        assert_eq!(Evr::parse("1.0").release, None);
        assert_eq!(Evr::parse("0:1.0-1").to_string(), "1.0-1");
        assert_eq!(Evr::parse("1:9").cmp_pkg(&Evr::parse("10")), Greater);
        assert_eq!(Evr::parse("0:1.0-1").cmp_pkg(&Evr::parse("1.0-1")), Equal);
        assert_eq!(Evr::parse("1.0").cmp_dep(&Evr::parse("1.0-7")), Equal);
        assert_eq!(Evr::parse("1.0").cmp_pkg(&Evr::parse("1.0-7")), Less);
    }
}
