//! The integration tests, in one binary: one module per area, the helpers they share in
//! [`support`].

// Pedantic lints that fight test code, allowed here only: pseudo-random generators truncate on
// purpose, helpers and consts sit next to their one use, table-driven checks use short names
// and repeat arms for readability, fixtures are built by value and cloned into place.
#![allow(
    clippy::cast_possible_truncation,
    clippy::items_after_statements,
    clippy::many_single_char_names,
    clippy::format_collect,
    clippy::needless_pass_by_value,
    clippy::match_same_arms,
    clippy::assigning_clones,
    clippy::unreadable_literal,
    clippy::used_underscore_binding
)]

mod support;

mod apt_cache;
mod apt_freshness;
mod apt_repo;
mod apt_solver;
mod apt_version;
mod build_cache;
mod build_derived;
mod build_image;
mod build_interrupt;
mod build_multiarch;
mod build_repro;
mod build_reuse;
mod build_sandbox;
mod build_snapshot;
mod cli_errors;
mod cli_kiwi;
mod cli_logging;
mod cli_names;
mod cli_pipes;
mod cli_podman;
mod cli_snapshots;
mod confine_unpack;
mod deb_read;
mod description_cli;
mod description_corpus;
mod description_errors;
mod description_hostile;
mod description_include;
mod description_selection;
mod description_shipped;
mod description_wellformed;
mod image_layers;
mod image_peers;
mod manifest;
mod prepare_parity;
mod prepare_robust;
mod registry_auth;
mod registry_derived;
mod registry_pull;
mod registry_push;
mod registry_roundtrip;
mod rpm_build;
mod rpm_descriptions;
mod rpm_file;
mod rpm_fixture;
mod rpm_repo;
mod rpm_solver;
mod runtime_lifecycle;
mod runtime_net;
mod runtime_run;
mod runtime_smoke;
mod sandbox_crun;
mod sandbox_debian;
mod sandbox_run;
mod sbom_document;
mod storage_drivers;
mod storage_store;
mod store_load;
mod structure_test;
