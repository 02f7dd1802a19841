//! Fuzzes the safetensors header parser: odd first bytes feed the input as a whole file; even
//! ones wrap the rest behind a correct length prefix, so the JSON validation is reached at once.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => {
            let mut bytes = (rest.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(rest);
            bytes
        }
        _ => data.to_vec(),
    };
    exercise::exercise("fuzz.safetensors", bytes);
});
