//! The state root and what lives in it.
//!
//! ```text
//! <root>/store/                 the image store (see crate::image)
//! <root>/containers/<id>/       one live run: plan.json; with --keep also upper/ and
//!                               work/ (the writable layer), rootfs/ (mount point)
//! <root>/runs/<id>/record.json  the run record, kept until `exprun runs rm`
//! <root>/runs/by-name/<name>    symlink to <id>, for runs started with --name
//! <root>/runs/pods.index        the pod records here, for their retention (record::retention)
//! <root>/runs/.objects/sha256/  the parts records share, stored once (record::store)
//! <root>/runs/.index            one line per record, for `runs ls` (record::index)
//! <root>/cache/                 the exprun binary's digest
//! <root>/record-key             the key of the records' secret digests (0600; never exported)
//! ```
//!
//! A live run holds an exclusive flock on its `containers/<id>` directory. When exprun dies,
//! the kernel drops the lock; the next exprun (any `run`, or `exprun gc`) finds the
//! directory unlocked, removes the cgroup and the directory, and writes a record
//! with status `lost`. Records of finished runs are never touched by that cleanup.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cgroups::Cgroup;
use crate::fsutil::{self, Lock};
use crate::plan::RunPlan;
use crate::record::{self, RunRecord, Status};

/// State errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A state file or directory could not be made or read.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `--name` is taken.
    #[error("a run named {name:?} already exists (run {id}); choose another --name or remove it with: exprun runs rm {name}")]
    NameTaken {
        /// The name.
        name: String,
        /// The run holding it.
        id: String,
    },
    /// No run matches.
    #[error("no run matches {0:?}; see exprun runs ls")]
    NoSuchRun(String),
    /// More than one run matches a prefix.
    #[error("{given:?} matches {count} runs; give more characters of the run id")]
    Ambiguous {
        /// What was given.
        given: String,
        /// How many match.
        count: usize,
    },
    /// A run is still running.
    #[error("run {0} is still running")]
    Running(String),
    /// A record could not be read or written.
    #[error(transparent)]
    Record(#[from] record::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// A run directory without a plan.json that is younger than this is being set up
/// right now; older ones are debris of a killed exprun.
const SETUP_GRACE: Duration = Duration::from_secs(60);

/// The state root.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    /// Where live runs are, when not under `dir` (a rootless caller's
    /// `$XDG_RUNTIME_DIR/exprun`: memory-backed, private, cleared at logout).
    runtime: Option<PathBuf>,
}

