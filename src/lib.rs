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
// Being rewritten on other branches of issue 10; this allow goes once they are merged and clean.
#[allow(missing_docs, clippy::pedantic, clippy::undocumented_unsafe_blocks)]
pub mod build;
pub mod confine;
pub mod description;
pub mod digest;
pub mod image;
pub mod interrupt;
pub mod ops;
pub mod plan;
pub mod reference;
// Being rewritten on other branches of issue 10; this allow goes once they are merged and clean.
#[allow(missing_docs, clippy::pedantic, clippy::undocumented_unsafe_blocks)]
pub mod reuse;
// Being rewritten on other branches of issue 10; this allow goes once they are merged and clean.
#[allow(missing_docs, clippy::pedantic, clippy::undocumented_unsafe_blocks)]
pub mod rootfs;
pub mod runtime;
pub mod sandbox;
pub mod sbom;
pub mod storage;
pub mod workdir;

#[cfg(test)]
mod architecture_test;
