//! `apt::version` agrees with `dpkg --compare-versions` on generated tricky pairs.

use crate::support::skip;
use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use imgbuild::apt::version::Version;

/// Small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const UP_TOKENS: &[&str] = &[
    "0", "1", "2", "9", "10", "01", "001", "100", "a", "b", "z", "A", "Z", "rc", "~", "~~", "+",
    ".", "+dfsg", "~rc1", "~beta", "a1", "1a", ".0", "+b1",
];
const REV_TOKENS: &[&str] = &[
    "0", "1", "2", "10", "01", "a", "b", "~", "+", ".", "+b1", "~bpo1", "+deb12u1", "ubuntu1",
];

fn gen_part(rng: &mut Rng, tokens: &[&str], max: usize) -> String {
    let n = 1 + rng.below(max);
    (0..n).map(|_| rng.pick(tokens)).collect()
}

fn gen_version(rng: &mut Rng) -> String {
    let mut s = String::new();
    let epoch = rng.below(6);
    if epoch < 3 {
        s.push_str(["0", "1", "2", "00", "10", "1"][rng.below(6)]);
        s.push(':');
    }
    // upstream must start with a digit
    s.push_str(["0", "1", "2", "9", "01", "10"][rng.below(6)]);
    s.push_str(&gen_part(rng, UP_TOKENS, 4));
    if epoch < 3 && rng.below(8) == 0 {
        s.push_str(":1");
    }
    if rng.below(3) != 0 {
        if rng.below(6) == 0 {
            s.push_str("-1");
        }
        s.push('-');
        s.push_str(&gen_part(rng, REV_TOKENS, 3));
    }
    s
}

/// A small edit of `v`, so that many pairs are nearly equal.
fn mutate(rng: &mut Rng, v: &str) -> String {
    let edits: [&dyn Fn(&str) -> String; 8] = [
        &|v| format!("{v}~"),
        &|v| format!("{v}+"),
        &|v| format!("{v}.0"),
        &|v| format!("{v}a"),
        &|v| format!("0:{v}"),
        &|v| format!("{v}-0"),
        &|v| v.replacen('1', "01", 1),
        &|v| v.replacen('.', "~", 1),
    ];
    let out = edits[rng.below(edits.len())](v);
    match Version::parse(&out) {
        Ok(_) => out,
        Err(_) => v.to_string(),
    }
}

fn holds(op: &str, o: Ordering) -> bool {
    match op {
        "lt" => o == Ordering::Less,
        "le" => o != Ordering::Greater,
        "eq" => o == Ordering::Equal,
        "ne" => o != Ordering::Equal,
        "ge" => o != Ordering::Less,
        "gt" => o == Ordering::Greater,
        _ => unreachable!("unknown op {op}"),
    }
}

/// Run one shell per chunk; each prints one 0/1 line per (a, op, b) line.
fn dpkg_results(lines: &[(String, &str, String)]) -> Vec<bool> {
    let chunks: Vec<_> = lines.chunks(lines.len().div_ceil(2)).collect();
    let children: Vec<_> = chunks
        .iter()
        .map(|chunk| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(
                    "while read a op b; do \
                       if dpkg --compare-versions \"$a\" \"$op\" \"$b\" 2>/dev/null; then echo 1; else echo 0; fi; \
                     done",
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn sh");
            let mut input = String::new();
            for (a, op, b) in *chunk {
                input.push_str(&format!("{a} {op} {b}\n"));
            }
            let mut stdin = child.stdin.take().expect("stdin");
            std::thread::spawn(move || stdin.write_all(input.as_bytes()).expect("write pairs"));
            child
        })
        .collect();
    let mut out = Vec::new();
    for child in children {
        let res = child.wait_with_output().expect("wait sh");
        assert!(res.status.success());
        out.extend(
            String::from_utf8_lossy(&res.stdout)
                .lines()
                .map(|l| l == "1"),
        );
    }
    out
}

#[test]
fn agrees_with_dpkg_on_generated_pairs() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        skip(format_args!(
            "agrees_with_dpkg_on_generated_pairs needs dpkg"
        ));
        return;
    }
    const N: usize = 10_000;
    const OPS: [&str; 6] = ["lt", "le", "eq", "ne", "ge", "gt"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut lines = Vec::with_capacity(N);
    for i in 0..N {
        let a = gen_version(&mut rng);
        let b = if rng.below(2) == 0 {
            mutate(&mut rng, &a)
        } else {
            gen_version(&mut rng)
        };
        lines.push((a, OPS[i % OPS.len()], b));
    }
    let ours: Vec<bool> = lines
        .iter()
        .map(|(a, op, b)| {
            let va = Version::parse(a).unwrap_or_else(|e| panic!("{a}: {e}"));
            let vb = Version::parse(b).unwrap_or_else(|e| panic!("{b}: {e}"));
            holds(op, va.cmp(&vb))
        })
        .collect();
    let theirs = dpkg_results(&lines);
    assert_eq!(theirs.len(), N, "dpkg answered every pair");
    let mismatches: Vec<_> = lines
        .iter()
        .zip(ours.iter().zip(&theirs))
        .filter(|(_, (o, t))| o != t)
        .map(|((a, op, b), (o, t))| format!("{a} {op} {b}: ours {o}, dpkg {t}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(20)]
    );
    // The generator must actually produce all three outcomes in quantity.
    let eq = lines
        .iter()
        .filter(|(a, _, b)| Version::parse(a).ok() == Version::parse(b).ok())
        .count();
    assert!(eq > 100, "only {eq} equal pairs generated");
}

#[test]
fn rejects_what_dpkg_rejects() {
    for bad in ["", "1.0-", ":1.0", "x:1.0", "1 .0", "1.0_1", "abc"] {
        assert!(Version::parse(bad).is_err(), "{bad:?} should be invalid");
    }
}
