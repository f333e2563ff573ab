//! Stopping a one-shot command that changes things on SIGTERM or SIGINT, at
//! the next safe point and within the configured grace.

use crate::config::Config;

use super::Ending;

/// The stop handling of a one-shot command that changes things (`apply`,
/// `migrate`, `run --once`), as the daemon's: SIGTERM or SIGINT sets the
/// stop flag, the apply stops between actions, finishes its journal and
/// ends; past `[schedule] shutdown_grace_secs` the command ends anyway.
/// Without it, as a container's PID 1, such a command would ignore SIGTERM
/// (PID 1 gets no default action) and run on until SIGKILL.
pub(super) struct Stopping {
    pub(super) stop: crate::engine::orchestrate::Stop,
    signal: std::sync::Mutex<Option<tokio::task::JoinHandle<&'static str>>>,
    grace: std::time::Duration,
}

impl Stopping {
    /// Listens for the signals on `rt`.
    pub(super) fn listen(rt: &tokio::runtime::Runtime, config: &Config) -> anyhow::Result<Self> {
        let stop = crate::engine::orchestrate::Stop::default();
        let _entered = rt.enter();
        let signal = stop.on_signals()?;
        Ok(Self {
            stop,
            signal: std::sync::Mutex::new(Some(signal)),
            grace: config.schedule.shutdown_grace,
        })
    }

    /// The flag the apply reads between actions.
    pub(super) fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.flag()
    }

    /// Runs `work`; after a signal, waits for it at most the grace, and the
    /// ending names the signal (its exit code).
    pub(super) async fn within_grace(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<Ending>>,
    ) -> anyhow::Result<Ending> {
        tokio::pin!(work);
        let Some(mut signal) = self.signal.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return work.await;
        };
        tokio::select! {
            result = &mut work => result,
            name = &mut signal => {
                let name = name.unwrap_or("SIGTERM");
                match tokio::time::timeout(self.grace, &mut work).await {
                    Ok(result) => result.map(|ending| Ending {
                        signal: Some(name),
                        ..ending
                    }),
                    Err(_) => anyhow::bail!(
                        "stopped by {name}: not finished within the grace of {} ([schedule] shutdown_grace_secs); what was done is journaled, and the same command finishes the rest",
                        crate::protocol::human_duration(self.grace)
                    ),
                }
            }
        }
    }
}
