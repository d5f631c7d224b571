//! Entry points for the fuzz targets (fuzz/): the image store's parsers and the
//! layer unpacker, on arbitrary bytes. Not an API.

use std::path::Path;

use crate::digest::Digest;

/// Parse `bytes` as an image index, a manifest and an image config, with the
/// checks import makes on each.
pub fn image_json(bytes: &[u8]) {
    let _ = super::manifest::parse_index(bytes, "fuzz");
    if let Ok(m) = super::manifest::parse_manifest(bytes, "fuzz") {
        for l in &m.layers {
            let _ = super::manifest::check_layer_media_type(&l.media_type);
        }
    }
    if let Ok(config) = super::manifest::parse_json::<oci_spec::image::ImageConfiguration>(bytes, "fuzz") {
        let _ = super::manifest::check_config_platform(&config, "fuzz", None);
        let _ = super::manifest::diff_ids(&config, 1, "fuzz");
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = super::reference::parse(s);
    }
}

/// Unpack `bytes` as a layer blob into `dest` (which must not exist), with
/// small limits. Whatever the bytes, nothing may be created outside `dest`.
pub fn layer(bytes: &[u8], dest: &Path) {
    let limits = super::unpack::Limits {
        max_bytes: 16 << 20,
        max_entries: 10_000,
        max_image_bytes: 16 << 20,
        ..Default::default()
    };
    let digest = Digest::of_bytes(bytes);
    let budget = super::unpack::Budget::new(limits, None);
    let _ = super::unpack::unpack_layer(bytes, &digest, &digest, dest, &budget);
}
