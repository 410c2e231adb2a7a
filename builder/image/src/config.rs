//! One typed view of an image's config, whichever kind of config the manifest points at: an
//! OCI (or Docker) image config, or the CNCF wasm artifact config that `wkg` and `oras` push.

use crate::media;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Arch, ImageConfiguration, MediaType, Os, Platform, PlatformBuilder};
use serde::Deserialize;
use std::collections::BTreeMap;

/// What a runtime reads from an image's config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `wasi`, `wasip1`, `wasip2`, `linux`…; empty when the config names none.
    pub os: String,
    /// `wasm`, `amd64`…; empty when the config names none.
    pub architecture: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `8080/tcp` entries, sorted.
    pub exposed_ports: Vec<String>,
    /// `rootfs.diff_ids`: the filesystem layers. Empty for an image of wasm layers only.
    pub diff_ids: Vec<String>,
}

/// The CNCF wasm artifact config (`application/vnd.wasm.config.v0+json`); only the fields a
/// runtime needs.
#[derive(Deserialize)]
struct WasmArtifactConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

impl ImageConfig {
    /// Parses a config blob of `media_type`. The empty descriptor config (`oras push` without
    /// `--config`) gives a config naming no platform.
    pub fn parse(media_type: &MediaType, data: &[u8]) -> Result<ImageConfig> {
        let text = media_type.to_string();
        if media::is_wasm_config(&text) {
            let config: WasmArtifactConfig =
                serde_json::from_slice(data).context("parsing the wasm artifact config")?;
            return Ok(ImageConfig { os: config.os, architecture: config.architecture, ..ImageConfig::default() });
        }
        if *media_type == MediaType::EmptyJSON {
            return Ok(ImageConfig::default());
        }
        if !media::IMAGE_CONFIG_TYPES.contains(&text.as_str()) {
            bail!(
                "the image config has the media type {text:?}, neither an image config ({}) nor a wasm \
                 artifact config ({})",
                media::IMAGE_CONFIG_TYPES.join(", "),
                media::WASM_CONFIG_V0
            );
        }
        let config = ImageConfiguration::from_reader(data).context("parsing the image config")?;
        Ok(Self::from_oci(&config))
    }

    fn from_oci(config: &ImageConfiguration) -> ImageConfig {
        let inner = config.config().clone().unwrap_or_default();
        let mut exposed_ports = inner.exposed_ports().clone().unwrap_or_default();
        exposed_ports.sort();
        ImageConfig {
            os: config.os().to_string(),
            architecture: config.architecture().to_string(),
            entrypoint: inner.entrypoint().clone().unwrap_or_default(),
            cmd: inner.cmd().clone().unwrap_or_default(),
            env: inner.env().clone().unwrap_or_default(),
            working_dir: inner.working_dir().clone().filter(|d| !d.is_empty()),
            labels: inner.labels().clone().unwrap_or_default().into_iter().collect(),
            exposed_ports,
            diff_ids: config.rootfs().diff_ids().clone(),
        }
    }

    /// Whether the config is for wasm (`architecture: wasm`, any WASI `os`).
    pub fn is_wasm(&self) -> bool {
        self.architecture == Arch::Wasm.to_string()
    }

    /// `os/architecture`, `?` for what is missing: for messages.
    pub fn platform_name(&self) -> String {
        let or_unknown = |s: &str| if s.is_empty() { "?".to_owned() } else { s.to_owned() };
        format!("{}/{}", or_unknown(&self.os), or_unknown(&self.architecture))
    }

    /// The config's platform; `None` when it names none.
    pub fn platform(&self) -> Option<Platform> {
        if self.os.is_empty() || self.architecture.is_empty() {
            return None;
        }
        PlatformBuilder::default()
            .os(Os::from(self.os.as_str()))
            .architecture(Arch::from(self.architecture.as_str()))
            .build()
            .ok()
    }

    /// The command line the image runs: `Entrypoint` then `Cmd`.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oci_config_gives_every_field() {
        let data = br#"{"architecture":"wasm","os":"wasi","config":{"Entrypoint":["/app/dotnet.wasm"],
            "Cmd":["App"],"Env":["A=1"],"WorkingDir":"/app","Labels":{"fabricks.io/listen":"http=8080"},
            "ExposedPorts":{"9090/tcp":{},"8080/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#;
        let config = ImageConfig::parse(&MediaType::ImageConfig, data).unwrap();
        assert!(config.is_wasm());
        assert_eq!(config.platform_name(), "wasi/wasm");
        assert_eq!(config.argv(), ["/app/dotnet.wasm", "App"]);
        assert_eq!(config.env, ["A=1"]);
        assert_eq!(config.working_dir.as_deref(), Some("/app"));
        assert_eq!(config.labels["fabricks.io/listen"], "http=8080");
        assert_eq!(config.exposed_ports, ["8080/tcp", "9090/tcp"]);
        assert_eq!(config.diff_ids, ["sha256:00"]);
    }

    #[test]
    fn the_cncf_wasm_config_is_a_wasm_platform_with_nothing_else() {
        let data = br#"{"created":"2024-01-01T00:00:00Z","architecture":"wasm","os":"wasip2",
            "layerDigests":["sha256:ab"],"component":{"exports":["wasi:cli/run@0.2.0"],"imports":[]}}"#;
        let config = ImageConfig::parse(&MediaType::from(media::WASM_CONFIG_V0), data).unwrap();
        assert!(config.is_wasm());
        assert_eq!(config.platform_name(), "wasip2/wasm");
        assert!(config.argv().is_empty() && config.diff_ids.is_empty());
    }

    #[test]
    fn an_empty_config_names_no_platform_and_foreign_configs_are_refused() {
        let empty = ImageConfig::parse(&MediaType::EmptyJSON, b"{}").unwrap();
        assert_eq!((empty.platform_name(), empty.platform()), ("?/?".to_owned(), None));
        let err = ImageConfig::parse(&MediaType::from("application/vnd.cncf.helm.config.v1+json"), b"{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("helm") && err.contains(media::WASM_CONFIG_V0), "{err}");
    }
}
