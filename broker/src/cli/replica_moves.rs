//! The commands that move replicas with a computed plan: `topics alter
//! --replication-factor`, `cluster decommission` and `cluster balance` (the plans come
//! from [`super::placement`]), and following a reassignment to its end with progress
//! (partitions done, bytes copied, rate and time left).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use super::error::CliError;
use super::kafka::ids;
use super::placement::{Layout, Tp};
use super::reassign_plan::Plan;
use super::table;
use crate::client::{Client, ConfigChange, ReassignmentOutcome};
use crate::replica::throttle::{FOLLOWER_RATE, FOLLOWER_REPLICAS, LEADER_RATE, LEADER_REPLICAS};

/// How long a progress report waits for one broker's log directories.
pub const PROGRESS_ASK: Duration = Duration::from_secs(2);

/// The cluster as the planners see it, and each partition's current leader.
pub async fn layout(client: &Client) -> Result<(Layout, BTreeMap<Tp, i32>), CliError> {
    let md = client.fetch_metadata(None, false).await?;
    let ongoing: BTreeMap<Tp, Vec<i32>> = client
        .list_partition_reassignments()
        .await?
        .into_iter()
        .map(|r| {
            let target = r
                .replicas
                .iter()
                .copied()
                .filter(|b| !r.removing.contains(b))
                .collect();
            ((r.topic, r.partition), target)
        })
        .collect();
    let mut l = Layout {
        brokers: md
            .brokers
            .iter()
            .map(|(id, b)| (*id, b.rack.clone()))
            .collect(),
        ..Layout::default()
    };
    let mut leaders = BTreeMap::new();
    for t in md.topics.values() {
        for p in t.partitions.values() {
            let tp = (t.name.clone(), p.partition);
            if let Some(leader) = p.leader {
                leaders.insert(tp.clone(), leader);
            }
            let replicas = ongoing
                .get(&tp)
                .cloned()
                .unwrap_or_else(|| p.replicas.clone());
            l.partitions.insert(tp, replicas);
        }
    }
    l.sizes = sizes(client).await;
    Ok((l, leaders))
}

/// (topic, partition) → bytes of its largest replica; empty if a broker cannot tell.
pub async fn sizes(client: &Client) -> BTreeMap<Tp, i64> {
    let mut out: BTreeMap<Tp, i64> = BTreeMap::new();
    {
        for d in client.describe_log_dirs_within(PROGRESS_ASK).await {
            for (tp, (bytes, _)) in d.replicas {
                let e = out.entry(tp).or_default();
                *e = (*e).max(bytes);
            }
        }
    }
    out
}

/// Bytes for people: `812 B`, `1.5 MiB`.
pub use super::output::bytes as human_bytes;

/// Prints a plan's moves, then the plan itself as one line of Kafka's JSON.
pub fn print_plan(
    layout: &Layout,
    plan: &BTreeMap<Tp, Vec<i32>>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if plan.is_empty() {
        table::note(
            out,
            "nothing to move: the replicas are already where they should be",
        )?;
        return Ok(());
    }
    let mut t = table::Table::new(&["TOPIC", "PARTITION", "CURRENT", "TARGET", "COPY"]);
    let mut total = 0;
    for (tp, target) in plan {
        let current = layout.partitions.get(tp).cloned().unwrap_or_default();
        let adding = target.iter().filter(|r| !current.contains(r)).count() as i64;
        let copy = layout.sizes.get(tp).copied().unwrap_or(0) * adding;
        total += copy;
        t.row(vec![
            tp.0.clone(),
            tp.1.to_string(),
            ids(&current),
            ids(target),
            human_bytes(copy),
        ]);
    }
    t.write(out, "")?;
    table::gap(out)?;
    table::note(
        out,
        &format!(
            "{} partition(s) to change, {} to copy. The plan, for `fjord topics reassign --execute FILE`:",
            plan.len(),
            human_bytes(total)
        ),
    )?;
    writeln!(out, "{}", Plan::new(plan.clone()).to_json())?;
    Ok(())
}

/// Throttles the catch-up traffic of `plan` to `rate` bytes per second, as Kafka's
/// `kafka-reassign-partitions --throttle` does: both rates on every broker, and per topic
/// the replicas that may lead (the current ones) and those catching up (the new ones).
pub async fn set_throttle(
    client: &Client,
    current: &BTreeMap<Tp, Vec<i32>>,
    plan: &BTreeMap<Tp, Vec<i32>>,
    rate: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let brokers = on_every_broker(client, |k| {
        ConfigChange::Set(k.to_owned(), rate.to_string())
    })
    .await?;
    // topic → (leader-side entries, follower-side entries)
    let mut by_topic: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (tp, target) in plan {
        let now = current.get(tp).cloned().unwrap_or_default();
        let adding: Vec<i32> = target
            .iter()
            .copied()
            .filter(|b| !now.contains(b))
            .collect();
        if adding.is_empty() {
            continue;
        }
        let e = by_topic.entry(tp.0.as_str()).or_default();
        e.0.extend(now.iter().map(|b| format!("{}:{b}", tp.1)));
        e.1.extend(adding.iter().map(|b| format!("{}:{b}", tp.1)));
    }
    for (topic, (leaders, followers)) in &by_topic {
        client
            .alter_topic_configs(
                topic,
                &[
                    ConfigChange::Set(LEADER_REPLICAS.to_owned(), leaders.join(",")),
                    ConfigChange::Set(FOLLOWER_REPLICAS.to_owned(), followers.join(",")),
                ],
            )
            .await?;
    }
    table::note(
        out,
        &format!(
            "replication throttled to {}/s on {} broker(s) for {} topic(s)",
            human_bytes(rate as i64),
            brokers,
            by_topic.len()
        ),
    )?;
    Ok(())
}

