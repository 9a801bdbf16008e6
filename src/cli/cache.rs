//! `imgbuild cache ls|prune`: the package-stage snapshots kept in the package cache directory.

use super::report;
use clap::{Args, Subcommand};
use imgbuild::rootfs::snapshot_cache::{PrunePolicy, SnapshotCache, SnapshotInfo};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The cache's subcommands.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List the package-stage snapshots, most recently used first.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove package-stage snapshots (every one unless told which) and what killed builds
    /// left in the snapshot directory.
    Prune(PruneArgs),
}

/// Which cache directory.
#[derive(Args, Debug)]
pub struct CacheDirArg {
    /// The cache directory (as `build --cache-dir`).
    #[arg(long, value_name = "DIR", default_value = imgbuild::apt::cache::DEFAULT_CACHE_DIR, env = "IMGBUILD_CACHE_DIR")]
    pub cache_dir: PathBuf,
}

/// `cache ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub dir: CacheDirArg,
    /// `table` (default) or `json`.
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print the full keys.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `cache prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub dir: CacheDirArg,
    /// Remove the snapshots not used for longer than this (`12h`, `7days`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,
    /// Remove the least recently used snapshots until the rest take at most this much
    /// (bytes, or with k, m, g, t).
    #[arg(long, value_name = "SIZE", value_parser = super::run::parse_memory)]
    pub max_size: Option<u64>,
}

/// Run a `cache` subcommand.
pub fn run(cmd: CacheCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CacheCommand::Ls(args) => {
            let cache = SnapshotCache::new(&args.dir.cache_dir);
            let list = cache.list()?;
            if args.format == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", table(&list, report::now(), args.no_trunc));
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Prune(args) => {
            let cache = SnapshotCache::new(&args.dir.cache_dir);
            let policy = PrunePolicy {
                all: args.older_than.is_none() && args.max_size.is_none(),
                unused_for: args.older_than,
                max_bytes: args.max_size,
            };
            let pruned = cache.prune(&policy, None)?;
            for info in &pruned.removed {
                println!("{}", info.key);
            }
            let freed: u64 = pruned.removed.iter().map(|i| i.bytes).sum();
            eprintln!(
                "removed {} snapshot(s), {} freed{}",
                pruned.removed.len(),
                report::human_size(freed),
                if pruned.busy.is_empty() {
                    String::new()
                } else {
                    format!("; {} in use by a running build kept", pruned.busy.len())
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `cache ls` table, aligned as podman's tables are.
fn table(list: &[SnapshotInfo], now: u64, full: bool) -> String {
    let mut text = String::from("KEY\tIMAGE\tPACKAGES\tSIZE\tCREATED\tLAST USED\n");
    for i in list {
        let key: String = if full {
            i.key.clone()
        } else {
            i.key.chars().take(12).collect()
        };
        text.push_str(&format!(
            "{key}\t{}\t{}\t{}\t{}\t{}\n",
            i.label,
            i.packages,
            report::human_size(i.bytes),
            report::ago(i.created, now),
            report::ago(i.last_used, now),
        ));
    }
    report::tabwrite(&text, 12, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_snapshot_with_short_keys() {
        let info = SnapshotInfo {
            key: "a".repeat(64),
            label: "debian-minimal 13.0.0 amd64".into(),
            packages: 78,
            entries: 5000,
            bytes: 128 << 20,
            created: 1000,
            last_used: 4600,
        };
        let t = table(&[info], 8200, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("KEY "), "{t}");
        assert!(
            lines[1].starts_with(&format!("{}  ", "a".repeat(12))),
            "{t}"
        );
        assert!(lines[1].contains("debian-minimal 13.0.0 amd64"), "{t}");
        // Sizes and ages as podman's tables show them (decimal units).
        assert!(lines[1].contains("  134 MB  "), "{t}");
        assert!(
            lines[1].contains("2 hours ago") && lines[1].ends_with("About an hour ago"),
            "{t}"
        );
    }
}
