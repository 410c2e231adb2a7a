//! Registry credentials: flags, then environment, then the docker config
//! (`credHelpers`, `credsStore` and `auths`), else anonymous.

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const ENV_USERNAME: &str = "FABRICKS_REGISTRY_USERNAME";
pub const ENV_PASSWORD: &str = "FABRICKS_REGISTRY_PASSWORD";

/// Credentials for one registry, and where they came from (for logs).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: String, from: String },
}

impl Credentials {
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "no credentials".into(),
            Credentials::Basic { username, from, .. } => format!("user {username:?} from {from}"),
        }
    }

    pub fn into_auth(self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password, .. } => RegistryAuth::Basic(username, password),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What the command line says about credentials.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub username: Option<String>,
    pub password_stdin: bool,
}

/// Credentials for `registry` (host[:port]): `--username` with
/// `--password-stdin` (or the password from the environment), else the
/// environment, else the docker config, else anonymous.
pub fn credentials(registry: &str, flags: &Flags) -> Result<Credentials> {
    let env_user = std::env::var(ENV_USERNAME).ok().filter(|v| !v.is_empty());
    let env_password = std::env::var(ENV_PASSWORD).ok();
    if let Some(username) = &flags.username {
        let password = if flags.password_stdin {
            read_password_stdin()?
        } else {
            env_password.with_context(|| {
                format!("--username {username} for {registry} needs a password: give --password-stdin or set {ENV_PASSWORD}")
            })?
        };
        return Ok(Credentials::Basic { username: username.clone(), password, from: "--username".into() });
    }
    ensure!(!flags.password_stdin, "--password-stdin needs --username");
    if let Some(username) = env_user {
        let password = env_password.with_context(|| format!("{ENV_USERNAME} is set but {ENV_PASSWORD} is not"))?;
        return Ok(Credentials::Basic { username, password, from: ENV_USERNAME.into() });
    }
    let Some(path) = docker_config_path() else {
        return Ok(Credentials::Anonymous);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(err) => return Err(err).with_context(|| format!("reading the docker config {}", path.display())),
    };
    let config = DockerConfig::parse(&text).with_context(|| format!("parsing the docker config {}", path.display()))?;
    let from = path.display().to_string();
    match config.source_for(registry)? {
        Source::None => Ok(Credentials::Anonymous),
        Source::Inline { username, password } => Ok(Credentials::Basic { username, password, from }),
        Source::Helper(helper) => match run_helper(&helper, registry)? {
            Some((username, password)) => {
                Ok(Credentials::Basic { username, password, from: format!("docker-credential-{helper} ({from})") })
            }
            None => match config.inline_for(registry)? {
                Some((username, password)) => Ok(Credentials::Basic { username, password, from }),
                None => Ok(Credentials::Anonymous),
            },
        },
    }
}

fn read_password_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading the password from stdin (--password-stdin)")?;
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    ensure!(!password.is_empty(), "--password-stdin: stdin held no password");
    Ok(password)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The parts of docker's config.json that hold credentials.
#[derive(Debug, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Where the credentials for a registry are to be found.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    None,
    Inline {
        username: String,
        password: String,
    },
    /// Run `docker-credential-<name> get`.
    Helper(String),
}

impl DockerConfig {
    pub fn parse(text: &str) -> Result<DockerConfig> {
        Ok(serde_json::from_str(text)?)
    }

    /// As docker chooses: a `credHelpers` entry for the registry, else
    /// `credsStore`, else the `auths` entry.
    pub fn source_for(&self, registry: &str) -> Result<Source> {
        let keys = config_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| self.cred_helpers.get(k)) {
            return Ok(Source::Helper(helper.clone()));
        }
        if let Some(store) = self.creds_store.as_ref().filter(|s| !s.is_empty()) {
            return Ok(Source::Helper(store.clone()));
        }
        Ok(match self.inline_for(registry)? {
            Some((username, password)) => Source::Inline { username, password },
            None => Source::None,
        })
    }

    /// The `auths` entry for the registry: `auth` (base64 of user:password),
    /// or `username` and `password`.
    pub fn inline_for(&self, registry: &str) -> Result<Option<(String, String)>> {
        let Some((key, entry)) = config_keys(registry)
            .into_iter()
            .find_map(|k| self.auths.get_key_value(&k))
            .or_else(|| self.auths.iter().find(|(k, _)| host_of(k) == registry))
        else {
            return Ok(None);
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .with_context(|| format!("auths.{key:?}.auth is not base64"))?;
            let decoded = String::from_utf8(decoded).with_context(|| format!("auths.{key:?}.auth is not UTF-8"))?;
            let Some((username, password)) = decoded.split_once(':') else {
                bail!("auths.{key:?}.auth does not decode to USER:PASSWORD");
            };
            return Ok(Some((username.to_owned(), password.to_owned())));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => Ok(Some((u.clone(), p.clone()))),
            _ => Ok(None),
        }
    }
}

