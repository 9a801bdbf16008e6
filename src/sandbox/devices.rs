//! The device policy: which device nodes a sandboxed process may create and open, enforced by
//! the cgroup device controller — the `devices` v1 controller's `devices.deny`/`devices.allow`
//! files, or on cgroup v2 an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the
//! sandbox's cgroup. Either way a block device node made with `mknod` (even of the host's disk
//! or a loop device) cannot be opened: that needs `r` or `w` access, which only the default
//! character devices have.
//!
//! The eBPF program is emitted here by hand (a few instructions per rule) instead of pulling
//! in an eBPF toolchain crate for one fixed, tiny program.
// Kernel ABI: syscall arguments and struct fields (fds, flags, BPF fields) are converted
// between the widths the ABI gives them; each value's range is fixed by the kernel or checked
// where it is produced. (In the cloned child, errors cannot be handled as in the parent.)
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `c`
    Char,
    /// `b`
    Block,
}

/// One allow rule: device kind, major and minor (`None` = any), and the access it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Character or block device.
    pub kind: Kind,
    /// The major number, `None` for any.
    pub major: Option<u32>,
    /// The minor number, `None` for any.
    pub minor: Option<u32>,
    /// `r`, `w`, `m` (mknod) as the v1 controller spells them.
    pub access: &'static str,
}

const fn rule(kind: Kind, major: Option<u32>, minor: Option<u32>, access: &'static str) -> Rule {
    Rule {
        kind,
        major,
        minor,
        access,
    }
}

/// The default devices of crun and runc: creating any node is allowed (images ship nodes in
/// their layers), but only these can be opened: null, zero, full, random, urandom, tty,
/// console, ptmx and the pseudo-terminals.
pub const DEFAULT: &[Rule] = &[
    rule(Kind::Char, None, None, "m"),
    rule(Kind::Block, None, None, "m"),
    rule(Kind::Char, Some(1), Some(3), "rwm"),
    rule(Kind::Char, Some(1), Some(5), "rwm"),
    rule(Kind::Char, Some(1), Some(7), "rwm"),
    rule(Kind::Char, Some(1), Some(8), "rwm"),
    rule(Kind::Char, Some(1), Some(9), "rwm"),
    rule(Kind::Char, Some(5), Some(0), "rwm"),
    rule(Kind::Char, Some(5), Some(1), "rwm"),
    rule(Kind::Char, Some(5), Some(2), "rwm"),
    rule(Kind::Char, Some(136), None, "rwm"),
];

impl Rule {
    /// The line for a v1 `devices.allow` file (`c 1:3 rwm`, `b *:* m`).
    pub fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        format!(
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            self.access
        )
    }

    fn access_mask(&self) -> i32 {
        self.access.chars().fold(0, |m, c| {
            m | match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => 0,
            }
        })
    }
}

// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, where access_type is
// `(access << 16) | type`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn ebpf(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const AND64_K: u8 = 0x57;
const RSH64_K: u8 = 0x77;
const JNE_K: u8 = 0x55; // if dst != imm goto +off
const EXIT: u8 = 0x95;

