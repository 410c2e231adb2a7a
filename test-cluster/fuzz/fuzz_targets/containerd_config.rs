//! The node installer edits the node's containerd config, whatever the node has in it: any
//! text is refused with an error or edited so that removing our runtime gives back the text
//! byte for byte, and adding twice changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../../shim/installer/src/config.rs"]
#[allow(dead_code)]
mod config;

fuzz_target!(|text: &str| {
    let Ok(added) = config::add_runtime(text, "fuzz") else { return };
    assert_eq!(config::add_runtime(&added, "fuzz").expect("adding again"), added, "a second add changed it");
    if added == text || text.contains(config::RUNTIME_NAME) {
        // Nothing added, or a `fabricks` runtime of the user's replaced (a unit test covers
        // that): no original to come back.
        return;
    }
    let removed = config::remove_runtime(&added, "fuzz").expect("removing");
    assert_eq!(removed, text, "remove did not restore");
});
