#![no_main]
//! See `telestrip::fuzzing::frame`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::frame(data));
