//! Talking to an OCI registry: which scheme, which client, and what its
//! errors mean in words that name the registry.

use crate::auth::Credentials;
use anyhow::{anyhow, Context, Result};
use fabricks_image::oci_spec::image::Descriptor;
use fabricks_image::{media, Blob, Reference};
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use std::error::Error as _;
use std::io::IsTerminal;

/// Upload chunk size (one PATCH each); also the progress bar's step.
const CHUNK: usize = 1 << 20;

/// Whether to speak plain HTTP to `registry` (host[:port]): always with
/// `--insecure`, else only for the loopback names, as docker and containerd do.
pub fn plain_http(registry: &str, insecure: bool) -> bool {
    insecure || is_loopback(registry)
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// A client for one registry with the credentials that go with it.
pub struct Registry {
    pub client: Client,
    pub auth: RegistryAuth,
    /// Host[:port], for messages.
    pub name: String,
    pub scheme: &'static str,
    /// Which credentials were sent, for the 401 message.
    pub sent: String,
}

impl Registry {
    pub fn new(reference: &Reference, insecure: bool, credentials: Credentials) -> Registry {
        let name = reference.registry().to_owned();
        let plain = plain_http(&name, insecure);
        let config = ClientConfig {
            protocol: if plain { ClientProtocol::Http } else { ClientProtocol::Https },
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            ..ClientConfig::default()
        };
        let sent = credentials.describe();
        log::debug!("registry {name}: {} with {sent}", if plain { "http" } else { "https" });
        Registry {
            sent,
            client: Client::new(config),
            auth: credentials.into_auth(),
            name,
            scheme: if plain { "http" } else { "https" },
        }
    }

    /// Turns a client error into one that says what failed, at which registry, and why.
    pub fn explain(&self, err: OciDistributionError, what: &str) -> anyhow::Error {
        explain(&self.name, self.scheme, &self.sent, err, what)
    }
}

/// `reference` as the client spells it (by tag).
pub fn client_reference(reference: &Reference) -> oci_client::Reference {
    oci_client::Reference::with_tag(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        reference.tag().to_owned(),
    )
}

/// The same repository, addressed by `digest`.
pub fn by_digest(reference: &Reference, digest: &str) -> oci_client::Reference {
    oci_client::Reference::with_digest(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        digest.to_owned(),
    )
}

/// Pushing to one tag of a registry: the real [`crate::push::Uploads`].
pub struct Upload<'a> {
    registry: &'a Registry,
    reference: &'a Reference,
    target: oci_client::Reference,
    what: String,
}

impl<'a> Upload<'a> {
    pub fn new(registry: &'a Registry, reference: &'a Reference) -> Upload<'a> {
        Upload { registry, reference, target: client_reference(reference), what: format!("pushing {reference}") }
    }

    /// Asks for push rights first, so a refusal is one clear error before any upload.
    pub async fn authenticate(&self) -> Result<()> {
        let registry = self.registry;
        registry
            .client
            .auth(&self.target, &registry.auth, RegistryOperation::Push)
            .await
            .map_err(|e| registry.explain(e, &self.what))?;
        Ok(())
    }
}

impl crate::push::Uploads for Upload<'_> {
    async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        let digest = blob.digest().to_string();
        self.registry
            .client
            .blob_exists(&self.target, &digest)
            .await
            .map_err(|e| self.registry.explain(e, &format!("{}: checking for blob {digest}", self.what)))
    }

    async fn put_blob(&self, blob: &Blob) -> Result<()> {
        let digest = blob.digest().to_string();
        let data = blob.data();
        let bar = progress_bar(&digest, data.len() as u64);
        let chunks: Vec<bytes::Bytes> = data.chunks(CHUNK).map(bytes::Bytes::copy_from_slice).collect();
        let counter = bar.clone();
        let chunks = stream::iter(chunks.into_iter().map(move |chunk| {
            counter.inc(chunk.len() as u64);
            Ok(chunk)
        }));
        let result =
            self.registry.client.push_blob_stream(&self.target, chunks, &digest, Some(data.len() as u64)).await;
        bar.finish_and_clear();
        result.map_err(|e| self.registry.explain(e, &format!("{}: uploading blob {digest}", self.what)))?;
        Ok(())
    }

    async fn put_manifest(&self, manifest: &Blob) -> Result<()> {
        let digest = manifest.digest().to_string();
        let target = by_digest(self.reference, &digest);
        self.put(&target, manifest)
            .await
            .map_err(|e| self.registry.explain(e, &format!("{}: putting manifest {digest}", self.what)))
    }

    async fn put_index(&self, index: &Blob) -> Result<()> {
        let digest = index.digest();
        self.put(&self.target, index)
            .await
            .map_err(|e| self.registry.explain(e, &format!("{}: tagging index {digest}", self.what)))
    }
}

impl Upload<'_> {
    async fn put(&self, target: &oci_client::Reference, document: &Blob) -> oci_client::errors::Result<()> {
        let content_type = document.media_type().to_string().parse().expect("a media type is a header value");
        self.registry.client.push_manifest_raw(target, document.data().to_vec(), content_type).await.map(drop)
    }
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

/// Reading an image from a registry: the [`fabricks_image::Source`] of `fabricks run REF`.
pub struct RegistrySource<'a> {
    registry: &'a Registry,
    reference: &'a Reference,
    runtime: tokio::runtime::Runtime,
    what: String,
}

