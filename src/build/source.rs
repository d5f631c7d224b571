//! The source directory of a build, read so that nothing outside it is ever
//! read: whoever owns the source may plant symlinks in it, or swap a file or a
//! directory for one while exprun (root) copies it, to get a host file into
//! the image, its `Env` or an error message.
//!
//! - `--source` is walked from `/` one component at a time, each opened with
//!   `O_NOFOLLOW` relative to the one before; a symlink on the way is followed
//!   only when root owns it (the kernel's protected_symlinks rule, applied
//!   everywhere, as for `--output`): the source's owner could point a link of
//!   theirs at `/root`. The directory reached is opened once, and everything
//!   else is read relative to that descriptor.
//! - Every entry is opened `O_PATH | O_NOFOLLOW` relative to its directory's
//!   descriptor and its type taken from `fstat` of that descriptor; a
//!   directory is entered, and a file read, through that same descriptor (the
//!   same inode, whatever the name points at by then); a symlink is read with
//!   `readlinkat` on it and copied as a symlink, never followed. Nothing is
//!   checked by name and then opened by name.
//! - `.s2iignore` (from the source) and `.s2i/environment`, `.s2i/bin/run`,
//!   `.s2i/bin/assemble` (from the copy) are looked up the same way; a
//!   symlink among them, or at `.s2i` or `.s2i/bin`, is refused, naming it:
//!   exprun reads them only as regular files of the source.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, futimens, mkdirat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::{ignore, Error};
use crate::hostpath::{self, kind, Stop};

/// The deepest directory of a source that is copied.
pub const MAX_DEPTH: usize = 256;
/// The largest `.s2iignore` or `.s2i/environment` read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The source directory, open.
#[derive(Debug, Clone)]
pub struct Source {
    /// As given to `--source`: what messages name.
    pub given: PathBuf,
    /// Where the walk led: absolute, without symlinks.
    pub path: PathBuf,
    /// The directory, open for reading.
    dir: Arc<OwnedFd>,
}

/// What [`lookup`] found.
enum Found {
    /// Nothing at the path (or a non-directory on the way).
    Absent,
    /// The entry at the path, opened `O_PATH | O_NOFOLLOW`, and its status.
    Entry(OwnedFd, FileStat),
    /// A symlink on the way, at the relative path given, with its target.
    LinkOnTheWay(PathBuf, PathBuf),
}

fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// A directory's `O_PATH` descriptor opened for reading: the same directory.
fn enter(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    openat(fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

/// The plain names of a relative path.
fn names(rel: &Path) -> impl Iterator<Item = &OsStr> {
    rel.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n),
        _ => None,
    })
}

/// What is at `rel` (plain names) beneath `dir`, never through a symlink.
fn lookup(dir: BorrowedFd<'_>, rel: &Path) -> nix::Result<Found> {
    let parts: Vec<&OsStr> = names(rel).collect();
    let mut at = PathBuf::new();
    let mut cur: Option<OwnedFd> = None;
    for (i, name) in parts.iter().enumerate() {
        let parent = cur.as_ref().map_or(dir, AsFd::as_fd);
        at.push(name);
        let fd = match open_path(parent, name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(Found::Absent),
            Err(e) => return Err(e),
        };
        let st = fstat(fd.as_fd())?;
        if i + 1 == parts.len() {
            return Ok(Found::Entry(fd, st));
        }
        match kind(&st) {
            SFlag::S_IFDIR => cur = Some(fd),
            SFlag::S_IFLNK => return Ok(Found::LinkOnTheWay(at, readlinkat(fd.as_fd(), "")?.into())),
            _ => return Ok(Found::Absent),
        }
    }
    Ok(Found::Absent)
}

/// `--source P: why`, for the file at `rel` in the source.
fn refused(given: &Path, rel: &Path, why: impl Into<String>) -> Error {
    Error::Source { path: given.join(rel), why: why.into() }
}

fn unreadable(given: &Path, rel: &Path, e: impl Into<io::Error>) -> Error {
    refused(given, rel, format!("cannot be read: {}", e.into()))
}

