//! Derived builds (`derived_from`): the base step `prepare` is given, which unpacks the bases
//! into the root and records the tree they gave, and the bases re-opened by `create`.
//!
//! This lives here, above both `rootfs` and `image`, because it joins them: `rootfs` builds the
//! tree, `image` reads base images, and neither uses the other.

use super::BuildError;
use crate::confine::{ConfineError, Root, UnpackOptions, Whiteouts};
use crate::description::ResolvedImage;
use crate::image::base::{BaseImage, BaseSource};
use crate::image::limits::{SpaceBound, SpaceExceeded};
use crate::image::walk::Excludes;
use crate::image::{ImageError, TreeSnapshot};
use crate::rootfs::base::{BaseStep, BaseStepError, resolve_base_uri};
use crate::rootfs::prepared::{BaseRecord, PreparedError, PreparedRoot};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of a derived build's bases.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// A base image of `derived_from` could not be read.
    #[error("base image {uri}: {source}")]
    Open {
        /// The base's URI, as resolved.
        uri: String,
        /// What is wrong with it.
        source: ImageError,
    },
    /// A layer of a base image could not be unpacked into the root.
    #[error("base image {uri}: layer {layer}: {source}")]
    Layer {
        /// The base's URI, as resolved.
        uri: String,
        /// The layer blob.
        layer: PathBuf,
        /// What went wrong (a path escaping the root, a corrupt stream, …).
        source: ConfineError,
    },
    /// A layer of a base image would leave the root's filesystem too full; the rest of it
    /// was not unpacked.
    #[error("base image {uri}: layer {layer}: refused: unpacked, {bound}")]
    LayerTooLarge {
        /// The base's URI, as resolved.
        uri: String,
        /// The layer blob.
        layer: PathBuf,
        /// The bound it would pass.
        bound: SpaceExceeded,
    },
    /// The base image changed between `prepare` and `create`.
    #[error(
        "base image {uri} changed since the root was prepared: manifest {found}, expected {expected}"
    )]
    Changed {
        /// The base's URI.
        uri: String,
        /// The manifest digest recorded at prepare.
        expected: String,
        /// The manifest digest found now.
        found: String,
    },
    /// The root could not be opened for confined writes.
    #[error("{path}: {source}")]
    Root {
        /// The root.
        path: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The base's tree could not be recorded.
    #[error(transparent)]
    Snapshot(#[from] ImageError),
    /// The root's `/image` could not be written or read.
    #[error(transparent)]
    Prepared(#[from] PreparedError),
}

fn io(path: &Path, source: std::io::Error) -> BaseError {
    BaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A base from a registry, already in the image store: where its layout is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedBase {
    /// The OCI layout in the store holding exactly this image.
    pub layout: PathBuf,
    /// Its manifest digest (the lock's pin).
    pub manifest_digest: String,
    /// Its reference (`HOST/REPOSITORY[:TAG]`), the derived image's base name.
    pub name: String,
}

/// The base step imgbuild gives `prepare`: every base read as an image (archive or layout);
/// a registry base (`docker://…`) from the store, where the caller put it (`pinned`, keyed by
/// the `derived_from` value as written).
#[derive(Debug, Clone, Default)]
pub struct ImageBases {
    /// Registry bases by their `derived_from` value.
    pub pinned: BTreeMap<String, PinnedBase>,
}

impl BaseStep for ImageBases {
    fn unpack(&self, root: &Path, image: &ResolvedImage) -> Result<Vec<BaseRecord>, BaseStepError> {
        Ok(unpack_bases(root, image, &self.pinned)?)
    }
}

/// Opens the base `given` names: a pinned registry base from its store layout (checked to be
/// the pinned image), anything else by its URI. Returns the URI to record with the base.
fn open_base<'p>(
    given: &str,
    image: &ResolvedImage,
    pinned: &'p BTreeMap<String, PinnedBase>,
) -> Result<(String, BaseImage, Option<&'p PinnedBase>), BaseError> {
    if let Some(p) = pinned.get(given) {
        let base = BaseImage::from_source(&BaseSource::OciLayout(p.layout.clone(), None), &p.name)
            .map_err(|source| BaseError::Open {
                uri: given.to_string(),
                source,
            })?;
        if base.manifest_digest != p.manifest_digest {
            return Err(BaseError::Changed {
                uri: given.to_string(),
                expected: p.manifest_digest.clone(),
                found: base.manifest_digest,
            });
        }
        return Ok((given.to_string(), base, Some(p)));
    }
    let uri = resolve_base_uri(given, &image.dir);
    let base = BaseImage::open(&uri).map_err(|source| BaseError::Open {
        uri: uri.clone(),
        source,
    })?;
    Ok((uri, base, None))
}

/// Unpacks every base of `image.build_type.derived_from` into `root` in order (layers bottom
/// first, whiteouts applied, confined to the root), saves the resulting tree at
/// [`PreparedRoot::snapshot_path`], and returns the record of each base.
fn unpack_bases(
    root: &Path,
    image: &ResolvedImage,
    pinned: &BTreeMap<String, PinnedBase>,
) -> Result<Vec<BaseRecord>, BaseError> {
    let r = Root::open(root).map_err(|source| BaseError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    for given in &image.build_type.derived_from {
        let (uri, base, pin) = open_base(given.trim(), image, pinned)?;
        let base_err = |source| BaseError::Open {
            uri: uri.clone(),
            source,
        };
        for (layer, reader) in base.layers.iter().zip(base.layer_readers()) {
            // Bounded by the root's free space, as the store bounds its layers: a layer too big
            // for the disk (a decompression bomb, a wrong diff_id) stops there, not at ENOSPC.
            let mut reader = SpaceBound::new(reader.map_err(base_err)?, root)
                .map_err(|source| io(root, source))?;
            let layer_err = |source| BaseError::Layer {
                uri: uri.clone(),
                layer: layer.path.clone(),
                source,
            };
            // The tar reader stops at the end-of-archive marker; the rest of the stream is read
            // so that the diff_id check at its end runs.
            let unpacked = crate::confine::unpack(
                &r,
                &mut reader,
                &UnpackOptions::for_layer(Whiteouts::Apply),
            )
            .map_err(layer_err)
            .and_then(|_| {
                std::io::copy(&mut reader, &mut std::io::sink())
                    .map_err(|source| io(&layer.path, source))
            });
            if let Some(bound) = reader.exceeded() {
                return Err(BaseError::LayerTooLarge {
                    uri: uri.clone(),
                    layer: layer.path.clone(),
                    bound: bound.clone(),
                });
            }
            unpacked?;
        }
        records.push(BaseRecord {
            uri: uri.clone(),
            manifest_digest: base.manifest_digest.clone(),
            layout: pin.map(|p| p.layout.clone()),
            name: pin.map(|p| p.name.clone()),
        });
    }
    let excludes = Excludes {
        keep_tmpdirs: !image.build_type.ensure_empty_tmpdirs,
        patterns: Vec::new(),
    };
    let snapshot = TreeSnapshot::from_dir(root, &excludes)?;
    let kept = PreparedRoot::new(root);
    kept.create_dir()?;
    snapshot.save(&kept.snapshot_path())?;
    Ok(records)
}

/// Re-opens the bases recorded in a prepared derived root, checking each is still the image
/// that was unpacked.
pub(super) fn open_bases(root: &Path) -> Result<Vec<BaseImage>, BuildError> {
    let mut bases = Vec::new();
    let records = PreparedRoot::new(root)
        .base_records()
        .map_err(BaseError::from)?;
    for r in records {
        let opened = match (&r.layout, &r.name) {
            (Some(layout), Some(name)) => {
                BaseImage::from_source(&BaseSource::OciLayout(layout.clone(), None), name)
            }
            _ => BaseImage::open(&r.uri),
        };
        let base = opened.map_err(|source| BaseError::Open {
            uri: r.uri.clone(),
            source,
        })?;
        if base.manifest_digest != r.manifest_digest {
            return Err(BaseError::Changed {
                uri: r.uri,
                expected: r.manifest_digest,
                found: base.manifest_digest,
            }
            .into());
        }
        bases.push(base);
    }
    Ok(bases)
}
