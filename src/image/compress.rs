//! Stream compression on every core, byte-identical for a given setting whatever the thread
//! count: gzip as one member whose deflate stream is cut into fixed-size blocks compressed in
//! parallel, each primed with the 32 KiB before it (zlib-rs), zstd in its multi-threaded mode
//! (always with at least one worker, so the job layout never changes), xz with a fixed block
//! size (liblzma's threaded encoder).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// Uncompressed bytes per gzip block; fixed so output does not depend on thread count.
const GZIP_BLOCK: usize = 1 << 20;
/// History each gzip block starts from: deflate's whole window, the end of the block before,
/// so cutting the stream costs next to nothing in size.
const GZIP_WINDOW: usize = 32 << 10;
/// zlib's `memLevel`: 7 ends deflate blocks more often than the default 8, which on image
/// trees (many small files of different kinds) buys more size than it costs time.
const GZIP_MEM_LEVEL: i32 = 7;
/// The gzip level when none is given: zlib-rs's level 3 (its first with lazy matching) packs a
/// Debian tree a little smaller than umoci's gzip and takes a third less CPU than level 6,
/// which saves under 3 % more (see `bench/pack.sh`).
pub const GZIP_DEFAULT_LEVEL: u32 = 3;
/// Uncompressed bytes per xz block; fixed for the same reason.
const XZ_BLOCK: u64 = 24 << 20;

/// A compression setting. Same setting, same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// gzip at the given level (1–9).
    Gzip(u32),
    /// zstd at the given level (1–19).
    Zstd(i32),
    /// xz at the given preset (0–9); not a layer media type, used for archives.
    Xz(u32),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip(GZIP_DEFAULT_LEVEL)
    }
}

impl Compression {
    /// Parses `none`, `gzip`, `zstd`, `xz`, optionally with `:LEVEL`.
    pub fn parse(s: &str) -> Option<Self> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l.parse::<i32>().ok()?)),
            None => (s, None),
        };
        let c = match name {
            "none" => Compression::None,
            "gzip" | "gz" => Compression::Gzip(
                level.map_or(GZIP_DEFAULT_LEVEL, |l| l.clamp(1, 9).unsigned_abs()),
            ),
            "zstd" | "zst" => Compression::Zstd(level.unwrap_or(3).clamp(1, 19)),
            "xz" => Compression::Xz(level.unwrap_or(6).clamp(0, 9).unsigned_abs()),
            _ => return None,
        };
        Some(c)
    }

    /// File name suffix including the dot (`""` for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip(_) => ".gz",
            Compression::Zstd(_) => ".zst",
            Compression::Xz(_) => ".xz",
        }
    }

    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip(_) => "gzip",
            Compression::Zstd(_) => "zstd",
            Compression::Xz(_) => "xz",
        }
    }
}

/// Resolves a thread count: 0 means every available core.
pub fn threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

/// A writer that hashes (sha256) and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the inner writer, the lowercase hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A compressing writer for one of the [`Compression`] settings.
pub enum Encoder<W: Write + Send + 'static> {
    /// Pass-through.
    None(W),
    /// Parallel gzip.
    Gzip(Box<ParGzip<W>>),
    /// Multi-threaded zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// Multi-threaded xz.
    Xz(liblzma::write::XzEncoder<W>),
}

impl<W: Write + Send + 'static> Encoder<W> {
    /// Starts compressing into `w` with `threads` workers (0 = every core).
    pub fn new(c: Compression, w: W, threads: usize) -> io::Result<Self> {
        let n = self::threads(threads);
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Gzip(level) => Encoder::Gzip(Box::new(ParGzip::new(w, level, n)?)),
            Compression::Zstd(level) => {
                let mut z = zstd::stream::write::Encoder::new(w, level)?;
                z.multithread(u32::try_from(n).unwrap_or(u32::MAX))?;
                z.include_checksum(true)?;
                Encoder::Zstd(z)
            }
            Compression::Xz(preset) => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .threads(u32::try_from(n).unwrap_or(u32::MAX))
                    .preset(preset.min(9))
                    .block_size(XZ_BLOCK)
                    .check(liblzma::stream::Check::Crc64)
                    .encoder()
                    .map_err(io::Error::other)?;
                Encoder::Xz(liblzma::write::XzEncoder::new_stream(w, stream))
            }
        })
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(z) => z.finish(),
            Encoder::Zstd(z) => z.finish(),
            Encoder::Xz(z) => z.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(z) => z.write(buf),
            Encoder::Zstd(z) => z.write(buf),
            Encoder::Xz(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Never forwarded: a flush would cut a block or a frame and change the output.
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(_) | Encoder::Zstd(_) | Encoder::Xz(_) => Ok(()),
        }
    }
}

