//! A real browser for the console tests: headless Chromium driven through ChromeDriver
//! (Debian's `chromium` and `chromium-driver`), over WebDriver on 127.0.0.1. Where either is
//! missing the test prints a SKIPPED line and passes, unless `SASE_REQUIRE_BROWSER` is set
//! (CI), where it fails.

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A browser session, and the ChromeDriver it talks to (killed on drop).
pub(crate) struct Browser {
    pub(crate) client: Client,
    _driver: Child,
    /// Where screenshots go: `target/console-screenshots/`.
    shots: PathBuf,
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium with English as the browser's language;
    /// `None` (after the SKIPPED line) where they are not installed.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        let chromium = find(
            "SASE_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = find("SASE_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var_os("SASE_REQUIRE_BROWSER").is_none(),
                "SASE_REQUIRE_BROWSER is set, but Chromium or ChromeDriver is missing \
                 (apt-get install -y chromium chromium-driver)"
            );
            println!("SKIPPED {test}: Chromium and ChromeDriver are not installed (apt-get install -y chromium chromium-driver)");
            return None;
        };
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--lang=en-US", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update"],
                "prefs": {"intl.accept_languages": "en-US,en"},
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let mut client = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            client: client.unwrap_or_else(|| panic!("ChromeDriver never answered on port {port}")),
            _driver: child,
            shots,
        })
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The element `css` finds, waiting up to 10 s for it.
    pub(crate) async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!("no `{css}` on {:?}: {e}", self.client.current_url().await),
        }
    }

    /// The text of the element `css` finds.
    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits up to 15 s until the element `css` finds contains `text`.
    pub(crate) async fn wait_for_text(&self, css: &str, text: &str) {
        for _ in 0..150 {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                if e.text().await.is_ok_and(|t| t.contains(text)) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` never contained `{text}`: {:?}", self.text(css).await);
    }

    /// Waits up to 10 s until the page's path is `path`.
    pub(crate) async fn wait_for_path(&self, path: &str) {
        for _ in 0..100 {
            if self.client.current_url().await.is_ok_and(|u| u.path() == path) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never at {path}: {:?}", self.client.current_url().await);
    }

    /// Types `text` into the field `css` finds.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Saves a screenshot of the page as `{name}.png`.
    pub(crate) async fn shot(&self, name: &str) -> PathBuf {
        // The page from its top, as it opens.
        self.client
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The checks every console page gets, and its screenshot: no browser errors, every
    /// control labelled, the page from its top as `{name}.png`, then the keyboard walk.
    pub(crate) async fn page_checks(&self, name: &str) {
        self.assert_no_errors(name).await;
        self.assert_labelled(name).await;
        self.client
            .execute("document.activeElement.blur();", vec![])
            .await
            .unwrap();
        self.shot(name).await;
        self.assert_keyboard(name).await;
    }

    /// The browser's console messages since the last call (ChromeDriver's log endpoint).
    pub(crate) async fn log(&self) -> Vec<Value> {
        let answer = self.client.issue_cmd(BrowserLog).await.unwrap();
        answer.as_array().cloned().unwrap_or_default()
    }

    /// Fails on any error the page logged (a script error, a resource that did not load, a
    /// CSP violation). The script's own calls to the API that were answered with an error
    /// (a wrong password, say) are logged by Chromium too; the page shows those, so they are
    /// not page errors.
    pub(crate) async fn assert_no_errors(&self, page: &str) {
        let errors: Vec<Value> = self
            .log()
            .await
            .into_iter()
            .filter(|m| m["level"] == "SEVERE")
            .filter(|m| {
                let message = m["message"].as_str().unwrap_or_default();
                !(m["source"] == "network" && message.contains("/api/console/"))
            })
            .collect();
        assert!(
            errors.is_empty(),
            "{page}: the browser logged errors: {errors:#?}"
        );
    }

    /// Every form control of the page has a label: a `<label for>`, an enclosing label,
    /// `aria-label` or `aria-labelledby` (hidden inputs and buttons aside).
    pub(crate) async fn assert_labelled(&self, page: &str) {
        let unlabelled = self
            .client
            .execute(
                r#"return Array.from(document.querySelectorAll('input, select, textarea'))
                    .filter(e => e.type !== 'hidden' && e.type !== 'submit')
                    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                                 && !e.getAttribute('aria-labelledby'))
                    .map(e => e.outerHTML);"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, json!([]), "{page}: controls without a label");
    }

    /// Tabs through the page from its start (loaded again, so the focus starts at the top):
    /// no link, button or field is taken out of the tab order, Tab reaches them, and each
    /// shows where the focus is (an outline or box shadow while focused).
    pub(crate) async fn assert_keyboard(&self, page: &str) {
        self.client.refresh().await.unwrap();
        self.find("main").await;
        let report = self
            .client
            .execute(
                r#"const focusable = Array.from(document.querySelectorAll(
                       'a[href], button:not([disabled]), input:not([type=hidden]), select, textarea'))
                     .filter(e => e.offsetParent !== null);
                   return focusable.filter(e => e.tabIndex < 0).map(e => e.outerHTML);"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(report, json!([]), "{page}: controls taken out of the tab order");
        // Real key presses: Tab moves the focus through the page and it is visible.
        let mut seen = 0;
        for _ in 0..60 {
            let tab = KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: '\u{E004}' })
                .then(KeyAction::Up { value: '\u{E004}' });
            self.client.perform_actions(tab).await.unwrap();
            let shown = self
                .client
                .execute(
                    r#"const e = document.activeElement;
                       if (!e || e === document.body) return null;
                       const s = getComputedStyle(e);
                       const visible = s.outlineStyle !== 'none' && s.outlineWidth !== '0px' || s.boxShadow !== 'none';
                       return visible ? true : e.outerHTML;"#,
                    vec![],
                )
                .await
                .unwrap();
            if shown == Value::Null {
                break;
            }
            assert_eq!(
                shown,
                Value::Bool(true),
                "{page}: the focused control shows no focus"
            );
            seen += 1;
        }
        assert!(seen > 0, "{page}: Tab reaches nothing");
    }
}

/// ChromeDriver's `POST /session/{id}/se/log` for the browser's console.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// The screenshots directory, for the README's pictures.
pub(crate) fn screenshots() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/console-screenshots"
    ))
}
