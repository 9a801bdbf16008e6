//! Resolving a `USER[:GROUP]` against the container's `/etc/passwd` and `/etc/group`, with
//! runc's rules (which Docker and Podman share).

use super::spec::UserSpec;
use super::{Result, RuntimeError};
use crate::confine::Root;
use std::io::Read;
use std::path::Path;

/// The identity a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups: the groups listing the user as a member.
    pub groups: Vec<u32>,
    /// Home directory from `/etc/passwd` (`/` when the user has no entry).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolve `spec` with the container's `passwd` and `group` file contents (empty when the
/// image lacks them). A user or group *name* must exist; a numeric id need not (a uid without
/// an entry gets gid 0 and home `/`, as with runc).
pub fn resolve(spec: &UserSpec, passwd: &str, group: &str) -> Result<ExecUser> {
    let numeric_user = spec.user.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric_user {
        Some(uid) => e.uid == uid,
        None => e.name == spec.user,
    });
    let (uid, mut gid, home, name) = match (&entry, numeric_user) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (None, Some(uid)) => (uid, 0, "/".to_string(), None),
        (None, None) => {
            return Err(RuntimeError::UnknownUser {
                name: spec.user.clone(),
                file: "/etc/passwd",
            });
        }
    };
    if let Some(g) = &spec.group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| RuntimeError::UnknownUser {
                    name: g.clone(),
                    file: "/etc/group",
                })?,
        };
    }
    let mut groups: Vec<u32> = match name {
        Some(n) => group_entries(group)
            .filter(|e| e.members.contains(&n) && e.gid != gid)
            .map(|e| e.gid)
            .collect(),
        None => Vec::new(),
    };
    groups.sort_unstable();
    groups.dedup();
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// The user `spec` names (root when `None`), looked up in the `/etc/passwd` and `/etc/group`
/// of container `id`'s root tree `rootfs`, read confined to it (a symlink in the image cannot
/// make imgbuild read a host file).
pub fn resolve_in(id: &str, rootfs: &Path, spec: Option<&UserSpec>) -> Result<ExecUser> {
    let root = Root::open(rootfs).map_err(|source| RuntimeError::Root {
        id: id.to_string(),
        source,
    })?;
    let read = |rel: &str| -> Result<String> {
        match root.open_file(rel) {
            Ok(mut f) => {
                let mut s = String::new();
                f.read_to_string(&mut s)
                    .map_err(|source| RuntimeError::ContainerFile {
                        id: id.to_string(),
                        what: "reading",
                        path: Path::new("/").join(rel),
                        source,
                    })?;
                Ok(s)
            }
            Err(e) if e.is_not_found() => Ok(String::new()),
            Err(source) => Err(RuntimeError::Root {
                id: id.to_string(),
                source,
            }),
        }
    };
    let root_user = UserSpec {
        user: "0".into(),
        group: None,
    };
    resolve(
        spec.unwrap_or(&root_user),
        &read("etc/passwd")?,
        &read("etc/group")?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          broken line\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1000:\naudio:x:29:app\n";

    fn r(spec: &str) -> Result<ExecUser> {
        resolve(&UserSpec::parse(spec).unwrap(), PASSWD, GROUP)
    }

    #[test]
    fn names_and_ids() {
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(u.groups, vec![29, 50]);
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert_eq!(u.groups, vec![29]);
        let u = r("1000:7").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 7));
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert!(u.groups.is_empty());
        let u = r("root").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = r("ghost").unwrap_err().to_string();
        assert!(e.contains("ghost") && e.contains("/etc/passwd"), "{e}");
        let e = r("app:ghosts").unwrap_err().to_string();
        assert!(e.contains("ghosts") && e.contains("/etc/group"), "{e}");
        // No passwd file at all: numeric ids still work.
        let u = resolve(&UserSpec::parse("5:6").unwrap(), "", "").unwrap();
        assert_eq!((u.uid, u.gid), (5, 6));
    }
}
