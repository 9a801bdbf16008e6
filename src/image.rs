//! Image writing: deterministic tar layers, OCI config/manifest/index, OCI layout, oci-archive,
//! docker-archive and rootfs tarballs. Runs nothing.
