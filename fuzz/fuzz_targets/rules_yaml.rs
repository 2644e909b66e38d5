#![no_main]
//! See `telestrip_testkit::fuzzing::rules_yaml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::rules_yaml(data));
