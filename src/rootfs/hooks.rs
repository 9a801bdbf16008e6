//! Scripts run inside the root: the description's hooks (`post_bootstrap.sh`, `config.sh`,
//! `images.sh`), run as KIWI runs them, and the shell snippets other steps run there (users,
//! file owners, package removal), each in the build sandbox with its output kept for the error.

use super::install::{self, InstallError};
use super::prepared::{PreparedError, PreparedRoot};
use super::profile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of a script run in the root.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook could not be copied into the root's `/image`.
    #[error(transparent)]
    Keep(#[from] PreparedError),
    /// The build sandbox could not run the script.
    #[error("{step} in {root}: {source}")]
    Sandbox {
        /// What ran.
        step: String,
        /// The root tree.
        root: PathBuf,
        /// What went wrong (boxed: the sandbox's errors are large, and rare here).
        source: Box<crate::sandbox::SandboxError>,
    },
    /// Running the script failed otherwise.
    #[error(transparent)]
    Install(InstallError),
    /// A hook ran longer than the hook timeout and was killed.
    #[error(
        "{step} in {root} did not finish within {} s and was stopped (see --hook-timeout)",
        .after.as_secs()
    )]
    Timeout {
        /// The hook.
        step: String,
        /// The root tree.
        root: PathBuf,
        /// The timeout.
        after: Duration,
    },
    /// The script exited non-zero.
    #[error("{step} failed in {root} (exit {code}):\n{output}")]
    Failed {
        /// What ran.
        step: String,
        /// The root tree.
        root: PathBuf,
        /// Its exit code.
        code: i32,
        /// The last lines it printed.
        output: String,
    },
}

/// A hook script of the description directory, if present.
pub fn hook(dir: &Path, name: &str) -> Option<PathBuf> {
    let p = dir.join(name);
    p.is_file().then_some(p)
}

/// Copy `script` into the root's `/image`, run it there (directly when executable, else with
/// bash, as KIWI does) with `vars` in its environment, and fail with its output on error, or
/// when it is still running after `timeout`; `verbose`: its output goes to stderr on success too.
pub fn run_hook(
    root: &Path,
    script: &Path,
    name: &str,
    vars: &BTreeMap<String, String>,
    timeout: Option<Duration>,
    verbose: bool,
) -> Result<(), HookError> {
    use std::os::unix::fs::PermissionsExt;
    // Whether the description's own script is executable, before the copy is made so.
    let executable = std::fs::metadata(script).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let inside = PreparedRoot::new(root).keep_hook(script, name)?;
    let mut cmd = String::new();
    for (k, v) in vars {
        cmd.push_str(&format!("{k}={} ", profile::shell_quote(v)));
    }
    if executable {
        cmd.push_str(&inside);
    } else {
        cmd.push_str(&format!("$(command -v bash || echo sh) {inside}"));
    }
    run_checked_within(root, name, &format!("cd / && {cmd}"), timeout, verbose)
}

/// Run a shell snippet in the build sandbox; a non-zero exit is an error with its output.
/// `verbose`: its output goes to stderr on success too.
pub fn run_checked(root: &Path, step: &str, script: &str, verbose: bool) -> Result<(), HookError> {
    run_checked_within(root, step, script, None, verbose)
}

/// [`run_checked`], killing the snippet when it runs longer than `timeout`.
fn run_checked_within(
    root: &Path,
    step: &str,
    script: &str,
    timeout: Option<Duration>,
    verbose: bool,
) -> Result<(), HookError> {
    let out = match install::run_in_sandbox(root, script, timeout, verbose) {
        Ok(out) => out,
        Err(InstallError::Sandbox {
            source: crate::sandbox::SandboxError::TimedOut { after },
            ..
        }) => {
            return Err(HookError::Timeout {
                step: step.to_string(),
                root: root.to_path_buf(),
                after,
            });
        }
        Err(InstallError::Sandbox { source, .. }) => {
            return Err(HookError::Sandbox {
                step: step.to_string(),
                root: root.to_path_buf(),
                source: Box::new(source),
            });
        }
        Err(e) => return Err(HookError::Install(e)),
    };
    if out.success() {
        return Ok(());
    }
    Err(HookError::Failed {
        step: step.to_string(),
        root: root.to_path_buf(),
        code: out.code,
        output: install::output_tail(&out),
    })
}
