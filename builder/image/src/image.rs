use crate::blob::Blob;
use crate::created::{check_representable, rfc3339, source_date_epoch};
use crate::layer::{self, LayerKind};
use crate::{json, Reference, RootFile};
use anyhow::{bail, ensure, Context, Result};
use fabricks_listen::ListenSpec;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, Platform, PlatformBuilder, RootFsBuilder,
};
use std::collections::{BTreeMap, HashMap};

/// What to build around a module besides its bytes.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    pub reference: Reference,
    /// Absolute path of the module inside the image, e.g. `/go-hello.wasm`;
    /// it becomes the config's `Entrypoint`.
    pub entrypoint: String,
    /// What follows the module in `Entrypoint` (a .NET AppBundle runs as `/dotnet.wasm App`).
    pub args: Vec<String>,
    /// More files of the layer beside the module (a bundle's assemblies and data), each at
    /// its absolute path; only a tar layer can hold them.
    pub files: Vec<RootFile>,
    /// The config's `WorkingDir`, if the program needs one.
    pub working_dir: Option<String>,
    pub layer: LayerKind,
    /// Default environment of the module, as `Env` `KEY=VALUE` entries.
    pub env: Vec<(String, String)>,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// TCP endpoints the module serves: each becomes an `ExposedPorts` entry
    /// (`8080/tcp`), and the whole spec the label `fabricks.io/listen` (ports
    /// cannot carry names). Empty: neither.
    pub listen: ListenSpec,
    /// Manifest annotations, typically `org.opencontainers.image.*`.
    pub annotations: BTreeMap<String, String>,
    /// Seconds since the Unix epoch for `created` and file times; `None`
    /// reads `SOURCE_DATE_EPOCH`, else uses 0.
    pub created: Option<u64>,
    /// `wasi/wasm` ([`platform`]) for a module; a Linux platform
    /// ([`host_platform`]) packs a native executable instead, which is how the
    /// same project is built for runc to compare against.
    pub platform: Platform,
}

impl ImageOptions {
    /// A tar-layer image with no env, labels or annotations.
    pub fn new(reference: Reference, entrypoint: impl Into<String>) -> Self {
        ImageOptions {
            reference,
            entrypoint: entrypoint.into(),
            args: Vec::new(),
            files: Vec::new(),
            working_dir: None,
            layer: LayerKind::Tar,
            env: Vec::new(),
            labels: BTreeMap::new(),
            listen: ListenSpec::default(),
            annotations: BTreeMap::new(),
            created: None,
            platform: platform(),
        }
    }
}

/// A single-layer wasm image held in memory: three blobs (config, layer,
/// manifest) plus the parsed documents they encode. (With a Linux
/// [`ImageOptions::platform`], the same shape around a native executable.)
#[derive(Clone, Debug)]
pub struct WasmImage {
    reference: Reference,
    created: u64,
    config: ImageConfiguration,
    manifest: ImageManifest,
    config_blob: Blob,
    layer_blob: Blob,
    manifest_blob: Blob,
}

/// The platform every image of this crate is for: `wasi/wasm`.
pub fn platform() -> Platform {
    PlatformBuilder::default()
        .os(Os::Other("wasi".into()))
        .architecture(Arch::Wasm)
        .build()
        .expect("os and architecture are the only required platform fields")
}

/// `linux/<this machine's architecture>`, in OCI's names (`amd64`, `arm64`).
pub fn host_platform() -> Platform {
    PlatformBuilder::default()
        .os(Os::Linux)
        .architecture(Arch::default())
        .build()
        .expect("os and architecture are the only required platform fields")
}

fn is_wasi(platform: &Platform) -> bool {
    *platform.architecture() == Arch::Wasm
}

