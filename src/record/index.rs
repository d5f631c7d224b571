//! The index of the records in a runs directory: what `runs ls` prints and
//! filters on, one JSON line a run, so listing 100,000 runs reads one file.
//!
//! `runs/.index` gets a line appended (`O_APPEND`, one write) by every record
//! writer, after its record is in place; `runs rm`, `runs prune` and pod
//! retention rewrite it (atomically, under the exclusive lock
//! `runs/.index.lock`, which record writers hold shared from their first
//! object to their line). Before it is used, the set of run directories is
//! compared with the set of ids in the index (one `readdir`): a run directory
//! holding a record but not in the index (a record written while the index
//! was being rewritten, by an exprun killed between its record and its line,
//! or copied in by hand) has its record read and its line added; an id whose
//! directory is gone is dropped. An index that is missing or has a line that
//! does not parse is rebuilt from the records.
//!
//! `runs ls` reads the index into one buffer and lists from it without
//! copying ([`Listed`] borrows its strings from the line), and checks it
//! against the run directories as one pass over `runs/` returns them,
//! without keeping their names.
//!
//! The line is what the record said when it was written: a record edited by
//! hand afterwards is listed as it was until the index is rebuilt (remove
//! `runs/.index`); `runs show`, export, replay and verify read the record.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::store::{self, Store};
use super::{Error, Kubernetes, MadeBy, RunRecord, Status};
use crate::digest::Digest;
use crate::fsutil::{self, Lock};

/// The index file, in `runs/`.
pub const INDEX: &str = ".index";
/// Its lock.
pub const LOCK: &str = ".index.lock";

/// The image of a run, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The reference as given.
    pub reference: String,
    /// The `name:tag` it resolved through.
    pub name: Option<String>,
    /// The manifest digest.
    pub manifest_digest: Digest,
}

/// One run, as `runs ls` lists and filters it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Run id.
    pub id: String,
    /// `--name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// How it ended.
    pub status: Status,
    /// Exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Killed by the OOM killer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_killed: bool,
    /// `time.created`.
    pub created: String,
    /// `time.wall_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// The spec's argv.
    pub command: Vec<String>,
    /// The spec's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
    /// The run it replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// What made the replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_by: Option<MadeBy>,
    /// Made by `exprun verify` ([`RunRecord::made_by_verify`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub by_verify: bool,
    /// The objects its record names, each by the first [`SHORT`] hex digits
    /// of its digest, space-separated: what `runs rm` must keep (two objects
    /// that share a prefix are both kept while either is named).
    #[serde(default, rename = "o", skip_serializing_if = "String::is_empty")]
    pub objects: String,
}

/// Hex digits of an object's digest in an index line.
pub const SHORT: usize = 16;

fn is_false(b: &bool) -> bool {
    !*b
}

/// How an index line names object `d`.
fn short(d: &Digest) -> &str {
    &d.hex()[..SHORT]
}

impl Entry {
    /// The entry of `r`, whose stored form names `objects`.
    pub fn of(r: &RunRecord, objects: &[Digest]) -> Self {
        let process = r.spec.process().as_ref();
        Self {
            id: r.run_id.clone(),
            name: r.name.clone(),
            image: r.image.as_ref().map(|i| Image {
                reference: i.reference.clone(),
                name: i.name.clone(),
                manifest_digest: i.manifest_digest.clone(),
            }),
            status: r.status,
            exit_code: r.exit.code,
            oom_killed: r.exit.oom_killed,
            created: r.time.created.clone(),
            wall_seconds: r.time.wall_seconds,
            command: process.and_then(|p| p.args().clone()).unwrap_or_default(),
            labels: r.spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            kubernetes: r.kubernetes.clone(),
            replay_of: r.replay_of.clone(),
            made_by: r.made_by,
            by_verify: r.made_by_verify(),
            objects: objects.iter().map(short).collect::<Vec<_>>().join(" "),
        }
    }

