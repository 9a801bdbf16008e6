//! The benchmark's image loader (bench/run.sh): packs a root tree as one layer with the `tar`
//! crate, streaming through a temp file so a 1 GB tree needs no 1 GB of memory, and loads it
//! into a store. Ignored in normal runs; bench/run.sh calls it with
//! `IMGBUILD_BENCH_ROOTFS=DIR IMGBUILD_BENCH_STORE=DIR IMGBUILD_BENCH_DRIVER=NAME
//! IMGBUILD_BENCH_TAG=REF cargo test --release --test runtime_bench_load -- --ignored`.
//! (Archives will load with `imgbuild load` once the archive readers are in.)

use imgbuild::storage::{ConfinedApplier, LayerBlob, Store, StoreInput, StoreOptions};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};
use std::path::Path;

fn sha256_file(f: &mut std::fs::File) -> String {
    f.rewind().unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    f.rewind().unwrap();
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn pack(dir: &Path, out: std::fs::File) -> std::fs::File {
    let mut b = tar::Builder::new(std::io::BufWriter::new(out));
    b.follow_symlinks(false);
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        b.append_path_with_name(e.path(), e.path().strip_prefix(dir).unwrap())
            .unwrap();
    }
    let mut w = b.into_inner().unwrap();
    w.flush().unwrap();
    w.into_inner().unwrap()
}

#[test]
#[ignore = "the benchmark's loader, run by bench/run.sh"]
fn load_rootfs_for_bench() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let rootfs = var("IMGBUILD_BENCH_ROOTFS");
    let store = Store::open(&StoreOptions {
        root: var("IMGBUILD_BENCH_STORE").into(),
        driver: Some(var("IMGBUILD_BENCH_DRIVER").parse().unwrap()),
    })
    .unwrap();
    let tmp = tempfile::tempfile_in(store.root()).unwrap();
    let mut layer = pack(Path::new(&rootfs), tmp);
    let digest = sha256_file(&mut layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]},
        "rootfs": {"type": "layers", "diff_ids": [digest]},
    }))
    .unwrap();
    let size = layer.metadata().unwrap().len();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": imgbuild::storage::sha256_digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest,
            "size": size,
        }],
    }))
    .unwrap();
    let input = StoreInput {
        manifest,
        config,
        layers: vec![LayerBlob {
            digest,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            data: Box::new(layer),
        }],
    };
    let rec = store
        .load(input, &[var("IMGBUILD_BENCH_TAG")], &ConfinedApplier)
        .unwrap();
    println!("loaded {} as {}", rec.id, var("IMGBUILD_BENCH_TAG"));
}
