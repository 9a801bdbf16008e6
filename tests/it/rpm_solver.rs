//! The RPM solver against zypper and dnf: a few tiny packages built with rpmbuild into two
//! rpm-md repositories (`createrepo_c`), each request resolved by `rpm::solver` and by
//! `zypper install --dry-run` and `dnf install --assumeno` into empty roots. The chosen sets
//! must be equal. The same descriptions produce the spec files and the solver's packages, so
//! the comparison is of the solvers, not of metadata parsing.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use imgbuild::rpm::deps::parse_requirement;
use imgbuild::rpm::package::{Checksum, Dep, Package, Requirement};
use imgbuild::rpm::solver::{Request, Universe};
use imgbuild::rpm::version::Evr;

/// One noarch package: name, version, repository (0 or 1) and its dependencies by tag.
struct Spec {
    name: &'static str,
    version: &'static str,
    repo: usize,
    deps: &'static [(&'static str, &'static str)],
}

const fn spec(
    name: &'static str,
    version: &'static str,
    deps: &'static [(&'static str, &'static str)],
) -> Spec {
    Spec {
        name,
        version,
        repo: 0,
        deps,
    }
}

/// The packages: providers chosen by provided version, by obsoletes and by `with`; an
/// unversioned provide; a conditional requirement; weak dependencies; repository priority; a
/// requested name meaning that package, a dependency meaning any provider (in name order); a
/// recommended package meeting a conditional requirement; a rich conflict.
const SPECS: &[Spec] = &[
    spec("java-11", "11", &[("Provides", "java = 1:11")]),
    spec("java-17", "17", &[("Provides", "java = 1:17")]),
    spec(
        "app",
        "1",
        &[
            ("Requires", "java"),
            ("Requires", "(b if c)"),
            ("Recommends", "r1"),
        ],
    ),
    spec("b", "1", &[]),
    spec("aaab", "1", &[("Provides", "b")]),
    spec("c", "1", &[]),
    spec("r1", "1", &[("Recommends", "r2")]),
    spec("r2", "1", &[]),
    spec("rsupp", "1", &[("Supplements", "app")]),
    spec("pya", "1", &[("Provides", "py")]),
    spec("pyb", "1", &[("Provides", "py"), ("Provides", "feat")]),
    spec("w", "1", &[("Requires", "(py with feat)")]),
    spec("aaamta", "1", &[("Provides", "mta")]),
    spec(
        "zzzmta",
        "1",
        &[("Provides", "mta"), ("Obsoletes", "aaamta")],
    ),
    spec("mailer", "1", &[("Requires", "mta")]),
    spec("libvold", "1", &[("Provides", "libv = 1")]),
    spec("libvany", "1", &[("Provides", "libv")]),
    spec("v", "1", &[("Requires", "libv >= 2")]),
    spec("y", "1", &[("Requires", "(yplug if x)")]),
    spec("yplug", "1", &[]),
    spec("x", "1", &[]),
    spec("pattern", "1", &[("Recommends", "x")]),
    spec("rc", "1", &[("Conflicts", "(b and c)")]),
    spec("rcuser", "1", &[("Requires", "(rc or b)")]),
    spec("dual", "1", &[]),
    Spec {
        name: "dual",
        version: "0.5",
        repo: 1,
        deps: &[],
    },
];

/// zypper priorities of the two repositories (dnf reads them the same way: lower wins).
const PRIORITIES: [i32; 2] = [99, 50];

fn spec_text(s: &Spec) -> String {
    let mut t = format!(
        "Name: {}\nVersion: {}\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n",
        s.name, s.version
    );
    for (tag, value) in s.deps {
        writeln!(t, "{tag}: {value}").unwrap();
    }
    t.push_str("%description\nt\n%files\n");
    t
}

