//! Task metrics in containerd's cgroup v1 format (`io.containerd.cgroups.v1.Metrics`), which
//! `ctr task metrics`, CRI's container stats and containerd 2.x's OOM check read.
//!
//! A wasm container: CPU time from its own cpuacct cgroup (its thread is there) and memory
//! usage = the linear memory its module holds, against the limit that caps it. A native
//! container (the pod's pause) is runc's: it reports its cgroup's usage through runc.

use anyhow::{Context, Result};
use containerd_shim::protos::cgroups::metrics::{CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};

use crate::container::{Container, Workload};

const METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

pub fn of(container: &Container) -> Result<Any> {
    let metrics = match &container.workload {
        Workload::Wasm(task) => wasm_metrics(task)?,
        // The pause container's usage is negligible and runc owns its cgroup.
        Workload::Native { .. } => Metrics::default(),
    };
    let value = metrics.write_to_bytes().context("encoding the task's metrics")?;
    Ok(Any { type_url: METRICS_TYPE.into(), value, ..Default::default() })
}

fn wasm_metrics(task: &crate::wasm::WasmTask) -> Result<Metrics> {
    let (used, limit) = task.memory();
    let usage = MemoryEntry { usage: used, max: used, limit: limit.unwrap_or(u64::MAX), ..Default::default() };
    let cpu = match task.cgroup() {
        Some(cgroup) => cgroup.cpu_usage_ns()?,
        None => 0,
    };
    Ok(Metrics {
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage { total: cpu, ..Default::default() }),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat { rss: used, usage: MessageField::some(usage), ..Default::default() }),
        ..Default::default()
    })
}
