//! Operator experience through the binary: fail fast on a dead endpoint, NDJSON streams, a
//! closed stdout, `tap output`, `tap graph`, completions, the timeline picture.

use crate::cli::{stderr, tap};
use crate::common;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No SDK error reaches a user as a Rust debug dump.
pub fn assert_no_debug_dump(o: &Output) {
    for text in [String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)] {
        for dump in [
            "DispatchFailure(",
            "ConnectorError {",
            "ServiceError {",
            "ProviderError(",
        ] {
            assert!(!text.contains(dump), "a debug dump ({dump}) in: {text}");
        }
    }
}

/// Every stdout line of a `--json` run parses, carries `type` and `ts`; every node of the graph
/// has a start and an end; the last line is the summary. Returns the lines.
pub fn check_ndjson(o: &Output, command: &str) -> Vec<Value> {
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(l["type"].is_string() && l["ts"].is_string(), "{l}");
    }
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let node = l["node"].as_str().unwrap_or_default().to_string();
        match l["type"].as_str().unwrap() {
            "node_start" => *starts.entry(node).or_default() += 1,
            "node_done" | "node_failed" => {
                assert!(l["elapsed_s"].is_number(), "{l}");
                *ends.entry(node).or_default() += 1
            }
            _ => {}
        }
    }
    let graph = tap::app::graph();
    for n in graph.nodes() {
        assert_eq!(starts.get(&n.id), Some(&1), "{command}: one node_start of {}", n.id);
        assert_eq!(ends.get(&n.id), Some(&1), "{command}: one end of {}", n.id);
    }
    let last = lines.last().expect("some output");
    assert_eq!(last["type"], "summary", "{last}");
    assert_eq!(last["command"], command);
    assert_eq!(last["nodes"], graph.len());
    lines
}

/// A dead endpoint: one line naming it, exit 1, within seconds, no per-node noise.
#[test]
fn a_closed_port_fails_fast_in_one_line_naming_the_endpoint() {
    let state = common::state_path(&common::unique_env("dead"));
    let t0 = Instant::now();
    let out = tap(&[
        "--endpoint-url",
        "http://127.0.0.1:59999",
        "--state",
        state.to_str().unwrap(),
        "plan",
    ]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(all.lines().count() <= 3, "{all}");
    assert!(all.contains("http://127.0.0.1:59999"), "{all}");
    assert_no_debug_dump(&out);
}

/// `RUST_LOG` turns on span-structured diagnostics on stderr and changes nothing on stdout;
/// `-vv` shows every AWS request attempt with its duration and outcome.
#[test]
fn diagnostics_go_to_stderr_span_by_span() {
    let env = common::unique_env("trc");
    let state = common::state_path(&env);
    let ep = common::endpoint();
    let plan = |extra: &[&str], rust_log: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tap"));
        c.args(["--env", &env, "--endpoint-url", &ep, "--state", state.to_str().unwrap()])
            .args(extra)
            .arg("plan")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("RUST_LOG");
        if let Some(l) = rust_log {
            c.env("RUST_LOG", l);
        }
        c.output().unwrap()
    };
    let quiet = plan(&[], None);
    let traced = plan(&[], Some("tap=debug"));
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert_eq!(quiet.stdout, traced.stdout, "diagnostics change nothing on stdout");
    assert!(!stderr(&quiet).contains("DEBUG"), "{}", stderr(&quiet));
    let t = stderr(&traced);
    let i = crate::verify::inputs(&env);
    let vpc = common::node_id(&i, i.topology.home(), "vpc");
    assert!(
        t.contains("run:node:") && t.contains(&format!("id={vpc}")),
        "spans: {t}"
    );
    let vv = stderr(&plan(&["-vv"], None));
    let line = vv
        .lines()
        .find(|l| l.contains("EC2.DescribeVpcs"))
        .unwrap_or_else(|| panic!("-vv lists DescribeVpcs: {vv}"));
    assert!(line.contains(" ms -> 200"), "duration and outcome: {line}");
    // Regression (issue 17, item 16): the preflight's STS calls, one per region, are among them.
    for region in i.topology.regions() {
        assert!(
            vv.lines()
                .any(|l| l.contains(&format!("{region} STS.GetCallerIdentity")) && l.contains(" ms -> 200")),
            "-vv lists the preflight in {region}: {vv}"
        );
    }
}

