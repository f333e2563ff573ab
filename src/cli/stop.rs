//! Stopping a one-shot command that changes things on SIGTERM or SIGINT, at
//! the next safe point and within the configured grace; at once on a second
//! signal.

use crate::config::Config;
use crate::engine::orchestrate::{Signals, Stop};

use super::Ending;

/// The stop handling of a one-shot command that changes things (`apply`,
/// `migrate`, `run --once`), as the daemon's: SIGTERM or SIGINT sets the
/// stop flag, the apply stops between actions, finishes its journal and
/// ends; past `[schedule] shutdown_grace_secs`, or on a second signal, the
/// command ends anyway (as terraform does on a second Ctrl-C: what was done
/// is journaled, and the same command finishes the rest). Without it, as a
/// container's PID 1, such a command would ignore SIGTERM (PID 1 gets no
/// default action) and run on until SIGKILL.
pub(super) struct Stopping {
    pub(super) stop: Stop,
    signals: std::sync::Mutex<Option<Signals>>,
    grace: std::time::Duration,
}

impl Stopping {
    /// Listens for the signals on `rt`.
    pub(super) fn listen(rt: &tokio::runtime::Runtime, config: &Config) -> anyhow::Result<Self> {
        let _entered = rt.enter();
        Ok(Self {
            stop: Stop::default(),
            signals: std::sync::Mutex::new(Some(Signals::listen()?)),
            grace: config.schedule.shutdown_grace,
        })
    }

    /// The flag the apply reads between actions.
    pub(super) fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.flag()
    }

    /// Runs `work`; after a signal, says at once that it is stopping, waits
    /// for it at most the grace or until a second signal, and the ending
    /// names the signal (its exit code).
    pub(super) async fn within_grace(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<Ending>>,
    ) -> anyhow::Result<Ending> {
        tokio::pin!(work);
        let Some(mut signals) = self
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return work.await;
        };
        let first = tokio::select! {
            result = &mut work => return result,
            name = signals.next() => name,
        };
        self.stop.request();
        let stopped = |ending: Ending| Ending {
            signal: Some(first),
            ..ending
        };
        // Work that ends at the request (the approval prompt, which awaits
        // it) needs no word of stopping.
        tokio::select! {
            biased;
            result = &mut work => return result.map(stopped),
            () = std::future::ready(()) => {}
        }
        super::say(&stopping_line(first, self.grace));
        tokio::select! {
            result = &mut work => result.map(stopped),
            () = tokio::time::sleep(self.grace) => anyhow::bail!(
                "stopped by {first}: not finished within the grace of {} ([schedule] shutdown_grace_secs); what was done is journaled, and the same command finishes the rest",
                crate::protocol::human_duration(self.grace)
            ),
            second = signals.next() => Ok(Ending {
                errors: vec![format!(
                    "stopped at once by a second {second}: the actions under way were left unfinished; what was done is journaled, and the same command finishes the rest"
                )],
                signal: Some(second),
                ..Ending::default()
            }),
        }
    }
}

/// What a one-shot command says the moment a signal stops it.
fn stopping_line(signal: &str, grace: std::time::Duration) -> String {
    let again = if signal == "SIGINT" {
        "Ctrl-C again"
    } else {
        "a second signal"
    };
    format!(
        "Stopping ({signal}): nothing new begins, and what is under way finishes (at most {}); {again} stops at once.",
        crate::protocol::human_duration(grace)
    )
}
