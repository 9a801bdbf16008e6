//! `imgbuild login` and `imgbuild logout`, as `podman login`/`logout`: credentials checked
//! against the registry, then kept in the primary auth file (or its credential helper).

use anyhow::{Context, bail};
use imgbuild::registry::credentials::{self, AuthFiles, Stored};
use imgbuild::registry::{Client, ClientOptions, Credentials, Reference};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The registry: `HOST[:PORT]`, or `HOST[:PORT]/REPO…` for credentials of that namespace only.
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
    /// The user name [default: asked on the terminal].
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (a trailing newline is dropped).
    #[arg(long)]
    pub password_stdin: bool,
    /// The auth file to write [default: `$REGISTRY_AUTH_FILE`, else
    /// `${XDG_RUNTIME_DIR}/containers/auth.json`, else `/run/containers/UID/auth.json`].
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
    /// `false`: do not verify the registry's certificate, and fall back to plain HTTP.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// A directory of extra CA certificates (`*.crt`) [default:
    /// /etc/containers/certs.d/HOST[:PORT] when it exists].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

/// Arguments of `logout`.
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry (`HOST[:PORT]` or `HOST[:PORT]/REPO…`, as given to `login`).
    #[arg(
        value_name = "REGISTRY",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub registry: Option<String>,
    /// Remove the credentials of every registry.
    #[arg(short, long)]
    pub all: bool,
    /// The auth file [default: as for `login`].
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
}

/// The registry key `text` names (`docker://` and a trailing `/` dropped), checked.
fn registry_key(text: &str) -> anyhow::Result<(String, Reference)> {
    let key = text
        .strip_prefix("docker://")
        .unwrap_or(text)
        .trim_end_matches('/');
    let (host, repo) = key.split_once('/').unwrap_or((key, ""));
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '@' || c == '/')
        || repo.contains(['@', ' '])
        || (!repo.is_empty()
            && repo
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':')))
    {
        bail!(
            "{text:?}: expected a registry HOST[:PORT] (or HOST[:PORT]/REPOSITORY without a tag)"
        );
    }
    Ok((
        key.to_string(),
        Reference {
            host: host.to_string(),
            repository: repo.to_string(),
            tag: None,
            digest: None,
        },
    ))
}

/// Reads one line from the terminal after `prompt`, without echo when `hidden`.
fn prompt(prompt: &str, hidden: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = if hidden {
        let fd = stdin.as_fd();
        let saved = nix::sys::termios::tcgetattr(fd).context("reading the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &quiet)
            .context("turning the terminal's echo off")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        // Echo comes back whatever the read did.
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs `login`: checks the credentials against the registry (for a bearer registry, at its
/// token server), then stores them; nothing is stored when they are refused.
pub fn run_login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let (key, reference) = registry_key(&args.registry)?;
    let terminal = std::io::stdin().is_terminal();
    if args.password_stdin && args.username.is_none() {
        bail!("--password-stdin needs --username");
    }
    let user = match &args.username {
        Some(u) => u.clone(),
        None if terminal => prompt("Username: ", false)?,
        None => bail!("no user name: give --username (stdin is not a terminal)"),
    };
    if user.is_empty() || user.contains(':') {
        bail!("the user name must be non-empty and without ':'");
    }
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = &args.password {
        p.clone()
    } else if terminal {
        prompt("Password: ", true)?
    } else {
        bail!("no password: give --password-stdin (stdin is not a terminal)");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials { user, password };
    let opts = ClientOptions {
        credentials: Some(creds.clone()),
        auth_files: AuthFiles::default(),
        insecure: !args.tls_verify,
        cert_dir: args.cert_dir.clone(),
    };
    Client::connect(&reference, &opts)
        .with_context(|| format!("logging in to {key}: nothing was stored"))?;
    let file = credentials::primary_auth_file(args.authfile.as_deref());
    match credentials::store(&file, &key, &creds).context("storing the credentials")? {
        Stored::File(_) => {}
        Stored::Helper(h) => eprintln!("Stored with the credential helper docker-credential-{h}"),
    }
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

/// Runs `logout`: removes the credentials of one registry, or all, from the primary auth file
/// (and the credential helper it configures).
pub fn run_logout(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let file = credentials::primary_auth_file(args.authfile.as_deref());
    if args.all {
        credentials::remove(&file, None).context("removing the credentials")?;
        println!("Removed login credentials for all registries");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(text) = &args.registry else {
        bail!("give a registry or --all");
    };
    let (key, _) = registry_key(text)?;
    if !credentials::remove(&file, Some(&key)).context("removing the credentials")? {
        bail!(
            "not logged in to {key} (no credentials in {})",
            file.display()
        );
    }
    println!("Removed login credentials for {key}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::registry_key;

    #[test]
    fn registry_keys() {
        assert_eq!(
            registry_key("docker://reg.example.org:5000/").unwrap().0,
            "reg.example.org:5000"
        );
        let (key, r) = registry_key("reg.example.org/team/app").unwrap();
        assert_eq!(key, "reg.example.org/team/app");
        assert_eq!(
            (r.host.as_str(), r.repository.as_str()),
            ("reg.example.org", "team/app")
        );
        for bad in ["", "a b", "reg.example.org/app:1", "x@y"] {
            assert!(registry_key(bad).is_err(), "{bad}");
        }
    }
}
