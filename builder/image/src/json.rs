use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// Serialises `value` as compact JSON with object keys sorted.
///
/// `oci-spec` keeps annotations and labels in `HashMap`s, whose iteration
/// order changes from run to run; digests must not. Rebuilding every object in
/// key order gives the same bytes whether or not serde_json's
/// `preserve_order` feature is switched on somewhere in the dependency graph.
pub fn canonical<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).context("serialising OCI JSON")?;
    serde_json::to_vec(&sorted(value)).context("encoding OCI JSON")
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let map: Map<String, Value> = entries.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_come_out_sorted_at_every_depth() {
        let inner: HashMap<&str, u32> = [("z", 1), ("a", 2), ("m", 3)].into();
        let outer: HashMap<&str, HashMap<&str, u32>> = [("y", inner.clone()), ("b", inner)].into();
        let text = String::from_utf8(canonical(&outer).unwrap()).unwrap();
        assert_eq!(text, r#"{"b":{"a":2,"m":3,"z":1},"y":{"a":2,"m":3,"z":1}}"#);
    }
}
