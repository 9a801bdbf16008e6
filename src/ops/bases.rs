//! Registry bases of derived builds (`derived_from="docker://HOST/REPO:TAG"`): each is resolved
//! to one image manifest — the lock file's pin, else what the registry serves for the tag on
//! the build's platform — pulled into the image store unless the store has it, and read from the
//! store's OCI layout of it (`Store::oci_layout`). Offline, the store alone answers: the pinned
//! digest, else the image last pulled for the tag.

use super::{OpsError, Packages, Reporter};
use crate::apt::lock::{LockFile, LockedBase};
use crate::build::base::{ImageBases, PinnedBase};
use crate::description::{Loc, ResolvedImage};
use crate::image::base::BaseImage;
use crate::registry::registries_conf::RegistriesConf;
use crate::registry::{Client, ClientOptions, Reference};
use crate::registry::{Platform, PullOptions};
use crate::storage::{Store, StoreOptions};
use std::collections::BTreeMap;

/// How a build reaches its registry bases: the store that caches them, and the registry
/// client's options (credentials, TLS).
#[derive(Debug, Clone, Default)]
pub struct BaseAccess {
    /// The image store the bases are pulled into and read from.
    pub store: StoreOptions,
    /// How to connect to the registries.
    pub client: ClientOptions,
}

/// The scheme of a registry base.
const DOCKER: &str = "docker://";

/// Whether `uri` names a base in a registry.
pub fn is_registry_base(uri: &str) -> bool {
    uri.trim().starts_with(DOCKER)
}

/// The references a registry base URI may mean, in order (short names through the registries
/// configuration). Checked before any work, so that a malformed base is refused at its
/// `<type>` element.
pub(super) fn qualify(
    conf: &RegistriesConf,
    image: &ResolvedImage,
    given: &str,
) -> Result<Vec<Reference>, OpsError> {
    conf.qualify(given.trim())
        .map_err(|source| OpsError::RegistryBase {
            location: Loc::describe(&image.build_type.loc),
            uri: given.trim().to_string(),
            source: Box::new(source),
        })
}

/// The `<type>`-located error of a registry base.
fn base_error(image: &ResolvedImage, given: &str, reason: impl Into<String>) -> OpsError {
    OpsError::RegistryBaseUnavailable {
        location: Loc::describe(&image.build_type.loc),
        uri: given.trim().to_string(),
        reason: reason.into(),
    }
}

/// The pins of the lock file `packages` names, unless it is ignored or absent.
fn lock_pins(image: &ResolvedImage, packages: &Packages) -> Result<Vec<LockedBase>, OpsError> {
    if packages.no_lock {
        return Ok(Vec::new());
    }
    let path = packages
        .lock
        .clone()
        .unwrap_or_else(|| image.dir.join("imgbuild.lock"));
    if !path.exists() {
        return Ok(Vec::new());
    }
    let lock = LockFile::read_for(&path, &image.arch).map_err(crate::plan::PlanError::from)?;
    Ok(lock.bases)
}

/// Resolves every registry base of `image` (see the module doc) into the store and returns the
/// base step that reads them from there. Nothing is done for a description without one.
pub(super) fn resolve(
    image: &ResolvedImage,
    packages: &Packages,
    access: &BaseAccess,
    reporter: &dyn Reporter,
) -> Result<ImageBases, OpsError> {
    let given: Vec<&str> = image
        .build_type
        .derived_from
        .iter()
        .map(|u| u.trim())
        .filter(|u| is_registry_base(u))
        .collect();
    if given.is_empty() {
        return Ok(ImageBases::default());
    }
    let conf = RegistriesConf::load().map_err(|source| OpsError::RegistryConf(Box::new(source)))?;
    let pins = lock_pins(image, packages)?;
    let store = Store::open(&access.store).map_err(|source| OpsError::BaseStore {
        root: access.store.root.clone(),
        source: Box::new(source),
    })?;
    let platform = Platform::for_machine(&image.arch);
    let mut pinned = BTreeMap::new();
    for uri in given {
        let candidates = qualify(&conf, image, uri)?;
        let pin = pins.iter().find(|p| p.uri == uri).map(|p| p.digest.clone());
        let (reference, digest) = match pin {
            Some(digest) => {
                let found = store.image(&digest).is_ok();
                if !found {
                    if packages.offline {
                        return Err(base_error(
                            image,
                            uri,
                            format!(
                                "the lock pins {digest}, which is not in the image store {} \
                                 (--offline); build once online or pull it",
                                access.store.root.display()
                            ),
                        ));
                    }
                    let by_digest: Vec<Reference> = candidates
                        .iter()
                        .map(|c| Reference {
                            digest: Some(digest.clone()),
                            ..c.clone()
                        })
                        .collect();
                    pull_first(&conf, &by_digest, &platform, &store, access, reporter)
                        .map_err(|reason| base_error(image, uri, reason))?;
                }
                (candidates[0].clone(), digest)
            }
            None if packages.offline => {
                let stored = candidates.iter().find_map(|c| {
                    let name = format!("{}/{}:{}", c.host, c.repository, c.manifest_reference());
                    store
                        .image(&name)
                        .ok()
                        .map(|r| (c.clone(), r.manifest_digest))
                });
                stored.ok_or_else(|| {
                    base_error(
                        image,
                        uri,
                        format!(
                            "not in the image store {} and --offline forbids pulling it; \
                             build once online, or pin it with a lock file",
                            access.store.root.display()
                        ),
                    )
                })?
            }
            None => pull_first(&conf, &candidates, &platform, &store, access, reporter)
                .map_err(|reason| base_error(image, uri, reason))?,
        };
        let layout = store
            .oci_layout(&digest)
            .map_err(|source| OpsError::BaseStore {
                root: access.store.root.clone(),
                source: Box::new(source),
            })?;
        let name = match &reference.tag {
            Some(t) => format!("{}/{}:{t}", reference.host, reference.repository),
            None => format!("{}/{}", reference.host, reference.repository),
        };
        reporter.info(&format!("base {uri}: {name}@{digest}"));
        pinned.insert(
            uri.to_string(),
            PinnedBase {
                layout,
                manifest_digest: digest,
                name,
            },
        );
    }
    Ok(ImageBases { pinned })
}

