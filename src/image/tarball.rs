//! A minimal, fixed-format tar writer: ustar headers with PAX extended headers only where ustar
//! cannot hold a value (long names, large ids or sizes, xattrs). Nothing varies but the entry:
//! no atime/ctime, no user or group names, no PID in PAX header names.

use std::io::{self, Write};

/// Tar block size.
pub const BLOCK: usize = 512;

/// What an entry is, with the data its type needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its content follows the header.
    File,
    /// A hardlink to an earlier entry of the same archive.
    HardLink(Vec<u8>),
    /// A symbolic link with its target.
    Symlink(Vec<u8>),
    /// A directory.
    Dir,
    /// A character device (major, minor).
    Char(u64, u64),
    /// A block device (major, minor).
    Block(u64, u64),
    /// A named pipe.
    Fifo,
}

/// One tar entry's header data.
#[derive(Debug, Clone)]
pub struct TarEntry<'a> {
    /// Path relative to the archive root, without leading `./` or trailing `/`.
    pub path: &'a [u8],
    /// Entry type.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Content size (regular files only; 0 otherwise).
    pub size: u64,
    /// Modification time, seconds since the epoch (already clamped).
    pub mtime: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

const MAX_OCTAL_7: u64 = 0o7_777_777;
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

fn put_octal(field: &mut [u8], value: u64) {
    // Width-1 zero-padded octal digits and a NUL, as GNU tar and Go's archive/tar write them.
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    let bytes = s.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // The length prefix counts itself, so find the fixed point.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[allow(clippy::too_many_arguments)]
fn header_block(
    name: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &[u8],
    dev: (u64, u64),
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put_bytes(&mut h[0..100], name);
    put_octal(&mut h[100..108], u64::from(mode));
    put_octal(&mut h[108..116], uid);
    put_octal(&mut h[116..124], gid);
    put_octal(&mut h[124..136], size);
    put_octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    put_bytes(&mut h[157..257], linkname);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_octal(&mut h[329..337], dev.0);
    put_octal(&mut h[337..345], dev.1);
    // Checksum: sum of all bytes with the checksum field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// Writes the header (and any PAX header) of `entry`; returns the bytes written. The caller
/// writes `entry.size` bytes of content and then [`write_padding`].
pub fn write_header<W: Write + ?Sized>(w: &mut W, entry: &TarEntry<'_>) -> io::Result<u64> {
    let mut name = entry.path.to_vec();
    if entry.kind == EntryKind::Dir {
        name.push(b'/');
    }
    let (typeflag, link, dev): (u8, &[u8], (u64, u64)) = match &entry.kind {
        EntryKind::File => (b'0', b"", (0, 0)),
        EntryKind::HardLink(t) => (b'1', t, (0, 0)),
        EntryKind::Symlink(t) => (b'2', t, (0, 0)),
        EntryKind::Char(a, b) => (b'3', b"", (*a, *b)),
        EntryKind::Block(a, b) => (b'4', b"", (*a, *b)),
        EntryKind::Dir => (b'5', b"", (0, 0)),
        EntryKind::Fifo => (b'6', b"", (0, 0)),
    };
    // PAX records, sorted by key so the extended header is canonical.
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, v) in entry.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        records.push((key, v.clone()));
    }
    if entry.gid > MAX_OCTAL_7 {
        records.push((b"gid".to_vec(), entry.gid.to_string().into_bytes()));
    }
    if link.len() > 100 {
        records.push((b"linkpath".to_vec(), link.to_vec()));
    }
    if name.len() > 100 {
        records.push((b"path".to_vec(), name.clone()));
    }
    if entry.size > MAX_OCTAL_11 {
        records.push((b"size".to_vec(), entry.size.to_string().into_bytes()));
    }
    if entry.uid > MAX_OCTAL_7 {
        records.push((b"uid".to_vec(), entry.uid.to_string().into_bytes()));
    }
    records.sort();
    let mut written = 0u64;
    if !records.is_empty() {
        let mut body = Vec::new();
        for (k, v) in &records {
            pax_record(&mut body, k, v);
        }
        // Go's archive/tar naming: dir/PaxHeaders.0/base, cut to the field width.
        let (dir, base) = match entry.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&entry.path[..=i], &entry.path[i + 1..]),
            None => (&b""[..], entry.path),
        };
        let mut pax_name = dir.to_vec();
        pax_name.extend_from_slice(b"PaxHeaders.0/");
        pax_name.extend_from_slice(base);
        pax_name.truncate(100);
        let h = header_block(
            &pax_name,
            0o644,
            0,
            0,
            body.len() as u64,
            0,
            b'x',
            b"",
            (0, 0),
        );
        w.write_all(&h)?;
        w.write_all(&body)?;
        written += BLOCK as u64 + body.len() as u64;
        written += write_padding(w, body.len() as u64)?;
    }
    let clip = |v: u64, max: u64| if v > max { 0 } else { v };
    let h = header_block(
        &name,
        entry.mode & 0o7777,
        clip(entry.uid, MAX_OCTAL_7),
        clip(entry.gid, MAX_OCTAL_7),
        clip(entry.size, MAX_OCTAL_11),
        entry.mtime.min(MAX_OCTAL_11),
        typeflag,
        link,
        dev,
    );
    w.write_all(&h)?;
    Ok(written + BLOCK as u64)
}

