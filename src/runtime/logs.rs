//! A detached container's log: its stdout and stderr as the monitor captured them, in the
//! CRI / podman `k8s-file` format, one record per line:
//! `2026-11-30T12:00:00.123456789Z stdout F text` (`F` a full line, `P` a part of a line the
//! command has not finished yet). The file is capped: when a write would take it past its
//! maximum size it is renamed to `ctr.log.1` (replacing an older one) and a new one begun,
//! so a chatty server never fills the disk.

use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The log file's name in the container's directory.
pub const LOG_FILE: &str = "ctr.log";
/// The rotated log file's name.
pub const ROTATED_FILE: &str = "ctr.log.1";
/// The default cap of one log file (two are kept).
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and a tty's output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One output line (or a piece of one) as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// RFC 3339 UTC time with nanoseconds.
    pub time: String,
    /// The stream.
    pub stream: Stream,
    /// Whether the line ended here (`F`) rather than continuing in the next record (`P`).
    pub full: bool,
    /// The text without its newline.
    pub text: Vec<u8>,
}

/// Appends records to a container's log, rotating at `max` bytes.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Writer {
    /// Open (appending to) the log in `dir`; `max` is one file's cap (at least 4 KiB).
    pub fn open(dir: &Path, max: u64) -> std::io::Result<Writer> {
        let file = open_append(&dir.join(LOG_FILE))?;
        let size = file.metadata()?.len();
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            size,
            max: max.max(4096),
        })
    }

    /// Record a chunk the command wrote: each complete line a `F` record, a trailing piece
    /// without newline a `P` record.
    pub fn write(&mut self, stream: Stream, chunk: &[u8]) -> std::io::Result<()> {
        let time = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let mut out = Vec::with_capacity(chunk.len() + 64);
        let mut rest = chunk;
        while !rest.is_empty() {
            let (line, full, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.name().as_bytes());
            out.extend_from_slice(if full { b" F " } else { b" P " });
            out.extend_from_slice(line);
            out.push(b'\n');
            rest = next;
        }
        if self.size > 0 && self.size + out.len() as u64 > self.max {
            std::fs::rename(self.dir.join(LOG_FILE), self.dir.join(ROTATED_FILE))?;
            self.file = open_append(&self.dir.join(LOG_FILE))?;
            self.size = 0;
        }
        self.file.write_all(&out)?;
        self.size += out.len() as u64;
        Ok(())
    }
}

/// Parse one record line; `None` for a line that is not one (never written by us).
pub fn parse_line(line: &[u8]) -> Option<Record> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        full,
        text: parts.next().unwrap_or_default().to_vec(),
    })
}

/// Read the records of `path` from byte `offset`, returning them and the offset after the last
/// complete line (a line being written is left for the next read).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    use std::io::Seek;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    let mut at = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        at += n as u64;
        out.extend(parse_line(&line));
    }
    Ok((out, at))
}

/// All records of the container log in `dir`, oldest first (the rotated file, then the current).
pub fn read_all(dir: &Path) -> std::io::Result<Vec<Record>> {
    let mut out = read_from(&dir.join(ROTATED_FILE), 0)?.0;
    out.extend(read_from(&dir.join(LOG_FILE), 0)?.0);
    Ok(out)
}

/// Join partial records into lines: each output line is the time of its first piece, its
/// stream, and its text with the newline when it was complete.
pub fn lines(records: &[Record]) -> Vec<(String, Stream, Vec<u8>)> {
    let mut out: Vec<(String, Stream, Vec<u8>)> = Vec::new();
    let mut open: [Option<usize>; 2] = [None, None];
    for r in records {
        let slot = usize::from(r.stream == Stream::Stderr);
        let i = if let Some(i) = open[slot] {
            i
        } else {
            out.push((r.time.clone(), r.stream, Vec::new()));
            out.len() - 1
        };
        out[i].2.extend_from_slice(&r.text);
        if r.full {
            out[i].2.push(b'\n');
            open[slot] = None;
        } else {
            open[slot] = Some(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_partial_pieces() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Writer::open(t.path(), 1 << 20).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err line\n").unwrap();
        w.write(Stream::Stdout, b"o\n\nthree").unwrap();
        let recs = read_all(t.path()).unwrap();
        assert_eq!(recs.len(), 6);
        assert!(!recs[1].full && recs[1].text == b"tw");
        let got: Vec<(Stream, Vec<u8>)> = lines(&recs).into_iter().map(|l| (l.1, l.2)).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"one\n".to_vec()),
                (Stream::Stdout, b"two\n".to_vec()),
                (Stream::Stderr, b"err line\n".to_vec()),
                (Stream::Stdout, b"\n".to_vec()),
                (Stream::Stdout, b"three".to_vec()),
            ]
        );
        assert!(recs[0].time.ends_with('Z') && recs[0].time.contains('T'));
    }

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_one_old_file() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Writer::open(t.path(), 4096).unwrap();
        let line = vec![b'x'; 100];
        for _ in 0..100 {
            w.write(Stream::Stdout, &[&line[..], b"\n"].concat())
                .unwrap();
        }
        let cur = std::fs::metadata(t.path().join(LOG_FILE)).unwrap().len();
        let old = std::fs::metadata(t.path().join(ROTATED_FILE))
            .unwrap()
            .len();
        assert!(cur <= 4096 && old <= 4096, "{cur} {old}");
        let recs = read_all(t.path()).unwrap();
        assert!(recs.len() < 100 && recs.len() > 40, "{}", recs.len());
        assert!(recs.iter().all(|r| r.full && r.text == line));
    }

    #[test]
    fn a_line_being_written_is_left_for_the_next_read() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(LOG_FILE);
        std::fs::write(
            &p,
            b"2026-01-01T00:00:00Z stdout F a\n2026-01-01T00:00:01Z std",
        )
        .unwrap();
        let (recs, at) = read_from(&p, 0).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(at, 32);
        assert!(parse_line(b"garbage").is_none());
    }
}
