//! The description's overlay: `root/` copied in (owners not kept, as KIWI's rsync), then
//! `root.tar.gz`, then every `<archive>` of the bootstrap and image sets, each through the
//! confined unpacker, so no entry lands outside the root.

use crate::confine::{ConfineError, Root, UnpackOptions};
use crate::description::ResolvedImage;
use std::path::{Path, PathBuf};

/// Errors of the overlay step.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The root could not be opened for confined writes.
    #[error("{path}: opening the root: {source}")]
    Root {
        /// The root tree.
        path: PathBuf,
        /// What went wrong.
        source: ConfineError,
    },
    /// An overlay archive or directory could not be unpacked into the root.
    #[error("{path}: {source}")]
    Unpack {
        /// The archive or directory.
        path: PathBuf,
        /// What went wrong (an entry escaping the root, a corrupt stream, …).
        source: ConfineError,
    },
    /// An overlay archive or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The archive or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn read(path: &Path, source: std::io::Error) -> OverlayError {
    OverlayError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Applies the overlay of `image`'s description directory to `root`.
pub fn overlay(root: &Path, image: &ResolvedImage) -> Result<(), OverlayError> {
    let r = Root::open(root).map_err(|source| OverlayError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let dir = image.dir.join("root");
    if dir.is_dir() {
        copy_tree(&r, &dir)?;
    }
    let tarball = image.dir.join("root.tar.gz");
    if tarball.is_file() {
        unpack_archive(&r, &tarball, None)?;
    }
    for set in [&image.packages.bootstrap, &image.packages.image] {
        for a in &set.archives {
            let path = image.dir.join(&a.name);
            unpack_archive(
                &r,
                &path,
                a.attributes.get("target_dir").map(String::as_str),
            )?;
        }
    }
    Ok(())
}

/// Stream a directory as a tar archive into the confined unpacker (so the same escape checks
/// apply as to any archive), with owners reset to root.
fn copy_tree(root: &Root, dir: &Path) -> Result<(), OverlayError> {
    let (reader, writer) = std::io::pipe().map_err(|source| read(dir, source))?;
    let src = dir.to_path_buf();
    let producer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Deterministic);
        b.append_dir_all(".", &src)?;
        b.finish()
    });
    let opts = UnpackOptions {
        preserve_owners: false,
        update_existing_dirs: false,
        ..UnpackOptions::for_package()
    };
    let res = crate::confine::unpack(root, reader, &opts);
    let produced = producer.join();
    res.map_err(|source| OverlayError::Unpack {
        path: dir.to_path_buf(),
        source,
    })?;
    match produced {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(read(dir, source)),
        Err(_) => Err(read(dir, std::io::Error::other("archive writer panicked"))),
    }
}

/// Unpack a (possibly compressed) tar archive into the root, below `target_dir` if given.
fn unpack_archive(root: &Root, path: &Path, target_dir: Option<&str>) -> Result<(), OverlayError> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|source| read(path, source))?;
    let mut buffered = std::io::BufReader::new(file);
    let head = buffered.fill_buf().map_err(|source| read(path, source))?;
    let reader = crate::apt::deb::Compression::from_magic(head)
        .reader(buffered)
        .map_err(|source| read(path, source))?;
    let prefix = target_dir.map(|t| PathBuf::from(t.trim_start_matches('/')));
    let map = |p: &Path| {
        Some(
            prefix
                .as_ref()
                .map(|pre| pre.join(p))
                .unwrap_or(p.to_path_buf()),
        )
    };
    let opts = UnpackOptions {
        map: Some(&map),
        ..UnpackOptions::for_package()
    };
    crate::confine::unpack(root, reader, &opts)
        .map(|_| ())
        .map_err(|source| OverlayError::Unpack {
            path: path.to_path_buf(),
            source,
        })
}
