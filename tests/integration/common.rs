//! Shared by the integration tests: the emulator endpoint, unique envs, options, raw clients.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tap::app::{self, Command as Cmd, Options, Report};
use tap::aws::{Aws, Connection};
use tap::config::Inputs;

/// `TAP_TEST_ENDPOINT`, or the emulator that `localstack/emulator.sh` starts (once).
pub fn endpoint() -> String {
    static EP: OnceLock<String> = OnceLock::new();
    EP.get_or_init(|| {
        if let Ok(e) = std::env::var("TAP_TEST_ENDPOINT") {
            return e;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("localstack/emulator.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg("start")
            .status()
            .expect("run localstack/emulator.sh");
        assert!(st.success(), "localstack/emulator.sh start failed");
        let port = std::env::var("TAP_EMULATOR_PORT").unwrap_or_else(|_| "4566".into());
        format!("http://127.0.0.1:{port}")
    })
    .clone()
}

/// An env suffix of its own for each test (tests share one emulator).
pub fn unique_env(prefix: &str) -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).unwrap();
    format!("{prefix}{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

pub fn state_path(env: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tap-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{env}.json"))
}

pub fn connection() -> Connection {
    Connection {
        endpoint_url: Some(endpoint()),
        test_credentials_fallback: true,
        verbose: false,
    }
}

pub fn options(env: &str) -> Options {
    let inputs = Inputs::new(
        env,
        "us-east-1",
        "eu-west-1",
        Some("tap-tests".into()),
        Some("ci".into()),
    )
    .unwrap();
    let mut o = Options::new(inputs, state_path(env), connection());
    o.progress_every = Duration::ZERO;
    o
}

pub async fn run(cmd: Cmd, o: &Options) -> Report {
    let r = app::execute(cmd, o)
        .await
        .unwrap_or_else(|e| panic!("{cmd:?} failed to run: {e}"));
    let failures: Vec<_> = r
        .failures()
        .into_iter()
        .map(|f| format!("{} {:?}", f.id, f.outcome))
        .collect();
    assert!(failures.is_empty(), "{cmd:?} had failures: {failures:#?}");
    r
}

/// Raw SDK clients against the test endpoint, for checks independent of tap's own reads.
pub async fn raw() -> Arc<Aws> {
    Arc::new(Aws::connect(&connection(), "us-east-1").await)
}

pub fn mutating(r: &Report) -> Vec<String> {
    r.calls
        .iter()
        .filter(|c| c.is_mutating())
        .map(|c| format!("{} {}.{}", c.region, c.service, c.operation))
        .collect()
}
