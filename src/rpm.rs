//! The package stage for the RPM world: rpm-md repositories (`repodata/repomd.xml` and the
//! metadata it lists), RPM versions and dependencies (rich dependencies included), the solver,
//! and `.rpm` reading. Like [`crate::apt`], it never touches a root tree except through
//! [`crate::confine`]; downloads go through the same content-addressed cache and fetcher.

pub mod deps;
pub mod header;
pub mod package;
pub mod payload;
pub mod primary;
pub mod repo;
pub mod repomd;
pub mod solver;
pub mod version;
