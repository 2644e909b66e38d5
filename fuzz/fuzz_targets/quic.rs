#![no_main]
//! See `telestrip_testkit::fuzzing::quic_initial`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::quic_initial(data));
