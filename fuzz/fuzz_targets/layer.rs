//! Layer unpacking (plain, gzip, zstd tar) on arbitrary bytes: no panic, and
//! nothing created outside the destination.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(parent) = tempfile::tempdir() else { return };
    let dest = parent.path().join("layer");
    exprun::fuzzing::layer(data, &dest);
    let outside: Vec<_> = std::fs::read_dir(parent.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "layer")
        .collect();
    assert!(outside.is_empty(), "created outside the layer directory: {outside:?}");
});