fn symlink_refused(given: &Path, link: &Path, target: &Path, file: &Path) -> Error {
    let why = if link == file {
        format!(
            "exprun reads {} only inside the source, never through a link; put the file itself there",
            file.display()
        )
    } else {
        format!(
            "exprun reads {}/* only inside the source, never through a link; make it a real directory",
            link.display()
        )
    };
    refused(given, link, format!("is a symlink (to {}): {why}", target.display()))
}

/// The regular file at `rel` beneath `dir` as UTF-8 text, at most
/// [`MAX_CONFIG_BYTES`]; `None` when there is none. A symlink at it or on
/// the way, or anything but a regular file, is refused naming it (messages
/// name it under `given`, the source as the user gave it).
pub fn read_config(dir: BorrowedFd<'_>, rel: &Path, given: &Path) -> Result<Option<String>, Error> {
    let (fd, st) = match lookup(dir, rel).map_err(|e| unreadable(given, rel, e))? {
        Found::Absent => return Ok(None),
        Found::LinkOnTheWay(link, target) => return Err(symlink_refused(given, &link, &target, rel)),
        Found::Entry(fd, st) => (fd, st),
    };
    match kind(&st) {
        SFlag::S_IFREG => {}
        SFlag::S_IFLNK => {
            let target: PathBuf = readlinkat(fd.as_fd(), "").map_err(|e| unreadable(given, rel, e))?.into();
            return Err(symlink_refused(given, rel, &target, rel));
        }
        _ => return Err(refused(given, rel, "is not a regular file; make it one, or remove it")),
    }
    if st.st_size as u64 > MAX_CONFIG_BYTES {
        return Err(refused(
            given,
            rel,
            format!("is {} bytes, more than the {MAX_CONFIG_BYTES} exprun reads; shorten it", st.st_size),
        ));
    }
    let file = crate::fsutil::reopen_for_reading(fd.as_fd()).map_err(|e| unreadable(given, rel, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(|e| unreadable(given, rel, e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refused(given, rel, format!("grew past the {MAX_CONFIG_BYTES} bytes exprun reads")));
    }
    String::from_utf8(bytes).map(Some).map_err(|_| refused(given, rel, "is not UTF-8 text"))
}

/// What is at `rel` beneath `dir`, a symlink on the way refused: `None` when
/// nothing is, else its status and, for a symlink, its target.
pub fn stat_config(
    dir: BorrowedFd<'_>,
    rel: &Path,
    given: &Path,
) -> Result<Option<(FileStat, Option<PathBuf>)>, Error> {
    match lookup(dir, rel).map_err(|e| unreadable(given, rel, e))? {
        Found::Absent => Ok(None),
        Found::LinkOnTheWay(link, target) => Err(symlink_refused(given, &link, &target, rel)),
        Found::Entry(fd, st) if kind(&st) == SFlag::S_IFLNK => {
            let target = readlinkat(fd.as_fd(), "").map_err(|e| unreadable(given, rel, e))?;
            Ok(Some((st, Some(target.into()))))
        }
        Found::Entry(_, st) => Ok(Some((st, None))),
    }
}

/// Whether `st` is a regular file.
pub fn is_file(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFREG
}

impl Source {
    /// Open the source directory `given` (relative to the working directory
    /// or absolute), following only root's symlinks on the way.
    pub fn open(given: &Path) -> Result<Self, Error> {
        let bad = |why: String| Error::Source { path: given.to_path_buf(), why };
        let abs = if given.is_absolute() {
            given.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| bad(format!("the working directory cannot be read: {e}")))?
                .join(given)
        };
        let walk = hostpath::Walk { follows: &|owner| owner == 0, make_missing: false };
        let reached = hostpath::open_dir(&abs, &walk).map_err(|stop| match stop {
            Stop::ForeignSymlink { link, owner } => bad(format!(
                "{} is a symlink owned by uid {owner}, who is not root: that user could point it \
                 anywhere (at /root, say) and have it built into the image; give the source's \
                 real path, without the symlink",
                link.display()
            )),
            Stop::NotDirectory { component } if component == abs => {
                bad("is not a directory; give the directory holding the application source".into())
            }
            Stop::NotDirectory { component } => bad(format!("{} is not a directory", component.display())),
            Stop::Io { errno: Errno::ENOENT, .. } => {
                bad("does not exist; give the directory holding the application source".into())
            }
            Stop::Io { component, errno, .. } => {
                bad(format!("{}: {}", component.display(), io::Error::from(errno)))
            }
        })?;
        let (dir, at) = (reached.fd, reached.path);
        let dir = enter(dir.as_fd()).map_err(|e| bad(format!("cannot be read: {}", io::Error::from(e))))?;
        Ok(Self { given: given.to_path_buf(), path: at, dir: Arc::new(dir) })
    }

    /// The source directory, open for reading.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The source's `.s2iignore` (see [`ignore`]); empty when it has none.
    pub fn ignore(&self) -> Result<ignore::Ignore, Error> {
        let rel = Path::new(super::IGNORE_FILE);
        match read_config(self.dir(), rel, &self.given)? {
            None => Ok(ignore::Ignore::default()),
            Some(text) => ignore::Ignore::parse(&text)
                .map_err(|why| refused(&self.given, rel, format!("{why}; fix or remove the line"))),
        }
    }
}

/// How the source is copied for assemble.
pub struct SourceCopy<'a> {
    /// What `.s2iignore` leaves out.
    pub ignore: &'a ignore::Ignore,
    /// The owner of every copied file.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Every timestamp.
    pub epoch: u64,
}

