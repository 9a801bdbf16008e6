//! The registry options every command that talks to a registry takes (`push`, `pull`,
//! `build --push`, `run`/`inspect` of a registry reference), and the client options they make.

use anyhow::Context;
use imgbuild::registry::credentials::AuthFiles;
use imgbuild::registry::{ClientOptions, Credentials};
use std::path::PathBuf;

/// How to reach and authenticate to a registry.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Credentials `USER:PASSWORD` (for basic auth or the registry's token server) [default:
    /// those of the auth files, else anonymous].
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "IMGBUILD_REGISTRY_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// `false`: do not verify the registry's certificate, and fall back to plain HTTP (as
    /// loopback registries do).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// A directory of extra CA certificates (`*.crt`) [default:
    /// /etc/containers/certs.d/HOST[:PORT] when it exists].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// The auth file to read credentials from, instead of `$REGISTRY_AUTH_FILE` or
    /// `${XDG_RUNTIME_DIR}/containers/auth.json`; `~/.config/containers/auth.json` and
    /// `~/.docker/config.json` are read after it.
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
}

impl RegistryArgs {
    /// The client options these arguments ask for. A malformed `--creds` is refused here,
    /// before any request (and without repeating its value).
    pub fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let credentials = match &self.creds {
            Some(c) => Some(
                Credentials::parse(c)
                    .context("--creds: expected USER:PASSWORD with a non-empty user")?,
            ),
            None => None,
        };
        if let Some(f) = &self.authfile
            && !f.is_file()
        {
            anyhow::bail!("--authfile {}: no such file", f.display());
        }
        Ok(ClientOptions {
            credentials,
            auth_files: AuthFiles::from_env(self.authfile.as_deref()),
            insecure: !self.tls_verify,
            cert_dir: self.cert_dir.clone(),
        })
    }
}
