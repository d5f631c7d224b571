//! Adding an image whose blobs come from elsewhere (a registry), one blob at a
//! time, with the same checks and the same all-or-nothing publishing as import.
//!
//! ```text
//! begin_fetch()            shared store lock (no gc meanwhile), a tmp dir
//!   has_blob(d)?           skip what the store already holds
//!   partial(d)             partial/<hex>, flock'd: written, resumed, verified by the caller
//!   take(d, partial)       the verified blob hard-linked into our tmp dir
//!   unpack(d, diff_id)     (optional) its layer unpacked into our tmp dir now
//!   add_blob(d, path)      ... to be renamed into blobs/ from there
//!   add_unpacked(diff_id)  ... and into layers/
//! finish(manifest, config) plan (platform, diff_ids), unpack layers, rename in,
//!                          remove the partials, refs.json under the exclusive lock
//! ```
//!
//! Pulls of one image into one store may run at once (CI jobs, pods on a node).
//! The partial file's lock makes the second wait while the first downloads a
//! blob; then it finds the blob either complete in partial/ (and verifies and
//! links it too) or, once the first has finished, in the store. The partial
//! file is removed only after its blob is in the store, under its lock.
//!
//! A partial blob outlives a failed pull on purpose, so that the next pull goes
//! on from where this one stopped; `exprun image gc` removes the ones nobody is
//! writing.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::import::{self, Layout, Meter, Plan};
use super::manifest::{self, Platform};
use super::store::{Store, TmpDir};
use super::unpack::{self, Budget};
use super::{Error, ImageStore, ImageSummary, Origin, Progress, Result};
use crate::digest::Digest;
use crate::fsutil::Lock;

/// A fetch in progress. See the module documentation.
pub struct Fetch<'s> {
    store: &'s Store,
    _shared: Lock,
    tmp: TmpDir,
    blobs: BTreeMap<Digest, PathBuf>,
    /// Layers unpacked while others were downloading, by diff_id.
    unpacked: BTreeMap<Digest, PathBuf>,
}

/// A blob being downloaded: `path` may already hold a prefix of it from an
/// earlier attempt. Nobody else writes it while this value lives.
#[derive(Debug)]
pub struct PartialBlob {
    /// The file to write (append to) and verify.
    pub path: PathBuf,
    _lock: Lock,
}

/// What [`Fetch::finish`] stores.
pub struct Fetched {
    /// The image manifest's digest (verified by the caller).
    pub manifest_digest: Digest,
    /// Its bytes.
    pub manifest: Vec<u8>,
    /// The config blob's bytes (verified by the caller against the manifest).
    pub config: Vec<u8>,
    /// The name to give the image (`name:tag`), if any.
    pub name: Option<String>,
    /// Where it came from, kept in refs.json and in every run record.
    pub origin: Origin,
    /// The platform asked for, when not the host's.
    pub platform: Option<String>,
}

impl ImageStore {
    /// Start adding an image blob by blob; see [`Fetch`].
    pub fn begin_fetch(&self) -> Result<Fetch<'_>> {
        let shared = self.store.lock(false)?;
        self.store.clean_stale_tmp()?;
        let tmp = self.store.new_tmp()?;
        Ok(Fetch {
            store: &self.store,
            _shared: shared,
            tmp,
            blobs: BTreeMap::new(),
            unpacked: BTreeMap::new(),
        })
    }
}

