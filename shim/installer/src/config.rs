//! containerd's `config.toml`: which CRI plugin table a config uses, and adding or removing
//! the `fabricks` runtime there. Edits go through `toml_edit`, so the user's comments, key
//! order and other runtimes come out exactly as they went in.

use anyhow::{bail, Context, Result};
use toml_edit::{value, Array, DocumentMut, Item, Table};

/// The CRI runtime handler; a RuntimeClass names it in `handler`.
pub const RUNTIME_NAME: &str = "fabricks";
pub const RUNTIME_TYPE: &str = "io.containerd.fabricks.v1";
/// Pod and container annotations CRI passes on to the shim (e.g. `fabricks.io/listen`).
pub const ANNOTATIONS: &str = "fabricks.io/*";
/// kubelet's container annotation naming the termination message file, where the shim
/// writes why a wasm program ended.
pub const MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// Written above our table so whoever reads the config knows where it came from.
const MARK: &str = "# Added by fabricks-node-installer; `fabricks-node-installer uninstall` removes it.";
/// The mark when the config did not end with a line break: adding a table after its last
/// line gave it one, which the uninstall takes away again.
const MARK_NO_FINAL_NEWLINE: &str =
    "# Added by fabricks-node-installer, with the line break above; `fabricks-node-installer uninstall` removes both.";

/// The config schema, which decides where CRI's runtimes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// No `version` key (or 1): containerd 1.x names plugins by their short id.
    V1,
    /// `version = 2`: containerd 1.6/1.7.
    V2,
    /// `version = 3` (or 2.4's 4): containerd 2.x, CRI split into runtime and images plugins.
    V3,
}

impl Schema {
    /// The schema a new config gets on a node whose containerd has this major version.
    pub fn for_containerd_major(major: u64) -> Schema {
        if major >= 2 {
            Schema::V3
        } else {
            Schema::V2
        }
    }

    /// The id of the plugin whose `containerd.runtimes` table lists CRI runtime handlers.
    pub fn cri_plugin(self) -> &'static str {
        match self {
            Schema::V1 => "cri",
            Schema::V2 => "io.containerd.grpc.v1.cri",
            Schema::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    pub fn version(self) -> i64 {
        match self {
            Schema::V1 => 1,
            Schema::V2 => 2,
            Schema::V3 => 3,
        }
    }

    /// The smallest config containerd accepts with this schema: what a node without a
    /// config file gets before our runtime is added.
    pub fn minimal_config(self) -> String {
        format!("version = {}\n", self.version())
    }
}

/// Parses `text`; `what` names it in the error (a path).
pub fn parse(text: &str, what: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().with_context(|| {
        format!(
            "{what} is not valid TOML, so containerd cannot read it either; fix it and run again (nothing was changed)"
        )
    })
}

/// The schema `doc` declares in its `version` key.
pub fn schema(doc: &DocumentMut, what: &str) -> Result<Schema> {
    let Some(version) = doc.get("version") else {
        return Ok(Schema::V1);
    };
    match version.as_integer() {
        Some(1) => Ok(Schema::V1),
        Some(2) => Ok(Schema::V2),
        Some(3 | 4) => Ok(Schema::V3),
        _ => bail!(
            "{what} has `version = {}`, which this installer does not know (it edits versions 1 to 4); nothing was changed",
            version.to_string().trim()
        ),
    }
}

/// Our runtime's table, as it appears under `containerd.runtimes`.
pub fn runtime_table() -> Table {
    let mut table = Table::new();
    table["runtime_type"] = value(RUNTIME_TYPE);
    table["pod_annotations"] = value(Array::from_iter([ANNOTATIONS]));
    table["container_annotations"] = value(Array::from_iter([ANNOTATIONS, MESSAGE_PATH]));
    table.decor_mut().set_prefix(format!("\n{MARK}\n"));
    table
}

/// Whether `item` is a runtime table equivalent to ours (what the user may have written by
/// hand counts too: then there is nothing to add).
fn is_current(item: &Item) -> bool {
    annotations_of_ours(item).is_some_and(|container| container == [ANNOTATIONS, MESSAGE_PATH])
}

/// Whether `item` is a runtime table this installer wrote, now or before it passed on
/// [`MESSAGE_PATH`] (an older install, which an install upgrades and an uninstall removes).
fn is_ours(item: &Item) -> bool {
    annotations_of_ours(item)
        .is_some_and(|container| container == [ANNOTATIONS] || container == [ANNOTATIONS, MESSAGE_PATH])
}

/// The container annotations of a table with our runtime type and pod annotations.
fn annotations_of_ours(item: &Item) -> Option<Vec<String>> {
    let table = item.as_table_like()?;
    let strings = |key: &str| -> Option<Vec<String>> {
        let array = table.get(key)?.as_array()?;
        Some(array.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    };
    let ours = table.get("runtime_type").and_then(Item::as_str) == Some(RUNTIME_TYPE)
        && strings("pod_annotations") == Some(vec![ANNOTATIONS.to_owned()]);
    ours.then(|| strings("container_annotations")).flatten()
}

/// `parent[key]` as a table, created (implicit, so it prints nothing while empty) if absent.
fn child<'a>(parent: &'a mut Table, key: &str, what: &str) -> Result<&'a mut Table> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut table = Table::new();
        table.set_implicit(true);
        Item::Table(table)
    });
    item.as_table_mut().with_context(|| {
        format!("{what}: `{key}` is not a table (an inline table or a value?); write it as a [table] section and run again (nothing was changed)")
    })
}

