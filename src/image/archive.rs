//! Archives: an oci-archive (a tar, maybe gzip or zstd compressed, of an OCI
//! layout) or a docker-archive (`docker save`).
//!
//! The tar is streamed once: each regular file is written into our tmp dir while
//! it is hashed, and nothing is unpacked into a tree. The blobs that an image
//! needs are then renamed from there into the store (same filesystem, no copy).
//! Symlinks and hardlinks between archive members (old `docker save` links equal
//! layers) become aliases. Entries with absolute paths or `..` are refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tar::EntryType;

use super::import::{Meter, Plan};
use super::manifest::{self, MT_LAYER_GZIP, MT_LAYER_TAR, MT_LAYER_ZSTD};
use super::reference;
use super::store::{TmpDir, MAX_JSON_BLOB};
use super::stream::{self, Compression};
use super::unpack::{MAX_LAYER_BYTES, MAX_LAYER_ENTRIES};
use super::{Error, Result};
use crate::digest::{Digest, HashingWriter};

/// A regular file of the archive, now in our tmp dir.
#[derive(Debug)]
pub(crate) struct ExtractedFile {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// The regular files of an archive, by their normalised path in it.
#[derive(Debug)]
pub(crate) struct Extracted {
    pub archive: PathBuf,
    files: Vec<ExtractedFile>,
    by_path: BTreeMap<String, usize>,
}

impl Extracted {
    pub fn has(&self, rel: &str) -> bool {
        self.by_path.contains_key(rel)
    }

    pub fn file(&self, rel: &str) -> Option<&ExtractedFile> {
        self.by_path.get(rel).map(|&i| &self.files[i])
    }

    /// A small file's bytes (at most [`MAX_JSON_BLOB`] + 1), or `None`.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.file(rel) else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        File::open(&f.path)
            .and_then(|h| h.take(MAX_JSON_BLOB + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::io("read", &f.path, e))?;
        Ok(Some(bytes))
    }
}

fn rel_of(comps: &[std::ffi::OsString]) -> String {
    comps.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Resolve a symlink target against the link's directory, staying inside the
/// archive; `None` if it points outside or is absolute.
fn resolve_link(dir: &[std::ffi::OsString], target: &[u8]) -> Option<String> {
    if target.starts_with(b"/") {
        return None;
    }
    let mut stack: Vec<String> = dir.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                stack.pop()?;
            }
            _ => stack.push(String::from_utf8_lossy(c).into_owned()),
        }
    }
    Some(stack.join("/"))
}