impl Fetch<'_> {
    /// Whether the store already holds blob `d` (of `size` bytes; a stored blob
    /// of another size is a lie of the manifest, refused).
    pub fn has_blob(&self, d: &Digest, size: u64) -> Result<bool> {
        match self.store.blob_size(d)? {
            None => Ok(false),
            Some(have) if have == size => Ok(true),
            Some(have) => Err(Error::SizeMismatch {
                what: format!("blob {d}"),
                declared: size,
                found: have.to_string(),
            }),
        }
    }

    /// The partial file for blob `d`, locked for the caller (waiting while
    /// another exprun downloads the same blob).
    pub fn partial(&self, d: &Digest) -> Result<PartialBlob> {
        let path = self.store.partial_dir().join(d.hex());
        let lock_path = self.store.partial_dir().join(format!("{}.lock", d.hex()));
        let lock = Lock::acquire(&lock_path, true).map_err(|e| Error::io("lock", &lock_path, e))?;
        Ok(PartialBlob { path, _lock: lock })
    }

    /// Take blob `d`, downloaded into `partial` and verified (digest and size)
    /// and fsync'd, into this fetch: a hard link in our tmp dir, so that a
    /// concurrent pull of the same blob can take the partial file too. Returns
    /// the link, for [`Fetch::add_blob`].
    pub fn take(&self, d: &Digest, partial: PartialBlob) -> Result<PathBuf> {
        let link = self.tmp.path().join(format!("blob-{}", d.hex()));
        fs::hard_link(&partial.path, &link)
            .map_err(|e| Error::io("link into the store's tmp", &partial.path, e))?;
        Ok(link)
    }

    /// What this fetch's layers may expand to together (one image's).
    pub fn budget(&self, limits: super::Limits) -> Budget {
        Budget::new(limits, Some(self.store.root()))
    }

    /// Unpack layer blob `layer`, taken into this fetch at `blob`, now, while
    /// other layers are still downloading: into our tmp dir, its content
    /// checked against `diff_id`. `None` when the store has that layer.
    /// Returns the directory, for [`Fetch::add_unpacked`].
    pub fn unpack(
        &self,
        layer: &Digest,
        diff_id: &Digest,
        blob: &Path,
        budget: &Budget,
    ) -> Result<Option<PathBuf>> {
        if self.store.layer_path(diff_id).is_dir() {
            return Ok(None);
        }
        let dest = self.tmp.path().join(format!("layer-{}", diff_id.hex()));
        let f = fs::File::open(blob).map_err(|e| Error::io("open", blob, e))?;
        unpack::unpack_layer(io::BufReader::new(f), layer, diff_id, &dest, budget).inspect_err(|_| {
            let _ = super::store::remove_all(&dest);
        })?;
        Ok(Some(dest))
    }

    /// A layer [`Fetch::unpack`] unpacked into `dir`.
    pub fn add_unpacked(&mut self, diff_id: Digest, dir: PathBuf) {
        self.unpacked.insert(diff_id, dir);
    }

    /// A blob the caller downloaded and verified (digest and size), fsync'd.
    pub fn add_blob(&mut self, d: Digest, path: &Path) {
        self.blobs.insert(d, path.to_path_buf());
    }

    /// Check the image against its config, unpack its new layers, rename
    /// everything into the store, and name it. The origin's reference names
    /// the source in messages and in refs.json.
    pub fn finish(mut self, f: Fetched, budget: &Budget, progress: Progress) -> Result<ImageSummary> {
        let from = f.origin.reference.clone();
        let what = format!("manifest {} of {from}", f.manifest_digest);
        let m = manifest::parse_manifest(&f.manifest, &what)?;
        let wanted = f.platform.as_deref().map(|p| parse_platform(p, &what)).transpose()?;
        let paths = m.layers.iter().map(|l| import::blob_path(&l.digest)).collect();
        let plan = Plan::build(f.manifest_digest, f.manifest, m, f.config, paths, &what, wanted.as_ref())?
            .named(f.name.into_iter().collect());
        let layout = Layout::Fetched(PathBuf::from(&from), std::mem::take(&mut self.blobs));
        let meter = Meter::new(progress);
        import::ingest(self.store, &mut self.tmp, &layout, &plan, &meter, budget, &self.unpacked)?;
        meter.finish();
        // The blobs are in the store now: their partial files are not needed.
        // Under the partial's lock, so that a pull verifying it is not cut short.
        if let Layout::Fetched(_, blobs) = &layout {
            for d in blobs.keys() {
                if let Ok(partial) = self.partial(d) {
                    let _ = fs::remove_file(&partial.path);
                }
            }
        }
        let Fetch { store, _shared, tmp, .. } = self;
        drop(tmp);
        drop(_shared);
        import::publish(store, std::slice::from_ref(&plan), &from, Some(&f.origin))?;
        Ok(plan.summaries().remove(0))
    }
}

/// `os/arch[/variant]`.
pub(crate) fn parse_platform(s: &str, what: &str) -> Result<Platform> {
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }),
        _ => Err(Error::Invalid {
            what: what.to_string(),
            why: format!("platform {s:?} is not OS/ARCH[/VARIANT], e.g. linux/arm64/v8"),
        }),
    }
}
