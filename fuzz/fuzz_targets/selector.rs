//! Label selectors and cron expressions: the hand-written parsers of the check module.
#![no_main]

use firedrill::experiment::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = check::label_selector(text) {
        assert!(!e.message.is_empty());
    }
    let _ = check::cron(text);
    let _ = check::entry_name("probe", text);
    let _ = check::signal(text);
});