/// Pads content of `size` bytes to the next block; returns the padding written.
pub fn write_padding<W: Write + ?Sized>(w: &mut W, size: u64) -> io::Result<u64> {
    let rem = usize::try_from(size % BLOCK as u64).map_err(io::Error::other)?;
    if rem == 0 {
        return Ok(0);
    }
    let pad = BLOCK - rem;
    w.write_all(&[0u8; BLOCK][..pad])?;
    Ok(pad as u64)
}

/// Writes the end-of-archive marker (two zero blocks); returns the bytes written.
pub fn write_end<W: Write + ?Sized>(w: &mut W) -> io::Result<u64> {
    w.write_all(&[0u8; 2 * BLOCK])?;
    Ok(2 * BLOCK as u64)
}

/// Appends a whole in-memory regular file (used for archive members such as JSON documents).
pub fn append_bytes<W: Write + ?Sized>(
    w: &mut W,
    path: &[u8],
    data: &[u8],
    mtime: u64,
) -> io::Result<u64> {
    let entry = TarEntry {
        path,
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: data.len() as u64,
        mtime,
        xattrs: &[],
    };
    let mut n = write_header(w, &entry)?;
    w.write_all(data)?;
    n += data.len() as u64;
    n += write_padding(w, data.len() as u64)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entry = (String, u8, u64, Vec<(String, Vec<u8>)>);

    fn read_back(data: &[u8]) -> Vec<Entry> {
        let mut ar = tar::Archive::new(data);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut x = Vec::new();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    x.push((ext.key().unwrap().to_string(), ext.value_bytes().to_vec()));
                }
            }
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let h = e.header();
            out.push((path, h.entry_type().as_byte(), h.size().unwrap(), x));
        }
        out
    }

    #[test]
    fn long_names_and_xattrs_use_sorted_pax_records() {
        let long = "d/".repeat(80) + "file";
        let xattrs = vec![
            (b"security.capability".to_vec(), vec![1, 0, 0, 2]),
            (b"user.a".to_vec(), b"x".to_vec()),
        ];
        let mut buf = Vec::new();
        let e = TarEntry {
            path: long.as_bytes(),
            kind: EntryKind::File,
            mode: 0o4755,
            uid: 5_000_000,
            gid: 7,
            size: 3,
            mtime: 1,
            xattrs: &xattrs,
        };
        write_header(&mut buf, &e).unwrap();
        buf.extend_from_slice(b"abc");
        write_padding(&mut buf, 3).unwrap();
        write_end(&mut buf).unwrap();
        let back = read_back(&buf);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, long);
        let keys: Vec<&str> = back[0].3.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "SCHILY.xattr.security.capability",
                "SCHILY.xattr.user.a",
                "path",
                "uid"
            ]
        );
        assert_eq!(back[0].3[0].1, vec![1, 0, 0, 2]);
        let mut ar = tar::Archive::new(&buf[..]);
        let ent = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(ent.header().mode().unwrap(), 0o4755);
        assert_eq!(ent.header().uid().unwrap(), 5_000_000); // from the PAX record
    }

    #[test]
    fn pax_length_prefix_counts_itself() {
        for n in 0..200 {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; n]);
            let sp = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len());
        }
    }

    #[test]
    fn directories_devices_and_links_have_their_type() {
        let mut buf = Vec::new();
        for (p, k) in [
            ("d", EntryKind::Dir),
            ("c", EntryKind::Char(1, 3)),
            ("f", EntryKind::Fifo),
            ("l", EntryKind::Symlink(b"/x".to_vec())),
            ("h", EntryKind::HardLink(b"f".to_vec())),
        ] {
            let e = TarEntry {
                path: p.as_bytes(),
                kind: k,
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                xattrs: &[],
            };
            write_header(&mut buf, &e).unwrap();
        }
        write_end(&mut buf).unwrap();
        let back = read_back(&buf);
        let got: Vec<(String, u8)> = back.into_iter().map(|(p, t, _, _)| (p, t)).collect();
        assert_eq!(
            got,
            [
                ("d/".to_string(), b'5'),
                ("c".to_string(), b'3'),
                ("f".to_string(), b'6'),
                ("l".to_string(), b'2'),
                ("h".to_string(), b'1')
            ]
        );
    }
}