fn package(s: &Spec) -> Package {
    let simple = |v: &str| match parse_requirement(v).unwrap() {
        Requirement::Simple(d) => d,
        Requirement::Rich(_) => panic!("{v}"),
    };
    let evr = Evr::parse(&format!("{}-1", s.version));
    let mut p = Package {
        name: s.name.into(),
        arch: "noarch".into(),
        evr: evr.clone(),
        checksum: Checksum {
            kind: "sha256".into(),
            hex: String::new(),
        },
        location: String::new(),
        location_base: None,
        size: 0,
        installed_size: 0,
        summary: "t".into(),
        license: "MIT".into(),
        vendor: String::new(),
        url: None,
        sourcerpm: String::new(),
        buildtime: 0,
        provides: vec![Dep {
            name: s.name.into(),
            version: Some((imgbuild::rpm::package::Cmp::Eq, evr)),
            pre: false,
        }],
        requires: Vec::new(),
        conflicts: Vec::new(),
        obsoletes: Vec::new(),
        recommends: Vec::new(),
        suggests: Vec::new(),
        supplements: Vec::new(),
        enhances: Vec::new(),
        files: Vec::new(),
        repo: s.repo,
    };
    for &(tag, value) in s.deps {
        match tag {
            "Provides" => p.provides.push(simple(value)),
            "Obsoletes" => p.obsoletes.push(simple(value)),
            "Requires" => p.requires.push(parse_requirement(value).unwrap()),
            "Recommends" => p.recommends.push(parse_requirement(value).unwrap()),
            "Supplements" => p.supplements.push(parse_requirement(value).unwrap()),
            // primary.xml carries a rich conflict as an entry named by the expression.
            "Conflicts" => p.conflicts.push(Dep {
                name: value.into(),
                version: None,
                pre: false,
            }),
            other => panic!("unknown tag {other}"),
        }
    }
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Builds the two repositories under `dir` (`repo0`, `repo1`).
fn build_repos(dir: &Path) {
    let top = dir.join("top");
    for (i, s) in SPECS.iter().enumerate() {
        let spec = dir.join(format!("{i}.spec"));
        std::fs::write(&spec, spec_text(s)).unwrap();
        let out = dir.join(format!("repo{}", s.repo));
        let status = Command::new("rpmbuild")
            .arg("--quiet")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("--define")
            .arg(format!("_rpmdir {}", out.display()))
            .arg("--dbpath")
            .arg(dir.join("rpmdb"))
            .arg("-bb")
            .arg(&spec)
            .output()
            .unwrap();
        assert!(status.status.success(), "rpmbuild {}: {status:?}", s.name);
    }
    for r in 0..2 {
        let repo = dir.join(format!("repo{r}"));
        let out = Command::new("createrepo_c")
            .arg("-q")
            .arg(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "createrepo_c: {out:?}");
    }
}

/// `name-version-release` of each package zypper would install for `want`.
fn zypper(dir: &Path, case: usize, want: &[&str], weak: bool) -> BTreeSet<String> {
    let root = dir.join(format!("zroot{case}"));
    std::fs::create_dir_all(&root).unwrap();
    let z = || {
        let mut c = Command::new("zypper");
        c.arg("--root")
            .arg(&root)
            .arg("--non-interactive")
            .arg("--no-gpg-checks");
        c
    };
    for (r, prio) in PRIORITIES.iter().enumerate() {
        let url = format!("dir://{}", dir.join(format!("repo{r}")).display());
        run(z()
            .args(["ar", "-G", "-p", &prio.to_string(), &url])
            .arg(format!("r{r}")));
    }
    run(z().args(["--quiet", "refresh"]));
    let mut c = z();
    c.args(["-x", "install", "--dry-run"]);
    if !weak {
        c.arg("--no-recommends");
    }
    let out = run(c.args(want));
    let mut got = BTreeSet::new();
    for line in out.lines().filter(|l| l.starts_with("<solvable ")) {
        let attr = |k: &str| {
            let start = line.find(&format!(" {k}=\""))? + k.len() + 3;
            let end = line[start..].find('"')? + start;
            Some(line[start..end].to_string())
        };
        if let (Some(n), Some(e)) = (attr("name"), attr("edition")) {
            got.insert(format!("{n}-{e}"));
        }
    }
    assert!(!got.is_empty(), "zypper chose nothing for {want:?}:\n{out}");
    got
}

/// `name-version-release` of each package dnf would install for `want`.
fn dnf(dir: &Path, case: usize, want: &[&str], weak: bool) -> BTreeSet<String> {
    let root = dir.join(format!("droot{case}"));
    std::fs::create_dir_all(&root).unwrap();
    let mut c = Command::new("dnf");
    c.arg(format!("--installroot={}", root.display()))
        .arg("--releasever=1")
        .arg("--setopt=reposdir=/dev/null")
        .arg(format!(
            "--setopt=cachedir={}",
            dir.join("dnfcache").display()
        ))
        .arg(format!(
            "--setopt=install_weak_deps={}",
            if weak { "True" } else { "False" }
        ));
    for (r, prio) in PRIORITIES.iter().enumerate() {
        c.arg(format!(
            "--repofrompath=r{r},{}",
            dir.join(format!("repo{r}")).display()
        ))
        .arg(format!("--setopt=r{r}.gpgcheck=0"))
        .arg(format!("--setopt=r{r}.priority={prio}"));
    }
    let out = run(c.args(["--assumeno", "install"]).args(want));
    // The transaction table: " name  arch  version  repo  size" under "Installing…:" heads.
    let mut got = BTreeSet::new();
    let mut in_table = false;
    for line in out.lines() {
        if line.starts_with("Installing") {
            in_table = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_table = false;
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if in_table && cols.len() >= 3 {
            got.insert(format!("{}-{}", cols[0], cols[2]));
        }
    }
    assert!(!got.is_empty(), "dnf chose nothing for {want:?}:\n{out}");
    got
}

#[test]
#[cfg_attr(
    not(imgbuild_has_rpm_tools),
    ignore = "needs rpmbuild, createrepo_c, zypper, dnf and busybox-static"
)]
fn solver_agrees_with_zypper_and_dnf() {
    let dir = tempfile::tempdir().unwrap();
    build_repos(dir.path());
    let u = Universe::new(SPECS.iter().map(package).collect(), &PRIORITIES, "x86_64");
    let cases: &[(&[&str], bool)] = &[
        (&["app"], true),
        (&["app"], false),
        (&["app", "c"], false),
        (&["b"], false),
        (&["w"], false),
        (&["mailer"], false),
        (&["v"], false),
        (&["dual"], false),
        (&["y", "pattern"], true),
        (&["y", "pattern"], false),
        (&["rc", "b"], false),
        (&["rcuser", "b", "c"], false),
    ];
    for (i, &(want, weak)) in cases.iter().enumerate() {
        let mut req = Request::install(want).unwrap();
        req.weak = weak;
        let ours: BTreeSet<String> = u
            .solve(&req)
            .unwrap()
            .packages
            .iter()
            .map(|&id| {
                let p = u.package(id);
                format!("{}-{}", p.name, p.evr)
            })
            .collect();
        let z = zypper(dir.path(), i, want, weak);
        assert_eq!(ours, z, "zypper differs for {want:?} (weak {weak})");
        let d = dnf(dir.path(), i, want, weak);
        assert_eq!(ours, d, "dnf differs for {want:?} (weak {weak})");
    }
}