fn runtimes<'a>(doc: &'a mut DocumentMut, schema: Schema, what: &str) -> Result<&'a mut Table> {
    let plugins = child(doc.as_table_mut(), "plugins", what)?;
    let cri = child(plugins, schema.cri_plugin(), what)?;
    let containerd = child(cri, "containerd", what)?;
    child(containerd, "runtimes", what)
}

/// Adds our runtime to `text` (a whole config), unless an equivalent one is there.
/// Returns the new text; equal to `text` when nothing had to change.
pub fn add_runtime(text: &str, what: &str) -> Result<String> {
    let mut doc = parse(text, what)?;
    let schema = schema(&doc, what)?;
    let runtimes = runtimes(&mut doc, schema, what)?;
    let present = runtimes.get(RUNTIME_NAME);
    if present.is_some_and(is_current) {
        return Ok(text.to_owned());
    }
    let fresh = present.is_none();
    let unterminated = lacks_final_newline(text);
    runtimes.insert(RUNTIME_NAME, Item::Table(marked_runtime_table(unterminated)));
    let edited = doc.to_string();
    if fresh {
        if let Some(appended) = appended(text, schema, unterminated, &edited) {
            return Ok(appended);
        }
    }
    Ok(edited)
}

fn lacks_final_newline(text: &str) -> bool {
    !text.is_empty() && !text.ends_with('\n')
}

/// [`runtime_table`] with the mark that says whether the config had a final line break.
fn marked_runtime_table(unterminated: bool) -> Table {
    let mut ours = runtime_table();
    if unterminated {
        ours.decor_mut().set_prefix(format!("\n{MARK_NO_FINAL_NEWLINE}\n"));
    }
    ours
}

/// Our table as the text appended to a config: a `[plugins."…".containerd.runtimes.fabricks]`
/// section, with a line break first after a config that had no final one (`unterminated`).
fn block(schema: Schema, unterminated: bool) -> String {
    let mut doc = DocumentMut::new();
    let runtimes = runtimes(&mut doc, schema, "").expect("an empty document holds any table");
    runtimes.insert(RUNTIME_NAME, Item::Table(marked_runtime_table(unterminated)));
    let section = doc.to_string();
    if unterminated {
        format!("\n{section}")
    } else {
        section
    }
}

/// `text` with [`block`] appended, if that means what `edited` (the same edit made by
/// toml_edit) means. Every byte of the user's config then stays as it was: toml_edit renders
/// a document it changed anew, which groups the dotted keys of one table together and moves
/// blank lines.
fn appended(text: &str, schema: Schema, unterminated: bool, edited: &str) -> Option<String> {
    let out = format!("{text}{}", block(schema, unterminated));
    same_values(&out, edited).then_some(out)
}

/// Whether two configs hold the same values, whatever their layout.
fn same_values(a: &str, b: &str) -> bool {
    match (a.parse::<toml::Table>(), b.parse::<toml::Table>()) {
        (Ok(a), Ok(b)) => same_tables(&a, &b),
        _ => false,
    }
}

fn same_tables(a: &toml::Table, b: &toml::Table) -> bool {
    a.len() == b.len() && a.iter().all(|(key, value)| b.get(key).is_some_and(|other| same_value(value, other)))
}

/// `==`, except that `nan` is the same as `nan` (the same text read twice).
fn same_value(a: &toml::Value, b: &toml::Value) -> bool {
    use toml::Value;
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y)),
        (Value::Table(x), Value::Table(y)) => same_tables(x, y),
        _ => a == b,
    }
}