impl<'a> RegistrySource<'a> {
    pub fn new(registry: &'a Registry, reference: &'a Reference) -> Result<RegistrySource<'a>> {
        Ok(RegistrySource { registry, reference, runtime: runtime()?, what: format!("pulling {reference}") })
    }

    fn manifest_at(&self, target: &oci_client::Reference, what: &str) -> Result<Vec<u8>> {
        let registry = self.registry;
        let (bytes, _) = self
            .runtime
            .block_on(registry.client.pull_manifest_raw(target, &registry.auth, &media::top_level_types()))
            .map_err(|e| registry.explain(e, what))?;
        Ok(bytes.to_vec())
    }
}

impl fabricks_image::Source for RegistrySource<'_> {
    fn top(&mut self) -> Result<(Option<String>, Vec<u8>)> {
        Ok((None, self.manifest_at(&client_reference(self.reference), &self.what)?))
    }

    fn manifest(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let digest = descriptor.digest().to_string();
        self.manifest_at(&by_digest(self.reference, &digest), &format!("{}: manifest {digest}", self.what))
    }

    fn blob(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let digest = descriptor.digest().to_string();
        let mut data = Vec::new();
        self.runtime
            .block_on(self.registry.client.pull_blob(&client_reference(self.reference), digest.as_str(), &mut data))
            .map_err(|e| self.registry.explain(e, &format!("{}: blob {digest}", self.what)))?;
        Ok(data)
    }
}

/// What kind of failure a client error is.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    Unreachable,
    Unauthorized,
    Denied,
    NotFound,
    Other,
}

pub fn classify(err: &OciDistributionError) -> Failure {
    let status = |code: u16| match code {
        401 => Failure::Unauthorized,
        403 => Failure::Denied,
        404 => Failure::NotFound,
        _ => Failure::Other,
    };
    match err {
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => Failure::Unreachable,
        OciDistributionError::RequestError(e) => e.status().map_or(Failure::Other, |s| status(s.as_u16())),
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            Failure::Unauthorized
        }
        OciDistributionError::ServerError { code, .. } => status(*code),
        OciDistributionError::ImageManifestNotFoundError(_) => Failure::NotFound,
        OciDistributionError::RegistryError { envelope, .. } => match envelope.errors.first().map(|e| &e.code) {
            Some(OciErrorCode::Unauthorized) => Failure::Unauthorized,
            Some(OciErrorCode::Denied) => Failure::Denied,
            Some(
                OciErrorCode::ManifestUnknown
                | OciErrorCode::NameUnknown
                | OciErrorCode::BlobUnknown
                | OciErrorCode::NotFound,
            ) => Failure::NotFound,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

fn explain(registry: &str, scheme: &str, sent: &str, err: OciDistributionError, what: &str) -> anyhow::Error {
    let cause = root_cause(&err);
    match classify(&err) {
        Failure::Unreachable => anyhow!(
            "{what}: cannot reach the registry {registry} over {scheme}: {cause}{}",
            if scheme == "https" { " (a plain-HTTP registry needs --insecure)" } else { "" }
        ),
        Failure::Unauthorized => anyhow!(
            "{what}: the registry {registry} answered 401 unauthorized to {sent}: the credentials \
             are missing or wrong (give --username with --password-stdin, set \
             FABRICKS_REGISTRY_USERNAME/FABRICKS_REGISTRY_PASSWORD, or `docker login {registry}`)"
        ),
        Failure::Denied => {
            anyhow!("{what}: the registry {registry} answered 403 denied: these credentials may not do this")
        }
        Failure::NotFound => anyhow!("{what}: not found in the registry {registry} (404): {cause}"),
        Failure::Other => anyhow!("{what}: the registry {registry} failed: {cause}"),
    }
}

/// The error and its sources on one line (reqwest hides the useful part, such
/// as "Connection refused", in its sources).
fn root_cause(err: &OciDistributionError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let line = inner.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = inner.source();
    }
    text
}

/// A current-thread runtime for the client's async calls.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime for registry requests")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_default_to_plain_http() {
        for name in ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "[::1]:5000", "[::1]"] {
            assert!(plain_http(name, false), "{name}");
        }
        for name in ["docker.io", "ghcr.io", "registry.example.com:5000", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!plain_http(name, false), "{name}");
            assert!(plain_http(name, true), "{name} with --insecure");
        }
    }

    #[test]
    fn references_keep_registry_repository_and_tag() {
        let ours: Reference = "127.0.0.1:5000/examples/go-hello:dev".parse().unwrap();
        let theirs = client_reference(&ours);
        assert_eq!(theirs.registry(), "127.0.0.1:5000");
        assert_eq!(theirs.repository(), "examples/go-hello");
        assert_eq!(theirs.tag(), Some("dev"));
        let digest = by_digest(&ours, "sha256:0123");
        assert_eq!(digest.digest(), Some("sha256:0123"));
        assert_eq!(digest.repository(), "examples/go-hello");
    }

    #[test]
    fn short_names_go_to_docker_hub_over_https() {
        let ours: Reference = "app".parse().unwrap();
        assert_eq!(ours.to_string(), "docker.io/library/app:latest");
        assert!(!plain_http(ours.registry(), false));
    }

    #[test]
    fn a_refused_connection_is_unreachable_and_names_the_registry() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let reference: Reference = format!("127.0.0.1:{port}/a/b:c").parse().unwrap();
        let registry = Registry::new(&reference, false, Credentials::Anonymous);
        let err = runtime()
            .unwrap()
            .block_on(registry.client.auth(
                &client_reference(&reference),
                &registry.auth,
                oci_client::RegistryOperation::Pull,
            ))
            .unwrap_err();
        assert_eq!(classify(&err), Failure::Unreachable);
        let text = registry.explain(err, "pulling x").to_string();
        assert!(text.contains(&format!("cannot reach the registry 127.0.0.1:{port} over http")), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