/// The device program for `rules`: returns 1 (allow) when a rule matches the device's kind,
/// numbers and every access bit asked for, else 0.
pub fn program(rules: &[Rule]) -> Vec<BpfInsn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor (r1 is the context).
    let mut p = vec![
        ebpf(LDX_MEM_W, 2, 1, 0, 0),
        ebpf(MOV64_X, 3, 2, 0, 0),
        ebpf(AND64_K, 2, 0, 0, 0xffff),
        ebpf(RSH64_K, 3, 0, 0, 16),
        ebpf(LDX_MEM_W, 4, 1, 4, 0),
        ebpf(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // Each test jumps past the rest of this rule's block when it fails; the block's length
        // is known once built, so the offsets are patched after.
        let mut block: Vec<BpfInsn> = Vec::new();
        let kind = match r.kind {
            Kind::Char => DEV_CHAR,
            Kind::Block => DEV_BLOCK,
        };
        block.push(ebpf(JNE_K, 2, 0, 0, kind));
        // Access bits outside the rule's: r6 = r3 & !mask; must be 0.
        block.push(ebpf(MOV64_X, 6, 3, 0, 0));
        block.push(ebpf(AND64_K, 6, 0, 0, !r.access_mask() & 0x7));
        block.push(ebpf(JNE_K, 6, 0, 0, 0));
        if let Some(major) = r.major {
            block.push(ebpf(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            block.push(ebpf(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(ebpf(MOV64_K, 0, 0, 0, 1));
        block.push(ebpf(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.code == JNE_K {
                // Land on the first instruction after the block.
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(ebpf(MOV64_K, 0, 0, 0, 0));
    p.push(ebpf(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The start of `union bpf_attr` for `BPF_PROG_LOAD`, zero-padded to the size the kernel
/// accepts (it checks that unknown trailing bytes are zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    pad: [u8; 80],
}

#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: [u8; 44],
}

/// Load the program for `rules` and attach it to the cgroup v2 directory `cgroup`. The
/// program stays attached (and in force for every process in the cgroup) until the cgroup is
/// removed.
pub fn attach_program(cgroup: &Path, rules: &[Rule]) -> std::io::Result<()> {
    let insns = program(rules);
    let license = c"GPL";
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        pad: [0; 80],
    };
    // SAFETY: bpf(2) reads `load` (and the instructions and license it points to, alive here).
    let prog = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &raw const load,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if prog < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd that we own.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let dir = std::fs::File::open(cgroup)?;
    let attach = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        // Programs of the ancestors (a systemd unit's device policy) still apply as well.
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        pad: [0; 44],
    };
    // SAFETY: bpf(2) reads `attach`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &raw const attach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = DEFAULT.iter().map(Rule::v1_line).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert!(lines.contains(&"c 1:3 rwm".to_string()));
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        assert!(!lines.iter().any(|l| l.starts_with('b') && l.contains('r')));
    }

    /// Runs the program on one device, as the kernel would (an interpreter for the few
    /// instructions it uses).
    fn eval(p: &[BpfInsn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as u64,
                AND64_K => r[dst] &= i.imm as u64,
                RSH64_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn program_allows_exactly_the_default_devices() {
        let p = program(DEFAULT);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(eval(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 9), 1, "/dev/urandom");
        assert_eq!(eval(&p, DEV_CHAR, rw, 136, 7), 1, "a pty");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_MKNOD, 7, 0), 1, "mknod of any node");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 7, 0), 0, "loop0 read");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_WRITE, 8, 0), 0, "sda write");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem");
        assert_eq!(eval(&p, DEV_CHAR, rw, 10, 200), 0, "/dev/net/tun");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ | ACC_MKNOD, 4, 1), 0, "tty1");
    }

    /// The v2 path on the real kernel: a cgroup on the unified hierarchy with the program
    /// attached; a forked child moved into it can open /dev/null's node but not a block node
    /// (`mknod` made on a filesystem without `nodev`, so only the program can refuse it).
    #[test]
    #[cfg_attr(not(imgbuild_tests_as_root), ignore = "needs root")]
    #[cfg_attr(
        all(imgbuild_tests_as_root, not(imgbuild_has_cgroup2)),
        ignore = "needs a mounted cgroup2 hierarchy"
    )]
    fn ebpf_program_denies_block_devices_on_cgroup_v2() {
        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let host = crate::sandbox::cgroup::Host::detect().unwrap();
        let v2 = host
            .hierarchies
            .iter()
            .find(|h| h.unified)
            .expect("a cgroup2 hierarchy (build.rs saw one mounted)");
        let base = v2.mount.join(
            host.v2_path
                .as_deref()
                .unwrap_or("/")
                .trim_start_matches('/'),
        );
        let cg = Dir(base.join(format!("imgbuild-devtest-{}", std::process::id())));
        std::fs::create_dir(&cg.0).unwrap();
        attach_program(&cg.0, DEFAULT).unwrap();

        let nodes = tempfile::tempdir_in("/var/tmp").unwrap();
        let blk = std::ffi::CString::new(
            nodes
                .path()
                .join("blk")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let null = std::ffi::CString::new(
            nodes
                .path()
                .join("null")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: mknod with valid paths; the child makes only raw syscalls and leaves with
        // _exit.
        unsafe {
            assert_eq!(
                libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)),
                0
            );
            assert_eq!(
                libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)),
                0
            );
            let mut fds = [0; 2];
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let mut b = 0u8;
                libc::read(fds[0], (&raw mut b).cast(), 1);
                let fd = libc::open(null.as_ptr(), libc::O_RDWR);
                if fd < 0 {
                    libc::_exit(1);
                }
                let fd = libc::open(blk.as_ptr(), libc::O_RDONLY);
                let code = if fd < 0 && *libc::__errno_location() == libc::EPERM {
                    0
                } else {
                    2
                };
                libc::_exit(code);
            }
            std::fs::write(cg.0.join("cgroup.procs"), pid.to_string()).unwrap();
            assert_eq!(libc::write(fds[1], [1u8].as_ptr().cast(), 1), 1);
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
            libc::close(fds[0]);
            libc::close(fds[1]);
            assert!(libc::WIFEXITED(status));
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "1: /dev/null refused, 2: the block device opened"
            );
        }
    }
}
