//! The build profile on a real Debian root (`mmdebstrap --variant=minbase bookworm` from the
//! host's mirror, made once per run and shared with the parity test): dpkg and apt work inside, and
//! maintainer-script style work (users, ownership) succeeds. Needs root and the mirror; skips
//! clearly otherwise.

use std::path::Path;
use std::process::Command;

use crate::support::build::bookworm_minbase;
use crate::support::{in_process_sandbox, scratch};
use imgbuild::sandbox::{Sandbox, Stdio};

fn run(root: &Path, script: &str) -> (i32, String, String) {
    let o = Sandbox::new(root, ["/bin/sh", "-c", script])
        .env("PATH", imgbuild::sandbox::DEFAULT_PATH)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .hostname("debian-build")
        .stdout(Stdio::Capture)
        .stderr(Stdio::Capture)
        .run()
        .expect("sandbox runs");
    (
        o.code,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
fn dpkg_apt_and_user_tools_work_in_a_debian_root() {
    let test = "dpkg_apt_and_user_tools_work_in_a_debian_root";
    let Some(root) = bookworm_minbase(test) else {
        return;
    };
    let _s = in_process_sandbox();
    let (code, out, err) = run(root, "set -e; dpkg --audit; apt-get check -qq; dpkg -V");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "", "dpkg --audit, apt-get check or dpkg -V complained");
    let (code, out, _) = run(root, "hostname; echo $$; stat -c %U:%G /etc/shadow");
    assert_eq!(code, 0);
    assert_eq!(out, "debian-build\n1\nroot:shadow\n");

    // What a postinst does: add a system user, chown its home. On a copy, so the cached root
    // stays pristine.
    let copy = scratch(test);
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", root.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success());
    let (code, out, err) = run(
        copy.path(),
        "useradd --system --create-home --home-dir /var/lib/svc svc && \
         chown -R svc:svc /var/lib/svc && stat -c %U /var/lib/svc && \
         su -s /bin/sh -c 'id -un' svc",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "svc\nsvc\n");
    let passwd = std::fs::read_to_string(copy.path().join("etc/passwd")).unwrap();
    assert!(passwd.contains("\nsvc:"), "user written into the root");
    assert!(
        !std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("\nsvc:x")
    );
}
