//! An input's files hashed on every core while the walk goes on: the walk
//! (one thread, through descriptors) hands each regular file's `O_PATH`
//! descriptor to a bounded queue, and one hasher per available CPU reopens
//! that very inode through `/proc/self/fd` and hashes it, so the hashers never
//! open anything by path. The queue's bound caps the descriptors held at once.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use nix::sys::stat::{fstat, FileStat};

use super::cache::{Cache, Entry, Key};
use super::progress::Progress;
use crate::digest::{Digest, Hasher};

/// Files waiting for a hasher, at most (each holds a descriptor).
const QUEUE: usize = 64;
/// The bytes one hasher reads at a time.
const CHUNK: usize = 256 << 10;

/// A file to hash: entry `index` of the walk.
pub(super) struct Job {
    index: usize,
    fd: OwnedFd,
    key: Key,
    seen: i64,
}

/// A file hashed.
pub(super) struct Done {
    /// Its entry in the walk.
    pub index: usize,
    /// Its sha256.
    pub digest: Digest,
    /// The bytes read.
    pub size: u64,
    /// Its cache entry, when the file did not change while it was read.
    pub fresh: Option<Entry>,
}

/// The hashers' queue.
pub(super) struct Queue<'p> {
    tx: SyncSender<Job>,
    failed: &'p AtomicBool,
    progress: &'p Progress,
}

/// What the walk of an input does with its regular files.
pub(super) struct Inputs<'q> {
    pub queue: &'q Queue<'q>,
    pub cache: Option<&'q mut Cache>,
}

impl Inputs<'_> {
    /// The digest the cache has for the file with status `st`, counted as done.
    pub fn cached(&mut self, st: &FileStat) -> Option<Digest> {
        let d = self.cache.as_mut()?.lookup(st)?;
        let (progress, size) = (self.queue.progress, st.st_size as u64);
        progress.listed(size);
        progress.hashed(size);
        progress.file_done();
        Some(d)
    }

    /// Queue the file at entry `index`, opened as `fd` with status `st`
    /// taken after `seen`, for a hasher.
    pub fn queue(&mut self, index: usize, fd: OwnedFd, st: &FileStat, seen: i64) -> io::Result<()> {
        self.queue.progress.listed(st.st_size as u64);
        if self.queue.failed.load(Ordering::Relaxed) {
            // A hasher failed: its error ends the digest; stop walking.
            return Err(io::Error::other("a file of the input could not be read"));
        }
        let job = Job { index, fd, key: Key::of(st), seen };
        self.queue.tx.send(job).map_err(|_| io::Error::other("the input's hashers stopped"))
    }
}

/// Run `walk` with hashers (one per available CPU) taking the files it
/// queues; what it returned and every file hashed, or the first error.
pub(super) fn with_hashers<R>(
    progress: &Progress,
    walk: impl FnOnce(&Queue<'_>) -> io::Result<R>,
) -> io::Result<(R, Vec<Done>)> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
    // Only the hashers hold the receiver: when every one of them has ended
    // (a panic included), it is dropped and the walk's next send fails
    // instead of waiting on a full queue for ever.
    let rx = Arc::new(Mutex::new(rx));
    let done = Mutex::new(Vec::new());
    let error: Mutex<Option<io::Error>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let (stop, stopped) = mpsc::channel::<()>();
    let walked = std::thread::scope(|s| {
        let (done, error, failed) = (&done, &error, &failed);
        let hashers: Vec<_> = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&rx);
                s.spawn(move || hasher(&rx, done, error, failed, progress))
            })
            .collect();
        drop(rx);
        s.spawn(move || progress.report(stopped));
        let queue = Queue { tx, failed, progress };
        let walked = walk(&queue);
        progress.listed_all();
        drop(queue);
        for h in hashers {
            let _ = h.join();
        }
        drop(stop);
        walked
    });
    // A hasher's error is the cause; the walk's own error comes second.
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok((walked?, done.into_inner().unwrap_or_else(|p| p.into_inner())))
}

fn hasher(
    rx: &Mutex<Receiver<Job>>,
    done: &Mutex<Vec<Done>>,
    error: &Mutex<Option<io::Error>>,
    failed: &AtomicBool,
    progress: &Progress,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // After a failure the queue is drained, not hashed, so the walk ends.
        if failed.load(Ordering::Relaxed) {
            continue;
        }
        match hash(&job, &mut buf, progress) {
            Ok(d) => {
                if let Ok(mut v) = done.lock() {
                    v.push(d);
                }
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = error.lock() {
                    slot.get_or_insert(e);
                }
            }
        }
    }
}

/// Hash at most the size the walk saw (a file that grows cannot stretch the
/// digest), then check the file did not change meanwhile.
fn hash(job: &Job, buf: &mut [u8], progress: &Progress) -> io::Result<Done> {
    let file = crate::fsutil::reopen_for_reading(job.fd.as_fd())?;
    let mut reader = (&file).take(job.key.size);
    let mut h = Hasher::new();
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        progress.hashed(n as u64);
    }
    let after = fstat(file.as_fd())?;
    let (digest, size) = h.finish();
    progress.file_done();
    let unchanged = Key::of(&after) == job.key && size == job.key.size;
    let fresh = unchanged.then(|| Entry::new(job.key, job.seen, &digest)).flatten();
    Ok(Done { index: job.index, digest, size, fresh })
}
