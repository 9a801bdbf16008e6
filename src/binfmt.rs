//! Whether this host can execute a machine architecture's programs, found by running one: a
//! tiny static program of that architecture that only exits 0 (written here, a few dozen
//! bytes of ELF). The kernel runs it natively, through a `binfmt_misc` handler (qemu-user,
//! which Debian's `qemu-user-static` registers), or not at all; a handler that works outside
//! but not inside a build's root (registered without the `F` flag, so its interpreter is looked
//! up in the root) is found by matching the program against the registered handlers.
//!
//! The probe programs are written by hand: no crate writes a linked executable this small, and
//! each is three instructions (set the exit code, the `exit` system call number, the call).

use crate::image::platform::Platform;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the kernel lists `binfmt_misc` handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Why a machine architecture's programs cannot run here, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// No handler runs the architecture's programs.
    #[error(
        "this host cannot execute {arch} programs, which the build runs (package scripts): {reason}; \
         fix: {fix}"
    )]
    CannotExecute {
        /// The architecture (`--target-arch` name).
        arch: String,
        /// What the probe found.
        reason: String,
        /// The commands that fix it.
        fix: String,
    },
    /// A handler runs them, but not inside another root.
    #[error(
        "{arch} programs run here through the binfmt_misc handler {handler}, but without its F flag: \
         inside the image root the interpreter {interpreter} is not found; fix: register it with \
         the F flag ({fix})"
    )]
    NotFixed {
        /// The architecture.
        arch: String,
        /// The handler's name in `binfmt_misc`.
        handler: String,
        /// The interpreter it names.
        interpreter: String,
        /// The commands that fix it.
        fix: String,
    },
    /// The probe program could not be written or started.
    #[error("{path}: probing whether {arch} programs run: {source}")]
    Io {
        /// The probe program's path.
        path: PathBuf,
        /// The architecture.
        arch: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How a machine architecture's programs run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// By the kernel itself (the host's architecture, or one it runs too, as i386 on amd64).
    Native,
    /// Through a `binfmt_misc` handler.
    Emulated {
        /// The handler's name (`qemu-aarch64`).
        handler: String,
        /// Its interpreter.
        interpreter: String,
    },
    /// No probe program exists for the architecture; an enabled handler of the usual name
    /// was found.
    Assumed,
}

/// The commands that install and register qemu-user for `arch` on Debian.
fn fix(arch: &str) -> String {
    let name = qemu_name(arch);
    format!(
        "apt-get install qemu-user-static binfmt-support, then (when {BINFMT_DIR} is empty, as in \
         a container) mount -t binfmt_misc binfmt_misc {BINFMT_DIR} && update-binfmts --enable {name}"
    )
}

/// qemu-user's name for a machine architecture (`qemu-aarch64`, `qemu-arm`, …).
pub fn qemu_name(arch: &str) -> String {
    let p = Platform::for_machine(arch);
    let q = match p.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "mips64le" => "mips64el",
        "loong64" => "loongarch64",
        other => other,
    };
    format!("qemu-{q}")
}

/// Checks that `arch`'s programs run here and inside a build root, running a probe program
/// written into `scratch` (a directory on a filesystem that allows execution, removed by the
/// caller). The host's own architecture is native without a probe.
pub fn probe(arch: &str, scratch: &Path) -> Result<Execution, BinfmtError> {
    probe_in(arch, scratch, Path::new(BINFMT_DIR))
}

