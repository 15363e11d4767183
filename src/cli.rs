//! The command line: parse, validate before any AWS call, run, print, exit 0 / 1 / 2.

use crate::app::{self, AppError, Command, NodeLine, Options};
use crate::aws::Connection;
use crate::config::{self, Inputs};
use crate::render::{self, out};
use crate::report::{finish, output, print_plan, status, write_timeline};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

mod prompt;

pub use prompt::{approves, should_prompt};
use prompt::{ask, ask_exact, confirm, destroy_summary};

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
    /// State: a file [default: .tap/<env>.json], or s3://BUCKET/KEY (a team's, with a lock)
    #[arg(long, env = "TAP_STATE", global = true)]
    pub state: Option<String>,
    /// Region of the state bucket [default: the primary region]
    #[arg(long, global = true)]
    pub state_region: Option<String>,
    /// Wait this long for a lock another run holds on an S3 state (e.g. 5m, 90s) [default: fail at once]
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
    #[arg(long, default_value = "us-east-1", global = true)]
    pub primary_region: String,
    /// Secondary regions, 1 to 4, in order: repeated, or comma-separated
    #[arg(long, default_value = "eu-west-1", global = true, value_delimiter = ',')]
    pub secondary_region: Vec<String>,
    /// Send every AWS call to this endpoint (S3 path-style). AWS_ENDPOINT_URL is honoured too.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// Use the local emulator: --endpoint-url http://127.0.0.1:4566, test credentials if none
    #[arg(long, global = true)]
    pub local: bool,
    /// AWS operations in flight at most, per region (AWS throttles per account and region)
    #[arg(long, default_value_t = 10, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Longest wait for a kind to become ready or gone, e.g. db-instance=120 (repeatable)
    #[arg(long = "max-wait", value_name = "KIND=MINUTES", global = true)]
    pub max_wait: Vec<String>,
    /// plan, deploy, destroy: draw where the time went as an SVG Gantt chart to FILE
    #[arg(long, value_name = "FILE.svg", global = true)]
    pub timeline: Option<PathBuf>,
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
        /// Do not ask for approval of the plan on a terminal
        #[arg(long, short = 'y', visible_alias = "auto-approve")]
        yes: bool,
    },
    /// Delete everything of the environment
    Destroy {
        /// Do not ask for confirmation (required without a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Show each node's state and the outputs (from the state file; no AWS call)
    Status,
    /// Print the outputs (from the state file; no AWS call): all, or one raw value
    Output {
        /// One output, printed raw (no quotes): `$(tap output BucketName --region us-east-1)`
        name: Option<String>,
        /// The region of the output (needed when it exists in both)
        #[arg(long)]
        region: Option<String>,
    },
    /// Print the fixed dependency graph, regions as clusters, the critical path marked
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Draw the last deploy or destroy (from the state file) as an SVG Gantt chart
    Timeline {
        #[arg(value_name = "FILE.svg")]
        file: PathBuf,
    },
    /// Remove the lock a killed run left on an S3 state (the id its lock error names)
    ForceUnlock {
        lock_id: String,
        /// Do not ask for confirmation (required without a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Print a shell completion script: tap completions bash > /etc/bash_completion.d/tap
    Completions { shell: clap_complete::Shell },
    /// Disaster recovery: evaluate a failover ahead of time
    Dr {
        #[command(subcommand)]
        command: DrCmd,
    },
    /// Make another region the writer (ungraceful by default: calls that region only)
    Failover {
        /// The region to make the writer
        #[arg(long)]
        to: String,
        /// Both regions healthy: fence writes, drain, fail over, then reprotect
        #[arg(long)]
        graceful: bool,
        /// When the outage began (RFC 3339, or HH:MM UTC today): the recovery time is measured from it
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Print the steps and `dr check`; change nothing (exit 0 ready, 1 not ready)
        #[arg(long)]
        dry_run: bool,
        /// Graceful: how long the replica must report replication normal before promotion
        #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
        drain: Duration,
        /// Do not ask the operator to type the region (required without a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// After a failover, once the old writer's region answers: fence and delete the stale
    /// writer (final snapshot kept), new replicas, the secret re-homed
    Reprotect {
        /// Do not ask for confirmation (required without a terminal)
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DrCmd {
    /// Is a failover to R possible right now? Read-only, calls to R only; exit 0 ready, 1 not
    Check {
        /// The region to fail over to [default: the region after the writer]
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
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
    init_tracing(cli.verbose);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json = cli.json;
    let (message, code) = match rt.block_on(run(cli)) {
        Ok(code) => return code,
        Err(AppError::Usage(m)) => (m, 2),
        // The error and its causes, each once: `recording the outputs: writing ...: No space left`.
        Err(e) => (crate::aws::errors::chain(&e), 1),
    };
    if json {
        render::json_line(serde_json::json!({"type": "error", "message": message, "exit_code": code}));
    }
    render::err(&format!("error: {message}"));
    code
}

/// Diagnostics (`tracing`) on stderr: `RUST_LOG` when set, else by `-v`: warnings; `-v` info;
/// `-vv` debug (a line per AWS request attempt with its duration and outcome); `-vvv`
/// everything, the AWS SDK's own events included. Colour only on a terminal without `NO_COLOR`.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(match verbose {
            0 => "tap=warn",
            1 => "tap=info",
            2 => "tap=debug",
            _ => "trace",
        }),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .compact()
        .try_init();
}

fn options(cli: &Cli) -> Result<Options, AppError> {
    let usage = |e: config::InvalidInput| AppError::Usage(e.0);
    let secondaries: Vec<&str> = cli.secondary_region.iter().map(String::as_str).collect();
    let inputs = Inputs::with_secondaries(
        &cli.env,
        &cli.primary_region,
        &secondaries,
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
    let local = PathBuf::from(format!(".tap/{}.json", cli.env));
    let (state_path, state_url) = match &cli.state {
        Some(s) if s.starts_with("s3://") => {
            if crate::aws::state_s3::parse_url(s).is_none() {
                return Err(AppError::Usage(format!("--state {s:?}: expected s3://BUCKET/KEY")));
            }
            (local, Some(s.clone()))
        }
        Some(s) => (PathBuf::from(s), None),
        None => (local, None),
    };
    let connection = Connection {
        endpoint_url,
        test_credentials_fallback: cli.local,
        retry: Default::default(),
    };
    let mut o = Options::new(inputs, state_path, connection);
    o.state_url = state_url;
    o.state_region = cli.state_region.clone();
    o.lock_timeout = cli.lock_timeout.unwrap_or_default();
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
    opts.events = crate::engine::events::Events::new()
        .with(match cli.json {
            true => render::json(),
            // A live view for a person at a terminal; plain lines for logs and pipes.
            false if live_view(&cli) => render::live(app::graph_of(&opts.inputs).len()),
            false => render::human(),
        })
        .with(render::diagnostics());
    on_interrupt(opts.cancel.clone());
    let t0 = std::time::Instant::now();
    match cli.command {
        Cmd::Status => {
            let backend = app::backend(&opts, None).await?;
            status(&opts, &backend.load().await?, &backend.location(), cli.json)
        }
        Cmd::Output { name, region } => {
            let state = app::load_state(&opts).await?;
            output(&opts, &state, name.as_deref(), region.as_deref(), cli.json)
        }
        Cmd::ForceUnlock { lock_id, yes } => {
            let backend = app::backend(&opts, None).await?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    return Err(AppError::Usage("force-unlock without a terminal needs --yes".into()));
                }
                if !ask(&format!(
                    "Remove lock {lock_id} of {}? Only if the run holding it is dead. [y/N] ",
                    backend.location()
                )) {
                    return Err(AppError::Failed("force-unlock cancelled".into()));
                }
            }
            backend.force_unlock(&lock_id).await?;
            render::err(&format!("lock {lock_id} of {} removed", backend.location()));
            Ok(0)
        }
        Cmd::Timeline { file } => {
            let backend = app::backend(&opts, None).await?;
            let state = backend.load().await?;
            let Some(t) = &state.last_run else {
                return Err(AppError::Failed(format!(
                    "{} records no deploy or destroy yet",
                    backend.location()
                )));
            };
            write_timeline(&file, t, &opts)?;
            Ok(0)
        }
        Cmd::Graph { format } => {
            out(&crate::graph_view::render(
                &app::graph_of(&opts.inputs),
                &opts.inputs,
                format == GraphFormat::Mermaid,
            ));
            Ok(0)
        }
        Cmd::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "tap", &mut buf);
            out(String::from_utf8_lossy(&buf).trim_end());
            Ok(0)
        }
        Cmd::Plan { detailed_exitcode } => {
            let report = app::execute(Command::Plan, &opts).await?;
            if let Some(f) = &cli.timeline {
                write_timeline(f, &report.timeline, &opts)?;
            }
            print_plan(&report.nodes, cli.json, cli.verbose >= 1);
            if cli.json {
                render::json_line(render::summary("plan", &report.nodes, t0.elapsed().as_secs_f64()));
            }
            if !report.failures().is_empty() {
                return Ok(1);
            }
            let changes = report
                .counts()
                .iter()
                .any(|(k, n)| !matches!(*k, "unchanged" | "failed") && *n > 0);
            Ok(if detailed_exitcode && changes { 2 } else { 0 })
        }
        Cmd::Deploy { allow_replace, yes } => {
            opts.allow_replace = allow_replace;
            if should_prompt(std::io::stdin().is_terminal(), std::io::stderr().is_terminal(), yes) {
                opts.approve = Some(std::sync::Arc::new(|_: &[NodeLine]| {
                    ask("Deploy these changes? [y/N] ")
                }));
            }
            let (json, verbose) = (cli.json, cli.verbose >= 1);
            opts.show_plan = Some(std::sync::Arc::new(move |lines: &[NodeLine]| {
                print_plan(lines, json, verbose)
            }));
            render::err(&format!(
                "deploying env {} to {}",
                opts.inputs.env,
                opts.inputs.topology.regions().collect::<Vec<_>>().join(" + ")
            ));
            let report = app::execute(Command::Deploy, &opts).await?;
            if let Some(f) = &cli.timeline {
                write_timeline(f, &report.timeline, &opts)?;
            }
            finish(&report, cli.json, t0)
        }
        Cmd::Dr {
            command: DrCmd::Check { to },
        } => {
            let report = crate::dr::check::execute(&opts, to.as_deref()).await?;
            match cli.json {
                true => crate::dr::check::json(&report),
                false => crate::dr::check::print(&report),
            }
            Ok(if report.ready { 0 } else { 1 })
        }
        Cmd::Failover {
            to,
            graceful,
            since,
            dry_run,
            drain,
            yes,
        } => {
            let since = since
                .map(|s| crate::dr::record::parse_since(&s, chrono::Utc::now()))
                .transpose()
                .map_err(AppError::Usage)?;
            let args = crate::dr::failover::Args {
                to: to.clone(),
                graceful,
                since,
                dry_run,
                drain,
            };
            if dry_run {
                return dry_run_failover(&opts, &args, cli.json).await;
            }
            if !yes && !std::io::stdin().is_terminal() {
                return Err(AppError::Usage("failover without a terminal needs --yes".into()));
            }
            let confirm = move |calls: &[String]| {
                render::err(&format!("failover to {to}: these calls, per region:"));
                for c in calls {
                    render::err(&format!("  {c}"));
                }
                yes || ask_exact(&format!("Type {to} to fail over: "), &to)
            };
            let report = match crate::dr::failover::execute(&opts, &args, &confirm).await {
                Err(e) if opts.cancel.is_set() => {
                    return Ok(interrupted("failover", &e, &format!("failover --to {}", args.to)));
                }
                other => other?,
            };
            if let Some(f) = &cli.timeline {
                write_timeline(f, &report.timeline, &opts)?;
            }
            match cli.json {
                true => render::json_line(crate::dr::failover::json(&report)),
                false => crate::dr::failover::print(&report),
            }
            Ok(0)
        }
        Cmd::Reprotect { yes } => {
            if !yes && !std::io::stdin().is_terminal() {
                return Err(AppError::Usage("reprotect without a terminal needs --yes".into()));
            }
            let confirm = move |steps: &[String]| {
                render::err("reprotect:");
                for c in steps {
                    render::err(&format!("  {c}"));
                }
                yes || ask("Reprotect? [y/N] ")
            };
            let report = match crate::dr::reprotect::execute(&opts, &confirm).await {
                Err(e) if opts.cancel.is_set() => return Ok(interrupted("reprotect", &e, "reprotect")),
                other => other?,
            };
            match cli.json {
                true => render::json_line(crate::dr::reprotect::json(&report)),
                false => crate::dr::reprotect::print(&report),
            }
            Ok(0)
        }
        Cmd::Destroy { yes } => {
            if !yes {
                // What goes, from the state file (no AWS call before the answer).
                let state = app::load_state(&opts).await?;
                confirm(&opts, &destroy_summary(&state, cli.verbose >= 1))?;
            }
            render::err(&format!(
                "destroying env {} in {}",
                opts.inputs.env,
                opts.inputs.topology.regions().collect::<Vec<_>>().join(" + ")
            ));
            let report = app::execute(Command::Destroy, &opts).await?;
            if let Some(f) = &cli.timeline {
                write_timeline(f, &report.timeline, &opts)?;
            }
            finish(&report, cli.json, t0)
        }
    }
}