/// The keys docker files a registry's credentials under; Docker Hub's is a URL.
fn config_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_owned()];
    if matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io") {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("index.docker.io".into());
        keys.push("docker.io".into());
    }
    keys.push(format!("https://{registry}"));
    keys.push(format!("http://{registry}"));
    keys
}

/// `https://host:port/path` → `host:port`.
fn host_of(key: &str) -> &str {
    let rest = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// `docker-credential-<helper> get` with the registry on stdin; `None` when
/// the helper has nothing for it.
fn run_helper(helper: &str, registry: &str) -> Result<Option<(String, String)>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running the docker credential helper {program} for {registry}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(registry.as_bytes())
        .with_context(|| format!("writing to {program}"))?;
    let output = child.wait_with_output().with_context(|| format!("waiting for {program}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let said = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        if said.to_lowercase().contains("not found") {
            log::debug!("{program} has no credentials for {registry}");
            return Ok(None);
        }
        bail!("the docker credential helper {program} failed for {registry} ({}): {}", output.status, said.trim());
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout)
        .with_context(|| format!("{program} answered something other than credentials JSON for {registry}"))?;
    Ok(Some((answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "auths": {
            "127.0.0.1:5001": {"auth": "YWxpY2U6czNjcmV0"},
            "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
            "https://registry.example.com/v2/": {"username": "bob", "password": "pw"},
            "empty.example.com": {}
        },
        "credHelpers": {"ghcr.io": "gh"}
    }"#;

    #[test]
    fn auths_decode_base64_user_password() {
        let config = DockerConfig::parse(CONFIG).unwrap();
        assert_eq!(
            config.source_for("127.0.0.1:5001").unwrap(),
            Source::Inline { username: "alice".into(), password: "s3cret".into() }
        );
        assert_eq!(
            config.source_for("docker.io").unwrap(),
            Source::Inline { username: "hub".into(), password: "hubpw".into() }
        );
        assert_eq!(
            config.source_for("registry.example.com").unwrap(),
            Source::Inline { username: "bob".into(), password: "pw".into() }
        );
        assert_eq!(config.source_for("empty.example.com").unwrap(), Source::None);
        assert_eq!(config.source_for("127.0.0.1:5000").unwrap(), Source::None);
    }

    #[test]
    fn cred_helpers_win_for_their_registry_and_creds_store_for_the_rest() {
        let config = DockerConfig::parse(CONFIG).unwrap();
        assert_eq!(config.source_for("ghcr.io").unwrap(), Source::Helper("gh".into()));
        let with_store = DockerConfig::parse(
            r#"{"credsStore": "desktop", "credHelpers": {"ghcr.io": "gh"}, "auths": {"quay.io": {}}}"#,
        )
        .unwrap();
        assert_eq!(with_store.source_for("ghcr.io").unwrap(), Source::Helper("gh".into()));
        assert_eq!(with_store.source_for("quay.io").unwrap(), Source::Helper("desktop".into()));
    }

    #[test]
    fn bad_auth_fields_are_errors_naming_the_entry() {
        let config = DockerConfig::parse(r#"{"auths": {"r.io": {"auth": "!!"}}}"#).unwrap();
        let err = config.source_for("r.io").unwrap_err().to_string();
        assert!(err.contains("r.io") && err.contains("base64"), "{err}");
        let config = DockerConfig::parse(r#"{"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}}"#).unwrap();
        assert!(config.source_for("r.io").is_err());
    }

    #[test]
    fn empty_config_means_anonymous() {
        assert_eq!(DockerConfig::parse("{}").unwrap().source_for("x.io").unwrap(), Source::None);
    }
}
