//! The task's stdio as containerd hands it over: FIFO paths (or `file://` URIs).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fabricks_engine::Stdio;

/// How long an output FIFO may wait for containerd's reader: containerd starts opening it
/// only just before it asks for the task, so the reader can arrive a little after us.
const READER_WAIT: Duration = Duration::from_secs(10);

/// Opens an output the task writes to. The FIFO is opened non-blocking and retried while it
/// has no reader, so a create call waits for containerd's reader but never hangs on it.
pub fn open_output(uri: &str) -> Result<Stdio> {
    if uri.is_empty() {
        return Ok(Stdio::Null);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the log file {path}"))?;
        return Ok(Stdio::File(file));
    }
    if uri.contains("://") {
        bail!("unsupported stdio URI {uri}: use FIFOs or file:// (binary:// loggers are not supported)");
    }
    let started = Instant::now();
    let file = loop {
        match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(uri) {
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && started.elapsed() < READER_WAIT => {
                std::thread::sleep(Duration::from_millis(2));
            }
            opened => {
                break opened.with_context(|| format!("opening the task output {uri} (is anything reading it?)"))?
            }
        }
    };
    set_blocking(&file)?;
    Ok(Stdio::File(file))
}

/// The task's stdin. containerd opens the writing end of the FIFO only when the user
/// attached one (`ctr run -i`), so the FIFO is opened by a pump thread while the module
/// reads a pipe: with nobody attached its reads wait, as a native process's would.
pub fn open_input(uri: &str) -> Result<Stdio> {
    if uri.is_empty() {
        return Ok(Stdio::Null);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        let file = File::open(path).with_context(|| format!("opening the task input {path}"))?;
        return Ok(Stdio::File(file));
    }
    let (reader, mut writer) = std::io::pipe().context("creating the stdin pipe")?;
    let path = uri.to_string();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || match File::open(&path) {
            Ok(mut fifo) => {
                let _ = std::io::copy(&mut fifo, &mut writer);
            }
            Err(e) => log::warn!("opening the task input {path}: {e}"),
        })
        .context("starting the stdin pump")?;
    Ok(Stdio::File(File::from(std::os::fd::OwnedFd::from(reader))))
}

/// Ends a stdin pump still waiting for a writer, once its task is gone.
pub fn release_input(uri: &str) {
    if uri.is_empty() || uri.contains("://") {
        return;
    }
    // Opening the write side completes the pump's pending open; closing it is its EOF.
    let _ = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(uri);
}

fn set_blocking(file: &File) -> Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        bail!("fcntl: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
