//! Test fixture tool: prints a TOML file with some keys set, everything else untouched.
//! test-cluster/e2e-install.sh uses it to turn a containerd's real default config into one a
//! private test instance can run with (its own root, state, sockets, CNI and sandbox image).
//!
//!     set-keys FILE 'grpc.address="/tmp/x.sock"' '+plugins."io.containerd.grpc.v1.cri".x=true'
//!
//! A key must exist already (a misspelt one would otherwise leave the default in force, e.g.
//! a private containerd on the host's socket); `+KEY=VALUE` may add one.

use anyhow::{bail, Context, Result};
use toml_edit::{DocumentMut, Item, Key, Table, Value};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args.next().context("usage: set-keys FILE KEY=VALUE...")?;
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let mut doc: DocumentMut = text.parse().with_context(|| format!("{file} is not TOML"))?;
    for assignment in args {
        set(&mut doc, &assignment).with_context(|| format!("setting {assignment}"))?;
    }
    print!("{doc}");
    Ok(())
}

/// `[+]KEY=VALUE`: KEY a dotted TOML key (holding no `=`), VALUE a TOML value.
fn set(doc: &mut DocumentMut, assignment: &str) -> Result<()> {
    let (may_add, assignment) = match assignment.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, assignment),
    };
    let Some((key, value)) = assignment.split_once('=') else {
        bail!("no `=`");
    };
    let path = Key::parse(key.trim()).context("not a dotted TOML key")?;
    let value: Value = value.trim().parse().context("not a TOML value")?;
    let (last, parents) = path.split_last().context("empty key")?;
    let mut table = doc.as_table_mut();
    for part in parents {
        if !may_add && !table.contains_key(part.get()) {
            bail!("no table {} in the file (prefix + to add it)", part.get());
        }
        table = table
            .entry(part.get())
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .with_context(|| format!("{} is not a table", part.get()))?;
    }
    match table.get_mut(last.get()).and_then(Item::as_value_mut) {
        // Keep the key's place and its comments.
        Some(old) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        None if may_add => {
            table.insert(last.get(), toml_edit::value(value));
        }
        None => bail!("no key {} in the file (prefix + to add it)", last.get()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> DocumentMut {
        text.parse().unwrap()
    }

    #[test]
    fn an_existing_key_is_replaced_in_place_with_its_comment() {
        let mut d = doc("# top\n[grpc]\naddress = \"/run/containerd.sock\" # the socket\nuid = 0\n");
        set(&mut d, "grpc.address=\"/tmp/x.sock\"").unwrap();
        assert_eq!(d.to_string(), "# top\n[grpc]\naddress = \"/tmp/x.sock\" # the socket\nuid = 0\n");
    }

    #[test]
    fn a_missing_key_or_table_is_refused_unless_prefixed_with_plus() {
        let mut d = doc("[grpc]\naddress = \"a\"\n");
        let err = set(&mut d, "grpc.adress=\"b\"").unwrap_err().to_string();
        assert!(err.contains("no key adress"), "{err}");
        let err = set(&mut d, "plugins.x=true").unwrap_err().to_string();
        assert!(err.contains("no table plugins"), "{err}");
        set(&mut d, "+plugins.\"io.containerd.grpc.v1.cri\".x=true").unwrap();
        assert_eq!(d["plugins"]["io.containerd.grpc.v1.cri"]["x"].as_bool(), Some(true));
        assert!(set(&mut d, "grpc.address").is_err(), "no `=`");
        assert!(set(&mut d, "grpc.address=not toml").is_err());
    }
}
