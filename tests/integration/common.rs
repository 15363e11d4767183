//! Shared by the integration tests: the emulator endpoint, unique envs, options, raw clients.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tap::app::{self, Command as Cmd, Options, Report};
use tap::aws::{Aws, Connection};
use tap::config::Inputs;

/// The plain emulators: `TAP_TEST_ENDPOINT` (one URL, or several separated by commas), or the
/// one `localstack/emulator.sh` starts (once).
fn endpoints() -> &'static [String] {
    static EPS: OnceLock<Vec<String>> = OnceLock::new();
    EPS.get_or_init(|| {
        if let Ok(e) = std::env::var("TAP_TEST_ENDPOINT") {
            return e
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("localstack/emulator.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg("start")
            .status()
            .expect("run localstack/emulator.sh");
        assert!(st.success(), "localstack/emulator.sh start failed");
        let port = std::env::var("TAP_EMULATOR_PORT").unwrap_or_else(|_| "4566".into());
        vec![format!("http://127.0.0.1:{port}")]
    })
}

/// This test's emulator: with several, one chosen by the test's name (libtest runs each test on
/// a thread named after it), so that one moto process (one core, Python) is not every test's.
pub fn endpoint() -> String {
    let all = endpoints();
    let name = std::thread::current().name().unwrap_or_default().to_string();
    let h = name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    all[h as usize % all.len()].clone()
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
        // Short backoffs: the emulator answers in milliseconds.
        retry: tap::aws::RetryBudget {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
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

/// The emulator in timing mode: `TAP_TEST_TIMING_ENDPOINT`, or one started on
/// `TAP_TIMING_PORT` (default 4567) by `localstack/emulator.sh start --timing`.
pub fn timing_endpoint() -> String {
    static EP: OnceLock<String> = OnceLock::new();
    EP.get_or_init(|| {
        if let Ok(e) = std::env::var("TAP_TEST_TIMING_ENDPOINT") {
            return e;
        }
        let port = std::env::var("TAP_TIMING_PORT").unwrap_or_else(|_| "4567".into());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("localstack/emulator.sh");
        let st = Command::new("bash")
            .arg(&script)
            .args(["start", "--timing"])
            .env("TAP_EMULATOR_PORT", &port)
            .status()
            .expect("run localstack/emulator.sh");
        assert!(st.success(), "localstack/emulator.sh start --timing failed");
        format!("http://127.0.0.1:{port}")
    })
    .clone()
}

/// What the timing emulator saw: (seconds since epoch, service, action, id).
pub fn timing_events() -> Vec<(f64, String, String, String)> {
    timing_events_at(&timing_endpoint())
}

/// What the timing emulator at `endpoint` saw.
pub fn timing_events_at(endpoint: &str) -> Vec<(f64, String, String, String)> {
    let v: serde_json::Value = get_json(&format!("{endpoint}/_timing/events"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (e["t"].as_f64().unwrap(), s("service"), s("action"), s("id"))
        })
        .collect()
}

pub fn timing_config() -> serde_json::Value {
    timing_config_at(&timing_endpoint())
}

/// The settings of the timing emulator at `endpoint`.
pub fn timing_config_at(endpoint: &str) -> serde_json::Value {
    get_json(&format!("{endpoint}/_timing/config"))
}

pub fn get_json(url: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request;sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
            url,
        ])
        .output()
        .expect("python3");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A fault-mode emulator of its own (`localstack/emulator.sh start --faults`) on port 4580+`n`,
/// injecting `spec` (TAP_FAULTS), or `TAP_TEST_FAULT_ENDPOINT_<n>` when set. Each test that
/// injects faults gets one: the rates and the seed are per emulator.
pub fn fault_endpoint(n: u16, spec: &str) -> String {
    static EPS: std::sync::Mutex<Vec<(u16, String)>> = std::sync::Mutex::new(Vec::new());
    let mut eps = EPS.lock().unwrap();
    if let Some((_, e)) = eps.iter().find(|(k, _)| *k == n) {
        return e.clone();
    }
    let e = match std::env::var(format!("TAP_TEST_FAULT_ENDPOINT_{n}")) {
        Ok(e) => e,
        Err(_) => {
            let port = (4580 + n).to_string();
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("localstack/emulator.sh");
            // A fresh emulator: one left by an earlier run holds other objects and settings.
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .env("TAP_EMULATOR_PORT", &port)
                .status();
            let st = Command::new("bash")
                .arg(&script)
                .args(["start", "--faults"])
                .env("TAP_EMULATOR_PORT", &port)
                .env("TAP_FAULTS", spec)
                .status()
                .expect("run localstack/emulator.sh");
            assert!(st.success(), "localstack/emulator.sh start --faults failed");
            format!("http://127.0.0.1:{port}")
        }
    };
    eps.push((n, e.clone()));
    e
}

/// A plain emulator of its own on `port` (`localstack/emulator.sh start`, fresh), or
/// `TAP_TEST_OWN_ENDPOINT_<port>` when set: for tests whose switches (a region outage) must not
/// reach the tests sharing the common emulators. Started once per run; .ci/run stops it.
pub fn own_emulator(port: u16) -> String {
    own_emulator_in(port, None)
}

/// [`own_emulator`] in the timing mode (`start --timing`): a test whose RDS waits must not queue
/// behind the shared timing emulator's (it serves RDS calls one at a time).
pub fn own_timing_emulator(port: u16) -> String {
    own_emulator_in(port, Some("--timing"))
}

fn own_emulator_in(port: u16, mode: Option<&str>) -> String {
    static EPS: std::sync::Mutex<Vec<(u16, String)>> = std::sync::Mutex::new(Vec::new());
    let mut eps = EPS.lock().unwrap();
    if let Some((_, e)) = eps.iter().find(|(k, _)| *k == port) {
        return e.clone();
    }
    let e = match std::env::var(format!("TAP_TEST_OWN_ENDPOINT_{port}")) {
        Ok(e) => e,
        Err(_) => {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("localstack/emulator.sh");
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .env("TAP_EMULATOR_PORT", port.to_string())
                .status();
            let st = Command::new("bash")
                .arg(&script)
                .arg("start")
                .args(mode)
                .env("TAP_EMULATOR_PORT", port.to_string())
                .status()
                .expect("run localstack/emulator.sh");
            assert!(st.success(), "localstack/emulator.sh start on port {port} failed");
            format!("http://127.0.0.1:{port}")
        }
    };
    eps.push((port, e.clone()));
    e
}

/// Options for a run against `endpoint`, with waits and retry budgets scaled down.
pub fn options_at(env: &str, endpoint: &str) -> Options {
    let mut o = options(env);
    o.connection.endpoint_url = Some(endpoint.to_string());
    o.wait_scale = 0.25;
    o
}

pub async fn raw_at(endpoint: &str) -> Arc<Aws> {
    let mut c = connection();
    c.endpoint_url = Some(endpoint.to_string());
    Arc::new(Aws::connect(&c, "us-east-1").await)
}

/// What the fault emulator at `endpoint` injected: (fault, action) pairs.
pub fn faults_injected(endpoint: &str) -> Vec<(String, String)> {
    let v = get_json(&format!("{endpoint}/_fault/log"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["fault"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// POSTs to a control path of the plain emulator (e.g. `/_rules/upgrade?...`); returns the JSON.
pub fn emulator_post(path: &str) -> serde_json::Value {
    emulator_post_at(&endpoint(), path)
}

/// POSTs to a control path of the emulator at `endpoint`; returns the JSON.
pub fn emulator_post_at(endpoint: &str, path: &str) -> serde_json::Value {
    let url = format!("{endpoint}{path}");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request;sys.stdout.write(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'', method='POST')).read().decode())",
            &url,
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "POST {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `{r}` of SPEC: the region name without dashes.
pub fn r(region: &str) -> String {
    region.replace('-', "")
}

/// The first secondary region: the other end of the pairwise checks (replication, the secret's
/// replica, the CloudFront failover origin) for now.
pub fn first_secondary(i: &Inputs) -> &str {
    i.topology.secondaries().next().expect("a secondary region")
}

/// The logical id of `kind` in `region` (SPEC v3: `{R}/{node}`). The one place the tests spell
/// a logical id.
pub fn node_id(i: &Inputs, region: &str, kind: &str) -> String {
    assert!(
        i.topology.index(region).is_some(),
        "{region} is not a region of {}",
        i.topology
    );
    format!("{region}/{kind}")
}

/// The kind of the database node of `region`: `db-instance` everywhere (its role follows the
/// writer region).
pub fn db_kind(_i: &Inputs, _region: &str) -> &'static str {
    "db-instance"
}