/// One block for a gzip worker, and the buffers it comes back in.
struct GzipJob {
    input: Vec<u8>,
    /// The history the block starts from (empty for the first block).
    dict: Vec<u8>,
    /// Whether this is the stream's last block (ends the deflate stream).
    last: bool,
    output: Vec<u8>,
    reply: mpsc::SyncSender<io::Result<GzipDone>>,
}

/// A compressed block: `output[..used]`, with the input back for reuse.
struct GzipDone {
    input: Vec<u8>,
    output: Vec<u8>,
    used: usize,
    crc: crc32fast::Hasher,
}

/// Parallel gzip writer producing one gzip member, as pigz does: the input is cut into
/// [`GZIP_BLOCK`] blocks, each deflated by a worker from the [`GZIP_WINDOW`] bytes before it
/// and ended on a byte boundary (a sync flush), so the blocks join into one deflate stream.
/// A block's bytes depend on its input, its history and the level alone, never on which
/// worker ran it or when.
pub struct ParGzip<W: Write> {
    out: W,
    /// The block being filled.
    block: Vec<u8>,
    /// The last [`GZIP_WINDOW`] bytes of the block before.
    dict: Vec<u8>,
    jobs: Option<mpsc::Sender<GzipJob>>,
    /// Replies of the blocks sent, in stream order.
    pending: VecDeque<mpsc::Receiver<io::Result<GzipDone>>>,
    /// Buffers back from written blocks.
    spare: Vec<(Vec<u8>, Vec<u8>)>,
    workers: Vec<JoinHandle<()>>,
    crc: crc32fast::Hasher,
    /// Blocks in flight at most: enough to keep every worker busy, few enough to bound memory.
    max_pending: usize,
}

impl<W: Write> ParGzip<W> {
    /// Starts a gzip member at `level` (1–9) into `out`, compressed by `threads` workers.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = level.clamp(1, 9);
        // The gzip header (RFC 1952): no name, no mtime, "unknown" OS, so nothing of the
        // host gets in; the extra flags say best/fastest as gzip does.
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        let (tx, rx) = mpsc::channel::<GzipJob>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || gzip_worker(&rx, level))?;
            workers.push(handle);
        }
        Ok(ParGzip {
            out,
            block: Vec::with_capacity(GZIP_BLOCK),
            dict: Vec::new(),
            jobs: Some(tx),
            pending: VecDeque::new(),
            spare: Vec::new(),
            workers,
            crc: crc32fast::Hasher::new(),
            max_pending: 2 * threads + 1,
        })
    }

    /// Hands the current block to the workers and writes out whatever blocks are done.
    fn send_block(&mut self, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_next(true)?;
        }
        let (input, output) = self
            .spare
            .pop()
            .unwrap_or_else(|| (Vec::with_capacity(GZIP_BLOCK), Vec::new()));
        let input = std::mem::replace(&mut self.block, input);
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = input[input.len().saturating_sub(GZIP_WINDOW)..].to_vec();
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let job = GzipJob {
            input,
            dict,
            last,
            output,
            reply,
        };
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| io::Error::other("the gzip workers have stopped"))?;
        self.pending.push_back(rx);
        while self.write_next(false)? {}
        Ok(())
    }

    /// Writes the oldest block if it is done (or, with `wait`, once it is); says whether it
    /// wrote one.
    fn write_next(&mut self, wait: bool) -> io::Result<bool> {
        let Some(rx) = self.pending.front() else {
            return Ok(false);
        };
        let done = if wait {
            rx.recv().ok()
        } else {
            match rx.try_recv() {
                Ok(d) => Some(d),
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => None,
            }
        };
        self.pending.pop_front();
        let mut done =
            done.ok_or_else(|| io::Error::other("a gzip worker stopped without a result"))??;
        self.out.write_all(&done.output[..done.used])?;
        self.crc.combine(&done.crc);
        done.input.clear();
        self.spare.push((done.input, done.output));
        Ok(true)
    }

    /// Ends the member (last block, CRC-32 and length) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block(true)?;
        while self.write_next(true)? {}
        let len = self.crc.total_len();
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952): the truncation is the format's.
        #[allow(clippy::cast_possible_truncation)]
        trailer[4..].copy_from_slice(&(len as u32).to_le_bytes());
        self.out.write_all(&trailer)?;
        // Dropping the sender ends the workers' loops.
        self.jobs = None;
        for w in self.workers.drain(..) {
            w.join()
                .map_err(|_| io::Error::other("a gzip worker panicked"))?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let take = rest.len().min(GZIP_BLOCK - self.block.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == GZIP_BLOCK {
                self.send_block(false)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A flush would cut a block where the caller's writes happen to fall.
        Ok(())
    }
}

/// A gzip worker: deflates the blocks it receives until the sender is gone. Without one, a
/// dropped [`ParGzip`] leaves its workers to end by themselves.
fn gzip_worker(jobs: &Mutex<mpsc::Receiver<GzipJob>>, level: u32) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let GzipJob {
            input,
            dict,
            last,
            mut output,
            reply,
        } = job;
        let result = deflate_block(level, &input, &dict, last, &mut output).map(|used| {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&input);
            GzipDone {
                input,
                output,
                used,
                crc,
            }
        });
        // The writer may have gone (an error elsewhere); then nobody wants the result.
        let _ = reply.send(result);
    }
}