impl SourceCopy<'_> {
    /// Copy `source` to `to`, which must not exist and whose parent nobody
    /// else can write: regular files, directories and symlinks (as symlinks),
    /// with their permission bits, owned by `uid:gid`, every timestamp
    /// `epoch`, less what `.s2iignore` leaves out. Anything else (devices,
    /// fifos, sockets), and directories deeper than [`MAX_DEPTH`], are refused.
    /// Returns the copy, open.
    pub fn copy(&self, source: &Source, to: &Path) -> Result<OwnedFd, Error> {
        let io_at = |op: &'static str, e: Errno| Error::Io { op, path: to.to_path_buf(), source: e.into() };
        let (parent, name) = match (to.parent(), to.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => return Err(io_at("creating", Errno::EINVAL)),
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let parent =
            nix::fcntl::open(parent, flags, Mode::empty()).map_err(|e| io_at("opening the parent of", e))?;
        let st = fstat(source.dir()).map_err(|e| unreadable(&source.given, Path::new(""), e))?;
        let walk = Walk { copy: self, given: &source.given, to };
        let src = source.dir.try_clone().map_err(|e| unreadable(&source.given, Path::new(""), e))?;
        walk.dir(src, &st, parent.as_fd(), name)
    }
}

/// One copy in progress.
struct Walk<'a> {
    copy: &'a SourceCopy<'a>,
    /// The source as given, for messages.
    given: &'a Path,
    /// The copy's root, for messages.
    to: &'a Path,
}

/// A directory being copied: the walk keeps one per level, on a stack
/// rather than the call stack, so that a deep source cannot overflow it.
struct Level {
    /// The source directory, open for reading.
    src: OwnedFd,
    /// Its status.
    st: FileStat,
    /// The copy, open.
    dst: OwnedFd,
    /// Where it is in the source.
    rel: PathBuf,
    /// Its entries not yet copied, sorted, last first.
    todo: Vec<OsString>,
}

