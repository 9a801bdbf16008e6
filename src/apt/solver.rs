//! Dependency resolution for Debian packages, on top of the `resolvo` SAT solver.
//!
//! A [`Universe`] holds every package of every repository (with repository priorities and the
//! native architecture); [`Universe::solve`] turns a [`Request`] into a [`Resolution`], and
//! [`Universe::install_order`] orders a resolution for dpkg. Candidates are preferred as apt
//! prefers them: the highest-priority repository first, then the highest version; alternatives
//! (`a | b`) are tried in the order written, and providers of a virtual package in apt's order.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// The universe's name maps: tens of thousands of entries are hashed while a universe is
/// built, where `SipHash` was the largest cost of planning. Nothing depends on their order.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::fmt::Display;
use std::sync::OnceLock;

use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, DenseIndex, Dependencies,
    DependencyProvider, Interner, KnownDependencies, NameId, Problem, Requirement, SolvableId,
    Solver, SolverCache, StringId, UnsolvableOrCancelled, VersionSetId, VersionSetUnionId,
};

use super::index::{Alternative, ArchQual, MultiArch, Package, Relation, parse_relations};
use super::packed::{Head, PackedIndex};

/// Index of a package in a [`Universe`].
pub type PackageId = usize;

/// Why a request could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A requested relation could not be parsed.
    #[error("bad package request {request:?}: {message}")]
    BadRequest {
        /// The request as given.
        request: String,
        /// What was wrong with it.
        message: String,
    },
    /// A requested name matches no package and no provider.
    #[error("no package or provider named {name:?} is available")]
    UnknownPackage {
        /// The requested name.
        name: String,
    },
    /// No set of packages satisfies the request. The explanation walks from the request through
    /// the chain of packages down to the missing or conflicting ones.
    #[error(
        "the requested packages cannot be installed together:\n{}",
        indent(explanation)
    )]
    Unsolvable {
        /// resolvo's conflict tree, rendered with Debian names and versions.
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
    /// Relations that must hold (`name`, `name (>= 1.0)`, `a | b`).
    pub install: Vec<Relation>,
    /// Add the bootstrap set: every `Essential: yes` and every `Priority: required` package.
    pub bootstrap: bool,
    /// Packages already installed: kept (upgraded only when a dependency needs it).
    pub installed: Vec<PackageId>,
    /// Also install Recommends where they can be satisfied.
    pub with_recommends: bool,
}

impl Request {
    /// A request to install `items`, each in `Depends` syntax (`python3`, `foo (>= 1) | bar`).
    pub fn install<S: AsRef<str>>(items: &[S]) -> Result<Request, SolveError> {
        let mut install = Vec::new();
        for item in items {
            let item = item.as_ref();
            let rels = parse_relations(item).map_err(|(_, message)| SolveError::BadRequest {
                request: item.to_string(),
                message,
            })?;
            if rels.is_empty() {
                return Err(SolveError::BadRequest {
                    request: item.to_string(),
                    message: "empty request".into(),
                });
            }
            install.extend(rels);
        }
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

/// Where a universe's package records are.
#[derive(Debug)]
enum Store {
    /// Parsed records, by [`PackageId`].
    Parsed(Vec<Package>),
    /// Packed indexes, read in place.
    Packed(Packed),
}

/// Packed indexes: every package's [`Head`] is read from the mapped index, the whole record is
/// decoded the first time the solver or the plan looks at it.
#[derive(Debug)]
struct Packed {
    /// Each index with the repository number its records get.
    indexes: Vec<(PackedIndex, usize)>,
    /// (index, record) of each [`PackageId`].
    ids: Vec<(u32, u32)>,
    decoded: Vec<OnceLock<Box<Package>>>,
    /// The first record that could not be decoded: (index, what was wrong).
    damage: OnceLock<(usize, String)>,
}

impl Packed {
    fn head(&self, id: PackageId) -> Head<'_> {
        let (i, r) = self.ids[id];
        self.indexes[i as usize].0.head(r as usize)
    }

    fn package(&self, id: PackageId) -> &Package {
        self.decoded[id].get_or_init(|| {
            let (i, r) = self.ids[id];
            let (idx, repo) = &self.indexes[i as usize];
            Box::new(idx.package(r as usize, *repo).unwrap_or_else(|e| {
                // A sound packed index always decodes; one that does not was altered after its
                // checksum was written. Record it for `damage` and stand in an empty record.
                let _ = self.damage.set((i as usize, e.to_string()));
                let h = idx.head(r as usize);
                let zero = || super::version::Version::parse("0");
                Package {
                    name: h.name.to_string(),
                    version: super::version::Version::parse(h.version)
                        .or_else(|_| zero())
                        .unwrap_or_else(|_| unreachable!("\"0\" is a version")),
                    architecture: h.architecture.to_string(),
                    multi_arch: h.multi_arch,
                    essential: h.essential,
                    priority: h.priority.map(str::to_string),
                    source: h.name.to_string(),
                    source_version: super::version::Version::parse(h.version)
                        .or_else(|_| zero())
                        .unwrap_or_else(|_| unreachable!("\"0\" is a version")),
                    installed_size: None,
                    depends: Vec::new(),
                    pre_depends: Vec::new(),
                    recommends: Vec::new(),
                    provides: Vec::new(),
                    conflicts: Vec::new(),
                    breaks: Vec::new(),
                    replaces: Vec::new(),
                    filename: None,
                    size: None,
                    sha256: None,
                    repo: *repo,
                }
            }))
        })
    }
}

impl Store {
    fn len(&self) -> usize {
        match self {
            Store::Parsed(v) => v.len(),
            Store::Packed(p) => p.ids.len(),
        }
    }

    fn head(&self, id: PackageId) -> Head<'_> {
        match self {
            Store::Parsed(v) => {
                let p = &v[id];
                Head {
                    name: &p.name,
                    architecture: &p.architecture,
                    version: p.version.as_str(),
                    priority: p.priority.as_deref(),
                    essential: p.essential,
                    multi_arch: p.multi_arch,
                }
            }
            Store::Packed(p) => p.head(id),
        }
    }

    fn repo(&self, id: PackageId) -> usize {
        match self {
            Store::Parsed(v) => v[id].repo,
            Store::Packed(p) => p.indexes[p.ids[id].0 as usize].1,
        }
    }

