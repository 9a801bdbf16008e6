//! imgbuild: build Docker/OCI base images from KIWI image descriptions.
//!
//! The pipeline runs one way, one module per stage: `description` → `plan` (with `apt`) →
//! `rootfs` (with `sandbox`) → `image` → `build`, then `storage` and `runtime` for keeping and
//! running the results. `ops` puts the stages together as the operations the `imgbuild` binary
//! offers (`build`, `prepare`, `create`, `lock`), reporting through a `Reporter` the caller
//! gives. `docs/architecture.md` lists every module in dependency order, which a test keeps the
//! code to; see `docs/` for the user guide.

pub mod apt;
pub mod atomic;
pub mod binfmt;
pub mod build;
pub mod confine;
pub mod description;
pub mod digest;
pub mod image;
pub mod interrupt;
pub mod ops;
pub mod plan;
pub mod reference;
pub mod registry;
pub mod remote_cache;
pub mod reuse;
pub mod rootfs;
pub mod rpm;
pub mod runtime;
pub mod sandbox;
pub mod sbom;
pub mod storage;
pub mod structure_test;
pub mod workdir;

#[cfg(test)]
mod architecture_test;
