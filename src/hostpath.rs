//! Walking a host path that other local users may have a hand in, one
//! component at a time from `/`.
//!
//! Each component is opened with `O_PATH | O_NOFOLLOW` relative to the
//! directory before it and typed by `fstat` of what was opened, so nothing is
//! checked by name and then used by name. A symlink is followed only when its
//! owner is one the caller trusts (root, and for some uses the caller: the
//! kernel's protected_symlinks rule, applied everywhere rather than in sticky
//! directories only, since a user's symlink may point at /etc); its target is
//! read through the checked descriptor. `..` is resolved as the walk reaches
//! it, after the symlinks before it, as the kernel does.
//!
//! Used by `--output` (which makes missing directories) and `exprun build`'s
//! `--source`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode, SFlag};

/// The most symlinks followed on one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Why a walk stopped.
#[derive(Debug)]
pub enum Stop {
    /// A symlink whose owner is not trusted.
    ForeignSymlink {
        /// The symlink, as the walk reached it.
        link: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A component is neither a directory nor a symlink.
    NotDirectory {
        /// The component, as the walk reached it.
        component: PathBuf,
    },
    /// A system call failed (ENOENT for a missing component when nothing is made).
    Io {
        /// What was being done.
        op: &'static str,
        /// On which component.
        component: PathBuf,
        /// The error.
        errno: Errno,
    },
}

/// How to walk.
pub struct Walk<'a> {
    /// Whether a symlink owned by this uid is followed.
    pub follows: &'a dyn Fn(u32) -> bool,
    /// Make missing directories (mode 0777 less the umask, as `mkdir -p`),
    /// under the opened parent.
    pub make_missing: bool,
}

/// A directory reached.
#[derive(Debug)]
pub struct Reached {
    /// The directory, `O_PATH`.
    pub fd: OwnedFd,
    /// Where it is, every symlink resolved.
    pub path: PathBuf,
    /// Its status.
    pub stat: FileStat,
}

/// Walk the absolute `path` to the directory it names.
pub fn open_dir(path: &Path, walk: &Walk<'_>) -> Result<Reached, Stop> {
    let io = |op: &'static str, component: &Path, errno: Errno| Stop::Io {
        op,
        component: component.to_path_buf(),
        errno,
    };
    let root = || nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty());
    let mut dir = root().map_err(|e| io("opening", Path::new("/"), e))?;
    // Where `dir` is, for messages and for `..`.
    let mut at = PathBuf::from("/");
    let mut todo: VecDeque<OsString> = names(path).collect();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            dir = openat(dir.as_fd(), "..", flags, Mode::empty()).map_err(|e| io("opening", &at, e))?;
            at.pop();
            continue;
        }
        let here = at.join(&name);
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(dir.as_fd(), name.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if walk.make_missing => {
                // Made under the opened parent, then opened like any other
                // component: whoever made it first, it passes the same checks.
                match mkdirat(dir.as_fd(), name.as_os_str(), Mode::from_bits_truncate(0o777)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io("creating", &here, e)),
                }
                todo.push_front(name);
                continue;
            }
            Err(e) => return Err(io("opening", &here, e)),
        };
        let st = fstat(fd.as_fd()).map_err(|e| io("reading the status of", &here, e))?;
        match kind(&st) {
            SFlag::S_IFDIR => {
                dir = fd;
                at = here;
            }
            SFlag::S_IFLNK => {
                if !(walk.follows)(st.st_uid) {
                    return Err(Stop::ForeignSymlink { link: here, owner: st.st_uid });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(io("resolving", &here, Errno::ELOOP));
                }
                // Read through the checked descriptor: the name may point at
                // another link by now.
                let target = PathBuf::from(
                    readlinkat(fd.as_fd(), "").map_err(|e| io("reading the symlink", &here, e))?,
                );
                if target.is_absolute() {
                    dir = root().map_err(|e| io("opening", Path::new("/"), e))?;
                    at = PathBuf::from("/");
                }
                for n in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(n);
                }
            }
            _ => return Err(Stop::NotDirectory { component: here }),
        }
    }
    let stat = fstat(dir.as_fd()).map_err(|e| io("reading the status of", &at, e))?;
    Ok(Reached { fd: dir, path: at, stat })
}

/// The file type bits of `st`.
pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// The names of a path, `..` kept (it is resolved as the walk goes, after
/// the symlinks before it), `.` and `/` dropped.
fn names(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}