    /// Its line in the index.
    pub fn line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// A string of an index line: borrowed from the line, unless it had
/// escapes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text<'a>(Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}

/// A manifest digest as an index line has it: `sha256:` and 64 lowercase
/// hex digits, as [`Digest`] parses it, kept as text.
fn digest_text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
    let t = Text::deserialize(d)?;
    let hex = t.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(serde::de::Error::custom("expected the form sha256:<64 lowercase hex characters>"));
    }
    Ok(t)
}

/// The image of a listed run.
#[derive(Debug, Deserialize)]
pub struct ListedImage<'a> {
    /// The reference as given.
    #[serde(borrow)]
    pub reference: Text<'a>,
    /// The `name:tag` it resolved through.
    #[serde(borrow, default)]
    pub name: Option<Text<'a>>,
    /// The manifest digest, `sha256:<hex>`.
    #[serde(borrow, deserialize_with = "digest_text")]
    pub manifest_digest: Text<'a>,
}

impl ListedImage<'_> {
    /// The first 12 hex digits of the manifest digest.
    pub fn short_digest(&self) -> &str {
        // Checked when read: `sha256:` and 64 hex digits.
        &self.manifest_digest["sha256:".len().."sha256:".len() + 12]
    }
}

/// One run as `runs ls` reads it from an index line: an [`Entry`] whose
/// strings are borrowed from the line. A line this does not read is one
/// [`Entry`] does not read either.
#[derive(Debug, Deserialize)]
pub struct Listed<'a> {
    /// Run id.
    #[serde(borrow)]
    pub id: Text<'a>,
    /// `--name`.
    #[serde(borrow, default)]
    pub name: Option<Text<'a>>,
    /// The image.
    #[serde(borrow, default)]
    pub image: Option<ListedImage<'a>>,
    /// How it ended.
    pub status: Status,
    /// Exit code.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Killed by the OOM killer.
    #[serde(default)]
    pub oom_killed: bool,
    /// `time.created`.
    #[serde(borrow)]
    pub created: Text<'a>,
    /// `time.wall_seconds`.
    #[serde(default)]
    pub wall_seconds: Option<f64>,
    /// The spec's argv.
    #[serde(borrow)]
    pub command: Vec<Text<'a>>,
    /// The spec's annotations.
    #[serde(borrow, default)]
    pub labels: BTreeMap<Text<'a>, Text<'a>>,
    /// The pod.
    #[serde(default)]
    pub kubernetes: Option<Box<Kubernetes>>,
    /// The run it replays.
    #[serde(borrow, default)]
    pub replay_of: Option<Text<'a>>,
    /// What made the replay.
    #[serde(default)]
    pub made_by: Option<MadeBy>,
    /// Made by `exprun verify`.
    #[serde(default)]
    pub by_verify: bool,
    /// [`Entry::objects`]: read so that a line whose objects do not parse is
    /// refused here as there; `runs ls` has no use for it.
    #[serde(borrow, default, rename = "o")]
    pub objects: Text<'a>,
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// The lock of `runs`' index: shared for writing a record, exclusive for
/// rewriting the index and removing objects.
pub fn lock(runs: &Path, exclusive: bool) -> Result<Lock, Error> {
    let path = runs.join(LOCK);
    Lock::acquire(&path, exclusive).map_err(io_at("locking", &path))
}

/// Append `entry` (its record just written) to the index; the caller holds
/// [`lock`]. Without an index, nothing: the next reader builds it whole.
pub fn append(runs: &Path, entry: &Entry) -> Result<(), Error> {
    let path = runs.join(INDEX);
    match fs::OpenOptions::new().append(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
        Ok(mut f) => f.write_all(entry.line().as_bytes()).map_err(io_at("appending to", &path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at("opening", &path)(e)),
    }
}

/// The names in `runs` that may be run directories: not the store, index,
/// names or pod index (all of whose names a run id cannot take: they start
/// with a dot, or are refused as ids).
fn run_dirs(runs: &Path) -> Result<HashSet<String>, Error> {
    let entries = match fs::read_dir(runs) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(io_at("listing", runs)(e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n != "by-name")
        .collect())
}

/// Read the index into `text`: whether it is there, a regular file of
/// UTF-8 whose last line is whole.
fn read_text(runs: &Path, text: &mut String) -> Result<bool, Error> {
    let path = runs.join(INDEX);
    let mut f =
        match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
                return Ok(false)
            }
            Err(e) => return Err(io_at("opening", &path)(e)),
        };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    text.clear();
    match io::Read::read_to_string(&mut f, text) {
        Ok(_) => Ok(text.is_empty() || text.ends_with('\n')),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(false),
        Err(e) => Err(io_at("reading", &path)(e)),
    }
}

