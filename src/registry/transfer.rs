//! Reporting blob transfers while they run: the CLI draws a bar per blob on a terminal and prints
//! a plain line per blob otherwise; the library only says what happens. Transfers may run on
//! several threads at once, so the observer is `Sync`.

/// Which way a blob goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the registry (pull).
    Download,
    /// To the registry (push).
    Upload,
}

/// Observes blob transfers. Every method has a default that does nothing.
pub trait TransferProgress: Sync {
    /// A blob of `size` bytes starts moving (or is checked first); `resumed_at` bytes of it
    /// were already there (a resumed transfer).
    fn start(&self, digest: &str, size: u64, direction: Direction, resumed_at: u64) {
        let _ = (digest, size, direction, resumed_at);
    }
    /// `bytes` more of the blob have moved.
    fn advance(&self, digest: &str, bytes: u64) {
        let _ = (digest, bytes);
    }
    /// The blob was not moved: the other side has it (or it was mounted from another
    /// repository, named in `how`).
    fn skipped(&self, digest: &str, how: &str) {
        let _ = (digest, how);
    }
    /// The blob has moved completely and its digest was verified.
    fn done(&self, digest: &str) {
        let _ = digest;
    }
    /// A transfer of the blob failed and is retried from `resumed_at` bytes.
    fn retry(&self, digest: &str, resumed_at: u64, reason: &str) {
        let _ = (digest, resumed_at, reason);
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl TransferProgress for NoProgress {}
