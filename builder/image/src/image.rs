use crate::blob::Blob;
use crate::config::ImageConfig;
use crate::created::{check_representable, rfc3339, source_date_epoch};
use crate::index::{self, IndexEntry};
use crate::layer::{self, LayerKind};
use crate::payload::Payload;
use crate::wasm::{WasmKind, LABEL_WASM_KIND};
use crate::{json, Reference};
use anyhow::{bail, ensure, Context, Result};
use fabricks_listen::ListenSpec;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, Platform, PlatformBuilder, RootFsBuilder,
};
use std::collections::{BTreeMap, HashMap};

/// What to build around a payload besides its files.
#[derive(Clone, Debug)]
pub struct ImageOptions {
    pub reference: Reference,
    pub layer: LayerKind,
    /// Default environment of the program, as `Env` `KEY=VALUE` entries.
    pub env: Vec<(String, String)>,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// TCP endpoints the program serves: each becomes an `ExposedPorts` entry (`8080/tcp`),
    /// and the whole spec the label `fabricks.io/listen` (ports cannot carry names). Empty:
    /// neither.
    pub listen: ListenSpec,
    /// Manifest annotations, typically `org.opencontainers.image.*`.
    pub annotations: BTreeMap<String, String>,
    /// Seconds since the Unix epoch for `created` and file times; `None` reads
    /// `SOURCE_DATE_EPOCH`, else uses 0.
    pub created: Option<u64>,
    /// `wasi/wasm` ([`platform`]) for wasm; a Linux platform ([`host_platform`]) packs a native
    /// executable instead, which is how the same project is built for runc to compare against.
    pub platform: Platform,
    /// Node platforms the tag's index also lists a wasm image under (see [`crate::index`]).
    pub node_platforms: Vec<Platform>,
}

impl ImageOptions {
    /// A tar-layer `wasi/wasm` image with no env, labels, annotations or node platforms.
    pub fn new(reference: Reference) -> Self {
        ImageOptions {
            reference,
            layer: LayerKind::Tar,
            env: Vec::new(),
            labels: BTreeMap::new(),
            listen: ListenSpec::default(),
            annotations: BTreeMap::new(),
            created: None,
            platform: platform(),
            node_platforms: Vec::new(),
        }
    }
}

/// An OCI image held in memory: its manifest, config and layer blobs, the typed documents
/// they encode, and the entries a tag's index lists it under. [`Image::build`] makes one from a
/// payload; [`crate::read_image`] reads one from an archive or a registry. Publishers
/// ([`crate::Publisher`]) take it from there.
#[derive(Clone, Debug)]
pub struct Image {
    reference: Reference,
    created: u64,
    platform: Option<Platform>,
    config: ImageConfig,
    config_blob: Blob,
    manifest: ImageManifest,
    manifest_blob: Blob,
    layers: Vec<Blob>,
    node_entries: Vec<IndexEntry>,
}

/// The platform of wasm images: `wasi/wasm`.
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

fn is_wasm_platform(platform: &Platform) -> bool {
    *platform.architecture() == Arch::Wasm
}

impl Image {
    /// Builds the single-layer image of `payload`.
    pub fn build(payload: &Payload, options: &ImageOptions) -> Result<Self> {
        payload.check()?;
        let kind = check_executable(payload, options)?;
        let created = match options.created {
            Some(secs) => secs,
            None => source_date_epoch()?,
        };
        check_representable(created)?;

        let layer = layer::build(options.layer, payload, created)?;
        let config = image_config(payload, options, kind, created, layer.diff_id.as_ref().map(|d| d.as_ref()))?;
        let config_blob = Blob::new(MediaType::ImageConfig, json::canonical(&config)?);
        let manifest = image_manifest(options, &config_blob, &layer.blob)?;
        let manifest_blob = Blob::new(MediaType::ImageManifest, json::canonical(&manifest)?);
        let mut image = Image {
            reference: options.reference.clone(),
            created,
            platform: Some(options.platform.clone()),
            config: ImageConfig::parse(&MediaType::ImageConfig, config_blob.data())?,
            config_blob,
            manifest,
            manifest_blob,
            layers: vec![layer.blob],
            node_entries: Vec::new(),
        };
        image.list_for_nodes(&options.node_platforms)?;
        Ok(image)
    }

    /// An image from blobs read elsewhere (checked against their descriptors by the reader).
    pub(crate) fn from_parts(
        reference: Reference,
        platform: Option<Platform>,
        manifest_blob: Blob,
        config_blob: Blob,
        layers: Vec<Blob>,
    ) -> Result<Self> {
        let manifest = ImageManifest::from_reader(manifest_blob.data()).context("parsing the image manifest")?;
        let config = ImageConfig::parse(manifest.config().media_type(), config_blob.data())?;
        // The descriptor it was read by may carry the archive's or index's annotations: the
        // manifest is described afresh, by its content.
        let manifest_blob = Blob::new(manifest_blob.media_type().clone(), manifest_blob.data().to_vec());
        let platform = platform.or_else(|| config.platform());
        Ok(Image {
            reference,
            created: 0,
            platform,
            config,
            config_blob,
            manifest,
            manifest_blob,
            layers,
            node_entries: Vec::new(),
        })
    }