impl WasmImage {
    /// Builds the image for the WebAssembly binary `module`.
    pub fn build(module: &[u8], options: &ImageOptions) -> Result<Self> {
        check_executable(module, options)?;
        check_entrypoint(&options.entrypoint)?;
        let created = match options.created {
            Some(secs) => secs,
            None => source_date_epoch()?,
        };
        check_representable(created)?;

        ensure!(
            options.files.is_empty() || options.layer == LayerKind::Tar,
            "a program of {} files needs a tar layer: a wasm layer holds one module",
            options.files.len() + 1
        );
        let layer = match options.files.is_empty() {
            true => layer::build(options.layer, module, &options.entrypoint, created)?,
            false => layer::tree(module, &options.entrypoint, &options.files, created)?,
        };
        let config = image_config(options, created, layer.diff_id.as_ref().map(|d| d.as_ref()))?;
        let config_blob = Blob::new(MediaType::ImageConfig, json::canonical(&config)?);
        let manifest = image_manifest(options, &config_blob, &layer.blob)?;
        let manifest_blob = Blob::new(MediaType::ImageManifest, json::canonical(&manifest)?);
        Ok(WasmImage {
            reference: options.reference.clone(),
            created,
            config,
            manifest,
            config_blob,
            layer_blob: layer.blob,
            manifest_blob,
        })
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Seconds since the Unix epoch the image is stamped with.
    pub fn created(&self) -> u64 {
        self.created
    }

    pub fn config(&self) -> &ImageConfiguration {
        &self.config
    }

    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    pub fn config_blob(&self) -> &Blob {
        &self.config_blob
    }

    pub fn layer_blob(&self) -> &Blob {
        &self.layer_blob
    }

    pub fn manifest_blob(&self) -> &Blob {
        &self.manifest_blob
    }

    /// Every blob the image consists of, manifest last, in the order a
    /// registry push must upload them.
    pub fn blobs(&self) -> [&Blob; 3] {
        [&self.config_blob, &self.layer_blob, &self.manifest_blob]
    }

    /// Descriptor of the manifest with its `wasi/wasm` platform, as an image
    /// index lists it.
    pub fn manifest_descriptor(&self) -> Descriptor {
        let mut descriptor = self.manifest_blob.descriptor().clone();
        descriptor.set_platform(Some(
            PlatformBuilder::default()
                .os(self.config.os().clone())
                .architecture(self.config.architecture().clone())
                .build()
                .expect("os and architecture are the only required platform fields"),
        ));
        descriptor
    }
}

fn check_executable(module: &[u8], options: &ImageOptions) -> Result<()> {
    if !is_wasi(&options.platform) {
        ensure!(
            module.starts_with(b"\x7fELF"),
            "a {}/{} image needs a native ELF executable, and this file is not one",
            options.platform.os(),
            options.platform.architecture()
        );
        ensure!(options.layer == LayerKind::Tar, "a native executable can only go in a tar layer");
        return Ok(());
    }
    ensure!(
        module.starts_with(b"\0asm"),
        "the module does not start with the WebAssembly magic bytes `\\0asm`; \
         pass a compiled .wasm file (e.g. from `GOOS=wasip1 GOARCH=wasm go build`)"
    );
    Ok(())
}

fn check_entrypoint(entrypoint: &str) -> Result<()> {
    let Some(relative) = entrypoint.strip_prefix('/') else {
        bail!("entrypoint {entrypoint:?} must be an absolute path inside the image, like `/app.wasm`");
    };
    let clean = relative.split('/').all(|part| !matches!(part, "" | "." | ".."));
    ensure!(
        clean,
        "entrypoint {entrypoint:?} must name a file by a plain path: no empty, `.` or `..` parts and no trailing `/`"
    );
    Ok(())
}

fn image_config(options: &ImageOptions, created: u64, diff_id: Option<&str>) -> Result<ImageConfiguration> {
    let entrypoint =
        std::iter::once(options.entrypoint.clone()).chain(options.args.iter().cloned()).collect::<Vec<_>>();
    let mut config = ConfigBuilder::default().entrypoint(entrypoint);
    if let Some(dir) = &options.working_dir {
        config = config.working_dir(dir.clone());
    }
    if !options.env.is_empty() {
        config = config.env(env_entries(&options.env)?);
    }
    let mut labels: HashMap<String, String> = options.labels.clone().into_iter().collect();
    if !options.listen.is_empty() {
        ensure!(
            !labels.contains_key(fabricks_listen::LABEL),
            "the label {} is written from the listen spec ({}); give the spec as listen, not as a label",
            fabricks_listen::LABEL,
            options.listen
        );
        labels.insert(fabricks_listen::LABEL.to_owned(), options.listen.to_string());
        config = config.exposed_ports(options.listen.exposed_ports());
    }
    if !labels.is_empty() {
        config = config.labels(labels);
    }
    let history = HistoryBuilder::default()
        .created(rfc3339(created))
        .created_by(format!("fabricks: {} layer with {}", options.layer, options.entrypoint))
        .empty_layer(diff_id.is_none())
        .build()?;
    ImageConfigurationBuilder::default()
        .created(rfc3339(created))
        .os(options.platform.os().clone())
        .architecture(options.platform.architecture().clone())
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_id.map(str::to_owned).into_iter().collect::<Vec<_>>())
                .build()?,
        )
        .history(vec![history])
        .build()
        .context("assembling the image config")
}

fn env_entries(env: &[(String, String)]) -> Result<Vec<String>> {
    env.iter()
        .map(|(key, value)| {
            ensure!(
                !key.is_empty() && !key.contains('='),
                "environment variable name {key:?} must be non-empty and contain no `=`"
            );
            Ok(format!("{key}={value}"))
        })
        .collect()
}

fn image_manifest(options: &ImageOptions, config: &Blob, layer: &Blob) -> Result<ImageManifest> {
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor().clone())
        .layers(vec![layer.descriptor().clone()]);
    if !options.annotations.is_empty() {
        manifest = manifest.annotations(options.annotations.clone().into_iter().collect::<HashMap<_, _>>());
    }
    manifest.build().context("assembling the image manifest")
}
