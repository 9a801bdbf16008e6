//! `imgbuild info PATH`: the resolved description, as JSON, YAML or XML.

use anyhow::Context;
use clap::{Args, ValueEnum};
use imgbuild::description::{self, Selection};
use std::path::PathBuf;
use std::process::ExitCode;

/// Output formats of `info`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// The resolved image as stable JSON.
    Json,
    /// The upgraded description in KIWI's YAML form.
    Yaml,
    /// The upgraded description as KIWI XML.
    Xml,
}

/// Show a description after upgrade, include and selection.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Description file or directory.
    pub path: PathBuf,
    /// Profile to activate (repeatable); default: the profiles marked import="true".
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Build type (`<type image=…>`); default: primary, else the first.
    #[arg(long = "type")]
    pub build_type: Option<String>,
    /// Target architecture; default: the host's.
    #[arg(long)]
    pub target_arch: Option<String>,
    /// List the profiles the description defines and exit.
    #[arg(long)]
    pub list_profiles: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

/// Print the description; exit 1 with the errors if it does not load or resolve.
pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let desc = description::load(&args.path)?;
    if args.list_profiles {
        let profiles = desc.profiles();
        if profiles.is_empty() {
            // On stderr: stdout stays a list of profiles (empty) for scripts.
            eprintln!("imgbuild: {} defines no profiles", args.path.display());
        }
        for p in profiles {
            let import = if p.import { " (import)" } else { "" };
            println!("{}{import}: {}", p.name, p.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sel = Selection {
        profiles: args.profiles,
        build_type: args.build_type,
        target_arch: args.target_arch.unwrap_or_else(Selection::host_arch),
    };
    match args.format {
        Format::Json => {
            let resolved = desc.resolve(&sel)?;
            let json = serde_json::to_string_pretty(&resolved)
                .context("serialising the resolved image")?;
            println!("{json}");
        }
        Format::Yaml => {
            // resolve anyway so selection errors are reported as for json
            desc.resolve(&sel)?;
            print!("{}", desc.to_yaml());
        }
        Format::Xml => {
            desc.resolve(&sel)?;
            print!("{}", desc.to_xml());
        }
    }
    Ok(ExitCode::SUCCESS)
}
