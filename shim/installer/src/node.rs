//! The node label the RuntimeClass schedules on: set once the runtime is registered, removed
//! on uninstall. One JSON merge patch to the API server, authenticated by the pod's service
//! account (the chart grants it `patch` on nodes).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fs;

const ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Sets `key=value` on `node`, or removes `key` when `value` is `None`.
pub fn set_label(node: &str, key: &str, value: Option<&str>) -> Result<()> {
    let patch = json!({ "metadata": { "labels": { key: value.map_or(Value::Null, Value::from) } } });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime for the API call")?;
    runtime.block_on(patch_node(node, &patch))
}

async fn patch_node(node: &str, patch: &Value) -> Result<()> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .context("KUBERNETES_SERVICE_HOST is not set: outside a pod, pass no --node-name (no label is set then)")?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let token = fs::read_to_string(format!("{ACCOUNT}/token"))
        .with_context(|| format!("reading {ACCOUNT}/token; does the pod mount its service account token?"))?;
    let ca = fs::read(format!("{ACCOUNT}/ca.crt")).with_context(|| format!("reading {ACCOUNT}/ca.crt"))?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).context("parsing the API server's CA")?)
        .build()
        .context("building the API client")?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("https://{host}:{port}/api/v1/nodes/{node}");
    let response = client
        .patch(&url)
        .bearer_auth(token.trim())
        .header("Content-Type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .with_context(|| format!("PATCH {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("labelling node {node} failed: {status}: {body}; the chart's ClusterRole must allow patch on nodes");
    }
    Ok(())
}
