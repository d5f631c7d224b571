//! Image index, manifest, config and reference parsing on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exprun::fuzzing::image_json(data);
});
