//! Stream compression on every core, byte-identical for a given setting whatever the thread
//! count: gzip as independent deflate blocks of fixed size (gzp), zstd in its multi-threaded
//! mode (always with at least one worker, so the job layout never changes), xz with a fixed
//! block size (liblzma's threaded encoder).

use std::io::{self, Write};

use gzp::ZWriter;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use sha2::{Digest, Sha256};

/// Uncompressed bytes per gzip block; fixed so output does not depend on thread count.
const GZIP_BLOCK: usize = 1 << 20;
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
        Compression::Gzip(6)
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
            "gzip" | "gz" => Compression::Gzip(level.unwrap_or(6).clamp(1, 9).unsigned_abs()),
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
    Gzip(Box<ParCompress<'static, Gzip, W>>),
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
            Compression::Gzip(level) => {
                let z = ParCompressBuilder::<Gzip>::new()
                    .num_threads(n)
                    .map_err(io::Error::other)?
                    .buffer_size(GZIP_BLOCK)
                    .map_err(io::Error::other)?
                    .compression_level(flate2::Compression::new(level.min(9)))
                    .from_writer(w);
                Encoder::Gzip(Box::new(z))
            }
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
            Encoder::Gzip(mut z) => z.finish().map_err(io::Error::other),
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
        // Never forwarded to gzp: a flush there would cut a block and change the output.
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(_) | Encoder::Zstd(_) | Encoder::Xz(_) => Ok(()),
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
        // gzip blocks, so thread count and scheduling could show if they mattered.
        let len = (26 << 20) + 123;
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = 1;
        while v.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let word = (x >> 16) % 60;
            v.extend_from_slice(
                &b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod\n"
                    [word as usize..(word as usize + 8)],
            );
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
            Compression::Gzip(6),
            Compression::Zstd(3),
            Compression::Xz(1),
        ] {
            let one = compress(c, &data, 1);
            let two = compress(c, &data, 2);
            let four = compress(c, &data, 4);
            assert_eq!(one, two, "{c:?}");
            assert_eq!(one, four, "{c:?}");
            let mut back = Vec::new();
            decoder(&one[..]).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c:?}");
            assert!(one.len() < data.len() / 2, "{c:?} compresses");
        }
    }

    #[test]
    fn parse_names_and_levels() {
        assert_eq!(Compression::parse("gzip"), Some(Compression::Gzip(6)));
        assert_eq!(Compression::parse("zstd:9"), Some(Compression::Zstd(9)));
        assert_eq!(Compression::parse("none"), Some(Compression::None));
        assert_eq!(Compression::parse("lz4"), None);
    }
}
