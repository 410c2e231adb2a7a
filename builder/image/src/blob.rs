use anyhow::{ensure, Result};
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

    /// Bytes read from somewhere (an archive, a registry) for `descriptor`, checked against
    /// its size and digest. The descriptor is kept as given (annotations and all).
    pub fn verified(descriptor: &Descriptor, data: Vec<u8>) -> Result<Self> {
        ensure!(
            data.len() as u64 == descriptor.size(),
            "blob {} has {} bytes, its descriptor says {}",
            descriptor.digest(),
            data.len(),
            descriptor.size()
        );
        let digest = sha256(&data);
        ensure!(
            digest == *descriptor.digest(),
            "blob {} has the content of {digest}: it is corrupt or not what its descriptor names",
            descriptor.digest()
        );
        Ok(Blob { descriptor: descriptor.clone(), data })
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

/// The `sha256:<hex>` digest of `data`: the one place Fabricks makes digests (their `Display`
/// is the `sha256:<hex>` form, `.digest()` the hex alone).
pub fn sha256(data: &[u8]) -> Digest {
    let hex = hex::encode(Sha256::digest(data));
    Sha256Digest::from_str(&hex).expect("hex-encoded SHA-256 is always a valid sha256 digest").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_in_the_oci_form() {
        assert_eq!(sha256(b"").to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256(b"").digest().len(), 64);
    }

    #[test]
    fn read_blobs_are_checked_against_their_descriptor() {
        let blob = Blob::new(MediaType::ImageConfig, b"{}".to_vec());
        assert_eq!(Blob::verified(blob.descriptor(), b"{}".to_vec()).unwrap(), blob);
        let err = Blob::verified(blob.descriptor(), b"{ }".to_vec()).unwrap_err().to_string();
        assert!(err.contains("3 bytes"), "{err}");
        let err = Blob::verified(blob.descriptor(), b"[]".to_vec()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
