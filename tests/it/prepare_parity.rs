//! `imgbuild prepare descriptions/debian-minimal` (trixie, the default, and `--profile bookworm`)
//! installs exactly the minbase package set of the same suite from the same mirror, and leaves a
//! consistent dpkg database: inside the root `dpkg --audit` and `dpkg -V` print nothing, every
//! package is `install ok installed` with no trigger pending, the ldconfig cache is current and
//! `apt-get check` succeeds. Needs root and the mirror of the host's apt sources; skips clearly
//! otherwise.
//!
//! The reference for bookworm is `mmdebstrap --variant=minbase` with its merged-usr hook; for
//! trixie it is `debootstrap --variant=minbase`, because the merged-usr hook of mmdebstrap
//! releases before trixie installs the bookworm-era `usr-is-merged` marker unconditionally, which
//! debootstrap leaves out for suites after bookworm (the aliasing links come from base-files).

use crate::support::build::{
    bookworm_minbase, in_root, installed_packages, package_cache, preconditions, prepare_cmd,
};
use crate::support::{heavy, mounts_under, ok, scratch, target_tmp};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// The tool whose minbase root is the reference.
#[derive(Clone, Copy)]
enum Reference {
    Mmdebstrap,
    Debootstrap,
}

/// The minbase set as `tool` installs it, from `mirror`: debootstrap's into `dir`,
/// mmdebstrap's the shared bookworm root (made once per run, the sandbox test uses it too).
fn reference_packages(
    test: &str,
    tool: Reference,
    suite: &str,
    mirror: &str,
    dir: &Path,
) -> Option<BTreeSet<String>> {
    match tool {
        Reference::Debootstrap => {
            // Its own package cache in the test target dir, so reruns are warm.
            let cache = target_tmp().join("debootstrap-cache");
            std::fs::create_dir_all(&cache).expect("create the debootstrap cache");
            ok(Command::new("debootstrap")
                .arg("--variant=minbase")
                .arg(format!("--cache-dir={}", cache.display()))
                .arg(suite)
                .arg(dir)
                .arg(mirror)
                .stdin(Stdio::null()));
            Some(installed_packages(dir))
        }
        Reference::Mmdebstrap => {
            assert_eq!(suite, "bookworm", "the shared mmdebstrap root is bookworm");
            bookworm_minbase(test).map(installed_packages)
        }
    }
}

fn check_suite(test: &str, suite: &str, profile: Option<&str>, tool: Reference) {
    let Some(mirror) = preconditions(test, suite) else {
        return;
    };
    let _h = heavy();
    let work = scratch("prepare-parity");
    let root = work.path().join("imgbuild-root");
    ok(&mut prepare_cmd(&root, profile, &package_cache(), &[]));
    let ours = installed_packages(&root);
    assert!(
        ours.iter().any(|p| p.starts_with("dpkg ")) && ours.len() > 50,
        "{suite}: implausible package set: {ours:?}"
    );

    // A consistent dpkg database, checked by the root's own tools.
    let audit = in_root(&root, &["dpkg", "--audit"]);
    assert!(
        audit.status.success() && audit.stdout.is_empty() && audit.stderr.is_empty(),
        "{suite}: dpkg --audit ({}):\n{}{}",
        audit.status,
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
    // Every package configured and no trigger left pending or awaited: the install ends with
    // dpkg's trigger processing, not with activations it never got to.
    let status = in_root(&root, &["dpkg-query", "-W", "-f=${Package} ${Status}\n"]);
    let listed = String::from_utf8_lossy(&status.stdout);
    let unsettled: Vec<&str> = listed
        .lines()
        .filter(|l| !l.ends_with(" install ok installed"))
        .collect();
    assert!(
        status.status.success() && listed.lines().count() == ours.len() && unsettled.is_empty(),
        "{suite}: packages not installed ({}): {unsettled:?}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    let pending =
        std::fs::read_to_string(root.join("var/lib/dpkg/triggers/Unincorp")).unwrap_or_default();
    assert_eq!(pending, "", "{suite}: trigger activations not incorporated");
    // The ldconfig trigger ran after the last library was configured: running it again
    // changes nothing.
    let cache = std::fs::read(root.join("etc/ld.so.cache")).expect("read ld.so.cache");
    let again = in_root(&root, &["ldconfig"]);
    assert!(again.status.success(), "{suite}: ldconfig: {again:?}");
    assert!(
        std::fs::read(root.join("etc/ld.so.cache")).expect("read ld.so.cache") == cache,
        "{suite}: /etc/ld.so.cache was stale after the install"
    );
    let check = in_root(&root, &["apt-get", "check"]);
    assert!(
        check.status.success(),
        "{suite}: apt-get check ({}):\n{}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let verify = in_root(&root, &["dpkg", "-V"]);
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "{suite}: dpkg -V ({}):\n{}{}",
        verify.status,
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    let Some(reference) = reference_packages(
        test,
        tool,
        suite,
        &mirror,
        &work.path().join("reference-root"),
    ) else {
        return;
    };
    let missing: Vec<&String> = reference.difference(&ours).collect();
    let extra: Vec<&String> = ours.difference(&reference).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{suite}: package sets differ from the {} --variant=minbase root\n  only there:       {missing:?}\n  only in imgbuild: {extra:?}",
        match tool {
            Reference::Mmdebstrap => "mmdebstrap",
            Reference::Debootstrap => "debootstrap",
        }
    );
    assert!(
        mounts_under(work.path()).is_empty(),
        "{suite}: mounts left under {}",
        work.path().display()
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn trixie_minbase_matches_debootstrap() {
    check_suite(
        "trixie_minbase_matches_debootstrap",
        "trixie",
        None,
        Reference::Debootstrap,
    );
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn bookworm_minbase_matches_mmdebstrap() {
    check_suite(
        "bookworm_minbase_matches_mmdebstrap",
        "bookworm",
        Some("bookworm"),
        Reference::Mmdebstrap,
    );
}
