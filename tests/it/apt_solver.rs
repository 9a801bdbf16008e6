//! The solver against apt itself: the host's own bookworm indexes, resolved by `apt::solver` and
//! by `apt-get install --simulate --no-install-recommends` with an isolated configuration and a
//! status file holding exactly the minbase set. The installed sets must be equal.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use imgbuild::apt::control::{self, Paragraph};
use imgbuild::apt::index::parse_packages;
use imgbuild::apt::solver::{PackageId, Request, SolveError, Universe};

/// One `Packages` index of the host's apt configuration.
struct Target {
    file: PathBuf,
    source_line: String,
}

/// The host's downloaded amd64 `Packages` indexes, as apt itself lists them.
fn host_targets() -> Vec<Target> {
    let out = match Command::new("apt-get")
        .args([
            "indextargets",
            "--format",
            "$(FILENAME)\t$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(ARCHITECTURE)",
            "Identifier: Packages",
        ])
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => return Vec::new(),
    };
    let mut targets: Vec<Target> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 5 || f[4] != "amd64" || !Path::new(f[0]).exists() {
                return None;
            }
            Some(Target {
                file: PathBuf::from(f[0]),
                source_line: format!("deb [arch=amd64] {} {} {}", f[1], f[2], f[3]),
            })
        })
        .collect();
    targets.sort_by(|a, b| a.file.cmp(&b.file));
    targets
}

/// Decompress an index the way apt does (lists may be stored lz4/gz/xz/zst compressed).
fn read_index(file: &Path) -> String {
    let out = Command::new("/usr/lib/apt/apt-helper")
        .arg("cat-file")
        .arg(file)
        .output()
        .expect("run apt-helper cat-file");
    assert!(
        out.status.success(),
        "apt-helper cat-file {}",
        file.display()
    );
    String::from_utf8(out.stdout).expect("index is UTF-8")
}

/// An isolated apt: our sources list, the host's downloaded lists, our status file, no host
/// configuration fragments or preferences.
struct IsolatedApt {
    dir: tempfile::TempDir,
}