impl Root {
    /// The root at `dir` (created on first use).
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), runtime: None }
    }

    /// The root at `dir`, with live runs under `runtime` instead.
    pub fn with_runtime(dir: &Path, runtime: Option<PathBuf>) -> Self {
        Self { dir: dir.to_path_buf(), runtime }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The image store.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }
    /// Live runs.
    pub fn containers_dir(&self) -> PathBuf {
        self.runtime.as_deref().unwrap_or(&self.dir).join("containers")
    }
    /// Run records.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// `runs/`, made private before anything goes into it: records say what
    /// ran, kept streams hold what it printed, fetched artifacts hold files
    /// of strangers. Created 0700 (with the root) when missing; tightened to
    /// 0700, with a note, when group or others could enter it; refused when
    /// another user owns it.
    pub fn private_runs_dir(&self) -> Result<PathBuf> {
        let runs = self.runs_dir();
        match fsutil::private_dir(&runs) {
            Ok(None) => {}
            Ok(Some(was)) => eprintln!(
                "exprun: note: {} was mode {was:04o}, open to other users; it is now 0700",
                runs.display()
            ),
            Err(e) => return Err(Error::Io { op: "making private", path: runs, source: e }),
        }
        Ok(runs)
    }
    /// Scratch space of running verifications (`exprun verify`).
    pub fn verify_dir(&self) -> PathBuf {
        self.dir.join("verify")
    }
    /// Caches.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }
    fn names_dir(&self) -> PathBuf {
        self.runs_dir().join("by-name")
    }

    /// Reserve `name` for run `id`.
    pub fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        let dir = self.names_dir();
        fsutil::create_private_dir_all(&dir).map_err(io_at("creating", &dir))?;
        let link = dir.join(name);
        for _ in 0..2 {
            match std::os::unix::fs::symlink(id, &link) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_link(&link).map_err(io_at("reading", &link))?;
                    let holder = holder.to_string_lossy().into_owned();
                    let live = self.runs_dir().join(&holder).join("record.json").exists()
                        || self.containers_dir().join(&holder).exists();
                    if live {
                        return Err(Error::NameTaken { name: name.into(), id: holder });
                    }
                    // A name left by a run that never got going: reclaim it.
                    let _ = fs::remove_file(&link);
                }
                Err(e) => return Err(Error::Io { op: "creating", path: link, source: e }),
            }
        }
        Err(Error::NameTaken { name: name.into(), id: "?".into() })
    }

    /// Give a name back (a run that failed before it had a record).
    pub fn release_name(&self, name: &str) {
        let _ = fs::remove_file(self.names_dir().join(name));
    }

    /// Create `containers/<id>`, locked, holding plan.json. Nothing else goes to
    /// disk: init makes the writable layer, the mount point and the small files
    /// (in a private tmpfs unless the layer is kept). On a busy host every inode
    /// created and deleted per run costs; on ext4 without a journal a lot
    /// (research/performance-anchors.md §8).
    pub fn create_container(&self, plan: &RunPlan) -> Result<ContainerDir> {
        let dir = plan.state_dir.clone();
        fsutil::create_private_dir_all(&self.containers_dir())
            .map_err(io_at("creating", &self.containers_dir()))?;
        fs::create_dir(&dir).map_err(io_at("creating the run directory", &dir))?;
        let mut guard = ContainerDir { lock: None, dir: dir.clone() };
        // The lock is blocking: a concurrent `gc` may hold the lock for a moment while it looks
        // at this directory (and leaves it alone: it has no plan.json yet).
        let filled = (|| {
            guard.lock = Some(Lock::acquire_dir(&dir).map_err(io_at("locking", &dir))?);
            let p = dir.join("plan.json");
            fsutil::write_json_compact_atomic(&p, plan, false).map_err(io_at("writing", &p))
        })();
        match filled {
            Ok(()) => Ok(guard),
            Err(e) => {
                let _ = guard.remove(None);
                Err(e)
            }
        }
    }

    /// Clean up after runs whose exprun died: for every unlocked run directory,
    /// remove its cgroup and directory and record it as lost. Returns the ids.
    /// Containers made by `exprun create` (they have a state.json) are left to
    /// `exprun delete`, as with runc.
    pub fn cleanup_stale(&self) -> Vec<String> {
        let mut cleaned = Vec::new();
        let Ok(entries) = fs::read_dir(self.containers_dir()) else { return cleaned };
        for e in entries.flatten() {
            let dir = e.path();
            if dir.join(crate::container::STATE_FILE).exists() {
                continue;
            }
            let Ok(Some(lock)) = Lock::try_dir(&dir) else { continue };
            let plan: Option<RunPlan> =
                fs::read(dir.join("plan.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let Some(plan) = plan else {
                let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
                if age.is_some_and(|a| a > SETUP_GRACE) {
                    let _ = fsutil::remove_tree(&dir);
                }
                continue;
            };
            if let Err(err) = Cgroup::adopt(&plan.cgroup).destroy() {
                eprintln!("exprun: cleaning up run {}: {err}", plan.id);
                continue;
            }
            self.record_lost(&plan);
            let kept = self.runs_dir().join(&plan.id).join("upper");
            let _ = remove_run_dir(&dir, plan.keep.then_some(kept.as_path()));
            drop(lock);
            cleaned.push(plan.id);
        }
        cleaned
    }

    fn record_lost(&self, plan: &RunPlan) {
        let path = self.runs_dir().join(&plan.id).join("record.json");
        if path.exists() {
            return;
        }
        let cgroups = crate::cgroups::CgroupHost::parse("", "");
        let key = match record::Key::open(&self.dir) {
            Ok(key) => key,
            Err(e) => {
                eprintln!("exprun: recording lost run {}: {e}", plan.id);
                return;
            }
        };
        let mut r = RunRecord::new(
            plan,
            SystemTime::now(),
            record::exprun_info(&self.cache_dir()),
            record::host::facts(&cgroups),
            &key,
        );
        if let Err(e) = self.private_runs_dir() {
            eprintln!("exprun: recording lost run {}: {e}", plan.id);
            return;
        }
        r.status = Status::Lost;
        r.exit.message = Some("exprun ended before the run finished (killed or crashed); the container was stopped and cleaned up afterwards".into());
        let _ = r.write(&self.runs_dir());
    }

    /// The ids of all recorded runs.
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.runs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("record.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Resolve a run name, id or hex id prefix to an id.
    pub fn resolve_run(&self, given: &str) -> Result<String> {
        if let Ok(target) = fs::read_link(self.names_dir().join(given)) {
            let id = target.to_string_lossy().into_owned();
            if self.runs_dir().join(&id).join("record.json").exists() {
                return Ok(id);
            }
        }
        // The exact id: a bundle's container id need not be hex (`exprun create ID`).
        if crate::spec::bundle::check_id(given).is_ok()
            && given != "by-name"
            && self.runs_dir().join(given).join("record.json").is_file()
        {
            return Ok(given.into());
        }
        if given.is_empty() || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSuchRun(given.into()));
        }
        // Names first (one readdir), then a stat of the few that match: not of every run.
        let mut matches: Vec<String> = fs::read_dir(self.runs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|id| id.starts_with(given) && self.runs_dir().join(id).join("record.json").is_file())
            .collect();
        matches.sort();
        match matches.len() {
            0 => Err(Error::NoSuchRun(given.into())),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            count => Err(Error::Ambiguous { given: given.into(), count }),
        }
    }

    /// The id of the run whose record was written last.
    pub fn latest_run(&self) -> Result<String> {
        let newest = self
            .run_ids()
            .into_iter()
            .filter_map(|id| {
                let m = fs::metadata(self.runs_dir().join(&id).join("record.json")).ok()?;
                Some((m.modified().ok()?, id))
            })
            .max();
        newest.map(|(_, id)| id).ok_or_else(|| Error::NoSuchRun("--latest".into()))
    }

    /// Read a run's record.
    pub fn read_record(&self, id: &str) -> Result<RunRecord> {
        Ok(RunRecord::read(&self.runs_dir().join(id).join("record.json"))?)
    }

    /// Delete a run's record (and its name). Refuses while the run is live.
    pub fn remove_run(&self, id: &str) -> Result<()> {
        if let Ok(None) = Lock::try_dir(&self.containers_dir().join(id)) {
            return Err(Error::Running(id.into()));
        }
        if let Ok(r) = self.read_record(id) {
            if let Some(name) = r.name {
                let link = self.names_dir().join(&name);
                if fs::read_link(&link).is_ok_and(|t| t == Path::new(id)) {
                    let _ = fs::remove_file(link);
                }
            }
        }
        let dir = self.runs_dir().join(id);
        fsutil::remove_tree(&dir).map_err(io_at("removing", &dir))
    }

    /// The image layers (diff_ids) used by live runs: `image gc` must keep them.
    pub fn layers_in_use(&self) -> std::collections::BTreeSet<crate::digest::Digest> {
        let mut out = std::collections::BTreeSet::new();
        for e in fs::read_dir(self.containers_dir()).into_iter().flatten().flatten() {
            let plan: Option<RunPlan> =
                fs::read(e.path().join("plan.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(p) = plan {
                out.extend(p.rootfs.layers().iter().filter_map(|h| crate::digest::Digest::from_hex(h).ok()));
            }
        }
        out
    }
}

/// A live run's directory; holds the lock until dropped or removed.
pub struct ContainerDir {
    lock: Option<Lock>,
    dir: PathBuf,
}

impl ContainerDir {
    /// Release the lock and leave the directory in place (a created container
    /// outlives the exprun that made it).
    pub fn release(mut self) {
        self.lock.take();
    }

    /// Remove the directory, first moving `upper/` to `keep_upper_at` when given;
    /// then release the lock.
    pub fn remove(mut self, keep_upper_at: Option<&Path>) -> Result<()> {
        let r = remove_run_dir(&self.dir, keep_upper_at);
        self.lock.take();
        r
    }
}

/// Remove a run directory, moving its writable layer to `keep_upper_at` first
/// (a run that failed before init made the layer has none to keep).
fn remove_run_dir(dir: &Path, keep_upper_at: Option<&Path>) -> Result<()> {
    let upper = dir.join("upper");
    if let Some(to) = keep_upper_at.filter(|_| upper.exists()) {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io_at("creating", parent))?;
        }
        fs::rename(&upper, to).map_err(io_at("keeping the writable layer", &upper))?;
    }
    fsutil::remove_tree(dir).map_err(io_at("removing", dir))
}
