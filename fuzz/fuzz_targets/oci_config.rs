//! config.json parsing and planning, as `exprun create` does, on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = tempfile::tempdir() else { return };
    if std::fs::create_dir(bundle.path().join("rootfs")).is_err() {
        return;
    }
    exprun::fuzzing::oci_config(data, bundle.path(), &bundle.path().join("cache"));
});
