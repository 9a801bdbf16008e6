//! The package stage's repository side: Debian versions, control files, repository indexes,
//! signature checks, the solver, the download cache and `.deb` reading. Never touches a root tree
//! except through [`crate::confine`].

pub mod cache;
pub mod control;
pub mod deb;
pub mod fetch;
pub mod hostsources;
pub mod index;
pub mod keyring;
pub mod lock;
pub mod packed;
pub mod release;
pub mod repo;
pub mod solver;
pub mod version;
