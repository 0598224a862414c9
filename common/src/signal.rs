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