fn probe_in(arch: &str, scratch: &Path, binfmt_dir: &Path) -> Result<Execution, BinfmtError> {
    let host = Platform::host();
    let target = Platform::for_machine(arch);
    if host.matches(&target) {
        return Ok(Execution::Native);
    }
    let cannot = |reason: String| BinfmtError::CannotExecute {
        arch: arch.to_string(),
        reason,
        fix: fix(arch),
    };
    let Some(program) = exit_program(&target) else {
        // No probe for this architecture: an enabled handler of qemu's name is the best sign.
        let name = qemu_name(arch);
        return if handler(binfmt_dir, &name).is_some_and(|h| h.enabled) {
            Ok(Execution::Assumed)
        } else {
            Err(cannot(format!("no enabled binfmt_misc handler {name}")))
        };
    };
    let path = scratch.join(format!(".imgbuild-probe-{arch}"));
    let io = |source| BinfmtError::Io {
        path: path.clone(),
        arch: arch.to_string(),
        source,
    };
    write_program(&path, &program).map_err(io)?;
    let ran = Command::new(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&path);
    match ran {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return Err(cannot(format!(
                "the handler that runs them failed on a program that only exits 0 ({status})"
            )));
        }
        // ENOEXEC: no handler matched; the kernel knows no way to run it.
        Err(e) if e.raw_os_error() == Some(libc_enoexec()) => {
            let mounted = binfmt_dir.join("status").exists();
            return Err(cannot(if mounted {
                format!("no enabled binfmt_misc handler in {}", binfmt_dir.display())
            } else {
                format!("binfmt_misc is not mounted at {}", binfmt_dir.display())
            }));
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            // A noexec scratch filesystem says nothing about the architecture.
            return Err(io(e));
        }
        Err(e) => return Err(cannot(format!("running a probe program failed: {e}"))),
    }
    let matched = matching_handler(binfmt_dir, &program);
    if let Some(h) = &matched
        && !h.flags.contains('F')
    {
        return Err(BinfmtError::NotFixed {
            arch: arch.to_string(),
            handler: h.name.clone(),
            interpreter: h.interpreter.clone(),
            fix: format!(
                "install qemu-user-static, whose handlers have it, and update-binfmts --enable {}",
                qemu_name(arch)
            ),
        });
    }
    // No handler matched, yet it ran: the kernel runs it itself (i386 on amd64).
    Ok(match matched {
        Some(h) => Execution::Emulated {
            handler: h.name,
            interpreter: h.interpreter,
        },
        None => Execution::Native,
    })
}

fn libc_enoexec() -> i32 {
    nix::errno::Errno::ENOEXEC as i32
}

fn write_program(path: &Path, program: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, program)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// One registered `binfmt_misc` handler.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handler {
    name: String,
    enabled: bool,
    interpreter: String,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

/// The handler `name` in `dir`, parsed; none when it is not registered or not a magic match.
fn handler(dir: &Path, name: &str) -> Option<Handler> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let mut h = Handler {
        name: name.to_string(),
        enabled: text.lines().next() == Some("enabled"),
        interpreter: String::new(),
        flags: String::new(),
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim();
        match key {
            "interpreter" => h.interpreter = value.to_string(),
            "flags:" => h.flags = value.to_string(),
            "offset" => h.offset = value.parse().ok()?,
            "magic" => h.magic = hex::decode(value).ok()?,
            "mask" => h.mask = hex::decode(value).ok()?,
            _ => {}
        }
    }
    Some(h)
}

/// The enabled handler whose magic matches `program`, as the kernel matches them (the kernel
/// tries the newest registration first; qemu's handlers do not overlap, so any order finds it).
fn matching_handler(dir: &Path, program: &[u8]) -> Option<Handler> {
    if !std::fs::read_to_string(dir.join("status")).is_ok_and(|s| s.starts_with("enabled")) {
        return None;
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "status" && n != "register")
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| handler(dir, n))
        .find(|h| h.enabled && !h.magic.is_empty() && magic_matches(h, program))
}

fn magic_matches(h: &Handler, program: &[u8]) -> bool {
    let Some(window) = program.get(h.offset..h.offset + h.magic.len()) else {
        return false;
    };
    window.iter().enumerate().all(|(i, b)| {
        let m = h.mask.get(i).copied().unwrap_or(0xff);
        b & m == h.magic[i] & m
    })
}

