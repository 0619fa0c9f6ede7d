//! Stored envelopes opened as `load` opens them; sealed-then-mutated envelopes are always rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stored_session::__fuzz::envelope(data);
});
