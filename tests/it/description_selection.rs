//! Profile, architecture and type selection on KIWI's corpus, as `kiwi-ng image info` resolves it.

use crate::support::skip;
use imgbuild::description::{self, Description, DescriptionError, ResolvedImage, Selection};
use std::path::{Path, PathBuf};

fn corpus_file(rel: &str) -> Option<PathBuf> {
    let roots = [
        std::env::var_os("IMGBUILD_KIWI_CORPUS").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/kiwi-testdata")),
        // a worktree one level further down (wt/NAME) sees the same shared directory
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/kiwi-testdata")),
    ];
    roots
        .into_iter()
        .flatten()
        .map(|r| r.join(rel))
        .find(|p| p.is_file())
}

fn load(rel: &str, test: &str) -> Option<Description> {
    if let Some(p) = corpus_file(rel) {
        Some(description::load(&p).unwrap_or_else(|e| panic!("{rel}: {e}")))
    } else {
        skip(format_args!(
            "{test}: KIWI corpus not found (set IMGBUILD_KIWI_CORPUS)"
        ));
        None
    }
}

fn sel(profiles: &[&str], ty: Option<&str>) -> Selection {
    Selection {
        profiles: profiles
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        build_type: ty.map(str::to_string),
        target_arch: "x86_64".into(),
    }
}

fn names(set: &imgbuild::description::PackageSet) -> Vec<&str> {
    set.packages.iter().map(|p| p.name.as_str()).collect()
}

fn repos(r: &ResolvedImage) -> Vec<&str> {
    r.repositories.iter().map(|r| r.source.as_str()).collect()
}

