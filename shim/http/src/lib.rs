//! HTTP for reactor modules: a hyper server on the task's listeners that hands each request
//! to one instance of a pool, all instantiated from the one compiled module.
//!
//! The shim and `fabricks run` both serve reactors through [`serve`], so a module behaves
//! the same on a laptop and on a node. The wasm side (instances, the ABI's host functions)
//! is in `fabricks_engine::Reactor`; this crate owns HTTP, the pool and its settings.

mod dispatch;
mod exchange;
mod pool;
mod serve;
mod settings;

pub use pool::Pool;
pub use serve::serve;
pub use settings::{Settings, ANNOTATION_INSTANCES, ANNOTATION_INSTANCE_MEMORY, ANNOTATION_QUEUE, ANNOTATION_TIMEOUT};
pub use settings::{ENV_INSTANCES, ENV_INSTANCE_MEMORY, ENV_QUEUE, ENV_TIMEOUT};
