//! Helpers shared by the integration tests.

pub mod apt_fixture;
pub mod build;
pub mod busybox;
pub mod image;
pub mod loop_device;
pub mod prepare;
pub mod runtime;
pub mod storage;