/// The index as written, line by line (an id written twice is there twice),
/// or `None` when it is missing or a line does not parse.
fn read(runs: &Path) -> Result<Option<Vec<Entry>>, Error> {
    let mut text = String::new();
    if !read_text(runs, &mut text)? {
        return Ok(None);
    }
    Ok(text.lines().map(|line| serde_json::from_str::<Entry>(line).ok()).collect())
}

/// The lines of `text`, borrowing from it; `None` when one does not parse.
fn parse(text: &str) -> Option<Vec<Listed<'_>>> {
    let mut out = Vec::with_capacity(text.len() / 256);
    for line in text.lines() {
        out.push(serde_json::from_str(line).ok()?);
    }
    Some(out)
}

/// Whether `entries` name each run directory in `runs` once and nothing
/// else: one pass over `runs/`, each name looked up as it comes.
fn agrees(runs: &Path, entries: &[Listed<'_>]) -> Result<bool, Error> {
    // The ids exprun makes are kept in the set as numbers: looking a name
    // up then reads no line of the index (100,000 lookups in the order of
    // readdir, each a cache miss into the index, were a seventh of `runs ls`).
    let mut hex: HashSet<u128> = HashSet::with_capacity(entries.len());
    let mut other: HashSet<&str> = HashSet::new();
    for e in entries {
        let fresh = match hex_id(&e.id) {
            Some(n) => hex.insert(n),
            None => other.insert(&e.id),
        };
        if !fresh {
            return Ok(false);
        }
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut dir = match Dir::open(runs, flags, Mode::empty()) {
        Ok(d) => d,
        Err(nix::errno::Errno::ENOENT) => return Ok(entries.is_empty()),
        Err(e) => return Err(io_at("listing", runs)(e.into())),
    };
    let mut found = 0;
    for d in dir.iter() {
        let d = d.map_err(|e| io_at("listing", runs)(e.into()))?;
        let name = d.file_name().to_bytes();
        if name.starts_with(b".") || name == b"by-name" {
            continue;
        }
        let is_dir = match d.file_type() {
            Some(t) => t == Type::Directory,
            None => {
                fs::symlink_metadata(runs.join(std::ffi::OsStr::from_bytes(name))).is_ok_and(|m| m.is_dir())
            }
        };
        if !is_dir {
            continue;
        }
        let listed = std::str::from_utf8(name).is_ok_and(|n| match hex_id(n) {
            Some(k) => hex.contains(&k),
            None => other.contains(n),
        });
        if !listed {
            return Ok(false);
        }
        found += 1;
    }
    Ok(found == entries.len())
}

/// A run id of 32 lowercase hex digits (as exprun makes them) as a number;
/// one number for one such id, and none for any other id.
fn hex_id(id: &str) -> Option<u128> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u128::from_str_radix(id, 16).ok()
}

/// `entries` with one entry per id: the last line written for it (a record
/// written again under its id replaced the earlier one).
fn dedup(entries: Vec<Entry>) -> Vec<Entry> {
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        match at.get(&e.id) {
            Some(&i) => out[i] = e,
            None => {
                at.insert(e.id.clone(), out.len());
                out.push(e);
            }
        }
    }
    out
}

/// The entry of run `id`'s record, read whole (objects resolved and checked);
/// `None` when it has no record (a run still being set up).
fn entry_of(runs: &Path, id: &str) -> Option<Result<Entry, Error>> {
    let path = runs.join(id).join("record.json");
    if fs::symlink_metadata(&path).is_err() {
        return None;
    }
    Some(RunRecord::read_stored(&path).map(|(r, objects)| Entry::of(&r, &objects)))
}

