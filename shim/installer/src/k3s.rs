//! k3s and RKE2 regenerate containerd's `config.toml` at every start, so an edit there is
//! lost: they read a Go template beside it instead (`config.toml.tmpl` for their containerd
//! 1.7 configs, `config-v3.toml.tmpl` for containerd 2.x). A template is not TOML, so our
//! runtime goes in as a marked block of text after the `{{ template "base" . }}` line.

use crate::config::{self, Schema};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What a template we create starts with: k3s's own config, unchanged.
pub const BASE: &str = "{{ template \"base\" . }}\n";
const BEGIN: &str = "# fabricks-node-installer: begin (its uninstall removes this block)";
const END: &str = "# fabricks-node-installer: end";

/// The distributions that keep containerd's config under their agent directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distro {
    K3s,
    Rke2,
}

impl Distro {
    pub fn name(self) -> &'static str {
        match self {
            Distro::K3s => "k3s",
            Distro::Rke2 => "rke2",
        }
    }

    /// Host path of the directory holding the generated config and its templates.
    pub fn config_dir(self) -> PathBuf {
        PathBuf::from(format!("/var/lib/rancher/{}/agent/etc/containerd", self.name()))
    }

    /// Units that run containerd on such a node: server first, then agent.
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Distro::K3s => &["k3s", "k3s-agent"],
            Distro::Rke2 => &["rke2-server", "rke2-agent"],
        }
    }

    /// Which distro owns `config` (a host path), if any.
    pub fn owning(config: &Path) -> Option<Distro> {
        [Distro::K3s, Distro::Rke2].into_iter().find(|d| config.starts_with(d.config_dir()))
    }
}

/// The template file for a schema, in the directory of the generated config.
pub fn template_name(schema: Schema) -> &'static str {
    match schema {
        Schema::V3 => "config-v3.toml.tmpl",
        Schema::V1 | Schema::V2 => "config.toml.tmpl",
    }
}

/// Our block for a template rendering a config of `schema`.
pub fn block(schema: Schema) -> String {
    let mut table = toml_edit::DocumentMut::new();
    let plugin = table.as_table_mut();
    let path = [schema.cri_plugin(), "containerd", "runtimes"];
    let mut parent = plugin.entry("plugins").or_insert(implicit()).as_table_mut().expect("new table");
    for key in path {
        parent = parent.entry(key).or_insert(implicit()).as_table_mut().expect("new table");
    }
    let mut ours = config::runtime_table();
    ours.decor_mut().clear();
    parent.insert(config::RUNTIME_NAME, toml_edit::Item::Table(ours));
    format!("{BEGIN}\n{}{END}\n", table.to_string().trim_start())
}

fn implicit() -> toml_edit::Item {
    let mut table = toml_edit::Table::new();
    table.set_implicit(true);
    toml_edit::Item::Table(table)
}

/// `text` with our block for `schema` (replacing an outdated one of ours); unchanged when the
/// same block is there.
pub fn add_block(text: &str, schema: Schema) -> String {
    let wanted = block(schema);
    if text.contains(&wanted) {
        return text.to_owned();
    }
    let mut out = remove_block(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&wanted);
    out
}

/// `text` without our block and the blank line `add_block` put before it.
pub fn remove_block(text: &str) -> String {
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        return text.to_owned();
    };
    if end < start {
        return text.to_owned();
    }
    let after = text[end + END.len()..].strip_prefix('\n').unwrap_or(&text[end + END.len()..]);
    let before = text[..start].strip_suffix("\n\n").map(|b| format!("{b}\n"));
    before.unwrap_or_else(|| text[..start].to_owned()) + after
}

/// The schema of the generated config beside the template, when k3s has written one.
pub fn generated_schema(generated: Option<&str>, what: &str) -> Result<Option<Schema>> {
    let Some(text) = generated else {
        return Ok(None);
    };
    Ok(Some(config::schema(&config::parse(text, what)?, what)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_template_is_base_plus_block() {
        let out = add_block(BASE, Schema::V2);
        assert!(out.starts_with(BASE));
        assert!(out.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.fabricks]"), "{out}");
        assert!(out.contains("runtime_type = \"io.containerd.fabricks.v1\""));
        assert!(out.contains("pod_annotations = [\"fabricks.io/*\"]"));
        assert_eq!(add_block(&out, Schema::V2), out, "second add changes nothing");
        assert_eq!(remove_block(&out), BASE);
    }

    #[test]
    fn v3_template_uses_the_cri_runtime_plugin() {
        let out = add_block(BASE, Schema::V3);
        assert!(out.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.fabricks]"), "{out}");
    }

    #[test]
    fn block_after_base_renders_valid_toml() {
        // What k3s renders: its base config, then our block.
        let base = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        let rendered = add_block(BASE, Schema::V2).replace(BASE, base);
        let doc = config::parse(&rendered, "rendered").unwrap();
        let runtimes = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert_eq!(runtimes["fabricks"]["runtime_type"].as_str(), Some(config::RUNTIME_TYPE));
        assert_eq!(runtimes["runc"]["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    }

    #[test]
    fn user_template_keeps_its_content() {
        let user = "{{ template \"base\" . }}\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"";
        let out = add_block(user, Schema::V2);
        assert!(out.starts_with(user));
        assert_eq!(remove_block(&out), format!("{user}\n"));
    }

    #[test]
    fn outdated_block_is_replaced() {
        let old = add_block(BASE, Schema::V2);
        let new = add_block(&old, Schema::V3);
        assert_eq!(new.matches(BEGIN).count(), 1);
        assert!(new.contains("io.containerd.cri.v1.runtime"));
    }

    #[test]
    fn distro_of_a_config_path() {
        let k3s = Path::new("/var/lib/rancher/k3s/agent/etc/containerd/config.toml");
        assert_eq!(Distro::owning(k3s), Some(Distro::K3s));
        let rke2 = Path::new("/var/lib/rancher/rke2/agent/etc/containerd/config.toml");
        assert_eq!(Distro::owning(rke2), Some(Distro::Rke2));
        assert_eq!(Distro::owning(Path::new("/etc/containerd/config.toml")), None);
    }

    #[test]
    fn schema_of_the_generated_config() {
        assert_eq!(generated_schema(Some("version = 3\n"), "c").unwrap(), Some(Schema::V3));
        assert_eq!(generated_schema(None, "c").unwrap(), None);
        assert!(generated_schema(Some("version = [\n"), "c").is_err());
    }
}
