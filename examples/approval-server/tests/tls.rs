//! The server's own TLS over real loopback, with a self-signed certificate for `127.0.0.1`
//! and `localhost` made at test time: HTTPS answers (the console too) and plain HTTP does not;
//! a client that never sends its ClientHello is dropped after the header-read timeout while
//! holding its connection slot; unusable certificate or key files stop the start, named; and
//! the README's TLS and reverse-proxy `server.toml` lines start a server. A production
//! configuration throughout, so it runs with and without the `demo` feature.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on the first unexpected value"
)]

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use sase_approval_server::config::{Args, Config, ConfigError};
use sase_approval_server::tls::TlsError;
use sase_approval_server::{Error, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ADMIN, SECRET, WORKFLOW};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

mod support;

/// [`support::production_toml`] on `database`.
fn production_toml(database: &Path) -> String {
    format!(
        "database = '{}'\n{}",
        database.display(),
        support::production_toml()
    )
}

/// A self-signed certificate and its key, as PEM files in a directory of their own.
struct Pems {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
}

fn self_signed() -> Pems {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("fullchain.pem"), dir.path().join("privkey.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    Pems {
        dir,
        cert: cert_path,
        key: key_path,
        cert_pem: cert.pem(),
    }
}

/// The production configuration on an ephemeral port, with TLS from `pems` (its database in
/// their directory).
fn tls_config(pems: &Pems) -> Config {
    let mut config =
        Config::from_toml(&production_toml(&pems.dir.path().join("tls.sqlite")), "test.toml").unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.tls_cert_file = Some(pems.cert.clone());
    config.tls_key_file = Some(pems.key.clone());
    config
}

/// A fresh HTTPS client (its own connections) that trusts `pems`' certificate only besides
/// the public roots.
fn https(pems: &Pems) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pems.cert_pem.as_bytes()).unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn healthz(pems: &Pems, addr: SocketAddr) -> Result<u16, reqwest::Error> {
    let res = https(pems).get(format!("https://{addr}/healthz")).send().await?;
    Ok(res.status().as_u16())
}

/// Reads `stream` until the server closes it (end of file or a reset), or `within` passes.
/// Returns what was read and when the stream closed, or `None` if it stayed open.
async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buf = [0_u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some((read, started.elapsed()))
}

