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
//! The line is what the record said when it was written: a record edited by
//! hand afterwards is listed as it was until the index is rebuilt (remove
//! `runs/.index`); `runs show`, export, replay and verify read the record.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

    fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
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
        Ok(mut f) => f.write_all(&entry.line()).map_err(io_at("appending to", &path)),
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

/// The index as written, line by line (an id written twice is there twice),
/// or `None` when it is missing or a line does not parse.
fn read(runs: &Path) -> Result<Option<Vec<Entry>>, Error> {
    let path = runs.join(INDEX);
    let text =
        match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path)
        {
            Ok(f) => {
                if !f.metadata().is_ok_and(|m| m.is_file()) {
                    return Ok(None);
                }
                match io::read_to_string(f) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(None),
                    Err(e) => return Err(io_at("reading", &path)(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
                return Ok(None)
            }
            Err(e) => return Err(io_at("opening", &path)(e)),
        };
    if !text.is_empty() && !text.ends_with('\n') {
        return Ok(None);
    }
    let mut out = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => out.push(e),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(out))
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

/// What [`load`] found: the entries, and the records it could not read.
pub struct Listing {
    /// One per readable record, in no particular order.
    pub entries: Vec<Entry>,
    /// Records that could not be read, each with why.
    pub unreadable: Vec<(String, Error)>,
}

/// The entries of every record in `runs`: from the index, brought up to date
/// with the run directories present, and written back when that changed it.
pub fn load(runs: &Path) -> Result<Listing, Error> {
    let mut dirs = run_dirs(runs)?;
    if let Some(entries) = read(runs)? {
        // Each line takes its directory away: an id twice, or one without a
        // directory, fails; a directory left over has no line.
        if entries.len() == dirs.len() && entries.iter().all(|e| dirs.remove(&e.id)) {
            return Ok(Listing { entries, unreadable: Vec::new() });
        }
    }
    if dirs.is_empty() && !runs.is_dir() {
        return Ok(Listing { entries: Vec::new(), unreadable: Vec::new() });
    }
    // The index is a cache: a caller who may not write it gets the listing all the same.
    match lock(runs, true) {
        Ok(_lock) => refresh(runs, true),
        Err(_) => refresh(runs, false),
    }
}

/// [`load`] with the exclusive lock held (`save`): the index read again,
/// mended, and rewritten when it changed.
fn refresh(runs: &Path, save: bool) -> Result<Listing, Error> {
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
    Ok(Listing { entries, unreadable })
}

fn write(runs: &Path, entries: &[Entry]) -> Result<(), Error> {
    let mut text = Vec::with_capacity(entries.len() * 512);
    for e in entries {
        text.extend(e.line());
    }
    let path = runs.join(INDEX);
    fsutil::write_atomic(&path, &text, false).map_err(io_at("rewriting", &path))
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
    fn an_index_that_disagrees_with_the_directories_is_mended() {
        let t = tempfile::tempdir().unwrap();
        let runs = t.path();
        fs::create_dir_all(runs.join("a")).unwrap();
        fs::create_dir_all(runs.join("b")).unwrap();
        fs::create_dir_all(runs.join(".objects")).unwrap();
        write(runs, &[entry("a"), entry("gone")]).unwrap();
        // b has no record (a run being set up): not listed, not an error.
        let l = load(runs).unwrap();
        let ids = |v: &[Entry]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&l.entries), ["a"]);
        assert!(l.unreadable.is_empty());
        assert_eq!(ids(&read(runs).unwrap().unwrap()), ["a"]);
        // A torn last line: rebuilt from the records (a has none: nothing left).
        fs::write(runs.join(INDEX), b"{\"id\":\"a\"").unwrap();
        assert!(load(runs).unwrap().entries.is_empty());
    }
}
