//! Capability sets: Docker's default set and reading `/proc/<pid>/status` masks.

/// The capabilities Docker (moby `oci/caps/defaults.go`) gives a container by default:
/// CHOWN, `DAC_OVERRIDE`, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, `NET_BIND_SERVICE`,
/// `NET_RAW`, `SYS_CHROOT`, MKNOD, `AUDIT_WRITE`, SETFCAP.
pub const DOCKER_DEFAULT: u64 = bit(0) // CAP_CHOWN
    | bit(1) // CAP_DAC_OVERRIDE
    | bit(3) // CAP_FOWNER
    | bit(4) // CAP_FSETID
    | bit(5) // CAP_KILL
    | bit(6) // CAP_SETGID
    | bit(7) // CAP_SETUID
    | bit(8) // CAP_SETPCAP
    | bit(10) // CAP_NET_BIND_SERVICE
    | bit(13) // CAP_NET_RAW
    | bit(18) // CAP_SYS_CHROOT
    | bit(27) // CAP_MKNOD
    | bit(29) // CAP_AUDIT_WRITE
    | bit(31); // CAP_SETFCAP

/// The capabilities build hooks and maintainer scripts keep (see docs/sandbox.md for how the
/// set was measured): what `dpkg`, maintainer scripts and KIWI hooks use, and nothing that
/// reaches past the root tree (no `SYS_ADMIN`, `SYS_MODULE`, `SYS_PTRACE`, `NET_ADMIN`, …).
pub const BUILD_DEFAULT: u64 = bit(0) // CAP_CHOWN
    | bit(1) // CAP_DAC_OVERRIDE
    | bit(3) // CAP_FOWNER
    | bit(4) // CAP_FSETID
    | bit(6) // CAP_SETGID
    | bit(7) // CAP_SETUID
    | bit(31); // CAP_SETFCAP

/// The names of [`DOCKER_DEFAULT`] as an OCI runtime spec lists them.
pub const DOCKER_DEFAULT_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// Capability names by number (`linux/capability.h`), without the `CAP_` prefix.
pub const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The number of a capability named as podman takes it (`NET_ADMIN`, `cap_net_admin`).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .and_then(|i| u32::try_from(i).ok())
}

/// Docker's rule for `--cap-add`/`--cap-drop` over `base`: `ALL` in the drops keeps only the
/// adds, `ALL` in the adds gives every capability up to `last` but the drops; otherwise drops
/// are removed and adds added. The unknown name, if any, is the error.
pub fn adjust(base: u64, add: &[String], drop: &[String], last: u32) -> Result<u64, String> {
    let all = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mask = |v: &[String]| -> Result<u64, String> {
        let mut m = 0;
        for c in v.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
            m |= 1u64 << number(c).ok_or_else(|| c.clone())?;
        }
        Ok(m)
    };
    let (a, d) = (mask(add)?, mask(drop)?);
    Ok(if is_all(add) {
        all & !d
    } else if is_all(drop) {
        a & all
    } else {
        ((base & !d) | a) & all
    })
}

const fn bit(n: u32) -> u64 {
    1 << n
}

/// Read a capability mask line (`CapBnd`, `CapEff`, …) from the text of `/proc/<pid>/status`.
pub fn status_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key == field {
            u64::from_str_radix(value.trim(), 16).ok()
        } else {
            None
        }
    })
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_add_and_drop_as_docker() {
        assert_eq!(number("net_admin"), Some(12));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("NOPE"), None);
        let add = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(
            adjust(DOCKER_DEFAULT, &add(&["NET_ADMIN"]), &add(&["MKNOD"]), 40).unwrap(),
            (DOCKER_DEFAULT | bit(12)) & !bit(27)
        );
        assert_eq!(
            adjust(DOCKER_DEFAULT, &add(&["CHOWN"]), &add(&["ALL"]), 40).unwrap(),
            bit(0)
        );
        assert_eq!(
            adjust(DOCKER_DEFAULT, &add(&["ALL"]), &add(&["SYS_ADMIN"]), 40).unwrap(),
            ((1u64 << 41) - 1) & !bit(21)
        );
        assert_eq!(adjust(0, &add(&["BOGUS"]), &[], 40).unwrap_err(), "BOGUS");
        assert_eq!(NAMES.len(), 41);
    }

    #[test]
    fn docker_default_matches_dockers_capbnd() {
        // `docker run --rm debian grep CapBnd /proc/self/status` prints 00000000a80425fb.
        assert_eq!(DOCKER_DEFAULT, 0xa804_25fb);
        assert_eq!(
            DOCKER_DEFAULT.count_ones() as usize,
            DOCKER_DEFAULT_NAMES.len()
        );
    }

    /// The hand-written masks and names agree with the `caps` crate's table.
    fn names_of(mask: u64) -> Vec<String> {
        caps::all()
            .into_iter()
            .filter(|c| mask & c.bitmask() != 0)
            .map(|c| c.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn masks_match_the_caps_crate() {
        let mut docker: Vec<String> = DOCKER_DEFAULT_NAMES
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        docker.sort();
        assert_eq!(names_of(DOCKER_DEFAULT), docker);
        assert_eq!(
            names_of(BUILD_DEFAULT),
            [
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETUID"
            ]
        );
    }

    #[test]
    fn build_set_is_within_dockers() {
        assert_eq!(BUILD_DEFAULT, 0x8000_00db);
        assert_eq!(BUILD_DEFAULT & !DOCKER_DEFAULT, 0);
    }

    #[test]
    fn parses_status_masks() {
        let s = "Name:\tsh\nCapInh:\t0000000000000000\nCapBnd:\t00000000a80425fb\n";
        assert_eq!(status_mask(s, "CapBnd"), Some(0xa804_25fb));
        assert_eq!(status_mask(s, "CapInh"), Some(0));
        assert_eq!(status_mask(s, "CapAmb"), None);
    }
}
