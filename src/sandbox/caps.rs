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
