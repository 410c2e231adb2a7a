//! What the shim and a runner say to each other on the control socket (the runner's fd 3):
//! one JSON message per line. The first, the task, is followed by the module's bytes.

use std::io::{self, BufRead, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The runner's end of the control socket.
pub const CONTROL_FD: RawFd = 3;

/// What the runner runs: the container as containerd created it, and what the shim already
/// found out (which module, which ports).
#[derive(Debug, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub bundle: PathBuf,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    /// The export the entrypoint names (`module.wasm#export`).
    pub export: Option<String>,
    /// The resolved listen spec, printed.
    pub listen: String,
    /// The shim's log level: the runner logs as much, no more.
    pub log_level: String,
    pub wasm_len: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Start,
    Signal(u32),
    Memory,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Report {
    /// A line for the shim's log.
    Log {
        level: String,
        text: String,
    },
    /// Prepared: everything that can fail before the start has not.
    Ready {
        cache_entry: PathBuf,
    },
    /// Not prepared; `invalid`: the container's input is at fault, not the node.
    Failed {
        error: String,
        invalid: bool,
    },
    Started(Result<(), String>),
    /// Whether the signal is ending the program.
    Signalled(bool),
    Memory {
        used: u64,
        limit: Option<u64>,
    },
    /// The program's end, just before the runner exits with `code`.
    Exited {
        code: i32,
        out_of_memory: bool,
    },
}

pub fn send<T: Serialize>(mut to: impl Write, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    to.write_all(&line)
}

/// The next message; `None` at the end of the stream (the other side is gone).
pub fn receive<T: DeserializeOwned>(from: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = String::new();
    if from.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line).map(Some).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_one_per_line() {
        let mut buf = Vec::new();
        send(&mut buf, &Report::Log { level: "INFO".into(), text: "two\nlines".into() }).unwrap();
        send(&mut buf, &Report::Exited { code: 3, out_of_memory: true }).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 2, "a message is one line");
        let mut reader = &buf[..];
        assert!(matches!(receive(&mut reader).unwrap(), Some(Report::Log { text, .. }) if text == "two\nlines"));
        assert!(matches!(receive(&mut reader).unwrap(), Some(Report::Exited { code: 3, out_of_memory: true })));
        assert!(receive::<Report>(&mut reader).unwrap().is_none());
    }
}
