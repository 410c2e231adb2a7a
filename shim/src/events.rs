//! The task events a shim publishes to containerd, behind a seam so the task service's
//! lifecycle rules can be tested against a recorder.

use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskOOM, TaskStart};
use containerd_shim::publisher::RemotePublisher;

#[derive(Debug, Clone)]
pub enum TaskEvent {
    Create(TaskCreate),
    Start(TaskStart),
    /// Published before the task's exit, as the kernel's OOM notification precedes a killed
    /// process's exit: containerd then records the reason (OOMKilled).
    Oom(TaskOOM),
    Exit(TaskExit),
    Delete(TaskDelete),
}

pub trait Events: Send + Sync + 'static {
    fn publish(&self, event: TaskEvent);
}

/// Events to containerd's event service, in the shim's namespace.
pub struct Containerd {
    publisher: RemotePublisher,
    namespace: String,
}

impl Containerd {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        Self { publisher, namespace: namespace.into() }
    }

    fn send(&self, event: impl Event + 'static) {
        let topic = event.topic();
        if let Err(e) = self.publisher.publish(Default::default(), &topic, &self.namespace, Box::new(event)) {
            log::error!("publishing {topic}: {e}");
        }
    }
}

impl Events for Containerd {
    fn publish(&self, event: TaskEvent) {
        match event {
            TaskEvent::Create(e) => self.send(e),
            TaskEvent::Start(e) => self.send(e),
            TaskEvent::Oom(e) => self.send(e),
            TaskEvent::Exit(e) => self.send(e),
            TaskEvent::Delete(e) => self.send(e),
        }
    }
}
