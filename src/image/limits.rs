//! Limits on images read from untrusted archives, layouts and stores.
//!
//! The numbers are the ones the container tools themselves use, so an image imgbuild refuses is
//! one Docker or podman would refuse too:
//!
//! - at most [`MAX_LAYERS`] layers: moby's layer store refuses deeper chains
//!   (`maxLayerDepth = 125` in `layer/layer_store.go`: "125 was chosen to account for the 127
//!   max in some graphdrivers plus the 2 additional layers used to create a rwlayer");
//! - manifests, indexes and configs of at most 4 MiB, a docker-archive `manifest.json` of at
//!   most 1 MiB: containers/image's `internal/iolimits` (`MaxManifestBodySize`,
//!   `MaxConfigBodySize`, `MaxTarFileManifestSize`), sized after the Docker registry's own
//!   manifest limit.
//!
//! Uncompressed layer streams have no declared size (a `diff_id` is only known to be wrong at the
//! end), so what they may write is bounded by the space of the filesystem they are written to:
//! [`SpaceBound`] stops a stream at the first byte that would leave less than a reserve free.
//! A layer that big could not have been stored anyway; stopping there instead of at `ENOSPC`
//! keeps a decompression bomb, or a layer whose `diff_id` is wrong, from filling the disk that
//! other programs share.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ImageError, Result, io_err};

/// Most layers an image may have (moby's `maxLayerDepth`).
pub const MAX_LAYERS: usize = 125;

/// Largest image manifest or index (containers/image's `MaxManifestBodySize`).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Largest image config (containers/image's `MaxConfigBodySize`).
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// Largest docker-archive `manifest.json` (containers/image's `MaxTarFileManifestSize`).
pub const MAX_TAR_MANIFEST_SIZE: u64 = 1 << 20;

/// The most of a filesystem kept free while writing untrusted content to it: 5 % of its size,
/// at most 1 GiB. (On ext4, root's own reserved blocks are not counted as available either.)
pub fn reserve_of(total: u64) -> u64 {
    (total / 20).min(1 << 30)
}

/// Refuses an image of more than [`MAX_LAYERS`] layers; `path` names the image.
pub fn check_layer_count(path: &Path, count: usize) -> Result<()> {
    if count > MAX_LAYERS {
        return Err(ImageError::TooManyLayers {
            path: path.to_path_buf(),
            count,
            max: MAX_LAYERS,
        });
    }
    Ok(())
}

/// Refuses a JSON document (`what`, in `path`) larger than `max` bytes.
pub fn check_size(path: &Path, what: &str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(ImageError::TooLarge {
            path: path.display().to_string(),
            what: what.to_string(),
            size,
            max,
        });
    }
    Ok(())
}

/// Reads a file of at most `max` bytes; a larger one is refused from its size, without reading
/// it, and one that grows while read is refused at the first byte past `max`.
pub fn read_bounded(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    check_size(path, what, len, max)?;
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(max + 1)
        .read_to_end(&mut data)
        .map_err(io_err(path))?;
    check_size(path, what, data.len() as u64, max)?;
    Ok(data)
}

/// A stream was stopped because writing more would leave its filesystem too full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "it would leave less than {} free on the filesystem of {} (at most {} could be written there)",
    mib(*reserve),
    dir.display(),
    mib(*limit)
)]
pub struct SpaceExceeded {
    /// The directory written to.
    pub dir: PathBuf,
    /// Bytes the stream could use when it started.
    pub limit: u64,
    /// Bytes available on the filesystem when the bound was set or last measured.
    pub available: u64,
    /// Bytes kept free.
    pub reserve: u64,
}

/// `n` bytes in MiB, for messages.
// One decimal is shown: f64's 52-bit mantissa is plenty.
#[allow(clippy::cast_precision_loss)]
fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
}

/// How much may still be written to a directory's filesystem: its available space when
/// measured, less the reserve ([`reserve_of`]).
#[derive(Debug, Clone)]
pub struct SpaceBudget {
    dir: PathBuf,
    available: u64,
    reserve: u64,
    limit: u64,
    used: u64,
}

impl SpaceBudget {
    /// Measures the filesystem holding `dir`.
    pub fn of(dir: &Path) -> io::Result<Self> {
        let st = fs4::statvfs(dir)?;
        let reserve = reserve_of(st.total_space());
        Ok(SpaceBudget {
            dir: dir.to_path_buf(),
            available: st.available_space(),
            reserve,
            limit: st.available_space().saturating_sub(reserve),
            used: 0,
        })
    }

