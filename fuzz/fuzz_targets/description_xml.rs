//! Any bytes through the XML reader, include-free loading and validation: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/config.xml");
    if let Ok((tree, markup)) = imgbuild::description::parse_bytes(data, path) {
        let _ = imgbuild::description::xml::write(&tree);
        let _ = imgbuild::description::Description::from_tree(tree, markup, path);
    }
});
