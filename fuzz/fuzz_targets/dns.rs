#![no_main]
//! See `telestrip::fuzzing::dns_message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::dns_message(data));
