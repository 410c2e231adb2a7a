//! Task metrics in containerd's cgroup v1 format (`io.containerd.cgroups.v1.Metrics`), which
//! `ctr task metrics`, CRI's container stats and containerd 2.x's OOM check read.
//!
//! A wasm container: CPU time from its own cpuacct cgroup (its runner is there) and memory
//! usage = the linear memory its module holds, against the limit that caps it.

use anyhow::Result;
use containerd_shim::protos::cgroups::metrics::{CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics};
use containerd_shim::protos::protobuf::MessageField;

use crate::cgroup::Cgroup;

/// `memory`: the linear memory's bytes and limit.
pub fn wasm((used, limit): (u64, Option<u64>), cgroup: Option<&Cgroup>) -> Result<Metrics> {
    let usage = MemoryEntry { usage: used, max: used, limit: limit.unwrap_or(u64::MAX), ..Default::default() };
    let cpu = match cgroup {
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