/// Removes our runtime from `text`; a `fabricks` runtime that is not ours (another
/// runtime_type or annotations) is the user's and stays.
pub fn remove_runtime(text: &str, what: &str) -> Result<String> {
    let mut doc = parse(text, what)?;
    let schema = schema(&doc, what)?;
    let Some(runtimes) = doc
        .get_mut("plugins")
        .and_then(|p| p.get_mut(schema.cri_plugin()))
        .and_then(|c| c.get_mut("containerd"))
        .and_then(|c| c.get_mut("runtimes"))
        .and_then(Item::as_table_like_mut)
    else {
        return Ok(text.to_owned());
    };
    if !runtimes.get(RUNTIME_NAME).is_some_and(is_ours) {
        return Ok(text.to_owned());
    }
    let removed = runtimes.remove(RUNTIME_NAME);
    let had_no_final_newline = removed
        .as_ref()
        .and_then(|item| item.as_table()?.decor().prefix()?.as_str())
        .is_some_and(|prefix| prefix.contains(MARK_NO_FINAL_NEWLINE));
    let mut edited = doc.to_string();
    if had_no_final_newline && edited.ends_with('\n') {
        edited.pop();
    }
    Ok(cut(text, schema, &edited).unwrap_or(edited))
}

/// `text` without the [`block`] an install appended, if that means what `edited` (the same
/// removal made by toml_edit) means: the config comes back byte for byte, whatever the user
/// changed elsewhere in it since.
fn cut(text: &str, schema: Schema, edited: &str) -> Option<String> {
    [true, false].into_iter().find_map(|unterminated| {
        let block = block(schema, unterminated);
        let at = text.rfind(&block)?;
        let out = format!("{}{}", &text[..at], &text[at + block.len()..]);
        same_values(&out, edited).then_some(out)
    })
}