/// The live view: deploy and destroy on a terminal, unless `TERM=dumb` or `-vv` diagnostics
/// would interleave with it.
fn live_view(cli: &Cli) -> bool {
    matches!(cli.command, Cmd::Deploy { .. } | Cmd::Destroy { .. })
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
        && cli.verbose < 2
        && std::env::var_os("RUST_LOG").is_none()
}

/// `90s`, `5m`, `1h`, or seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .trim()
        .split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected e.g. 90s, 5m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: expected e.g. 90s, 5m, 1h")),
    };
    Ok(Duration::from_secs(secs))
}

/// `failover --dry-run`: the steps, per region, and `dr check`; exit as the check.
async fn dry_run_failover(opts: &Options, args: &crate::dr::failover::Args, json: bool) -> Result<i32, AppError> {
    let state = app::load_state(opts).await?;
    let inputs = app::with_recorded_topology(&opts.inputs, &state);
    let from = inputs.topology.writer().to_string();
    let mode = match args.graceful {
        true => crate::dr::record::Mode::Graceful,
        false => crate::dr::record::Mode::Ungraceful,
    };
    let steps = crate::dr::failover::calls_preview(&from, &args.to, mode, &inputs);
    let report = crate::dr::check::execute(opts, Some(&args.to)).await?;
    if json {
        render::json_line(serde_json::json!({"type": "failover_plan", "from": from, "to": args.to, "steps": steps}));
        crate::dr::check::json(&report);
    } else {
        render::err(&format!(
            "failover {from} -> {} (dry run: nothing is changed):",
            args.to
        ));
        for s in &steps {
            render::err(&format!("  {s}"));
        }
        crate::dr::check::print(&report);
    }
    Ok(if report.ready { 0 } else { 1 })
}

/// A failover or reprotect stopped by Ctrl-C: every finished step is recorded; the same
/// command finishes it (exit 130).
fn interrupted(what: &str, e: &AppError, again: &str) -> i32 {
    render::err(&format!(
        "{what} interrupted ({}); its finished steps are recorded: run `tap {again}` again to finish it",
        crate::aws::errors::chain(e)
    ));
    130
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeouts_read_like_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert!(parse_duration("5 minutes").is_err() && parse_duration("m").is_err());
    }
}
