//! `logs`, `stop`, `kill`, `start`, `restart`, `wait`, `exec`, `container prune|inspect|ls`
//! and the hidden `container-monitor`: the lifecycle of containers after `run`.

use super::run::{RunCommand, parse_signal_arg};
use super::store::open_store;
use anyhow::Context;
use clap::{Args, Subcommand};
use imgbuild::runtime::{
    ContainerRecord, ExecOptions, LogOptions, MonitorCommand, Runtime, RuntimeError, State,
    UserSpec, parse_env,
};
use imgbuild::sandbox::SandboxError;
use imgbuild::storage::Store;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;

/// Container names or ids.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Names, ids or id prefixes.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Options of `stop` and `restart`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's
    /// --stop-timeout, 10).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    time: Option<u64>,
    /// Act on all running containers.
    #[arg(short = 'a', long, conflicts_with = "containers")]
    all: bool,
    /// Names, ids or id prefixes.
    #[arg(required_unless_present = "all")]
    containers: Vec<String>,
}

/// Options of `kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short = 's', long, value_name = "SIGNAL", default_value = "KILL", value_parser = parse_signal_arg)]
    signal: i32,
    /// Names, ids or id prefixes.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Options of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Print only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Prefix each line with the time it was written.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Name, id or id prefix.
    container: String,
}

/// Options of `exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (`KEY=VALUE`; `KEY` alone passes imgbuild's own).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// User and group (names from the container's files, or ids).
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// Name, id or id prefix.
    container: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// `container` subcommands.
#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Remove all containers that are not running.
    Prune {
        /// Do not ask (imgbuild never asks; accepted for podman's command lines).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Show containers' state and configuration as JSON.
    Inspect {
        /// Names, ids or id prefixes.
        #[arg(required = true)]
        containers: Vec<String>,
    },
}

/// The runtime over `store`, with imgbuild itself as the monitor of detached containers.
pub fn runtime(store: Store) -> anyhow::Result<Runtime> {
    let exe = std::env::current_exe().context("finding the imgbuild executable")?;
    let root = store.root().to_path_buf();
    let driver = store.driver_kind().name();
    Ok(
        Runtime::new(store)?.with_monitor(MonitorCommand::new(move |id| {
            let mut c = std::process::Command::new(&exe);
            c.arg("--storage-root")
                .arg(&root)
                .arg("--storage-driver")
                .arg(driver)
                .arg("container-monitor")
                .arg(id);
            c
        })),
    )
}

fn each(names: Vec<String>, mut f: impl FnMut(&str) -> Result<String, RuntimeError>) -> ExitCode {
    let mut failed = false;
    for n in names {
        match f(&n) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("imgbuild: error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(125)
    } else {
        ExitCode::SUCCESS
    }
}

fn running_ids(rt: &Runtime) -> anyhow::Result<Vec<String>> {
    Ok(rt
        .containers(false)?
        .into_iter()
        .map(|c: ContainerRecord| c.id)
        .collect())
}

/// `container inspect`: podman's field names for what imgbuild records.
pub(super) fn inspect_json(rt: &Runtime, c: &ContainerRecord) -> serde_json::Value {
    let time = |t: Option<u64>| {
        t.map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |s| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                )
                .to_string()
            },
        )
    };
    let dir = rt.container_dir(&c.id);
    let options = rt
        .options(&c.id)
        .ok()
        .and_then(|o| serde_json::to_value(o).ok())
        .unwrap_or(serde_json::Value::Null);
    let mounts: Vec<serde_json::Value> = options["volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|m| {
                    serde_json::json!({
                        "Type": "bind",
                        "Source": m["host"],
                        "Destination": m["container"],
                        "RW": !m["read_only"].as_bool().unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "Id": c.id,
        "Name": c.name,
        "Created": time(Some(c.created)),
        "Path": c.command.first(),
        "Args": c.command.get(1..).unwrap_or_default(),
        "Image": c.image.trim_start_matches("sha256:"),
        "ImageName": c.image_ref,
        "State": {
            "Status": c.state.to_string(),
            "Running": c.state == State::Running,
            "Dead": c.state == State::Dead,
            "Pid": c.pid.unwrap_or(0),
            "ConmonPid": c.monitor_pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "StartedAt": time(c.started),
            "FinishedAt": time(c.finished),
        },
        "Driver": c.driver.name(),
        "Rootfs": c.rootfs,
        "LogPath": dir.join(imgbuild::runtime::logs::LOG_FILE),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "ResolvConfPath": dir.join("resolv.conf"),
        "Mounts": mounts,
        "Config": {
            "Hostname": c.hostname,
            "Env": options["env"].as_array().map(|e| e.iter().filter_map(|kv| {
                Some(format!("{}={}", kv[0].as_str()?, kv[1].as_str()?))
            }).collect::<Vec<_>>()),
            "Cmd": c.command,
            "Labels": options["labels"].as_array().map(|l| l.iter().filter_map(|kv| {
                Some((kv[0].as_str()?.to_string(), kv[1].clone()))
            }).collect::<serde_json::Map<_, _>>()),
            "StopSignal": c.stop_signal,
            "StopTimeout": c.stop_timeout,
        },
        "HostConfig": {
            "AutoRemove": c.auto_remove,
            "NetworkMode": options["network"],
            "Memory": options["limits"]["memory"],
            "PidsLimit": options["limits"]["pids"],
            "ReadonlyRootfs": options["read_only"],
            "Init": options["init"],
            "CapAdd": options["cap_add"],
            "CapDrop": options["cap_drop"],
            "Tmpfs": options["tmpfs"],
            "ShmSize": options["shm_size"],
        },
        "NetworkSettings": {
            "Ports": c.ports.iter().fold(serde_json::Map::new(), |mut m, p| {
                let key = format!("{}/{}", p.container_port, p.protocol);
                let binding = serde_json::json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()});
                match m.get_mut(&key).and_then(serde_json::Value::as_array_mut) {
                    Some(list) => list.push(binding),
                    None => {
                        m.insert(key, serde_json::json!([binding]));
                    }
                }
                m
            }),
        },
    })
}

