//! The immutable, content-addressed image store.
//!
//! # Layout (under the directory given to [`ImageStore::open`])
//!
//! ```text
//! lock                    flock: shared while a run resolves, exclusive for publish/rm/gc
//! blobs/sha256/<hex>      every blob, verified before it lands here, never modified
//! layers/<diffid-hex>/    each layer unpacked once, in overlayfs format
//! refs.json               which manifests are images, and their names
//! tmp/<random>/           in-progress work, each with its own flock'd `lock` file
//! ```
//!
//! Everything is written under `tmp/` and renamed into place, so an interrupted
//! import never leaves a half-made blob or layer that a later run could use.
//!
//! # What this module must never do
//!
//! - Change stored content: a blob or a layer directory, once renamed into place,
//!   is only ever read or (by gc, when nothing refers to it) deleted.
//! - Know about containers: the layers that live containers use are passed in to
//!   [`ImageStore::gc`] by the caller.
//!
//! Submodules: [`reference`] (parsing `name:tag`, digests, prefixes), `store`
//! (paths, tmp dirs, refs.json, publishing), `manifest` (OCI/docker JSON),
//! `import` and `archive` (the three source formats), `unpack` (layer tar → overlay
//! directory), `stream` (compression sniffing, tar paths), `gc` (rm and gc).
//! See docs/images.md for the formats, the checks and the error messages.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

mod archive;
pub(crate) mod fetch;
#[doc(hidden)]
pub mod fuzz;
mod gc;
mod import;
#[cfg(test)]
mod lifecycle_tests;
pub(crate) mod manifest;
pub mod overlay;
pub mod reference;
mod store;
mod stream;
#[cfg(test)]
mod testutil;
mod unpack;

pub use fetch::{Fetch, Fetched, PartialBlob};
pub use gc::{GcReport, RemoveReport};
pub(crate) use store::TmpDir;
pub use unpack::{Budget, Limits, MAX_IMAGE_BYTES, MAX_LAYER_BYTES, MAX_LAYER_ENTRIES};

/// Image store errors. Every message names the file, blob or entry concerned and
/// the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create directory", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A JSON document (index, manifest, config, refs.json) does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// The document, e.g. `manifest sha256:… in /path/to/layout`.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The source given to import is not an image in a format we know.
    #[error("{}: not an image: {why}", path.display())]
    NotAnImage {
        /// The source.
        path: PathBuf,
        /// Why, and what was expected.
        why: String,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, found {found}")]
    DigestMismatch {
        /// The blob, e.g. `blob sha256:… in /path/to/layout`.
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        found: Digest,
    },
    /// A blob's length differs from the size its descriptor declares.
    #[error("{what}: size mismatch: the descriptor says {declared} bytes, the blob has {found}")]
    SizeMismatch {
        /// The blob.
        what: String,
        /// The size in the descriptor.
        declared: u64,
        /// The actual size (or a lower bound, when the blob is longer).
        found: String,
    },
    /// A blob referred to by the image is not in the source.
    #[error("{what}: not found; the image is incomplete")]
    BlobMissing {
        /// The blob.
        what: String,
    },
    /// Content that parses but is not acceptable (media type, platform, layout).
    #[error("{what}: {why}")]
    Invalid {
        /// The document or blob.
        what: String,
        /// Why it is refused, and what to do.
        why: String,
    },
    /// A layer tar entry is refused or cannot be created.
    #[error("layer {layer} entry {entry:?}: {why}")]
    LayerEntry {
        /// The layer blob's digest.
        layer: Digest,
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it is refused, or the failing operation and its error.
        why: String,
    },
    /// A layer as a whole is refused.
    #[error("layer {layer}: {why}")]
    Layer {
        /// The layer blob's digest.
        layer: Digest,
        /// Why.
        why: String,
    },
    /// An image reference or name does not parse.
    #[error("invalid image reference {reference:?}: {why}")]
    InvalidReference {
        /// As the user typed it.
        reference: String,
        /// Why.
        why: String,
    },
    /// No stored image matches a reference.
    #[error("no image matches {reference:?}; see exprun image ls")]
    NotFound {
        /// As the user typed it.
        reference: String,
    },
    /// A digest prefix matches more than one image.
    #[error("{reference:?} matches {count} images; give more digest characters")]
    Ambiguous {
        /// As the user typed it.
        reference: String,
        /// How many images match.
        count: usize,
    },
    /// The store itself is inconsistent, or was changed under us.
    #[error("image store {}: {why}", path.display())]
    Store {
        /// The store file or directory concerned.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io { op, path: path.to_path_buf(), source }
    }
}

