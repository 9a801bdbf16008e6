//! `version`, `completion` and the hidden `generate-man`: what the binary says about itself.

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Image types imgbuild writes (`<type image=…>`), as `imgbuild::build::ImageType` accepts.
const IMAGE_TYPES: [&str; 3] = ["docker", "oci", "tbz"];
/// `--compress` values (archive files).
const ARCHIVE_COMPRESSIONS: [&str; 4] = ["none", "gzip", "zstd", "xz"];
/// `--layer-compression` values.
const LAYER_COMPRESSIONS: [&str; 2] = ["gzip", "zstd"];
/// Storage drivers and the kernel filesystem each needs (none for vfs). devicemapper is
/// refused by the store (no thin pools yet), so it is not offered.
const DRIVERS: [(&str, Option<&str>); 3] = [
    ("vfs", None),
    ("overlay", Some("overlay")),
    ("btrfs", Some("btrfs")),
];

/// Whether the running kernel has filesystem `fs`: registered (`/proc/filesystems`) or
/// loadable as a module of this kernel.
fn kernel_has(fs: &str) -> bool {
    let registered = std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next_back() == Some(fs))
    });
    registered || Path::new("/sys/module").join(fs).exists() || module_file_exists(fs)
}

fn module_file_exists(fs: &str) -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let dir = Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/fs")
        .join(fs);
    dir.is_dir()
}

/// The lines `version` prints.
fn version_text(usable: &dyn Fn(&str) -> bool) -> String {
    let drivers: Vec<&str> = DRIVERS.iter().map(|(d, _)| *d).collect();
    let here: Vec<&str> = DRIVERS
        .iter()
        .filter(|(_, fs)| fs.is_none_or(usable))
        .map(|(d, _)| *d)
        .collect();
    format!(
        "imgbuild {}\n\
         image types:          {}\n\
         archive compression:  {} (--compress)\n\
         layer compression:    {} (--layer-compression)\n\
         storage drivers:      {} (this kernel: {})\n\
         package managers:     apt (Debian packages from apt-deb repositories)\n",
        env!("CARGO_PKG_VERSION"),
        IMAGE_TYPES.join(", "),
        ARCHIVE_COMPRESSIONS.join(", "),
        LAYER_COMPRESSIONS.join(", "),
        drivers.join(", "),
        here.join(", "),
    )
}

/// `imgbuild version`.
pub fn version() -> ExitCode {
    print!("{}", version_text(&kernel_has));
    ExitCode::SUCCESS
}

/// Shells `completion` writes scripts for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// bash (source it, or install as `/usr/share/bash-completion/completions/imgbuild`).
    Bash,
    /// zsh (install as `_imgbuild` in a directory of `$fpath`).
    Zsh,
    /// fish (install as `~/.config/fish/completions/imgbuild.fish`).
    Fish,
}

/// Options of `completion`.
#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// `imgbuild completion SHELL`: the script on stdout.
pub fn completion(args: &CompletionArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = super::Cli::command();
    // Into a buffer first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "imgbuild", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Options of `generate-man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    dir: PathBuf,
}

/// `imgbuild generate-man DIR`: `imgbuild.1` and `imgbuild-COMMAND.1` for each visible
/// subcommand.
pub fn generate_man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let cmd = super::Cli::command();
    let write = |name: &str, cmd: clap::Command| -> anyhow::Result<()> {
        let path = args.dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .with_context(|| format!("rendering {}", path.display()))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("imgbuild-{}", sub.get_name());
        // The page's title is the full command name, as `man imgbuild-build` expects; the
        // synopsis shows the command as typed.
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("imgbuild {}", sub.get_name()));
        write(&name, page)?;
    }
    write("imgbuild", cmd)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_only_what_the_library_accepts() {
        for c in ARCHIVE_COMPRESSIONS.iter().chain(&LAYER_COMPRESSIONS) {
            assert!(imgbuild::image::Compression::parse(c).is_some(), "{c}");
        }
        for (d, _) in DRIVERS {
            assert!(d.parse::<imgbuild::storage::DriverKind>().is_ok(), "{d}");
        }
        let text = version_text(&|fs| fs == "overlay");
        assert!(text.starts_with(&format!("imgbuild {}\n", env!("CARGO_PKG_VERSION"))));
        assert!(
            text.contains("image types:          docker, oci, tbz\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "storage drivers:      vfs, overlay, btrfs (this kernel: vfs, overlay)\n"
            ),
            "{text}"
        );
        assert!(text.contains("package managers:     apt"), "{text}");
    }
}
