//! The S3 store against a real S3 server (Garage, started by `ops/services.sh`, which
//! `ops/test.sh` runs): round trips, multipart uploads, listings that stream page by page,
//! and errors that say what went wrong without leaking credentials. Each test uses a bucket
//! of its own.

use lamina_common::config::Secret;
use lamina_tests::s3_settings as settings;
use lamina_common::store::S3Store;
use lamina_common::{ErrorKind, ObjectStore, StoreError};
use lamina_tests::new_bucket;
use tokio::sync::mpsc;

async fn list_all(store: &S3Store, prefix: &str) -> Vec<(String, u64)> {
    let (tx, mut rx) = mpsc::channel(2);
    let listing = store.list(prefix, tx);
    let collect = async {
        let mut keys = vec![];
        while let Some(item) = rx.recv().await {
            let meta = item.unwrap();
            assert!(meta.etag.is_some(), "S3 listings carry ETags");
            keys.push((meta.key, meta.size));
        }
        keys
    };
    let ((), keys) = tokio::join!(listing, collect);
    keys
}

#[tokio::test]
async fn objects_round_trip_under_a_prefix() {
    let bucket = new_bucket("roundtrip");
    let store = S3Store::new(&settings(), &bucket, "some/prefix/").await;
    store.put("a/b.png", b"layer".to_vec()).await.unwrap();
    assert_eq!(store.get("a/b.png").await.unwrap(), b"layer");
    assert!(store.get_opt("a/missing.png").await.unwrap().is_none());
    assert!(matches!(store.get("a/missing.png").await, Err(StoreError::NotFound { .. })));
    store.append("log.jsonl", b"1\n").await.unwrap();
    store.append("log.jsonl", b"2\n").await.unwrap();
    assert_eq!(store.get("log.jsonl").await.unwrap(), b"1\n2\n");
    let etag = store.etag("a/b.png").await.unwrap();
    assert_eq!(etag.len(), 32, "single-part ETag is an MD5: {etag}");
    for bad in ["../escape", "/abs", "a/../../b", "a\0b"] {
        assert!(matches!(store.put(bad, vec![]).await, Err(StoreError::BadKey { .. })), "{bad:?} accepted");
    }
    // The keys really live under the prefix.
    let whole = S3Store::new(&settings(), &bucket, "").await;
    assert_eq!(whole.get("some/prefix/a/b.png").await.unwrap(), b"layer");
}

#[tokio::test]
async fn large_objects_are_uploaded_in_parts_and_read_back_whole() {
    let bucket = new_bucket("multipart");
    let store = S3Store::new(&settings(), &bucket, "").await;
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    store.put("big.bin", big.clone()).await.unwrap();
    let back = store.get("big.bin").await.unwrap();
    assert!(back == big, "40 MB object differs after a multipart round trip");
    assert!(store.etag("big.bin").await.unwrap().ends_with("-3"), "three parts of 16 MB");
}

#[tokio::test]
async fn listings_stream_every_key_page_by_page_in_order() {
    let bucket = new_bucket("listing");
    let store = S3Store::new(&settings(), &bucket, "in").await.with_page_size(7);
    let mut want = vec![];
    for i in 0..30 {
        let key = format!("d{}/img-{i:02}.png", i % 3);
        store.put(&key, vec![0; i]).await.unwrap();
        want.push((key, i as u64));
    }
    store.put("out/x.png", vec![1]).await.unwrap();
    want.push(("out/x.png".to_owned(), 1));
    want.sort();
    assert_eq!(list_all(&store, "").await, want);
    let excluding = store.clone().excluding("out");
    assert_eq!(list_all(&excluding, "").await.len(), 30);
    assert_eq!(list_all(&store, "d1/").await.len(), 10);
}

#[tokio::test]
async fn errors_are_classified_and_never_carry_secrets() {
    let bucket = new_bucket("errors");
    let mut wrong = settings();
    wrong.credentials = Some(("GK0000000000000000000000aa".into(), Secret::new("not-the-secret-0123456789abcdef")));
    wrong.max_attempts = 1;
    let store = S3Store::new(&wrong, &bucket, "").await;
    let err = store.get("x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("S3 answered 403"), "{err}");
    assert!(!format!("{err} {err:?}").contains("not-the-secret"), "secret leaked: {err:?}");

    let mut down = settings();
    down.endpoint = Some("http://127.0.0.1:9".into());
    down.max_attempts = 1;
    let store = S3Store::new(&down, &bucket, "").await;
    let err = store.put("x", vec![1]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    assert!(err.to_string().contains("cannot reach S3"), "{err}");
}
