//! Ctrl-C and SIGTERM for a module running in this process: the first stops
//! the module the way the shim would; a second exits at once, for a module
//! stuck in a host call (such as a read from the terminal) that a stop cannot
//! interrupt.

use anyhow::{Context, Result};
use fabricks_engine::Stopper;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub fn forward_to(stopper: &Stopper) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing the SIGINT/SIGTERM handlers")?;
    let stopper = stopper.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = false;
            for signal in signals.forever() {
                // Counted here: a graceful stop (a module serving sockets)
                // records no request in the Stopper.
                if std::mem::replace(&mut seen, true) {
                    log::warn!("signal {signal} again: exiting without waiting for the module");
                    std::process::exit(128 + signal);
                }
                log::info!("stopping the module (signal {signal}); send another to exit at once");
                stopper.stop(signal);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}
