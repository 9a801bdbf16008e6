//! Dependency resolution for RPM packages, on top of the `resolvo` SAT solver, with the
//! semantics of rpm and libsolv (which zypper and dnf use).
//!
//! A [`Universe`] holds every package of every repository that the target architecture can
//! install; [`Universe::solve`] turns a [`Request`] into a [`Resolution`], and
//! [`Universe::install_order`] orders it as rpm's transaction does.
//!
//! Matching: a dependency is satisfied by a package's own `name = epoch:version-release`, by its
//! Provides (ranges overlap as in rpm's `rpmdsCompare`: an unversioned provide satisfies any
//! versioned dependency, a release missing on either side is not compared) and, for `/paths`,
//! by its file list. Conflicts match provides; Obsoletes match package names and versions only
//! (libsolv's default, `obsoleteusesprovides` off). One package per name and architecture color
//! is installed (libsolv's implicit obsoletes with colors: `foo.x86_64` and `foo.i686` may be
//! co-installed, `foo.noarch` excludes both); multiversion packages are not supported.
//!
//! Rich dependencies are normalised to conjunctive normal form as libsolv's `cplxdeps.c` does
//! (`a if b` = `a or not b`, `a unless b` = `a and not b`, with `else` as rpm defines it); rich
//! Conflicts (an entry whose name is an expression) are negated the same way. Each clause is a
//! union of version sets: a positive literal gives the slots of its package set (`with` and
//! `without` give one set of the packages in all operands, or in the first but not the second);
//! a negated one gives a synthetic "absence" solvable that constrains every slot of the set to
//! packages outside it, offered first so that `(b if c)` leaves `c` out rather than installing
//! `b`. A clause that is a single negation is a plain constraint. resolvo's own conditional
//! requirements are not used: they read a condition on part of a name as "another member of the
//! name is installed", which is false for an empty name, and a debug assertion of its conflict
//! analysis fails on them. What remains refused, with the reason: a `with`/`without` operand that
//! names no package set (`(a with (b if c))`) and normal forms beyond 256 clauses.
//!
//! Candidate preference follows libsolv's `policy_filter_unwanted`: installed packages first,
//! then the better repository priority (lower number, zypper's default 99), then the better
//! architecture (`noarch` ranking with the best), then the highest EVR within a name. Among
//! different names providing one capability: priority, architecture, then a candidate obsoleted
//! by another candidate last (`prune_obsoleted`), then the higher version of a commonly
//! provided `cap = version` (`sort_by_common_dep`), then name order. libsolv's dynamic
//! `prune_to_recommended` (preferring a provider some chosen package recommends) is not
//! modelled: the order is fixed before solving.
//!
//! Weak dependencies (`Request::weak`, zypper's default): after a solution, the preferred
//! satisfier of each unmet Recommends of a newly chosen package and the best package of each
//! name whose Supplements hold are added as requirements (as soft ones where that fails), until
//! nothing new is wanted. Suggests and Enhances are ignored, as zypper does by default.
//! Capabilities no package provides (`modalias(…)`, `namespace:language(…)`) are never met, so
//! hardware and language supplements stay out.
//!
//! A requested simple dependency naming a package means that package (as `zypper install foo`
//! and `dnf install foo` read it); any other is a capability.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Display;

use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, DenseIndex, Dependencies,
    DependencyProvider, Interner, KnownDependencies, NameId, Problem,
    Requirement as SolverRequirement, SolvableId, Solver, SolverCache, StringId,
    UnsolvableOrCancelled, VersionSetId, VersionSetUnionId,
};

use super::deps::parse_requirement;
use super::package::{Cmp, Dep, Package, Requirement, Rich};
use super::version::Evr;

/// Index of a package in a [`Universe`].
pub type PackageId = usize;

/// zypper's default repository priority.
const DEFAULT_PRIORITY: i32 = 99;

/// Why a request could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A requested dependency could not be parsed.
    #[error("bad package request {request:?}: {message}")]
    BadRequest {
        /// The request as given.
        request: String,
        /// What was wrong with it.
        message: String,
    },
    /// A requested name matches no package, no provide and no file.
    #[error("no package or provider named {name:?} is available")]
    UnknownPackage {
        /// The requested name.
        name: String,
    },
    /// A requested rich dependency has a form the solver cannot express.
    #[error("cannot resolve the rich dependency {requirement}: {message}")]
    Unsupported {
        /// The requirement, in rpm's spelling.
        requirement: String,
        /// Which part cannot be expressed.
        message: String,
    },
    /// No set of packages satisfies the request. The explanation walks from the request through
    /// the chain of packages (`name-evr.arch`) down to the missing or conflicting ones.
    #[error(
        "the requested packages cannot be installed together:\n{}",
        indent(explanation)
    )]
    Unsolvable {
        /// resolvo's conflict tree, rendered with rpm names.
        explanation: String,
        /// Every package name involved in the conflict, sorted.
        involved: Vec<String>,
    },
    /// The solver was cancelled.
    #[error("dependency resolution was cancelled")]
    Cancelled,
}

/// `text` with every line indented by two spaces: the explanation reads as part of its error.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What to resolve.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Dependencies that must hold (`bash`, `glibc >= 2.34`, `/bin/sh`, `(a or b)`).
    pub install: Vec<Requirement>,
    /// Packages already installed: kept (replaced only when a dependency needs it).
    pub installed: Vec<PackageId>,
    /// Also install Recommends and packages whose Supplements hold (zypper's default; KIWI's
    /// `onlyRequired` turns it off).
    pub weak: bool,
    /// Package names never to install (KIWI's `<ignore>`, zypper locks).
    pub excluded: Vec<String>,
}