impl IsolatedApt {
    fn new(targets: &[Target]) -> IsolatedApt {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["empty", "cache/archives/partial", "state"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let sources: String = targets
            .iter()
            .map(|t| t.source_line.clone() + "\n")
            .collect();
        std::fs::write(d.join("sources.list"), sources).expect("write sources.list");
        std::fs::write(d.join("status"), "").expect("write status");
        let lists = targets[0].file.parent().expect("lists dir");
        let conf = format!(
            "Dir::Etc::Parts \"{d}/empty\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/empty\";\n\
             Dir::Etc::Preferences \"{d}/empty/none\";\n\
             Dir::Etc::PreferencesParts \"{d}/empty\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::Lists \"{lists}\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             Dir::Log \"{d}/state\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Install-Recommends \"false\";\n\
             APT::Install-Suggests \"false\";\n\
             Debug::NoLocking \"true\";\n",
            d = d.display(),
            lists = lists.display()
        );
        std::fs::write(d.join("apt.conf"), conf).expect("write apt.conf");
        IsolatedApt { dir }
    }

    fn set_status(&self, text: &str) {
        std::fs::write(self.dir.path().join("status"), text).expect("write status");
    }

    /// `(name, version)` of every package apt would install or upgrade.
    fn simulate(&self, names: &[String], recommends: bool) -> BTreeSet<(String, String)> {
        let out = Command::new("apt-get")
            .env("APT_CONFIG", self.dir.path().join("apt.conf"))
            .args(["install", "--simulate", "-q"])
            .arg(if recommends {
                "--install-recommends"
            } else {
                "--no-install-recommends"
            })
            .args(names)
            .output()
            .expect("run apt-get");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "apt-get failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("Inst "))
            .map(|l| {
                // "name [old] (version origins [arch])"
                let name = l.split_whitespace().next().unwrap_or_default();
                let version = l
                    .split_once('(')
                    .and_then(|(_, r)| r.split_whitespace().next())
                    .unwrap_or_default();
                (
                    name.split(':').next().unwrap_or_default().to_string(),
                    version.to_string(),
                )
            })
            .collect()
    }
}

/// A dpkg status file marking `ids` installed: their index paragraphs with a `Status` field, as
/// dpkg would record them (apt tells builds apart by these fields, so they must be the originals).
fn status_text(
    u: &Universe,
    ids: &[PackageId],
    raw: &HashMap<(String, String, String), Paragraph>,
) -> String {
    let mut s = String::new();
    for &id in ids {
        let p = u.package(id);
        let key = (
            p.name.clone(),
            p.version.to_string(),
            p.architecture.clone(),
        );
        let mut para = raw
            .get(&key)
            .cloned()
            .expect("paragraph of a resolved package");
        para.set("Status", "install ok installed");
        s.push_str(&para.to_string());
        s.push('\n');
    }
    s
}

fn pairs(u: &Universe, ids: impl IntoIterator<Item = PackageId>) -> BTreeSet<(String, String)> {
    ids.into_iter()
        .map(|id| {
            let p = u.package(id);
            (p.name.clone(), p.version.to_string())
        })
        .collect()
}

fn diff(ours: &BTreeSet<(String, String)>, apts: &BTreeSet<(String, String)>) -> String {
    format!(
        "only ours: {:?}\nonly apt's: {:?}",
        ours.difference(apts).collect::<Vec<_>>(),
        apts.difference(ours).collect::<Vec<_>>()
    )
}

#[test]
#[cfg_attr(
    not(imgbuild_has_bookworm_apt_lists),
    ignore = "needs the host's bookworm main amd64 apt lists (apt-get update)"
)]
fn matches_apt_on_host_indexes() {
    let targets = host_targets();
    assert!(
        targets
            .iter()
            .any(|t| t.source_line.ends_with(" bookworm main")),
        "apt-get indextargets lists no bookworm main amd64 index"
    );
    let mut packages = Vec::new();
    let mut raw = HashMap::new();
    let mut parse_time = std::time::Duration::ZERO;
    for (i, t) in targets.iter().enumerate() {
        let text = read_index(&t.file);
        let start = Instant::now();
        let ps = parse_packages(&text, i).expect("parse index");
        parse_time += start.elapsed();
        assert!(!ps.is_empty(), "{} has packages", t.file.display());
        packages.extend(ps);
        for para in control::parse(&text).expect("deb822") {
            let field = |f: &str| para.get(f).unwrap_or_default().to_string();
            let key = (field("Package"), field("Version"), field("Architecture"));
            raw.entry(key).or_insert(para);
        }
    }
    eprintln!("parsed {} stanzas in {parse_time:?}", packages.len());
    let prios = vec![500; targets.len()];
    let u = Universe::new(packages, &prios, "amd64", &[]);
    let apt = IsolatedApt::new(&targets);

    // The minbase set: Essential + Priority: required, plus apt.
    let mut names = u.bootstrap_names();
    names.push("apt".into());
    let start = Instant::now();
    let minbase = u
        .solve(&Request {
            bootstrap: true,
            install: Request::install(&["apt"]).unwrap().install,
            ..Request::default()
        })
        .expect("minbase resolves");
    eprintln!(
        "minbase: {} packages in {:?}",
        minbase.packages.len(),
        start.elapsed()
    );
    let ours = pairs(&u, minbase.packages.iter().copied());
    let apts = apt.simulate(&names, false);
    assert!(ours.len() > 50, "minbase is a real set");
    assert_eq!(
        ours,
        apts,
        "minbase differs from apt's:\n{}",
        diff(&ours, &apts)
    );

    // Dependencies before dependents (Pre-Depends strictly) over the real set.
    let order = u.install_order(&minbase.packages);
    assert_eq!(order.len(), minbase.packages.len());
    let pos = |name: &str| order.iter().position(|&id| u.package(id).name == name);
    if let (Some(libc), Some(dpkg)) = (pos("libc6"), pos("dpkg")) {
        assert!(libc < dpkg, "libc6 before dpkg");
    }

    apt.set_status(&status_text(&u, &minbase.packages, &raw));
    for (want, recommends) in [
        ("python3", false),
        ("openssh-server", false),
        ("build-essential", false),
        ("python3", true),
        ("openssh-server", true),
        ("build-essential", true),
    ] {
        let mut req = Request::install(&[want]).unwrap();
        req.installed = minbase.packages.clone();
        req.with_recommends = recommends;
        let res = u.solve(&req).unwrap_or_else(|e| panic!("{want}: {e}"));
        let before = pairs(&u, minbase.packages.iter().copied());
        let ours: BTreeSet<_> = pairs(&u, res.packages.iter().copied())
            .difference(&before)
            .cloned()
            .collect();
        let apts = apt.simulate(&[want.to_string()], recommends);
        assert!(!ours.is_empty(), "{want} adds packages");
        assert_eq!(
            ours,
            apts,
            "{want} (recommends: {recommends}) differs from apt:\n{}",
            diff(&ours, &apts)
        );
        eprintln!(
            "{want} (recommends: {recommends}): {} new packages, same as apt",
            ours.len()
        );
    }

    // Two mail transport agents exclude each other: the explanation names both.
    let mut req = Request::install(&["postfix", "exim4-daemon-heavy"]).unwrap();
    req.installed = minbase.packages.clone();
    match u.solve(&req) {
        Err(SolveError::Unsolvable {
            explanation,
            involved,
        }) => {
            eprintln!("unsolvable as expected:\n{explanation}");
            for name in ["postfix", "exim4-daemon-heavy"] {
                assert!(involved.iter().any(|n| n == name), "{name} in {involved:?}");
                assert!(explanation.contains(name), "{name} in:\n{explanation}");
            }
        }
        other => panic!("postfix with exim4 should be unsolvable, got {other:?}"),
    }
}

