//! Packs a root tree into one layer blob: `image_pack ROOT BLOBS_DIR [gzip|zstd|none] [THREADS]`.
//! Prints the blob digest, `diff_id` and sizes. Used by `bench/pack.sh`.

use std::path::PathBuf;

use imgbuild::image::{Compression, LayerOptions, write_layer};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: image_pack ROOT BLOBS_DIR [gzip|zstd|none] [THREADS]";
    let root = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let blobs = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let compression = match args.next() {
        Some(c) => {
            Compression::parse(&c).ok_or_else(|| anyhow::anyhow!("unknown compression {c}"))?
        }
        None => Compression::default(),
    };
    let threads = args.next().map(|t| t.parse()).transpose()?.unwrap_or(0);
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let opts = LayerOptions {
        source_date_epoch: epoch,
        compression,
        threads,
        ..LayerOptions::default()
    };
    let l = write_layer(&root, &blobs, &opts)?;
    println!("{} {} {} {}", l.digest, l.diff_id, l.size, l.tar_size);
    Ok(())
}
