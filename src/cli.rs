//! The command line: parse, validate before any AWS call, run, print, exit 0 / 1 / 2.

use crate::app::{self, AppError, Command, NodeLine, Options, Outcome, Report};
use crate::aws::Connection;
use crate::config::{self, Inputs};
use crate::engine::reconcile::Action;
use crate::engine::state::State;
use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

pub const LOCAL_ENDPOINT: &str = "http://127.0.0.1:4566";

#[derive(Parser, Debug)]
#[command(
    name = "tap",
    version,
    about = "Deploys the TAP multi-region stack straight through the AWS APIs"
)]
pub struct Cli {
    /// Environment suffix (1-16 of a-z, 0-9, '-'; starts with a letter)
    #[arg(long, env = "TAP_ENV", default_value = "dev", global = true)]
    pub env: String,
    /// State file [default: .tap/<env>.json]
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    #[arg(long, default_value = "us-east-1", global = true)]
    pub primary_region: String,
    #[arg(long, default_value = "eu-west-1", global = true)]
    pub secondary_region: String,
    /// Send every AWS call to this endpoint (S3 path-style). AWS_ENDPOINT_URL is honoured too.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// Use the local emulator: --endpoint-url http://127.0.0.1:4566, test credentials if none
    #[arg(long, global = true)]
    pub local: bool,
    /// AWS operations in flight at most
    #[arg(long, default_value_t = 10, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Longest wait for a kind to become ready or gone, e.g. rds-replica=120 (repeatable)
    #[arg(long = "max-wait", value_name = "KIND=MINUTES", global = true)]
    pub max_wait: Vec<String>,
    /// -v: list unchanged nodes too; -vv: print every AWS call
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show what deploy would change (reads the live objects)
    Plan {
        /// Exit 0 when nothing would change, 2 when something would, 1 on error
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Create or update everything to match the stack
    Deploy {
        /// Allow deleting and recreating objects whose immutable properties differ
        #[arg(long)]
        allow_replace: bool,
    },
    /// Delete everything of the environment
    Destroy {
        /// Do not ask for confirmation (required without a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Show each node's state and the outputs (from the state file; no AWS call)
    Status,
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(AppError::Usage(m)) => {
            eprintln!("error: {m}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn options(cli: &Cli) -> Result<Options, AppError> {
    let usage = |e: config::InvalidInput| AppError::Usage(e.0);
    let inputs = Inputs::new(
        &cli.env,
        &cli.primary_region,
        &cli.secondary_region,
        std::env::var("REPOSITORY").ok(),
        std::env::var("COMMIT_AUTHOR").ok(),
    )
    .map_err(usage)?;
    let endpoint_url = match (&cli.endpoint_url, cli.local) {
        (Some(u), _) => Some(u.clone()),
        (None, true) => Some(LOCAL_ENDPOINT.to_string()),
        (None, false) => None,
    };
    if let Some(u) = &endpoint_url {
        config::validate_endpoint(u).map_err(usage)?;
    }
    if let Ok(u) = std::env::var("AWS_ENDPOINT_URL") {
        config::validate_endpoint(&u).map_err(|e| AppError::Usage(format!("AWS_ENDPOINT_URL: {}", e.0)))?;
    }
    let state_path = cli
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!(".tap/{}.json", cli.env)));
    let connection = Connection {
        endpoint_url,
        test_credentials_fallback: cli.local,
        verbose: cli.verbose >= 2,
        retry: Default::default(),
    };
    let mut o = Options::new(inputs, state_path, connection);
    o.parallelism = usize::from(cli.parallelism);
    for spec in &cli.max_wait {
        o.waits.set(spec).map_err(AppError::Usage)?;
    }
    if let Some(s) = std::env::var("TAP_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        o.progress_every = Duration::from_secs(s);
    }
    Ok(o)
}

/// First SIGINT or SIGTERM: stop starting nodes, let in-flight ones reach their next wait (at
/// most `scheduler::GRACE`), save state, release the lock, print the summary, exit 130.
/// Second: exit at once (the state file is valid: it is replaced atomically at every write).
fn on_interrupt(cancel: crate::engine::cancel::Cancel) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                eprintln!("\ninterrupted again: exiting now; the next run resumes from the state file");
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupted: starting no new node, stopping in-flight ones at their next wait \
                 (Ctrl-C again to exit at once)"
            );
            cancel.trigger();
        }
    });
}

pub async fn run(cli: Cli) -> Result<i32, AppError> {
    let mut opts = options(&cli)?;
    on_interrupt(opts.cancel.clone());
    match cli.command {
        Cmd::Status => status(&opts, cli.json),
        Cmd::Plan { detailed_exitcode } => {
            opts.echo = false;
            let report = app::execute(Command::Plan, &opts).await?;
            print_plan(&report.nodes, cli.json, cli.verbose >= 1);
            if !report.failures().is_empty() {
                return Ok(1);
            }
            let changes = report
                .counts()
                .iter()
                .any(|(k, n)| !matches!(*k, "unchanged" | "failed") && *n > 0);
            Ok(if detailed_exitcode && changes { 2 } else { 0 })
        }
        Cmd::Deploy { allow_replace } => {
            opts.allow_replace = allow_replace;
            let (json, verbose) = (cli.json, cli.verbose >= 1);
            if !json {
                opts.show_plan = Some(std::sync::Arc::new(move |lines: &[NodeLine]| {
                    print_plan(lines, false, verbose)
                }));
            }
            eprintln!(
                "deploying env {} to {} + {}",
                opts.inputs.env, opts.inputs.primary_region, opts.inputs.secondary_region
            );
            let report = app::execute(Command::Deploy, &opts).await?;
            finish(&report, cli.json)
        }
        Cmd::Destroy { yes } => {
            if !yes {
                confirm(&opts)?;
            }
            eprintln!(
                "destroying env {} in {} + {}",
                opts.inputs.env, opts.inputs.primary_region, opts.inputs.secondary_region
            );
            let report = app::execute(Command::Destroy, &opts).await?;
            finish(&report, cli.json)
        }
    }
}

