//! Trusted OpenPGP keys and signature checks for repository metadata (InRelease, Release.gpg).
//!
//! A keyring file may be binary (`.gpg`, several keys concatenated) or armored (`.asc`). As with
//! apt's `gpgv`, a key is trusted because it is in a keyring given for the repository; signing
//! subkeys are used only when their binding to the primary key verifies.

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{PublicSubkey, Signature};
use pgp::types::KeyDetails;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors loading keys or checking signatures. Each names the file or URL involved.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A key file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A key file holds no usable OpenPGP public key.
    #[error("{path}: not an OpenPGP public key or keyring: {message}")]
    BadKey {
        /// The key file (or "inline key").
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// The metadata is not a signed message at all.
    #[error("{name}: not an OpenPGP signed file: {message}")]
    NotSigned {
        /// What was checked (URL).
        name: String,
        /// Parser message.
        message: String,
    },
    /// No signature was made by a trusted key, or a signature does not match the content.
    #[error(
        "{name}: no valid signature by a trusted key ({message}); trusted keys from: {keyrings}"
    )]
    BadSignature {
        /// What was checked (URL).
        name: String,
        /// Details: signer key ids and why they failed.
        message: String,
        /// The keyring files consulted.
        keyrings: String,
    },
}

#[derive(Debug, Clone)]
struct TrustedKey {
    primary: SignedPublicKey,
    signing_subkeys: Vec<PublicSubkey>,
}

/// A set of trusted public keys.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<TrustedKey>,
    sources: Vec<String>,
}

impl Keyring {
    /// An empty keyring (trusts nothing).
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Number of primary keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Where the keys came from, for messages.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Add every key of a keyring file (binary or armored).
    pub fn add_file(&mut self, path: &Path) -> Result<(), KeyringError> {
        let data = fs::read(path).map_err(|source| KeyringError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_bytes(&data, path)
    }

    /// Add every key in `data` (binary or armored); `origin` names it in errors.
    pub fn add_bytes(&mut self, data: &[u8], origin: &Path) -> Result<(), KeyringError> {
        let bad = |message: String| KeyringError::BadKey {
            path: origin.to_path_buf(),
            message,
        };
        let (iter, _) = SignedPublicKey::from_reader_many(data).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for key in iter {
            // One unparsable key (an algorithm this build lacks) must not hide the others.
            let Ok(key) = key else { continue };
            let signing_subkeys = key
                .public_subkeys
                .iter()
                .filter(|sk| sk.verify_bindings(&key.primary_key).is_ok())
                .map(|sk| sk.key.clone())
                .collect();
            self.keys.push(TrustedKey {
                primary: key,
                signing_subkeys,
            });
            added += 1;
        }
        if added == 0 {
            return Err(bad("no public key found".into()));
        }
        self.sources.push(origin.display().to_string());
        Ok(())
    }

    /// Add every `*.gpg` and `*.asc` file of `dir` (name order), as apt does for `trusted.gpg.d`.
    /// A missing directory adds nothing.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), KeyringError> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(KeyringError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("gpg" | "asc")))
            .collect();
        files.sort();
        for f in files {
            // Empty placeholder files are common in trusted.gpg.d.
            if fs::metadata(&f).map(|m| m.len() == 0).unwrap_or(true) {
                continue;
            }
            self.add_file(&f)?;
        }
        Ok(())
    }

    /// The host's default trust: `<apt_dir>/trusted.gpg` and `<apt_dir>/trusted.gpg.d/`.
    pub fn host_default(apt_dir: &Path) -> Result<Keyring, KeyringError> {
        let mut k = Keyring::new();
        let legacy = apt_dir.join("trusted.gpg");
        if legacy.is_file() {
            k.add_file(&legacy)?;
        }
        k.add_dir(&apt_dir.join("trusted.gpg.d"))?;
        Ok(k)
    }

    fn describe_signers(sigs: &[Signature]) -> String {
        let ids: Vec<String> = sigs
            .iter()
            .map(|s| {
                if let Some(fp) = s.issuer_fingerprint().first() {
                    format!("{fp:?}")
                } else if let Some(id) = s.issuer_key_id().first() {
                    format!("{id:?}")
                } else {
                    "unknown signer".to_string()
                }
            })
            .collect();
        format!("signed by {}", ids.join(", "))
    }

    fn verify_one(&self, sig: &Signature, data: &[u8]) -> bool {
        self.keys.iter().any(|k| {
            sig.verify(&k.primary.primary_key, data).is_ok()
                || k.signing_subkeys
                    .iter()
                    .any(|sk| sig.verify(sk, data).is_ok())
        })
    }

    /// Check an InRelease file (cleartext-signed) and return the signed text with `\n` line ends.
    /// At least one signature must verify against a trusted key.
    pub fn verify_cleartext(&self, name: &str, data: &[u8]) -> Result<String, KeyringError> {
        let text = std::str::from_utf8(data).map_err(|e| KeyringError::NotSigned {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let (msg, _) =
            CleartextSignedMessage::from_string(text).map_err(|e| KeyringError::NotSigned {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        let signed = msg.signed_text();
        if msg
            .signatures()
            .iter()
            .any(|s| self.verify_one(s, signed.as_bytes()))
        {
            // The verified bytes are the CRLF-normalised text; hand back exactly that text.
            return Ok(signed.replace("\r\n", "\n"));
        }
        Err(self.bad_signature(name, msg.signatures()))
    }

    /// Check a detached signature (Release.gpg, armored or binary) over `data`.
    pub fn verify_detached(
        &self,
        name: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyringError> {
        let (iter, _) = DetachedSignature::from_reader_many(signature).map_err(|e| {
            KeyringError::NotSigned {
                name: name.to_string(),
                message: e.to_string(),
            }
        })?;
        let sigs: Vec<Signature> = iter.filter_map(|s| s.ok()).map(|s| s.signature).collect();
        if sigs.is_empty() {
            return Err(KeyringError::NotSigned {
                name: name.to_string(),
                message: "no signature packet".into(),
            });
        }
        if sigs.iter().any(|s| self.verify_one(s, data)) {
            return Ok(());
        }
        Err(self.bad_signature(name, &sigs))
    }

    fn bad_signature(&self, name: &str, sigs: &[Signature]) -> KeyringError {
        let known: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?}", k.primary.fingerprint()))
            .collect();
        let message = if self.keys.is_empty() {
            format!("{}; the keyring is empty", Self::describe_signers(sigs))
        } else {
            format!(
                "{}; {} trusted key(s): {}",
                Self::describe_signers(sigs),
                known.len(),
                known.join(", ")
            )
        };
        KeyringError::BadSignature {
            name: name.to_string(),
            message,
            keyrings: if self.sources.is_empty() {
                "none".into()
            } else {
                self.sources.join(", ")
            },
        }
    }
}
