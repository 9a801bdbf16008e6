//! The loaded description and the resolved, typed image later stages build from.

use super::grammar::grammar;
use super::tree::{Loc, Node};
use super::{DescriptionError, Diagnostic, Markup, checks, read_tree, upgrade, xml, yaml};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A loaded, upgraded and validated description.
#[derive(Clone, Debug)]
pub struct Description {
    /// The `<image>` tree after include splicing and the upgrade to 8.5.
    pub tree: Node,
    /// The file that was loaded.
    pub path: PathBuf,
    /// The description directory (`root/`, `config.sh`, `images.sh`, `root.tar.gz` live here).
    pub dir: PathBuf,
    /// The markup the file was written in.
    pub markup: Markup,
    /// The schema version the file declared before the upgrade.
    pub declared_schemaversion: String,
    /// Problems KIWI accepts but that are likely mistakes (a section naming an undefined profile).
    pub warnings: Vec<Diagnostic>,
}

/// What to build: the `--profile`, `--type` and `--target-arch` choices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Profiles asked for; empty means the `import="true"` profiles.
    pub profiles: Vec<String>,
    /// The build type (`<type image=…>`); `None` means primary, else first.
    pub build_type: Option<String>,
    /// The target architecture as KIWI names it (`x86_64`, `aarch64`, ...).
    pub target_arch: String,
}

impl Selection {
    /// The host architecture in KIWI's spelling (`uname -m`).
    pub fn host_arch() -> String {
        std::env::consts::ARCH.to_string()
    }
}

/// Everything later stages need, resolved for one [`Selection`].
///
/// Serialises to the JSON of `imgbuild info --format json`; source positions (`loc` fields) and
/// the description directory are not part of the JSON, so the XML and YAML forms of one
/// description give the same bytes.
#[derive(Clone, Debug, Serialize)]
pub struct ResolvedImage {
    /// `image@name`.
    pub name: String,
    /// `image@displayname`.
    pub displayname: Option<String>,
    /// `image@id`.
    pub id: Option<String>,
    /// The schema version the file declared (the model is always 8.5).
    pub declared_schemaversion: String,
    /// The target architecture resolved for.
    pub arch: String,
    /// Active profiles, in resolution order.
    pub profiles: Vec<String>,
    /// `<description>`.
    pub description: Option<DescriptionInfo>,
    /// Merged preferences.
    pub preferences: Preferences,
    /// The selected build type.
    #[serde(rename = "type")]
    pub build_type: BuildType,
    /// Applicable repositories in order.
    pub repositories: Vec<Repository>,
    /// Applicable packages by kind.
    pub packages: Packages,
    /// Users to create.
    pub users: Vec<User>,
    /// Groups to create (from the users' `groups`), sorted.
    pub groups: Vec<String>,
    /// `<drivers>` file names.
    pub drivers: Vec<Named>,
    /// `<strip>` sections.
    pub strip: Vec<Strip>,
    /// The description directory (not serialised).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The description file (not serialised).
    #[serde(skip)]
    pub path: PathBuf,
    /// Where the `<image>` element is (not serialised).
    #[serde(skip)]
    pub loc: Loc,
}

/// `<description>`.
#[derive(Clone, Debug, Serialize)]
pub struct DescriptionInfo {
    /// `type` (system or boot).
    pub kind: String,
    /// `<author>`.
    pub author: Option<String>,
    /// `<contact>`s.
    pub contacts: Vec<String>,
    /// `<specification>`.
    pub specification: Option<String>,
    /// `<license>`.
    pub license: Option<String>,
}

