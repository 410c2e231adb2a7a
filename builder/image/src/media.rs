//! The media types Fabricks reads and writes, in one table shared by the CLI and the shim, so
//! both accept exactly the same images.

use oci_spec::image::MediaType;

/// The layer media type Fabricks writes for a raw module, and the one the CNCF wasm OCI
/// artifact layout (`wkg`, `oras`) uses.
pub const WASM_LAYER: &str = "application/wasm";

/// Layer media types whose blob is the wasm binary itself (a module or a component): the
/// CNCF layout's and Fabricks' `application/wasm`, wasm-to-oci's content layer, and runwasi's
/// component layer.
pub const WASM_LAYER_TYPES: &[&str] = &[
    WASM_LAYER,
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// Config media type of the CNCF wasm OCI artifact layout: `{architecture: wasm, os: wasip1
/// | wasip2, layerDigests, component}`, not an OCI image config (it has no `rootfs`).
pub const WASM_CONFIG_V0: &str = "application/vnd.wasm.config.v0+json";

/// Config media types read as an OCI image config: OCI's and Docker's.
pub const IMAGE_CONFIG_TYPES: &[&str] =
    &["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/// Image index media types: OCI's and Docker's manifest list.
pub const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// Image manifest media types: OCI's and Docker's schema 2.
pub const MANIFEST_TYPES: &[&str] =
    &["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/// Every media type the top of a tag may have, for a registry's `Accept` header.
pub fn top_level_types() -> Vec<&'static str> {
    INDEX_TYPES.iter().chain(MANIFEST_TYPES).copied().collect()
}

/// What a layer holds, by its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerMedia {
    /// The wasm binary itself ([`WASM_LAYER_TYPES`]).
    Wasm,
    /// A filesystem tar, `gzip` or not.
    Tar { gzip: bool },
    /// Anything else (zstd, encrypted, foreign artifacts): nothing Fabricks unpacks.
    Other,
}

impl LayerMedia {
    pub fn of(media_type: &MediaType) -> LayerMedia {
        let text = media_type.to_string();
        if is_wasm_layer(&text) {
            return LayerMedia::Wasm;
        }
        match text.as_str() {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => LayerMedia::Tar { gzip: false },
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => LayerMedia::Tar { gzip: true },
            _ => LayerMedia::Other,
        }
    }
}

/// Whether a layer of this media type is a wasm binary (not a filesystem to unpack).
pub fn is_wasm_layer(media_type: &str) -> bool {
    WASM_LAYER_TYPES.contains(&media_type)
}

/// Whether a document of this media type is an image index (or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    INDEX_TYPES.contains(&media_type)
}

/// Whether a config of this media type is the CNCF wasm artifact config.
pub fn is_wasm_config(media_type: &str) -> bool {
    media_type == WASM_CONFIG_V0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str) -> LayerMedia {
        LayerMedia::of(&MediaType::from(text))
    }

    #[test]
    fn every_wasm_layer_type_is_one_and_tars_are_told_by_compression() {
        for text in WASM_LAYER_TYPES {
            assert_eq!(layer(text), LayerMedia::Wasm, "{text}");
        }
        assert_eq!(layer("application/vnd.oci.image.layer.v1.tar+gzip"), LayerMedia::Tar { gzip: true });
        assert_eq!(layer("application/vnd.docker.image.rootfs.diff.tar.gzip"), LayerMedia::Tar { gzip: true });
        assert_eq!(layer("application/vnd.oci.image.layer.v1.tar"), LayerMedia::Tar { gzip: false });
        assert_eq!(layer("application/vnd.oci.image.layer.v1.tar+zstd"), LayerMedia::Other);
        assert_eq!(layer("application/octet-stream"), LayerMedia::Other);
    }

    #[test]
    fn indexes_and_configs_are_recognised() {
        assert!(is_index("application/vnd.oci.image.index.v1+json"));
        assert!(is_index("application/vnd.docker.distribution.manifest.list.v2+json"));
        assert!(!is_index("application/vnd.oci.image.manifest.v1+json"));
        assert!(is_wasm_config("application/vnd.wasm.config.v0+json"));
        assert!(!is_wasm_config("application/vnd.oci.image.config.v1+json"));
        assert_eq!(top_level_types().len(), 4);
    }
}
