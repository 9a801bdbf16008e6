//! Any bytes through the YAML reader, loading and validation: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/config.yaml");
    if let Ok((tree, markup)) = imgbuild::description::parse_bytes(data, path) {
        let _ = imgbuild::description::yaml::write(&tree);
        let _ = imgbuild::description::Description::from_tree(tree, markup, path);
    }
});
