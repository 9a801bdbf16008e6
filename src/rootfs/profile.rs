//! `/.profile` and `/.kconfig`: the environment and helper functions KIWI gives `config.sh` and
//! `images.sh`. Scripts source them themselves (`test -f /.profile && . /.profile`).

use std::collections::BTreeMap;
use std::path::Path;

use super::{RootfsError, write_atomic};

/// Quote `value` for a POSIX shell: single quotes, with embedded single quotes closed and escaped.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The text of `/.profile`: one `name=value` line per variable, sorted by name, values quoted.
/// Names that are not valid shell identifiers are skipped, since sourcing them would fail.
pub fn profile_text(vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            out.push_str(k);
            out.push('=');
            out.push_str(&shell_quote(v));
            out.push('\n');
        }
    }
    out
}

/// Helper functions for `config.sh`/`images.sh`, with the names KIWI's scripts call. Written for
/// Debian roots; each one is a no-op where the tool it drives is absent.
pub const KCONFIG: &str = r#"# Helper functions for imgbuild's config.sh and images.sh (KIWI-compatible names).
Echo() { echo "$@"; }
Debug() { [ -n "${DEBUG:-}" ] && echo "+++++> $*"; return 0; }
baseInsertService() {
    if command -v systemctl >/dev/null 2>&1; then systemctl enable "$1"; fi
}
baseRemoveService() {
    if command -v systemctl >/dev/null 2>&1; then systemctl disable "$1"; fi
}
baseService() {
    case "$2" in on) baseInsertService "$1" ;; off) baseRemoveService "$1" ;; esac
}
baseSetRunlevel() {
    if command -v systemctl >/dev/null 2>&1; then
        case "$1" in
            1|2|3) systemctl set-default multi-user.target ;;
            5) systemctl set-default graphical.target ;;
        esac
    fi
}
baseStripDocs() {
    rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/*
}
baseStripLocales() {
    keep="$*"
    for dir in /usr/share/locale/*; do
        [ -d "$dir" ] || continue
        name=$(basename "$dir")
        case " $keep " in *" $name "*) ;; *) rm -rf "$dir" ;; esac
    done
}
baseCleanMount() { :; }
"#;

/// Write `/.profile` with `vars` and `/.kconfig` into `root`.
pub fn write(root: &Path, vars: &BTreeMap<String, String>) -> Result<(), RootfsError> {
    for (name, text) in [
        (".profile", profile_text(vars)),
        (".kconfig", KCONFIG.to_string()),
    ] {
        let path = root.join(name);
        write_atomic(&path, text.as_bytes()).map_err(|source| RootfsError::Io { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn profile_sources_back_in_sh() {
        let mut vars = BTreeMap::new();
        vars.insert("kiwi_iname".to_string(), "deb 'x' $HOME".to_string());
        vars.insert("kiwi_profiles".to_string(), "a,b".to_string());
        vars.insert("bad-name".to_string(), "skip".to_string());
        let text = profile_text(&vars);
        assert_eq!(
            text,
            "kiwi_iname='deb '\\''x'\\'' $HOME'\nkiwi_profiles='a,b'\n"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{text}\nprintf %s \"$kiwi_iname\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "deb 'x' $HOME");
    }

    #[test]
    fn kconfig_is_valid_shell() {
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(KCONFIG)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
