//! Registry references, auth challenges and auth files on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    exprun::fuzzing::registry(data);
});