impl Request {
    /// A request to install `items`, each a dependency in rpm's syntax.
    pub fn install<S: AsRef<str>>(items: &[S]) -> Result<Request, SolveError> {
        let install = items
            .iter()
            .map(|item| {
                parse_requirement(item.as_ref()).map_err(|e| SolveError::BadRequest {
                    request: item.as_ref().to_string(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Request {
            install,
            ..Request::default()
        })
    }
}

/// A solved request: the complete set of packages to have installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every package of the result (installed ones included), sorted by name then architecture.
    pub packages: Vec<PackageId>,
}

/// The architectures packages may have to be installed on `target`, best first, as zypper's
/// compatibility table (and libsolv's `archpolicies`) lists them; `noarch` is always allowed
/// besides these. Unknown targets accept only themselves.
pub fn compatible_arches(target: &str) -> Vec<&str> {
    const X86: [&str; 4] = ["i686", "i586", "i486", "i386"];
    let target = match target {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        t => t,
    };
    let mut out: Vec<&str> = match target {
        "x86_64_v4" => vec!["x86_64_v4", "x86_64_v3", "x86_64_v2", "x86_64"],
        "x86_64_v3" => vec!["x86_64_v3", "x86_64_v2", "x86_64"],
        "x86_64_v2" => vec!["x86_64_v2", "x86_64"],
        "x86_64" => vec!["x86_64"],
        "i686" | "i586" | "i486" | "i386" => {
            let pos = X86.iter().position(|&a| a == target).unwrap_or(0);
            return X86[pos..].to_vec();
        }
        "s390x" => vec!["s390x", "s390"],
        "ppc64" => vec!["ppc64", "ppc"],
        "armv7hl" => vec!["armv7hl", "armv6hl"],
        "armv7l" => vec![
            "armv7l", "armv6l", "armv5tel", "armv5l", "armv4tl", "armv4l",
        ],
        "armv6hl" => vec!["armv6hl"],
        t => vec![t],
    };
    if out[out.len() - 1] == "x86_64" {
        out.extend(X86);
    }
    out
}

/// libsolv's architecture color: 64-bit or not. Packages of one name but different colors may
/// be co-installed (multilib).
fn is_64bit(arch: &str) -> bool {
    arch == "s390x" || arch.contains("64")
}

/// One solver name: the packages of one name and one architecture color.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SlotKey {
    name: String,
    /// The color other than the target's (`foo.i686` on `x86_64`); `noarch` is never secondary.
    secondary: bool,
}

/// All packages the solver may choose from.
#[derive(Debug)]
pub struct Universe {
    packages: Vec<Package>,
    /// Repository priority of each package (lower wins).
    priority: Vec<i32>,
    /// Position of each package's architecture in the compatibility list (`noarch`: 0).
    arch_rank: Vec<usize>,
    slots: Vec<SlotKey>,
    slot_of: HashMap<SlotKey, usize>,
    /// Members of each slot, best candidate first.
    slot_members: Vec<Vec<PackageId>>,
    package_slot: Vec<usize>,
    /// Position of each package within its slot's members.
    slot_rank: Vec<usize>,
    /// Package name -> its slots (primary first).
    by_name: HashMap<String, Vec<usize>>,
    /// Capability (own name, provided name, file path) -> packages having it, ascending.
    providers: HashMap<String, Vec<PackageId>>,
    /// Packages with Supplements.
    supplementing: Vec<PackageId>,
}

/// Whether two version ranges overlap, as rpm's `rpmdsCompare` decides it for a provide `a` and
/// a dependency `b` (both versioned).
fn ranges_overlap(a: (Cmp, &Evr), b: (Cmp, &Evr)) -> bool {
    let bits = |c: Cmp| match c {
        Cmp::Lt => (true, false, false),
        Cmp::Le => (true, true, false),
        Cmp::Eq => (false, true, false),
        Cmp::Ge => (false, true, true),
        Cmp::Gt => (false, false, true),
    };
    let (al, ae, ag) = bits(a.0);
    let (bl, be, bg) = bits(b.0);
    match a.1.cmp_dep(b.1) {
        Ordering::Less => ag || bl,
        Ordering::Greater => al || bg,
        Ordering::Equal => (ae && be) || (al && bl) || (ag && bg),
    }
}

/// Whether the capability `name [cmp evr]` (a provide; `None` = unversioned) satisfies `dep`.
fn provide_satisfies(version: Option<(Cmp, &Evr)>, dep: &Dep) -> bool {
    match (version, &dep.version) {
        (Some(p), Some((c, e))) => ranges_overlap(p, (*c, e)),
        // rpm and libsolv (rpm mode): an unversioned provide satisfies any version.
        _ => true,
    }
}

impl Universe {
    /// Builds a universe from `packages`; `priorities[p.repo]` is the zypper priority of each
    /// package's repository (lower wins; missing entries count as 99). Only packages `arch` can
    /// install are kept (see [`compatible_arches`]); a package listed twice (same name,
    /// architecture and EVR) is kept once, from the better repository.
    pub fn new(packages: Vec<Package>, priorities: &[i32], arch: &str) -> Universe {
        let arches = compatible_arches(arch);
        let target_64 = is_64bit(arches.first().copied().unwrap_or(arch));
        let prio = |p: &Package| priorities.get(p.repo).copied().unwrap_or(DEFAULT_PRIORITY);
        let rank = |a: &str| -> Option<usize> {
            if a == "noarch" {
                Some(0)
            } else {
                arches.iter().position(|&x| x == a)
            }
        };
        // Deduplicate: the best record of each (name, arch, evr) takes the first one's place.
        let mut keep = vec![false; packages.len()];
        {
            type Key<'a> = (&'a str, &'a str, u32, &'a str, Option<&'a str>);
            let mut seen: HashMap<Key, usize> = HashMap::new();
            for (i, p) in packages.iter().enumerate() {
                if rank(&p.arch).is_none() {
                    continue;
                }
                let key = (
                    p.name.as_str(),
                    p.arch.as_str(),
                    p.evr.epoch_or_zero(),
                    p.evr.version.as_str(),
                    p.evr.release.as_deref(),
                );
                match seen.get(&key) {
                    Some(&j) if prio(p) < prio(&packages[j]) => {
                        keep[j] = false;
                        keep[i] = true;
                        seen.insert(key, i);
                    }
                    Some(_) => {}
                    None => {
                        keep[i] = true;
                        seen.insert(key, i);
                    }
                }
            }
        }
        let packages: Vec<Package> = packages
            .into_iter()
            .zip(keep)
            .filter_map(|(p, k)| k.then_some(p))
            .collect();
        let priority: Vec<i32> = packages.iter().map(prio).collect();
        let arch_rank: Vec<usize> = packages
            .iter()
            .map(|p| rank(&p.arch).unwrap_or(usize::MAX))
            .collect();
        let mut u = Universe {
            packages,
            priority,
            arch_rank,
            slots: Vec::new(),
            slot_of: HashMap::new(),
            slot_members: Vec::new(),
            package_slot: Vec::new(),
            slot_rank: Vec::new(),
            by_name: HashMap::new(),
            providers: HashMap::new(),
            supplementing: Vec::new(),
        };
        for id in 0..u.packages.len() {
            let p = &u.packages[id];
            let key = SlotKey {
                name: p.name.clone(),
                secondary: p.arch != "noarch" && is_64bit(&p.arch) != target_64,
            };
            let slot = if let Some(&s) = u.slot_of.get(&key) {
                s
            } else {
                let s = u.slots.len();
                u.slots.push(key.clone());
                u.slot_of.insert(key, s);
                u.slot_members.push(Vec::new());
                u.by_name.entry(p.name.clone()).or_default().push(s);
                s
            };
            u.slot_members[slot].push(id);
            u.package_slot.push(slot);
            let caps = std::iter::once(&p.name)
                .chain(p.provides.iter().map(|d| &d.name))
                .chain(p.files.iter());
            for cap in caps {
                let list = u.providers.entry(cap.clone()).or_default();
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
            if !p.supplements.is_empty() {
                u.supplementing.push(id);
            }
        }
        let mut members = std::mem::take(&mut u.slot_members);
        for m in &mut members {
            m.sort_by(|&a, &b| u.preference(a, b));
        }
        u.slot_rank = vec![0; u.packages.len()];
        for m in &members {
            for (i, &id) in m.iter().enumerate() {
                u.slot_rank[id] = i;
            }
        }
        u.slot_members = members;
        let slots = &u.slots;
        for list in u.by_name.values_mut() {
            list.sort_by_key(|&s| slots[s].secondary);
        }
        for list in u.providers.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        u
    }

    /// libsolv's order within one name: repository priority, architecture, EVR; on a tie the
    /// real architecture before `noarch`, then index order.
    fn preference(&self, a: PackageId, b: PackageId) -> Ordering {
        let (pa, pb) = (&self.packages[a], &self.packages[b]);
        self.priority[a]
            .cmp(&self.priority[b])
            .then_with(|| self.arch_rank[a].cmp(&self.arch_rank[b]))
            .then_with(|| pb.evr.cmp_pkg(&pa.evr))
            .then_with(|| (pa.arch == "noarch").cmp(&(pb.arch == "noarch")))
            .then_with(|| a.cmp(&b))
    }

    /// The package with index `id`.
    pub fn package(&self, id: PackageId) -> &Package {
        &self.packages[id]
    }

    /// Every package, indexed by [`PackageId`].
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// Number of packages.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// True when the universe holds no package.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Whether `name` is a package name, a provided capability or a listed file.
    pub fn knows(&self, name: &str) -> bool {
        self.providers.contains_key(name)
    }

    /// The package or provided name closest to `name` (a typo's likely meaning), when one is
    /// close: at most a third of its characters edited, transpositions counting once. Ties go
    /// to package names, then to the first in byte order.
    pub fn closest(&self, name: &str) -> Option<&str> {
        let limit = (name.chars().count() / 3).max(1);
        self.providers
            .keys()
            .filter(|n| n.as_str() != name && !n.starts_with('/'))
            .map(|n| {
                let kind = u8::from(!self.by_name.contains_key(n));
                (strsim::osa_distance(name, n), kind, n.as_str())
            })
            .filter(|(d, _, _)| *d <= limit)
            .min()
            .map(|(_, _, n)| n)
    }

    /// The package `name` of `arch` whose EVR equals `evr` (`[epoch:]version-release`; an
    /// absent epoch is 0), if present.
    pub fn find(&self, name: &str, arch: &str, evr: &str) -> Option<PackageId> {
        let want = Evr::parse(evr);
        self.by_name.get(name)?.iter().find_map(|&s| {
            self.slot_members[s].iter().copied().find(|&id| {
                let p = &self.packages[id];
                p.arch == arch && p.evr.cmp_pkg(&want) == Ordering::Equal
            })
        })
    }

    /// Whether package `id` satisfies the simple dependency `dep`: by its own name and EVR, a
    /// provide, or (for a path) a file it contains.
    pub fn satisfies(&self, id: PackageId, dep: &Dep) -> bool {
        let p = &self.packages[id];
        if p.name == dep.name && provide_satisfies(Some((Cmp::Eq, &p.evr)), dep) {
            return true;
        }
        if dep.version.is_none() && dep.name.starts_with('/') && p.files.contains(&dep.name) {
            return true;
        }
        p.provides.iter().any(|prov| {
            prov.name == dep.name
                && provide_satisfies(prov.version.as_ref().map(|(c, e)| (*c, e)), dep)
        })
    }

    /// Whether package `id` is what `obs` obsoletes: libsolv matches obsoletes against package
    /// names and versions, not provides.
    fn obsoleted_by(&self, id: PackageId, obs: &Dep) -> bool {
        let p = &self.packages[id];
        p.name == obs.name && provide_satisfies(Some((Cmp::Eq, &p.evr)), obs)
    }

    /// Whether package `id` is in the set `atom` describes.
    fn holds(&self, atom: &Atom, id: PackageId) -> bool {
        match atom {
            Atom::Dep(d) => self.satisfies(id, d),
            Atom::Name(d) => self.obsoleted_by(id, d),
            Atom::With(v) => v.iter().all(|a| self.holds(a, id)),
            Atom::Without(a, b) => self.holds(a, id) && !self.holds(b, id),
            Atom::Any(v) => v.iter().any(|a| self.holds(a, id)),
        }
    }

    /// Slots holding at least one package of `atom`, unordered.
    fn atom_slots(&self, atom: &Atom) -> Vec<usize> {
        let mut out: Vec<usize> = match atom {
            Atom::Dep(d) => self
                .providers
                .get(&d.name)
                .into_iter()
                .flatten()
                .map(|&id| self.package_slot[id])
                .collect(),
            Atom::Name(d) => self.by_name.get(&d.name).cloned().unwrap_or_default(),
            Atom::With(v) => v.first().map(|a| self.atom_slots(a)).unwrap_or_default(),
            Atom::Without(a, _) => self.atom_slots(a),
            Atom::Any(v) => v.iter().flat_map(|a| self.atom_slots(a)).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out.retain(|&s| self.slot_members[s].iter().any(|&id| self.holds(atom, id)));
        out
    }

    /// The slots of `atom` in libsolv's preference order (see the module documentation).
    fn ordered_slots(&self, atom: &Atom, installed: &BTreeSet<PackageId>) -> Vec<usize> {
        let slots = self.atom_slots(atom);
        if slots.len() < 2 {
            return slots;
        }
        let best: Vec<PackageId> = slots
            .iter()
            .filter_map(|&s| self.best_in_slot(s, atom, installed))
            .collect();
        self.policy_order(&slots, &best, installed)
    }

    /// The best package of `slot` for `atom`: an installed one first, else the first member
    /// (members are sorted best first).
    fn best_in_slot(
        &self,
        slot: usize,
        atom: &Atom,
        installed: &BTreeSet<PackageId>,
    ) -> Option<PackageId> {
        let members = &self.slot_members[slot];
        members
            .iter()
            .copied()
            .find(|id| installed.contains(id) && self.holds(atom, *id))
            .or_else(|| members.iter().copied().find(|&id| self.holds(atom, id)))
    }

    /// The candidates of the positive atoms of one clause (an `or` of several) in one
    /// preference order, as libsolv sorts all candidates of a rule together: each slot with
    /// the index of the atom it is offered for.
    fn ordered_clause_slots(
        &self,
        atoms: &[&Atom],
        installed: &BTreeSet<PackageId>,
    ) -> Vec<(usize, usize)> {
        let mut slots = Vec::new();
        let mut best = Vec::new();
        let mut of_atom = Vec::new();
        for (i, atom) in atoms.iter().enumerate() {
            for s in self.atom_slots(atom) {
                if slots.contains(&s) {
                    continue;
                }
                if let Some(b) = self.best_in_slot(s, atom, installed) {
                    slots.push(s);
                    best.push(b);
                    of_atom.push(i);
                }
            }
        }
        let order = self.policy_order(&slots, &best, installed);
        order
            .into_iter()
            .map(|s| {
                let k = slots.iter().position(|&x| x == s).unwrap_or(0);
                (s, of_atom[k])
            })
            .collect()
    }

    /// `slots` (with `best`, the package each stands for) in libsolv's preference order.
    fn policy_order(
        &self,
        slots: &[usize],
        best: &[PackageId],
        installed: &BTreeSet<PackageId>,
    ) -> Vec<usize> {
        if slots.len() < 2 || best.len() != slots.len() {
            return slots.to_vec();
        }
        let obsoleted: Vec<bool> = best
            .iter()
            .map(|&i| {
                best.iter().any(|&j| {
                    let (pi, pj) = (&self.packages[i], &self.packages[j]);
                    pi.name != pj.name && pj.obsoletes.iter().any(|o| self.obsoleted_by(i, o))
                })
            })
            .collect();
        let badness = self.common_dep_badness(best);
        let mut order: Vec<usize> = (0..slots.len()).collect();
        order.sort_by(|&x, &y| {
            let (a, b) = (best[x], best[y]);
            (!installed.contains(&a))
                .cmp(&!installed.contains(&b))
                .then_with(|| self.priority[a].cmp(&self.priority[b]))
                .then_with(|| self.arch_rank[a].cmp(&self.arch_rank[b]))
                .then_with(|| obsoleted[x].cmp(&obsoleted[y]))
                .then_with(|| badness[x].cmp(&badness[y]))
                .then_with(|| self.packages[a].name.cmp(&self.packages[b].name))
                .then_with(|| {
                    self.slots[slots[x]]
                        .secondary
                        .cmp(&self.slots[slots[y]].secondary)
                })
        });
        order.into_iter().map(|i| slots[i]).collect()
    }

    /// libsolv's `sort_by_common_dep`: where candidates provide a common capability with
    /// `= version`, each one behind a higher version gets one point per step down.
    fn common_dep_badness(&self, cands: &[PackageId]) -> Vec<usize> {
        let mut entries: Vec<(&str, &Evr, usize)> = Vec::new();
        for (i, &id) in cands.iter().enumerate() {
            for prov in &self.packages[id].provides {
                let Some((Cmp::Eq, evr)) = &prov.version else {
                    continue;
                };
                // libsolv ignores hash-like versions (build ids, checksums).
                let v = &evr.version;
                if evr.release.is_none() && v.len() >= 4 && v.bytes().all(|c| c.is_ascii_hexdigit())
                {
                    continue;
                }
                entries.push((prov.name.as_str(), evr, i));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(b.0).then_with(|| b.1.cmp_dep(a.1)));
        let mut bad = vec![0usize; cands.len()];
        let mut step = 0;
        for k in 0..entries.len() {
            if k > 0 && entries[k].0 == entries[k - 1].0 {
                if entries[k].2 != entries[k - 1].2
                    && entries[k - 1].1.cmp_dep(entries[k].1) == Ordering::Greater
                {
                    step += 1;
                }
            } else {
                step = 0;
            }
            bad[entries[k].2] += step;
        }
        bad
    }

    /// Whether `req` holds on the package set `set`.
    fn eval(&self, req: &Requirement, set: &BTreeSet<PackageId>) -> bool {
        match req {
            Requirement::Simple(d) => self
                .providers
                .get(&d.name)
                .into_iter()
                .flatten()
                .any(|id| set.contains(id) && self.satisfies(*id, d)),
            Requirement::Rich(r) => match &**r {
                Rich::And(v) => v.iter().all(|x| self.eval(x, set)),
                Rich::Or(v) => v.iter().any(|x| self.eval(x, set)),
                Rich::If(a, b, c) => {
                    if self.eval(b, set) {
                        self.eval(a, set)
                    } else {
                        c.as_ref().is_none_or(|c| self.eval(c, set))
                    }
                }
                Rich::Unless(a, b, c) => {
                    if self.eval(b, set) {
                        c.as_ref().is_some_and(|c| self.eval(c, set))
                    } else {
                        self.eval(a, set)
                    }
                }
                Rich::With(_) | Rich::Without(..) => match atom_of(req) {
                    Ok(atom) => set.iter().any(|&id| self.holds(&atom, id)),
                    Err(_) => false,
                },
            },
        }
    }

    /// A package that would help `req` hold on `set`, not in `skip` and not excluded: the
    /// preferred one for the first unmet part, alternatives in the order written.
    fn wanted(
        &self,
        req: &Requirement,
        set: &BTreeSet<PackageId>,
        skip: &BTreeSet<PackageId>,
        excluded: &HashSet<&str>,
    ) -> Option<PackageId> {
        if self.eval(req, set) {
            return None;
        }
        let rich = match req {
            Requirement::Simple(_) => None,
            Requirement::Rich(r) => Some(&**r),
        };
        match rich {
            None | Some(Rich::With(_) | Rich::Without(..)) => {
                let atom = atom_of(req).ok()?;
                self.ordered_slots(&atom, &BTreeSet::new())
                    .into_iter()
                    .filter(|&s| !excluded.contains(self.slots[s].name.as_str()))
                    .find_map(|s| {
                        self.slot_members[s]
                            .iter()
                            .copied()
                            .find(|&id| self.holds(&atom, id))
                            .filter(|id| !skip.contains(id))
                    })
            }
            Some(Rich::And(v)) => v.iter().find_map(|x| self.wanted(x, set, skip, excluded)),
            Some(Rich::Or(v)) => v.iter().find_map(|x| self.wanted(x, set, skip, excluded)),
            Some(Rich::If(a, b, c)) => {
                if self.eval(b, set) {
                    self.wanted(a, set, skip, excluded)
                } else {
                    c.as_ref().and_then(|c| self.wanted(c, set, skip, excluded))
                }
            }
            Some(Rich::Unless(a, b, c)) => {
                if self.eval(b, set) {
                    c.as_ref().and_then(|c| self.wanted(c, set, skip, excluded))
                } else {
                    self.wanted(a, set, skip, excluded)
                }
            }
        }
    }

    /// Resolves `req`: the full set of packages to have installed, as zypper would choose them.
    pub fn solve(&self, req: &Request) -> Result<Resolution, SolveError> {
        let installed: BTreeSet<PackageId> = req.installed.iter().copied().collect();
        if let Some(&bad) = installed.iter().find(|&&id| id >= self.packages.len()) {
            return Err(SolveError::BadRequest {
                request: format!("installed package #{bad}"),
                message: format!("the universe holds {} packages", self.packages.len()),
            });
        }
        let excluded: HashSet<&str> = req.excluded.iter().map(String::as_str).collect();
        let provider = Provider::new(self, installed.clone());
        let mut requirements: Vec<ConditionalRequirement> = Vec::new();
        let mut constraints = Vec::new();
        for r in &req.install {
            if let Requirement::Simple(d) = r
                && !self.knows(&d.name)
            {
                return Err(SolveError::UnknownPackage {
                    name: d.name.clone(),
                });
            }
            let unsupported = |message: String| SolveError::Unsupported {
                requirement: r.to_string(),
                message,
            };
            // As zypper and dnf: a requested name that is a package's name means that package,
            // not whatever else provides the name.
            let cls = match r {
                Requirement::Simple(d) if self.by_name.contains_key(&d.name) => {
                    vec![vec![(Atom::Name(unflagged(d)), true)]]
                }
                _ => clauses(r).map_err(unsupported)?,
            };
            for clause in cls {
                match provider.encode(&clause, None, Kind::Requires) {
                    Encoded::Requirement(c) => requirements.push(c),
                    Encoded::Constraints(c) => constraints.extend(c),
                    Encoded::Nothing => {}
                }
            }
        }
        for &id in &installed {
            let slot = self.package_slot[id];
            requirements
                .push(SolverRequirement::Single(provider.intern(VSet::Any { slot })).into());
        }
        for name in &excluded {
            for &slot in self.by_name.get(*name).into_iter().flatten() {
                constraints.push(provider.intern(VSet::Nothing {
                    slot,
                    kind: Kind::Excluded,
                }));
            }
        }
        let mut solver = Solver::new(provider);
        let mut soft: Vec<PackageId> = Vec::new();
        let mut tried: BTreeSet<PackageId> = BTreeSet::new();
        let mut chosen = self.run(&mut solver, &requirements, &constraints, &soft)?;
        if req.weak {
            loop {
                // Weak dependencies: the preferred package of each unmet Recommends and each
                // package whose Supplements hold, until nothing new is wanted.
                let wanted = self.weak_wanted(&chosen, &installed, &excluded, &mut tried);
                if wanted.is_empty() {
                    break;
                }
                // First as hard requirements, so that they are decided as early as requested
                // packages (a `(b if c)` elsewhere must not rule out a recommended c); if that
                // fails, as soft ones, which the solver drops where they cannot be had. What was
                // tried and not chosen is not wanted again: the next choice is tried instead.
                let mut hard = requirements.clone();
                for &id in &wanted {
                    let slot = self.package_slot[id];
                    let vs = solver.provider().intern(VSet::Exact { slot, id });
                    hard.push(SolverRequirement::Single(vs).into());
                }
                match self.run(&mut solver, &hard, &constraints, &soft) {
                    Ok(c) => {
                        requirements = hard;
                        chosen = c;
                    }
                    Err(SolveError::Unsolvable { .. }) => {
                        soft.extend(wanted);
                        chosen = self.run(&mut solver, &requirements, &constraints, &soft)?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self.resolution(chosen))
    }

    /// One resolvo run: the chosen packages, or why there are none.
    fn run(
        &self,
        solver: &mut Solver<Provider<'_>>,
        requirements: &[ConditionalRequirement],
        constraints: &[VersionSetId],
        soft: &[PackageId],
    ) -> Result<BTreeSet<PackageId>, SolveError> {
        let problem = Problem::new()
            .requirements(requirements.to_vec())
            .constraints(constraints.to_vec())
            .soft_requirements(soft.iter().map(|&id| SolvableId::from_index(id)));
        match solver.solve(problem) {
            // Synthetic solvables (absences) are no packages.
            Ok(s) => Ok(s
                .into_iter()
                .map(DenseIndex::to_index)
                .filter(|&id| id < self.packages.len())
                .collect()),
            Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
                let explanation = conflict.display_user_friendly(solver).to_string();
                let graph = conflict.graph(solver);
                let mut involved: Vec<String> = graph
                    .graph
                    .node_weights()
                    .filter_map(|n| match n {
                        resolvo::conflict::ConflictNode::Solvable(s) => {
                            self.packages.get(s.to_index()).map(|p| p.name.clone())
                        }
                        _ => None,
                    })
                    .collect();
                involved.sort();
                involved.dedup();
                Err(SolveError::Unsolvable {
                    explanation,
                    involved,
                })
            }
            Err(UnsolvableOrCancelled::Cancelled(_)) => Err(SolveError::Cancelled),
        }
    }

    /// The packages weak dependencies ask for on top of `chosen`, not tried before (they are
    /// added to `tried`): the preferred satisfier of each unmet Recommends of a newly chosen
    /// package, and the best package of each slot whose Supplements hold.
    fn weak_wanted(
        &self,
        chosen: &BTreeSet<PackageId>,
        installed: &BTreeSet<PackageId>,
        excluded: &HashSet<&str>,
        tried: &mut BTreeSet<PackageId>,
    ) -> Vec<PackageId> {
        let mut wanted = Vec::new();
        for &id in chosen.iter().filter(|id| !installed.contains(id)) {
            for r in &self.packages[id].recommends {
                if let Some(best) = self.wanted(r, chosen, tried, excluded) {
                    tried.insert(best);
                    wanted.push(best);
                }
            }
        }
        let mut seen_slots = BTreeSet::new();
        for &id in &self.supplementing {
            let slot = self.package_slot[id];
            if tried.contains(&id)
                || excluded.contains(self.packages[id].name.as_str())
                || self.slot_members[slot].iter().any(|m| chosen.contains(m))
                || seen_slots.contains(&slot)
            {
                continue;
            }
            let supplementing = |m: PackageId| {
                self.packages[m]
                    .supplements
                    .iter()
                    .any(|s| self.eval(s, chosen))
            };
            if supplementing(id) {
                let best = self.slot_members[slot]
                    .iter()
                    .copied()
                    .find(|&m| !tried.contains(&m) && supplementing(m))
                    .unwrap_or(id);
                seen_slots.insert(slot);
                tried.insert(best);
                wanted.push(best);
            }
        }
        wanted
    }

    fn resolution(&self, chosen: BTreeSet<PackageId>) -> Resolution {
        let mut packages: Vec<PackageId> = chosen.into_iter().collect();
        packages.sort_by(|&a, &b| self.name_order(a, b));
        Resolution { packages }
    }

    fn name_order(&self, a: PackageId, b: PackageId) -> Ordering {
        let (pa, pb) = (&self.packages[a], &self.packages[b]);
        (&pa.name, &pa.arch, a).cmp(&(&pb.name, &pb.arch, b))
    }

    /// Orders `packages` as rpm's transaction does: every package after what it requires,
    /// strictly after its prerequisites (`Requires(pre)`/`(post)`, the `pre` flag); dependency
    /// loops are broken at ordinary edges, ties by name, so the order is deterministic. This is
    /// the order scriptlets run in.
    pub fn install_order(&self, packages: &[PackageId]) -> Vec<PackageId> {
        let mut nodes: Vec<PackageId> = packages.to_vec();
        nodes.sort_by(|&a, &b| self.name_order(a, b));
        nodes.dedup();
        let index: HashMap<PackageId, usize> =
            nodes.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let n = nodes.len();
        let mut edges: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
        for (i, &id) in nodes.iter().enumerate() {
            for r in &self.packages[id].requires {
                let mut deps = Vec::new();
                ordering_deps(r, &mut deps);
                for d in deps {
                    // The first satisfier in name order, as rpm takes the first provider.
                    let target = self
                        .providers
                        .get(&d.name)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| index.get(t).copied())
                        .filter(|&j| self.satisfies(nodes[j], d))
                        .min();
                    if let Some(j) = target
                        && j != i
                    {
                        let strict = d.pre;
                        if let Some(e) = edges[i].iter_mut().find(|e| e.0 == j) {
                            e.1 |= strict;
                        } else {
                            edges[i].push((j, strict));
                        }
                    }
                }
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut placed = vec![false; n];
        for comp in crate::apt::solver::tarjan(n, &edges) {
            let mut remaining: Vec<usize> = comp;
            remaining.sort_unstable();
            while !remaining.is_empty() {
                let ready = |strict_only: bool| {
                    remaining.iter().position(|&i| {
                        edges[i]
                            .iter()
                            .all(|&(j, strict)| placed[j] || (strict_only && !strict))
                    })
                };
                let pick = ready(false).or_else(|| ready(true)).unwrap_or(0);
                let i = remaining.remove(pick);
                placed[i] = true;
                order.push(nodes[i]);
            }
        }
        order
    }
}

/// The simple dependencies of `r` that order a transaction: all of them, except the
/// conditions of `if`/`unless` (a condition is something else's business) and what `without`
/// excludes.
fn ordering_deps<'r>(r: &'r Requirement, out: &mut Vec<&'r Dep>) {
    match r {
        Requirement::Simple(d) => out.push(d),
        Requirement::Rich(rich) => match &**rich {
            Rich::And(v) | Rich::Or(v) | Rich::With(v) => {
                for x in v {
                    ordering_deps(x, out);
                }
            }
            Rich::Without(a, _) => ordering_deps(a, out),
            Rich::If(a, _, c) | Rich::Unless(a, _, c) => {
                ordering_deps(a, out);
                if let Some(c) = c {
                    ordering_deps(c, out);
                }
            }
        },
    }
}

/// A set of packages a literal of a rich dependency talks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Atom {
    /// Packages satisfying a simple dependency (by name, provide or file).
    Dep(Dep),
    /// Packages an Obsoletes entry names (by package name and version only).
    Name(Dep),
    /// Packages in every set.
    With(Vec<Atom>),
    /// Packages in the first set but not the second.
    Without(Box<Atom>, Box<Atom>),
    /// Packages in any set (`or` inside `with`).
    Any(Vec<Atom>),
}

fn unflagged(d: &Dep) -> Dep {
    Dep {
        pre: false,
        ..d.clone()
    }
}

/// The package set a simple dependency or a `with`/`without`/`or` expression of them names.
fn atom_of(r: &Requirement) -> Result<Atom, String> {
    match r {
        Requirement::Simple(d) => Ok(Atom::Dep(unflagged(d))),
        Requirement::Rich(rich) => match &**rich {
            Rich::With(v) => Ok(Atom::With(v.iter().map(atom_of).collect::<Result<_, _>>()?)),
            Rich::Or(v) => Ok(Atom::Any(v.iter().map(atom_of).collect::<Result<_, _>>()?)),
            Rich::Without(a, b) => Ok(Atom::Without(Box::new(atom_of(a)?), Box::new(atom_of(b)?))),
            Rich::And(v) if v.len() == 1 => atom_of(&v[0]),
            _ => Err(format!(
                "{r} does not name a set of packages inside with/without"
            )),
        },
    }
}

/// A boolean formula over package sets, negations pushed to the literals.
#[derive(Debug, Clone)]
enum Formula {
    Lit(Atom, bool),
    And(Vec<Formula>),
    Or(Vec<Formula>),
}

impl Formula {
    fn not(self) -> Formula {
        match self {
            Formula::Lit(a, pos) => Formula::Lit(a, !pos),
            Formula::And(v) => Formula::Or(v.into_iter().map(Formula::not).collect()),
            Formula::Or(v) => Formula::And(v.into_iter().map(Formula::not).collect()),
        }
    }
}

/// rpm's and libsolv's meaning of a requirement as a formula.
fn formula(r: &Requirement) -> Result<Formula, String> {
    let Requirement::Rich(rich) = r else {
        return Ok(Formula::Lit(atom_of(r)?, true));
    };
    let all = |v: &[Requirement]| v.iter().map(formula).collect::<Result<Vec<_>, _>>();
    Ok(match &**rich {
        Rich::With(_) | Rich::Without(..) => Formula::Lit(atom_of(r)?, true),
        Rich::And(v) => Formula::And(all(v)?),
        Rich::Or(v) => Formula::Or(all(v)?),
        // A if B = A or not B; A if B else C = (A or not B) and (C or B).
        Rich::If(a, b, c) => {
            let first = Formula::Or(vec![formula(a)?, formula(b)?.not()]);
            match c {
                None => first,
                Some(c) => Formula::And(vec![first, Formula::Or(vec![formula(c)?, formula(b)?])]),
            }
        }
        // A unless B = A and not B; A unless B else C = (A and not B) or (C and B).
        Rich::Unless(a, b, c) => {
            let first = Formula::And(vec![formula(a)?, formula(b)?.not()]);
            match c {
                None => first,
                Some(c) => Formula::Or(vec![first, Formula::And(vec![formula(c)?, formula(b)?])]),
            }
        }
    })
}

/// A disjunction of literals: package sets, each required (`true`) or excluded (`false`).
type Clause = Vec<(Atom, bool)>;

/// Conjunctive normal forms larger than this are refused (distribution can explode).
const MAX_CLAUSES: usize = 256;

fn cnf(f: &Formula) -> Result<Vec<Clause>, String> {
    match f {
        Formula::Lit(a, pos) => Ok(vec![vec![(a.clone(), *pos)]]),
        Formula::And(v) => {
            let mut out = Vec::new();
            for x in v {
                out.extend(cnf(x)?);
                if out.len() > MAX_CLAUSES {
                    return Err("too many alternatives to expand".into());
                }
            }
            Ok(out)
        }
        Formula::Or(v) => {
            let mut acc: Vec<Clause> = vec![Vec::new()];
            for x in v {
                let part = cnf(x)?;
                let mut next = Vec::new();
                for c1 in &acc {
                    for c2 in &part {
                        let mut c = c1.clone();
                        for lit in c2 {
                            if !c.contains(lit) {
                                c.push(lit.clone());
                            }
                        }
                        // `x or not x` always holds: drop the clause.
                        let tautology = c.iter().any(|(a, p)| c.contains(&(a.clone(), !p)));
                        if !tautology {
                            next.push(c);
                        }
                    }
                }
                if next.len() > MAX_CLAUSES {
                    return Err("too many alternatives to expand".into());
                }
                acc = next;
            }
            Ok(acc)
        }
    }
}

/// The clauses a requirement stands for.
fn clauses(r: &Requirement) -> Result<Vec<Clause>, String> {
    cnf(&formula(r)?)
}

/// Which relation a version set comes from, for explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Requires,
    Conflicts,
    Obsoletes,
    Excluded,
    Multilib,
}

/// A set of candidates within one solver name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum VSet {
    /// Members in package set `atom` (interned).
    Match { slot: usize, atom: usize },
    /// Members not in `atom`, plus `except` itself: the allowed set under a Conflicts,
    /// Obsoletes or negated requirement of `except`.
    NotMatch {
        slot: usize,
        atom: usize,
        except: Option<PackageId>,
        kind: Kind,
    },
    /// Every member.
    Any { slot: usize },
    /// No member.
    Nothing { slot: usize, kind: Kind },
    /// Members other than `noarch` ones (a foreign-color package excludes them).
    NotNoarch { slot: usize },
    /// The synthetic solvable of an [`Extra::Absent`] name.
    Absent { slot: usize },
    /// Exactly package `id` (a weak dependency asked for as a hard one).
    Exact { slot: usize, id: PackageId },
}

impl VSet {
    fn slot(&self) -> usize {
        match *self {
            VSet::Match { slot, .. }
            | VSet::NotMatch { slot, .. }
            | VSet::Any { slot }
            | VSet::Nothing { slot, .. }
            | VSet::NotNoarch { slot }
            | VSet::Absent { slot }
            | VSet::Exact { slot, .. } => slot,
        }
    }
}

#[derive(Default)]
struct Tables {
    atoms: Vec<Atom>,
    atom_ids: HashMap<Atom, usize>,
    vsets: Vec<VSet>,
    vset_ids: HashMap<VSet, VersionSetId>,
    unions: Vec<Vec<VersionSetId>>,
    /// Interned atom -> its slots in preference order.
    ordered: HashMap<usize, Vec<usize>>,
    /// Solver names beyond the universe's slots, numbered after them.
    extra: Vec<Extra>,
    strings: Vec<String>,
}

/// A solver name that is not a slot of the universe.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Extra {
    /// A dependency nothing provides, so that explanations can name it.
    Phantom(String),
    /// The absence of interned atom `.0` (from relation `.1`): one synthetic solvable, numbered
    /// `packages.len() + index`, that constrains every slot of the atom to packages outside it.
    /// It turns "not installed" into something a requirement can ask for.
    Absent(usize, Kind),
}

/// How one clause is expressed to resolvo.
enum Encoded {
    Requirement(ConditionalRequirement),
    Constraints(Vec<VersionSetId>),
    /// The clause always holds (it negates a set no package is in).
    Nothing,
}

/// The resolvo view of a [`Universe`].
struct Provider<'u> {
    u: &'u Universe,
    installed: BTreeSet<PackageId>,
    t: RefCell<Tables>,
}

/// resolvo's ids are u32; four billion interned items would exhaust memory first.
#[allow(clippy::cast_possible_truncation)]
fn id32(n: usize) -> u32 {
    n as u32
}

impl<'u> Provider<'u> {
    fn new(u: &'u Universe, installed: BTreeSet<PackageId>) -> Self {
        Provider {
            u,
            installed,
            t: RefCell::new(Tables::default()),
        }
    }

    fn intern(&self, vs: VSet) -> VersionSetId {
        let mut t = self.t.borrow_mut();
        if let Some(&id) = t.vset_ids.get(&vs) {
            return id;
        }
        let id = VersionSetId(id32(t.vsets.len()));
        t.vsets.push(vs.clone());
        t.vset_ids.insert(vs, id);
        id
    }

    fn intern_atom(&self, atom: &Atom) -> usize {
        let mut t = self.t.borrow_mut();
        if let Some(&id) = t.atom_ids.get(atom) {
            return id;
        }
        let id = t.atoms.len();
        t.atoms.push(atom.clone());
        t.atom_ids.insert(atom.clone(), id);
        id
    }

    fn intern_string(&self, s: String) -> StringId {
        let mut t = self.t.borrow_mut();
        t.strings.push(s);
        StringId(id32(t.strings.len() - 1))
    }

    fn extra_slot(&self, e: Extra) -> usize {
        let mut t = self.t.borrow_mut();
        let base = self.u.slots.len();
        if let Some(i) = t.extra.iter().position(|x| *x == e) {
            return base + i;
        }
        t.extra.push(e);
        base + t.extra.len() - 1
    }

    fn phantom_slot(&self, name: &str) -> usize {
        self.extra_slot(Extra::Phantom(name.to_string()))
    }

    /// The extra name `slot` stands for, when it is not a slot of the universe.
    fn extra(&self, slot: usize) -> Option<Extra> {
        let i = slot.checked_sub(self.u.slots.len())?;
        self.t.borrow().extra.get(i).cloned()
    }

    /// The synthetic solvable of an [`Extra::Absent`] name, and back.
    fn absent_solvable(&self, slot: usize) -> PackageId {
        self.u.packages.len() + (slot - self.u.slots.len())
    }

    fn is_synthetic(&self, id: PackageId) -> bool {
        id >= self.u.packages.len()
    }

    fn synthetic_slot(&self, id: PackageId) -> usize {
        self.u.slots.len() + (id - self.u.packages.len())
    }

    /// Bare name of `slot` (a slot's package name, or what an extra name stands for).
    fn bare_name(&self, slot: usize) -> String {
        match self.u.slots.get(slot) {
            Some(k) => k.name.clone(),
            None => match self.extra(slot) {
                Some(Extra::Phantom(n)) => n,
                Some(Extra::Absent(a, _)) => format!("no {}", atom_text(&self.t.borrow().atoms[a])),
                None => String::new(),
            },
        }
    }

    fn slot_name(&self, slot: usize) -> String {
        match self.u.slots.get(slot) {
            Some(k) if k.secondary => format!("{} (multilib)", k.name),
            _ => self.bare_name(slot),
        }
    }

    /// The slots of interned atom `a` in preference order, computed once per solve.
    fn ordered_slots(&self, a: usize) -> Vec<usize> {
        if let Some(slots) = self.t.borrow().ordered.get(&a) {
            return slots.clone();
        }
        let atom = self.t.borrow().atoms[a].clone();
        let slots = self.u.ordered_slots(&atom, &self.installed);
        self.t.borrow_mut().ordered.insert(a, slots.clone());
        slots
    }

    /// Expresses one clause of a requirement of `owner` (`None`: the request itself).
    fn encode(&self, clause: &Clause, owner: Option<PackageId>, kind: Kind) -> Encoded {
        let mut sets: Vec<VersionSetId> = Vec::new();
        let mut first_pos: Option<&Atom> = None;
        let mut negated: Vec<(&Atom, Vec<usize>)> = Vec::new();
        let positive: Vec<&Atom> = clause.iter().filter(|(_, p)| *p).map(|(a, _)| a).collect();
        if positive.len() > 1 {
            // Several alternatives: their candidates in one order, as libsolv ranks them.
            for (slot, i) in self.u.ordered_clause_slots(&positive, &self.installed) {
                let a = self.intern_atom(positive[i]);
                let vs = self.intern(VSet::Match { slot, atom: a });
                if !sets.contains(&vs) {
                    sets.push(vs);
                }
            }
        }
        for (atom, pos) in clause {
            if *pos {
                first_pos.get_or_insert(atom);
                if positive.len() > 1 {
                    continue;
                }
                let a = self.intern_atom(atom);
                for slot in self.ordered_slots(a) {
                    let vs = self.intern(VSet::Match { slot, atom: a });
                    if !sets.contains(&vs) {
                        sets.push(vs);
                    }
                }
            } else {
                let slots = self.u.atom_slots(atom);
                if slots.is_empty() {
                    // Nothing is in the negated set: the clause holds.
                    return Encoded::Nothing;
                }
                negated.push((atom, slots));
            }
        }
        if let ([(atom, slots)], None) = (negated.as_slice(), first_pos) {
            // A single negation: a constraint on the slots of the set.
            let a = self.intern_atom(atom);
            return Encoded::Constraints(
                slots
                    .iter()
                    .map(|&slot| {
                        self.intern(VSet::NotMatch {
                            slot,
                            atom: a,
                            except: owner,
                            kind,
                        })
                    })
                    .collect(),
            );
        }
        // Negations become absences, offered before the packages: `(b if c)` prefers leaving
        // c out to installing b, as libsolv installs no b for a c it does not have.
        let mut union: Vec<VersionSetId> = negated
            .iter()
            .map(|(atom, _)| {
                let slot = self.extra_slot(Extra::Absent(self.intern_atom(atom), kind));
                self.intern(VSet::Absent { slot })
            })
            .collect();
        if sets.is_empty() {
            // Nothing satisfies the positive part: keep a set on a named slot so that the
            // explanation names it.
            let atom = first_pos
                .cloned()
                .unwrap_or_else(|| Atom::Dep(Dep::named("(empty rich dependency)")));
            union.push(self.unsatisfiable(&atom));
        } else {
            union.extend(sets);
        }
        let requirement = if union.len() == 1 {
            SolverRequirement::Single(union[0])
        } else {
            let mut t = self.t.borrow_mut();
            let id = VersionSetUnionId(id32(t.unions.len()));
            t.unions.push(union);
            SolverRequirement::Union(id)
        };
        Encoded::Requirement(requirement.into())
    }

    /// A version set on `atom`, which nothing satisfies, on a slot named after it so that the
    /// explanation names it.
    fn unsatisfiable(&self, atom: &Atom) -> VersionSetId {
        let name = first_name(atom);
        let slot = match self.u.by_name.get(name).and_then(|s| s.first()) {
            Some(&s) => s,
            None => self.phantom_slot(name),
        };
        let atom = self.intern_atom(atom);
        self.intern(VSet::Match { slot, atom })
    }

    fn in_set(&self, vs: &VSet, id: PackageId) -> bool {
        if self.is_synthetic(id) {
            return matches!(vs, VSet::Absent { .. });
        }
        let t = self.t.borrow();
        match *vs {
            VSet::Match { atom, .. } => self.u.holds(&t.atoms[atom], id),
            VSet::NotMatch { atom, except, .. } => {
                Some(id) == except || !self.u.holds(&t.atoms[atom], id)
            }
            VSet::Any { .. } => true,
            VSet::Nothing { .. } | VSet::Absent { .. } => false,
            VSet::NotNoarch { .. } => self.u.packages[id].arch != "noarch",
            VSet::Exact { id: want, .. } => id == want,
        }
    }

    fn dependencies(&self, id: PackageId) -> Result<KnownDependencies, String> {
        let u = self.u;
        let p = &u.packages[id];
        let mut deps = KnownDependencies::default();
        for r in &p.requires {
            let cls = clauses(r).map_err(|m| format!("{r}: {m}"))?;
            for clause in &cls {
                match self.encode(clause, Some(id), Kind::Requires) {
                    Encoded::Requirement(c) => deps.requirements.push(c),
                    Encoded::Constraints(c) => deps.constrains.extend(c),
                    Encoded::Nothing => {}
                }
            }
        }
        let own = u.package_slot[id];
        for d in &p.conflicts {
            if d.name.starts_with('(') {
                // A rich conflict (primary.xml spells it as a name): its negation must hold.
                let negated = parse_requirement(&d.name)
                    .map_err(|e| e.to_string())
                    .and_then(|r| formula(&r))
                    .and_then(|f| cnf(&f.not()))
                    .map_err(|m| format!("Conflicts {}: {m}", d.name))?;
                for clause in &negated {
                    match self.encode(clause, Some(id), Kind::Conflicts) {
                        Encoded::Requirement(c) => deps.requirements.push(c),
                        Encoded::Constraints(c) => deps.constrains.extend(c),
                        Encoded::Nothing => {}
                    }
                }
                continue;
            }
            let atom = Atom::Dep(unflagged(d));
            let a = self.intern_atom(&atom);
            for slot in u.atom_slots(&atom) {
                deps.constrains.push(self.intern(VSet::NotMatch {
                    slot,
                    atom: a,
                    except: Some(id),
                    kind: Kind::Conflicts,
                }));
            }
        }
        for d in &p.obsoletes {
            let atom = Atom::Name(unflagged(d));
            let a = self.intern_atom(&atom);
            for slot in u.atom_slots(&atom).into_iter().filter(|&s| s != own) {
                deps.constrains.push(self.intern(VSet::NotMatch {
                    slot,
                    atom: a,
                    except: Some(id),
                    kind: Kind::Obsoletes,
                }));
            }
        }
        // Multilib: a noarch package excludes the other color of its name, and the other
        // color excludes the noarch packages of the name.
        for &slot in u.by_name.get(&p.name).into_iter().flatten() {
            if slot == own {
                continue;
            }
            if p.arch == "noarch" {
                deps.constrains.push(self.intern(VSet::Nothing {
                    slot,
                    kind: Kind::Multilib,
                }));
            } else if u.slots[own].secondary && !u.slots[slot].secondary {
                deps.constrains.push(self.intern(VSet::NotNoarch { slot }));
            }
        }
        deps.constrains.dedup();
        Ok(deps)
    }
}

/// The first capability name an atom mentions.
fn first_name(a: &Atom) -> &str {
    match a {
        Atom::Dep(d) | Atom::Name(d) => &d.name,
        Atom::With(v) | Atom::Any(v) => v.first().map_or("", first_name),
        Atom::Without(x, _) => first_name(x),
    }
}

/// An atom as rpm would write it.
fn atom_text(a: &Atom) -> String {
    let join = |v: &[Atom], op: &str| {
        format!("({})", v.iter().map(atom_text).collect::<Vec<_>>().join(op))
    };
    match a {
        Atom::Dep(d) | Atom::Name(d) => d.to_string(),
        Atom::With(v) => join(v, " with "),
        Atom::Any(v) => join(v, " or "),
        Atom::Without(x, y) => format!("({} without {})", atom_text(x), atom_text(y)),
    }
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl Display + '_ {
        let id = solvable.to_index();
        match self.u.packages.get(id) {
            Some(p) => p.nevra(),
            None => format!("({})", self.bare_name(self.synthetic_slot(id))),
        }
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        let Some(first) = solvables.first() else {
            return String::new();
        };
        let Some(p) = self.u.packages.get(first.to_index()) else {
            return self.display_solvable(*first).to_string();
        };
        let mut versions: Vec<String> = solvables
            .iter()
            .filter_map(|s| self.u.packages.get(s.to_index()))
            .map(|p| format!("{}.{}", p.evr, p.arch))
            .collect();
        versions.sort();
        versions.dedup();
        format!("{}-{}", p.name, versions.join(" | "))
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        self.slot_name(name.to_index())
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let t = self.t.borrow();
        let Some(vs) = t.vsets.get(version_set.0 as usize) else {
            return String::new();
        };
        let slot = vs.slot();
        let vs = vs.clone();
        drop(t);
        let name = self.bare_name(slot);
        let t = self.t.borrow();
        match vs {
            VSet::Match { atom, .. } => match &t.atoms[atom] {
                Atom::Dep(d) if d.name == name => match &d.version {
                    Some((c, e)) => format!("{} {e}", c.as_str()),
                    None => "*".to_string(),
                },
                a => format!("(providing {})", atom_text(a)),
            },
            VSet::NotMatch { atom, kind, .. } => {
                let what = match kind {
                    Kind::Conflicts => "Conflicts",
                    Kind::Obsoletes => "Obsoletes",
                    _ => "Requires",
                };
                format!("(excluded by {what}: {})", atom_text(&t.atoms[atom]))
            }
            VSet::Any { .. } => "*".to_string(),
            VSet::Nothing {
                kind: Kind::Excluded,
                ..
            } => "(excluded from installation)".to_string(),
            VSet::Absent { .. } => "(none installed)".to_string(),
            VSet::Exact { id, .. } => self.u.packages[id].evr.to_string(),
            VSet::Nothing { .. } | VSet::NotNoarch { .. } => {
                "(not co-installable with the other architecture)".to_string()
            }
        }
    }

    fn display_string(&self, string_id: StringId) -> impl Display + '_ {
        self.t
            .borrow()
            .strings
            .get(string_id.0 as usize)
            .cloned()
            .unwrap_or_default()
    }

