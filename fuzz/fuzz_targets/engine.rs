#![no_main]
//! See `telestrip::fuzzing::engine`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::engine(data));
