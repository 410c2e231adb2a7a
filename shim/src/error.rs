//! Why a task request failed, as the ttrpc status code containerd maps to its own error
//! kinds (`errdefs`): a user's mistake, a request in the wrong state, a missing task, an
//! operation wasm tasks cannot do, or a failure of the node itself.

use containerd_shim::protos::ttrpc::{self, Code};

/// A failure of the request's input: a spec, image or module that cannot run as given.
/// Put anywhere in an error's chain (`bail!(Invalid(..))`, `.context(Invalid(..))`) it makes
/// the request fail with INVALID_ARGUMENT.
#[derive(Debug)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Shorthand for `anyhow::Error::new(Invalid(..))`.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Invalid(message.into()))
}

/// Whether anything in `err`'s chain says the request's input was at fault.
pub fn is_input_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Invalid>() || e.is::<fabricks_engine::Unrunnable>())
}

#[derive(Debug)]
pub enum TaskError {
    /// The request's input cannot work: INVALID_ARGUMENT.
    Invalid(anyhow::Error),
    NotFound(String),
    AlreadyExists(String),
    /// The task is not in a state where this can be done: FAILED_PRECONDITION.
    State(String),
    Unimplemented(String),
    /// Anything else: the node, containerd or the shim failed (INTERNAL).
    Internal(anyhow::Error),
}

impl TaskError {
    /// Sorts an error from preparing or running a task: INVALID_ARGUMENT if anything in its
    /// chain says the input was at fault, else INTERNAL.
    pub fn from_failure(err: anyhow::Error) -> Self {
        if is_input_error(&err) {
            TaskError::Invalid(err)
        } else {
            TaskError::Internal(err)
        }
    }

    pub fn code(&self) -> Code {
        match self {
            TaskError::Invalid(_) => Code::INVALID_ARGUMENT,
            TaskError::NotFound(_) => Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            TaskError::State(_) => Code::FAILED_PRECONDITION,
            TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
            TaskError::Internal(_) => Code::INTERNAL,
        }
    }

    /// The status containerd shows the user (`ctr: failed to create shim task: <this>`).
    pub fn message(&self) -> String {
        match self {
            TaskError::Invalid(e) | TaskError::Internal(e) => format!("{e:#}"),
            TaskError::NotFound(m)
            | TaskError::AlreadyExists(m)
            | TaskError::State(m)
            | TaskError::Unimplemented(m) => m.clone(),
        }
    }

    /// As a ttrpc status, logged to the shim log as well when it is a failure of the task.
    pub fn into_ttrpc(self, request: &str) -> ttrpc::Error {
        let message = self.message();
        match self {
            TaskError::Invalid(_) | TaskError::Internal(_) => log::error!("{request}: {message}"),
            _ => log::info!("{request}: {message}"),
        }
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), message))
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(err: anyhow::Error) -> Self {
        TaskError::from_failure(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn input_errors_anywhere_in_the_chain_are_invalid_argument() {
        let err = Err::<(), _>(invalid("no entrypoint")).context("creating t1").unwrap_err();
        let e = TaskError::from_failure(err);
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
        assert_eq!(e.message(), "creating t1: no entrypoint");
        let err = anyhow::anyhow!("mount failed: EPERM");
        assert_eq!(TaskError::from_failure(err).code(), Code::INTERNAL);
    }
}