    fn provides(&self, id: PackageId) -> Vec<&str> {
        match self {
            Store::Parsed(v) => v[id].provides.iter().map(|a| a.name.as_str()).collect(),
            Store::Packed(p) => {
                let (i, r) = p.ids[id];
                p.indexes[i as usize].0.provides(r as usize).collect()
            }
        }
    }

    fn package(&self, id: PackageId) -> &Package {
        match self {
            Store::Parsed(v) => &v[id],
            Store::Packed(p) => p.package(id),
        }
    }

    /// Keep the records at `order` (increasing first positions: `order[k] >= k`), in that order.
    fn select(&mut self, order: &[usize]) {
        fn pick<T>(v: &mut Vec<T>, order: &[usize]) {
            // Each step only moves a record no later step needs: `order[m] >= m > k`.
            for (k, &from) in order.iter().enumerate() {
                v.swap(k, from);
            }
            v.truncate(order.len());
        }
        match self {
            Store::Parsed(v) => pick(v, order),
            Store::Packed(p) => {
                pick(&mut p.ids, order);
                p.decoded = std::iter::repeat_with(OnceLock::new)
                    .take(order.len())
                    .collect();
            }
        }
    }
}

/// All packages the solver may choose from.
#[derive(Debug)]
pub struct Universe {
    store: Store,
    priorities: Vec<i32>,
    native: String,
    /// Solver names: `name` for native and `all` packages, `name:arch` for foreign ones.
    slots: Vec<String>,
    slot_of: FastMap<String, usize>,
    /// Members of each slot, best candidate first.
    slot_members: Vec<Vec<PackageId>>,
    package_slot: Vec<usize>,
    /// Package name -> slots holding real packages of that name.
    real: FastMap<String, Vec<usize>>,
    /// Provided name -> packages providing it.
    providers: FastMap<String, Vec<PackageId>>,
}

fn priority_rank(p: &Package) -> u8 {
    match p.priority.as_deref() {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        Some("extra") => 4,
        _ => 5,
    }
}

impl Universe {
    /// Build a universe from `packages`; `repo_priorities[p.repo]` is the priority of each
    /// package's repository (apt's pin priority, 500 by default; missing entries count as 500).
    /// Packages of architectures other than `native`, `all` and `foreign` are left out; a
    /// package listed twice (same name, architecture and version) is kept once, from the
    /// higher-priority repository.
    pub fn new(
        packages: Vec<Package>,
        repo_priorities: &[i32],
        native: &str,
        foreign: &[&str],
    ) -> Universe {
        Universe::build(Store::Parsed(packages), repo_priorities, native, foreign)
    }

    /// [`Universe::new`] over packed indexes, each with the repository number its records get
    /// (the index into `repo_priorities`). Records are decoded only when used, so a universe of
    /// a whole archive costs little more than its names.
    pub fn from_packed(
        indexes: Vec<(PackedIndex, usize)>,
        repo_priorities: &[i32],
        native: &str,
        foreign: &[&str],
    ) -> Universe {
        // Record numbers are u32 in the packed format, and so are index numbers here.
        #[allow(clippy::cast_possible_truncation)]
        let ids = indexes
            .iter()
            .enumerate()
            .flat_map(|(i, (idx, _))| (0..idx.len()).map(move |r| (i as u32, r as u32)))
            .collect();
        let packed = Packed {
            indexes,
            ids,
            decoded: Vec::new(),
            damage: OnceLock::new(),
        };
        Universe::build(Store::Packed(packed), repo_priorities, native, foreign)
    }

    /// When a packed index given to [`Universe::from_packed`] held a record that could not be
    /// decoded: the position of that index and what was wrong. Results computed from such a
    /// universe are not to be used.
    pub fn damage(&self) -> Option<(usize, &str)> {
        match &self.store {
            Store::Parsed(_) => None,
            Store::Packed(p) => p.damage.get().map(|(i, m)| (*i, m.as_str())),
        }
    }

    fn build(
        mut store: Store,
        repo_priorities: &[i32],
        native: &str,
        foreign: &[&str],
    ) -> Universe {
        let prio = |store: &Store, id| repo_priorities.get(store.repo(id)).copied().unwrap_or(500);
        // Filtered and deduplicated in place: the indexes are large and a second copy of every
        // record would double the peak memory of planning. For each (name, architecture,
        // version) the best record takes the place of the first one, so the order is that of
        // first appearance.
        let order: Vec<usize> = {
            let mut best: Vec<usize> = Vec::new();
            let mut seen: FastMap<(&str, &str, &str), usize> = FastMap::with_capacity_and_hasher(
                store.len(),
                foldhash::fast::RandomState::default(),
            );
            for i in 0..store.len() {
                let h = store.head(i);
                let arch = h.architecture;
                if !(arch == native || arch == "all" || foreign.contains(&arch)) {
                    continue;
                }
                let key = (h.name, arch, h.version);
                if let Some(&b) = seen.get(&key) {
                    if prio(&store, i) > prio(&store, best[b]) {
                        best[b] = i;
                    }
                } else {
                    seen.insert(key, best.len());
                    best.push(i);
                }
            }
            best
        };
        store.select(&order);
        let priorities: Vec<i32> = (0..store.len()).map(|id| prio(&store, id)).collect();
        let mut u = Universe {
            store,
            priorities,
            native: native.to_string(),
            slots: Vec::new(),
            slot_of: FastMap::default(),
            slot_members: Vec::new(),
            package_slot: Vec::new(),
            real: FastMap::default(),
            providers: FastMap::default(),
        };
        for id in 0..u.store.len() {
            let p = u.store.head(id);
            let slot_name = if p.architecture == native || p.architecture == "all" {
                p.name.to_string()
            } else {
                format!("{}:{}", p.name, p.architecture)
            };
            let slot = if let Some(&s) = u.slot_of.get(&slot_name) {
                s
            } else {
                let s = u.slots.len();
                u.slots.push(slot_name.clone());
                u.slot_of.insert(slot_name, s);
                u.slot_members.push(Vec::new());
                match u.real.get_mut(p.name) {
                    Some(real) => real.push(s),
                    None => {
                        u.real.insert(p.name.to_string(), vec![s]);
                    }
                }
                s
            };
            u.slot_members[slot].push(id);
            u.package_slot.push(slot);
            for prov in u.store.provides(id) {
                match u.providers.get_mut(prov) {
                    Some(ids) => ids.push(id),
                    None => {
                        u.providers.insert(prov.to_string(), vec![id]);
                    }
                }
            }
        }
        let mut members = std::mem::take(&mut u.slot_members);
        for m in &mut members {
            m.sort_by(|&a, &b| u.preference(a, b));
        }
        u.slot_members = members;
        for slots in u.real.values_mut() {
            slots.sort_by(|&a, &b| u.slots[a].cmp(&u.slots[b]));
        }
        let mut providers = std::mem::take(&mut u.providers);
        for ids in providers.values_mut() {
            ids.sort_unstable();
            ids.dedup();
        }
        u.providers = providers;
        u
    }