fn confirm(opts: &Options) -> Result<(), AppError> {
    if !std::io::stdin().is_terminal() {
        return Err(AppError::Usage("destroy without a terminal needs --yes".into()));
    }
    eprint!(
        "This deletes every object of env {:?} in {} and {}. Type the env name to confirm: ",
        opts.inputs.env, opts.inputs.primary_region, opts.inputs.secondary_region
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| AppError::Failed(format!("reading confirmation: {e}")))?;
    if line.trim() == opts.inputs.env {
        Ok(())
    } else {
        Err(AppError::Failed("destroy cancelled".into()))
    }
}

fn finish(report: &Report, json: bool) -> Result<i32, AppError> {
    let code = finish_report(report, json);
    Ok(if report.interrupted { 130 } else { code })
}

fn finish_report(report: &Report, json: bool) -> i32 {
    let c = report.counts();
    let failures = report.failures();
    if json {
        println!("{}", serde_json::to_string_pretty(report).expect("report serializes"));
    } else {
        if report.interrupted {
            println!("Interrupted: the state file is saved; run the same command again to resume.");
        }
        println!(
            "{}: {} created, {} updated, {} replaced, {} deleted, {} unchanged, {} failed.",
            match report.command {
                Command::Destroy => "Destroy",
                _ => "Deploy",
            },
            c["create"],
            c["update"],
            c["replace"],
            c["delete"],
            c["unchanged"],
            failures.len()
        );
        print_outputs(&report.outputs);
    }
    if failures.is_empty() {
        return 0;
    }
    eprintln!("\n{} node(s) did not complete:", failures.len());
    for f in failures {
        match &f.outcome {
            Outcome::Failed { error, .. } => eprintln!("  {} ({}): {error}", f.id, f.region),
            Outcome::Blocked { by } => eprintln!("  {} ({}): not attempted, depends on failed {by}", f.id, f.region),
            Outcome::Interrupted => eprintln!("  {} ({}): interrupted; the next run resumes it", f.id, f.region),
            Outcome::Done(_) => {}
        }
    }
    1
}

fn print_plan(nodes: &[NodeLine], json: bool, verbose: bool) {
    let c = app::counts(nodes);
    if json {
        for n in nodes {
            println!("{}", serde_json::to_string(n).expect("node serializes"));
        }
        println!("{}", serde_json::json!({"summary": c}));
        return;
    }
    for n in nodes {
        match &n.outcome {
            Outcome::Done(Action::None) if !verbose => {}
            Outcome::Done(a) => {
                let sign = match a {
                    Action::Create => "+",
                    Action::Update { .. } => "~",
                    Action::Replace { .. } => "-/+",
                    Action::Delete => "-",
                    _ => " ",
                };
                match a {
                    Action::Replace { because, .. } => {
                        println!(
                            "{sign} {} ({}): replace, because {} cannot change in place",
                            n.id,
                            n.region,
                            because.join(", ")
                        )
                    }
                    _ => println!("{sign} {} ({}): {}", n.id, n.region, a.verb(false)),
                }
                if let Action::Update { changes } | Action::Replace { changes, .. } = a {
                    for ch in changes {
                        println!("      {}: {} -> {}", ch.key, ch.old, ch.new);
                    }
                }
            }
            Outcome::Failed { error, .. } => println!("! {} ({}): cannot plan: {error}", n.id, n.region),
            Outcome::Blocked { by } => println!("? {} ({}): unknown, depends on {by}", n.id, n.region),
            Outcome::Interrupted => println!("? {} ({}): not planned (interrupted)", n.id, n.region),
        }
        for t in &n.twins {
            println!("- {} ({}): delete (twin of {}): {t}", n.id, n.region, n.id);
        }
    }
    println!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
        c["create"], c["update"], c["replace"], c["delete"], c["unchanged"]
    );
}

fn print_outputs(outputs: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>) {
    if outputs.is_empty() {
        return;
    }
    println!("\nOutputs:");
    for (region, o) in outputs {
        for (k, v) in o {
            println!("  {region} {k} = {v}");
        }
    }
}

fn status(opts: &Options, json: bool) -> Result<i32, AppError> {
    let state = State::load(&opts.state_path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&state).expect("state serializes"));
        return Ok(0);
    }
    let graph = app::graph();
    println!(
        "env {} · state {} (serial {}, lineage {})",
        opts.inputs.env,
        opts.state_path.display(),
        state.serial,
        state.lineage
    );
    for n in graph.nodes() {
        let line = match state.nodes.get(&n.id) {
            None => "absent".to_string(),
            Some(s) => {
                let mut l = format!("{:?}", s.status).to_lowercase();
                if let Some(id) = &s.physical_id {
                    l.push_str(&format!("  {id}"));
                }
                for (k, v) in &s.attrs {
                    if k.starts_with("status") {
                        l.push_str(&format!("  ({k}: {v})"));
                    }
                }
                if let Some(e) = &s.error {
                    l.push_str(&format!("  error: {e}"));
                }
                l
            }
        };
        println!("  {:<36} {line}", n.id);
    }
    print_outputs(&state.outputs);
    Ok(0)
}