/// `tap plan --json | head -1`: the reader closing the pipe is not a failure.
#[test]
fn a_closed_stdout_ends_quietly_with_the_normal_exit_code() {
    let env = common::unique_env("pipe");
    let state = common::state_path(&env);
    let ep = common::endpoint();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(["--env", &env, "--endpoint-url", &ep, "--state", state.to_str().unwrap()])
        .args(["--json", "plan"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before tap writes its first line: every write meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// `tap graph` lists every node and every edge of the graph, regions as clusters.
#[test]
fn the_graph_lists_every_node_and_edge() {
    let out = tap(&["graph"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dot = String::from_utf8_lossy(&out.stdout);
    let graph = tap::app::graph();
    for n in graph.nodes() {
        assert!(dot.contains(&format!("\"{}\" [label", n.id)), "{}", n.id);
        for d in &n.deps {
            assert!(dot.contains(&format!("\"{d}\" -> \"{}\"", n.id)), "{d} -> {}", n.id);
        }
    }
    let edges = graph.nodes().map(|n| n.deps.len()).sum::<usize>();
    assert_eq!(dot.matches(" -> \"").count(), edges);
    assert!(dot.contains("cluster_us-east-1") && dot.contains("cluster_eu-west-1"));
    // Node ids do not depend on the env: the default regions' inputs name them.
    let i = crate::verify::inputs("graph");
    let (writer, sec) = (i.topology.writer(), common::first_secondary(&i));
    let primary = common::node_id(&i, writer, common::db_kind(&i, writer));
    let replica = common::node_id(&i, sec, common::db_kind(&i, sec));
    assert!(
        dot.contains(&format!("\"{primary}\" -> \"{replica}\" [color")),
        "critical edge marked"
    );
    let mermaid = tap(&["graph", "--format", "mermaid"]);
    let m = String::from_utf8_lossy(&mermaid.stdout);
    assert!(
        m.starts_with("flowchart LR") && m.contains(&format!("class {} critical", primary.replace(['/', '-'], "_"))),
        "{m}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = tap(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("deploy") && text.contains("--endpoint-url"),
            "{shell}: {text}"
        );
    }
}

/// The timeline of a deploy on the timing emulator: valid SVG, one titled bar per node, the
/// chain through the database marked critical, waits shaded.
#[test]
fn a_timeline_of_a_deploy_shows_every_node_and_the_critical_path() {
    let env = common::unique_env("tl");
    let state = common::state_path(&env);
    let ep = common::timing_endpoint();
    let svg = std::env::temp_dir().join(format!("tap-timeline-{env}.svg"));
    let base = ["--env", &env, "--endpoint-url", &ep, "--state", state.to_str().unwrap()];
    let run = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        tap(&a)
    };
    let out = run(&["--timeline", svg.to_str().unwrap(), "deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("valid SVG (XML)");
    let bars: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class").is_some_and(|c| c.split(' ').any(|c| c == "bar")))
        .filter(|n| n.children().any(|c| c.has_tag_name("title")))
        .collect();
    let title = |n: &roxmltree::Node| {
        n.children()
            .find(|c| c.has_tag_name("title"))
            .and_then(|t| t.text())
            .unwrap_or_default()
            .to_string()
    };
    let graph = tap::app::graph();
    assert_eq!(bars.len(), graph.len(), "one bar per node");
    for n in graph.nodes() {
        assert!(bars.iter().any(|b| title(b) == n.id), "a bar titled {}", n.id);
    }
    let critical: Vec<String> = bars
        .iter()
        .filter(|b| b.attribute("class").unwrap().split(' ').any(|c| c == "critical"))
        .map(title)
        .collect();
    let i = crate::verify::inputs(&env);
    let (writer, sec) = (i.topology.writer(), common::first_secondary(&i));
    for id in [
        common::node_id(&i, writer, common::db_kind(&i, writer)),
        common::node_id(&i, sec, common::db_kind(&i, sec)),
    ] {
        assert!(critical.contains(&id), "{id} on the critical path: {critical:?}");
    }
    assert!(
        doc.descendants().any(|n| n.attribute("class") == Some("wait")),
        "waits are shaded"
    );
    // Redrawn from the state file.
    let again = std::env::temp_dir().join(format!("tap-timeline-{env}-2.svg"));
    let out = run(&["timeline", again.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
    let out = run(&["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Issue 17 item 12: the preflight resolved credentials outside the SDK's identity cache, so a
/// `credential_process` (one that prompts for an MFA code, say) ran twice per run: once for the
/// preflight, once for the first AWS call. It runs once now.
#[test]
fn a_credential_process_runs_once_per_run() {
    let env = common::unique_env("cred");
    let dir = std::env::temp_dir().join(format!("tap-cred-{env}"));
    std::fs::create_dir_all(&dir).unwrap();
    let count = dir.join("runs");
    let script = dir.join("process.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> {}\necho '{{\"Version\": 1, \"AccessKeyId\": \"test\", \"SecretAccessKey\": \"test\"}}'\n",
            count.display()
        ),
    )
    .unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile tapcp]\nregion = us-east-1\ncredential_process = /bin/sh {}\n",
            script.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(["--env", &env, "--endpoint-url", &common::endpoint(), "--state"])
        .arg(dir.join("state.json"))
        .arg("plan")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
        .env("AWS_PROFILE", "tapcp")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("TAP_STATE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs = std::fs::read_to_string(&count).unwrap_or_default();
    assert_eq!(
        runs.lines().count(),
        1,
        "credential_process ran {} times",
        runs.lines().count()
    );
}

/// Regression (a CI dry run): a timing emulator of another checkout held port 4567, the new
/// server failed to bind, and `emulator.sh start` said "listening" because the old one answered;
/// the tests ran against an emulator of unknown mode. Now a tap emulator whose pid file is
/// elsewhere is stopped and replaced, and any other process on the port is an error naming it.
#[test]
fn emulator_start_replaces_a_foreign_tap_emulator_and_refuses_a_port_held_by_anything_else() {
    const PORT: u16 = 4653;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("localstack/emulator.sh");
    let pidfile = root.join(format!("localstack/.cache/moto-{PORT}.pid"));
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .env("TAP_EMULATOR_PORT", PORT.to_string())
            .output()
            .expect("run localstack/emulator.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, out) = sh(&["start"]);
    assert!(ok, "{out}");
    let first = std::fs::read_to_string(&pidfile).unwrap();
    // As if another checkout had started it: its pid file is not ours.
    std::fs::remove_file(&pidfile).unwrap();
    let (ok, out) = sh(&["start"]);
    assert!(ok, "{out}");
    assert!(out.contains("another checkout") && out.contains(first.trim()), "{out}");
    let second = std::fs::read_to_string(&pidfile).unwrap();
    assert_ne!(first, second);
    let alive = |pid: &str| std::path::Path::new(&format!("/proc/{}", pid.trim())).exists();
    assert!(!alive(&first) && alive(&second));
    let (ok, out) = sh(&["stop"]);
    assert!(ok, "{out}");

    // Anything else on the port: refused, named, left alone.
    let other = std::net::TcpListener::bind(("127.0.0.1", PORT)).unwrap();
    let (ok, out) = sh(&["start"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("port {PORT}")) && out.contains("no tap emulator"),
        "{out}"
    );
    // The other process still holds the port: a connection reaches its listener.
    let _client = std::net::TcpStream::connect(("127.0.0.1", PORT)).unwrap();
    other.accept().expect("the listener left alone accepts");
    assert!(!pidfile.exists() || !alive(&std::fs::read_to_string(&pidfile).unwrap()));
    drop(other);
    let _ = sh(&["stop"]);
}