/// Stream the archive at `path` into `tmp`.
pub(crate) fn extract(path: &Path, tmp: &mut TmpDir, meter: &Meter) -> Result<Extracted> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    meter.add(len);
    let (_, stream) =
        stream::decompressed(BufReader::new(meter.reader(file))).map_err(|e| Error::io("read", path, e))?;
    let mut archive = tar::Archive::new(stream);
    let mut x = Extracted { archive: path.to_path_buf(), files: Vec::new(), by_path: BTreeMap::new() };
    let mut aliases: Vec<(String, String)> = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    let entries = archive.entries().map_err(|e| Error::io("read", path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if count == 0 {
                Error::NotAnImage {
                    path: path.to_path_buf(),
                    // The tar crate's message quotes the raw header: not useful here.
                    why: "not a tar archive; expected an OCI image layout directory, an \
                          oci-archive or a docker-archive tar"
                        .into(),
                }
            } else {
                Error::Invalid {
                    what: format!("archive {}", path.display()),
                    why: format!("reading the tar stream: {e}"),
                }
            }
        })?;
        count += 1;
        bytes = bytes.saturating_add(entry.size());
        if count > MAX_LAYER_ENTRIES || bytes > MAX_LAYER_BYTES {
            return Err(Error::Invalid {
                what: format!("archive {}", path.display()),
                why: format!("more than {MAX_LAYER_ENTRIES} entries or {MAX_LAYER_BYTES} bytes; refusing what looks like a tar bomb"),
            });
        }
        let raw = entry.path_bytes().into_owned();
        let bad = |why: &str| Error::Invalid {
            what: format!("archive {} entry {:?}", path.display(), String::from_utf8_lossy(&raw)),
            why: why.to_string(),
        };
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        let comps = stream::normalize(&raw).map_err(bad)?;
        let rel = rel_of(&comps);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse if !raw.ends_with(b"/") => {
                let (f, tmp_path) = tmp.create_file("src")?;
                let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 17, f));
                io::copy(&mut entry, &mut w).map_err(|e| Error::Invalid {
                    what: format!("archive {} entry {rel:?}", path.display()),
                    why: format!("reading the tar stream: {e}"),
                })?;
                let (buf, digest, size) = w.finish();
                buf.into_inner().map_err(|e| Error::io("write", &tmp_path, e.into_error()))?;
                x.by_path.insert(rel, x.files.len());
                x.files.push(ExtractedFile { path: tmp_path, digest, size });
            }
            EntryType::Symlink | EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let resolved = if kind == EntryType::Link {
                    stream::normalize(&target).ok().map(|c| rel_of(&c))
                } else {
                    resolve_link(&comps[..comps.len().saturating_sub(1)], &target)
                };
                if let Some(t) = resolved {
                    aliases.push((rel, t));
                }
            }
            _ => {} // directories and anything else carry nothing we read
        }
    }
    // Links may point forward, or at other links.
    for _ in 0..8 {
        let mut progress = false;
        for (from, to) in &aliases {
            if let (false, Some(&i)) = (x.by_path.contains_key(from), x.by_path.get(to)) {
                x.by_path.insert(from.clone(), i);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    Ok(x)
}

/// One image in a docker-archive's manifest.json.
#[derive(Debug, Deserialize)]
struct DockerImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The compression of an extracted file, from its first bytes.
fn sniff_file(f: &ExtractedFile) -> Result<Compression> {
    let mut head = Vec::with_capacity(4);
    File::open(&f.path)
        .and_then(|h| h.take(4).read_to_end(&mut head))
        .map_err(|e| Error::io("read", &f.path, e))?;
    Ok(stream::sniff(&head))
}

/// Plans for the images of a docker-archive: configs checked against their file
/// names, layer tars against the config's diff_ids, and an OCI manifest made up
/// for each.
pub(crate) fn docker_plans(x: &Extracted) -> Result<Vec<Plan>> {
    let loc = x.archive.display().to_string();
    let mwhat = format!("manifest.json in {loc}");
    let bytes = x.read("manifest.json")?.ok_or_else(|| Error::BlobMissing { what: mwhat.clone() })?;
    let images: Vec<DockerImage> = manifest::parse_json(&bytes, &mwhat)?;
    if images.is_empty() {
        return Err(Error::Invalid { what: mwhat, why: "it lists no image".into() });
    }
    let norm = |p: &str| -> Result<String> {
        stream::normalize(p.as_bytes())
            .map(|c| rel_of(&c))
            .map_err(|why| Error::Invalid { what: format!("{mwhat}: path {p:?}"), why: why.to_string() })
    };
    let mut plans = Vec::new();
    for img in images {
        let crel = norm(&img.config)?;
        let cwhat = format!("config {crel:?} in {loc}");
        let cfile = x.file(&crel).ok_or_else(|| Error::BlobMissing { what: cwhat.clone() })?;
        let base = crel.rsplit('/').next().unwrap_or(&crel);
        let stem = base.strip_suffix(".json").unwrap_or(base);
        if is_hex64(stem) && cfile.digest.hex() != stem {
            let expected = Digest::from_hex(stem)
                .map_err(|e| Error::Invalid { what: cwhat.clone(), why: e.to_string() })?;
            return Err(Error::DigestMismatch { what: cwhat, expected, found: cfile.digest.clone() });
        }
        if cfile.size > MAX_JSON_BLOB {
            return Err(Error::Invalid {
                what: cwhat,
                why: format!("over the {MAX_JSON_BLOB}-byte limit for JSON"),
            });
        }
        let config = x.read(&crel)?.unwrap_or_default();
        let parsed: oci_spec::image::ImageConfiguration = manifest::parse_json(&config, &cwhat)?;
        let diff_ids = manifest::diff_ids(&parsed, img.layers.len(), &cwhat)?;

        let mut layers = Vec::new();
        let mut paths = Vec::new();
        for (lpath, diff_id) in img.layers.iter().zip(&diff_ids) {
            let rel = norm(lpath)?;
            let lwhat = format!("layer {rel:?} in {loc}");
            let f = x.file(&rel).ok_or_else(|| Error::BlobMissing { what: lwhat.clone() })?;
            let media_type = match sniff_file(f)? {
                Compression::Plain => {
                    if &f.digest != diff_id {
                        return Err(Error::DigestMismatch {
                            what: format!("{lwhat} (against the config's rootfs.diff_ids)"),
                            expected: diff_id.clone(),
                            found: f.digest.clone(),
                        });
                    }
                    MT_LAYER_TAR
                }
                // Compressed: the diff_id is checked when the layer is unpacked.
                Compression::Gzip => MT_LAYER_GZIP,
                Compression::Zstd => MT_LAYER_ZSTD,
            };
            layers.push((media_type.to_string(), f.digest.clone(), f.size));
            paths.push(rel);
        }
        let bytes = manifest::synthesise_manifest((&cfile.digest, cfile.size), &layers);
        let digest = Digest::of_bytes(&bytes);
        let what = format!("image {crel:?} in {loc}");
        let m = manifest::parse_manifest(&bytes, &what)?;
        let names = img
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| {
                reference::parse_name(t).map_err(|e| Error::Invalid {
                    what: format!("RepoTags of {what}"),
                    why: format!("{e}; give a name with --name"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        plans.push(Plan::build(digest, bytes, m, config, paths, &what, None)?.named(names));
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_archive_only() {
        let dir: Vec<std::ffi::OsString> = vec!["a".into(), "b".into()];
        assert_eq!(resolve_link(&dir, b"../c/layer.tar").as_deref(), Some("a/c/layer.tar"));
        assert_eq!(resolve_link(&dir, b"../../x").as_deref(), Some("x"));
        assert_eq!(resolve_link(&dir, b"../../../x"), None);
        assert_eq!(resolve_link(&dir, b"/etc/passwd"), None);
    }
}
