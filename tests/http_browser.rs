//! A real browser: headless Chromium loads `/docs` from a server on 127.0.0.1 with every other host
//! unresolvable, and the page shows the operations (Swagger UI is served from the binary).
//! Needs Debian's `chromium` (`.ci/run` installs it); without it the test says so and passes,
//! except under CI, where it fails.

mod http_support;

use http_support::Harness;
use std::time::Duration;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().map(str::to_string).find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_renders_every_operation_offline_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium (apt-get install -y chromium)");
        eprintln!("skipped: no chromium on this machine (apt-get install -y chromium)");
        return;
    };
    let h = Harness::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mfadmin::http::run(
        listener,
        h.state.clone(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        // No network but this server: every other host name fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("http://{addr}/docs/"))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let child = cmd.spawn().expect("chromium starts");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("chromium finishes within 120 s")
        .expect("chromium output");
    let dom = String::from_utf8_lossy(&out.stdout);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), server).await.expect("the server stops").unwrap().unwrap();

    assert!(dom.contains("swagger-ui"), "no Swagger UI in the page:\n{dom}");
    assert!(dom.contains("authorize"), "no Authorize button:\n{dom}");
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/mfa",
        "/api/v1/users",
        "/api/v1/users/{id}/mfa/reset",
        "/api/v1/mfa/reset",
        "/api/v1/audit/verify",
        "/healthz",
        "/mfa/reset",
        "/api/v1/users/{id}/reset-mfa",
        "/user/users/mfa/reset",
        "/api/v1/ManagedAccount/ResetMFA/{id}",
    ] {
        assert!(dom.contains(&format!("data-path=\"{path}\"")), "the page does not show {path}");
    }
    let operations = dom.matches("class=\"opblock-summary-path\"").count();
    assert_eq!(operations, 36 + 10, "every operation is listed: 36 native, 10 vendor-compatible");
}