/// The containerd major version in `containerd --version` output, e.g. Debian's
/// `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1` or
/// `containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7`.
pub fn containerd_major(version_output: &str) -> Option<u64> {
    version_output.split_whitespace().skip(1).find_map(|word| {
        let word = word.strip_prefix('v').unwrap_or(word);
        let (major, rest) = word.split_once('.')?;
        rest.starts_with(|c: char| c.is_ascii_digit()).then_some(())?;
        major.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"# my node's containerd
version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9" # pinned by ops
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
      runtime_type = "io.containerd.runc.v2"
"#;

    fn runtime_of(text: &str, plugin: &str) -> Option<String> {
        let doc = parse(text, "t").unwrap();
        let t = &doc["plugins"][plugin]["containerd"]["runtimes"][RUNTIME_NAME];
        t.get("runtime_type").and_then(Item::as_str).map(str::to_owned)
    }

    #[test]
    fn adds_to_version_2_keeping_everything_else() {
        let out = add_runtime(V2, "t").unwrap();
        assert!(out.starts_with(V2), "the original text is a prefix:\n{out}");
        assert_eq!(runtime_of(&out, "io.containerd.grpc.v1.cri").as_deref(), Some(RUNTIME_TYPE));
        let doc = parse(&out, "t").unwrap();
        let ours = &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["fabricks"];
        assert_eq!(ours["pod_annotations"].as_array().unwrap().get(0).unwrap().as_str(), Some(ANNOTATIONS));
        let container: Vec<_> =
            ours["container_annotations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(container, [ANNOTATIONS, MESSAGE_PATH]);
        assert!(out.contains(MARK));
    }

    #[test]
    fn second_add_changes_nothing() {
        let once = add_runtime(V2, "t").unwrap();
        assert_eq!(add_runtime(&once, "t").unwrap(), once);
    }

    #[test]
    fn an_older_install_is_upgraded_and_still_removed() {
        let older = format!(
            "{V2}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.fabricks]\n  runtime_type = \"{RUNTIME_TYPE}\"\n  \
             pod_annotations = [\"{ANNOTATIONS}\"]\n  container_annotations = [\"{ANNOTATIONS}\"]\n"
        );
        let upgraded = add_runtime(&older, "t").unwrap();
        assert!(upgraded.contains(MESSAGE_PATH), "not upgraded:\n{upgraded}");
        assert!(!remove_runtime(&older, "t").unwrap().contains(RUNTIME_TYPE), "the older table stayed");
    }

    #[test]
    fn a_config_without_a_final_newline_comes_back_byte_for_byte() {
        // Found by the containerd_config fuzz target (test-cluster/fuzz).
        for text in [
            "[[88]]\t",
            "x = 1",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nsnapshotter = \"overlayfs\"",
        ] {
            let added = add_runtime(text, "t").unwrap();
            assert_eq!(remove_runtime(&added, "t").unwrap(), text, "after adding:\n{added}");
        }
    }

    #[test]
    fn dotted_keys_between_other_keys_stay_where_they_were() {
        // Found by the containerd_config fuzz target: toml_edit, rendering the edited
        // document, moved `a.y` up to `a.x`.
        let text = "a.x = 1\nb = 2\na.y = 3\n";
        let added = add_runtime(text, "t").unwrap();
        assert!(added.starts_with(text), "{added}");
        assert_eq!(remove_runtime(&added, "t").unwrap(), text);
    }

    #[test]
    fn crlf_blank_lines_stay_as_they_were() {
        // Found by the containerd_config fuzz target: toml_edit rewrote them as `\n`.
        for text in ["\r\n\r\n", "version = 2\r\n\r\n[debug]\r\n  level = \"info\"\r\n", "x = 1\r\ny = nan"] {
            let added = add_runtime(text, "t").unwrap();
            assert_eq!(remove_runtime(&added, "t").unwrap(), text, "after adding:\n{added:?}");
        }
    }

    #[test]
    fn a_key_written_after_the_install_is_kept_and_the_rest_comes_back() {
        let added = add_runtime(V2, "t").unwrap();
        let edited = format!("{added}\n[debug]\n  level = \"info\"\n");
        let removed = remove_runtime(&edited, "t").unwrap();
        assert_eq!(removed, format!("{V2}\n[debug]\n  level = \"info\"\n"));
    }

    #[test]
    fn remove_restores_the_original_text() {
        let once = add_runtime(V2, "t").unwrap();
        assert_eq!(remove_runtime(&once, "t").unwrap(), V2);
    }

    #[test]
    fn version_3_uses_the_cri_runtime_plugin() {
        let text = "version = 3\n\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'overlayfs'\n";
        let out = add_runtime(text, "t").unwrap();
        assert_eq!(runtime_of(&out, "io.containerd.cri.v1.runtime").as_deref(), Some(RUNTIME_TYPE));
        assert!(out.starts_with(text));
        assert_eq!(remove_runtime(&out, "t").unwrap(), text);
    }

    #[test]
    fn no_version_is_schema_1() {
        let out = add_runtime("[plugins.cri]\n  sandbox_image = \"pause\"\n", "t").unwrap();
        assert_eq!(runtime_of(&out, "cri").as_deref(), Some(RUNTIME_TYPE));
    }

    #[test]
    fn empty_minimal_config_gets_the_whole_path() {
        let out = add_runtime(&Schema::V3.minimal_config(), "t").unwrap();
        assert!(out.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.fabricks]"), "{out}");
        assert_eq!(remove_runtime(&out, "t").unwrap(), "version = 3\n");
    }

    #[test]
    fn a_foreign_fabricks_runtime_is_replaced_on_add_and_kept_on_remove() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.fabricks]\n  runtime_type = \"io.containerd.other.v1\"\n";
        assert_eq!(remove_runtime(text, "t").unwrap(), text);
        let out = add_runtime(text, "t").unwrap();
        assert_eq!(runtime_of(&out, "io.containerd.grpc.v1.cri").as_deref(), Some(RUNTIME_TYPE));
    }

    #[test]
    fn invalid_toml_is_an_error_naming_the_file() {
        let err = add_runtime("version = 2\n[plugins\n", "/etc/containerd/config.toml").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/etc/containerd/config.toml is not valid TOML"), "{msg}");
        assert!(msg.contains("nothing was changed"), "{msg}");
    }

    #[test]
    fn unknown_version_is_an_error() {
        let err = add_runtime("version = 9\n", "c.toml").unwrap_err();
        assert!(format!("{err:#}").contains("`version = 9`"));
    }

    #[test]
    fn inline_plugins_table_is_an_error() {
        let err = add_runtime("version = 2\nplugins = { x = 1 }\n", "c.toml").unwrap_err();
        assert!(format!("{err:#}").contains("`plugins` is not a table"), "{err:#}");
    }

    #[test]
    fn containerd_versions() {
        assert_eq!(containerd_major("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1"), Some(1));
        assert_eq!(containerd_major("containerd github.com/containerd/containerd/v2 v2.4.2 abc"), Some(2));
        assert_eq!(containerd_major("containerd containerd.io 1.7.27 05044ec0a9a"), Some(1));
        assert_eq!(containerd_major("bash: containerd: command not found"), None);
    }
}