/// Removes the throttle rates from every live broker and the throttled replica lists
/// from `topics`.
pub async fn clear_throttle(
    client: &Client,
    topics: impl IntoIterator<Item = &str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    on_every_broker(client, |k| ConfigChange::Delete(k.to_owned())).await?;
    let mut n = 0;
    let topics: std::collections::BTreeSet<&str> = topics.into_iter().collect();
    for topic in topics {
        client
            .alter_topic_configs(
                topic,
                &[
                    ConfigChange::Delete(LEADER_REPLICAS.to_owned()),
                    ConfigChange::Delete(FOLLOWER_REPLICAS.to_owned()),
                ],
            )
            .await?;
        n += 1;
    }
    table::note(out, &format!("replication throttle removed ({n} topic(s))"))?;
    Ok(())
}

/// The partitions a broker refused to reassign, each as `topic-partition: ERROR (why)`.
pub fn refusals(outcomes: &[ReassignmentOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.error_code != 0)
        .map(|o| {
            format!(
                "{}-{}: {}{}",
                o.topic,
                o.partition,
                crate::client::error_name(o.error_code),
                o.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// Applies `change` to both throttle rates on every live broker.
async fn on_every_broker(
    client: &Client,
    change: impl Fn(&str) -> ConfigChange,
) -> Result<usize, CliError> {
    let md = client.fetch_metadata(Some(&[]), false).await?;
    for id in md.brokers.keys() {
        client
            .alter_broker_configs(Some(*id), &[change(LEADER_RATE), change(FOLLOWER_RATE)])
            .await?;
    }
    Ok(md.brokers.len())
}

/// Parses `--throttle`: bytes per second, at least 1.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a number of bytes per second (at least 1)"
        )),
    }
}

/// Starts `plan` (refusing partitions already being reassigned), throttled to
/// `throttle` bytes per second if given, and follows it to its end (at most `wait`),
/// printing progress; the throttle is removed once it is done.
pub async fn execute_and_follow(
    client: &Client,
    layout: &Layout,
    plan: &BTreeMap<Tp, Vec<i32>>,
    throttle: Option<u64>,
    request_timeout: Duration,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if plan.is_empty() {
        return Ok(());
    }
    let busy: Vec<String> = client
        .list_partition_reassignments()
        .await?
        .into_iter()
        .filter(|r| plan.contains_key(&(r.topic.clone(), r.partition)))
        .map(|r| format!("{}-{}", r.topic, r.partition))
        .collect();
    if !busy.is_empty() {
        return Err(CliError::Usage(format!(
            "already being reassigned: {}; wait for it or cancel it (fjord topics reassign \
             --verify / --cancel) first",
            busy.join(", ")
        )));
    }
    if let Some(rate) = throttle {
        set_throttle(client, &layout.partitions, plan, rate, out).await?;
    }
    let changes: Vec<(String, i32, Option<Vec<i32>>)> = plan
        .iter()
        .map(|(tp, r)| (tp.0.clone(), tp.1, Some(r.clone())))
        .collect();
    let outcomes = client
        .alter_partition_reassignments(&changes, request_timeout)
        .await?;
    let refused = refusals(&outcomes);
    if !refused.is_empty() {
        return Err(CliError::Incomplete(format!(
            "{} partition(s) refused: {}",
            refused.len(),
            refused.join("; ")
        )));
    }
    table::note(
        out,
        &format!("started the reassignment of {} partition(s)", plan.len()),
    )?;
    follow(client, layout, plan, wait, out).await?;
    if throttle.is_some() {
        clear_throttle(client, plan.keys().map(|(t, _)| t.as_str()), out).await?;
    }
    Ok(())
}

