//! Why a program ended, kept for whoever reports it after the exit (the shim's Kubernetes
//! termination message): the last report the engine wrote on the program's stderr (a trap,
//! the memory limit, a refused bind), never the guest's own output.

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct ExitReason(Arc<Mutex<Option<String>>>);

impl ExitReason {
    /// Replaces what was recorded: the latest report is the one closest to the end.
    pub fn record(&self, report: &str) {
        *self.0.lock().unwrap() = Some(report.to_string());
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }

    /// `sink` (where the engine reports to the task's stderr, if anywhere), also keeping
    /// each report here.
    pub(crate) fn keeping(&self, sink: Option<Box<dyn Write + Send>>) -> Option<Box<dyn Write + Send>> {
        Some(Box::new(Kept { sink, reason: self.clone(), pending: Vec::new() }))
    }
}

/// Passes writes on; a report is whatever was written up to a write that ends a line
/// (`writeln!` ends each with its own `\n`).
struct Kept {
    sink: Option<Box<dyn Write + Send>>,
    reason: ExitReason,
    pending: Vec<u8>,
}

impl Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if buf.ends_with(b"\n") {
            self.reason.record(String::from_utf8_lossy(&self.pending).trim_end());
            self.pending.clear();
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.as_mut().map_or(Ok(()), |s| s.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_report_replaces_the_last_and_still_reaches_the_sink() {
        let reason = ExitReason::default();
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut sink = reason.keeping(Some(Box::new(Shared(out.clone())))).unwrap();
        assert_eq!(reason.get(), None);
        writeln!(sink, "fabricks: bind to 0.0.0.0:9 refused").unwrap();
        let trap = "unreachable\n    at main";
        writeln!(sink, "Error: app.wasm trapped: {trap}").unwrap();
        assert_eq!(reason.get().as_deref(), Some("Error: app.wasm trapped: unreachable\n    at main"));
        let written = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(written, "fabricks: bind to 0.0.0.0:9 refused\nError: app.wasm trapped: unreachable\n    at main\n");
    }
}