/// Pulls the first of `candidates` that one of its sources (mirrors first) serves; returns the
/// candidate and the manifest digest stored. The error names every place tried.
fn pull_first(
    conf: &RegistriesConf,
    candidates: &[Reference],
    platform: &Platform,
    store: &Store,
    access: &BaseAccess,
    reporter: &dyn Reporter,
) -> Result<(Reference, String), String> {
    let mut failures = Vec::new();
    let progress = crate::registry::NoProgress;
    for candidate in candidates {
        let sources = match conf.sources(candidate) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        for source in sources {
            let opts = ClientOptions {
                insecure: access.client.insecure || source.insecure,
                ..access.client.clone()
            };
            let attempt = Client::connect(&source.reference, &opts)
                .map_err(|e| e.to_string())
                .and_then(|client| {
                    crate::registry::pull(
                        &client,
                        &source.reference,
                        &PullOptions {
                            platform: Some(platform.clone()),
                            all_platforms: false,
                        },
                        store,
                        &progress,
                    )
                    .map_err(|e| e.to_string())
                });
            match attempt {
                Ok(report) => {
                    reporter.info(&format!(
                        "pulled {}/{}: {} blob(s) downloaded",
                        source.reference.host,
                        source.reference.repository,
                        report.downloaded.len()
                    ));
                    return Ok((candidate.clone(), report.manifest_digest));
                }
                Err(e) => failures.push(e),
            }
        }
    }
    Err(failures.join("; "))
}

/// The pins of a derived lock: every base of `bases` (registry ones as resolved, files as read
/// now), in `derived_from` order, and the dpkg status of the topmost base that has one.
pub(super) fn lock_bases(
    image: &ResolvedImage,
    bases: &ImageBases,
) -> Result<(Vec<LockedBase>, BaseDatabase), OpsError> {
    let mut locked = Vec::new();
    let mut status = None;
    let mut rpmdb = None;
    for given in &image.build_type.derived_from {
        let given = given.trim();
        let uri = crate::rootfs::prepare::resolve_base_uri(given, &image.dir);
        let opened = match bases.pinned.get(given) {
            Some(p) => BaseImage::from_source(
                &crate::image::base::BaseSource::OciLayout(p.layout.clone(), None),
                &p.name,
            ),
            None => BaseImage::open(&uri),
        };
        let base = opened.map_err(|source| OpsError::DerivedFrom {
            uri: given.to_string(),
            source,
        })?;
        if let Some(text) = base
            .read_file("var/lib/dpkg/status", STATUS_LIMIT)
            .map_err(|source| OpsError::DerivedFrom {
                uri: given.to_string(),
                source,
            })?
        {
            status = Some(String::from_utf8_lossy(&text).into_owned());
        }
        for dbpath in crate::rootfs::rpmdb::DBPATHS {
            let file = format!("{}/rpmdb.sqlite", dbpath.trim_start_matches('/'));
            if let Some(bytes) =
                base.read_file(&file, RPMDB_LIMIT)
                    .map_err(|source| OpsError::DerivedFrom {
                        uri: given.to_string(),
                        source,
                    })?
            {
                rpmdb = Some((dbpath.to_string(), bytes));
                break;
            }
        }
        locked.push(LockedBase {
            uri: given.to_string(),
            digest: base.manifest_digest.clone(),
        });
    }
    Ok((
        locked,
        BaseDatabase {
            dpkg_status: status,
            rpmdb,
        },
    ))
}

/// The package database of the last base that has one, as read from its layers.
pub(super) struct BaseDatabase {
    /// dpkg's status file.
    pub dpkg_status: Option<String>,
    /// The rpm database: where it was in the image, and the sqlite file.
    pub rpmdb: Option<(String, Vec<u8>)>,
}

/// The largest rpm database read into memory (a full distribution install is a few hundred MB).
const RPMDB_LIMIT: u64 = 1 << 30;

/// The largest dpkg status file read into memory (Debian's biggest installs have a few MB).
const STATUS_LIMIT: u64 = 256 << 20;
