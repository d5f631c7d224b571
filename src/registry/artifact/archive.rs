//! The file layers `push --run` writes: trees of the host in a gzip'd tar,
//! exactly as the record has them.
//!
//! Each tree is walked through descriptors, as `record::files` digests it
//! (every entry opened with `O_NOFOLLOW` relative to its opened directory;
//! symlinks archived as links, never followed), and each entry is listed the
//! way the record lists it while its bytes go into the tar. The listing's
//! digest must be the recorded tree digest: a file added, changed or removed
//! since the run refuses the push, naming it. Device nodes, fifos and sockets
//! are never archived. Headers carry the mode and nothing of the host: owner
//! 0:0 without user or group names, mtime 0; entries are sorted and the gzip
//! header is fixed, so the same tree gives the same blob.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use nix::dir::Dir;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use tar::{EntryType, Header};

use super::sensitive::{self, Scanner};
use super::Error;
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::record::files::{FileEntry, TreeDigest, MAX_DEPTH};
use crate::record::for_terminal;

/// One file of a layer, for the listing.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its path in the tar.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Why it holds secrets (by name or by content), if it does.
    pub secret: Option<String>,
}

/// A file layer being written, in a scratch directory.
pub struct TarPart {
    title: &'static str,
    path: PathBuf,
    tar: tar::Builder<GzEncoder<HashingWriter<BufWriter<File>>>>,
    files: Vec<Listed>,
}

/// A file layer written.
#[derive(Debug)]
pub struct Written {
    /// Its file.
    pub path: PathBuf,
    /// The blob's digest and size.
    pub digest: Digest,
    /// Bytes.
    pub size: u64,
    /// Its regular files, in the order archived.
    pub files: Vec<Listed>,
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// A tar entry name: `name`, or `name/rel`.
fn under(name: &str, rel: &str) -> String {
    if rel.is_empty() || rel == "." {
        name.to_string()
    } else {
        format!("{name}/{rel}")
    }
}

impl TarPart {
    /// Start the layer `title` in `dir`.
    pub fn create(dir: &Path, title: &'static str) -> Result<Self, Error> {
        let path = dir.join(title);
        let file = File::create(&path).map_err(io_at("create", &path))?;
        let gz =
            GzBuilder::new().mtime(0).write(HashingWriter::new(BufWriter::new(file)), Compression::default());
        Ok(Self { title, path, tar: tar::Builder::new(gz), files: Vec::new() })
    }

    /// Archive the tree at `src` (a directory or a single file; `src` itself
    /// is followed as the run's bind mount followed it) under `name`, and
    /// check it against `recorded`. `what` names it in errors (`output /out`).
    pub fn add_tree(
        &mut self,
        name: &str,
        src: &Path,
        what: &str,
        recorded: &TreeDigest,
    ) -> Result<(), Error> {
        let refuse = |why: String| Error::Invalid { what: format!("{what} ({})", src.display()), why };
        if let Some(why) = &recorded.incomplete {
            return Err(refuse(format!(
                "the record has it only in part ({why}), so what is here now cannot be checked \
                 against it; the run cannot be pushed"
            )));
        }
        let root = nix::fcntl::open(src, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
            refuse(format!(
                "{}: it is gone or unreadable, so the run cannot be pushed whole",
                io::Error::from(e)
            ))
        })?;
        let mut listing = Vec::new();
        let mut specials = Vec::new();
        let file_name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.walk_root(name, &file_name, root, &mut listing, &mut specials).map_err(io_at("archive", src))?;
        if !specials.is_empty() {
            return Err(refuse(format!(
                "it holds {} that cannot go into an artifact (device nodes, fifos and sockets are \
                 never pushed): {}",
                specials.len(),
                specials.iter().map(|s| for_terminal(s).into_owned()).collect::<Vec<_>>().join(", ")
            )));
        }
        listing.sort_by(|a, b| a.path.cmp(&b.path));
        if recorded.scheme.of_entries(&listing) != recorded.digest {
            return Err(refuse(format!(
                "it is not what the run left: {}; the artifact must hold the files the record \
                 digested (run it again, or put the files back as they were)",
                differences(&recorded.entries, &listing)
            )));
        }
        Ok(())
    }

    /// Archive the regular file at `src` (never through a symlink) as `name`,
    /// checking its bytes when `expected` is given.
    pub fn add_file(&mut self, name: &str, src: &Path, expected: Option<&Digest>) -> Result<(), Error> {
        let flags =
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(src, flags, Mode::empty())
            .map_err(|e| io_at("open", src)(io::Error::from(e)))?;
        let st = fstat(fd.as_fd()).map_err(|e| io_at("read the status of", src)(e.into()))?;
        if kind_of(&st) != SFlag::S_IFREG {
            return Err(Error::Invalid { what: src.display().to_string(), why: "not a regular file".into() });
        }
        let (digest, _) = self.file(File::from(fd), name, name, &st).map_err(io_at("archive", src))?;
        if let Some(e) = expected.filter(|e| **e != digest) {
            return Err(Error::Invalid {
                what: src.display().to_string(),
                why: format!("its content ({digest}) is not what the record holds ({e}); refused"),
            });
        }
        Ok(())
    }

