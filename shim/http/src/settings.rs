//! How many instances, how long a request may take, how much memory an instance gets.

use std::time::Duration;

use anyhow::{bail, Context, Result};

pub const ANNOTATION_INSTANCES: &str = "fabricks.io/instances";
pub const ENV_INSTANCES: &str = "FABRICKS_INSTANCES";
pub const ANNOTATION_QUEUE: &str = "fabricks.io/queue";
pub const ENV_QUEUE: &str = "FABRICKS_QUEUE";
pub const ANNOTATION_TIMEOUT: &str = "fabricks.io/request-timeout";
pub const ENV_TIMEOUT: &str = "FABRICKS_REQUEST_TIMEOUT";
pub const ANNOTATION_INSTANCE_MEMORY: &str = "fabricks.io/instance-memory";
pub const ENV_INSTANCE_MEMORY: &str = "FABRICKS_INSTANCE_MEMORY";

/// Requests that may wait for an instance, per instance, unless set: enough for a few
/// hundred connections before anyone gets a 503.
const QUEUE_PER_INSTANCE: usize = 64;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Instances serving at once.
    pub instances: usize,
    /// Requests that may wait for a free instance; more get 503 with Retry-After.
    pub queue: usize,
    /// A request still running after this gets 504 and its instance is replaced.
    pub timeout: Duration,
    /// Linear memory each instance may grow to.
    pub instance_memory: Option<usize>,
}

impl Settings {
    /// `setting(annotation, env)` returns the first value set (the caller decides the order,
    /// e.g. annotation before environment). Defaults: instances from `cpu_limit` (CPUs,
    /// rounded up, at least 1) else this machine's CPU count; instance memory from
    /// `memory_limit` split evenly over the instances.
    pub fn resolve(
        setting: impl Fn(&str, &str) -> Option<String>,
        cpu_limit: Option<f64>,
        memory_limit: Option<u64>,
    ) -> Result<Self> {
        let number = |annotation: &str, env: &str| -> Result<Option<usize>> {
            let Some(text) = setting(annotation, env) else { return Ok(None) };
            let n: usize = text
                .trim()
                .parse()
                .with_context(|| format!("{annotation} / {env} = {text:?}: expected a whole number"))?;
            Ok(Some(n))
        };
        let instances = match number(ANNOTATION_INSTANCES, ENV_INSTANCES)? {
            Some(0) => bail!("{ANNOTATION_INSTANCES} / {ENV_INSTANCES} is 0: a reactor needs at least one instance"),
            Some(n) => n,
            None => default_instances(cpu_limit),
        };
        let queue = number(ANNOTATION_QUEUE, ENV_QUEUE)?.unwrap_or(instances * QUEUE_PER_INSTANCE);
        let timeout = match number(ANNOTATION_TIMEOUT, ENV_TIMEOUT)? {
            Some(0) => bail!("{ANNOTATION_TIMEOUT} / {ENV_TIMEOUT} is 0: give the seconds a request may take"),
            Some(secs) => Duration::from_secs(secs as u64),
            None => DEFAULT_TIMEOUT,
        };
        let instance_memory = match setting(ANNOTATION_INSTANCE_MEMORY, ENV_INSTANCE_MEMORY) {
            Some(text) => Some(parse_bytes(&text).with_context(|| {
                format!("{ANNOTATION_INSTANCE_MEMORY} / {ENV_INSTANCE_MEMORY} = {text:?}: expected bytes, e.g. 64Mi")
            })?),
            None => memory_limit.map(|total| (total / instances as u64) as usize),
        };
        Ok(Self { instances, queue, timeout, instance_memory })
    }
}

fn default_instances(cpu_limit: Option<f64>) -> usize {
    match cpu_limit {
        Some(cpus) if cpus > 0.0 => (cpus.ceil() as usize).max(1),
        _ => std::thread::available_parallelism().map(usize::from).unwrap_or(1),
    }
}

/// `67108864`, `64Mi`, `1Gi`, `512Ki`.
fn parse_bytes(text: &str) -> Result<usize> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: usize = digits.parse()?;
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => bail!("unknown unit {other:?} (use Ki, Mi or Gi)"),
    };
    n.checked_mul(scale).context("too large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(values: &[(&str, &str)], cpus: Option<f64>, mem: Option<u64>) -> Result<Settings> {
        let map: HashMap<String, String> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::resolve(|a, e| map.get(a).or_else(|| map.get(e)).cloned(), cpus, mem)
    }

    #[test]
    fn instances_come_from_the_setting_else_the_cpu_limit() {
        assert_eq!(resolve(&[(ENV_INSTANCES, "3")], Some(8.0), None).unwrap().instances, 3);
        assert_eq!(resolve(&[(ANNOTATION_INSTANCES, "5"), (ENV_INSTANCES, "3")], None, None).unwrap().instances, 5);
        assert_eq!(resolve(&[], Some(1.5), None).unwrap().instances, 2);
        assert_eq!(resolve(&[], Some(0.1), None).unwrap().instances, 1);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(resolve(&[], None, None).unwrap().instances, cpus);
    }

    #[test]
    fn memory_is_split_over_instances_unless_set() {
        let s = resolve(&[(ENV_INSTANCES, "4")], None, Some(256 << 20)).unwrap();
        assert_eq!(s.instance_memory, Some(64 << 20));
        let s = resolve(&[(ENV_INSTANCES, "4"), (ENV_INSTANCE_MEMORY, "100Mi")], None, Some(256 << 20)).unwrap();
        assert_eq!(s.instance_memory, Some(100 << 20));
        assert_eq!(resolve(&[], None, None).unwrap().instance_memory, None);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (key, value) in
            [(ENV_INSTANCES, "0"), (ENV_INSTANCES, "two"), (ENV_TIMEOUT, "0"), (ENV_INSTANCE_MEMORY, "5MB")]
        {
            let err = format!("{:#}", resolve(&[(key, value)], None, None).unwrap_err());
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn queue_and_timeout_have_defaults() {
        let s = resolve(&[(ENV_INSTANCES, "2")], None, None).unwrap();
        assert_eq!((s.queue, s.timeout), (2 * QUEUE_PER_INSTANCE, DEFAULT_TIMEOUT));
        let s = resolve(&[(ENV_INSTANCES, "2"), (ENV_QUEUE, "0"), (ENV_TIMEOUT, "5")], None, None).unwrap();
        assert_eq!((s.queue, s.timeout), (0, Duration::from_secs(5)));
    }
}
