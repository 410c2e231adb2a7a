//! Single-layer WebAssembly OCI images.
//!
//! [`WasmImage::build`] turns a compiled WASI module into an image kept in
//! memory as content-addressed [`Blob`]s (config, layer, manifest), so the same
//! blobs can go to an image-layout archive ([`archive`]) or, later, to a
//! registry. All JSON is written with sorted keys and every timestamp comes
//! from `SOURCE_DATE_EPOCH` (or the Unix epoch): the same module and options
//! always give the same digests.

pub mod archive;
mod blob;
mod created;
mod image;
mod json;
mod layer;
mod native;
mod reference;
mod tarball;

pub use archive::{write_archive, write_archive_file, ArchiveImage};
pub use blob::Blob;
pub use created::{rfc3339, source_date_epoch};
pub use image::{host_platform, platform, ImageOptions, WasmImage};
pub use layer::LayerKind;
pub use native::{NativeImage, RootFile};
pub use reference::Reference;

/// Re-exported: the listen spec type [`ImageOptions::listen`] takes.
pub use fabricks_listen::{self, ListenSpec};

/// Re-exported so callers name descriptors, manifests and media types with the
/// same `oci-spec` version this crate builds them with.
pub use oci_spec;

/// Media type of a layer whose blob is the raw module bytes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Annotation containerd's importer names an image by.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
