//! sha256 digests: validation, chain ids and a reader that hashes what passes through it.

use super::{Result, StorageError};
use sha2::{Digest as _, Sha256};
use std::io::Read;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<64 lowercase hex>` digest, or an error naming `what`.
pub(crate) fn digest_hex<'a>(digest: &'a str, what: &str) -> Result<&'a str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| StorageError::invalid(what, format!("digest '{digest}' is not sha256")))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(StorageError::invalid(
            what,
            format!("digest '{digest}' is not 64 lowercase hex digits"),
        ));
    }
    Ok(hex)
}

/// The OCI chain ids of a layer stack given its diff ids, bottom first:
/// `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Passes bytes through while hashing them and counting them.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The wrapped reader.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Read the rest of the stream (so the digest covers all of it) and return
    /// `(sha256:<hex>, length)`.
    pub(crate) fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.len,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn digest_hex_rejects_bad_digests() {
        let good = sha256_digest(b"x");
        assert_eq!(digest_hex(&good, "t").ok(), good.strip_prefix("sha256:"));
        assert!(digest_hex("sha512:00", "t").is_err());
        assert!(digest_hex("sha256:../../etc", "t").is_err());
        assert!(digest_hex(&good.to_uppercase().replace("SHA256", "sha256"), "t").is_err());
    }

    #[test]
    fn hashing_reader_hashes_unread_rest() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(d, sha256_digest(b"hello world"));
    }
}