/// What [`load`] reads the index into: as read, and as mended when it had to be.
#[derive(Default)]
pub struct Buffers {
    read: String,
    mended: String,
}

/// What [`load`] found: the entries, and the records it could not read.
pub struct Listing<'a> {
    /// One per readable record, in no particular order.
    pub entries: Vec<Listed<'a>>,
    /// Records that could not be read, each with why.
    pub unreadable: Vec<(String, Error)>,
}

/// The entries of every record in `runs`: from the index (read into
/// `bufs`), brought up to date with the run directories present, and written
/// back when that changed it.
pub fn load<'a>(runs: &Path, bufs: &'a mut Buffers) -> Result<Listing<'a>, Error> {
    let Buffers { read, mended } = bufs;
    if read_text(runs, read)? {
        let read: &'a str = read;
        if let Some(entries) = parse(read) {
            if agrees(runs, &entries)? {
                return Ok(Listing { entries, unreadable: Vec::new() });
            }
        }
    }
    if !runs.is_dir() {
        return Ok(Listing { entries: Vec::new(), unreadable: Vec::new() });
    }
    // The index is a cache: a caller who may not write it gets the listing all the same.
    let m = match lock(runs, true) {
        Ok(_lock) => refresh(runs, true)?,
        Err(_) => refresh(runs, false)?,
    };
    *mended = text_of(&m.entries);
    let mended: &'a str = mended;
    let entries = parse(mended).ok_or_else(|| {
        let path = runs.join(INDEX);
        io_at("reading back", &path)(io::Error::other("a line written does not read back"))
    })?;
    Ok(Listing { entries, unreadable: m.unreadable })
}

/// What [`refresh`] found: the entries, and the records it could not read.
struct Mended {
    entries: Vec<Entry>,
    unreadable: Vec<(String, Error)>,
}