#[test]
fn example_config_resolves_like_kiwi() {
    let Some(d) = load(
        "test/data/example_config.xml",
        "example_config_resolves_like_kiwi",
    ) else {
        return;
    };

    // default: the imported vmxFlavour (its arch list includes x86_64), primary oem type
    let r = d.resolve(&sel(&[], None)).unwrap();
    assert_eq!(r.profiles, ["vmxFlavour"]);
    assert_eq!(r.build_type.image, "oem");
    assert!(r.build_type.primary);
    assert!(r.build_type.containerconfig.is_none());
    let image = names(&r.packages.image);
    assert!(image.contains(&"plymouth-branding-openSUSE") && !image.contains(&"foo"));
    assert_eq!(r.packages.pattern_type, "plusRecommended");
    assert_eq!(names(&r.packages.image_type), ["gfxboot-branding-openSUSE"]);

    // the imported profile has arch="x86_64,s390": it applies on s390, not on aarch64
    let s390 = Selection {
        target_arch: "s390".into(),
        ..sel(&[], None)
    };
    assert_eq!(d.resolve(&s390).unwrap().profiles, ["vmxFlavour"]);
    let arm = Selection {
        target_arch: "aarch64".into(),
        ..sel(&[], None)
    };
    let r_arm = d.resolve(&arm).unwrap();
    assert!(r_arm.profiles.is_empty());
    assert!(
        names(&r_arm.packages.image).contains(&"foo"),
        "arch=s390,aarch64 package applies on aarch64"
    );

    // containerFlavour: the docker type with its full containerconfig
    let r = d.resolve(&sel(&["containerFlavour"], None)).unwrap();
    assert_eq!(r.profiles, ["containerFlavour"]);
    assert_eq!(r.build_type.image, "docker");
    let cc = r.build_type.containerconfig.as_ref().unwrap();
    assert_eq!(cc.name, "container_name");
    assert_eq!(cc.tag.as_deref(), Some("container_tag"));
    assert_eq!(cc.maintainer.as_deref(), Some("tux"));
    assert_eq!(cc.user.as_deref(), Some("root"));
    assert_eq!(cc.workingdir.as_deref(), Some("/root"));
    assert_eq!(cc.additionalnames, ["current", "foobar"]);
    assert!(
        !cc.expose.is_empty()
            && !cc.volumes.is_empty()
            && !cc.environment.is_empty()
            && !cc.labels.is_empty()
    );
    assert!(cc.entrypoint.as_ref().is_some_and(|e| e.execute.is_some()));
    assert!(r.build_type.derived_from.is_empty());

    // derivedContainer: derived_from kept as written
    let r = d.resolve(&sel(&["derivedContainer"], None)).unwrap();
    assert_eq!(r.build_type.image, "docker");
    assert_eq!(
        r.build_type.derived_from,
        ["obs://project/repo/image#mytag"]
    );
    let cc = r.build_type.containerconfig.as_ref().unwrap();
    assert!(
        cc.entrypoint.as_ref().is_some_and(|e| e.clear)
            || cc.subcommand.as_ref().is_some_and(|s| s.clear)
    );

    // composedProfile pulls in its requirements in KIWI's order
    let r = d.resolve(&sel(&["composedProfile"], None)).unwrap();
    assert_eq!(
        r.profiles,
        ["composedProfile", "vmxSimpleFlavour", "xenDomUFlavour"]
    );
    assert_eq!(r.build_type.image, "oem");
    assert_eq!(
        r.build_type.format.as_deref(),
        None,
        "first type is xenDomU's, not vmxSimple's vmdk"
    );
    let image = names(&r.packages.image);
    assert!(image.contains(&"kernel-xen"), "{image:?}");

    // the repositories apply to every selection; order is kept
    assert_eq!(repos(&r).len(), 3);
    assert_eq!(r.repositories[0].priority, Some(42));
    assert!(r.repositories[1].imageinclude && r.repositories[2].imageonly);

    // an unknown profile and an unavailable type are clear errors
    match d.resolve(&sel(&["nope"], None)) {
        Err(DescriptionError::UnknownProfile { name, known }) => {
            assert_eq!(name, "nope");
            assert!(known.contains(&"containerFlavour".to_string()));
        }
        other => panic!("{other:?}"),
    }
    match d.resolve(&sel(&["containerFlavour"], Some("oem"))) {
        Err(DescriptionError::UnknownType {
            requested,
            available,
            ..
        }) => {
            assert_eq!(requested, "oem");
            assert!(available.contains(&"docker".to_string()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn runtime_checker_config_resolves_like_kiwi() {
    let Some(d) = load(
        "test/data/example_runtime_checker_config.xml",
        "runtime_checker_config_resolves_like_kiwi",
    ) else {
        return;
    };
    // default: vmxFlavour (imported) requires metadata
    let r = d.resolve(&sel(&[], None)).unwrap();
    assert_eq!(r.profiles, ["vmxFlavour"]);
    assert_eq!(r.build_type.image, "oem");
    let r = d.resolve(&sel(&["vmxFlavour"], None)).unwrap();
    assert_eq!(r.profiles, ["vmxFlavour", "metadata"]);
    // docker requires noVersion; the container config is the docker type's
    let r = d.resolve(&sel(&["docker"], None)).unwrap();
    assert_eq!(r.profiles, ["docker", "noVersion"]);
    assert_eq!(r.build_type.image, "docker");
    let cc = r.build_type.containerconfig.as_ref().unwrap();
    assert_eq!(cc.name, "container_name");
    assert_eq!(cc.additionalnames, ["foo", "bar"]);
    assert_eq!(
        r.preferences.locale.as_ref().map(|l| l.value.as_str()),
        Some("de_DE")
    );
    // the appx profiles carry their own containerconfig
    let r = d.resolve(&sel(&["wsl_launcher"], None)).unwrap();
    assert_eq!(r.build_type.image, "appx");
    assert_eq!(
        r.build_type.containerconfig.as_ref().unwrap().name,
        "Tumbleweed"
    );
    assert_eq!(
        r.build_type.metadata_path.as_deref(),
        Some("/usr/share/wsl-appx")
    );
}

#[test]
fn no_default_type_needs_a_profile() {
    let Some(d) = load(
        "test/data/example_no_default_type.xml",
        "no_default_type_needs_a_profile",
    ) else {
        return;
    };
    match d.resolve(&sel(&[], None)) {
        Err(e @ DescriptionError::NoBuildType { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("[vmxFlavour]") && msg.contains("vmxFlavor"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // vmxFlavour requires minimal, which adds packages but still no type (the section says vmxFlavor)
    match d.resolve(&sel(&["vmxFlavour"], None)) {
        Err(DescriptionError::NoBuildType { active, .. }) => {
            assert_eq!(active, ["vmxFlavour", "minimal"]);
        }
        other => panic!("{other:?}"),
    }
    // the typo is reported as a warning
    assert!(d.warnings.iter().any(|w| w.message.contains("vmxFlavor")));
}
