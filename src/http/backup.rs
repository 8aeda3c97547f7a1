//! `GET /api/v1/backup`: a consistent backup of the store while the server holds it, streamed.

use super::error::{ApiError, Problem};
use super::extract::Caller;
use super::AppState;
use crate::error::Error;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::io::{Seek, Write};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// Pieces of the body, as read from the spooled backup.
const PIECE: usize = 64 * 1024;

/// Download a backup of the whole store (format: see `mfadmin restore --help` and docs/reliability.md).
/// Secrets stay sealed: a restore needs the store's key file, which is not in the backup.
#[utoipa::path(
    get, path = "/api/v1/backup", tag = "backup", security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file, to restore with `mfadmin restore FILE`", body = String, content_type = "application/octet-stream"),
        (status = 403, description = "Only an Owner takes backups, and only of a store that holds no other org", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let actor = caller.actor;
    let spool_dir = state.settings.spool_dir.clone();
    // Written record by record to an unnamed file in the data directory, then sent from it: a
    // sled store pauses its commits only while the file is written, never for a slow client,
    // and the backup is never whole in memory.
    let spooled = state
        .call(move |service, now| {
            let failed = |e: std::io::Error| Error::Storage(format!("writing the backup to a temporary file in {}: {e}", spool_dir.display()));
            let mut file = tempfile::tempfile_in(&spool_dir).map_err(failed)?;
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
            crate::backup::take(service, &actor, now, &mut out)?;
            out.flush().map_err(failed)?;
            drop(out);
            file.rewind().map_err(failed)?;
            Ok(file)
        })
        .await?;
    let pieces = futures_util::stream::unfold(Some(tokio::fs::File::from_std(spooled)), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; PIECE];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => {
                // The body can only be cut off now; the client sees a backup that is not whole.
                tracing::error!(error = %e, "reading the spooled backup failed");
                Some((Err(e), None))
            }
        }
    });
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"mfadmin.backup\""),
    ];
    Ok((headers, Body::from_stream(pieces)).into_response())
}
