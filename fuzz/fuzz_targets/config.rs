#![no_main]
//! See `telestrip::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::config(data));