    fn exceeded(&self) -> SpaceExceeded {
        SpaceExceeded {
            dir: self.dir.clone(),
            limit: self.limit,
            available: self.available,
            reserve: self.reserve,
        }
    }

    /// Counts `n` more bytes; refuses them if they go past the limit.
    pub fn take(&mut self, n: u64) -> Result<(), SpaceExceeded> {
        match self.used.checked_add(n) {
            Some(u) if u <= self.limit => {
                self.used = u;
                Ok(())
            }
            _ => Err(self.exceeded()),
        }
    }

    /// Measures the filesystem again: what was written may take more room than its byte count
    /// (blocks, inodes of small files), and other programs write too. Refuses when less than
    /// the reserve is left.
    fn remeasure(&mut self) -> Result<(), SpaceExceeded> {
        if let Ok(st) = fs4::statvfs(&self.dir) {
            self.available = st.available_space();
            if self.available < self.reserve {
                return Err(self.exceeded());
            }
        }
        Ok(())
    }
}

/// How often (in stream bytes) [`SpaceBound`] measures the filesystem again.
const REMEASURE_EVERY: u64 = 1 << 20;

/// Passes a stream through while bounding it by a [`SpaceBudget`]: the read that would pass the
/// limit fails instead (its bytes are not handed on), and the filesystem is measured again
/// every MiB. Used for uncompressed layer streams, whose size nothing declares.
pub struct SpaceBound<R> {
    inner: R,
    budget: SpaceBudget,
    next_measure: u64,
    exceeded: Option<SpaceExceeded>,
}

impl<R: Read> SpaceBound<R> {
    /// Bounds `inner` by the space of the filesystem holding `dir`.
    pub fn new(inner: R, dir: &Path) -> io::Result<Self> {
        Ok(SpaceBound {
            inner,
            budget: SpaceBudget::of(dir)?,
            next_measure: REMEASURE_EVERY,
            exceeded: None,
        })
    }

    /// Why the stream was stopped, if it was.
    pub fn exceeded(&self) -> Option<&SpaceExceeded> {
        self.exceeded.as_ref()
    }

    fn stop(&mut self, e: SpaceExceeded) -> io::Error {
        let err = io::Error::new(io::ErrorKind::StorageFull, e.clone());
        self.exceeded = Some(e);
        err
    }
}

impl<R: Read> Read for SpaceBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.exceeded.clone() {
            return Err(io::Error::new(io::ErrorKind::StorageFull, e));
        }
        let n = self.inner.read(buf)?;
        if let Err(e) = self.budget.take(n as u64) {
            return Err(self.stop(e));
        }
        if self.budget.used >= self.next_measure {
            self.next_measure = self.budget.used + REMEASURE_EVERY;
            if let Err(e) = self.budget.remeasure() {
                return Err(self.stop(e));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_five_percent_at_most_a_gib() {
        assert_eq!(reserve_of(100 << 20), 5 << 20);
        assert_eq!(reserve_of(1 << 40), 1 << 30);
    }

    #[test]
    fn budget_refuses_the_first_byte_past_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let mut b = SpaceBudget::of(t.path()).unwrap();
        b.limit = 10;
        assert!(b.take(10).is_ok());
        let e = b.take(1).unwrap_err();
        assert_eq!(e.limit, 10);
        let msg = e.to_string();
        assert!(msg.contains(&t.path().display().to_string()), "{msg}");
        assert!(msg.contains("at most 0.0 MiB could be written"), "{msg}");
    }

    #[test]
    fn bound_stops_the_stream_and_remembers_why() {
        let t = tempfile::tempdir().unwrap();
        let data = [0u8; 100];
        let mut r = SpaceBound::new(&data[..], t.path()).unwrap();
        r.budget.limit = 64;
        let mut out = Vec::new();
        let err = io::copy(&mut r.by_ref().take(1000), &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(out.len() <= 64, "{} bytes passed", out.len());
        assert_eq!(r.exceeded().map(|e| e.limit), Some(64));
        // Later reads keep failing.
        assert!(r.read(&mut [0u8; 8]).is_err());
    }

    #[test]
    fn bounded_reads_refuse_large_files_by_size() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m.json");
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read_bounded(&p, "manifest", 2).unwrap(), b"{}");
        match read_bounded(&p, "manifest", 1) {
            Err(ImageError::TooLarge {
                size: 2, max: 1, ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn layer_count_limit_is_dockers() {
        assert!(check_layer_count(Path::new("x"), 125).is_ok());
        let e = check_layer_count(Path::new("x.tar"), 126).unwrap_err();
        assert!(e.to_string().contains("126"), "{e}");
    }
}
