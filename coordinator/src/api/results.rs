//! Pages through a job's `results.jsonl` as it is stored (see [`crate::job`]): a cursor is a
//! byte offset into the job's results, read with ranged reads so a page of a million-image
//! job costs one or two small requests. While a job runs on S3 its results are the parts under
//! `results.parts/`, read as if concatenated; assembling them at the end writes exactly those
//! bytes to `results.jsonl`, so a cursor stays good across the job's end.

use lamina_common::messages::TaskResult;
use lamina_common::{ObjectStore, StoreError};

/// Bytes read at once; a result line is at most a message (64 KiB), so two reads always
/// hold a whole line.
const CHUNK: u64 = 64 * 1024;

/// One page of results.
#[derive(Debug)]
pub struct Page {
    pub results: Vec<TaskResult>,
    /// Where the next page starts.
    pub next: u64,
    /// Whether `next` is the end of the results as stored now.
    pub at_end: bool,
}

/// The results stored under `prefix` (a job's records folder): the assembled file, or the
/// parts of a job still running on a store without append.
enum Source {
    File(String),
    Parts(Vec<(String, u64)>),
}

async fn source(store: &dyn ObjectStore, prefix: &str, finished: bool) -> Result<Source, StoreError> {
    let file = format!("{prefix}/results.jsonl");
    if finished {
        return Ok(Source::File(file));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let parts_prefix = format!("{prefix}/results.parts/");
    let listing = async {
        store.list(&parts_prefix, tx).await;
    };
    let collect = async {
        let mut parts = Vec::new();
        while let Some(meta) = rx.recv().await {
            let meta = match meta {
                Ok(meta) => meta,
                // No parts folder (a local store lists a missing folder as an error).
                Err(StoreError::NotFound { .. }) => break,
                Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            };
            let number = meta.key.rsplit('/').next().and_then(|n| n.strip_suffix(".jsonl")).and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = number {
                parts.push((n, meta.key, meta.size));
            }
        }
        Ok::<_, StoreError>(parts)
    };
    let ((), parts) = tokio::join!(listing, collect);
    let mut parts = parts?;
    parts.sort();
    // Parts numbered from 0 without a gap are the results; anything else is a job whose
    // parts are being deleted after assembling them into the file.
    if parts.is_empty() || parts.iter().enumerate().any(|(i, (n, ..))| *n != i as u64) {
        return Ok(Source::File(file));
    }
    Ok(Source::Parts(parts.into_iter().map(|(_, key, size)| (key, size)).collect()))
}

impl Source {
    /// At most `len` bytes from `offset`; fewer at the end.
    async fn read(&self, store: &dyn ObjectStore, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        match self {
            Source::File(key) => match store.get_range(key, offset, len).await {
                Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
                other => other,
            },
            Source::Parts(parts) => {
                let mut out = Vec::new();
                let mut start = 0u64;
                for (key, size) in parts {
                    let end = start + size;
                    let want = offset + out.len() as u64;
                    if want < end && (out.len() as u64) < len {
                        let bytes = store.get_range(key, want - start, (len - out.len() as u64).min(end - want)).await?;
                        out.extend_from_slice(&bytes);
                    }
                    start = end;
                }
                Ok(out)
            }
        }
    }
}

/// Up to `limit` results from byte `from` of the results under `prefix`. A line not yet
/// complete (being written) ends the page before it.
pub async fn page(store: &dyn ObjectStore, prefix: &str, finished: bool, from: u64, limit: usize) -> Result<Page, StoreError> {
    let source = source(store, prefix, finished).await?;
    let mut results = Vec::new();
    let mut next = from;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let bytes = source.read(store, next + pending.len() as u64, CHUNK).await?;
        let short = (bytes.len() as u64) < CHUNK;
        pending.extend_from_slice(&bytes);
        let mut used = 0;
        while results.len() < limit {
            let Some(newline) = pending[used..].iter().position(|&b| b == b'\n') else { break };
            let line = &pending[used..used + newline];
            // A line that does not parse (from a newer writer) is passed over, not fatal.
            if let Ok(result) = serde_json::from_slice::<TaskResult>(line) {
                results.push(result);
            }
            used += newline + 1;
        }
        next += used as u64;
        pending.drain(..used);
        if results.len() >= limit || short {
            // At the end when nothing more is stored and no whole line is left over.
            let at_end = short && !pending.contains(&b'\n');
            return Ok(Page { results, next, at_end });
        }
        if pending.len() as u64 > 2 * CHUNK {
            // Longer than any result can be: not a results file.
            return Ok(Page { results, next, at_end: true });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_common::store::LocalStore;

    fn line(i: usize) -> String {
        format!("{}\n", serde_json::to_string(&TaskResult::skipped(format!("img-{i:05}.png"))).unwrap())
    }

    async fn all(store: &dyn ObjectStore, finished: bool, limit: usize) -> Vec<String> {
        let (mut keys, mut from) = (Vec::new(), 0);
        loop {
            let page = page(store, "jobs/j", finished, from, limit).await.unwrap();
            assert!(page.results.len() <= limit);
            keys.extend(page.results.into_iter().map(|r| r.key));
            from = page.next;
            if page.at_end {
                return keys;
            }
        }
    }

    #[tokio::test]
    async fn pages_cover_every_result_once_from_parts_and_from_the_assembled_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let lines: Vec<String> = (0..1500).map(line).collect();
        let expected: Vec<String> = (0..1500).map(|i| format!("img-{i:05}.png")).collect();
        // Parts of 512 lines, as a running job on S3 writes them.
        for (n, chunk) in lines.chunks(512).enumerate() {
            store.put(&format!("jobs/j/results.parts/{n:08}.jsonl"), chunk.concat().into_bytes()).await.unwrap();
        }
        assert_eq!(all(&store, false, 100).await, expected);
        // A cursor taken from the parts is good in the assembled file.
        let first = page(&store, "jobs/j", false, 0, 700).await.unwrap();
        store.put("jobs/j/results.jsonl", lines.concat().into_bytes()).await.unwrap();
        store.delete("jobs/j/results.parts/00000000.jsonl").await.unwrap();
        let rest = page(&store, "jobs/j", false, first.next, 1).await.unwrap();
        assert_eq!(rest.results[0].key, "img-00700.png", "parts being deleted: the file is read");
        assert_eq!(all(&store, true, 1000).await, expected);
    }

    #[tokio::test]
    async fn a_line_being_written_is_left_for_the_next_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let torn = format!("{}{}", line(0), &line(1)[..10]);
        store.put("jobs/j/results.jsonl", torn.into_bytes()).await.unwrap();
        let page1 = page(&store, "jobs/j", false, 0, 10).await.unwrap();
        assert_eq!(page1.results.len(), 1);
        assert_eq!(page1.next, line(0).len() as u64);
        assert!(page1.at_end);
        let empty = page(&store, "jobs/missing", true, 0, 10).await.unwrap();
        assert!(empty.results.is_empty() && empty.at_end);
    }
}
