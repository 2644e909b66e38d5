#![no_main]
//! See `telestrip_testkit::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::config(data));
