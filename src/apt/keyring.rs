//! Trusted OpenPGP keys and signature checks for repository metadata (`InRelease`, Release.gpg).
//!
//! A keyring file may be binary (`.gpg`, several keys concatenated) or armored (`.asc`). As with
//! apt's `gpgv`, a key is trusted because it is in a keyring given for the repository; signing
//! subkeys are used only when their binding to the primary key verifies. A revoked key never
//! counts; an expired key counts only for signatures made before it expired (so metadata from a
//! snapshot archive stays verifiable after the archive key's expiry).

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{PublicSubkey, Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};
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
    /// Unix time after which the primary key is expired (None: never).
    expires: Option<u64>,
    revoked: bool,
    /// Subkeys with a valid binding, and their expiry.
    signing_subkeys: Vec<(PublicSubkey, Option<u64>)>,
}

/// Expiry of a key created at `created` according to the newest of `sigs` (None: never).
fn expiry_from(created: u32, sigs: &[&Signature]) -> Option<u64> {
    let newest = sigs
        .iter()
        .max_by_key(|s| s.created().map_or(0, pgp::types::Timestamp::as_secs))?;
    let secs = newest.key_expiration_time()?.as_secs();
    // Zero means "does not expire".
    (secs != 0).then(|| u64::from(created) + u64::from(secs))
}

impl TrustedKey {
    fn new(key: SignedPublicKey) -> TrustedKey {
        let primary = &key.primary_key;
        let revoked = key
            .details
            .revocation_signatures
            .iter()
            .any(|s| s.verify_key(primary).is_ok());
        // Self-certifications that verify carry the primary key's expiry.
        let mut certs: Vec<&Signature> = Vec::new();
        for user in &key.details.users {
            for sig in &user.signatures {
                if sig
                    .verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
                {
                    certs.push(sig);
                }
            }
        }
        // Direct-key signatures often only name revocation keys; they count for the expiry only
        // when they set one.
        let direct: Vec<&Signature> = key
            .details
            .direct_signatures
            .iter()
            .filter(|s| s.key_expiration_time().is_some() && s.verify_key(primary).is_ok())
            .collect();
        let created = primary.created_at().as_secs();
        let expires = expiry_from(created, &certs).or_else(|| expiry_from(created, &direct));
        let signing_subkeys = key
            .public_subkeys
            .iter()
            .filter(|sk| sk.verify_bindings(primary).is_ok())
            .filter(|sk| {
                !sk.signatures
                    .iter()
                    .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
            })
            .map(|sk| {
                let bindings: Vec<&Signature> = sk.signatures.iter().collect();
                (
                    sk.key.clone(),
                    expiry_from(sk.key.created_at().as_secs(), &bindings),
                )
            })
            .collect();
        TrustedKey {
            primary: key,
            expires,
            revoked,
            signing_subkeys,
        }
    }
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
            self.keys.push(TrustedKey::new(key));
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
            if fs::metadata(&f).map_or(true, |m| m.len() == 0) {
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
        let made = sig.created().map_or(0, |t| u64::from(t.as_secs()));
        let alive = |expires: Option<u64>| expires.is_none_or(|e| made <= e);
        self.keys.iter().filter(|k| !k.revoked).any(|k| {
            (alive(k.expires) && sig.verify(&k.primary.primary_key, data).is_ok())
                || k.signing_subkeys
                    .iter()
                    .any(|(sk, exp)| alive(*exp) && sig.verify(sk, data).is_ok())
        })
    }

    /// Check an `InRelease` file (cleartext-signed) and return the signed text with `\n` line ends.
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
        let sigs: Vec<Signature> = iter
            .filter_map(std::result::Result::ok)
            .map(|s| s.signature)
            .collect();
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
        let message = if self.keys.is_empty() {
            format!("{}; the keyring is empty", Self::describe_signers(sigs))
        } else {
            format!(
                "{}; {} trusted key(s)",
                Self::describe_signers(sigs),
                self.keys.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_garbage_keys_are_rejected() {
        let mut k = Keyring::new();
        let e = k
            .add_bytes(b"not a key", Path::new("/k/bad.gpg"))
            .unwrap_err();
        assert!(e.to_string().contains("/k/bad.gpg"), "{e}");
        assert!(k.is_empty());
        let e = k
            .verify_cleartext("http://r/InRelease", b"Origin: x\n")
            .unwrap_err();
        assert!(matches!(e, KeyringError::NotSigned { .. }), "{e}");
    }

    #[test]
    #[cfg_attr(
        not(imgbuild_has_archive_keyring),
        ignore = "needs Debian's archive keyring (debian-archive-keyring)"
    )]
    fn reads_expiry_of_real_archive_keys() {
        // Debian's archive keys carry an expiry date about eight years after creation.
        let path = Path::new("/usr/share/keyrings/debian-archive-bookworm-automatic.gpg");
        let mut k = Keyring::new();
        k.add_file(path).unwrap();
        let key = &k.keys[0];
        assert!(!key.revoked);
        let created = u64::from(key.primary.primary_key.created_at().as_secs());
        let expires = key.expires.expect("archive keys expire");
        let years = (expires - created) / (365 * 86400);
        assert!((5..=12).contains(&years), "{years}");
    }
}
