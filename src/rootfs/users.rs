//! `<users>`: groups and users created with the image's own tools (`groupadd`, `useradd`,
//! `usermod`, `chpasswd`) by one shell script run inside the sandbox, in KIWI's order and with its
//! option mapping (first group primary, the rest supplementary).

use super::profile::shell_quote;

/// One `<user>` of the description, as the root stage needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// The password: a crypt(3) hash, or clear text when `password_is_plain`.
    pub password: Option<String>,
    /// `pwdformat="plain"`: hash `password` with the image's `chpasswd`.
    pub password_is_plain: bool,
    /// Home directory; created when given.
    pub home: Option<String>,
    /// Numeric user id.
    pub id: Option<u32>,
    /// Groups: the first is the primary group, the rest supplementary. Missing ones are created.
    pub groups: Vec<String>,
    /// The GECOS comment (`realname`).
    pub realname: Option<String>,
    /// Login shell.
    pub shell: Option<String>,
}

/// A shell script that creates every group and user of `users` (idempotently: an existing user is
/// modified instead), stopping at the first failure.
pub fn script(users: &[UserSpec]) -> String {
    let mut s = String::from("set -eu\n");
    let mut groups: Vec<&str> = Vec::new();
    for u in users {
        for g in &u.groups {
            if !groups.contains(&g.as_str()) {
                groups.push(g);
            }
        }
    }
    for g in groups {
        let q = shell_quote(g);
        s.push_str(&format!("getent group {q} >/dev/null || groupadd {q}\n"));
    }
    for u in users {
        let mut opts: Vec<String> = Vec::new();
        if let Some(primary) = u.groups.first() {
            opts.push(format!("-g {}", shell_quote(primary)));
        }
        if u.groups.len() > 1 {
            opts.push(format!("-G {}", shell_quote(&u.groups[1..].join(","))));
        }
        if let Some(id) = u.id {
            opts.push(format!("-u {id}"));
        }
        if let Some(home) = &u.home {
            opts.push(format!("-d {}", shell_quote(home)));
        }
        if let Some(shell) = &u.shell {
            opts.push(format!("-s {}", shell_quote(shell)));
        }
        if let Some(realname) = &u.realname {
            opts.push(format!("-c {}", shell_quote(realname)));
        }
        if let (Some(pw), false) = (&u.password, u.password_is_plain) {
            opts.push(format!("-p {}", shell_quote(pw)));
        }
        let name = shell_quote(&u.name);
        let opts = opts.join(" ");
        let create_home = if u.home.is_some() { " -m" } else { "" };
        if opts.is_empty() {
            // usermod without options is a usage error: only create a missing user.
            s.push_str(&format!(
                "getent passwd {name} >/dev/null || useradd{create_home} {name}\n"
            ));
        } else {
            s.push_str(&format!(
                "if getent passwd {name} >/dev/null; then usermod {opts} {name}; else useradd{create_home} {opts} {name}; fi\n"
            ));
        }
        if let (Some(pw), true) = (&u.password, u.password_is_plain) {
            s.push_str(&format!(
                "printf '%s\\n' {} | chpasswd\n",
                shell_quote(&format!("{}:{pw}", u.name))
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kiwi_user_attributes() {
        let users = vec![
            UserSpec {
                name: "app".into(),
                password: Some("$6$salt$hash".into()),
                home: Some("/srv/app".into()),
                id: Some(1001),
                groups: vec!["app".into(), "audio".into(), "video".into()],
                realname: Some("App User".into()),
                shell: Some("/bin/bash".into()),
                ..Default::default()
            },
            UserSpec {
                name: "root".into(),
                password: Some("lin'ux".into()),
                password_is_plain: true,
                ..Default::default()
            },
        ];
        let s = script(&users);
        assert_eq!(
            s,
            "set -eu\n\
             getent group 'app' >/dev/null || groupadd 'app'\n\
             getent group 'audio' >/dev/null || groupadd 'audio'\n\
             getent group 'video' >/dev/null || groupadd 'video'\n\
             if getent passwd 'app' >/dev/null; then usermod -g 'app' -G 'audio,video' -u 1001 -d '/srv/app' -s '/bin/bash' -c 'App User' -p '$6$salt$hash' 'app'; \
             else useradd -m -g 'app' -G 'audio,video' -u 1001 -d '/srv/app' -s '/bin/bash' -c 'App User' -p '$6$salt$hash' 'app'; fi\n\
             getent passwd 'root' >/dev/null || useradd 'root'\n\
             printf '%s\\n' 'root:lin'\\''ux' | chpasswd\n"
        );
        let check = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .output()
            .unwrap();
        assert!(check.status.success());
    }
}