    /// apt's candidate order within one name: repository priority, then version, then the
    /// native architecture, then index order.
    fn preference(&self, a: PackageId, b: PackageId) -> std::cmp::Ordering {
        let (pa, pb) = (self.pkg(a), self.pkg(b));
        self.priorities[b]
            .cmp(&self.priorities[a])
            .then_with(|| pb.version.cmp(&pa.version))
            .then_with(|| (pb.architecture == self.native).cmp(&(pa.architecture == self.native)))
            .then_with(|| a.cmp(&b))
    }

    /// The package with index `id`.
    pub fn package(&self, id: PackageId) -> &Package {
        self.store.package(id)
    }

    fn pkg(&self, id: PackageId) -> &Package {
        self.store.package(id)
    }

    /// Number of packages.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when the universe holds no package.
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// The package `name` of `arch` (`None`: native or `all`) with exactly `version`, if present.
    pub fn find(&self, name: &str, arch: Option<&str>, version: &str) -> Option<PackageId> {
        self.real.get(name)?.iter().find_map(|&s| {
            self.slot_members[s].iter().copied().find(|&id| {
                let p = self.store.head(id);
                p.version == version
                    && match arch {
                        None => p.architecture == self.native || p.architecture == "all",
                        Some(a) => p.architecture == a,
                    }
            })
        })
    }

    /// Whether `name` (or `name:arch`) is a package of the universe or a name one provides.
    pub fn knows(&self, name: &str) -> bool {
        let bare = name.split_once(':').map_or(name, |(n, _)| n);
        self.real.contains_key(bare) || self.providers.contains_key(bare)
    }

    /// The package or provided name closest to `name` (a typo's likely meaning), when one is
    /// close: at most a third of its characters edited, transpositions counting once. Ties go
    /// to real packages, then to the first in byte order, so the answer does not depend on
    /// hashing.
    pub fn closest(&self, name: &str) -> Option<&str> {
        let limit = (name.chars().count() / 3).max(1);
        let real = self.real.keys().map(|n| (n, 0u8));
        let provided = self.providers.keys().map(|n| (n, 1u8));
        real.chain(provided)
            .filter(|(n, _)| n.as_str() != name)
            .map(|(n, kind)| (strsim::osa_distance(name, n), kind, n.as_str()))
            .filter(|(d, _, _)| *d <= limit)
            .min()
            .map(|(_, _, n)| n)
    }

    /// The best candidate (apt's "candidate version") of native package `name`.
    pub fn candidate(&self, name: &str) -> Option<PackageId> {
        let slot = *self.slot_of.get(name)?;
        self.slot_members[slot].first().copied()
    }