/// The ELF header fields and code of a program that exits 0, per OCI architecture.
struct ProbeCode {
    /// 64-bit (ELFCLASS64) or 32-bit.
    wide: bool,
    big_endian: bool,
    /// `e_machine`.
    e_machine: u16,
    /// `e_flags`.
    flags: u32,
    /// Set the exit code to 0, load the `exit` system call's number, call it.
    code: &'static [u8],
}

fn machine(p: &Platform) -> Option<ProbeCode> {
    let (wide, big_endian, e_machine, flags, code): (bool, bool, u16, u32, &'static [u8]) =
        match (p.architecture.as_str(), p.normalized_variant()) {
            // mov eax, 60; xor edi, edi; syscall
            ("amd64", _) => (
                true,
                false,
                62,
                0,
                &[0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05],
            ),
            // mov eax, 1; xor ebx, ebx; int 0x80
            ("386", _) => (
                false,
                false,
                3,
                0,
                &[0xb8, 0x01, 0, 0, 0, 0x31, 0xdb, 0xcd, 0x80],
            ),
            // movz x0, #0; movz x8, #93; svc #0
            ("arm64", _) => (
                true,
                false,
                183,
                0,
                &[
                    0x00, 0x00, 0x80, 0xd2, 0xa8, 0x0b, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4,
                ],
            ),
            // mov r0, #0; mov r7, #1; svc #0 (EABI 5)
            ("arm", _) => (
                false,
                false,
                40,
                0x0500_0000,
                &[
                    0x00, 0x00, 0xa0, 0xe3, 0x01, 0x70, 0xa0, 0xe3, 0x00, 0x00, 0x00, 0xef,
                ],
            ),
            // addi a0, zero, 0; addi a7, zero, 93; ecall
            ("riscv64", _) => (
                true,
                false,
                243,
                0x4,
                &[
                    0x13, 0x05, 0x00, 0x00, 0x93, 0x08, 0xd0, 0x05, 0x73, 0x00, 0x00, 0x00,
                ],
            ),
            // li r0, 1; li r3, 0; sc (ELFv2)
            ("ppc64le", _) => (
                true,
                false,
                21,
                0x2,
                &[
                    0x01, 0x00, 0x00, 0x38, 0x00, 0x00, 0x60, 0x38, 0x02, 0x00, 0x00, 0x44,
                ],
            ),
            // lghi %r2, 0; svc 1
            ("s390x", _) => (true, true, 22, 0, &[0xa7, 0x29, 0x00, 0x00, 0x0a, 0x01]),
            _ => return None,
        };
    Some(ProbeCode {
        wide,
        big_endian,
        e_machine,
        flags,
        code,
    })
}

/// A static ELF executable for `p` that exits 0: the ELF header, one loadable segment holding
/// the whole file, the code right after the headers.
fn exit_program(p: &Platform) -> Option<Vec<u8>> {
    let m = machine(p)?;
    let base: u64 = 0x40_0000;
    let (ehsize, phsize) = if m.wide { (64u16, 56u16) } else { (52, 32) };
    let code_at = u64::from(ehsize + phsize);
    let total = code_at + m.code.len() as u64;
    let mut out = Vec::new();
    // A field of `width` bytes in the program's byte order (every value here fits).
    let put = |o: &mut Vec<u8>, v: u64, width: usize| {
        let mut b = v.to_le_bytes()[..width].to_vec();
        if m.big_endian {
            b.reverse();
        }
        o.extend(b);
    };
    let word = if m.wide { 8 } else { 4 };
    // e_ident: magic, class, data, version, OS ABI (System V), padding.
    out.extend(b"\x7fELF");
    out.push(if m.wide { 2 } else { 1 });
    out.push(if m.big_endian { 2 } else { 1 });
    out.push(1);
    out.extend([0u8; 9]);
    put(&mut out, 2, 2); // ET_EXEC
    put(&mut out, u64::from(m.e_machine), 2);
    put(&mut out, 1, 4); // EV_CURRENT
    put(&mut out, base + code_at, word); // e_entry
    put(&mut out, u64::from(ehsize), word); // e_phoff
    put(&mut out, 0, word); // e_shoff
    put(&mut out, u64::from(m.flags), 4);
    put(&mut out, u64::from(ehsize), 2);
    put(&mut out, u64::from(phsize), 2);
    put(&mut out, 1, 2); // e_phnum
    put(&mut out, 0, 6); // e_shentsize, e_shnum, e_shstrndx
    // The program header: PT_LOAD, read + execute, the whole file at `base`; p_flags comes
    // second in ELF64 and after the sizes in ELF32.
    put(&mut out, 1, 4);
    if m.wide {
        put(&mut out, 5, 4);
    }
    for v in [0, base, base, total, total] {
        put(&mut out, v, word); // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz
    }
    if !m.wide {
        put(&mut out, 5, 4);
    }
    put(&mut out, 0x1000, word); // p_align
    debug_assert_eq!(out.len() as u64, code_at);
    out.extend(m.code);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_runs_its_own_probe_program() {
        let host = Platform::host();
        let Some(program) = exit_program(&host) else {
            return; // a host architecture without a probe program
        };
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("p");
        write_program(&path, &program).unwrap();
        let status = Command::new(&path).status().unwrap();
        assert!(status.success(), "{status}");
        // And the host's architecture is native without a probe.
        assert_eq!(
            probe_in(host.kiwi_arch().unwrap(), t.path(), t.path()).unwrap(),
            Execution::Native
        );
    }

    #[test]
    fn without_a_handler_a_foreign_program_fails_naming_the_fix() {
        // A binfmt directory without handlers cannot be faked for the kernel, so this asks
        // for an architecture no handler on a test machine matches: a probe is only written
        // for known machines, and the error path is the same.
        let t = tempfile::tempdir().unwrap();
        let e = probe_in("loongarch64", t.path(), t.path()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("cannot execute loongarch64"), "{text}");
        assert!(text.contains("qemu-user-static"), "{text}");
        assert!(
            text.contains("update-binfmts --enable qemu-loongarch64"),
            "{text}"
        );
    }

    #[test]
    fn probe_programs_are_well_formed_elf() {
        for arch in [
            "x86_64", "i686", "aarch64", "armv7l", "riscv64", "ppc64le", "s390x",
        ] {
            let p = Platform::for_machine(arch);
            let prog = exit_program(&p).unwrap();
            assert_eq!(&prog[..4], b"\x7fELF", "{arch}");
            let m = machine(&p).unwrap();
            let e_machine = if m.big_endian {
                u16::from_be_bytes([prog[18], prog[19]])
            } else {
                u16::from_le_bytes([prog[18], prog[19]])
            };
            assert_eq!(e_machine, m.e_machine, "{arch}");
            assert!(prog.ends_with(m.code), "{arch}");
        }
    }

    #[test]
    fn handlers_are_matched_by_magic_and_mask() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("status"), "enabled\n").unwrap();
        let prog = exit_program(&Platform::for_machine("aarch64")).unwrap();
        // qemu-aarch64's registration as binfmt-support writes it.
        std::fs::write(
            t.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n\
             magic 7f454c460201010000000000000000000200b700\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("qemu-arm"),
            "enabled\ninterpreter /x\nflags: \noffset 0\n\
             magic 7f454c4601010100000000000000000002002800\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n",
        )
        .unwrap();
        let h = matching_handler(t.path(), &prog).unwrap();
        assert_eq!(h.name, "qemu-aarch64");
        assert!(h.flags.contains('F'));
        let arm = exit_program(&Platform::for_machine("armv7l")).unwrap();
        assert_eq!(matching_handler(t.path(), &arm).unwrap().name, "qemu-arm");
        let s390 = exit_program(&Platform::for_machine("s390x")).unwrap();
        assert!(matching_handler(t.path(), &s390).is_none());
    }
}
