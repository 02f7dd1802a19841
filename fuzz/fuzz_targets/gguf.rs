//! Fuzzes the GGUF pre-scan and candle's reader behind it: the input follows a `GGUF` magic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(data);
    exercise::exercise("fuzz.gguf", bytes);
});
