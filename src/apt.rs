//! The package stage's repository side: Debian versions, control files, repository indexes,
//! signature checks, the solver, the download cache and `.deb` reading. Never touches a root tree
//! except through [`crate::confine`].

pub mod control;
pub mod index;
pub mod solver;
pub mod version;
