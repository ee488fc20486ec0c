//! Fuzz target: `vigil::fuzz_api::frame` (see FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil::fuzz_api::frame(data));