    /// Lists a wasm image under `platforms` too in the tag's index (replacing any listed
    /// before); an image for a node platform already (a native one) gets none.
    pub fn list_for_nodes(&mut self, platforms: &[Platform]) -> Result<()> {
        self.node_entries = match self.is_wasm() {
            true => {
                index::node_entries(&self.own_entry(), &self.config_blob, !self.config.diff_ids.is_empty(), platforms)?
            }
            false => Vec::new(),
        };
        Ok(())
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Seconds since the Unix epoch the image is stamped with (0 for an image read back).
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The platform the manifest is for, if known.
    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref()
    }

    /// Whether this is a wasm image: its platform, or else its config, says `wasm`, or it is
    /// made of wasm layers only.
    pub fn is_wasm(&self) -> bool {
        match &self.platform {
            Some(platform) => is_wasm_platform(platform),
            None => {
                self.config.is_wasm()
                    || (!self.layers.is_empty()
                        && self.layers.iter().all(|l| crate::media::is_wasm_layer(l.media_type().as_ref())))
            }
        }
    }

    /// The config as a runtime reads it.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    pub fn config_blob(&self) -> &Blob {
        &self.config_blob
    }

    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    pub fn manifest_blob(&self) -> &Blob {
        &self.manifest_blob
    }

    pub fn layers(&self) -> &[Blob] {
        &self.layers
    }

    /// The manifest's annotations, which the tag's index repeats.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.manifest.annotations().clone().unwrap_or_default().into_iter().collect()
    }

    /// Descriptor of the manifest with its platform, as an index lists it.
    pub fn manifest_descriptor(&self) -> Descriptor {
        let mut descriptor = self.manifest_blob.descriptor().clone();
        descriptor.set_platform(self.platform.clone());
        descriptor
    }

    fn own_entry(&self) -> IndexEntry {
        IndexEntry { descriptor: self.manifest_descriptor(), manifest: self.manifest_blob.clone(), config: None }
    }

    /// The manifests a tag's index lists, the image's own first, then those for node
    /// platforms ([`Image::list_for_nodes`]).
    pub fn entries(&self) -> Vec<IndexEntry> {
        std::iter::once(self.own_entry()).chain(self.node_entries.iter().cloned()).collect()
    }

    /// The index a tag points to (see [`crate::index`]).
    pub fn index(&self) -> Result<Blob> {
        index::index_blob(&self.entries(), &self.annotations())
    }

    /// Every blob besides manifests, in the order a registry push uploads them: config, layers,
    /// then the node-platform configs.
    pub fn blobs(&self) -> Vec<&Blob> {
        let extra = self.node_entries.iter().filter_map(|e| e.config.as_ref());
        std::iter::once(&self.config_blob).chain(&self.layers).chain(extra).collect()
    }
}

/// Checks the program against the platform; for wasm, says whether it is a module or a
/// component.
fn check_executable(payload: &Payload, options: &ImageOptions) -> Result<Option<WasmKind>> {
    let (path, program) = payload.program()?;
    if !is_wasm_platform(&options.platform) {
        ensure!(
            program.starts_with(b"\x7fELF"),
            "a {}/{} image needs a native ELF executable, and {path} is not one",
            options.platform.os(),
            options.platform.architecture()
        );
        ensure!(options.layer == LayerKind::Tar, "a native executable can only go in a tar layer");
        return Ok(None);
    }
    ensure!(
        program.starts_with(b"\0asm"),
        "{path} does not start with the WebAssembly magic bytes `\\0asm`; \
         pass a compiled .wasm file (e.g. from `GOOS=wasip1 GOARCH=wasm go build`)"
    );
    Ok(WasmKind::of(program))
}

fn image_config(
    payload: &Payload,
    options: &ImageOptions,
    kind: Option<WasmKind>,
    created: u64,
    diff_id: Option<&str>,
) -> Result<ImageConfiguration> {
    let mut config = ConfigBuilder::default().entrypoint(payload.entrypoint());
    if !payload.args().is_empty() {
        config = config.cmd(payload.args().to_vec());
    }
    if let Some(dir) = payload.workdir() {
        config = config.working_dir(dir.to_owned());
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
    if let Some(kind) = kind {
        labels.entry(LABEL_WASM_KIND.to_owned()).or_insert_with(|| kind.to_string());
    }
    if !labels.is_empty() {
        config = config.labels(labels);
    }
    let (program, _) = payload.program()?;
    let history = HistoryBuilder::default()
        .created(rfc3339(created))
        .created_by(format!("fabricks: {} layer with {program}", options.layer))
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
            if key.is_empty() || key.contains('=') {
                bail!("environment variable name {key:?} must be non-empty and contain no `=`");
            }
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
