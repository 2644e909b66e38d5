#![no_main]
//! See `telestrip_testkit::fuzzing::engine`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::engine(data));
