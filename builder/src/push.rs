//! `fabricks push` and `fabricks build --push`: blobs the registry lacks,
//! the manifests by digest, then the image index (see [`crate::index`]) under
//! the tag, last, so a failed push never leaves a tag naming missing content.

use crate::auth;
use crate::cli::{PushArgs, RegistryArgs};
use crate::index::{self, Entry, IndexArgs};
use crate::oci_archive::PushableImage;
use crate::registry::{self, by_digest, client_reference, Registry};
use anyhow::{Context, Result};
use fabricks_image::oci_spec::image::MediaType;
use fabricks_image::Reference;
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use oci_client::RegistryOperation;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::io::IsTerminal;

/// Upload chunk size (one PATCH each); also the progress bar's step.
const CHUNK: usize = 1 << 20;

/// What a push did, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct PushReport {
    pub reference: String,
    /// Digest of the image index the tag points to.
    pub digest: String,
    pub manifest_digest: String,
    pub uploaded_bytes: u64,
    pub uploaded_blobs: usize,
    pub skipped_blobs: usize,
}

pub fn push_command(args: PushArgs) -> Result<()> {
    let reference: Reference =
        args.reference.parse().with_context(|| format!("the push target {:?}", args.reference))?;
    let image = PushableImage::read_archive(&args.image)?;
    let report = push(&image, &reference, &args.registry, &args.index)?;
    print_report(&report, args.json)
}

pub fn print_report(report: &PushReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("pushed: {}", report.reference);
        println!("digest: {}", report.digest);
    }
    Ok(())
}

pub fn push(
    image: &PushableImage,
    reference: &Reference,
    args: &RegistryArgs,
    index_args: &IndexArgs,
) -> Result<PushReport> {
    let entries = index::entries(image, &index_args.platforms()?)?;
    let credentials = auth::credentials(reference.registry(), &args.auth_flags())?;
    let registry = Registry::new(reference, args.insecure, credentials);
    let runtime = registry::runtime()?;
    runtime.block_on(push_async(&registry, image, &entries, reference))
}

async fn push_async(
    registry: &Registry,
    image: &PushableImage,
    entries: &[Entry],
    reference: &Reference,
) -> Result<PushReport> {
    let target = client_reference(reference);
    let what = format!("pushing {reference}");
    registry
        .client
        .auth(&target, &registry.auth, RegistryOperation::Push)
        .await
        .map_err(|e| registry.explain(e, &what))?;

    let mut uploaded_bytes = 0;
    let (mut uploaded_blobs, mut skipped_blobs) = (0, 0);
    let extra = entries.iter().filter_map(|e| e.extra_blob.as_ref());
    for (descriptor, data) in image.blobs.iter().chain(extra) {
        let digest = descriptor.digest().to_string();
        let exists = registry
            .client
            .blob_exists(&target, &digest)
            .await
            .map_err(|e| registry.explain(e, &format!("{what}: checking for blob {digest}")))?;
        if exists {
            log::info!("blob {digest} ({}) exists, skipped", size(data.len()));
            skipped_blobs += 1;
            continue;
        }
        upload(registry, &target, &digest, data)
            .await
            .map_err(|e| registry.explain(e, &format!("{what}: uploading blob {digest}")))?;
        log::info!("blob {digest} ({}) uploaded", size(data.len()));
        uploaded_bytes += data.len() as u64;
        uploaded_blobs += 1;
    }

    let mut pushed = std::collections::HashSet::new();
    for entry in entries {
        let digest = entry.descriptor.digest().to_string();
        if pushed.insert(digest.clone()) {
            push_manifest(registry, reference, &digest, &entry.manifest)
                .await
                .map_err(|e| registry.explain(e, &format!("{what}: putting manifest {digest}")))?;
            log::info!("manifest {digest} pushed");
        }
    }
    let manifest_digest = image.manifest_descriptor.digest().to_string();

    let index = index::index_bytes(entries, &image.annotations)?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&index)));
    registry
        .client
        .push_manifest_raw(
            &target,
            index,
            MediaType::ImageIndex.to_string().parse().expect("a media type is a header value"),
        )
        .await
        .map_err(|e| registry.explain(e, &format!("{what}: tagging index {digest}")))?;
    log::info!("index {digest} tagged {reference}");

    Ok(PushReport {
        reference: reference.to_string(),
        digest,
        manifest_digest,
        uploaded_bytes,
        uploaded_blobs,
        skipped_blobs,
    })
}

async fn push_manifest(
    registry: &Registry,
    reference: &Reference,
    digest: &str,
    manifest: &[u8],
) -> oci_client::errors::Result<String> {
    registry
        .client
        .push_manifest_raw(
            &by_digest(reference, digest),
            manifest.to_vec(),
            MediaType::ImageManifest.to_string().parse().expect("a media type is a header value"),
        )
        .await
}

async fn upload(
    registry: &Registry,
    target: &oci_client::Reference,
    digest: &str,
    data: &[u8],
) -> oci_client::errors::Result<String> {
    let bar = progress_bar(digest, data.len() as u64);
    let chunks: Vec<bytes::Bytes> = data.chunks(CHUNK).map(bytes::Bytes::copy_from_slice).collect();
    let counter = bar.clone();
    let stream = stream::iter(chunks.into_iter().map(move |chunk| {
        counter.inc(chunk.len() as u64);
        Ok(chunk)
    }));
    let result = registry.client.push_blob_stream(target, stream, digest, Some(data.len() as u64)).await;
    bar.finish_and_clear();
    result
}

fn progress_bar(digest: &str, len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || !log::log_enabled!(log::Level::Info) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(format!("uploading {}", &digest[..digest.len().min(19)]));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30.cyan}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("the bar template is valid")
            .progress_chars("=> "),
    );
    bar
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