    /// End the tar and the gzip stream; the layer's digest and size.
    pub fn finish(self) -> Result<Written, Error> {
        let Self { title: _, path, tar, files } = self;
        let gz = tar.into_inner().map_err(io_at("archive", &path))?;
        let hashing = gz.finish().map_err(io_at("archive", &path))?;
        let (buf, digest, size) = hashing.finish();
        buf.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(io_at("write", &path))?;
        Ok(Written { path, digest, size, files })
    }

    /// The layer's title.
    pub fn title(&self) -> &'static str {
        self.title
    }

    /// `file_name` is the tree's own name on the host, for the secrets by
    /// name of a tree that is a single file.
    fn walk_root(
        &mut self,
        name: &str,
        file_name: &str,
        root: OwnedFd,
        listing: &mut Vec<FileEntry>,
        specials: &mut Vec<String>,
    ) -> io::Result<()> {
        let st = fstat(root.as_fd())?;
        match kind_of(&st) {
            SFlag::S_IFDIR => {
                self.tar.append_data(
                    &mut header(EntryType::Directory, st.st_mode & 0o7777, 0),
                    name,
                    io::empty(),
                )?;
                let dir = openat(root.as_fd(), ".", dir_flags(), Mode::empty())?;
                self.walk(name, dir, "", 1, listing, specials)
            }
            SFlag::S_IFREG => {
                let file = crate::fsutil::reopen_for_reading(root.as_fd())?;
                let (digest, size) = self.file(file, name, file_name, &st)?;
                listing.push(entry_of(".", "file", Some(&st), Some(size), Some(digest), None));
                Ok(())
            }
            _ => {
                specials.push(".".into());
                Ok(())
            }
        }
    }

    fn walk(
        &mut self,
        name: &str,
        dir: OwnedFd,
        rel: &str,
        depth: usize,
        listing: &mut Vec<FileEntry>,
        specials: &mut Vec<String>,
    ) -> io::Result<()> {
        let mut names: Vec<OsString> = Vec::new();
        for e in Dir::from_fd(dir.try_clone()?)?.iter() {
            let n = OsStr::from_bytes(e?.file_name().to_bytes()).to_owned();
            if n != "." && n != ".." {
                names.push(n);
            }
        }
        names.sort();
        for n in names {
            let path = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            let fd = openat(
                dir.as_fd(),
                n.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let st = fstat(fd.as_fd())?;
            let in_tar = under(name, &path);
            match kind_of(&st) {
                SFlag::S_IFDIR => {
                    if depth >= MAX_DEPTH {
                        return Err(io::Error::other(format!("{path}: deeper than {MAX_DEPTH} levels")));
                    }
                    let mode = st.st_mode & 0o7777;
                    self.tar.append_data(&mut header(EntryType::Directory, mode, 0), &in_tar, io::empty())?;
                    listing.push(entry_of(&path, "dir", Some(&st), None, None, None));
                    let sub = openat(fd.as_fd(), ".", dir_flags(), Mode::empty())?;
                    self.walk(name, sub, &path, depth + 1, listing, specials)?;
                }
                SFlag::S_IFREG => {
                    let file = crate::fsutil::reopen_for_reading(fd.as_fd())?;
                    let (digest, size) = self.file(file, &in_tar, &path, &st)?;
                    listing.push(entry_of(&path, "file", Some(&st), Some(size), Some(digest), None));
                }
                SFlag::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(fd.as_fd(), "")?;
                    self.tar.append_link(&mut header(EntryType::Symlink, 0o777, 0), &in_tar, &target)?;
                    let target = target.to_string_lossy().into_owned();
                    listing.push(entry_of(&path, "symlink", None, None, None, Some(target)));
                }
                _ => specials.push(path),
            }
        }
        Ok(())
    }

    /// One regular file's bytes into the tar, hashed and scanned on the way.
    /// `rel` is its path within its tree (for the secrets by name).
    fn file(&mut self, file: File, in_tar: &str, rel: &str, st: &FileStat) -> io::Result<(Digest, u64)> {
        let size = st.st_size as u64;
        let mut reader =
            Watched { inner: file.take(size), hasher: Hasher::new(), scanner: Scanner::default() };
        self.tar.append_data(
            &mut header(EntryType::Regular, st.st_mode & 0o7777, size),
            in_tar,
            &mut reader,
        )?;
        let Watched { hasher, scanner, .. } = reader;
        let (digest, read) = hasher.finish();
        if read != size {
            return Err(io::Error::other(format!(
                "{in_tar}: changed while it was archived ({size} bytes, then {read})"
            )));
        }
        let secret = match (sensitive::by_name(rel), scanner.finish()) {
            (Some(n), Some(line)) => Some(format!("by name ({n}) and by content (line {line})")),
            (Some(n), None) => Some(format!("by name ({n})")),
            (None, Some(line)) => Some(format!("by content (a credential on line {line})")),
            (None, None) => None,
        };
        self.files.push(Listed { name: in_tar.to_string(), size, secret });
        Ok((digest, size))
    }
}

