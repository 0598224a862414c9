//! `lamina dlq`: the dead-letter queue (`<prefix>.dead`) for operators.
//!
//! - `list` shows each dead letter (job, input key, why it died, the queue it died in) and
//!   leaves it where it is;
//! - `requeue [--job J]` publishes them again (with a confirm) to the queue they died in, as
//!   new messages with a fresh delivery count, then removes them; use it after fixing what
//!   killed them. A task replayed for a job that already finished writes its image's
//!   outputs; submit the job again to have it counted in a job's records;
//! - `purge` deletes them all, after confirmation.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use lamina_common::amqp::AmqpSettings;
use lamina_common::queue::{self, Broker, Death, DeathReason, Delivery, QueueError, MAX_DELIVERIES};
use lamina_common::keys::printable;
use lamina_common::messages::{JobSpec, Task, TASK_SCHEMA};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the dead letters: job, input key, reason, the queue each died in.
    List(ListArgs),
    /// Publish dead letters again to the queue they died in, then remove them.
    Requeue(RequeueArgs),
    /// Delete every dead letter.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show at most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// Only the tasks of this job.
    #[arg(long)]
    pub job: Option<String>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// What a dead letter is, as far as its body and its death tell.
struct Letter {
    job: String,
    key: String,
    reason: String,
    queue: String,
    deaths: i64,
}

fn describe(body: &[u8], death: Option<&Death>) -> Letter {
    let (reason, queue, deaths) = match death {
        Some(d) => (d.reason.clone(), d.queue.clone(), d.count),
        None => (DeathReason::Other("unknown".to_owned()), String::new(), 0),
    };
    let reason = match reason {
        DeathReason::DeliveryLimit => format!("delivery limit: a worker stopped {MAX_DELIVERIES} times on it"),
        DeathReason::Rejected => "rejected as invalid".to_owned(),
        other => other.to_string(),
    };
    if let Ok(task) = serde_json::from_slice::<Task>(body) {
        let reason = if task.schema == TASK_SCHEMA { reason } else { format!("{reason} (schema {})", task.schema) };
        return Letter { job: task.job_id, key: printable(&task.key), reason, queue, deaths };
    }
    if let Ok(job) = serde_json::from_slice::<JobSpec>(body) {
        return Letter { job: job.job_id, key: "(a job message)".into(), reason, queue, deaths };
    }
    Letter { job: "-".into(), key: format!("(not a Lamina message, {} bytes)", body.len()), reason, queue, deaths }
}

pub async fn main(command: DlqCommand) -> anyhow::Result<ExitCode> {
    let settings = AmqpSettings::from_env()?;
    let broker = queue::connect(&settings, "lamina-dlq").await.context("cannot connect to the broker")?;
    broker.declare(&[]).await?;
    let dead = broker.topology().dead();
    let waiting = broker.depth(&dead).await?.unwrap_or(0);
    let code = match command {
        DlqCommand::List(args) => list(broker.as_ref(), &dead, waiting, args.limit).await,
        DlqCommand::Requeue(args) => requeue(broker.as_ref(), &settings, waiting, args.job.as_deref()).await,
        DlqCommand::Purge(args) => purge(broker.as_ref(), &dead, waiting, args.yes).await,
    };
    broker.close().await;
    code
}

/// Hands back what was taken, last first, so the queue keeps its order.
async fn hand_back(held: Vec<Delivery>) -> Result<(), QueueError> {
    for delivery in held.into_iter().rev() {
        delivery.settle.requeue().await?;
    }
    Ok(())
}

/// Reads up to `limit` dead letters without removing them: they are handed back after.
async fn list(broker: &dyn Broker, dead: &str, waiting: u64, limit: usize) -> anyhow::Result<ExitCode> {
    println!("{waiting} dead letter(s) in {dead}");
    let mut held = Vec::new();
    for _ in 0..(limit as u64).min(waiting) {
        let Some(delivery) = broker.get(dead).await? else { break };
        let letter = describe(&delivery.body, delivery.death.as_ref());
        println!(
            "job {}  key {}  {}  (died in {} after {} death(s))",
            letter.job,
            letter.key,
            letter.reason,
            if letter.queue.is_empty() { "?" } else { &letter.queue },
            letter.deaths
        );
        held.push(delivery);
    }
    hand_back(held).await?;
    if waiting > limit as u64 {
        println!("... and {} more (--limit)", waiting - limit as u64);
    }
    Ok(ExitCode::SUCCESS)
}

async fn requeue(broker: &dyn Broker, settings: &AmqpSettings, waiting: u64, job: Option<&str>) -> anyhow::Result<ExitCode> {
    let dead = broker.topology().dead();
    let (mut replayed, mut kept) = (0u64, 0u64);
    let mut keep = Vec::new();
    for _ in 0..waiting {
        let Some(delivery) = broker.get(&dead).await? else { break };
        let letter = describe(&delivery.body, delivery.death.as_ref());
        let origin = letter.queue.clone();
        let ours = origin.starts_with(&format!("{}.", settings.prefix)) && origin != dead;
        if job.is_some_and(|j| j != letter.job) || !ours {
            keep.push(delivery);
            kept += 1;
            continue;
        }
        // A fresh message: no death, so the delivery limit counts from zero again.
        broker.send(&origin, delivery.body.clone(), 0).await?.await?;
        delivery.settle.ack().await?;
        println!("requeued job {} key {} to {origin}", letter.job, letter.key);
        replayed += 1;
    }
    hand_back(keep).await?;
    println!("{replayed} requeued, {kept} left in {dead}");
    Ok(ExitCode::SUCCESS)
}

async fn purge(broker: &dyn Broker, dead: &str, waiting: u64, yes: bool) -> anyhow::Result<ExitCode> {
    if waiting == 0 {
        println!("{dead} is empty");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        print!("delete {waiting} dead letter(s) from {dead}? type 'purge' to confirm: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "purge" {
            println!("nothing deleted");
            return Ok(ExitCode::from(1));
        }
    }
    let purged = broker.purge(dead).await?;
    println!("deleted {purged} dead letter(s)");
    Ok(ExitCode::SUCCESS)
}
