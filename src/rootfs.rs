//! The root tree: bootstrap and image package phases, dpkg configuration in the sandbox, overlays,
//! users, hooks, removals and volatile-file cleanup.

pub mod cleanup;
pub mod dpkgdb;
