//! Small filesystem helpers shared by the image store, the state directory and the
//! run records: atomic writes, advisory locks and random identifiers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

/// Read a /proc or /sys file whole. Such files report a size of 0 (or a
/// page), so `fs::read_to_string` starts with a 32-byte read and doubles, and
/// the kernel formats the file again for every read call (7 of them for this
/// host's mountinfo): one 16 KiB buffer takes most in a single read.
pub fn read_kernel_file(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    let mut bytes = Vec::with_capacity(16 << 10);
    File::open(path)?.read_to_end(&mut bytes)?;
    String::from_utf8(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Write `bytes` to `path` so that readers see either the old file or the whole new
/// one: write a temp file in the same directory, optionally fsync it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", random_hex(6)));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] of a value as pretty JSON with a trailing newline.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T, durable: bool) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, durable)
}

/// [`write_atomic`] of a value as JSON on one line, for files that exprun
/// writes on every run and only exprun reads (a run's plan.json: about a
/// third smaller and quicker to write than pretty).
pub fn write_json_compact_atomic<T: Serialize>(path: &Path, value: &T, durable: bool) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, durable)
}

/// `n` random bytes from the kernel, as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if !crate::sys::getrandom(&mut buf) {
        // getrandom cannot fail on Linux ≥ 3.17 except for EINTR; fall back to the
        // clock and pid rather than panicking if it ever does.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = format!("{t}{}", std::process::id());
        let d = crate::digest::Digest::of_bytes(seed.as_bytes());
        return d.hex()[..2 * n].to_string();
    }
    hex::encode(buf)
}

/// An exclusive or shared `flock` on a file, released when dropped (or when the
/// process dies, which is what makes it useful for detecting abandoned state).
pub struct Lock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").field("path", &self.path).finish()
    }
}

impl Lock {
    /// Block until the lock on `path` (created if missing) is held.
    pub fn acquire(path: &Path, exclusive: bool) -> io::Result<Self> {
        let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
        Self::take(path, arg)?.ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))
    }

    /// Block until an exclusive lock on the directory `dir` is held.
    pub fn acquire_dir(dir: &Path) -> io::Result<Self> {
        Self::take_dir(dir, FlockArg::LockExclusive)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))
    }

    /// An exclusive lock on the directory `dir` if nobody holds it; `None` if
    /// somebody does.
    pub fn try_dir(dir: &Path) -> io::Result<Option<Self>> {
        Self::take_dir(dir, FlockArg::LockExclusiveNonblock)
    }

    fn take_dir(dir: &Path, arg: FlockArg) -> io::Result<Option<Self>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(dir)?;
        Self::flock(file, dir, arg)
    }

    /// Take an exclusive lock on `path` if nobody holds it; `None` if somebody does.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Self>> {
        Self::take(path, FlockArg::LockExclusiveNonblock)
    }

    fn take(path: &Path, arg: FlockArg) -> io::Result<Option<Self>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Self::flock(file, path, arg)
    }

    fn flock(file: File, path: &Path, arg: FlockArg) -> io::Result<Option<Self>> {
        match Flock::lock(file, arg) {
            Ok(flock) => Ok(Some(Self { _flock: flock, path: path.to_path_buf() })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io::Error::from(e)),
        }
    }

    /// The locked file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file that carries the lock.
    pub fn file(&self) -> impl AsFd + '_ {
        &*self._flock
    }
}

/// `mkdir -p` with mode 0700 for every directory it creates: live plans hold the
/// run's environment unredacted, and records say what ran; neither is for other
/// users of the host.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Make `path` a directory that only its owner can enter: created 0700 (with
/// any missing parents, also 0700) when absent. One that exists is refused when
/// another user owns it (that user could change what exprun reads from it), and
/// tightened to 0700 when its group or others could enter it. Returns the mode
/// it had when it was tightened.
pub fn private_dir(path: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    create_private_dir_all(path)?;
    let meta = fs::metadata(path)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("owned by uid {}, not by the caller (uid {me}); choose a --root of your own", meta.uid()),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7700))?;
    Ok(Some(mode))
}

/// Remove a directory tree, treating "already gone" as success.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Reopen an `O_PATH` descriptor of a regular file for reading, through
/// `/proc/self/fd`: the same inode, whatever its name is now, so a name
/// swapped for a symlink after the descriptor was opened changes nothing.
pub fn reopen_for_reading(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<File> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    Ok(File::from(nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty())?))
}

/// The kernel's name of the open file `fd` (the target of `/proc/self/fd/N`):
/// a path, or `mnt:[4026531841]` for a namespace file.
pub fn fd_name(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd as _;
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_file_is_read_whole() {
        for path in ["/proc/self/mountinfo", "/proc/self/cgroup", "/proc/self/status"] {
            let got = read_kernel_file(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let want = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // The files describe this process, which does not change in between.
            assert_eq!(got.lines().next(), want.lines().next(), "{path}");
            assert_eq!(got.lines().count(), want.lines().count(), "{path}");
        }
        let e = read_kernel_file("/proc/self/no-such-file").err().map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn random_hex_has_requested_length_and_varies() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16));
    }

    #[test]
    fn exclusive_lock_excludes_a_second_taker() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let held = Lock::try_exclusive(&p).unwrap();
        assert!(held.is_some());
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(Lock::try_exclusive(&p).unwrap().is_some());
    }
}