impl Walk<'_> {
    fn dst_err(&self, op: &'static str, rel: &Path, e: impl Into<io::Error>) -> Error {
        Error::Io { op, path: self.to.join(rel), source: e.into() }
    }

    /// Copy the directory `src` (open for reading; status `st`) to `name` in
    /// `dst_parent`; returns the copy, open.
    fn dir(
        &self,
        src: OwnedFd,
        st: &FileStat,
        dst_parent: BorrowedFd<'_>,
        name: &OsStr,
    ) -> Result<OwnedFd, Error> {
        let mut stack = vec![self.level(src, *st, dst_parent, name, PathBuf::new())?];
        // The last level finished is the root's.
        let mut finished = None;
        while let Some(top) = stack.last_mut() {
            let Some(n) = top.todo.pop() else {
                if let Some(done) = stack.pop() {
                    self.finish(done.dst.as_fd(), &done.st, &done.rel)?;
                    finished = Some(done.dst);
                }
                continue;
            };
            let child = top.rel.join(&n);
            if self.copy.ignore.ignores(&child) {
                continue;
            }
            let fd = match open_path(top.src.as_fd(), &n) {
                Ok(fd) => fd,
                // Removed since the listing: the copy is of what is there.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(unreadable(self.given, &child, e)),
            };
            let cst = fstat(fd.as_fd()).map_err(|e| unreadable(self.given, &child, e))?;
            match kind(&cst) {
                SFlag::S_IFDIR => {
                    if top.rel.components().count() >= MAX_DEPTH {
                        return Err(refused(
                            self.given,
                            &child,
                            format!(
                                "is more than {MAX_DEPTH} directories deep, deeper than exprun copies; list it \
                                 in .s2iignore or flatten the tree"
                            ),
                        ));
                    }
                    let sub = enter(fd.as_fd()).map_err(|e| unreadable(self.given, &child, e))?;
                    let level = self.level(sub, cst, top.dst.as_fd(), &n, child)?;
                    stack.push(level);
                }
                SFlag::S_IFREG => self.file(fd.as_fd(), &cst, top.dst.as_fd(), &n, &child)?,
                SFlag::S_IFLNK => self.symlink(fd.as_fd(), top.dst.as_fd(), &n, &child)?,
                _ => {
                    return Err(refused(
                        self.given,
                        &child,
                        "is not a regular file, directory or symlink (a device, fifo or socket); remove it \
                         from the source or list it in .s2iignore",
                    ))
                }
            }
        }
        finished.ok_or_else(|| self.dst_err("copying", Path::new(""), io::Error::other("nothing was copied")))
    }

    /// Make the copy of the directory `src` as `name` in `dst_parent`, and
    /// list `src`.
    fn level(
        &self,
        src: OwnedFd,
        st: FileStat,
        dst_parent: BorrowedFd<'_>,
        name: &OsStr,
        rel: PathBuf,
    ) -> Result<Level, Error> {
        mkdirat(dst_parent, name, Mode::from_bits_truncate(0o700))
            .map_err(|e| self.dst_err("creating", &rel, e))?;
        let dst = openat(
            dst_parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.dst_err("opening", &rel, e))?;
        let mut todo: Vec<OsString> = Vec::new();
        let list = src.try_clone().map_err(|e| unreadable(self.given, &rel, e))?;
        for e in nix::dir::Dir::from_fd(list).map_err(|e| unreadable(self.given, &rel, e))?.iter() {
            let e = e.map_err(|e| unreadable(self.given, &rel, e))?;
            let n = OsStr::from_bytes(e.file_name().to_bytes());
            if n != "." && n != ".." {
                todo.push(n.to_owned());
            }
        }
        todo.sort_by(|a, b| b.cmp(a));
        Ok(Level { src, st, dst, rel, todo })
    }

    /// Copy the regular file open as `fd` (`O_PATH`) to `name` in `dst`.
    fn file(
        &self,
        fd: BorrowedFd<'_>,
        st: &FileStat,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
    ) -> Result<(), Error> {
        let from = crate::fsutil::reopen_for_reading(fd).map_err(|e| unreadable(self.given, rel, e))?;
        let out = openat(
            dst,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.dst_err("creating", rel, e))?;
        let mut out = File::from(out);
        // No more than its size when it was opened: a file its owner keeps
        // growing cannot keep the copy going.
        let size = u64::try_from(st.st_size).unwrap_or(0);
        io::copy(&mut (&from).take(size), &mut out).map_err(|e| self.dst_err("copying into", rel, e))?;
        self.finish(out.as_fd(), st, rel)
    }

    /// Copy the symlink open as `fd` (`O_PATH | O_NOFOLLOW`) to `name` in `dst`.
    fn symlink(
        &self,
        fd: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
    ) -> Result<(), Error> {
        let target = readlinkat(fd, "").map_err(|e| unreadable(self.given, rel, e))?;
        nix::unistd::symlinkat(target.as_os_str(), dst, name)
            .map_err(|e| self.dst_err("creating", rel, e))?;
        let (uid, gid) = (Uid::from_raw(self.copy.uid), Gid::from_raw(self.copy.gid));
        nix::unistd::fchownat(dst, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.dst_err("changing the owner of", rel, e))?;
        let t = self.time();
        utimensat(dst, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.dst_err("setting the timestamps of", rel, e))
    }

    fn time(&self) -> TimeSpec {
        TimeSpec::new(i64::try_from(self.copy.epoch).unwrap_or(i64::MAX), 0)
    }

    /// Owner, then mode (chown clears setuid and setgid bits), then times.
    fn finish(&self, fd: BorrowedFd<'_>, st: &FileStat, rel: &Path) -> Result<(), Error> {
        let (uid, gid) = (Uid::from_raw(self.copy.uid), Gid::from_raw(self.copy.gid));
        nix::unistd::fchown(fd, Some(uid), Some(gid))
            .map_err(|e| self.dst_err("changing the owner of", rel, e))?;
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(|e| self.dst_err("setting the mode of", rel, e))?;
        let t = self.time();
        futimens(fd, &t, &t).map_err(|e| self.dst_err("setting the timestamps of", rel, e))
    }
}

