//! The error for a module that cannot run as given. The engine says what is wrong in wasm
//! terms; whoever called it (the shim, the CLI) knows the user's tools and adds how to fix
//! it with [`Unrunnable::hint`].

use std::fmt;

/// What is wrong with the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not WebAssembly, or not a kind this engine runs.
    NotWasm,
    /// Exports neither `_start` nor `_initialize`.
    NoEntryPoint,
    /// A command without `_start`.
    NotCommand,
    /// Imports this host does not provide.
    Imports,
    /// A reactor without the Fabricks HTTP ABI exports.
    NotHttpReactor,
    /// A reactor speaking another ABI version, or with exports of the wrong shape.
    AbiMismatch,
    /// Compilation failed: the module is invalid.
    Invalid,
}

#[derive(Debug)]
pub struct Unrunnable {
    pub problem: Problem,
    message: String,
    hint: Option<String>,
}

impl Unrunnable {
    pub fn new(problem: Problem, message: impl Into<String>) -> Self {
        Self { problem, message: message.into(), hint: None }
    }

    /// Adds how to fix it, in the caller's terms.
    pub fn hint(&mut self, hint: impl Into<String>) {
        self.hint = Some(hint.into());
    }

    /// Applies `hints` to the `Unrunnable` anywhere in `err`'s chain; other errors pass.
    pub fn add_hint(mut err: anyhow::Error, hints: impl Fn(Problem) -> Option<&'static str>) -> anyhow::Error {
        if let Some(unrunnable) = err.downcast_mut::<Unrunnable>() {
            if let Some(hint) = hints(unrunnable.problem) {
                unrunnable.hint(hint);
            }
        }
        err
    }
}

impl fmt::Display for Unrunnable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unrunnable {}

/// `Err(Unrunnable)` as an `anyhow::Error`.
pub(crate) fn unrunnable(problem: Problem, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Unrunnable::new(problem, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_caller_hint_follows_the_message_through_contexts() {
        let err = Err::<(), _>(unrunnable(Problem::NoEntryPoint, "m.wasm exports no entry point"))
            .context("loading m.wasm")
            .unwrap_err();
        let err = Unrunnable::add_hint(err, |p| (p == Problem::NoEntryPoint).then_some("build it as a command"));
        assert_eq!(format!("{err:#}"), "loading m.wasm: m.wasm exports no entry point; build it as a command");
        let other = Unrunnable::add_hint(anyhow::anyhow!("disk full"), |_| Some("never"));
        assert_eq!(format!("{other:#}"), "disk full");
    }
}
