//! Images come from any registry: their index, manifest, config and layers are untrusted.
//! The input is a manifest, a config and layers, separated by `\n--\n`; the harness gives the
//! manifest's descriptors the digests and sizes of those parts (a fuzzer cannot forge
//! sha256), so the readers past the digest checks are reached too. Reading the image, then
//! its wasm module, errs or succeeds, never panics.

#![no_main]

use anyhow::{bail, Result};
use fabricks_image::oci_spec::image::Descriptor;
use fabricks_image::{read_image, sha256, Reference, Source, Want};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Parts {
    top: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

impl Source for Parts {
    fn top(&mut self) -> Result<(Option<String>, Vec<u8>)> {
        Ok((None, self.top.clone()))
    }

    fn manifest(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        self.blob(descriptor)
    }

    fn blob(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let wanted = descriptor.digest().to_string();
        match self.blobs.iter().find(|b| digest(b) == wanted) {
            Some(blob) => Ok(blob.clone()),
            None => bail!("no blob {wanted}"),
        }
    }
}

fn digest(data: &[u8]) -> String {
    sha256(data).to_string()
}

/// Points `descriptor` (a JSON object) at `data`.
fn describe(descriptor: &mut Value, data: &[u8]) {
    if let Some(fields) = descriptor.as_object_mut() {
        fields.insert("digest".into(), Value::String(digest(data)));
        fields.insert("size".into(), Value::from(data.len()));
    }
}

fuzz_target!(|input: &[u8]| {
    let mut parts = input.split_inner(b"\n--\n");
    let manifest = parts.next().unwrap_or_default();
    let config = parts.next().unwrap_or_default().to_vec();
    let layers: Vec<Vec<u8>> = parts.map(<[u8]>::to_vec).collect();
    let top = match serde_json::from_slice::<Value>(manifest) {
        Ok(mut doc) => {
            if let Some(c) = doc.get_mut("config") {
                describe(c, &config);
            }
            if let Some(Value::Array(list)) = doc.get_mut("layers") {
                for (descriptor, layer) in list.iter_mut().zip(layers.iter().cycle()) {
                    describe(descriptor, layer);
                }
            }
            serde_json::to_vec(&doc).unwrap_or_default()
        }
        Err(_) => manifest.to_vec(),
    };
    let reference: Reference = "localhost/fuzz:1".parse().expect("a valid reference");
    for want in [Want::Any, Want::Wasm] {
        let mut blobs = layers.clone();
        blobs.push(config.clone());
        let mut source = Parts { top: top.clone(), blobs };
        if let Ok(image) = read_image(&mut source, reference.clone(), want) {
            let _ = image.module();
        }
    }
});

/// `split` on a byte string, which the standard library only has for single bytes.
trait SplitInner {
    fn split_inner<'a>(&'a self, separator: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a>;
}

impl SplitInner for [u8] {
    fn split_inner<'a>(&'a self, separator: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
        let mut rest = Some(self);
        Box::new(std::iter::from_fn(move || {
            let text = rest?;
            match text.windows(separator.len()).position(|w| w == separator) {
                Some(at) => {
                    rest = Some(&text[at + separator.len()..]);
                    Some(&text[..at])
                }
                None => {
                    rest = None;
                    Some(text)
                }
            }
        }))
    }
}
