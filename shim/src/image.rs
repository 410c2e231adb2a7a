//! What the runtime spec does not carry about a container's image — its config (ports) and
//! its OCI wasm layer, which containerd does not unpack into the rootfs — read from
//! containerd's content store.

use anyhow::{Context, Result};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use containerd_client::with_namespace;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

/// Layer media types that carry a wasm module as the blob itself: the table the CLI uses too.
pub use fabricks_image::media::WASM_LAYER_TYPES;

/// The image of a container, as far as the shim needs it.
pub struct Image {
    pub config: ImageConfiguration,
    /// The module, when the image carries it as a wasm layer and it was asked for.
    pub wasm: Option<Vec<u8>>,
}

/// Container `id`'s image, or `None` when it was created without one (`ctr run --rootfs`).
pub fn fetch(containerd: &str, namespace: &str, id: &str, with_wasm: bool) -> Result<Option<Image>> {
    block_on(fetch_async(containerd, namespace, id, with_wasm))
}

async fn fetch_async(containerd: &str, ns: &str, id: &str, with_wasm: bool) -> Result<Option<Image>> {
    let channel = connect(containerd).await?;
    let Some(image) = image_name(&channel, ns, id).await? else { return Ok(None) };
    let target = ImagesClient::new(channel.clone())
        .get(with_namespace!(GetImageRequest { name: image.clone() }, ns))
        .await
        .with_context(|| format!("looking up image {image}"))?
        .into_inner()
        .image
        .and_then(|i| i.target)
        .with_context(|| format!("image {image} has no target"))?;
    let manifest = manifest_of(&channel, ns, &target.media_type, &target.digest).await?;
    let config = read_blob(&channel, ns, manifest.config().digest().as_ref()).await?;
    let config = ImageConfiguration::from_reader(&config[..]).context("parsing the image config")?;
    let layer = manifest.layers().iter().find(|l| WASM_LAYER_TYPES.contains(&l.media_type().to_string().as_str()));
    let wasm = match layer {
        Some(layer) if with_wasm => {
            log::info!("module from wasm layer {} of {image}", layer.digest());
            Some(read_blob(&channel, ns, layer.digest().as_ref()).await?)
        }
        _ => None,
    };
    Ok(Some(Image { config, wasm }))
}

/// The image name container `id` was created from (`None`: none, `ctr run --rootfs`).
pub fn name_of(containerd: &str, ns: &str, id: &str) -> Result<Option<String>> {
    block_on(async { image_name(&connect(containerd).await?, ns, id).await })
}

async fn image_name(channel: &Channel, ns: &str, id: &str) -> Result<Option<String>> {
    let container = ContainersClient::new(channel.clone())
        .get(with_namespace!(GetContainerRequest { id: id.into() }, ns))
        .await
        .with_context(|| format!("looking up container {id}"))?
        .into_inner()
        .container
        .context("containerd returned no container")?;
    Ok((!container.image.is_empty()).then_some(container.image))
}

/// Whether containerd still has image `name` in namespace `ns`.
pub fn exists(containerd: &str, ns: &str, name: &str) -> Result<bool> {
    block_on(async {
        let channel = connect(containerd).await?;
        match ImagesClient::new(channel).get(with_namespace!(GetImageRequest { name: name.into() }, ns)).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => Ok(false),
            Err(status) => Err(status).with_context(|| format!("looking up image {name}")),
        }
    })
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

async fn connect(containerd: &str) -> Result<Channel> {
    let socket = containerd.trim_start_matches("unix://");
    containerd_client::connect(socket).await.with_context(|| format!("connecting to containerd at {socket}"))
}

/// The image's manifest. For an index: the `wasi/wasm` entry if containerd has it, else the
/// first entry it has — a CRI pull fetches only the node-platform entry, which `fabricks push`
/// lists with the same layer and labels.
async fn manifest_of(channel: &Channel, ns: &str, media_type: &str, digest: &str) -> Result<ImageManifest> {
    let blob = read_blob(channel, ns, digest).await?;
    if !media_type.contains("index") && !media_type.contains("manifest.list") {
        return ImageManifest::from_reader(&blob[..]).context("parsing the image manifest");
    }
    let index = ImageIndex::from_reader(&blob[..]).context("parsing the image index")?;
    let is_wasm = |m: &&Descriptor| m.platform().as_ref().is_some_and(|p| p.architecture().to_string() == "wasm");
    let (wasm, others): (Vec<_>, Vec<_>) = index.manifests().iter().partition(is_wasm);
    for entry in wasm.into_iter().chain(others) {
        match read_blob(channel, ns, entry.digest().as_ref()).await {
            Ok(blob) => return ImageManifest::from_reader(&blob[..]).context("parsing the image manifest"),
            Err(err) if is_not_found(&err) => log::debug!("manifest {} not in the content store", entry.digest()),
            Err(err) => return Err(err),
        }
    }
    anyhow::bail!(
        "containerd's content store holds none of the manifests image index {digest} lists; pull the image again"
    )
}

fn is_not_found(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<containerd_client::tonic::Status>())
        .any(|s| s.code() == containerd_client::tonic::Code::NotFound)
}

async fn read_blob(channel: &Channel, ns: &str, digest: &str) -> Result<Vec<u8>> {
    let request = ReadContentRequest { digest: digest.into(), offset: 0, size: 0 };
    let mut stream = ContentClient::new(channel.clone())
        .read(with_namespace!(request, ns))
        .await
        .with_context(|| format!("reading blob {digest} from containerd's content store"))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await.with_context(|| format!("reading blob {digest}"))? {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}