    /// Names of the bootstrap set: native packages whose candidate is `Essential: yes` or
    /// `Priority: required`, sorted.
    pub fn bootstrap_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .slot_of
            .iter()
            .filter(|(name, _)| !name.contains(':'))
            .filter_map(|(name, &slot)| {
                let p = self.store.head(*self.slot_members[slot].first()?);
                (p.essential || p.priority == Some("required")).then(|| name.clone())
            })
            .collect();
        names.sort();
        names
    }

    fn effective_arch<'a>(&'a self, arch: &'a str) -> &'a str {
        if arch == "all" { &self.native } else { arch }
    }

    /// Whether package `id` can satisfy `alt` for a package of architecture `from`.
    fn arch_compatible(&self, p: &Package, qual: &ArchQual, from: &str, provided: bool) -> bool {
        let pa = self.effective_arch(&p.architecture);
        match qual {
            ArchQual::None => pa == self.effective_arch(from) || p.multi_arch == MultiArch::Foreign,
            ArchQual::Any => {
                p.multi_arch == MultiArch::Allowed
                    || (provided
                        && (p.multi_arch == MultiArch::Foreign || pa == self.effective_arch(from)))
            }
            ArchQual::Native => pa == self.native,
            ArchQual::Arch(a) => pa == a.as_str(),
        }
    }

    /// Whether package `id` satisfies `alt` (by name or through `Provides`) for a dependent of
    /// architecture `from`.
    pub fn satisfies(&self, id: PackageId, alt: &Alternative, from: &str) -> bool {
        let p = self.pkg(id);
        if p.name == alt.name
            && self.arch_compatible(p, &alt.arch, from, false)
            && alt
                .constraint
                .as_ref()
                .is_none_or(|(op, v)| op.holds(&p.version, v))
        {
            return true;
        }
        p.provides.iter().any(|prov| {
            prov.name == alt.name
                && self.arch_compatible(p, &alt.arch, from, true)
                && match (&alt.constraint, &prov.constraint) {
                    (None, _) => true,
                    // Policy: only versioned provides (`= v`) satisfy versioned relations.
                    (Some((op, want)), Some((super::index::Op::Eq, have))) => op.holds(have, want),
                    _ => false,
                }
        })
    }

    /// Slots that may hold a package satisfying `alt`: the real name first, then providers in
    /// apt's order (essential, `Priority`, native, name).
    fn alt_slots(&self, alt: &Alternative, installed: &BTreeSet<PackageId>) -> Vec<usize> {
        let mut out: Vec<usize> = self.real.get(&alt.name).cloned().unwrap_or_default();
        if let Some(provs) = self.providers.get(&alt.name) {
            let mut ps: Vec<PackageId> = provs.clone();
            ps.sort_by_key(|&id| {
                let p = self.pkg(id);
                (
                    !installed.contains(&id),
                    !p.essential,
                    priority_rank(p),
                    p.architecture != self.native && p.architecture != "all",
                    self.slots[self.package_slot[id]].clone(),
                )
            });
            for id in ps {
                let s = self.package_slot[id];
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Resolve `req`: the full set of packages to have installed, as apt would choose them.
    pub fn solve(&self, req: &Request) -> Result<Resolution, SolveError> {
        let installed: BTreeSet<PackageId> = req.installed.iter().copied().collect();
        let provider = Provider::new(self, installed.clone());
        let mut roots: Vec<Relation> = req.install.clone();
        if req.bootstrap {
            for name in self.bootstrap_names() {
                roots.push(Relation {
                    alternatives: vec![Alternative {
                        name,
                        arch: ArchQual::None,
                        constraint: None,
                        arch_restriction: Vec::new(),
                    }],
                });
            }
        }
        let mut requirements = Vec::new();
        for rel in &roots {
            if rel
                .alternatives
                .iter()
                .all(|a| !self.real.contains_key(&a.name) && !self.providers.contains_key(&a.name))
            {
                return Err(SolveError::UnknownPackage {
                    name: rel.to_string(),
                });
            }
            requirements.push(provider.requirement(rel, &self.native));
        }
        for &id in &installed {
            let slot = self.package_slot[id];
            requirements.push(ConditionalRequirement {
                condition: None,
                requirement: Requirement::Single(provider.intern(VSet::Any { slot })),
            });
        }
        let mut solver = Solver::new(provider);
        let mut soft: Vec<PackageId> = Vec::new();
        let mut tried: BTreeSet<PackageId> = BTreeSet::new();
        loop {
            let problem = Problem::new()
                .requirements(requirements.clone())
                .soft_requirements(soft.iter().map(|&id| SolvableId::from_index(id)));
            let chosen: BTreeSet<PackageId> = match solver.solve(problem) {
                Ok(s) => s.into_iter().map(resolvo::DenseIndex::to_index).collect(),
                Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
                    let explanation = conflict.display_user_friendly(&solver).to_string();
                    let graph = conflict.graph(&solver);
                    let mut involved: Vec<String> = graph
                        .graph
                        .node_weights()
                        .filter_map(|n| match n {
                            resolvo::conflict::ConflictNode::Solvable(s) => {
                                Some(self.pkg(s.to_index()).name.clone())
                            }
                            _ => None,
                        })
                        .collect();
                    involved.sort();
                    involved.dedup();
                    return Err(SolveError::Unsolvable {
                        explanation,
                        involved,
                    });
                }
                Err(UnsolvableOrCancelled::Cancelled(_)) => return Err(SolveError::Cancelled),
            };
            if !req.with_recommends {
                return Ok(self.resolution(chosen));
            }
            // Recommends are soft: ask for the preferred satisfier of each unmet one and let the
            // solver drop those that cannot be had, until nothing new is recommended.
            // As apt, only newly installed packages bring their Recommends along.
            let mut added = false;
            for &id in chosen.iter().filter(|id| !installed.contains(id)) {
                let from = self.pkg(id).architecture.clone();
                for rel in &self.pkg(id).recommends {
                    if self.relation_met(rel, &from, &chosen) {
                        continue;
                    }
                    // Anything tried before and not chosen could not be installed: move on to
                    // the next alternative.
                    if let Some(best) = self.best_untried(rel, &from, &installed, &tried) {
                        tried.insert(best);
                        soft.push(best);
                        added = true;
                    }
                }
            }
            if !added {
                return Ok(self.resolution(chosen));
            }
        }
    }

    fn resolution(&self, chosen: BTreeSet<PackageId>) -> Resolution {
        let mut packages: Vec<PackageId> = chosen.into_iter().collect();
        packages.sort_by(|&a, &b| {
            let (pa, pb) = (self.pkg(a), self.pkg(b));
            (&pa.name, &pa.architecture, a).cmp(&(&pb.name, &pb.architecture, b))
        });
        Resolution { packages }
    }

    fn relation_met(&self, rel: &Relation, from: &str, set: &BTreeSet<PackageId>) -> bool {
        self.first_in_set(rel, from, set).is_some()
    }

    /// The first package of `set` satisfying `rel`, alternatives in order.
    fn first_in_set(
        &self,
        rel: &Relation,
        from: &str,
        set: &BTreeSet<PackageId>,
    ) -> Option<PackageId> {
        rel.alternatives.iter().find_map(|alt| {
            self.alt_slots(alt, &BTreeSet::new())
                .into_iter()
                .flat_map(|s| self.slot_members[s].iter().copied())
                .find(|id| set.contains(id) && self.satisfies(*id, alt, from))
        })
    }

    /// The preferred package for `rel` not yet in `skip`: alternatives in order, each name's
    /// candidate (the best version satisfying it), as apt walks an or-group.
    fn best_untried(
        &self,
        rel: &Relation,
        from: &str,
        installed: &BTreeSet<PackageId>,
        skip: &BTreeSet<PackageId>,
    ) -> Option<PackageId> {
        rel.alternatives.iter().find_map(|alt| {
            self.alt_slots(alt, installed).into_iter().find_map(|s| {
                self.slot_members[s]
                    .iter()
                    .copied()
                    .find(|&id| self.satisfies(id, alt, from))
                    .filter(|id| !skip.contains(id))
            })
        })
    }

    /// Order `packages` for dpkg: every package after its Pre-Depends (strictly) and, as far as
    /// cycles allow, after its Depends. Cycles are broken deterministically (by name).
    pub fn install_order(&self, packages: &[PackageId]) -> Vec<PackageId> {
        let mut nodes: Vec<PackageId> = packages.to_vec();
        nodes.sort_by(|&a, &b| {
            let (pa, pb) = (self.pkg(a), self.pkg(b));
            (&pa.name, &pa.architecture, a).cmp(&(&pb.name, &pb.architecture, b))
        });
        nodes.dedup();
        let index: HashMap<PackageId, usize> =
            nodes.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let set: BTreeSet<PackageId> = nodes.iter().copied().collect();
        let n = nodes.len();
        // edges[i] = (target, strict) with targets as node indices, self-edges dropped.
        let mut edges: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
        for (i, &id) in nodes.iter().enumerate() {
            let p = self.pkg(id);
            for (rels, strict) in [(&p.pre_depends, true), (&p.depends, false)] {
                for rel in rels {
                    if let Some(t) = self.first_in_set(rel, &p.architecture, &set) {
                        let j = index[&t];
                        if j != i && !edges[i].contains(&(j, strict)) {
                            edges[i].push((j, strict));
                        }
                    }
                }
            }
        }
        let sccs = tarjan(n, &edges);
        let mut order = Vec::with_capacity(n);
        let mut placed = vec![false; n];
        for comp in sccs {
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

/// Strongly connected components, dependencies before dependents (Tarjan's order).
pub(crate) fn tarjan(n: usize, edges: &[Vec<(usize, bool)>]) -> Vec<Vec<usize>> {
    struct St<'a> {
        edges: &'a [Vec<(usize, bool)>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(st: &mut St, v: usize) {
        st.index[v] = Some(st.next);
        st.low[v] = st.next;
        st.next += 1;
        st.stack.push(v);
        st.on_stack[v] = true;
        for k in 0..st.edges[v].len() {
            let w = st.edges[v][k].0;
            match st.index[w] {
                None => {
                    visit(st, w);
                    st.low[v] = st.low[v].min(st.low[w]);
                }
                Some(iw) if st.on_stack[w] => st.low[v] = st.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(st.low[v]) == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            st.out.push(comp);
        }
    }
    let mut st = St {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if st.index[v].is_none() {
            visit(&mut st, v);
        }
    }
    st.out
}

/// A set of candidates within one solver name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum VSet {
    /// Members satisfying alternative `alt` (interned) for a dependent of architecture `from`.
    Match { slot: usize, alt: usize },
    /// Members *not* satisfying `alt`, plus `except` itself: the allowed set under a
    /// `Conflicts` (or, with `breaks`, a `Breaks`) relation of `except`.
    NotMatch {
        slot: usize,
        alt: usize,
        except: PackageId,
        breaks: bool,
    },
    /// Every member.
    Any { slot: usize },
    /// No member (a foreign-architecture copy that cannot be co-installed).
    Nothing { slot: usize },
}

impl VSet {
    fn slot(&self) -> usize {
        match *self {
            VSet::Match { slot, .. }
            | VSet::NotMatch { slot, .. }
            | VSet::Any { slot }
            | VSet::Nothing { slot } => slot,
        }
    }
}

#[derive(Default)]
struct Tables {
    /// Interned (alternative, dependent architecture) pairs.
    alts: Vec<(Alternative, String)>,
    alt_ids: HashMap<String, usize>,
    vsets: Vec<VSet>,
    vset_ids: HashMap<VSet, VersionSetId>,
    unions: Vec<Vec<VersionSetId>>,
    /// Names for relation targets that exist nowhere, numbered after the universe's slots.
    phantom: Vec<String>,
    strings: Vec<String>,
}

/// The resolvo view of a [`Universe`].
struct Provider<'u> {
    u: &'u Universe,
    installed: BTreeSet<PackageId>,
    t: RefCell<Tables>,
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
        // resolvo's ids are u32; four billion version sets would exhaust memory first.
        #[allow(clippy::cast_possible_truncation)]
        let id = VersionSetId(t.vsets.len() as u32);
        t.vsets.push(vs.clone());
        t.vset_ids.insert(vs, id);
        id
    }

    fn intern_alt(&self, alt: &Alternative, from: &str) -> usize {
        let key = format!("{alt}@{from}");
        let mut t = self.t.borrow_mut();
        if let Some(&id) = t.alt_ids.get(&key) {
            return id;
        }
        let id = t.alts.len();
        t.alts.push((alt.clone(), from.to_string()));
        t.alt_ids.insert(key, id);
        id
    }

    fn phantom_slot(&self, name: &str) -> usize {
        let mut t = self.t.borrow_mut();
        let base = self.u.slots.len();
        if let Some(i) = t.phantom.iter().position(|n| n == name) {
            return base + i;
        }
        t.phantom.push(name.to_string());
        base + t.phantom.len() - 1
    }

    fn slot_name(&self, slot: usize) -> String {
        match self.u.slots.get(slot) {
            Some(s) => s.clone(),
            None => self
                .t
                .borrow()
                .phantom
                .get(slot - self.u.slots.len())
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// A requirement for relation `rel` of a dependent of architecture `from`: one version set
    /// per (alternative, slot) pair that has a satisfying member, in preference order.
    fn requirement(&self, rel: &Relation, from: &str) -> ConditionalRequirement {
        let mut sets = Vec::new();
        for alt in &rel.alternatives {
            let a = self.intern_alt(alt, from);
            for slot in self.u.alt_slots(alt, &self.installed) {
                if self.u.slot_members[slot]
                    .iter()
                    .any(|&id| self.u.satisfies(id, alt, from))
                {
                    let vs = self.intern(VSet::Match { slot, alt: a });
                    if !sets.contains(&vs) {
                        sets.push(vs);
                    }
                }
            }
        }
        if sets.is_empty() {
            // Nothing satisfies it: keep a set on the first name so the explanation names it.
            let empty = Alternative {
                name: "(empty relation)".into(),
                arch: ArchQual::None,
                constraint: None,
                arch_restriction: Vec::new(),
            };
            let alt = rel.alternatives.first().unwrap_or(&empty);
            let a = self.intern_alt(alt, from);
            let slot = match self.u.real.get(&alt.name).and_then(|s| s.first()) {
                Some(&s) => s,
                None => self.phantom_slot(&alt.name),
            };
            sets.push(self.intern(VSet::Match { slot, alt: a }));
        }
        let requirement = if sets.len() == 1 {
            Requirement::Single(sets[0])
        } else {
            let mut t = self.t.borrow_mut();
            // resolvo's ids are u32; four billion unions would exhaust memory first.
            #[allow(clippy::cast_possible_truncation)]
            let id = VersionSetUnionId(t.unions.len() as u32);
            t.unions.push(sets);
            Requirement::Union(id)
        };
        ConditionalRequirement {
            condition: None,
            requirement,
        }
    }

    fn in_set(&self, vs: &VSet, id: PackageId) -> bool {
        let t = self.t.borrow();
        match *vs {
            VSet::Match { alt, .. } => {
                let (a, from) = &t.alts[alt];
                self.u.satisfies(id, a, from)
            }
            VSet::NotMatch { alt, except, .. } => {
                let (a, from) = &t.alts[alt];
                id == except || !self.u.satisfies(id, a, from)
            }
            VSet::Any { .. } => true,
            VSet::Nothing { .. } => false,
        }
    }
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl Display + '_ {
        let p = self.u.pkg(solvable.to_index());
        format!(
            "{} {}",
            self.u.slots[self.u.package_slot[solvable.to_index()]],
            p.version
        )
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        let Some(first) = solvables.first() else {
            return String::new();
        };
        let mut versions: Vec<String> = solvables
            .iter()
            .map(|s| self.u.pkg(s.to_index()).version.to_string())
            .collect();
        versions.sort();
        versions.dedup();
        format!(
            "{} {}",
            self.u.slots[self.u.package_slot[first.to_index()]],
            versions.join(" | ")
        )
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        self.slot_name(name.to_index())
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let t = self.t.borrow();
        let Some(vs) = t.vsets.get(version_set.0 as usize) else {
            return String::new();
        };
        let name = self.slot_name(vs.slot());
        match *vs {
            VSet::Match { alt, .. } => {
                let a = &t.alts[alt].0;
                if a.name == name.split(':').next().unwrap_or("") {
                    match &a.constraint {
                        Some((op, v)) => format!("{op} {v}"),
                        None => "*".to_string(),
                    }
                } else {
                    format!("(providing {a})")
                }
            }
            VSet::NotMatch { alt, breaks, .. } => format!(
                "(excluded by {}: {})",
                if breaks { "Breaks" } else { "Conflicts" },
                t.alts[alt].0
            ),
            VSet::Any { .. } => "*".to_string(),
            VSet::Nothing { .. } => "(not co-installable)".to_string(),
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
        NameId::from_index(self.u.package_slot[solvable.to_index()])
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
        // No requirement built here carries a condition, so resolvo never asks; answer with an
        // always-present set rather than panicking.
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
            return Some(Candidates::default());
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
        solvables.sort_by(|a, b| {
            let (a, b) = (a.to_index(), b.to_index());
            self.installed
                .contains(&b)
                .cmp(&self.installed.contains(&a))
                .then_with(|| self.u.preference(a, b))
        });
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        let id = solvable.to_index();
        let p = self.u.pkg(id);
        let mut deps = KnownDependencies::default();
        for rel in p.pre_depends.iter().chain(&p.depends) {
            deps.requirements
                .push(self.requirement(rel, &p.architecture));
        }
        let conflicts = p.conflicts.iter().map(|a| (a, false));
        for (alt, breaks) in conflicts.chain(p.breaks.iter().map(|a| (a, true))) {
            let a = self.intern_alt(alt, &p.architecture);
            for slot in self.u.alt_slots(alt, &BTreeSet::new()) {
                let vs = self.intern(VSet::NotMatch {
                    slot,
                    alt: a,
                    except: id,
                    breaks,
                });
                if !deps.constrains.contains(&vs) {
                    deps.constrains.push(vs);
                }
            }
        }
        // dpkg installs one architecture of a name unless every copy is Multi-Arch: same.
        if p.multi_arch != MultiArch::Same {
            let own = self.u.package_slot[id];
            for &slot in self.u.real.get(&p.name).into_iter().flatten() {
                if slot != own {
                    deps.constrains.push(self.intern(VSet::Nothing { slot }));
                }
            }
        }
        Dependencies::Known(deps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apt::index::parse_packages;

    /// A universe from compact stanzas, one text per repository (its position is the
    /// repository number), read as planning reads them: packed.
    fn universe(repos: &[&str], prios: &[i32]) -> Universe {
        let packed = repos
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let key = crate::apt::cache::Sha256Digest::of(text.as_bytes());
                let bytes = crate::apt::packed::pack(text, &key, "test").unwrap();
                (PackedIndex::from_bytes(bytes, &key).unwrap(), i)
            })
            .collect();
        Universe::from_packed(packed, prios, "amd64", &["i386"])
    }

    /// The same universe from the parsed records.
    fn parsed_universe(repos: &[&str], prios: &[i32]) -> Universe {
        let mut all = Vec::new();
        for (i, text) in repos.iter().enumerate() {
            all.extend(parse_packages(text, i).unwrap());
        }
        Universe::new(all, prios, "amd64", &["i386"])
    }

    fn names(u: &Universe, r: &Resolution) -> Vec<String> {
        r.packages
            .iter()
            .map(|&id| {
                let p = u.package(id);
                format!("{}={}", p.name, p.version)
            })
            .collect()
    }

    fn solve(u: &Universe, want: &[&str]) -> Result<Vec<String>, SolveError> {
        u.solve(&Request::install(want)?).map(|r| names(u, &r))
    }

    const BASE: &str = "\
Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b (>= 2)\n\n\
Package: b\nVersion: 1\nArchitecture: amd64\n\n\
Package: b\nVersion: 2\nArchitecture: amd64\n\n\
Package: b\nVersion: 3\nArchitecture: amd64\n\n\
Package: c\nVersion: 1\nArchitecture: all\nDepends: b (<< 3)\n";

    #[test]
    fn depends_with_versions_picks_highest_allowed() {
        let u = universe(&[BASE], &[500]);
        assert_eq!(solve(&u, &["a"]).unwrap(), ["a=1", "b=3"]);
        assert_eq!(solve(&u, &["a", "c"]).unwrap(), ["a=1", "b=2", "c=1"]);
        assert_eq!(solve(&u, &["b (<< 2)"]).unwrap(), ["b=1"]);
    }

    #[test]
    fn typos_find_the_closest_known_name() {
        let text = "\
Package: python3-minimal\nVersion: 1\nArchitecture: amd64\n\n\
Package: python3\nVersion: 1\nArchitecture: amd64\n\n\
Package: mawk\nVersion: 1\nArchitecture: amd64\nProvides: awk\n";
        let u = universe(&[text], &[500]);
        assert!(u.knows("python3") && u.knows("awk") && u.knows("mawk:amd64"));
        assert!(!u.knows("pyhton3-minimal"));
        // A transposition is one edit.
        assert_eq!(u.closest("pyhton3-minimal"), Some("python3-minimal"));
        assert_eq!(u.closest("pythn3"), Some("python3"));
        // Provided names are candidates too.
        assert_eq!(u.closest("awj"), Some("awk"));
        // Nothing close: no guess.
        assert_eq!(u.closest("coreutils"), None);
    }

    #[test]
    fn repository_priority_beats_version() {
        let low = "Package: b\nVersion: 9\nArchitecture: amd64\n";
        let u = universe(&[BASE, low], &[500, 100]);
        assert_eq!(solve(&u, &["b"]).unwrap(), ["b=3"]);
        let u = universe(&[BASE, low], &[500, 990]);
        assert_eq!(solve(&u, &["b"]).unwrap(), ["b=9"]);
    }

    #[test]
    fn a_package_listed_twice_is_kept_once_from_the_better_repository() {
        let first = "Package: d\nVersion: 1\nArchitecture: amd64\nFilename: low/d.deb\n\n\
Package: e\nVersion: 1\nArchitecture: amd64\n";
        let second = "Package: d\nVersion: 1\nArchitecture: amd64\nFilename: high/d.deb\n\n\
Package: f\nVersion: 1\nArchitecture: arm64\n";
        for make in [universe, parsed_universe] {
            let u = make(&[first, second], &[100, 500]);
            let listed: Vec<(&str, usize)> = (0..u.len())
                .map(|id| (u.package(id).name.as_str(), u.package(id).repo))
                .collect();
            // The better record takes the place of the first one; the foreign architecture is
            // left out.
            assert_eq!(listed, [("d", 1), ("e", 0)]);
            assert_eq!(u.package(0).filename.as_deref(), Some("high/d.deb"));
            let u = make(&[first, second], &[500, 500]);
            assert_eq!(u.package(0).filename.as_deref(), Some("low/d.deb"));
        }
    }

    #[test]
    fn alternatives_prefer_first_satisfiable() {
        let text = "\
Package: x\nVersion: 1\nArchitecture: amd64\nDepends: missing | p2 | p1\n\n\
Package: p1\nVersion: 1\nArchitecture: amd64\n\n\
Package: p2\nVersion: 1\nArchitecture: amd64\n\n\
Package: y\nVersion: 1\nArchitecture: amd64\nDepends: p1 | p2\n";
        let u = universe(&[text], &[500]);
        assert_eq!(solve(&u, &["x"]).unwrap(), ["p2=1", "x=1"]);
        // Already chosen alternatives satisfy a later relation.
        assert_eq!(solve(&u, &["y", "p2"]).unwrap(), ["p2=1", "y=1"]);
    }

    #[test]
    fn virtual_packages_and_versioned_provides() {
        let text = "\
Package: mta-user\nVersion: 1\nArchitecture: amd64\nDepends: mail-transport-agent\n\n\
Package: exim\nVersion: 1\nArchitecture: amd64\nPriority: optional\nProvides: mail-transport-agent\n\n\
Package: postfix\nVersion: 1\nArchitecture: amd64\nPriority: important\nProvides: mail-transport-agent\n\n\
Package: v-user\nVersion: 1\nArchitecture: amd64\nDepends: libv (>= 2)\n\n\
Package: libv-old\nVersion: 1\nArchitecture: amd64\nProvides: libv (= 1)\n\n\
Package: libv-new\nVersion: 1\nArchitecture: amd64\nProvides: libv (= 2.5)\n\n\
Package: libv-unversioned\nVersion: 1\nArchitecture: amd64\nProvides: libv\n";
        let u = universe(&[text], &[500]);
        // apt's provider order: the more important Priority first.
        assert_eq!(
            solve(&u, &["mta-user"]).unwrap(),
            ["mta-user=1", "postfix=1"]
        );
        assert_eq!(solve(&u, &["v-user"]).unwrap(), ["libv-new=1", "v-user=1"]);
    }

    #[test]
    fn conflicts_and_breaks_steer_choices() {
        let text = "\
Package: x\nVersion: 1\nArchitecture: amd64\nDepends: p1 | p2\n\n\
Package: p1\nVersion: 1\nArchitecture: amd64\nConflicts: z\n\n\
Package: p2\nVersion: 1\nArchitecture: amd64\n\n\
Package: z\nVersion: 1\nArchitecture: amd64\n\n\
Package: w\nVersion: 2\nArchitecture: amd64\nBreaks: b (<< 3)\n\n\
Package: b\nVersion: 2\nArchitecture: amd64\n\n\
Package: b\nVersion: 3\nArchitecture: amd64\n\n\
Package: self\nVersion: 1\nArchitecture: amd64\nProvides: thing\nConflicts: thing\n";
        let u = universe(&[text], &[500]);
        assert_eq!(solve(&u, &["x", "z"]).unwrap(), ["p2=1", "x=1", "z=1"]);
        assert_eq!(solve(&u, &["w", "b"]).unwrap(), ["b=3", "w=2"]);
        assert!(solve(&u, &["w", "b (<< 3)"]).is_err());
        // A package may conflict with a virtual name it provides itself.
        assert_eq!(solve(&u, &["self"]).unwrap(), ["self=1"]);
    }

    #[test]
    fn multi_arch_rules() {
        let text = "\
Package: app\nVersion: 1\nArchitecture: amd64\nDepends: tool, python3:any, libz\n\n\
Package: tool\nVersion: 1\nArchitecture: i386\nMulti-Arch: foreign\n\n\
Package: python3\nVersion: 3\nArchitecture: i386\nMulti-Arch: allowed\n\n\
Package: libz\nVersion: 1\nArchitecture: i386\nMulti-Arch: same\n\n\
Package: libz\nVersion: 1\nArchitecture: amd64\nMulti-Arch: same\n\n\
Package: strict\nVersion: 1\nArchitecture: amd64\nDepends: python3\n";
        let u = universe(&[text], &[500]);
        let r = u.solve(&Request::install(&["app"]).unwrap()).unwrap();
        let got: Vec<String> = r
            .packages
            .iter()
            .map(|&id| format!("{}:{}", u.package(id).name, u.package(id).architecture))
            .collect();
        assert_eq!(
            got,
            ["app:amd64", "libz:amd64", "python3:i386", "tool:i386"]
        );
        // A plain dependency is not satisfied by a foreign, non-foreign-M-A package.
        assert!(solve(&u, &["strict"]).is_err());
        // Both architectures of a Multi-Arch: same library may be co-installed.
        assert_eq!(
            solve(&u, &["libz", "libz:i386"]).unwrap(),
            ["libz=1", "libz=1"]
        );
    }

    #[test]
    fn foreign_copies_of_non_same_packages_exclude_each_other() {
        let text = "\
Package: t\nVersion: 1\nArchitecture: amd64\n\n\
Package: t\nVersion: 1\nArchitecture: i386\n";
        let u = universe(&[text], &[500]);
        assert!(solve(&u, &["t", "t:i386"]).is_err());
    }

    #[test]
    fn bootstrap_set_and_installed_packages() {
        let text = "\
Package: base\nVersion: 1\nArchitecture: amd64\nEssential: yes\nPriority: required\nDepends: lib\n\n\
Package: lib\nVersion: 1\nArchitecture: amd64\nPriority: optional\n\n\
Package: lib\nVersion: 2\nArchitecture: amd64\nPriority: optional\n\n\
Package: req\nVersion: 1\nArchitecture: all\nPriority: required\n\n\
Package: opt\nVersion: 1\nArchitecture: amd64\nPriority: optional\nDepends: lib (>= 2)\n";
        let u = universe(&[text], &[500]);
        assert_eq!(u.bootstrap_names(), ["base", "req"]);
        let mut req = Request {
            bootstrap: true,
            ..Request::default()
        };
        let r = u.solve(&req).unwrap();
        assert_eq!(names(&u, &r), ["base=1", "lib=2", "req=1"]);
        // With lib 1 installed, it stays unless something needs more.
        let lib1 = u.find("lib", None, "1").unwrap();
        req.installed = vec![lib1];
        assert_eq!(
            names(&u, &u.solve(&req).unwrap()),
            ["base=1", "lib=1", "req=1"]
        );
        req.install = Request::install(&["opt"]).unwrap().install;
        assert_eq!(
            names(&u, &u.solve(&req).unwrap()),
            ["base=1", "lib=2", "opt=1", "req=1"]
        );
    }

    #[test]
    fn recommends_are_soft() {
        let text = "\
Package: x\nVersion: 1\nArchitecture: amd64\nRecommends: r1, missing, r2 | r3\n\n\
Package: r1\nVersion: 1\nArchitecture: amd64\nRecommends: r4\n\n\
Package: r2\nVersion: 1\nArchitecture: amd64\nConflicts: x\n\n\
Package: r3\nVersion: 1\nArchitecture: amd64\n\n\
Package: r4\nVersion: 1\nArchitecture: amd64\n";
        let u = universe(&[text], &[500]);
        let mut req = Request::install(&["x"]).unwrap();
        assert_eq!(names(&u, &u.solve(&req).unwrap()), ["x=1"]);
        req.with_recommends = true;
        // r2 conflicts with x, so its alternative r3 is taken; r1's own recommendation follows.
        assert_eq!(
            names(&u, &u.solve(&req).unwrap()),
            ["r1=1", "r3=1", "r4=1", "x=1"]
        );
    }

    #[test]
    fn unsolvable_names_the_chain() {
        let text = "\
Package: top\nVersion: 1\nArchitecture: amd64\nDepends: mid\n\n\
Package: mid\nVersion: 1\nArchitecture: amd64\nDepends: leaf (>= 2)\n\n\
Package: leaf\nVersion: 1\nArchitecture: amd64\n\n\
Package: haunted\nVersion: 1\nArchitecture: amd64\nDepends: ghost (>= 1) | spectre\n";
        let u = universe(&[text], &[500]);
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
        for name in ["top", "mid", "leaf"] {
            assert!(
                explanation.contains(name),
                "{name} missing from:\n{explanation}"
            );
        }
        assert!(explanation.contains(">= 2"), "{explanation}");
        assert_eq!(involved, &["mid", "top"]);
        assert!(matches!(
            solve(&u, &["nonesuch"]),
            Err(SolveError::UnknownPackage { .. })
        ));
    }

    #[test]
    fn install_order_respects_pre_depends_and_breaks_cycles() {
        let text = "\
Package: app\nVersion: 1\nArchitecture: amd64\nDepends: liba\nPre-Depends: pre\n\n\
Package: liba\nVersion: 1\nArchitecture: amd64\nDepends: libb\n\n\
Package: libb\nVersion: 1\nArchitecture: amd64\nDepends: liba\n\n\
Package: pre\nVersion: 1\nArchitecture: amd64\nPre-Depends: zlib\n\n\
Package: zlib\nVersion: 1\nArchitecture: amd64\n\n\
Package: cyc1\nVersion: 1\nArchitecture: amd64\nPre-Depends: cyc2\nDepends: cyc2\n\n\
Package: cyc2\nVersion: 1\nArchitecture: amd64\nDepends: cyc1\n";
        let u = universe(&[text], &[500]);
        let r = u
            .solve(&Request::install(&["app", "cyc1"]).unwrap())
            .unwrap();
        let order: Vec<&str> = u
            .install_order(&r.packages)
            .into_iter()
            .map(|id| u.package(id).name.as_str())
            .collect();
        let pos = |n: &str| order.iter().position(|&x| x == n).unwrap();
        assert_eq!(order.len(), 7);
        assert!(pos("zlib") < pos("pre") && pos("pre") < pos("app"));
        assert!(pos("liba") < pos("app") && pos("libb") < pos("app"));
        // cyc1 pre-depends on cyc2: cyc2 goes first although they depend on each other.
        assert!(pos("cyc2") < pos("cyc1"));
        // Deterministic: same input, same order.
        let mut shuffled = r.packages.clone();
        shuffled.reverse();
        assert_eq!(u.install_order(&shuffled), u.install_order(&r.packages));
    }
}
