#![no_main]
//! See `telestrip::fuzzing::audit_line`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::audit_line(data));