/// A value with where it was written.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it came from (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// Merged `<preferences>`: for each field the first applicable section that sets it wins, as in KIWI.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Preferences {
    /// `<version>`.
    pub version: Option<Located<String>>,
    /// `<packagemanager>`; KIWI's default is zypper, imgbuild's is apt.
    pub packagemanager: Option<Located<String>>,
    /// `<locale>`.
    pub locale: Option<Located<String>>,
    /// `<timezone>`.
    pub timezone: Option<Located<String>>,
    /// `<keytable>`.
    pub keytable: Option<Located<String>>,
    /// `<rpm-check-signatures>` (for apt: whether repositories must be signed).
    pub rpm_check_signatures: Option<Located<bool>>,
    /// `<rpm-excludedocs>`.
    pub rpm_excludedocs: Option<Located<bool>>,
    /// `<release-version>`.
    pub release_version: Option<Located<String>>,
}

/// The selected `<type>`.
#[derive(Clone, Debug, Serialize)]
pub struct BuildType {
    /// `image` (docker, oci, tbz, ...).
    pub image: String,
    /// `primary`.
    pub primary: bool,
    /// `derived_from`, split on commas.
    pub derived_from: Vec<String>,
    /// `delta_root`.
    pub delta_root: bool,
    /// `ensure_empty_tmpdirs` (default true).
    pub ensure_empty_tmpdirs: bool,
    /// `provide_system_files`.
    pub provide_system_files: bool,
    /// `require_system_files`.
    pub require_system_files: bool,
    /// `bundle_format`.
    pub bundle_format: Option<String>,
    /// `metadata_path`.
    pub metadata_path: Option<String>,
    /// `format`.
    pub format: Option<String>,
    /// Every attribute as written, including the ones above.
    pub attributes: BTreeMap<String, String>,
    /// `<containerconfig>`.
    pub containerconfig: Option<ContainerConfig>,
    /// Where the `<type>` is (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// `<containerconfig>`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContainerConfig {
    /// `name`.
    pub name: String,
    /// `tag`.
    pub tag: Option<String>,
    /// `additionalnames`, split on commas (`:tag`, `name:`, `name:tag`).
    pub additionalnames: Vec<String>,
    /// `maintainer`.
    pub maintainer: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `workingdir`.
    pub workingdir: Option<String>,
    /// `<entrypoint>`.
    pub entrypoint: Option<ContainerCommand>,
    /// `<subcommand>`.
    pub subcommand: Option<ContainerCommand>,
    /// `<expose><port number=…>`.
    pub expose: Vec<String>,
    /// `<volumes><volume name=…>`.
    pub volumes: Vec<String>,
    /// `<environment><env name= value=>`.
    pub environment: Vec<NameValue>,
    /// `<labels><label name= value=>`.
    pub labels: Vec<NameValue>,
    /// `<stopsignal>`.
    pub stopsignal: Option<String>,
    /// `<history>`.
    pub history: Option<History>,
    /// Where the `<containerconfig>` is (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// `<entrypoint>` or `<subcommand>`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContainerCommand {
    /// `execute`.
    pub execute: Option<String>,
    /// `<argument name=…>`s.
    pub arguments: Vec<String>,
    /// `clear="true"`: the value is explicitly empty.
    pub clear: bool,
}

/// A name/value pair (env, label).
#[derive(Clone, Debug, Default, Serialize)]
pub struct NameValue {
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: String,
}

/// `<history>`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct History {
    /// `created_by`.
    pub created_by: Option<String>,
    /// `author`.
    pub author: Option<String>,
    /// `application_id`.
    pub application_id: Option<String>,
    /// `package_version`.
    pub package_version: Option<String>,
    /// `launcher`.
    pub launcher: Option<String>,
    /// The element text (the history comment).
    pub comment: Option<String>,
}