/// [`load`] with the exclusive lock held (`save`): the index read again,
/// mended, and rewritten when it changed.
fn refresh(runs: &Path, save: bool) -> Result<Mended, Error> {
    let dirs = run_dirs(runs)?;
    let had = read(runs)?;
    let rebuild = had.is_none();
    let mut entries = dedup(had.unwrap_or_default());
    let before = entries.len();
    entries.retain(|e| dirs.contains(&e.id));
    let mut changed = rebuild || entries.len() != before;
    let indexed: HashSet<String> = entries.iter().map(|e| e.id.clone()).collect();
    let mut unreadable = Vec::new();
    let mut missing: Vec<&String> = dirs.iter().filter(|id| !indexed.contains(*id)).collect();
    missing.sort();
    for id in missing {
        match entry_of(runs, id) {
            None => {}
            Some(Ok(e)) => {
                entries.push(e);
                changed = true;
            }
            Some(Err(e)) => unreadable.push((id.clone(), e)),
        }
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    if changed && save {
        // A cache: what could not be saved is worked out again next time.
        let _ = write(runs, &entries);
    }
    Ok(Mended { entries, unreadable })
}

fn text_of(entries: &[Entry]) -> String {
    let mut text = String::with_capacity(entries.len() * 512);
    for e in entries {
        text.push_str(&e.line());
    }
    text
}

fn write(runs: &Path, entries: &[Entry]) -> Result<(), Error> {
    let path = runs.join(INDEX);
    fsutil::write_atomic(&path, text_of(entries).as_bytes(), false).map_err(io_at("rewriting", &path))
}

/// After records were removed from `runs`: drop their lines and remove the
/// objects no record left names (a record that could not be read keeps the
/// objects its record.json names). The objects removed.
pub fn collect(runs: &Path) -> Result<Vec<Digest>, Error> {
    if !runs.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = lock(runs, true)?;
    let listing = refresh(runs, true)?;
    let mut named: HashSet<String> =
        listing.entries.iter().flat_map(|e| e.objects.split(' ')).map(str::to_string).collect();
    for (id, _) in &listing.unreadable {
        named.extend(raw_references(&runs.join(id).join("record.json")).iter().map(|d| short(d).to_string()));
    }
    let keep = |hex: &str| hex.get(..SHORT).is_some_and(|s| named.contains(s));
    Store::of(runs).collect(keep).map_err(|e| match e {
        store::Error::Io { op, path, source } => Error::Io { op, path, source },
        other => Error::Io {
            op: "collecting objects in",
            path: runs.to_path_buf(),
            source: io::Error::other(other),
        },
    })
}

/// The objects a record.json names, read as plain JSON (a record that cannot
/// be read whole still keeps its objects).
fn raw_references(path: &PathBuf) -> Vec<Digest> {
    let Ok(limit) = super::max_record_bytes() else { return Vec::new() };
    let Ok(f) =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
    else {
        return Vec::new();
    };
    if !f.metadata().is_ok_and(|m| m.is_file() && m.len() <= limit) {
        return Vec::new();
    }
    serde_json::from_reader(io::BufReader::new(f)).map(|v| store::named_in(&v)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        let v = crate::record::diff::sample_record(id);
        Entry::of(&serde_json::from_value(v).unwrap(), &[])
    }

    #[test]
    fn a_line_is_listed_when_it_reads_as_an_entry() {
        let good = entry("a").line();
        assert!(good.contains("\"manifest_digest\":\"sha256:"), "{good}");
        let lines = [
            good.clone(),
            good.replacen('{', r#"{"o":"0123456789abcdef 0123456789abcdee","#, 1),
            good.replacen('{', r#"{"o":5,"#, 1),
            good.replacen('{', r#"{"name":"a\tb\u00e9\"","#, 1),
            good.replacen('{', r#"{"name":5,"#, 1),
            good.replace("\"manifest_digest\":\"sha256:", "\"manifest_digest\":\"sha256:A"),
            good.replace("\"manifest_digest\":\"sha256:", "\"manifest_digest\":\"sha512:"),
            good.replace("\"status\":\"", "\"status\":\"x"),
            good.replacen('{', r#"{"unknown":[1,{"x":null}],"#, 1),
        ];
        for line in &lines {
            let (listed, entry) =
                (serde_json::from_str::<Listed<'_>>(line), serde_json::from_str::<Entry>(line));
            assert_eq!(listed.is_ok(), entry.is_ok(), "{line}");
            if let (Ok(l), Ok(e)) = (listed, entry) {
                let image = l.image.as_ref().unwrap();
                assert_eq!(
                    (&*l.id, l.name.as_deref(), &*image.manifest_digest, &*l.created, l.command.len()),
                    (
                        e.id.as_str(),
                        e.name.as_deref(),
                        e.image.as_ref().unwrap().manifest_digest.to_string().as_str(),
                        e.created.as_str(),
                        e.command.len()
                    )
                );
            }
        }
    }

    #[test]
    fn hex_ids_are_numbers_one_for_one() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(hex_id(id), Some(0x0123456789abcdef0123456789abcdef));
        for other in [
            "0123456789ABCDEF0123456789abcdef",
            "+123456789abcdef0123456789abcdef",
            "a",
            "",
            "g".repeat(32).as_str(),
        ] {
            assert_eq!(hex_id(other), None, "{other}");
        }
    }

    #[test]
    fn an_index_that_disagrees_with_the_directories_is_mended() {
        let t = tempfile::tempdir().unwrap();
        let runs = t.path();
        fs::create_dir_all(runs.join("a")).unwrap();
        fs::create_dir_all(runs.join("b")).unwrap();
        fs::create_dir_all(runs.join(".objects")).unwrap();
        write(runs, &[entry("a"), entry("gone")]).unwrap();
        // b has no record (a run being set up): not listed, not an error.
        let mut bufs = Buffers::default();
        let l = load(runs, &mut bufs).unwrap();
        assert_eq!(l.entries.iter().map(|e| &*e.id).collect::<Vec<_>>(), ["a"]);
        assert!(l.unreadable.is_empty());
        assert_eq!(read(runs).unwrap().unwrap().iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ["a"]);
        // A torn last line: rebuilt from the records (a has none: nothing left).
        fs::write(runs.join(INDEX), b"{\"id\":\"a\"").unwrap();
        assert!(load(runs, &mut Buffers::default()).unwrap().entries.is_empty());
    }
}