/// Image store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether import draws a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar (bytes processed) on stderr, only if stdout is a terminal.
    Auto,
    /// Never.
    Hidden,
}

/// Where a pulled image came from: kept in refs.json and in the record of every
/// run that uses the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The reference pulled, fully qualified: `docker.io/library/python:3.12`.
    pub reference: String,
    /// The digest the reference resolved to on the registry: the index's when
    /// it served an index, else the image manifest's.
    pub resolved_digest: Digest,
    /// The platform picked from the index, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Where it was fetched from, when registries.conf sent the pull
    /// elsewhere (a mirror, another location): `registry/repository`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_from: Option<String>,
}

/// One row of `exprun image ls`: one (name, image) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// `name:tag`, or `None` for an untagged image.
    pub name: Option<String>,
    /// The image's identity.
    pub manifest_digest: Digest,
    /// The config blob's digest.
    pub config_digest: Digest,
    /// Sum of the manifest, config and layer blob sizes.
    pub size: u64,
    /// The config's `created`, as written there.
    pub created: Option<String>,
    /// Number of layers.
    pub layers: usize,
}

/// An image resolved from a reference: everything a run needs to build its rootfs
/// and spec, by digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The reference as the user typed it.
    pub reference: String,
    /// The `name:tag` it matched, if it matched by name.
    pub name: Option<String>,
    /// The image's identity.
    pub manifest_digest: Digest,
    /// The config blob's digest.
    pub config_digest: Digest,
    /// The parsed config blob.
    pub config: oci_spec::image::ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// `os/architecture[/variant]` from the config, e.g. `linux/amd64`.
    pub platform: String,
    /// Where it was pulled from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// The (possibly compressed) blob's digest.
    pub digest: Digest,
    /// The digest of the uncompressed tar; names the unpacked directory.
    pub diff_id: Digest,
    /// The blob's media type, as in the manifest.
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// What `exprun image inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    /// The image's identity.
    pub manifest_digest: Digest,
    /// The config blob's digest.
    pub config_digest: Digest,
    /// Every `name:tag` of the image.
    pub names: Vec<String>,
    /// When it was imported (RFC 3339).
    pub imported: String,
    /// The path it was imported from, or the reference it was pulled from.
    pub source: String,
    /// Where it was pulled from, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The config's `created`.
    pub created: Option<String>,
    /// The config's `architecture`.
    pub architecture: String,
    /// The config's `os`.
    pub os: String,
    /// Sum of the blob sizes.
    pub size: u64,
    /// The execution defaults from the config.
    pub config: ExecDefaults,
    /// The layers, bottom first.
    pub layers: Vec<LayerInfo>,
}

