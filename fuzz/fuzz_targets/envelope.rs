//! Fuzz target: `vigil::fuzz_api::envelope` (see FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil::fuzz_api::envelope(data));
