//! Retention of pod containers' records: a node runs thousands of containers,
//! and nothing else ever removes their records.
//!
//! Each pod record written into a root's `runs/` is appended to the index
//! `runs/pods.index` (one JSON object a line: run id, when it was written, its
//! size, the live-containers directory of the state root that ran it). The
//! policy is applied from the index, under the lock `runs/pods.index.lock`,
//! each time a pod record is written and on `exprun gc`: no directory scan.
//! Oldest first, records are removed while there are more than `max_count`,
//! while they take more than `max_size`, and while the oldest is older than
//! `max_age`; never one whose container is live (a container of that id
//! exists in the state root that wrote it). Other records (`exprun run`, bundles
//! outside a pod) are not in the index and are never removed by it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::fsutil::{self, Lock};
use crate::node::Retention;

/// The index of pod records, in `runs/`.
pub const INDEX: &str = "pods.index";
const LOCK: &str = "pods.index.lock";

/// One pod record in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The run id (`runs/<id>/record.json`).
    pub id: String,
    /// When the record was written (seconds since the epoch).
    pub written: u64,
    /// The size of the record's directory contents in bytes.
    pub bytes: u64,
    /// The live-containers directory of the state root that ran it.
    pub containers: PathBuf,
}

impl Entry {
    /// The entry for the record of `id` just written into `runs`.
    pub fn for_record(runs: &Path, id: &str, containers: &Path) -> Self {
        let bytes = fs::symlink_metadata(runs.join(id).join("record.json")).map(|m| m.len()).unwrap_or(0);
        Self { id: id.into(), written: unix_now(SystemTime::now()), bytes, containers: containers.into() }
    }
}

fn unix_now(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// Add `entry` (a record just written into `runs`) to the index, then apply
/// the policy. Returns the ids removed.
pub fn add(runs: &Path, entry: &Entry, policy: &Retention, now: SystemTime) -> Result<Vec<String>, Error> {
    let _lock = lock(runs)?;
    let index = runs.join(INDEX);
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&index)
        .and_then(|mut f| f.write_all(&line))
        .map_err(io_at("appending to", &index))?;
    apply(runs, policy, now, false)
}

/// Apply the policy (`exprun gc`), and forget the entries whose record is gone
/// (removed with `exprun runs rm`). Returns the ids removed; nothing when
/// `runs` has no index.
pub fn prune(runs: &Path, policy: &Retention, now: SystemTime) -> Result<Vec<String>, Error> {
    if !runs.join(INDEX).exists() {
        return Ok(Vec::new());
    }
    let _lock = lock(runs)?;
    apply(runs, policy, now, true)
}

fn lock(runs: &Path) -> Result<Lock, Error> {
    let path = runs.join(LOCK);
    Lock::acquire(&path, true).map_err(io_at("locking", &path))
}

/// The entries of the index, oldest first, one per id; lines that do not
/// parse are dropped.
pub fn read_index(runs: &Path) -> Result<Vec<Entry>, Error> {
    let index = runs.join(INDEX);
    let text = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&index) {
        Ok(f) => io::read_to_string(f).map_err(io_at("reading", &index))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_at("opening", &index)(e)),
    };
    let mut entries: Vec<Entry> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    // A record written again under the same id (a container id used again)
    // replaced the earlier one: only the last entry stands for it.
    let mut seen = std::collections::HashSet::new();
    entries.reverse();
    entries.retain(|e| seen.insert(e.id.clone()));
    entries.reverse();
    entries.sort_by_key(|e| e.written);
    Ok(entries)
}

/// With the lock held: remove what the policy says, rewrite the index when it
/// changed.
fn apply(runs: &Path, policy: &Retention, now: SystemTime, forget_gone: bool) -> Result<Vec<String>, Error> {
    let entries = read_index(runs)?;
    let total = entries.len();
    let mut count = total as u64;
    let mut size: u64 = entries.iter().map(|e| e.bytes).sum();
    let oldest_kept = policy.max_age.map(|a| unix_now(now).saturating_sub(a.as_secs()));
    let mut kept = Vec::with_capacity(entries.len());
    let mut removed = Vec::new();
    for e in entries {
        let over = policy.max_count.is_some_and(|m| count > m)
            || policy.max_size.is_some_and(|m| size > m)
            || oldest_kept.is_some_and(|t| e.written < t);
        let gone = forget_gone && !runs.join(&e.id).join("record.json").exists();
        if gone || (over && !live(&e) && remove(runs, &e.id)) {
            count -= 1;
            size = size.saturating_sub(e.bytes);
            if !gone {
                removed.push(e.id);
            }
            continue;
        }
        kept.push(e);
    }
    if !removed.is_empty() {
        super::index::collect(runs)?;
    }
    if kept.len() != total {
        let mut text = Vec::new();
        for e in &kept {
            text.extend(serde_json::to_vec(e).unwrap_or_default());
            text.push(b'\n');
        }
        let index = runs.join(INDEX);
        fsutil::write_atomic(&index, &text, false).map_err(io_at("rewriting", &index))?;
    }
    Ok(removed)
}

