//! `build` for several architectures at once: each architecture is built as [`super::build`]
//! builds one (its own reuse check, root, lock pins and result files) into a directory of its
//! own in the target, as many at a time as the host has cores, then one OCI image index over
//! their images is written as an OCI layout and an oci-archive, and a `result.json` listing all.
//!
//! Everything is written in a work directory beside the target and replaces it in one rename,
//! as a single build's result does: the previous result's per-architecture directories are
//! hard-linked into it first, so an architecture whose inputs did not change is reused.
//! The index lists its images in a canonical order (see [`crate::image::index`]), so the same
//! per-architecture images give the same index digest however, wherever and in whichever
//! order they were built.

use super::build::{BuildRequest, Outcome, build};
use super::{OpsError, Reporter, target_parent};
use crate::build::{Created, PlatformImage, ResultFile, ResultKind};
use crate::image::index::{ManifestList, write_index_archive};
use crate::workdir::{self, WorkDir};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a multi-architecture build is asked to do.
#[derive(Debug, Clone)]
pub struct PlatformsRequest {
    /// One build per architecture (its description resolved for that architecture), in the
    /// order given; each one's target directory is set here (`<target>/<arch>`), and every
    /// one writes an OCI layout (the index is made of them).
    pub builds: Vec<BuildRequest>,
    /// The directory of the whole result (replaced as a whole).
    pub target_dir: PathBuf,
    /// Replace the target even when imgbuild did not write it.
    pub replace_target_dir: bool,
    /// Builds run at once; 0: one per core, at most one per architecture.
    pub jobs: usize,
}

/// What a multi-architecture build did.
#[derive(Debug, Clone)]
pub struct PlatformsOutcome {
    /// The whole result: the index's digest as `manifest_digest`, its files, and the
    /// architectures in `platforms`.
    pub created: Created,
    /// Each architecture's own outcome (built or reused), in the order of the request.
    pub builds: Vec<(String, Outcome)>,
}

/// Builds every architecture of `req` (concurrently, each reporting to its reporter in
/// `reporters`, one per build in order) and writes the index over them; `reporter` hears of
/// the index stage. The first failure (in the order of the request) is the error; the target
/// is then unchanged.
pub fn build_platforms(
    req: &PlatformsRequest,
    reporters: &[&(dyn Reporter + Sync)],
    reporter: &dyn Reporter,
) -> Result<PlatformsOutcome, OpsError> {
    let target = &req.target_dir;
    crate::build::check_target(target, req.replace_target_dir)?;
    // Every architecture's blockers and host checks first, so a missing qemu-user or a bad
    // description fails at once, not after another architecture's build.
    for b in &req.builds {
        b.check()?;
        super::preflight::check(
            &super::needs(
                target,
                "target directory",
                Some(&b.packages),
                &b.source.image,
            ),
            reporter,
        )?;
    }
    let parent = target_parent(target, reporter)?;
    let work =
        WorkDir::create(&parent, workdir::RESULT_PREFIX).map_err(|source| OpsError::WorkDir {
            dir: parent.clone(),
            source,
        })?;
    let new = work.path().join("result");
    std::fs::create_dir(&new).map_err(|source| OpsError::CreateDir {
        path: new.clone(),
        source,
    })?;
    let absolute_target = crate::reuse::absolute(target);
    let mut builds = Vec::with_capacity(req.builds.len());
    for b in &req.builds {
        let arch = b.source.image.arch.clone();
        let dir = new.join(&arch);
        // The previous result of this architecture, linked in so that its reuse check sees it.
        let old = target.join(&arch);
        if old.join("result.json").is_file() {
            link_tree(&old, &dir)?;
        }
        let mut b = b.clone();
        b.output.target_dir = dir;
        b.output.oci_dir = true;
        b.output.replace_target_dir = false;
        // The whole target is no input of any architecture (it may lie in the description).
        b.not_inputs.push(absolute_target.clone());
        builds.push(b);
    }
    let outcomes = run_all(&builds, reporters, req.jobs);
    let mut done = Vec::with_capacity(builds.len());
    for (b, o) in builds.iter().zip(outcomes) {
        let arch = b.source.image.arch.clone();
        let outcome = o?;
        // Written in the work directory, each result is moved to `<target>/<arch>`: KIWI's
        // index of it names its files there.
        let relocated = crate::build::relocate_result(
            &b.output.target_dir,
            &target.join(&arch),
            &b.source.image,
            outcome.created().clone(),
        )
        .map_err(|source| OpsError::Create {
            target: target.join(&arch),
            source: Box::new(source),
        })?;
        let outcome = match outcome {
            Outcome::Built(_) => Outcome::Built(relocated),
            Outcome::Reused(_) => Outcome::Reused(relocated),
        };
        done.push((arch, outcome));
    }

    reporter.stage_start("index");
    let started = std::time::Instant::now();
    let created = write_index(&new, &builds, &done)?;
    reporter.stage_done("index", started.elapsed());
    crate::build::replace_dir(&new, target).map_err(|source| OpsError::Create {
        target: target.clone(),
        source: Box::new(source),
    })?;
    drop(work);
    Ok(PlatformsOutcome {
        created,
        builds: done,
    })
}