/// Deflates `input` after `dict` into `output` (grown as needed), ending with a sync flush or,
/// for the last block, the end of the stream. Returns the bytes used.
fn deflate_block(
    level: u32,
    input: &[u8],
    dict: &[u8],
    last: bool,
    output: &mut Vec<u8>,
) -> io::Result<usize> {
    let zerr = |e: zlib_rs::DeflateError| io::Error::other(format!("deflate: {e:?}"));
    // A fresh compressor for every block: a reset one keeps the match chains and window of the
    // block before, and with a dictionary set they change which of equal matches is taken, so
    // the bytes would depend on which worker had which block before.
    let config = zlib_rs::DeflateConfig {
        level: i32::try_from(level).unwrap_or(9),
        // Negative: raw deflate, the gzip framing is ours.
        window_bits: -15,
        mem_level: GZIP_MEM_LEVEL,
        ..zlib_rs::DeflateConfig::default()
    };
    let mut z = zlib_rs::Deflate::new_with_config(config);
    if !dict.is_empty() {
        z.set_dictionary(dict).map_err(zerr)?;
    }
    let flush = if last {
        zlib_rs::DeflateFlush::Finish
    } else {
        zlib_rs::DeflateFlush::SyncFlush
    };
    // Room for the worst case (stored blocks) plus the flush marker, so one call normally does.
    let want = zlib_rs::compress_bound(input.len()) + 64;
    if output.len() < want {
        output.resize(want, 0);
    }
    let mut used = 0;
    loop {
        let before = (z.total_in(), z.total_out());
        let consumed_before = usize::try_from(before.0).unwrap_or(usize::MAX);
        let status = z
            .compress(&input[consumed_before..], &mut output[used..], flush)
            .map_err(zerr)?;
        used += usize::try_from(z.total_out() - before.1).unwrap_or(usize::MAX);
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX) == input.len();
        // Done: the stream's end for the last block; for the others all input taken and the
        // flush complete, which zlib signals by leaving output space unused.
        let done = if last {
            status == zlib_rs::Status::StreamEnd
        } else {
            consumed && used < output.len()
        };
        if done {
            return Ok(used);
        }
        if used == output.len() {
            output.resize(output.len() * 2, 0);
        }
    }
}

