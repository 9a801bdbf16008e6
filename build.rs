//! Marks a build made as root (`cfg(imgbuild_tests_as_root)`): tests that need root are then
//! compiled as ordinary tests, and elsewhere as `#[ignore = "needs root"]`, so a non-root
//! `cargo test` reports them as ignored instead of passing them without running. Rebuilt when
//! the user changes (sudo and su change `USER` and `HOME`).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(imgbuild_tests_as_root)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=USER");
    println!("cargo:rerun-if-env-changed=HOME");
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        println!("cargo:rustc-cfg=imgbuild_tests_as_root");
    }
}
