//! OCI images for Fabricks: one model for building, reading and publishing them.
//!
//! - [`Image::build`] packs a [`Payload`] (a wasm module or component, a native executable, or a
//!   tree of files such as a .NET AppBundle) into a single-layer image held in memory as
//!   content-addressed [`Blob`]s, together with the entries a tag's index lists it under
//!   ([`index`]).
//! - [`read_image`] reads an image from any [`Source`] (an archive: [`ArchiveSource`]; a
//!   registry: the CLI's), checking every blob against its descriptor.
//! - A [`Publisher`] takes an image somewhere: an archive ([`ArchiveFile`]), a registry, or
//!   several ([`Tee`]).
//! - [`media`] is the one table of media types the CLI and the shim accept, and [`index`] how
//!   a wasm runtime picks its manifest from an index.
//!
//! All JSON is written with sorted keys and every timestamp comes from `SOURCE_DATE_EPOCH` (or
//! the Unix epoch): the same payload and options always give the same digests.

pub mod archive;
mod blob;
mod config;
mod created;
mod image;
pub mod index;
mod json;
mod layer;
pub mod media;
mod module;
mod payload;
pub mod publish;
mod read;
mod reference;
mod tarball;
mod wasm;

pub use archive::{read_archive_file, write_archive, write_archive_file, ArchiveSource};
pub use blob::{sha256, Blob};
pub use config::ImageConfig;
pub use created::{rfc3339, source_date_epoch};
pub use image::{host_platform, platform, Image, ImageOptions};
pub use index::{EntryKind, IndexEntry};
pub use layer::LayerKind;
pub use module::Module;
pub use payload::{Entry, Payload, Tree};
pub use publish::{ArchiveFile, Destination, Published, Publisher, Tee, Transfer};
pub use read::{read_image, Source, Want};
pub use reference::Reference;
pub use wasm::{WasmKind, LABEL_WASM_KIND};

/// Re-exported so callers name descriptors, manifests and media types with the
/// same `oci-spec` version this crate builds them with.
pub use oci_spec;

/// Annotation containerd's importer names an image by.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