/// Waits until none of `plan`'s partitions is being reassigned, printing progress every
/// two seconds: partitions done, bytes the new replicas hold, rate and time left.
pub async fn follow(
    client: &Client,
    layout: &Layout,
    plan: &BTreeMap<Tp, Vec<i32>>,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    // (partition, new broker) → bytes it must end with.
    let mut copies: BTreeMap<(Tp, i32), i64> = BTreeMap::new();
    for (tp, target) in plan {
        let current = layout.partitions.get(tp).cloned().unwrap_or_default();
        for b in target.iter().filter(|r| !current.contains(r)) {
            copies.insert((tp.clone(), *b), layout.sizes.get(tp).copied().unwrap_or(0));
        }
    }
    let total: i64 = copies.values().sum();
    let start = Instant::now();
    let deadline = start + wait;
    loop {
        let listed = match client.list_partition_reassignments().await {
            Ok(listed) => listed,
            // The controller moved (or died): the reassignment carries on under the next
            // one, so find it and ask again.
            Err(e) if Instant::now() < deadline => {
                table::note(out, &format!("cannot list reassignments ({e}); retrying"))?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = client.fetch_metadata(Some(&[]), false).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let ongoing: Vec<Tp> = listed
            .into_iter()
            .map(|r| (r.topic, r.partition))
            .filter(|tp| plan.contains_key(tp))
            .collect();
        let dirs = client.describe_log_dirs_within(PROGRESS_ASK).await;
        let held = |tp: &Tp, b: i32| {
            dirs.iter()
                .filter(|d| d.broker == b)
                .find_map(|d| d.replicas.get(tp).map(|(bytes, _)| *bytes))
                .unwrap_or(0)
        };
        let moved: i64 = copies
            .iter()
            .map(|((tp, b), want)| {
                if ongoing.contains(tp) {
                    held(tp, *b).min(*want)
                } else {
                    *want
                }
            })
            .sum();
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let rate = moved as f64 / secs;
        let left = if rate > 0.0 && moved < total {
            format!(", about {:.0} s left", (total - moved) as f64 / rate)
        } else {
            String::new()
        };
        table::note(
            out,
            &format!(
                "{}/{} partitions done, {} of {} copied ({}/s){left}",
                plan.len() - ongoing.len(),
                plan.len(),
                human_bytes(moved),
                human_bytes(total),
                human_bytes(rate as i64)
            ),
        )?;
        out.flush()?;
        if ongoing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::Incomplete(format!(
                "{} partition(s) still moving after {} s; it carries on (follow it with \
                 `fjord topics reassign --verify`)",
                ongoing.len(),
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `fjord cluster decommission BROKER`: moves every replica off the broker, waits, and
/// says whether it is safe to stop.
pub async fn decommission(
    client: &Client,
    broker: i32,
    dry_run: bool,
    throttle: Option<u64>,
    request_timeout: Duration,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (layout, _) = layout(client).await?;
    if !layout.brokers.contains_key(&broker) {
        return Err(CliError::Usage(format!("no live broker with id {broker}")));
    }
    let plan = super::placement::decommission(&layout, broker).map_err(CliError::Usage)?;
    print_plan(&layout, &plan, out)?;
    if dry_run {
        return Ok(());
    }
    execute_and_follow(client, &layout, &plan, throttle, request_timeout, wait, out).await?;
    let md = client.fetch_metadata(None, false).await?;
    let still: Vec<String> = md
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .values()
                .filter(|p| p.replicas.contains(&broker))
                .map(move |p| format!("{}-{}", t.name, p.partition))
        })
        .collect();
    if !still.is_empty() {
        return Err(CliError::Incomplete(format!(
            "broker {broker} still holds {} (created meanwhile?); run decommission again",
            still.join(", ")
        )));
    }
    table::note(
        out,
        &format!("broker {broker} holds no replicas: it is safe to stop it"),
    )?;
    Ok(())
}

/// `fjord cluster balance [--execute]`.
pub async fn balance(
    client: &Client,
    execute: bool,
    throttle: Option<u64>,
    request_timeout: Duration,
    wait: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (layout, _) = layout(client).await?;
    let plan = super::placement::balance(&layout);
    print_plan(&layout, &plan, out)?;
    if !execute || plan.is_empty() {
        return Ok(());
    }
    execute_and_follow(client, &layout, &plan, throttle, request_timeout, wait, out).await?;
    // Leadership follows the new preferred replicas.
    let results = client.elect_preferred_leaders(request_timeout).await?;
    let moved = results.iter().filter(|r| r.2 == 0).count();
    table::note(
        out,
        &format!("balanced; {moved} partition(s) moved to their preferred leader"),
    )?;
    Ok(())
}

/// `fjord topics alter TOPIC --replication-factor N`: plans, starts and follows the change.
pub async fn replication_factor(
    client: &Client,
    topic: &str,
    rf: usize,
    throttle: Option<u64>,
    request_timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (layout, leaders) = layout(client).await?;
    let plan = super::placement::replication_factor(&layout, topic, rf, &leaders)
        .map_err(CliError::Usage)?;
    if plan.is_empty() {
        table::note(
            out,
            &format!("{topic} already has {rf} replicas per partition"),
        )?;
        return Ok(());
    }
    execute_and_follow(
        client,
        &layout,
        &plan,
        throttle,
        request_timeout,
        Duration::from_secs(24 * 3600),
        out,
    )
    .await?;
    table::note(out, &format!("{topic} now has {rf} replicas per partition"))?;
    Ok(())
}
