//! imgbuild: build Docker/OCI base images from KIWI image descriptions.
//!
//! The pipeline runs one way, one module per stage:
//! `description` → `apt` → `rootfs` (using `sandbox`) → `image` → outputs, with `storage`,
//! `runtime` and `registry` for running and shipping the results. See `docs/` for the user guide.

pub mod apt;
pub mod atomic;
pub mod build;
pub mod confine;
pub mod description;
pub mod digest;
pub mod image;
pub mod interrupt;
pub mod plan;
pub mod reference;
pub mod reuse;
pub mod rootfs;
pub mod runtime;
pub mod sandbox;
pub mod sbom;
pub mod storage;
pub mod workdir;