/// The packed index cache (`apt::packed`) is what planning reads: a universe over the packed
/// host indexes resolves exactly as one over the parsed indexes, for the minbase set and for
/// real requests on top of it, in the same install order.
#[test]
#[cfg_attr(
    not(imgbuild_has_bookworm_apt_lists),
    ignore = "needs the host's bookworm main amd64 apt lists (apt-get update)"
)]
fn packed_indexes_resolve_as_parsed_ones_on_host_indexes() {
    use imgbuild::apt::cache::Sha256Digest;
    use imgbuild::apt::packed::{PackedIndex, pack};
    let targets = host_targets();
    assert!(
        !targets.is_empty(),
        "apt-get indextargets lists no amd64 Packages index"
    );
    let mut parsed = Vec::new();
    let mut packed = Vec::new();
    let (mut parse_time, mut pack_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for (i, t) in targets.iter().enumerate() {
        let text = read_index(&t.file);
        let start = Instant::now();
        parsed.extend(parse_packages(&text, i).expect("parse index"));
        parse_time += start.elapsed();
        let key = Sha256Digest::of(text.as_bytes());
        let start = Instant::now();
        let bytes = pack(&text, &key, "host index").expect("pack index");
        pack_time += start.elapsed();
        packed.push((PackedIndex::from_bytes(bytes, &key).expect("sound"), i));
    }
    eprintln!("parsed in {parse_time:?}, packed in {pack_time:?}");
    let prios = vec![500; targets.len()];
    let a = Universe::new(parsed, &prios, "amd64", &[]);
    let start = Instant::now();
    let b = Universe::from_packed(packed, &prios, "amd64", &[]);
    eprintln!("packed universe in {:?}", start.elapsed());
    assert_eq!(a.len(), b.len());
    assert_eq!(a.bootstrap_names(), b.bootstrap_names());
    let listed = |u: &Universe, ids: &[PackageId]| -> Vec<String> {
        u.install_order(ids)
            .into_iter()
            .map(|id| {
                let p = u.package(id);
                format!("{} {} {} {:?}", p.name, p.version, p.architecture, p.sha256)
            })
            .collect()
    };
    let minbase = |u: &Universe| {
        u.solve(&Request {
            bootstrap: true,
            install: Request::install(&["apt"]).unwrap().install,
            ..Request::default()
        })
        .expect("minbase resolves")
    };
    let (ma, mb) = (minbase(&a), minbase(&b));
    assert!(ma.packages.len() > 50);
    assert_eq!(listed(&a, &ma.packages), listed(&b, &mb.packages));
    for (want, recommends) in [
        ("python3", false),
        ("openssh-server", true),
        ("build-essential", true),
    ] {
        let solve = |u: &Universe, installed: &[PackageId]| {
            let mut req = Request::install(&[want]).unwrap();
            req.installed = installed.to_vec();
            req.with_recommends = recommends;
            let res = u.solve(&req).unwrap_or_else(|e| panic!("{want}: {e}"));
            listed(u, &res.packages)
        };
        assert_eq!(solve(&a, &ma.packages), solve(&b, &mb.packages), "{want}");
    }
    for name in ["pyhton3", "coreutils", "awk", "mail-transport-agent"] {
        assert_eq!(a.closest(name), b.closest(name), "{name}");
        assert_eq!(a.knows(name), b.knows(name), "{name}");
        assert_eq!(
            a.candidate(name).map(|id| a.package(id).clone()),
            b.candidate(name).map(|id| b.package(id).clone()),
            "{name}"
        );
    }
    assert!(b.damage().is_none());
}