/// The execution defaults of an image config, in the config's own spelling.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecDefaults {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env`.
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Labels`, sorted.
    pub labels: Option<BTreeMap<String, String>>,
}

/// The image store. Cheap to open; holds no lock by itself.
#[derive(Debug, Clone)]
pub struct ImageStore {
    store: store::Store,
}

impl ImageStore {
    /// Open the store in `dir`, creating its directories if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self { store: store::Store::open(dir)? })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.store.root()
    }

    /// Take the store lock shared: a run holds it while it resolves its image and
    /// writes its plan, so that no rm/gc removes the image in between.
    pub fn lock_shared(&self) -> Result<crate::fsutil::Lock> {
        self.store.lock(false)
    }

    /// Where the layer with this diff_id is (or would be) unpacked.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.store.layer_path(diff_id)
    }

    /// A stored JSON blob (manifest, config), its digest checked again.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        self.store.read_blob(d)
    }

    /// A scratch directory in the store's tmp area, removed when dropped (and
    /// by the next import or gc if exprun dies first).
    pub(crate) fn scratch(&self) -> Result<TmpDir> {
        self.store.new_tmp()
    }

    /// The blob with digest `d` (it may be missing).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.store.blob_path(d)
    }

    /// The directory holding all unpacked layers.
    pub fn layers_root(&self) -> PathBuf {
        self.store.layers_dir()
    }

    /// Every (name, image) pair, sorted by name; untagged images (name `None`)
    /// come last, sorted by digest.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let _lock = self.store.lock(false)?;
        let refs = self.store.load_refs()?;
        let mut rows = Vec::new();
        for (digest, entry) in &refs.images {
            let image = self.store.load_image(digest)?;
            let summary = image.summary(None);
            if entry.names.is_empty() {
                rows.push(summary);
            } else {
                for name in &entry.names {
                    rows.push(ImageSummary { name: Some(name.clone()), ..summary.clone() });
                }
            }
        }
        rows.sort_by(|a, b| {
            (a.name.is_none(), &a.name, &a.manifest_digest).cmp(&(
                b.name.is_none(),
                &b.name,
                &b.manifest_digest,
            ))
        });
        Ok(rows)
    }

    /// Resolve a reference (`name`, `name:tag`, `name@sha256:…`, `sha256:…`, or a
    /// digest prefix of at least 4 hex characters) to a stored image, and check that
    /// every layer is unpacked.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage> {
        let _lock = self.store.lock(false)?;
        let refs = self.store.load_refs()?;
        let (digest, name) = reference::find(&refs, reference)?;
        let origin = refs.images.get(&digest).and_then(|e| e.origin.clone());
        let image = self.store.load_image(&digest)?;
        for layer in &image.layers {
            let dir = self.store.layer_path(&layer.diff_id);
            if !dir.is_dir() {
                return Err(Error::Store {
                    path: dir,
                    why: format!(
                        "layer {} of image {} is not unpacked; re-import the image with \
                         exprun image import",
                        layer.diff_id, digest
                    ),
                });
            }
        }
        Ok(ResolvedImage {
            reference: reference.to_string(),
            name,
            platform: image.platform(),
            manifest_digest: digest,
            config_digest: image.config_digest,
            layers: image.layers,
            config: image.config,
            origin,
        })
    }

    /// Everything `exprun image inspect` shows about one image.
    pub fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        let _lock = self.store.lock(false)?;
        let refs = self.store.load_refs()?;
        let (digest, _) = reference::find(&refs, reference)?;
        let entry = refs.images.get(&digest).cloned().unwrap_or_default();
        let image = self.store.load_image(&digest)?;
        let size = image.size();
        let exec = image.config.config().as_ref().map(|c| ExecDefaults {
            entrypoint: c.entrypoint().clone(),
            cmd: c.cmd().clone(),
            env: c.env().clone(),
            working_dir: c.working_dir().clone(),
            user: c.user().clone(),
            labels: c.labels().as_ref().map(|l| l.clone().into_iter().collect()),
        });
        Ok(ImageDetails {
            manifest_digest: digest,
            config_digest: image.config_digest.clone(),
            names: entry.names,
            imported: entry.imported,
            source: entry.source,
            origin: entry.origin,
            created: image.config.created().clone(),
            architecture: image.config.architecture().to_string(),
            os: image.config.os().to_string(),
            size,
            config: exec.unwrap_or_default(),
            layers: image.layers,
        })
    }

    /// Import every image in `source` (an OCI image layout directory, an
    /// oci-archive or a docker-archive tar). `name` (`NAME[:TAG]`) overrides the
    /// names found in the source; it is refused when the source holds several
    /// images. Re-importing an image already in the store changes nothing.
    pub fn import(&self, source: &Path, name: Option<&str>, progress: Progress) -> Result<Vec<ImageSummary>> {
        import::import(&self.store, source, name, progress, Limits::default())
    }

    /// [`ImageStore::import`] with other limits on what one layer may expand to.
    pub fn import_with_limits(
        &self,
        source: &Path,
        name: Option<&str>,
        progress: Progress,
        limits: Limits,
    ) -> Result<Vec<ImageSummary>> {
        import::import(&self.store, source, name, progress, limits)
    }

    /// Remove a reference: a `name:tag` (or `name`) is untagged, and the image
    /// goes when its last name does; a digest or prefix removes the image and all
    /// its names. Blobs and layers stay until [`ImageStore::gc`].
    pub fn remove(&self, reference: &str) -> Result<RemoveReport> {
        gc::remove(&self.store, reference)
    }

    /// Delete the blobs and layer directories that no image refers to, except the
    /// layers in `layers_in_use` (diff_ids used by live containers), and stale
    /// tmp directories.
    pub fn gc(&self, layers_in_use: &BTreeSet<Digest>) -> Result<GcReport> {
        gc::gc(&self.store, layers_in_use)
    }
}
