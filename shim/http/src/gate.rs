//! Admission: at most `instances` requests run at once, at most `queue` wait for a turn;
//! beyond that a request is turned away (503). Shared by every backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Settings;

pub struct Gate {
    /// One permit per running request.
    permits: Arc<Semaphore>,
    instances: u32,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Gate {
    pub fn new(settings: &Settings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.instances)),
            instances: u32::try_from(settings.instances).unwrap_or(u32::MAX),
            waiting: AtomicUsize::new(0),
            max_waiting: settings.queue,
        }
    }

    /// A turn, waiting in line if all are taken; None if the line is full.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit
    }

    /// Resolves once no request is running. The semaphore is fair, so requests admitted
    /// after this call wait until it has resolved.
    pub async fn idle(&self) {
        drop(self.permits.acquire_many(self.instances).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_queue_holds_so_many_then_turns_away() {
        let settings = Settings { instances: 1, queue: 1, timeout: Duration::from_secs(1), instance_memory: None };
        let gate = Arc::new(Gate::new(&settings));
        let first = gate.admit().await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gate.admit().await.is_none(), "the line is full");
        drop(first);
        assert!(waiter.await.unwrap(), "the one in line gets the turn");
    }
}
