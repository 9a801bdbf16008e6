//! The local image store and its storage drivers.
//!
//! A [`Store`] keeps content-addressed blobs (manifests, configs, compressed layers), unpacked
//! layers keyed by chain id (so images sharing a base store it once), image records by id, tag
//! and digest, and the writable container root trees made from them. Unpacked layers live in a
//! [`Driver`]: `vfs` (full copies), `overlay` (one diff directory per layer, stacked with
//! overlayfs), `btrfs` (subvolume snapshots) and `devicemapper` (refused clearly where the kernel
//! lacks dm-thin). The store itself takes a [`StoreInput`] and a [`LayerApplier`] that unpacks
//! one layer tar into a directory; [`archive`] reads docker- and oci-archives and OCI layouts
//! into that input (and writes them back out for `save`).

mod apply;
pub mod archive;
mod btrfs;
mod copy;
mod devicemapper;
mod digest;
mod driver;
mod fsutil;
mod layout;
mod overlay;
mod reference;
mod store;
mod vfs;

use std::io::Read;
use std::path::PathBuf;

pub use apply::ConfinedApplier;
pub use digest::{chain_ids, sha256_digest};
pub use driver::{Driver, DriverKind, FillLayer};
pub use reference::normalize_tag;
pub use store::{
    Container, DEFAULT_ROOT, ImageDetails, ImageLayer, ImageRecord, Removal, Store, StoreOptions,
};

/// How a layer's whiteouts must be written into the directory it is unpacked into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Whiteouts applied: `.wh.NAME` deletes `NAME` below, `.wh..wh..opq` empties the directory
    /// of what lower layers put there. The directory already holds the parent layer (vfs, btrfs).
    Apply,
    /// Whiteouts kept in overlayfs form: `.wh.NAME` becomes a 0/0 character device `NAME`,
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. The directory starts
    /// empty (overlay).
    OverlayFs,
}

/// The error a [`LayerApplier`] reports; the store wraps it with the layer's digest.
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// Unpacks one uncompressed layer tar stream into a directory, never writing outside it.
///
/// This is the seam to the crate's safe extraction: the store decompresses and verifies the
/// layer, the applier writes it.
pub trait LayerApplier: Send + Sync {
    /// Unpack `layer` (an uncompressed tar stream) into `target` with whiteouts in `mode`.
    fn apply(
        &self,
        layer: &mut dyn Read,
        target: &std::path::Path,
        mode: ApplyMode,
    ) -> Result<(), ApplyError>;
}

/// Any function of the right shape is an applier, so the crate's extraction plugs in directly.
impl<F> LayerApplier for F
where
    F: Fn(&mut dyn Read, &std::path::Path, ApplyMode) -> Result<(), ApplyError> + Send + Sync,
{
    fn apply(
        &self,
        layer: &mut dyn Read,
        target: &std::path::Path,
        mode: ApplyMode,
    ) -> Result<(), ApplyError> {
        self(layer, target, mode)
    }
}

/// One layer blob handed to [`Store::load`] or returned by [`Store::export`].
pub struct LayerBlob {
    /// `sha256:<hex>` of the blob bytes as stored (compressed or not).
    pub digest: String,
    /// The manifest's media type for the blob.
    pub media_type: String,
    /// The blob bytes; read once and verified against `digest`.
    pub data: Box<dyn Read + Send>,
}

impl std::fmt::Debug for LayerBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerBlob")
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .finish_non_exhaustive()
    }
}

/// An image as the store takes and gives it: the archive readers and writers convert to and from
/// this, so the store never parses archive formats. A docker-archive reader supplies an OCI
/// manifest it derives from the archive (layer digests then being those of the layer tars).
#[derive(Debug)]
pub struct StoreInput {
    /// The OCI (or Docker schema 2) image manifest, byte for byte.
    pub manifest: Vec<u8>,
    /// The image config JSON, byte for byte (its sha256 is the image id).
    pub config: Vec<u8>,
    /// The layer blobs, bottom first, in the manifest's order.
    pub layers: Vec<LayerBlob>,
}

