#![no_main]
//! See `telestrip::fuzzing::rules_yaml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::rules_yaml(data));
