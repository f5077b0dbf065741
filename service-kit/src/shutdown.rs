//! The shutdown story shared by all services.
//!
//! A service's `run(config, shutdown)` takes any future as its trigger
//! (`ctrl_c`-like in `main`, a oneshot in tests). `run` turns it into a
//! [`Shutdown`] handle that every task clones and awaits; a task that sees the
//! signal finishes its in-flight work (drain) and returns.

use std::future::Future;

use tokio::sync::watch;

/// A cloneable view of the shutdown trigger.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Fires the shutdown for every [`Shutdown`] handle.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// A linked trigger and handle.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Signals shutdown to every handle (idempotent).
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A handle that fires when `signal` completes; the watcher runs on the
    /// current tokio runtime.
    pub fn from_future(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (trigger, shutdown) = channel();
        tokio::spawn(async move {
            signal.await;
            trigger.fire();
        });
        shutdown
    }

    /// True once shutdown has been signalled.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown is signalled (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means every trigger was dropped, which also means stop.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Completes on SIGINT or SIGTERM: the trigger `main` hands to `run`.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("Shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_trigger() {
        let (trigger, mut a) = channel();
        let mut b = a.clone();
        assert!(!a.is_triggered());
        trigger.fire();
        a.wait().await;
        b.wait().await;
        assert!(b.is_triggered());
    }

    #[tokio::test]
    async fn from_future_fires_when_the_future_completes() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut s = Shutdown::from_future(async move {
            let _ = rx.await;
        });
        assert!(!s.is_triggered());
        tx.send(()).unwrap();
        s.wait().await;
        assert!(s.is_triggered());
    }
}
