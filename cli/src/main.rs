//! `lamina`: decompose images into editable RGBA layers.
//!
//! A thin binary: parse the command line (every flag also reads a `LAMINA_*` variable),
//! set up logging, and hand over to one module per command.

mod bench;
mod config;
mod dlq;
mod eval;
mod report;
mod run;
mod status;
mod http;
mod submit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "lamina", version, about = "Decompose images into editable RGBA layers")]
struct Cli {
    /// Log format on stderr.
    #[command(flatten)]
    log: lamina_common::args::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decompose every image under IN into layers under OUT, on this machine, no services needed.
    Run(config::RunArgs),
    /// Measure model-only and end-to-end throughput on this machine.
    Bench(bench::BenchArgs),
    /// Submit a job to a Lamina fleet (RabbitMQ, a coordinator and workers) and print its id.
    Submit(submit::SubmitArgs),
    /// Show jobs (progress, rate, ETA, failures) and the fleet, from the coordinator.
    Status(status::StatusArgs),
    /// Cancel a job: no more of its tasks are published; its summary says it was cancelled.
    Cancel(status::CancelArgs),
    /// Inspect, replay or delete dead-lettered messages.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Score decompositions against layered ground truth with LayerD's metric (docs/eval.md).
    Eval(eval::EvalArgs),
}

fn main() -> ExitCode {
    let cli: Cli = lamina_common::args::parse("lamina");
    lamina_worker::alloc::tune_for_inference();
    // `lamina run` is the fleet in one process: the services' own lines (a worker's "task
    // finished" per image, the coordinator's "job received") would repeat what the progress
    // display says, so they show only from warnings up unless RUST_LOG asks for them.
    let default = match cli.command {
        Command::Run(_) | Command::Bench(_) => "info,lamina_worker::service=warn,lamina_coordinator::service=warn",
        _ => "info",
    };
    lamina_common::logging::init_with(&cli.log.log_format, default);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lamina: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::main(args).await,
            Command::Bench(args) => bench::main(args).await,
            Command::Submit(args) => submit::main(args).await,
            Command::Status(args) => status::main(args).await,
            Command::Cancel(args) => status::cancel(args).await,
            Command::Dlq(command) => dlq::main(command).await,
            Command::Eval(args) => eval::main(args),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lamina: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