/// Runs `builds` on at most `jobs` threads (0: one per core), each with its reporter. The
/// builds of a foreign architecture go first and keep the normal priority, the native ones run
/// at a lower one beside them: a foreign build's package scripts run one after the other under
/// qemu, so it is the longest and what the whole waits for, and the native builds fill the
/// cores it leaves.
fn run_all(
    builds: &[BuildRequest],
    reporters: &[&(dyn Reporter + Sync)],
    jobs: usize,
) -> Vec<Result<Outcome, OpsError>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let jobs = if jobs == 0 { cores } else { jobs }.clamp(1, builds.len().max(1));
    let host = crate::image::platform::Platform::host();
    let native: Vec<bool> = builds
        .iter()
        .map(|b| {
            host.matches(&crate::image::platform::Platform::for_machine(
                &b.source.image.arch,
            ))
        })
        .collect();
    let any_foreign = native.iter().any(|n| !n);
    let mut order: Vec<usize> = (0..builds.len()).collect();
    order.sort_by_key(|&i| native[i]);
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Outcome, OpsError>>>> =
        builds.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let b = &builds[i];
                    set_thread_nice(if native[i] && any_foreign { 10 } else { 0 });
                    let r = build(b, reporters[i]).map_err(|e| OpsError::Platform {
                        arch: b.source.image.arch.clone(),
                        source: Box::new(e),
                    });
                    *results[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .zip(builds)
        .map(|(m, b)| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| {
                    Err(OpsError::Platform {
                        arch: b.source.image.arch.clone(),
                        source: Box::new(OpsError::NoOutcome),
                    })
                })
        })
        .collect()
}

/// Sets the calling thread's nice value (Linux keeps one per thread; the processes it starts
/// inherit it). Best effort: a priority that cannot be set only changes the scheduling.
fn set_thread_nice(nice: i32) {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid.cast_unsigned(), nice) };
}

/// The index over the built architectures in `new`: its OCI layout, its oci-archive (compressed
/// as the archives of the builds are), their `.sha256`, and `result.json`.
fn write_index(
    new: &Path,
    builds: &[BuildRequest],
    done: &[(String, Outcome)],
) -> Result<Created, OpsError> {
    let first = &builds[0];
    let image = &first.source.image;
    let stem = format!("{}-{}", image.name, crate::build::image_version(image));
    let spec = crate::build::image_spec(image, &first.output, 0);
    let index_err = |source| OpsError::Index {
        path: new.to_path_buf(),
        source,
    };
    let layout_name = format!("{stem}.oci");
    let layout = new.join(&layout_name);
    let mut list = ManifestList::create(&layout).map_err(index_err)?;
    let mut platforms = Vec::new();
    for (arch, outcome) in done {
        let c = outcome.created();
        let Some(f) = c.files.iter().find(|f| f.kind == ResultKind::OciLayout) else {
            return Err(OpsError::Platform {
                arch: arch.clone(),
                source: Box::new(OpsError::NoLayout),
            });
        };
        let added = list
            .add_layout(&new.join(arch).join(&f.name), None, None)
            .map_err(index_err)?;
        let digest = c.manifest_digest.clone().unwrap_or_default();
        let platform = added
            .iter()
            .find(|e| e.digest == digest)
            .map_or_else(String::new, |e| e.platform.to_string());
        platforms.push(PlatformImage {
            arch: arch.clone(),
            platform,
            dir: arch.clone(),
            manifest_digest: digest,
        });
    }
    let index_digest = list.save(Some(&spec.tag)).map_err(index_err)?;
    let archive = write_index_archive(
        &layout,
        &new.join(format!("{stem}.oci.tar{}", first.output.compress.suffix())),
        first.output.compress,
    )
    .map_err(index_err)?;
    let archive_name = archive
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::image::output::write_sha256_line(&archive.path, &archive.sha256).map_err(index_err)?;
    let tree = |name: &str| -> Result<String, OpsError> {
        let path = new.join(name);
        crate::digest::tree_digest(&path).map_err(|source| OpsError::Digest { path, source })
    };
    let mut files = vec![
        ResultFile {
            kind: ResultKind::OciLayout,
            name: layout_name.clone(),
            sha256: None,
            size: None,
            tree: Some(tree(&layout_name)?),
        },
        ResultFile {
            kind: ResultKind::OciArchive,
            name: archive_name,
            sha256: Some(archive.sha256.clone()),
            size: Some(archive.size),
            tree: None,
        },
    ];
    for (arch, _) in done {
        files.push(ResultFile {
            kind: ResultKind::Platform,
            name: arch.clone(),
            sha256: None,
            size: None,
            tree: Some(tree(arch)?),
        });
    }
    let created = Created {
        name: spec.name.clone(),
        tags: crate::image::config::repo_tags(&spec.name, &spec.tag, &spec.additional_names),
        manifest_digest: Some(index_digest),
        config_digest: None,
        layers: Vec::new(),
        source_date_epoch: done
            .iter()
            .map(|(_, o)| o.created().source_date_epoch)
            .max()
            .unwrap_or(0),
        files,
        inputs: None,
        pushed: Vec::new(),
        platforms,
    };
    crate::build::write_result_json(new, &created).map_err(|source| OpsError::Create {
        target: new.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok(created)
}

/// A copy of the tree `src` at `dst` whose files are hard links to the originals (results
/// are never changed in place, only replaced, so sharing their inodes is safe).
fn link_tree(src: &Path, dst: &Path) -> Result<(), OpsError> {
    let err = |path: &Path, source| OpsError::CreateDir {
        path: path.to_path_buf(),
        source,
    };
    for entry in walkdir::WalkDir::new(src).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(src).to_path_buf();
            err(&path, e.into())
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let to = dst.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| err(&to, e))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(|e| err(entry.path(), e))?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| err(&to, e))?;
        } else {
            std::fs::hard_link(entry.path(), &to)
                .or_else(|_| std::fs::copy(entry.path(), &to).map(|_| ()))
                .map_err(|e| err(&to, e))?;
        }
    }
    Ok(())
}
