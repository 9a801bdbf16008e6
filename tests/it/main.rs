//! The integration tests, in one binary: one module per area, the helpers they share in
//! [`support`].

mod support;

mod apt_cache;
mod apt_freshness;
mod apt_repo;
mod apt_solver;
mod apt_version;
mod build_derived;
mod build_image;
mod build_interrupt;
mod build_repro;
mod build_reuse;
mod build_sandbox;
mod cli_logging;
mod cli_names;
mod confine_unpack;
mod deb_read;
mod description_cli;
mod description_corpus;
mod description_hostile;
mod description_include;
mod description_selection;
mod description_shipped;
mod image_layers;
mod image_peers;
mod prepare_parity;
mod prepare_robust;
mod runtime_run;
mod sandbox_crun;
mod sandbox_debian;
mod sandbox_run;
mod sbom_document;
mod storage_drivers;
mod storage_store;
mod store_load;
