use oci_spec::image::{Descriptor, Digest, MediaType, Sha256Digest};
use sha2::{Digest as _, Sha256};
use std::str::FromStr;

/// Content-addressed bytes together with the descriptor that points at them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    descriptor: Descriptor,
    data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: MediaType, data: Vec<u8>) -> Self {
        let descriptor = Descriptor::new(media_type, data.len() as u64, sha256(&data));
        Blob { descriptor, data }
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn digest(&self) -> &Digest {
        self.descriptor.digest()
    }

    pub fn media_type(&self) -> &MediaType {
        self.descriptor.media_type()
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Lets a caller attach annotations to the descriptor without touching the
    /// content, which would invalidate the digest.
    pub(crate) fn descriptor_mut(&mut self) -> &mut Descriptor {
        &mut self.descriptor
    }
}

/// The `sha256:<hex>` digest of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    let hex = hex::encode(Sha256::digest(data));
    Sha256Digest::from_str(&hex).expect("hex-encoded SHA-256 is always a valid sha256 digest").into()
}
