//! `exprun push`: an image of the store to a registry.
//!
//! Blobs first (layers, then the config), each skipped when the repository has
//! it; the manifest last, so the tag never points at an incomplete image.

use super::client::{Client, ClientOptions};
use super::reference::RemoteRef;
use super::Error;
use crate::digest::Digest;
use crate::image::ImageStore;

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
) -> Result<Pushed, Error> {
    let resolved = store.resolve(image)?;
    let manifest = store.read_blob(&resolved.manifest_digest)?;
    let client = Client::connect(r, o, true)?;
    let mut blobs: Vec<&Digest> = resolved.layers.iter().map(|l| &l.digest).collect();
    blobs.push(&resolved.config_digest);
    let (uploaded, skipped) = push_blobs(&client, store, &blobs)?;
    let media_type = media_type_of(&manifest);
    let digest =
        client.put_manifest(&tag_or_digest(r, &resolved.manifest_digest)?, &media_type, &manifest)?;
    Ok(Pushed { digest, uploaded, skipped })
}

/// Upload the stored blobs the repository lacks; (uploaded, skipped).
pub(crate) fn push_blobs(
    client: &Client,
    store: &ImageStore,
    blobs: &[&Digest],
) -> Result<(usize, usize), Error> {
    let (mut uploaded, mut skipped) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    for d in blobs {
        if !seen.insert(*d) {
            continue;
        }
        if client.has_blob(d)? {
            skipped += 1;
        } else {
            client.upload(d, &store.blob_path(d))?;
            uploaded += 1;
        }
    }
    Ok((uploaded, skipped))
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
