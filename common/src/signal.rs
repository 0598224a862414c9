//! Shutdown on SIGTERM (Kubernetes, spot reclaim, scale-down) or SIGINT (a terminal).

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Fires `token` on the first SIGTERM or SIGINT.
pub async fn on_shutdown(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else { return };
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
            _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    token.cancel();
}

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The shell's exit status for a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

/// Fires `first` with the signal's name on the first SIGTERM or SIGINT, and `second` on the
/// next one (a user who presses Ctrl-C twice wants out now).
pub async fn on_signals(first: &tokio::sync::watch::Sender<Option<StopSignal>>, second: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else { return };
        let Ok(mut int) = signal(SignalKind::interrupt()) else { return };
        for round in 0..2 {
            let which = tokio::select! {
                _ = term.recv() => StopSignal::Terminate,
                _ = int.recv() => StopSignal::Interrupt,
            };
            info!(signal = which.name(), "stop requested");
            if round == 0 {
                let _ = first.send(Some(which));
            } else {
                second.cancel();
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = first.send(Some(StopSignal::Interrupt));
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            second.cancel();
        }
    }
}

/// Runs a service beside its HTTP endpoint and turns how they end into the process's exit
/// code: 0 when the service stopped (it was told to), 1 when it gave up (`error`), 2 when the
/// endpoint stopped serving on its own (its address in use, `what` on `addr`).
pub async fn exit_code<E: std::fmt::Display, T>(
    service: impl std::future::Future<Output = Result<(), E>>,
    endpoint: tokio::task::JoinHandle<T>,
    what: &str,
    addr: std::net::SocketAddr,
    shutdown: &CancellationToken,
) -> std::process::ExitCode {
    tokio::pin!(service);
    let served = tokio::select! {
        served = &mut service => served,
        _ = endpoint => {
            if !shutdown.is_cancelled() {
                tracing::error!(address = %addr, "the {what} stopped (is the address in use?)");
                return std::process::ExitCode::from(2);
            }
            service.await
        }
    };
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "giving up");
            std::process::ExitCode::from(1)
        }
    }
}
