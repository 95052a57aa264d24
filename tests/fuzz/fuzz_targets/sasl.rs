//! The SASL and TLS-adjacent parsers an unauthenticated peer reaches; see
//! `fjord_broker::security::fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fjord_broker::security::fuzz::one_input(data);
});
