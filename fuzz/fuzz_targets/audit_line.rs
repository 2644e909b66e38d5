#![no_main]
//! See `telestrip_testkit::fuzzing::audit_line`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::audit_line(data));
