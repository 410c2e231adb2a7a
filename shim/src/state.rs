//! A task's lifecycle as containerd sees it: created → running → stopped, once.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::types::task::Status;

#[derive(Clone, Debug)]
pub struct Exit {
    pub code: u32,
    pub at: Timestamp,
}

#[derive(Default)]
pub struct Lifecycle {
    state: Mutex<Phase>,
    changed: Condvar,
}

#[derive(Default, Clone, Debug)]
enum Phase {
    #[default]
    Created,
    Running,
    Stopped(Exit),
}

impl Lifecycle {
    pub fn status(&self) -> (Status, Option<Exit>) {
        match &*self.state.lock().unwrap() {
            Phase::Created => (Status::CREATED, None),
            Phase::Running => (Status::RUNNING, None),
            Phase::Stopped(exit) => (Status::STOPPED, Some(exit.clone())),
        }
    }

    /// Moves created → running; false if the task already left the created phase.
    pub fn set_running(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        if matches!(*state, Phase::Created) {
            *state = Phase::Running;
            true
        } else {
            false
        }
    }

    /// Records the exit; only the first report counts (a forced stop and the module's own
    /// end can race). Returns the recorded exit if this call set it.
    pub fn set_exited(&self, code: u32) -> Option<Exit> {
        let mut state = self.state.lock().unwrap();
        if let Phase::Stopped(_) = *state {
            return None;
        }
        let exit = Exit { code, at: now() };
        *state = Phase::Stopped(exit.clone());
        self.changed.notify_all();
        Some(exit)
    }

    pub fn wait_exit(&self) -> Exit {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Phase::Stopped(exit) = &*state {
                return exit.clone();
            }
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Waits at most `timeout`; true if the task stopped.
    pub fn wait_exit_for(&self, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap();
        let (state, _) = self.changed.wait_timeout_while(state, timeout, |s| !matches!(s, Phase::Stopped(_))).unwrap();
        matches!(*state, Phase::Stopped(_))
    }
}

pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}