/// Whether the container that wrote the record (or one with its id) exists.
fn live(e: &Entry) -> bool {
    fs::symlink_metadata(e.containers.join(&e.id)).is_ok()
}

/// Remove `runs/<id>` if it is a directory (a symlink put in its place is not
/// followed, and is left alone). Whether the record is gone.
fn remove(runs: &Path, id: &str) -> bool {
    if crate::spec::bundle::check_id(id).is_err() || id == "by-name" {
        return false;
    }
    let dir = runs.join(id);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => match fsutil::remove_tree(&dir) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("exprun: warning: retention: removing {}: {e}", dir.display());
                false
            }
        },
        Ok(_) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const NONE: Retention = Retention { max_age: None, max_count: None, max_size: None };

    fn record(runs: &Path, id: &str, bytes: usize, written: u64, containers: &Path) {
        fs::create_dir_all(runs.join(id)).unwrap();
        fs::write(runs.join(id).join("record.json"), vec![b' '; bytes]).unwrap();
        let mut e = Entry::for_record(runs, id, containers);
        e.written = written;
        add(runs, &e, &NONE, UNIX_EPOCH).unwrap();
    }

    fn ids(runs: &Path) -> Vec<String> {
        read_index(runs).unwrap().into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn oldest_go_first_by_count_size_and_age_and_a_live_one_stays() {
        let t = tempfile::tempdir().unwrap();
        let (runs, containers) = (t.path().join("runs"), t.path().join("containers"));
        fs::create_dir_all(containers.join("a")).unwrap();
        for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            record(&runs, id, 100, 1000 + i as u64, &containers);
        }
        assert_eq!(ids(&runs), ["a", "b", "c", "d", "e"]);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let count = Retention { max_count: Some(3), ..NONE };
        assert_eq!(apply_now(&runs, &count, at(2000)), ["b", "c"], "a is live");
        assert_eq!(ids(&runs), ["a", "d", "e"]);
        assert!(!runs.join("b").exists() && runs.join("a/record.json").exists());
        let size = Retention { max_size: Some(250), ..NONE };
        assert_eq!(apply_now(&runs, &size, at(2000)), ["d"]);
        let age = Retention { max_age: Some(Duration::from_secs(10)), ..NONE };
        assert!(apply_now(&runs, &age, at(1010)).is_empty());
        assert_eq!(apply_now(&runs, &age, at(1015)), ["e"]);
        assert_eq!(ids(&runs), ["a"]);
    }

    fn apply_now(runs: &Path, p: &Retention, now: SystemTime) -> Vec<String> {
        prune(runs, p, now).unwrap()
    }

    #[test]
    fn a_symlink_in_a_records_place_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (runs, outside) = (t.path().join("runs"), t.path().join("outside"));
        record(&runs, "x", 10, 1, &t.path().join("containers"));
        fs::create_dir_all(outside.join("keep")).unwrap();
        fsutil::remove_tree(&runs.join("x")).unwrap();
        std::os::unix::fs::symlink(&outside, runs.join("x")).unwrap();
        let count = Retention { max_count: Some(0), ..NONE };
        assert!(add(&runs, &Entry::for_record(&runs, "x", Path::new("/nonexistent")), &count, UNIX_EPOCH)
            .unwrap()
            .is_empty());
        assert!(outside.join("keep").is_dir());
    }

    #[test]
    fn gc_forgets_records_removed_by_hand() {
        let t = tempfile::tempdir().unwrap();
        let runs = t.path().join("runs");
        record(&runs, "x", 10, 1, &t.path().join("containers"));
        record(&runs, "y", 10, 2, &t.path().join("containers"));
        fsutil::remove_tree(&runs.join("x")).unwrap();
        assert!(prune(&runs, &NONE, UNIX_EPOCH).unwrap().is_empty());
        assert_eq!(ids(&runs), ["y"]);
        record(&runs, "y", 10, 3, &t.path().join("containers"));
        assert_eq!(ids(&runs), ["y"], "a record written again under its id is one entry");
    }
}