#[tokio::test]
async fn https_answers_with_the_configured_certificate() {
    let pems = self_signed();
    let server = sase_approval_server::start(tls_config(&pems)).await.unwrap();
    assert_eq!(server.scheme(), "https");
    let addr = server.addr;
    let http = https(&pems);

    let health = http.get(format!("https://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.version(),
        reqwest::Version::HTTP_11,
        "ALPN offers HTTP/1.1 only"
    );
    // The same name over `localhost`: the certificate is the one configured.
    let by_name = http
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), 200);

    // The console, with and without the admin token.
    let (status, workflows) = support::json(
        http.get(format!("https://{addr}/api/console/workflows"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(workflows[0]["id"], WORKFLOW, "{workflows}");
    assert!(!workflows.to_string().contains(SECRET), "secrets stay out");
    let (anonymous, _) = support::json(http.get(format!("https://{addr}/api/console/workflows"))).await;
    assert_eq!(anonymous, 401);

    // The Request URL is https by default, and its route answers over TLS (an unsigned push
    // is refused by the route, not by the transport).
    let url = server.request_url(WORKFLOW).unwrap().to_owned();
    assert!(
        url.starts_with(&format!("https://{addr}/dingtalk/callback/")),
        "{url}"
    );
    let push = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(push.status(), 400, "{url}");

    // A client that trusts only the public roots refuses the self-signed certificate.
    let stranger = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = stranger.get(format!("https://{addr}/healthz")).send().await;
    assert!(
        refused.unwrap_err().is_connect(),
        "the handshake fails on the client's side"
    );
    // ...and the server went on serving.
    assert_eq!(healthz(&pems, addr).await.unwrap(), 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let pems = self_signed();
    let server = sase_approval_server::start(tls_config(&pems)).await.unwrap();
    let addr = server.addr;

    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "no HTTP answer: {plain:?}");

    // By hand: the request is not a ClientHello; the server closes without an HTTP response.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut raw, Duration::from_secs(5))
        .await
        .expect("the server closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // Failed handshakes did not stop the accept loop.
    assert_eq!(healthz(&pems, addr).await.unwrap(), 200);
    server.shutdown().await.unwrap();
}

/// A TLS connection of our own (tokio-rustls, trusting `pems`), to stay silent after the
/// handshake.
async fn tls_connect(pems: &Pems, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pems.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The previous client's connection may still hold the one slot for a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let tcp = TcpStream::connect(addr).await.unwrap();
        match connector
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
        {
            Ok(stream) => return stream,
            Err(e) if Instant::now() > deadline => panic!("no TLS connection: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn a_silent_client_holds_its_slot_only_until_the_header_read_timeout() {
    let pems = self_signed();
    let mut config = tls_config(&pems);
    config.header_read_timeout_secs = 1;
    config.max_connections = 1;
    let server = sase_approval_server::start(config).await.unwrap();
    let addr = server.addr;

    // Opens TCP and sends nothing: no ClientHello.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its handshake holds the only slot: a new client is closed at once.
    let refused = healthz(&pems, addr).await;
    assert!(refused.is_err(), "past the cap: {refused:?}");
    // Dropped after the header-read timeout (1 s), not at once and not never.
    let (sent, after) = read_until_closed(&mut silent, Duration::from_secs(5))
        .await
        .expect("the silent client is dropped");
    assert!(sent.is_empty(), "{sent:?}");
    assert!(after >= Duration::from_millis(700), "{after:?}");
    // Its slot is free again: a fresh TLS client is served.
    assert_eq!(served_soon(&pems, addr).await, 200);

    // A client that completes the handshake but sends no request is dropped as well.
    let mut quiet = tls_connect(&pems, addr).await;
    let (sent, after) = read_until_closed(&mut quiet, Duration::from_secs(5))
        .await
        .expect("a silent TLS client is dropped");
    assert!(
        !sent.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    assert!(after >= Duration::from_millis(700), "{after:?}");
    assert_eq!(served_soon(&pems, addr).await, 200);
    server.shutdown().await.unwrap();
}

/// `/healthz`'s status once the one connection slot is free (the server closes a dropped
/// connection just before it frees its slot).
async fn served_soon(pems: &Pems, addr: SocketAddr) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match healthz(pems, addr).await {
            Ok(status) => return status,
            Err(e) if Instant::now() > deadline => panic!("not served again: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Why `config` did not start.
async fn refused(config: Config) -> Error {
    match sase_approval_server::start(config).await {
        Ok(server) => {
            server.shutdown().await.unwrap();
            panic!("the server started");
        }
        Err(e) => e,
    }
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_naming_them() {
    let pems = self_signed();
    let other = self_signed();

    // A missing key file.
    let missing = pems.dir.path().join("missing.pem");
    let mut config = tls_config(&pems);
    config.tls_key_file = Some(missing.clone());
    let e = refused(config).await;
    assert!(
        matches!(&e, Error::Tls(TlsError::Read { path, .. }) if *path == missing),
        "{e:?}"
    );
    assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");

    // Another certificate's key.
    let mut config = tls_config(&pems);
    config.tls_key_file = Some(other.key.clone());
    let e = refused(config).await;
    assert!(
        matches!(&e, Error::Tls(TlsError::Key { path, cert, .. }) if *path == other.key && *cert == pems.cert),
        "{e:?}"
    );
    assert!(e.to_string().starts_with(&other.key.display().to_string()), "{e}");
    assert!(e.to_string().contains("consistent"), "rustls says why: {e}");

    // A certificate file with no certificate (the key given twice).
    let mut config = tls_config(&pems);
    config.tls_cert_file = Some(pems.key.clone());
    let e = refused(config).await;
    assert!(
        matches!(&e, Error::Tls(TlsError::NoCertificate { path }) if *path == pems.key),
        "{e:?}"
    );
    assert!(e.to_string().contains("no certificate"), "{e}");

    // A key file with no key (the certificate given twice).
    let mut config = tls_config(&pems);
    config.tls_key_file = Some(pems.cert.clone());
    let e = refused(config).await;
    assert!(
        matches!(&e, Error::Tls(TlsError::NoKey { path }) if *path == pems.cert),
        "{e:?}"
    );
    assert!(e.to_string().contains("no private key"), "{e}");

    // A certificate that is not valid PEM.
    let broken = pems.dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    let mut config = tls_config(&pems);
    config.tls_cert_file = Some(broken.clone());
    let e = refused(config).await;
    assert!(
        matches!(&e, Error::Tls(TlsError::Read { path, .. }) if *path == broken),
        "{e:?}"
    );

    // One of the two keys alone.
    for (cert, key, named) in [(true, false, "tls_key_file"), (false, true, "tls_cert_file")] {
        let mut config = tls_config(&pems);
        if !cert {
            config.tls_cert_file = None;
        }
        if !key {
            config.tls_key_file = None;
        }
        let e = refused(config).await;
        assert!(
            matches!(&e, Error::Config(ConfigError::Invalid { key, .. }) if key == named),
            "{e:?}"
        );
        assert!(e.to_string().starts_with(named), "{e}");
    }
}

#[test]
fn the_environment_sets_the_tls_files() {
    let pems = self_signed();
    let file = pems.dir.path().join("server.toml");
    std::fs::write(&file, production_toml(&pems.dir.path().join("env.sqlite"))).unwrap();
    let mut args = Args::default();
    args.config = Some(file);
    let (cert, key) = (pems.cert.display().to_string(), pems.key.display().to_string());
    let config = Config::load(&args, |k| match k {
        "SASE_TLS_CERT_FILE" => Some(cert.clone()),
        "SASE_TLS_KEY_FILE" => Some(key.clone()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        config.tls_files(),
        Some((pems.cert.as_path(), pems.key.as_path()))
    );
    let plain = Config::load(&args, |_| None).unwrap();
    assert_eq!(plain.tls_files(), None);
    let alone = Config::load(&args, |k| (k == "SASE_TLS_CERT_FILE").then(|| cert.clone())).unwrap_err();
    assert!(
        matches!(&alone, ConfigError::Invalid { key, .. } if key == "tls_key_file"),
        "{alone}"
    );
}

/// The first `toml` block after `marker` in the README.
fn readme_toml_after(marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let (_, after) = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("the README says {marker:?}"));
    let (_, block) = after.split_once("```toml\n").expect("then a toml block");
    let (block, _) = block.split_once("```").expect("that ends");
    block.to_owned()
}

/// The README's `block` on top of the production configuration.
fn with_readme(block: &str, pems: &Pems) -> Config {
    let text = format!(
        "{block}\n{}",
        production_toml(&pems.dir.path().join("readme.sqlite"))
    );
    Config::from_toml(&text, "README.md").unwrap()
}

#[tokio::test]
async fn the_readme_tls_lines_start_an_https_server() {
    let pems = self_signed();
    let mut config = with_readme(
        &readme_toml_after("To have the server terminate TLS itself, add to `server.toml`:"),
        &pems,
    );
    assert_eq!(
        config.tls_files(),
        Some((
            Path::new("/etc/sase/tls/fullchain.pem"),
            Path::new("/etc/sase/tls/privkey.pem")
        ))
    );
    // As the README has it, but with this test's certificate and port.
    config.tls_cert_file = Some(pems.cert.clone());
    config.tls_key_file = Some(pems.key.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server: Server = sase_approval_server::start(config).await.unwrap();
    assert_eq!(server.scheme(), "https");
    assert_eq!(healthz(&pems, server.addr).await.unwrap(), 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_readme_reverse_proxy_lines_give_public_https_request_urls() {
    let pems = self_signed();
    let mut config = with_readme(
        &readme_toml_after("Behind a reverse proxy, give `server.toml` the public URL:"),
        &pems,
    );
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.tls_files(), None, "the proxy terminates TLS");
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = sase_approval_server::start(config).await.unwrap();
    assert_eq!(server.scheme(), "http");
    let url = server.request_url(WORKFLOW).unwrap();
    assert!(
        url.starts_with("https://sase.example.com/dingtalk/callback/"),
        "{url}"
    );
    // What the proxy forwards to: plain HTTP on loopback.
    let path = url.strip_prefix("https://sase.example.com").unwrap();
    let push = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}{path}", server.addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        push.status(),
        400,
        "the Request URL's route, refusing an unsigned push"
    );
    server.shutdown().await.unwrap();
}
