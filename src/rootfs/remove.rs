//! The last package step: `uninstall` packages removed with apt's autoremove, `delete` packages
//! (and `--delete-package`) removed by force with their removal scripts disabled, as KIWI does.

use super::hooks::{self, HookError};
use std::path::{Path, PathBuf};

/// Errors of the removal step.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// A name to remove cannot name a Debian package.
    #[error("package {name:?} cannot be removed from {root}: not a Debian package name")]
    BadName {
        /// The name given.
        name: String,
        /// The root tree.
        root: PathBuf,
    },
    /// The removal script failed.
    #[error(transparent)]
    Script(#[from] HookError),
}

/// Removes `uninstall` (with autoremove) and `delete` (forced) from the root. Only installed
/// packages are removed: as KIWI, a listed package that is not installed is reported and skipped,
/// since the image has no apt lists to look others up in.
pub fn remove_packages(
    root: &Path,
    uninstall: &[String],
    delete: &[String],
    verbose: bool,
) -> Result<(), RemoveError> {
    for p in uninstall.iter().chain(delete) {
        // Package names are [a-z0-9][a-z0-9+.-]*: anything else cannot name a package and must
        // not reach a shell glob.
        let valid = p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '-')
            });
        if !valid {
            return Err(RemoveError::BadName {
                name: p.clone(),
                root: root.to_path_buf(),
            });
        }
    }
    let select = |names: &[String]| {
        let mut s = String::from("set -e\nlist=\n");
        for p in names {
            s.push_str(&format!(
                "if dpkg-query -W -f='${{Status}}' {p} 2>/dev/null | grep -q ' installed$'; then list=\"$list {p}\"; \
                 else echo \"imgbuild: {p} is not installed, not removed\" >&2; fi\n"
            ));
        }
        s
    };
    if !uninstall.is_empty() {
        let script = select(uninstall)
            + "[ -z \"$list\" ] || apt-get -y -q -o APT::Get::Purge=false --auto-remove remove $list\n";
        hooks::run_checked(root, "uninstall packages", &script, verbose)?;
    }
    if !delete.is_empty() {
        let mut script = select(delete);
        script.push_str(
            "for p in $list; do rm -f /var/lib/dpkg/info/$p.prerm /var/lib/dpkg/info/$p.postrm \
             /var/lib/dpkg/info/$p:*.prerm /var/lib/dpkg/info/$p:*.postrm; done\n\
             [ -z \"$list\" ] || dpkg --remove --force-remove-reinstreq --force-remove-essential --force-depends $list\n",
        );
        hooks::run_checked(root, "delete packages", &script, verbose)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_package_names_are_refused_before_any_script() {
        let t = tempfile::tempdir().unwrap();
        for bad in ["*", "Foo", "-x", "a b", "a;rm"] {
            let e = remove_packages(t.path(), &[], &[bad.to_string()], false).unwrap_err();
            assert!(
                matches!(&e, RemoveError::BadName { name, .. } if name == bad),
                "{e}"
            );
            assert!(e.to_string().contains("not a Debian package name"), "{e}");
        }
    }
}