/// Opens a decompressing reader, detecting gzip, zstd and xz by their magic bytes.
pub fn decoder<'a, R: io::BufRead + 'a>(mut r: R) -> io::Result<Box<dyn io::Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r))
    } else {
        Box::new(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial, and larger than one zstd job, one xz block and many
        // gzip blocks, so thread count and scheduling could show if they mattered: words, runs
        // of noise, and copies of earlier stretches from near and far, as a tar of a root tree
        // has (a compressor's state left over from another block shows on such data).
        let len = (26 << 20) + 123;
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = 1;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            x >> 16
        };
        while v.len() < len {
            match next() % 32 {
                0 => v.extend((0..next() % 64).map(|_| (next() & 0xff) as u8)),
                1..=8 if v.len() > 70_000 => {
                    let back = 1 + (next() as usize * 7) % 70_000;
                    let n = 3 + next() as usize % 200;
                    let from = v.len() - back;
                    for i in 0..n {
                        v.push(v[from + i]);
                    }
                }
                _ => {
                    let word = (next() % 60) as usize;
                    v.extend_from_slice(
                        &b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod\n"
                            [word..word + 8],
                    );
                }
            }
        }
        v.truncate(len);
        v
    }

    fn compress(c: Compression, data: &[u8], threads: usize) -> Vec<u8> {
        let mut e = Encoder::new(c, Vec::new(), threads).unwrap();
        // Odd write sizes, as a tar stream delivers them.
        for chunk in data.chunks(70_001) {
            e.write_all(chunk).unwrap();
        }
        e.finish().unwrap()
    }

    #[test]
    fn output_is_identical_across_thread_counts_and_round_trips() {
        let data = sample();
        for c in [
            Compression::Gzip(GZIP_DEFAULT_LEVEL),
            Compression::Gzip(6),
            Compression::Zstd(3),
            Compression::Xz(1),
        ] {
            let one = compress(c, &data, 1);
            let two = compress(c, &data, 2);
            let four = compress(c, &data, 4);
            // Not assert_eq: a mismatch would print megabytes.
            assert!(one == two, "{c:?}: 1 and 2 threads differ");
            assert!(one == four, "{c:?}: 1 and 4 threads differ");
            let mut back = Vec::new();
            decoder(&one[..]).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "{c:?} round trip");
            assert!(one.len() < data.len() / 2, "{c:?} compresses");
        }
    }

    #[test]
    fn gzip_is_one_member_that_gzip_and_flate2_read() {
        let data = sample();
        let gz = compress(Compression::Gzip(GZIP_DEFAULT_LEVEL), &data, 2);
        // The header: deflate, no flags, no mtime, unknown OS.
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        // flate2's single-member decoder reads it all and leaves nothing behind it.
        let mut d = flate2::bufread::GzDecoder::new(&gz[..]);
        let mut back = Vec::new();
        d.read_to_end(&mut back).unwrap();
        assert!(back == data, "flate2 decodes the data");
        assert!(d.into_inner().is_empty(), "one member, no trailing bytes");
        // And the host's gzip agrees the file is intact.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.gz");
        std::fs::write(&path, &gz).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .output()
            .expect("gzip is installed");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "gzip -t: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn gzip_edges_round_trip() {
        // Empty input, one byte, exactly one block, one block and a byte: each a valid member.
        for len in [0, 1, GZIP_BLOCK, GZIP_BLOCK + 1, 3 * GZIP_BLOCK] {
            let data: Vec<u8> = (0..=250u8).cycle().take(len).collect();
            let gz = compress(Compression::Gzip(1), &data, 3);
            let mut back = Vec::new();
            flate2::bufread::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "length {len}");
        }
    }

    #[test]
    fn parse_names_and_levels() {
        assert_eq!(
            Compression::parse("gzip"),
            Some(Compression::Gzip(GZIP_DEFAULT_LEVEL))
        );
        assert_eq!(Compression::parse("gzip:6"), Some(Compression::Gzip(6)));
        assert_eq!(Compression::parse("gzip:12"), Some(Compression::Gzip(9)));
        assert_eq!(Compression::parse("zstd:9"), Some(Compression::Zstd(9)));
        assert_eq!(Compression::parse("none"), Some(Compression::None));
        assert_eq!(Compression::parse("lz4"), None);
    }
}
