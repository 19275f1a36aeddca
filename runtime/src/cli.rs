//! The `pigeon` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::runtime::Pigeon;

#[derive(Debug, Parser)]
#[command(name = "pigeon", version, about = "Pigeon SMS aggregator runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the dispatcher.
    Serve(ServeArgs),
    /// Check and test the Rhai policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Compile the policy set and run its tests, as a reload would; errors
    /// are printed as file:line:col.
    Check {
        /// The policies directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run the tests in DIR/tests/ and report each case.
    Test {
        /// The policies directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see pigeon.example.toml); embedded defaults otherwise.
    #[arg(long, env = "PIGEON_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PIGEON_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address the SMPP server listens on [default: 127.0.0.1:2775].
    #[arg(long, env = "PIGEON_SMPP_LISTEN")]
    smpp_listen: Option<SocketAddr>,
    /// Directory for the database [default: ./data].
    #[arg(long, env = "PIGEON_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL database to use instead of SQLite under the data
    /// directory (`postgres://user:password@host:port/database`).
    #[arg(long, env = "PIGEON_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Log filter, e.g. `info` or `pigeon=debug`.
    #[arg(long, env = "PIGEON_LOG", default_value = "info")]
    log: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Policy(PolicyCommand::Check { dir }) => crate::policies::check_command(&dir),
        Command::Policy(PolicyCommand::Test { dir }) => crate::policies::test_command(&dir),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| EnvFilter::new("info"))
                // The PostgreSQL driver logs each statement's parameters
                // (message bodies, OTP codes, key hashes) at debug.
                .add_directive("tokio_postgres=info".parse().expect("a valid directive")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("pigeon: {err}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(listen) = args.smpp_listen {
        config.smpp.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        config.data_dir = data_dir;
    }
    if let Some(url) = args.database_url {
        config.store.url = Some(url);
    }
    let admin_key = std::env::var("PIGEON_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pigeon: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("pigeon: cannot listen on {}: {err}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        // With port 0 the real port is only known now, and the sandbox
        // carrier calls back on it.
        if let Ok(bound) = listener.local_addr() {
            config.listen = bound;
        }
        let pigeon = match Pigeon::start(&config, admin_key).await {
            Ok(pigeon) => pigeon,
            Err(err) => {
                eprintln!("pigeon: {err}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(key) = &pigeon.generated_admin_key {
            eprintln!("pigeon: created the operator account; its admin key is shown only now:");
            eprintln!("pigeon:     {key}");
        }
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(data_dir = %config.data_dir.display(), "pigeon started");
        eprintln!("pigeon: listening on http://{address}");
        match pigeon.smpp_addr() {
            Some(smpp) => eprintln!("pigeon: SMPP listening on {smpp}"),
            None => eprintln!("pigeon: SMPP disabled"),
        }
        pigeon.serve(listener, shutdown_signal()).await;
        tracing::info!("pigeon stopped");
        ExitCode::SUCCESS
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections; finishing work in flight");
}