/// Errors of the image store and its drivers; every variant names the path, digest or
/// reference involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A store file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A store file or image document is not valid JSON.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file or blob it was read from.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A store record or image document is malformed.
    #[error("{what}: {reason}")]
    Invalid {
        /// The record or document.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A storage driver name is not known; holds the name.
    #[error("unknown storage driver '{0}' (known: vfs, overlay, btrfs, devicemapper)")]
    UnknownDriver(String),
    /// The store was created with another driver than the one asked for.
    #[error(
        "the store at {root} was created with the '{recorded}' storage driver; it cannot be used \
         with '{requested}' (use --storage-driver {recorded}, or another --storage-root)"
    )]
    DriverMismatch {
        /// The store's root directory.
        root: PathBuf,
        /// The driver the store records.
        recorded: DriverKind,
        /// The driver asked for.
        requested: DriverKind,
    },
    /// The driver cannot work at this path on this host.
    #[error("storage driver '{driver}' is not usable at {path}: {reason}")]
    DriverUnavailable {
        /// The driver.
        driver: DriverKind,
        /// The store directory it was tried on.
        path: PathBuf,
        /// Why it is not usable.
        reason: String,
    },
    /// The btrfs driver was asked for on another filesystem.
    #[error(
        "{path}: the btrfs storage driver needs the store on a btrfs filesystem (found {found})"
    )]
    NotBtrfs {
        /// The store directory.
        path: PathBuf,
        /// The filesystem found there.
        found: String,
    },
    /// The devicemapper driver is unavailable; holds the reason.
    #[error("storage driver 'devicemapper' is unavailable: {0}")]
    DeviceMapper(String),
    /// A blob could not be written to the store.
    #[error("blob {digest}: storing it in {path}: {source}")]
    BlobWrite {
        /// The blob's digest.
        digest: String,
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A blob's content does not match its digest.
    #[error("blob {expected}: content hashes to {actual}; refusing corrupt blob")]
    BlobDigestMismatch {
        /// The digest the blob is named by.
        expected: String,
        /// The digest of its content.
        actual: String,
    },
    /// A blob's length differs from the size its manifest gives.
    #[error("blob {digest}: the manifest gives its size as {declared} bytes, it has {found}")]
    BlobSizeMismatch {
        /// The blob's digest.
        digest: String,
        /// The size in the manifest.
        declared: u64,
        /// The length read (`more than N` when reading stopped past the declared size).
        found: String,
    },
    /// Unpacking a layer passed a space bound.
    #[error("layer {blob}: refused: unpacked, {bound}; the partial layer was removed")]
    LayerTooLarge {
        /// The layer blob's digest.
        blob: String,
        /// The bound it passed.
        bound: crate::image::limits::SpaceExceeded,
    },
    /// A layer's uncompressed content does not match the config's `diff_id`.
    #[error(
        "layer {blob}: uncompressed content hashes to {actual}, the config's diff_id is {expected}"
    )]
    DiffIdMismatch {
        /// The layer blob's digest.
        blob: String,
        /// The config's `diff_id`.
        expected: String,
        /// The digest of the uncompressed content.
        actual: String,
    },
    /// A layer could not be applied to the layer below it.
    #[error("layer {blob}: {source}")]
    Apply {
        /// The layer blob's digest.
        blob: String,
        /// What went wrong.
        #[source]
        source: ApplyError,
    },
    /// An image reference is not a valid name.
    #[error(transparent)]
    InvalidReference(crate::reference::InvalidName),
    /// No image matches a reference; holds the reference.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// A reference (an id prefix) matches more than one image.
    #[error("image reference '{reference}' is ambiguous: it matches {count} images")]
    AmbiguousReference {
        /// The reference as given.
        reference: String,
        /// How many images it matches.
        count: usize,
    },
    /// An image cannot be removed while a container uses it (unless forced).
    #[error("image {image} is in use by container {container}")]
    ImageInUse {
        /// The image id.
        image: String,
        /// The container's id.
        container: String,
    },
    /// An image with several tags named by id or digest: removing it would drop every tag.
    #[error(
        "image {reference} has several tags ({}): name a tag, or force the removal",
        tags.join(", ")
    )]
    SeveralTags {
        /// The reference as given.
        reference: String,
        /// The image's tags.
        tags: Vec<String>,
    },
    /// Some of the images named for removal cannot be removed; nothing was removed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NotRemoved(Vec<StorageError>),
    /// No container matches a reference; holds the reference.
    #[error("no such container: {0}")]
    ContainerNotFound(String),
    /// A system call of a driver (mount, ioctl, ...) failed.
    #[error("{op} {path}: {source}")]
    Sys {
        /// The operation.
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The store lock could not be taken.
    #[error("{path}: cannot take the store lock: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for the storage module.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: &'static str, path: impl Into<PathBuf>, source: nix::Error) -> Self {
        StorageError::Sys {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        StorageError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
