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
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use lamina_common::amqp::{self, AmqpSettings};
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

/// What a dead letter is, as far as its body and headers tell.
struct Letter {
    job: String,
    key: String,
    reason: String,
    queue: String,
    deaths: i64,
}

fn describe(body: &[u8], props: &BasicProperties) -> Letter {
    let death = amqp::death(props).unwrap_or_else(|| lamina_common::queue::Death { reason: "unknown".into(), ..Default::default() });
    let (reason, queue, deaths) = (death.reason, death.queue, death.count);
    let reason = match reason.as_str() {
        "delivery_limit" => format!("delivery limit: a worker stopped {} times on it", amqp::DELIVERY_LIMIT),
        "rejected" => "rejected as invalid".to_owned(),
        _ => reason,
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
    let settings = AmqpSettings::from_env().map_err(anyhow::Error::msg)?;
    let connection = amqp::connect(&settings, "lamina-dlq").await.context("cannot connect to the broker")?;
    let channel = amqp::confirming(&connection).await?;
    amqp::declare(&channel, &settings, &[]).await?;
    let dead = settings.dead();
    let waiting = depth(&channel, &dead).await?;
    let code = match command {
        DlqCommand::List(args) => list(&channel, &dead, waiting, args.limit).await?,
        DlqCommand::Requeue(args) => requeue(&channel, &settings, waiting, args.job.as_deref()).await?,
        DlqCommand::Purge(args) => purge(&channel, &dead, waiting, args.yes).await?,
    };
    let _ = connection.close(200, "done").await;
    Ok(code)
}

async fn depth(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    Ok(channel.queue_declare(queue, passive, FieldTable::default()).await?.message_count())
}

/// Reads up to `limit` dead letters without removing them: they go back when the channel
/// closes (or are handed back explicitly).
async fn list(channel: &Channel, dead: &str, waiting: u32, limit: usize) -> anyhow::Result<ExitCode> {
    println!("{waiting} dead letter(s) in {dead}");
    let mut last_tag = None;
    for _ in 0..limit.min(waiting as usize) {
        let Some(message) = channel.basic_get(dead, BasicGetOptions { no_ack: false }).await? else { break };
        let letter = describe(&message.delivery.data, &message.delivery.properties);
        println!(
            "job {}  key {}  {}  (died in {} after {} death(s))",
            letter.job,
            letter.key,
            letter.reason,
            if letter.queue.is_empty() { "?" } else { &letter.queue },
            letter.deaths
        );
        last_tag = Some(message.delivery.delivery_tag);
    }
    if let Some(tag) = last_tag {
        channel.basic_nack(tag, BasicNackOptions { multiple: true, requeue: true }).await?;
    }
    if waiting as usize > limit {
        println!("... and {} more (--limit)", waiting as usize - limit);
    }
    Ok(ExitCode::SUCCESS)
}

async fn requeue(channel: &Channel, settings: &AmqpSettings, waiting: u32, job: Option<&str>) -> anyhow::Result<ExitCode> {
    let dead = settings.dead();
    let (mut replayed, mut kept) = (0u64, 0u64);
    let mut keep = Vec::new();
    for _ in 0..waiting {
        let Some(message) = channel.basic_get(dead.as_str(), BasicGetOptions { no_ack: false }).await? else { break };
        let delivery = message.delivery;
        let letter = describe(&delivery.data, &delivery.properties);
        let origin = letter.queue.clone();
        let ours = origin.starts_with(&format!("{}.", settings.prefix)) && origin != dead;
        if job.is_some_and(|j| j != letter.job) || !ours {
            keep.push(delivery.delivery_tag);
            kept += 1;
            continue;
        }
        // A fresh message: no x-death, so the delivery limit counts from zero again.
        let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
        amqp::publish_raw(channel, &origin, &delivery.data, props).await?;
        channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()).await?;
        println!("requeued job {} key {} to {origin}", letter.job, letter.key);
        replayed += 1;
    }
    for tag in keep {
        channel.basic_nack(tag, BasicNackOptions { multiple: false, requeue: true }).await?;
    }
    println!("{replayed} requeued, {kept} left in {dead}");
    Ok(ExitCode::SUCCESS)
}

async fn purge(channel: &Channel, dead: &str, waiting: u32, yes: bool) -> anyhow::Result<ExitCode> {
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
    let purged = channel.queue_purge(dead, QueuePurgeOptions::default()).await?;
    println!("deleted {purged} dead letter(s)");
    Ok(ExitCode::SUCCESS)
}
