#![no_main]
//! See `telestrip::fuzzing::quic_initial`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::quic_initial(data));
