//! Image writing: deterministic tar layers, OCI config/manifest/index, OCI layout, oci-archive,
//! docker-archive and rootfs tarballs. Runs nothing.
//!
//! Data flows one way: a root tree is walked in sorted order ([`walk`]), written as tar
//! ([`tarball`]) and compressed ([`compress`]) into a content-addressed blob ([`layer`]); the
//! blobs are described by an OCI config and manifest ([`config`]) and packaged as an OCI layout,
//! oci-archive or docker-archive ([`output`]). Bases for derived images are read back by
//! [`base`]; [`snapshot`] records a base tree so a diff layer holds only what changed.

pub mod base;
pub mod compress;
pub mod config;
pub mod index;
pub mod layer;
pub mod limits;
pub mod output;
pub mod platform;
pub mod snapshot;
pub mod tarball;
pub mod walk;

use std::path::PathBuf;

pub use compress::Compression;
pub use index::{IndexEntry, IndexPlatform, ManifestList, write_index_archive};

pub use config::{BuiltImage, HistoryEntry, ImageSpec};
pub use layer::{LayerBlob, LayerOptions, write_layer};
pub use snapshot::{TreeSnapshot, write_diff_layer};

/// Errors of the image stage. Every IO error names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file changed size while it was being packed.
    #[error("{path}: file changed while packing (expected {expected} bytes)")]
    FileChanged {
        /// The file that changed.
        path: PathBuf,
        /// The size `lstat` reported before reading.
        expected: u64,
    },
    /// A compressor failed.
    #[error("{path}: {format} compression failed: {message}")]
    Compress {
        /// The output being written.
        path: PathBuf,
        /// The compression format.
        format: &'static str,
        /// What the compressor reported.
        message: String,
    },
    /// JSON could not be produced or parsed.
    #[error("{what}: JSON: {source}")]
    Json {
        /// The document involved (file or blob).
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// An OCI document could not be built or a field holds an invalid value.
    #[error("{field}: {message}")]
    Spec {
        /// The field involved.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A blob's content does not match its digest or size.
    #[error("{path}: digest mismatch: expected {expected}, found {actual}")]
    DigestMismatch {
        /// The blob (or archive member) checked.
        path: String,
        /// The digest the manifest or config names.
        expected: String,
        /// The digest of the actual content.
        actual: String,
    },
    /// A base image archive or layout is malformed.
    #[error("{path}: {reason}")]
    BadBase {
        /// The archive or layout read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image has more layers than Docker allows (see [`limits`]).
    #[error(
        "{path}: the image has {count} layers, more than the {max} Docker and podman allow; \
         refused before unpacking"
    )]
    TooManyLayers {
        /// The archive, layout or manifest read.
        path: PathBuf,
        /// Layers it lists.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A manifest, index or config is larger than the container tools allow (see [`limits`]).
    #[error("{path}: {what} of {size} bytes is larger than the {max} bytes allowed")]
    TooLarge {
        /// The file or archive member.
        path: String,
        /// What it is.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Writing untrusted content would leave its filesystem too full (see [`limits`]).
    #[error("{path}: refused: {bound}")]
    NoSpace {
        /// What was being written (an archive member).
        path: String,
        /// The bound it would pass.
        bound: limits::SpaceExceeded,
    },
    /// A caller-given option is invalid.
    #[error("invalid option {option}: {reason}")]
    Option {
        /// The option involved.
        option: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Result alias of the image stage.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Wraps an IO error with the path it concerns.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { path, source }
}
