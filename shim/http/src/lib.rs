//! HTTP for wasm services: a hyper server on the task's listeners that hands each request
//! to a backend — one instance of a reactor pool (all instantiated from the one compiled
//! module), or a fresh instance of a `wasi:http` component — with one queue, timeout,
//! failure-to-status mapping and set of settings for both.
//!
//! The shim and `fabricks run` both serve through [`serve`] / [`serve_component`], so a
//! service behaves the same on a laptop and on a node. The wasm side is in
//! `fabricks_engine` (`Reactor`, `HttpService`); this crate owns HTTP, admission, the
//! reactor pool and the settings.

mod backend;
mod dispatch;
mod exchange;
mod gate;
mod pool;
mod serve;
mod settings;

pub use backend::{Backend, ComponentBackend, Failure};
pub use pool::Pool;
pub use serve::{serve, serve_component};
pub use settings::{Settings, ANNOTATION_INSTANCES, ANNOTATION_INSTANCE_MEMORY, ANNOTATION_QUEUE, ANNOTATION_TIMEOUT};
pub use settings::{ENV_INSTANCES, ENV_INSTANCE_MEMORY, ENV_QUEUE, ENV_TIMEOUT};