    fn version_set_name(&self, version_set: VersionSetId) -> NameId {
        let slot = self
            .t
            .borrow()
            .vsets
            .get(version_set.0 as usize)
            .map_or(0, VSet::slot);
        NameId::from_index(slot)
    }

    fn solvable_name(&self, solvable: SolvableId) -> NameId {
        let id = solvable.to_index();
        match self.u.package_slot.get(id) {
            Some(&slot) => NameId::from_index(slot),
            None => NameId::from_index(self.synthetic_slot(id)),
        }
    }

    fn version_sets_in_union(
        &self,
        version_set_union: VersionSetUnionId,
    ) -> impl Iterator<Item = VersionSetId> {
        self.t
            .borrow()
            .unions
            .get(version_set_union.0 as usize)
            .cloned()
            .unwrap_or_default()
            .into_iter()
    }

    fn resolve_condition(&self, _condition: ConditionId) -> Condition {
        // No requirement built here carries a condition (negations are absences, see
        // `Extra::Absent`), so resolvo never asks; answer without panicking.
        Condition::Requirement(VersionSetId(0))
    }
}

impl DependencyProvider for Provider<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        version_set: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let Some(vs) = self.t.borrow().vsets.get(version_set.0 as usize).cloned() else {
            return Vec::new();
        };
        candidates
            .iter()
            .copied()
            .filter(|s| self.in_set(&vs, s.to_index()) != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates<SolvableId>> {
        let slot = name.to_index();
        let Some(members) = self.u.slot_members.get(slot) else {
            return Some(match self.extra(slot) {
                Some(Extra::Absent(..)) => Candidates {
                    candidates: vec![SolvableId::from_index(self.absent_solvable(slot))],
                    ..Candidates::default()
                },
                _ => Candidates::default(),
            });
        };
        Some(Candidates {
            candidates: members
                .iter()
                .map(|&id| SolvableId::from_index(id))
                .collect(),
            favored: members
                .iter()
                .find(|id| self.installed.contains(id))
                .map(|&id| SolvableId::from_index(id)),
            ..Candidates::default()
        })
    }

    async fn sort_candidates(&self, _solver: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        solvables.sort_by_key(|s| {
            let id = s.to_index();
            (
                !self.installed.contains(&id),
                self.u.slot_rank.get(id).copied().unwrap_or(0),
            )
        });
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        let id = solvable.to_index();
        if self.is_synthetic(id) {
            // An absence: every slot of its atom holds only packages outside the atom.
            let mut deps = KnownDependencies::default();
            if let Some(Extra::Absent(a, kind)) = self.extra(self.synthetic_slot(id)) {
                let atom = self.t.borrow().atoms[a].clone();
                for slot in self.u.atom_slots(&atom) {
                    deps.constrains.push(self.intern(VSet::NotMatch {
                        slot,
                        atom: a,
                        except: None,
                        kind,
                    }));
                }
            }
            return Dependencies::Known(deps);
        }
        match self.dependencies(id) {
            Ok(deps) => Dependencies::Known(deps),
            Err(message) => Dependencies::Unknown(self.intern_string(format!(
                "{} has a dependency the solver cannot express: {message}",
                self.u.packages[id].nevra()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpm::package::Checksum;

    /// A package under construction; dependencies in rpm's syntax.
    struct P(Package);

    fn pkg(name: &str, evr: &str, arch: &str) -> P {
        P(Package {
            name: name.to_string(),
            arch: arch.to_string(),
            evr: Evr::parse(evr),
            checksum: Checksum {
                kind: "sha256".into(),
                hex: String::new(),
            },
            location: format!("{name}.rpm"),
            location_base: None,
            size: 0,
            installed_size: 0,
            summary: String::new(),
            license: String::new(),
            vendor: String::new(),
            url: None,
            sourcerpm: String::new(),
            buildtime: 0,
            provides: Vec::new(),
            requires: Vec::new(),
            conflicts: Vec::new(),
            obsoletes: Vec::new(),
            recommends: Vec::new(),
            suggests: Vec::new(),
            supplements: Vec::new(),
            enhances: Vec::new(),
            files: Vec::new(),
            repo: 0,
        })
    }

    fn req(s: &str) -> Requirement {
        parse_requirement(s).unwrap()
    }

    fn dep(s: &str) -> Dep {
        match req(s) {
            Requirement::Simple(d) => d,
            Requirement::Rich(_) => panic!("{s} is not simple"),
        }
    }

    impl P {
        fn requires(mut self, s: &str) -> P {
            self.0.requires.push(req(s));
            self
        }
        fn prereq(mut self, s: &str) -> P {
            let mut d = dep(s);
            d.pre = true;
            self.0.requires.push(Requirement::Simple(d));
            self
        }
        fn provides(mut self, s: &str) -> P {
            self.0.provides.push(dep(s));
            self
        }
        fn conflicts(mut self, s: &str) -> P {
            // primary.xml carries a rich conflict as an entry whose name is the expression.
            let d = if s.starts_with('(') {
                Dep::named(s)
            } else {
                dep(s)
            };
            self.0.conflicts.push(d);
            self
        }
        fn obsoletes(mut self, s: &str) -> P {
            self.0.obsoletes.push(dep(s));
            self
        }
        fn recommends(mut self, s: &str) -> P {
            self.0.recommends.push(req(s));
            self
        }
        fn supplements(mut self, s: &str) -> P {
            self.0.supplements.push(req(s));
            self
        }
        fn file(mut self, f: &str) -> P {
            self.0.files.push(f.to_string());
            self
        }
        fn repo(mut self, r: usize) -> P {
            self.0.repo = r;
            self
        }
    }

    fn universe(ps: Vec<P>, prios: &[i32], arch: &str) -> Universe {
        Universe::new(ps.into_iter().map(|p| p.0).collect(), prios, arch)
    }

    fn x86(ps: Vec<P>) -> Universe {
        universe(ps, &[99], "x86_64")
    }

    fn names(u: &Universe, r: &Resolution) -> Vec<String> {
        r.packages.iter().map(|&id| u.package(id).nevra()).collect()
    }

    fn solve(u: &Universe, want: &[&str]) -> Result<Vec<String>, SolveError> {
        u.solve(&Request::install(want)?).map(|r| names(u, &r))
    }

    fn solve_req(u: &Universe, r: &Request) -> Vec<String> {
        names(u, &u.solve(r).unwrap())
    }

    #[test]
    fn range_overlap_follows_rpm() {
        let e = Evr::parse;
        // provide foo = 1.5 against foo >= 2: no; against foo < 2: yes.
        assert!(!ranges_overlap((Cmp::Eq, &e("1.5")), (Cmp::Ge, &e("2"))));
        assert!(ranges_overlap((Cmp::Eq, &e("1.5")), (Cmp::Lt, &e("2"))));
        // Two open ranges overlap unless they point away from each other.
        assert!(ranges_overlap((Cmp::Ge, &e("1")), (Cmp::Le, &e("2"))));
        assert!(!ranges_overlap((Cmp::Le, &e("1")), (Cmp::Ge, &e("2"))));
        assert!(!ranges_overlap((Cmp::Lt, &e("2")), (Cmp::Gt, &e("2"))));
        // A release missing on the dependency side is not compared.
        assert!(ranges_overlap((Cmp::Eq, &e("2.0-7")), (Cmp::Eq, &e("2.0"))));
        assert!(!ranges_overlap(
            (Cmp::Eq, &e("2.0-7")),
            (Cmp::Eq, &e("2.0-8"))
        ));
    }

    #[test]
    fn versioned_provides_and_epochs() {
        let u = x86(vec![
            pkg("app", "1-1", "x86_64").requires("libv >= 2"),
            pkg("libv-old", "1-1", "x86_64").provides("libv = 1"),
            pkg("libv-new", "1-1", "x86_64").provides("libv = 2.5"),
            pkg("libv-unversioned", "1-1", "x86_64").provides("libv"),
            pkg("e", "1:1.0-1", "x86_64"),
            pkg("e", "2.0-1", "x86_64"),
        ]);
        assert_eq!(
            solve(&u, &["app"]).unwrap(),
            ["app-1-1.x86_64", "libv-new-1-1.x86_64"]
        );
        // An unversioned provide satisfies any versioned dependency (rpm, libsolv).
        assert_eq!(
            solve(&u, &["libv >= 7"]).unwrap(),
            ["libv-unversioned-1-1.x86_64"]
        );
        // The epoch dominates; a missing release or epoch in the dependency is not compared.
        assert_eq!(solve(&u, &["e"]).unwrap(), ["e-1:1.0-1.x86_64"]);
        assert_eq!(solve(&u, &["e >= 1.5"]).unwrap(), ["e-1:1.0-1.x86_64"]);
        assert_eq!(solve(&u, &["e < 1:0"]).unwrap(), ["e-2.0-1.x86_64"]);
        assert_eq!(solve(&u, &["e = 2.0"]).unwrap(), ["e-2.0-1.x86_64"]);
        assert_eq!(u.find("e", "x86_64", "1:1.0-1"), Some(4));
        assert_eq!(u.find("e", "x86_64", "0:2.0-1"), Some(5));
        assert_eq!(u.find("e", "noarch", "2.0-1"), None);
    }

    #[test]
    fn a_requested_name_means_that_package_a_dependency_any_provider() {
        let u = x86(vec![
            pkg("b", "1-1", "x86_64"),
            pkg("aaab", "1-1", "x86_64").provides("b = 2"),
            pkg("user", "1-1", "x86_64").requires("b"),
        ]);
        assert_eq!(solve(&u, &["b"]).unwrap(), ["b-1-1.x86_64"]);
        // By name, b >= 2 does not exist (aaab only provides it).
        assert!(solve(&u, &["b >= 2"]).is_err());
        // libsolv's policy for a dependency: providers in name order.
        assert_eq!(
            solve(&u, &["user"]).unwrap(),
            ["aaab-1-1.x86_64", "user-1-1.x86_64"]
        );
        let mut r = Request::install(&["b"]).unwrap();
        r.installed = vec![99];
        assert!(matches!(u.solve(&r), Err(SolveError::BadRequest { .. })));
    }

    #[test]
    fn rich_conflicts_are_negated() {
        let u = x86(vec![
            pkg("x", "1-1", "x86_64").conflicts("(a and b)"),
            pkg("a", "1-1", "x86_64"),
            pkg("b", "1-1", "x86_64"),
            pkg("y", "1-1", "x86_64").conflicts("(a if b)"),
        ]);
        assert_eq!(
            solve(&u, &["x", "a"]).unwrap(),
            ["a-1-1.x86_64", "x-1-1.x86_64"]
        );
        assert!(solve(&u, &["x", "a", "b"]).is_err());
        // rpm's documented oddity: Conflicts (a if b) = not a and b.
        assert_eq!(solve(&u, &["y"]).unwrap(), ["b-1-1.x86_64", "y-1-1.x86_64"]);
    }

    #[test]
    fn file_dependencies_are_met_by_file_lists() {
        let u = x86(vec![
            pkg("script", "1-1", "noarch").requires("/bin/sh"),
            pkg("bash", "5-1", "x86_64")
                .file("/bin/sh")
                .file("/usr/bin/bash"),
        ]);
        assert_eq!(
            solve(&u, &["script"]).unwrap(),
            ["bash-5-1.x86_64", "script-1-1.noarch"]
        );
        assert!(u.knows("/usr/bin/bash") && u.knows("bash"));
        assert_eq!(solve(&u, &["/usr/bin/bash"]).unwrap(), ["bash-5-1.x86_64"]);
    }

    #[test]
    fn conflicts_steer_choices_and_self_conflicts_are_ignored() {
        let u = x86(vec![
            pkg("x", "1-1", "x86_64").requires("(p1 or p2)"),
            pkg("p1", "1-1", "x86_64").conflicts("z"),
            pkg("p2", "1-1", "x86_64"),
            pkg("z", "1-1", "x86_64"),
            pkg("self", "1-1", "x86_64")
                .provides("thing")
                .conflicts("thing"),
            pkg("w", "1-1", "x86_64").conflicts("b < 3"),
            pkg("b", "2-1", "x86_64"),
            pkg("b", "3-1", "x86_64"),
        ]);
        assert_eq!(
            solve(&u, &["x"]).unwrap(),
            ["p1-1-1.x86_64", "x-1-1.x86_64"]
        );
        assert_eq!(
            solve(&u, &["x", "z"]).unwrap(),
            ["p2-1-1.x86_64", "x-1-1.x86_64", "z-1-1.x86_64"]
        );
        assert_eq!(solve(&u, &["self"]).unwrap(), ["self-1-1.x86_64"]);
        assert_eq!(
            solve(&u, &["w", "b"]).unwrap(),
            ["b-3-1.x86_64", "w-1-1.x86_64"]
        );
        assert!(solve(&u, &["w", "b < 3"]).is_err());
    }

    #[test]
    fn obsoletes_match_names_not_provides() {
        let u = x86(vec![
            pkg("new-name", "2-1", "x86_64").obsoletes("old-name < 2"),
            pkg("old-name", "1-1", "x86_64"),
            pkg("old-name", "2-1", "x86_64"),
            pkg("other", "1-1", "x86_64").provides("old-name = 1.5"),
        ]);
        assert!(solve(&u, &["new-name", "old-name = 1-1"]).is_err());
        assert_eq!(
            solve(&u, &["new-name", "old-name"]).unwrap(),
            ["new-name-2-1.x86_64", "old-name-2-1.x86_64"]
        );
        // `other` provides old-name = 1.5 but is not named old-name: not obsoleted.
        assert_eq!(
            solve(&u, &["new-name", "other"]).unwrap(),
            ["new-name-2-1.x86_64", "other-1-1.x86_64"]
        );
    }

    #[test]
    fn rich_dependencies() {
        let u = x86(vec![
            pkg("a", "1-1", "x86_64").requires("(b if c)"),
            pkg("a2", "1-1", "x86_64").requires("(b if c >= 2)"),
            pkg("b", "1-1", "x86_64"),
            pkg("c", "1-1", "x86_64"),
            pkg("c", "2-1", "x86_64"),
            pkg("w", "1-1", "x86_64").requires("(py with feat)"),
            pkg("wo", "1-1", "x86_64").requires("(py without feat)"),
            pkg("py-a", "1-1", "x86_64").provides("py"),
            pkg("py-b", "1-1", "x86_64").provides("py").provides("feat"),
            pkg("u", "1-1", "x86_64").requires("(b unless blocker)"),
            pkg("blocker", "1-1", "x86_64"),
            pkg("ie", "1-1", "x86_64").requires("(b if c else blocker)"),
            pkg("odd", "1-1", "x86_64").requires("(b unless (c and blocker))"),
        ]);
        assert_eq!(solve(&u, &["a"]).unwrap(), ["a-1-1.x86_64"]);
        assert_eq!(
            solve(&u, &["a", "c"]).unwrap(),
            ["a-1-1.x86_64", "b-1-1.x86_64", "c-2-1.x86_64"]
        );
        // A condition on some versions of a name: false when the name is not installed at all.
        assert_eq!(solve(&u, &["a2"]).unwrap(), ["a2-1-1.x86_64"]);
        assert_eq!(
            solve(&u, &["a2", "c < 2"]).unwrap(),
            ["a2-1-1.x86_64", "c-1-1.x86_64"]
        );
        assert_eq!(
            solve(&u, &["a2", "c"]).unwrap(),
            ["a2-1-1.x86_64", "b-1-1.x86_64", "c-2-1.x86_64"]
        );
        // `with`: one package satisfying both, although py-a comes first by name.
        assert_eq!(
            solve(&u, &["w"]).unwrap(),
            ["py-b-1-1.x86_64", "w-1-1.x86_64"]
        );
        assert_eq!(
            solve(&u, &["wo"]).unwrap(),
            ["py-a-1-1.x86_64", "wo-1-1.x86_64"]
        );
        // `unless` in rpm and libsolv: a and not b.
        assert_eq!(solve(&u, &["u"]).unwrap(), ["b-1-1.x86_64", "u-1-1.x86_64"]);
        assert!(solve(&u, &["u", "blocker"]).is_err());
        assert_eq!(
            solve(&u, &["ie"]).unwrap(),
            ["blocker-1-1.x86_64", "ie-1-1.x86_64"]
        );
        // zypper takes b for `(c or b)`: alternatives rank by name, not as written.
        assert_eq!(
            solve(&u, &["(c or b)", "(b if c)"]).unwrap(),
            ["b-1-1.x86_64"]
        );
        assert_eq!(
            solve(&u, &["(c or b)", "(b if c)", "c"]).unwrap(),
            ["b-1-1.x86_64", "c-2-1.x86_64"]
        );
        // Forbidding a combination: b and not (c and blocker).
        assert_eq!(
            solve(&u, &["(b unless (c and blocker))", "c"]).unwrap(),
            ["b-1-1.x86_64", "c-2-1.x86_64"]
        );
        assert!(solve(&u, &["odd", "c", "blocker"]).is_err());
        assert_eq!(
            solve(&u, &["odd", "blocker"]).unwrap(),
            ["b-1-1.x86_64", "blocker-1-1.x86_64", "odd-1-1.x86_64"]
        );
        // A form that names no package set inside `with` is refused with the reason.
        let err = solve(&u, &["(b with (c if blocker))"]).unwrap_err();
        assert!(matches!(err, SolveError::BadRequest { .. }), "{err}");
        let bad = Requirement::Rich(Box::new(Rich::With(vec![req("b"), req("(c if blocker)")])));
        let r = Request {
            install: vec![bad],
            ..Request::default()
        };
        let err = u.solve(&r).unwrap_err();
        assert!(matches!(err, SolveError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn weak_dependencies_on_and_off() {
        let u = x86(vec![
            pkg("x", "1-1", "x86_64")
                .recommends("r1")
                .recommends("missing")
                .recommends("r2"),
            pkg("r1", "1-1", "x86_64").recommends("(r4 if x)"),
            pkg("r2", "1-1", "x86_64").conflicts("x"),
            pkg("r4", "1-1", "x86_64"),
            pkg("x-lang", "1-1", "noarch").supplements("x"),
            pkg("x-hw", "1-1", "noarch").supplements("(x and modalias(pci:v00008086*))"),
        ]);
        let mut r = Request::install(&["x"]).unwrap();
        assert_eq!(solve_req(&u, &r), ["x-1-1.x86_64"]);
        r.weak = true;
        assert_eq!(
            solve_req(&u, &r),
            [
                "r1-1-1.x86_64",
                "r4-1-1.x86_64",
                "x-1-1.x86_64",
                "x-lang-1-1.noarch"
            ]
        );
        r.excluded = vec!["r4".into()];
        assert_eq!(
            solve_req(&u, &r),
            ["r1-1-1.x86_64", "x-1-1.x86_64", "x-lang-1-1.noarch"]
        );
    }

    #[test]
    fn recommended_packages_still_trigger_conditional_requirements() {
        let u = x86(vec![
            pkg("y", "1-1", "x86_64").requires("(yplug if x)"),
            pkg("yplug", "1-1", "x86_64"),
            pkg("pattern", "1-1", "noarch").recommends("x"),
            pkg("x", "1-1", "x86_64"),
        ]);
        let mut r = Request::install(&["y", "pattern"]).unwrap();
        assert_eq!(solve_req(&u, &r), ["pattern-1-1.noarch", "y-1-1.x86_64"]);
        r.weak = true;
        assert_eq!(
            solve_req(&u, &r),
            [
                "pattern-1-1.noarch",
                "x-1-1.x86_64",
                "y-1-1.x86_64",
                "yplug-1-1.x86_64"
            ]
        );
    }

    #[test]
    fn repository_priority_comes_before_version_and_name() {
        let ps = || {
            vec![
                pkg("b", "3-1", "x86_64"),
                pkg("b", "9-1", "x86_64").repo(1),
                pkg("aaa", "1-1", "x86_64").provides("cap"),
                pkg("zzz", "1-1", "x86_64").provides("cap").repo(1),
            ]
        };
        let u = universe(ps(), &[99, 100], "x86_64");
        assert_eq!(solve(&u, &["b"]).unwrap(), ["b-3-1.x86_64"]);
        assert_eq!(solve(&u, &["cap"]).unwrap(), ["aaa-1-1.x86_64"]);
        let u = universe(ps(), &[99, 50], "x86_64");
        assert_eq!(solve(&u, &["b"]).unwrap(), ["b-9-1.x86_64"]);
        assert_eq!(solve(&u, &["cap"]).unwrap(), ["zzz-1-1.x86_64"]);
        // The same package in two repositories is kept once, from the better one.
        let u = universe(
            vec![pkg("d", "1-1", "x86_64"), pkg("d", "1-1", "x86_64").repo(1)],
            &[99, 10],
            "x86_64",
        );
        assert_eq!(u.len(), 1);
        assert_eq!(u.package(0).repo, 1);
    }

    #[test]
    fn providers_of_one_capability_in_libsolv_order() {
        let u = x86(vec![
            pkg("app", "1-1", "noarch").requires("java"),
            pkg("java-11", "11-1", "x86_64").provides("java = 1:11"),
            pkg("java-17", "17-1", "x86_64").provides("java = 1:17"),
            pkg("aaa-old", "1-1", "x86_64").provides("mta"),
            pkg("zzz-new", "1-1", "x86_64")
                .provides("mta")
                .obsoletes("aaa-old"),
            pkg("bbb", "1-1", "x86_64").provides("mta"),
        ]);
        // sort_by_common_dep: the higher provided version first.
        assert_eq!(
            solve(&u, &["app"]).unwrap(),
            ["app-1-1.noarch", "java-17-17-1.x86_64"]
        );
        // An obsoleted candidate goes last; then name order.
        assert_eq!(solve(&u, &["mta"]).unwrap(), ["bbb-1-1.x86_64"]);
    }

    #[test]
    fn alternatives_of_a_rich_or_are_ranked_together() {
        let u = x86(vec![
            pkg("app", "1-1", "noarch").requires("(impl-x or impl-y)"),
            pkg("impl-x", "1-1", "noarch").provides("impl = 1"),
            pkg("impl-y", "2-1", "noarch").provides("impl = 2"),
            pkg("tool", "1-1", "noarch").requires("(zzz or aaa)"),
            pkg("zzz", "1-1", "noarch"),
            pkg("aaa", "1-1", "noarch"),
        ]);
        // sort_by_common_dep over both alternatives: the higher `impl` wins, as with zypper,
        // though impl-x is written first.
        assert_eq!(
            solve(&u, &["app"]).unwrap(),
            ["app-1-1.noarch", "impl-y-2-1.noarch"]
        );
        // Nothing else to tell them apart: name order, not the order written.
        assert_eq!(
            solve(&u, &["tool"]).unwrap(),
            ["aaa-1-1.noarch", "tool-1-1.noarch"]
        );
    }

    #[test]
    fn architectures_and_multilib() {
        let ps = || {
            vec![
                pkg("foo", "1-1", "x86_64"),
                pkg("foo", "2-1", "i686").provides("libfoo.so.1"),
                pkg("foo", "3-1", "aarch64"),
                pkg("app32", "1-1", "x86_64").requires("libfoo.so.1"),
                pkg("bar", "1-1", "x86_64"),
                pkg("bar", "2-1", "noarch"),
                pkg("nb", "1-1", "noarch"),
                pkg("nb", "1-1", "i686"),
            ]
        };
        let u = universe(ps(), &[99], "x86_64");
        // aarch64 is not installable on x86_64.
        assert_eq!(u.len(), 7);
        // The best architecture before the higher version.
        assert_eq!(solve(&u, &["foo"]).unwrap(), ["foo-1-1.x86_64"]);
        // Multilib: both colors of a name may be installed together.
        assert_eq!(
            solve(&u, &["foo", "app32"]).unwrap(),
            ["app32-1-1.x86_64", "foo-2-1.i686", "foo-1-1.x86_64"]
        );
        // noarch ranks with the best architecture: the version decides.
        assert_eq!(solve(&u, &["bar"]).unwrap(), ["bar-2-1.noarch"]);
        let mut r = Request::install(&["nb"]).unwrap();
        r.install.push(req("foo"));
        assert_eq!(solve_req(&u, &r), ["foo-1-1.x86_64", "nb-1-1.noarch"]);
        let u = universe(ps(), &[99], "aarch64");
        assert_eq!(solve(&u, &["foo"]).unwrap(), ["foo-3-1.aarch64"]);
        assert!(matches!(
            solve(&u, &["app32"]),
            Err(SolveError::UnknownPackage { .. })
        ));
        assert_eq!(compatible_arches("i586"), ["i586", "i486", "i386"]);
    }

    #[test]
    fn noarch_and_other_color_of_one_name_exclude_each_other() {
        let u = x86(vec![
            pkg("nb", "1-1", "noarch"),
            pkg("nb", "1-1", "i686").provides("nb-32"),
            pkg("want", "1-1", "x86_64")
                .requires("nb-32")
                .requires("(nb with nb-noarch)"),
            pkg("nb", "2-1", "noarch").provides("nb-noarch"),
        ]);
        let err = solve(&u, &["want"]).unwrap_err();
        assert!(err.to_string().contains("nb"), "{err}");
    }

    #[test]
    fn installed_and_excluded_packages() {
        let u = x86(vec![
            pkg("lib", "1-1", "x86_64"),
            pkg("lib", "2-1", "x86_64"),
            pkg("app", "1-1", "x86_64").requires("lib"),
            pkg("app2", "1-1", "x86_64").requires("lib >= 2"),
            pkg("x", "1-1", "x86_64").requires("(p1 or p2)"),
            pkg("p1", "1-1", "x86_64"),
            pkg("p2", "1-1", "x86_64"),
        ]);
        let lib1 = u.find("lib", "x86_64", "1-1").unwrap();
        let mut r = Request::install(&["app"]).unwrap();
        r.installed = vec![lib1];
        assert_eq!(solve_req(&u, &r), ["app-1-1.x86_64", "lib-1-1.x86_64"]);
        r.install = vec![req("app2")];
        assert_eq!(solve_req(&u, &r), ["app2-1-1.x86_64", "lib-2-1.x86_64"]);
        let mut r = Request::install(&["x"]).unwrap();
        r.excluded = vec!["p1".into()];
        assert_eq!(solve_req(&u, &r), ["p2-1-1.x86_64", "x-1-1.x86_64"]);
        r.install.push(req("p1"));
        let err = u.solve(&r).unwrap_err();
        assert!(err.to_string().contains("excluded"), "{err}");
    }

    #[test]
    fn unsolvable_names_the_chain_in_rpm_terms() {
        let u = x86(vec![
            pkg("top", "1-1", "x86_64").requires("mid"),
            pkg("mid", "1-1", "x86_64").requires("leaf >= 2"),
            pkg("leaf", "1-1", "x86_64"),
            pkg("haunted", "1-1", "x86_64").requires("ghost >= 1"),
            pkg("bash", "5-1", "x86_64"),
        ]);
        let err = solve(&u, &["haunted"]).unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
        let err = solve(&u, &["top"]).unwrap_err();
        let SolveError::Unsolvable {
            explanation,
            involved,
        } = &err
        else {
            panic!("expected Unsolvable, got {err}");
        };
        for name in ["top-1-1.x86_64", "mid-1-1.x86_64", "leaf", ">= 2"] {
            assert!(
                explanation.contains(name),
                "{name} missing from:\n{explanation}"
            );
        }
        assert_eq!(involved, &["mid", "top"]);
        assert!(matches!(
            solve(&u, &["nonesuch"]),
            Err(SolveError::UnknownPackage { .. })
        ));
        assert!(matches!(
            solve(&u, &["(a or"]),
            Err(SolveError::BadRequest { .. })
        ));
        assert_eq!(u.closest("bsah"), Some("bash"));
        assert_eq!(u.closest("coreutils"), None);
    }

    #[test]
    fn install_order_honours_prerequisites_and_breaks_loops() {
        let u = x86(vec![
            pkg("app", "1-1", "x86_64").requires("liba").prereq("pre"),
            pkg("liba", "1-1", "x86_64").requires("libb"),
            pkg("libb", "1-1", "x86_64").requires("liba"),
            pkg("pre", "1-1", "x86_64").prereq("zlib"),
            pkg("zlib", "1-1", "x86_64"),
            // A loop with a prerequisite edge: cyc1 needs cyc2 before its scriptlets.
            pkg("cyc1", "1-1", "x86_64").prereq("cyc2"),
            pkg("cyc2", "1-1", "x86_64").requires("cyc1"),
            pkg("sh-user", "1-1", "noarch").prereq("/bin/sh"),
            pkg("bash", "5-1", "x86_64")
                .file("/bin/sh")
                .requires("(zlib if pre)"),
        ]);
        let r = u
            .solve(&Request::install(&["app", "cyc1", "sh-user"]).unwrap())
            .unwrap();
        let order: Vec<&str> = u
            .install_order(&r.packages)
            .into_iter()
            .map(|id| u.package(id).name.as_str())
            .collect();
        let pos = |n: &str| order.iter().position(|&x| x == n).unwrap();
        assert_eq!(order.len(), 9);
        assert!(pos("zlib") < pos("pre") && pos("pre") < pos("app"));
        assert!(pos("liba") < pos("app") && pos("libb") < pos("app"));
        assert!(pos("cyc2") < pos("cyc1"));
        assert!(pos("bash") < pos("sh-user"));
        assert!(pos("zlib") < pos("bash"));
        let mut shuffled = r.packages.clone();
        shuffled.reverse();
        assert_eq!(u.install_order(&shuffled), u.install_order(&r.packages));
    }
}
