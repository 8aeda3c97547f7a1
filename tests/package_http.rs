//! `/readyz`: 503 until the user directory is loaded, 200 after; `/healthz` stays liveness.

mod http_support;

use http_support::Harness;

#[tokio::test]
async fn readyz_answers_503_until_the_directory_is_loaded() {
    let h = Harness::new();
    let r = h.get("/readyz", None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.json()["detail"].as_str().unwrap().contains("still being read"), "{}", r.text());
    // Liveness does not wait for the directory.
    assert_eq!(h.get("/healthz", None).await.status, 200);

    let state = h.state.clone();
    tokio::task::spawn_blocking(move || state.warm_directory()).await.unwrap().unwrap();
    let r = h.get("/readyz", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!((body["status"].as_str(), body["store"].as_str(), body["directory"].as_str()), (Some("ready"), Some("ok"), Some("loaded")));
}
