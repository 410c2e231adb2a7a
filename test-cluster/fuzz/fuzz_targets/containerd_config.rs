//! The node installer edits the node's containerd config, whatever the node has in it: any
//! text is refused with an error or edited so that removing our runtime gives back the text
//! as it was, and adding twice changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../../shim/installer/src/config.rs"]
#[allow(dead_code)]
mod config;

fuzz_target!(|text: &str| {
    let Ok(added) = config::add_runtime(text, "fuzz") else { return };
    assert_eq!(config::add_runtime(&added, "fuzz").expect("adding again"), added, "a second add changed it");
    if added == text {
        return;
    }
    let removed = config::remove_runtime(&added, "fuzz").expect("removing");
    if text.contains('\r') {
        // toml_edit rewrites the CRLF blank lines it moves (a Linux node's config has none):
        // such a config comes back equivalent, not byte for byte.
        assert_eq!(config::remove_runtime(&removed, "fuzz").expect("removing again"), removed);
        return;
    }
    assert_eq!(removed, text, "remove did not restore");
});