/// What the source itself says about its build, as s2i reads it.
pub struct Overrides {
    /// `.s2i/environment`: variables for assemble and the image, in order.
    pub env: Vec<(String, String)>,
    /// Whether `.s2i/bin/assemble` replaces the builder's assemble script.
    pub assemble: bool,
}

/// Read `.s2i/environment` and look for `.s2i/bin/assemble` in the copy of
/// the source, open as `copy` (`given` is the source as the user named it, for
/// messages). A `.s2i/bin/run` is refused: the image would need it, and the
/// source copy is not part of the image.
pub fn overrides(copy: BorrowedFd<'_>, given: &Path) -> Result<Overrides, Error> {
    let run = Path::new(".s2i/bin/run");
    if stat_config(copy, run, given)?.is_some() {
        return Err(refused(
            given,
            run,
            "overrides the builder's run script, which exprun build does not support; start the \
             application from the builder's run script (or an app script it calls), or remove this file",
        ));
    }
    let env_file = Path::new(".s2i/environment");
    let env = match read_config(copy, env_file, given)? {
        Some(text) => parse_environment(&text).map_err(|why| refused(given, env_file, why))?,
        None => Vec::new(),
    };
    let assemble = Path::new(".s2i/bin/assemble");
    let assemble = match stat_config(copy, assemble, given)? {
        None => false,
        Some((_, Some(target))) => return Err(symlink_refused(given, assemble, &target, assemble)),
        Some((st, None)) if is_file(&st) && st.st_mode & 0o111 != 0 => true,
        Some(_) => {
            return Err(refused(
                given,
                assemble,
                "is not an executable file; chmod +x it, or remove it to use the builder's",
            ))
        }
    };
    Ok(Overrides { env, assemble })
}

/// `.s2i/environment`: `NAME=VALUE` lines; blank lines and `#` comments skipped.
pub fn parse_environment(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) =
            line.split_once('=').ok_or_else(|| format!("line {}: {line:?} is not NAME=VALUE", n + 1))?;
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("line {}: {name:?} is not a variable name", n + 1));
        }
        env.push((name.to_string(), value.to_string()));
    }
    Ok(env)
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
