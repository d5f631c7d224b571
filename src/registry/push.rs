//! `exprun push`: an image of the store to a registry.
//!
//! Blobs first (layers and the config, a few at once), each skipped when the
//! repository has it; the manifest last, so the tag never points at an
//! incomplete image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::client::{Client, ClientOptions, Uploaded};
use super::conf::location;
use super::transfer::{in_parallel, Bars, Transfer};
use super::Error;
use crate::digest::Digest;
use crate::image::reference::RemoteRef;
use crate::image::{ImageStore, ResolvedImage};

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest digest, as the registry has it.
    pub digest: Digest,
    /// What happened to the blobs.
    pub blobs: BlobCounts,
}

/// How the blobs of a push got there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobCounts {
    /// Sent.
    pub uploaded: usize,
    /// Mounted by the registry from another of its repositories.
    pub mounted: usize,
    /// Already in the repository.
    pub skipped: usize,
}

impl std::fmt::Display for BlobCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} blobs uploaded, ", self.uploaded)?;
        if self.mounted > 0 {
            write!(f, "{} mounted from other repositories, ", self.mounted)?;
        }
        write!(f, "{} already there", self.skipped)
    }
}

/// Push the stored image `image` (any reference the store resolves) to `r`.
pub fn push_image(
    store: &ImageStore,
    image: &str,
    r: &RemoteRef,
    o: &ClientOptions,
    t: &Transfer,
) -> Result<Pushed, Error> {
    let resolved = store.resolve(image)?;
    let manifest = store.read_blob(&resolved.manifest_digest)?;
    let (target, o) = location(r, o)?;
    let r = &target;
    let mounts = mount_sources(store, r)?;
    let client = Client::connect_with(r, &o, true, &repositories(&mounts))?;
    let blobs = push_blobs(&client, &image_blobs(store, &resolved), &mounts, t)?;
    let media_type = media_type_of(&manifest);
    let digest =
        client.put_manifest(&tag_or_digest(r, &resolved.manifest_digest)?, &media_type, &manifest)?;
    Ok(Pushed { digest, blobs })
}

/// For each blob of an image in the store that was pulled from another
/// repository of `r`'s registry, that repository: the registry can mount the
/// blob from there instead of receiving it again (a built image pushed next
/// to its builder, an image copied between projects).
pub(crate) fn mount_sources(store: &ImageStore, r: &RemoteRef) -> Result<BTreeMap<Digest, String>, Error> {
    let mut sources = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for row in store.list()? {
        if !seen.insert(row.manifest_digest.clone()) {
            continue;
        }
        let image = store.resolve(&row.manifest_digest.to_string())?;
        // Where its blobs really are: a registries.conf mirror or location, if
        // one served it, else the reference pulled.
        let from = image
            .origin
            .as_ref()
            .and_then(|o| RemoteRef::parse(o.fetched_from.as_deref().unwrap_or(&o.reference)).ok());
        let Some(from) = from else { continue };
        if from.registry != r.registry || from.repository == r.repository {
            continue;
        }
        for (d, _) in image_blobs(store, &image) {
            sources.entry(d).or_insert_with(|| from.repository.clone());
        }
    }
    Ok(sources)
}

/// The repositories named in `mounts`, once each.
pub(crate) fn repositories(mounts: &BTreeMap<Digest, String>) -> Vec<String> {
    mounts.values().cloned().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Upload the blobs (digest, file) the repository lacks, `t.jobs` at a time,
/// asking the registry to mount those in `mounts` from the repository named
/// there first.
pub(crate) fn push_blobs(
    client: &Client,
    blobs: &[(Digest, PathBuf)],
    mounts: &BTreeMap<Digest, String>,
    t: &Transfer,
) -> Result<BlobCounts, Error> {
    let mut seen = BTreeSet::new();
    let blobs: Vec<&(Digest, PathBuf)> = blobs.iter().filter(|(d, _)| seen.insert(d)).collect();
    let bars = Bars::new(t.progress);
    let outcomes = in_parallel(&blobs, t.jobs, |(d, path)| {
        if client.has_blob(d)? {
            return Ok(None);
        }
        let size =
            std::fs::metadata(path).map_err(|e| Error::Io { op: "read", path: path.clone(), source: e })?;
        let bar = bars.add(d, size.len());
        let sent = |n: u64| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        };
        let how = client.upload(d, path, mounts.get(d).map(String::as_str), &sent)?;
        if let Some(b) = &bar {
            b.finish();
        }
        Ok(Some(how))
    })?;
    let count = |u: Option<Uploaded>| outcomes.iter().filter(|o| **o == u).count();
    Ok(BlobCounts {
        uploaded: count(Some(Uploaded::Sent)),
        mounted: count(Some(Uploaded::Mounted)),
        skipped: count(None),
    })
}

/// An image's blobs in the store: its layers, then its config.
pub(crate) fn image_blobs(store: &ImageStore, image: &ResolvedImage) -> Vec<(Digest, PathBuf)> {
    image
        .layers
        .iter()
        .map(|l| &l.digest)
        .chain([&image.config_digest])
        .map(|d| (d.clone(), store.blob_path(d)))
        .collect()
}

/// Where to put the manifest: the tag of `r`, else its digest (which must be
/// the manifest's), else `latest`.
pub(crate) fn tag_or_digest(r: &RemoteRef, manifest: &Digest) -> Result<String, Error> {
    match (&r.tag, &r.digest) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(d)) if d == manifest => Ok(d.to_string()),
        (None, Some(d)) => Err(Error::Reference {
            reference: r.to_string(),
            why: format!("the image's manifest is {manifest}, not {d}; push to a tag instead"),
        }),
        (None, None) => Ok(crate::image::reference::DEFAULT_TAG.into()),
    }
}

/// A manifest's own media type (the store keeps OCI and docker manifests).
pub(crate) fn media_type_of(manifest: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into())
}