/// `<repository>` with its `<source>`.
#[derive(Clone, Debug, Serialize)]
pub struct Repository {
    /// `type` (default rpm-md, as in KIWI).
    #[serde(rename = "type")]
    pub kind: String,
    /// `<source path=…>`.
    pub source: String,
    /// `alias`.
    pub alias: Option<String>,
    /// `priority`.
    pub priority: Option<i64>,
    /// `components`, split on spaces (empty: the apt default `main`).
    pub components: Vec<String>,
    /// `distribution` (none: a flat repository).
    pub distribution: Option<String>,
    /// `architectures`, split on commas.
    pub architectures: Vec<String>,
    /// `imageinclude`.
    pub imageinclude: bool,
    /// `imageonly`.
    pub imageonly: bool,
    /// `repository_gpgcheck`.
    pub repository_gpgcheck: Option<bool>,
    /// `package_gpgcheck`.
    pub package_gpgcheck: Option<bool>,
    /// `<source><signing key=…>`s.
    pub signing_keys: Vec<String>,
    /// Every attribute as written.
    pub attributes: BTreeMap<String, String>,
    /// Where the `<repository>` is (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// A `<package>`, `<archive>`, `<ignore>`, `<namedCollection>` or `<product>` reference.
#[derive(Clone, Debug, Serialize)]
pub struct Named {
    /// `name`.
    pub name: String,
    /// Other attributes as written (`arch`, `target_dir`, `bootinclude`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Where it is (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// `<file>` in a packages section.
#[derive(Clone, Debug, Serialize)]
pub struct FileItem {
    /// `name` (relative to the description directory).
    pub name: String,
    /// `target`.
    pub target: Option<String>,
    /// `owner`.
    pub owner: Option<String>,
    /// `permissions`.
    pub permissions: Option<String>,
    /// Where it is (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// One group of packages.
#[derive(Clone, Debug, Serialize, Default)]
pub struct PackageSet {
    /// `<package>`s.
    pub packages: Vec<Named>,
    /// `<archive>`s.
    pub archives: Vec<Named>,
    /// `<file>`s.
    pub files: Vec<FileItem>,
    /// `<ignore>`s.
    pub ignores: Vec<Named>,
    /// `<namedCollection>`s.
    pub collections: Vec<Named>,
    /// `<collectionModule>`s.
    pub collection_modules: Vec<Named>,
    /// `<product>`s.
    pub products: Vec<Named>,
}

/// Packages of the applicable sections, by kind.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Packages {
    /// `type="bootstrap"`.
    pub bootstrap: PackageSet,
    /// `type="image"`.
    pub image: PackageSet,
    /// `type="<the build type>"` (e.g. `docker`).
    pub image_type: PackageSet,
    /// `type="delete"`.
    pub delete: PackageSet,
    /// `type="uninstall"`.
    pub uninstall: PackageSet,
    /// `patternType` of the image sections (default onlyRequired).
    pub pattern_type: String,
    /// `patternType` of the bootstrap sections (default onlyRequired): KIWI reads it apart
    /// from the image sections' (`plusRecommended` installs the bootstrap set's recommends).
    pub bootstrap_pattern_type: String,
    /// `bootstrap_package` of a bootstrap section.
    pub bootstrap_package: Option<String>,
}

/// `<user>`.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    /// `name`.
    pub name: String,
    /// `id`.
    pub id: Option<u32>,
    /// `groups`, split on commas (the first is the primary group).
    pub groups: Vec<String>,
    /// `home`.
    pub home: Option<String>,
    /// `shell`.
    pub shell: Option<String>,
    /// `realname`.
    pub realname: Option<String>,
    /// `password`.
    pub password: String,
    /// `pwdformat` (encrypted or plain; default encrypted).
    pub pwdformat: String,
    /// Where it is (not serialised).
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// `<strip type=…>`.
#[derive(Clone, Debug, Serialize)]
pub struct Strip {
    /// `type`: delete, tools or libs.
    #[serde(rename = "type")]
    pub kind: String,
    /// `<file name=…>`s.
    pub files: Vec<Named>,
}

/// A profile as defined in `<profiles>`.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `import`.
    pub import: bool,
    /// `arch`.
    pub arch: Option<String>,
    /// `<requires profile=…>`s, with their `arch` filter.
    pub requires: Vec<(String, Option<String>)>,
}

pub(crate) fn truthy(v: Option<&str>) -> Option<bool> {
    v.map(|v| matches!(v.trim(), "true" | "1"))
}

fn attrs_of(n: &Node, skip: &[&str]) -> BTreeMap<String, String> {
    n.attrs
        .iter()
        .filter(|a| !skip.contains(&a.name.as_str()))
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect()
}

fn named(n: &Node) -> Named {
    Named {
        name: n.get("name").unwrap_or_default().to_string(),
        attributes: attrs_of(n, &["name"]),
        loc: Some(n.loc.clone()),
    }
}

fn owned(v: Option<&str>) -> Option<String> {
    v.map(str::to_string)
}

fn split(v: Option<&str>, sep: char) -> Vec<String> {
    v.map(|s| {
        s.split(sep)
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// The directory of the description file `path`, canonical: a bare file name, `.`, `..`, a
/// relative or a symlinked directory all name one description, so its hooks, overlay, lock file
/// and the reuse key's inputs are found the same way whichever way it was named. The path as
/// given stays in error locations, where the user's own spelling reads best.
fn canonical_dir(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::canonicalize(parent)
        .or_else(|_| std::path::absolute(parent))
        .unwrap_or_else(|_| parent.to_path_buf())
}

impl Description {
    /// Include, upgrade and validate a freshly read tree from `path`.
    pub fn from_tree(
        mut tree: Node,
        markup: Markup,
        path: &Path,
    ) -> Result<Self, DescriptionError> {
        let dir = canonical_dir(path);
        if tree.name != "image" {
            return Err(DescriptionError::Invalid(vec![Diagnostic::new(
                tree.loc.clone(),
                &tree.name,
                "the root element must be <image>".into(),
            )]));
        }
        if tree.attr("schemaversion").is_none() {
            return Err(DescriptionError::Invalid(vec![Diagnostic::new(
                tree.loc.clone(),
                "image",
                "required attribute schemaversion is missing (an include fragment cannot be built on its own)".into(),
            )]));
        }
        splice_includes(&mut tree, path, &dir)?;
        let declared = upgrade::upgrade(&mut tree)?;
        let mut diags = Vec::new();
        grammar().validate(&tree, &mut diags);
        let mut warnings = Vec::new();
        checks::check(&tree, &mut diags, &mut warnings);
        if !diags.is_empty() {
            diags.sort_by(|a, b| a.loc.cmp(&b.loc));
            diags.dedup();
            if diags.len() > super::MAX_DIAGNOSTICS {
                let more = diags.len() - super::MAX_DIAGNOSTICS;
                diags.truncate(super::MAX_DIAGNOSTICS);
                let loc = tree.loc.clone();
                diags.push(Diagnostic::new(
                    loc,
                    "image",
                    format!("{more} more problems not shown"),
                ));
            } else if diags.len() == super::MAX_DIAGNOSTICS {
                diags.push(Diagnostic::new(
                    tree.loc.clone(),
                    "image",
                    format!("stopped after {} problems", super::MAX_DIAGNOSTICS),
                ));
            }
            return Err(DescriptionError::Invalid(diags));
        }
        Ok(Description {
            tree,
            path: path.to_path_buf(),
            dir,
            markup,
            declared_schemaversion: declared,
            warnings,
        })
    }

    /// The description written as XML.
    pub fn to_xml(&self) -> String {
        xml::write(&self.tree)
    }

    /// The description written in KIWI's YAML form.
    pub fn to_yaml(&self) -> String {
        yaml::write(&self.tree)
    }

    /// The profiles the description defines, in order.
    pub fn profiles(&self) -> Vec<Profile> {
        self.tree
            .children_named("profiles")
            .flat_map(|p| p.children_named("profile"))
            .map(|p| Profile {
                name: p.get("name").unwrap_or_default().to_string(),
                description: p.get("description").unwrap_or_default().to_string(),
                import: truthy(p.get("import")).unwrap_or(false),
                arch: owned(p.get("arch")),
                requires: p
                    .children_named("requires")
                    .filter_map(|r| Some((r.get("profile")?.to_string(), owned(r.get("arch")))))
                    .collect(),
            })
            .collect()
    }

    /// The active profiles for a selection: the given ones (or the imported ones) plus
    /// everything they require, profiles of another architecture left out.
    pub fn active_profiles(&self, sel: &Selection) -> Result<Vec<String>, DescriptionError> {
        let all = self.profiles();
        let available: Vec<&Profile> = all
            .iter()
            .filter(|p| arch_matches(p.arch.as_deref(), &sel.target_arch))
            .collect();
        if sel.profiles.is_empty() {
            return Ok(available
                .iter()
                .filter(|p| p.import)
                .map(|p| p.name.clone())
                .collect());
        }
        let mut out: Vec<String> = Vec::new();
        for name in &sel.profiles {
            add_profile(name, &available, &all, &sel.target_arch, &mut out, 0)?;
        }
        Ok(out)
    }

    /// Resolve the description for `sel`.
    pub fn resolve(&self, sel: &Selection) -> Result<ResolvedImage, DescriptionError> {
        let profiles = self.active_profiles(sel)?;
        let arch = sel.target_arch.as_str();
        let applies = |n: &Node| section_applies(n, &profiles, arch);
        let t = &self.tree;

        let prefs_sections: Vec<&Node> = t
            .children_named("preferences")
            .filter(|n| applies(n))
            .collect();
        let mut preferences = Preferences::default();
        let text_pref = |name: &str| -> Option<Located<String>> {
            prefs_sections.iter().find_map(|p| {
                p.child(name).and_then(|c| {
                    c.text.as_ref().map(|v| Located {
                        value: v.clone(),
                        loc: Some(c.loc.clone()),
                    })
                })
            })
        };
        let bool_pref = |name: &str| {
            text_pref(name).map(|l| Located {
                value: truthy(Some(&l.value)).unwrap_or(false),
                loc: l.loc,
            })
        };
        preferences.version = text_pref("version");
        preferences.packagemanager = text_pref("packagemanager");
        preferences.locale = text_pref("locale");
        preferences.timezone = text_pref("timezone");
        preferences.keytable = text_pref("keytable");
        preferences.rpm_check_signatures = bool_pref("rpm-check-signatures");
        preferences.rpm_excludedocs = bool_pref("rpm-excludedocs");
        preferences.release_version = text_pref("release-version");

        // type selection: --type, else primary, else the first
        let types: Vec<&Node> = prefs_sections
            .iter()
            .flat_map(|p| p.children_named("type"))
            .collect();
        let chosen = match &sel.build_type {
            Some(want) => types
                .iter()
                .find(|ty| ty.get("image") == Some(want.as_str()))
                .copied()
                .ok_or_else(|| DescriptionError::UnknownType {
                    requested: want.clone(),
                    active: profiles.clone(),
                    available: types.iter().filter_map(|t| owned(t.get("image"))).collect(),
                })?,
            None => match types
                .iter()
                .find(|t| truthy(t.get("primary")) == Some(true))
                .or(types.first())
            {
                Some(t) => t,
                None => {
                    return Err(DescriptionError::NoBuildType {
                        active: profiles.clone(),
                        candidates: self.profiles_with_types(),
                    });
                }
            },
        };
        let build_type = build_type_of(chosen);

        let repositories = t
            .children_named("repository")
            .filter(|n| applies(n))
            .map(repository_of)
            .collect();

        let mut packages = Packages {
            pattern_type: "onlyRequired".into(),
            bootstrap_pattern_type: "onlyRequired".into(),
            ..Packages::default()
        };
        let mut pattern_set = false;
        let mut bootstrap_pattern_set = false;
        for sec in t.children_named("packages").filter(|n| applies(n)) {
            let kind = sec.get("type").unwrap_or_default();
            let set = match kind {
                "bootstrap" => {
                    if packages.bootstrap_package.is_none() {
                        packages.bootstrap_package = owned(sec.get("bootstrap_package"));
                    }
                    if !bootstrap_pattern_set && let Some(p) = sec.get("patternType") {
                        packages.bootstrap_pattern_type = p.to_string();
                        bootstrap_pattern_set = true;
                    }
                    &mut packages.bootstrap
                }
                "image" => {
                    if !pattern_set && let Some(p) = sec.get("patternType") {
                        packages.pattern_type = p.to_string();
                        pattern_set = true;
                    }
                    &mut packages.image
                }
                "delete" => &mut packages.delete,
                "uninstall" => &mut packages.uninstall,
                k if k == build_type.image => &mut packages.image_type,
                _ => continue,
            };
            for c in &sec.children {
                if !arch_matches(c.get("arch"), arch) {
                    continue;
                }
                match c.name.as_str() {
                    "package" => set.packages.push(named(c)),
                    "archive" => set.archives.push(named(c)),
                    "ignore" => set.ignores.push(named(c)),
                    "namedCollection" => set.collections.push(named(c)),
                    "collectionModule" => set.collection_modules.push(named(c)),
                    "product" => set.products.push(named(c)),
                    "file" => set.files.push(FileItem {
                        name: c.get("name").unwrap_or_default().to_string(),
                        target: owned(c.get("target")),
                        owner: owned(c.get("owner")),
                        permissions: owned(c.get("permissions")),
                        loc: Some(c.loc.clone()),
                    }),
                    _ => {}
                }
            }
        }

        let mut users = Vec::new();
        let mut groups = BTreeSet::new();
        for sec in t.children_named("users").filter(|n| applies(n)) {
            for u in sec.children_named("user") {
                let g = split(u.get("groups"), ',');
                groups.extend(g.iter().cloned());
                users.push(User {
                    name: u.get("name").unwrap_or_default().to_string(),
                    id: u.get("id").and_then(|v| v.trim().parse().ok()),
                    groups: g,
                    home: owned(u.get("home")),
                    shell: owned(u.get("shell")),
                    realname: owned(u.get("realname")),
                    password: u.get("password").unwrap_or_default().to_string(),
                    pwdformat: u.get("pwdformat").unwrap_or("encrypted").to_string(),
                    loc: Some(u.loc.clone()),
                });
            }
        }
        let drivers = t
            .children_named("drivers")
            .filter(|n| applies(n))
            .flat_map(|d| d.children_named("file"))
            .filter(|f| arch_matches(f.get("arch"), arch))
            .map(named)
            .collect();
        let strip = t
            .children_named("strip")
            .filter(|n| applies(n))
            .map(|s| Strip {
                kind: s.get("type").unwrap_or_default().to_string(),
                files: s
                    .children_named("file")
                    .filter(|f| arch_matches(f.get("arch"), arch))
                    .map(named)
                    .collect(),
            })
            .collect();
        let description = t.child("description").map(|d| DescriptionInfo {
            kind: d.get("type").unwrap_or_default().to_string(),
            author: owned(d.child_text("author")),
            contacts: d
                .children_named("contact")
                .filter_map(|c| c.text.clone())
                .collect(),
            specification: owned(d.child_text("specification")),
            license: owned(d.child_text("license")),
        });
        Ok(ResolvedImage {
            name: t.get("name").unwrap_or_default().to_string(),
            displayname: owned(t.get("displayname")),
            id: owned(t.get("id")),
            declared_schemaversion: self.declared_schemaversion.clone(),
            arch: arch.to_string(),
            profiles,
            description,
            preferences,
            build_type,
            repositories,
            packages,
            users,
            groups: groups.into_iter().collect(),
            drivers,
            strip,
            dir: self.dir.clone(),
            path: self.path.clone(),
            loc: t.loc.clone(),
        })
    }

    /// Profiles named by a `<preferences profiles=…>` section that holds a `<type>`.
    pub fn profiles_with_types(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.tree.children_named("preferences") {
            if p.child("type").is_some() {
                for name in split(p.get("profiles"), ',') {
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
        }
        out
    }
}

fn add_profile(
    name: &str,
    available: &[&Profile],
    all: &[Profile],
    arch: &str,
    out: &mut Vec<String>,
    depth: usize,
) -> Result<(), DescriptionError> {
    if out.iter().any(|p| p == name) || depth > 64 {
        return Ok(());
    }
    let Some(p) = available.iter().find(|p| p.name == name) else {
        return Err(DescriptionError::UnknownProfile {
            name: name.to_string(),
            known: all.iter().map(|p| p.name.clone()).collect(),
        });
    };
    out.push(name.to_string());
    for (r, r_arch) in &p.requires {
        if arch_matches(r_arch.as_deref(), arch) {
            add_profile(r, available, all, arch, out, depth + 1)?;
        }
    }
    Ok(())
}

/// Whether an `arch=` list (comma separated) includes `arch`; no list matches every arch.
pub fn arch_matches(list: Option<&str>, arch: &str) -> bool {
    match list {
        None => true,
        Some(l) => l.split(',').any(|a| a.trim() == arch),
    }
}

/// Whether a section applies: its `profiles=` names an active profile (or is absent) and its
/// `arch=` includes the target.
pub fn section_applies(n: &Node, active: &[String], arch: &str) -> bool {
    let profiles_ok = match n.get("profiles") {
        None => true,
        Some(p) => p
            .split(',')
            .map(str::trim)
            .any(|p| active.iter().any(|a| a == p)),
    };
    profiles_ok && arch_matches(n.get("arch"), arch)
}

fn build_type_of(t: &Node) -> BuildType {
    let cc = t.child("containerconfig").map(|c| {
        let cmd = |name: &str| {
            c.child(name).map(|e| ContainerCommand {
                execute: owned(e.get("execute")),
                arguments: e
                    .children_named("argument")
                    .filter_map(|a| owned(a.get("name")))
                    .collect(),
                clear: truthy(e.get("clear")).unwrap_or(false),
            })
        };
        let pairs = |outer: &str, inner: &str| -> Vec<NameValue> {
            c.children_named(outer)
                .flat_map(|o| o.children_named(inner))
                .map(|e| NameValue {
                    name: e.get("name").unwrap_or_default().to_string(),
                    value: e.get("value").unwrap_or_default().to_string(),
                })
                .collect()
        };
        ContainerConfig {
            name: c.get("name").unwrap_or_default().to_string(),
            tag: owned(c.get("tag")),
            additionalnames: split(c.get("additionalnames"), ','),
            maintainer: owned(c.get("maintainer")),
            user: owned(c.get("user")),
            workingdir: owned(c.get("workingdir")),
            entrypoint: cmd("entrypoint"),
            subcommand: cmd("subcommand"),
            expose: c
                .children_named("expose")
                .flat_map(|e| e.children_named("port"))
                .filter_map(|p| owned(p.get("number")))
                .collect(),
            volumes: c
                .children_named("volumes")
                .flat_map(|e| e.children_named("volume"))
                .filter_map(|p| owned(p.get("name")))
                .collect(),
            environment: pairs("environment", "env"),
            labels: pairs("labels", "label"),
            stopsignal: owned(c.child_text("stopsignal")),
            history: c.child("history").map(|h| History {
                created_by: owned(h.get("created_by")),
                author: owned(h.get("author")),
                application_id: owned(h.get("application_id")),
                package_version: owned(h.get("package_version")),
                launcher: owned(h.get("launcher")),
                comment: h.text.clone(),
            }),
            loc: Some(c.loc.clone()),
        }
    });
    BuildType {
        image: t.get("image").unwrap_or_default().to_string(),
        primary: truthy(t.get("primary")).unwrap_or(false),
        derived_from: split(t.get("derived_from"), ','),
        delta_root: truthy(t.get("delta_root")).unwrap_or(false),
        ensure_empty_tmpdirs: truthy(t.get("ensure_empty_tmpdirs")).unwrap_or(true),
        provide_system_files: truthy(t.get("provide_system_files")).unwrap_or(false),
        require_system_files: truthy(t.get("require_system_files")).unwrap_or(false),
        bundle_format: owned(t.get("bundle_format")),
        metadata_path: owned(t.get("metadata_path")),
        format: owned(t.get("format")),
        attributes: attrs_of(t, &[]),
        containerconfig: cc,
        loc: Some(t.loc.clone()),
    }
}

fn repository_of(r: &Node) -> Repository {
    let source = r.child("source");
    Repository {
        kind: r.get("type").unwrap_or("rpm-md").to_string(),
        source: source
            .and_then(|s| s.get("path"))
            .unwrap_or_default()
            .to_string(),
        alias: owned(r.get("alias")),
        priority: r.get("priority").and_then(|p| p.trim().parse().ok()),
        components: split(r.get("components"), ' '),
        distribution: owned(r.get("distribution")),
        architectures: split(r.get("architectures"), ','),
        imageinclude: truthy(r.get("imageinclude")).unwrap_or(false),
        imageonly: truthy(r.get("imageonly")).unwrap_or(false),
        repository_gpgcheck: truthy(r.get("repository_gpgcheck")),
        package_gpgcheck: truthy(r.get("package_gpgcheck")),
        signing_keys: source
            .map(|s| {
                s.children_named("signing")
                    .filter_map(|k| owned(k.get("key")))
                    .collect()
            })
            .unwrap_or_default(),
        attributes: attrs_of(r, &[]),
        loc: Some(r.loc.clone()),
    }
}

/// Replace each `<include from=…>` of the main file by the children of the included `<image>`.
fn splice_includes(tree: &mut Node, path: &Path, dir: &Path) -> Result<(), DescriptionError> {
    if !tree.children.iter().any(|c| c.name == "include") {
        return Ok(());
    }
    let mut diags = Vec::new();
    let mut out = Vec::with_capacity(tree.children.len());
    for child in std::mem::take(&mut tree.children) {
        if child.name != "include" {
            out.push(child);
            continue;
        }
        let Some(from) = child.attr("from").map(|a| a.value.clone()) else {
            out.push(child);
            continue;
        };
        let target = if let Some(rest) = from.strip_prefix("this://") {
            dir.join(rest)
        } else if let Some(rest) = from.strip_prefix("file://") {
            let p = Path::new(rest);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                path.parent().unwrap_or(dir).join(p)
            }
        } else {
            path.parent().unwrap_or(dir).join(&from)
        };
        match read_tree(&target) {
            Err(DescriptionError::Io { source, .. }) => diags.push(Diagnostic::new(
                child.loc.clone(),
                "include@from",
                format!("cannot read included file {}: {source}", target.display()),
            )),
            Err(e @ DescriptionError::Invalid(_)) => return Err(e),
            Err(e) => diags.push(Diagnostic::new(
                child.loc.clone(),
                "include@from",
                e.to_string(),
            )),
            Ok((inc, _)) => {
                if inc.name != "image" {
                    diags.push(Diagnostic::new(
                        inc.loc.clone(),
                        &inc.name,
                        "an included file must have <image> as its root element".into(),
                    ));
                    continue;
                }
                if let Some(nested) = inc.children.iter().find(|c| c.name == "include") {
                    diags.push(Diagnostic::new(
                        nested.loc.clone(),
                        "include",
                        format!(
                            "nested include: {} is included from {} and may not include further files",
                            target.display(),
                            path.display()
                        ),
                    ));
                    continue;
                }
                out.extend(inc.children);
            }
        }
    }
    tree.children = out;
    if diags.is_empty() {
        Ok(())
    } else {
        Err(DescriptionError::Invalid(diags))
    }
}