/// Run a lifecycle command against the store the global options name.
pub fn run(
    command: RunCommand,
    root: Option<&Path>,
    driver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let rt = runtime(open_store(root, driver)?)?;
    match command {
        RunCommand::ContainerMonitor { id } => {
            // The report pipe the starter left as fd 3 (see `Runtime::monitor`).
            // SAFETY: the starter dup2ed its pipe there; nothing else in this process owns it.
            let report = unsafe { OwnedFd::from_raw_fd(imgbuild::runtime::REPORT_FD) };
            match rt.monitor(&id, report) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("imgbuild: monitor of {id}: {e}");
                    Ok(ExitCode::from(125))
                }
            }
        }
        RunCommand::Stop(args) => {
            let names = if args.all {
                running_ids(&rt)?
            } else {
                args.containers
            };
            Ok(each(names, |n| {
                rt.stop(n, args.time)?;
                Ok(n.to_string())
            }))
        }
        RunCommand::Restart(args) => {
            let names = if args.all {
                running_ids(&rt)?
            } else {
                args.containers
            };
            Ok(each(names, |n| {
                let rec = rt.stop(n, args.time)?;
                rt.start(&rec.id)?;
                Ok(n.to_string())
            }))
        }
        RunCommand::Kill(args) => Ok(each(args.containers, |n| {
            rt.kill(n, args.signal)?;
            Ok(n.to_string())
        })),
        RunCommand::Start(args) => Ok(each(args.containers, |n| {
            rt.start(n)?;
            Ok(n.to_string())
        })),
        RunCommand::Wait(args) => Ok(each(args.containers, |n| Ok(rt.wait(n)?.to_string()))),
        RunCommand::Logs(args) => {
            let lo = LogOptions {
                follow: args.follow,
                tail: args.tail,
                timestamps: args.timestamps,
            };
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            rt.logs(&args.container, lo, &mut out, &mut err)?;
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Exec(args) => {
            let lookup = |k: &str| std::env::var(k).ok();
            let mut env = Vec::new();
            for e in &args.env {
                env.extend(parse_env(e, &lookup)?);
            }
            let eo = ExecOptions {
                command: args.command,
                env,
                user: args.user.as_deref().map(UserSpec::parse).transpose()?,
                workdir: args.workdir,
                interactive: args.interactive,
                tty: args.tty,
            };
            match rt.exec(&args.container, &eo) {
                Ok(code) => Ok(ExitCode::from(
                    u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX),
                )),
                Err(e) => {
                    eprintln!("imgbuild: error: {e}");
                    let code = match &e {
                        RuntimeError::Sandbox {
                            source: SandboxError::Exec { error, .. },
                            ..
                        } if error.kind() == std::io::ErrorKind::NotFound => 127,
                        RuntimeError::Sandbox {
                            source: SandboxError::Exec { .. },
                            ..
                        } => 126,
                        _ => 125,
                    };
                    Ok(ExitCode::from(code))
                }
            }
        }
        RunCommand::Container(ContainerCommand::Prune { force: _ }) => {
            for c in rt.prune()? {
                println!("{}", c.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Container(ContainerCommand::Inspect { containers }) => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in containers {
                match rt.container(&n) {
                    Ok(c) => out.push(inspect_json(&rt, &c)),
                    Err(e) => {
                        eprintln!("imgbuild: error: {e}");
                        failed = true;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(if failed {
                ExitCode::from(125)
            } else {
                ExitCode::SUCCESS
            })
        }
        RunCommand::Run(_) | RunCommand::Ps { .. } | RunCommand::Rm { .. } => {
            unreachable!("handled by cli::run")
        }
    }
}
