use anyhow::{bail, ensure, Result};
use std::fmt;
use std::str::FromStr;

const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

/// A tagged image reference, normalised the way Docker and the Kubernetes CRI
/// normalise names (`go-hello` → `docker.io/library/go-hello:latest`), so the
/// name an image is imported under is the name a Pod spec finds it by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: String,
}

impl Reference {
    /// `localhost/<name>:latest`, with `name` lowered and any character an
    /// image name cannot hold turned into `-` (for names taken from
    /// directory names).
    pub fn localhost(name: &str) -> Result<Self> {
        let repository = repository_from(name);
        ensure!(!repository.is_empty(), "cannot make an image name out of {name:?}; give one with -t/--tag");
        format!("localhost/{repository}:{DEFAULT_TAG}").parse()
    }

    /// Host (and port) of the registry, e.g. `localhost` or `docker.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Path inside the registry, e.g. `go-hello` or `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Registry and repository without the tag, e.g. `localhost/go-hello`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

impl FromStr for Reference {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        ensure!(
            !text.contains('@'),
            "image reference {text:?} names a digest; a built image needs a tag such as `localhost/app:latest`"
        );
        let (name, tag) = split_tag(text);
        let (registry, repository) = split_registry(name);
        check_registry(text, &registry)?;
        check_repository(text, &repository)?;
        check_tag(text, tag)?;
        ensure!(registry.len() + 1 + repository.len() <= 255, "image name in {text:?} is longer than 255 characters");
        Ok(Reference { registry, repository, tag: tag.to_owned() })
    }
}

/// Splits off the tag: the part after the last `:` unless a `/` follows it,
/// in which case that `:` belonged to a registry port.
fn split_tag(text: &str) -> (&str, &str) {
    match text.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (text, DEFAULT_TAG),
    }
}

fn split_registry(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (first.to_owned(), rest.to_owned()),
        Some(_) => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        None => (DEFAULT_REGISTRY.to_owned(), format!("library/{name}")),
    }
}

fn looks_like_registry(component: &str) -> bool {
    component == "localhost" || component.contains(['.', ':']) || component.chars().any(|c| c.is_ascii_uppercase())
}

fn check_registry(text: &str, registry: &str) -> Result<()> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !(host_ok && port_ok) {
        bail!("registry {registry:?} in image reference {text:?} is not a host name with an optional :port");
    }
    Ok(())
}

fn check_repository(text: &str, repository: &str) -> Result<()> {
    for component in repository.split('/') {
        if !is_path_component(component) {
            bail!(
                "{component:?} in image reference {text:?} is not a valid name component: use lowercase \
                 letters and digits, separated by single `.`, `_`, `__` or dashes"
            );
        }
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(alnum)
        && component.ends_with(alnum)
        && component.chars().all(|c| alnum(c) || matches!(c, '.' | '_' | '-'))
        && component
            .split(alnum)
            .filter(|separator| !separator.is_empty())
            .all(|separator| matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-'))
}

fn check_tag(text: &str, tag: &str) -> Result<()> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = tag.len() <= 128 && tag.starts_with(word) && tag.chars().all(|c| word(c) || matches!(c, '.' | '-'));
    if !ok {
        bail!(
            "tag {tag:?} in image reference {text:?} is not valid: use up to 128 letters, digits, `_`, `.` \
             or `-`, not starting with `.` or `-`"
        );
    }
    Ok(())
}

/// Keeps a name that is already valid; otherwise lowers it and turns every run
/// of other characters into a single `-`.
fn repository_from(name: &str) -> String {
    let lowered = name.to_ascii_lowercase();
    if is_path_component(&lowered) {
        return lowered;
    }
    let dashed: String =
        lowered.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' }).collect();
    dashed.split('-').filter(|part| !part.is_empty()).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> String {
        text.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(parse("localhost/go-hello:latest"), "localhost/go-hello:latest");
        assert_eq!(parse("localhost/go-hello"), "localhost/go-hello:latest");
        assert_eq!(parse("go-hello"), "docker.io/library/go-hello:latest");
        assert_eq!(parse("acme/go-hello:v1"), "docker.io/acme/go-hello:v1");
        assert_eq!(parse("registry:5000/a/b"), "registry:5000/a/b:latest");
        assert_eq!(parse("ghcr.io/acme/app_x:1.2.3-rc.1"), "ghcr.io/acme/app_x:1.2.3-rc.1");
    }

    #[test]
    fn parts_are_reachable() {
        let r: Reference = "localhost:5000/team/go-hello:v2".parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/go-hello");
        assert_eq!(r.tag(), "v2");
        assert_eq!(r.name(), "localhost:5000/team/go-hello");
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in ["Go-Hello", "localhost/a--", "localhost/a..b", "a:-tag", "a@sha256:00", "localhost/", ""] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn localhost_names_come_from_any_directory_name() {
        assert_eq!(Reference::localhost("go-hello").unwrap().to_string(), "localhost/go-hello:latest");
        assert_eq!(Reference::localhost("My App!").unwrap().to_string(), "localhost/my-app:latest");
        assert_eq!(Reference::localhost("a_b").unwrap().to_string(), "localhost/a_b:latest");
        assert!(Reference::localhost("!!!").is_err());
    }
}