/// A reader that hashes what passes and looks for credentials in it.
struct Watched<R> {
    inner: R,
    hasher: Hasher,
    scanner: Scanner,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.scanner.update(&buf[..n]);
        Ok(n)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// An entry as `record::files` lists it.
fn entry_of(
    path: &str,
    kind: &str,
    st: Option<&FileStat>,
    size: Option<u64>,
    digest: Option<Digest>,
    target: Option<String>,
) -> FileEntry {
    FileEntry {
        path: path.to_string(),
        kind: kind.into(),
        size,
        digest,
        target,
        mode: st.map(|s| s.st_mode & 0o7777),
        unread: None,
    }
}

/// What differs between the recorded listing and the one archived, by path.
fn differences(recorded: &[FileEntry], now: &[FileEntry]) -> String {
    let was: BTreeMap<&str, &FileEntry> = recorded.iter().map(|e| (e.path.as_str(), e)).collect();
    let is: BTreeMap<&str, &FileEntry> = now.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut lines = Vec::new();
    for (p, e) in &is {
        match was.get(p) {
            None => lines.push(format!("{} added", for_terminal(p))),
            Some(w) if w != e => lines.push(format!("{} changed", for_terminal(p))),
            Some(_) => {}
        }
    }
    lines.extend(was.keys().filter(|p| !is.contains_key(*p)).map(|p| format!("{} removed", for_terminal(p))));
    if lines.is_empty() {
        return "its listing differs from the recorded one".into();
    }
    const SHOWN: usize = 10;
    let more = lines.len().saturating_sub(SHOWN);
    lines.truncate(SHOWN);
    let mut s = lines.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::record::files::digest_tree;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.csv"), "1,2\n").unwrap();
        std::fs::write(dir.join("sub/.env"), "X=1\n").unwrap();
        std::fs::write(dir.join("sub/log"), format!("key AKIA{}\n", "Q".repeat(16))).unwrap();
        std::fs::set_permissions(dir.join("a.csv"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
    }

    #[test]
    fn a_tree_archived_as_recorded_unpacks_to_the_same_digest_and_tells_nothing_of_the_host() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("out");
        tree(&src);
        let recorded = digest_tree(&src).unwrap();
        let mut part = TarPart::create(t.path(), "outputs.tar.gz").unwrap();
        part.add_tree("0", &src, "output /out", &recorded).unwrap();
        let w = part.finish().unwrap();
        let secrets: Vec<_> =
            w.files.iter().filter_map(|f| Some((f.name.as_str(), f.secret.as_deref()?))).collect();
        assert_eq!(
            secrets,
            [("0/sub/.env", "by name (.env)"), ("0/sub/log", "by content (a credential on line 1)")]
        );

        let gz = flate2::read::GzDecoder::new(File::open(&w.path).unwrap());
        let mut archive = tar::Archive::new(gz);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 0));
            assert!(h.username_bytes().is_none_or(<[u8]>::is_empty));
            assert!(h.groupname_bytes().is_none_or(<[u8]>::is_empty));
        }
        let scratch = t.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let dest = t.path().join("unpacked");
        let tops = super::super::unpack::Tops::Indices(1);
        super::super::unpack::unpack(&w.path, "outputs.tar.gz", &dest, &scratch, &tops, Default::default())
            .unwrap();
        assert_eq!(digest_tree(&dest.join("0")).unwrap().digest, recorded.digest);
    }

    #[test]
    fn a_tree_that_changed_since_the_run_is_refused_naming_the_files() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("out");
        tree(&src);
        let recorded = digest_tree(&src).unwrap();
        std::fs::write(src.join("a.csv"), "9,9\n").unwrap();
        std::fs::write(src.join("late"), "written after the run\n").unwrap();
        std::fs::remove_file(src.join("sub/log")).unwrap();
        let mut part = TarPart::create(t.path(), "outputs.tar.gz").unwrap();
        let e = part.add_tree("0", &src, "output /out", &recorded).unwrap_err().to_string();
        assert!(e.contains("output /out") && e.contains("a.csv changed, late added, sub/log removed"), "{e}");

        let incomplete = TreeDigest { incomplete: Some("1 file(s) not digested".into()), ..recorded };
        let e = part.add_tree("0", &src, "output /out", &incomplete).unwrap_err().to_string();
        assert!(e.contains("only in part (1 file(s) not digested)"), "{e}");
    }
}
