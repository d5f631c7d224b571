//! `exprun push`: an image of the store to a registry.
//!
//! Blobs first (layers and the config, a few at once), each skipped when the
//! repository has it; the manifest last, so the tag never points at an
//! incomplete image.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::client::{Client, ClientOptions};
use super::reference::RemoteRef;
use super::transfer::{in_parallel, Bars, Transfer};
use super::Error;
use crate::digest::Digest;
use crate::image::{ImageStore, ResolvedImage};

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest digest, as the registry has it.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
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
    let client = Client::connect(r, o, true)?;
    let (uploaded, skipped) = push_blobs(&client, &image_blobs(store, &resolved), t)?;
    let media_type = media_type_of(&manifest);
    let digest =
        client.put_manifest(&tag_or_digest(r, &resolved.manifest_digest)?, &media_type, &manifest)?;
    Ok(Pushed { digest, uploaded, skipped })
}

/// Upload the blobs (digest, file) the repository lacks, `t.jobs` at a time;
/// returns (uploaded, skipped).
pub(crate) fn push_blobs(
    client: &Client,
    blobs: &[(Digest, PathBuf)],
    t: &Transfer,
) -> Result<(usize, usize), Error> {
    let mut seen = BTreeSet::new();
    let blobs: Vec<&(Digest, PathBuf)> = blobs.iter().filter(|(d, _)| seen.insert(d)).collect();
    let bars = Bars::new(t.progress);
    let uploaded = in_parallel(&blobs, t.jobs, |(d, path)| {
        if client.has_blob(d)? {
            return Ok(false);
        }
        let size =
            std::fs::metadata(path).map_err(|e| Error::Io { op: "read", path: path.clone(), source: e })?;
        let bar = bars.add(d, size.len());
        let sent = |n: u64| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        };
        client.upload(d, path, &sent)?;
        if let Some(b) = &bar {
            b.finish();
        }
        Ok(true)
    })?;
    let n = uploaded.iter().filter(|u| **u).count();
    Ok((n, blobs.len() - n))
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
