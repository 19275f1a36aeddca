//! Several nodes on one PostgreSQL database. Each node says it is alive
//! every second (`store::nodes`); the parts a node claimed and did not see
//! through go back to the queue once it has been silent for
//! `store.node_lease_ms`. (Each carrier's `tps` holds for all nodes
//! together through leases of its sending time: `carriers::pacing`.) And
//! what a node keeps in memory (keys, opt-outs and
//! consents, accounts' pools and limits) is read again when another node
//! changes it: every such change bumps a version (`cache_versions`, by
//! trigger), which nodes poll four times a second. Each heartbeat also
//! splits each carrier's `window` among the live nodes, and adds what the
//! node counted of each carrier to the store's minutes and reads back
//! every node's, for routing (`carriers::stats`).
//!
//! On SQLite the database is one process's file: a start requeues every
//! part left in `sending`, and nothing else here runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::auth::Accounts;
use crate::carriers::CarrierSet;
use crate::compliance::Compliance;
use crate::config::NODE_HEARTBEAT_MS;
use crate::numbers::pools::DefaultPools;
use crate::store::carrier_stats::{self, CarrierMinute};
use crate::store::{Store, StoreError, nodes};

/// How often a node looks for caches another node changed.
const CACHE_POLL: Duration = Duration::from_millis(250);

/// Joins the nodes on the store's database, first requeuing what nodes
/// that are gone left mid-submit. Returns how many parts that was.
pub async fn join(store: &Store, lease_ms: i64) -> Result<usize, StoreError> {
    let node = store.node_id().to_owned();
    let now = crate::time::now_ms();
    let joined = store
        .write(move |c| nodes::join(c, &node, now, lease_ms))
        .await?;
    if store.is_shared()
        && let Some(seen) = joined.last_seen
        && now - seen < lease_ms
    {
        tracing::warn!(
            node = store.node_id(),
            seen_ms_ago = now - seen,
            "this node's id was alive moments ago: expected after a crash; if another node \
             runs on a copy of this data directory, delete its pigeon.node to give it its own id"
        );
    }
    Ok(joined.requeued)
}

/// What a node caches and reloads when another node changes it.
pub struct Caches {
    pub accounts: Arc<Accounts>,
    pub compliance: Arc<Compliance>,
    pub default_pools: Arc<DefaultPools>,
}

impl Caches {
    /// Reads cache `name` again; false when this node changed it meanwhile
    /// (a reload read before that change must not undo it: the change's own
    /// version bump brings the next one).
    async fn reload(&self, store: &Store, name: &str) -> Result<bool, String> {
        match name {
            "keys" => self.accounts.reload().await.map_err(|e| e.to_string()),
            "compliance" => self.reload_compliance(store).await,
            // Accounts hold limits, default pools and consent requirements.
            "accounts" => {
                let accounts = self.accounts.reload().await.map_err(|e| e.to_string())?;
                let changes = self.default_pools.changes();
                let pools = store
                    .read(crate::store::accounts::default_pools)
                    .await
                    .map_err(|e| e.to_string())?;
                let pools = self.default_pools.replace(pools, changes);
                Ok(accounts & pools & self.reload_compliance(store).await?)
            }
            _ => Ok(true),
        }
    }

    async fn reload_compliance(&self, store: &Store) -> Result<bool, String> {
        let changes = self.compliance.changes();
        let fresh = store
            .read(|c| {
                use crate::store::compliance::*;
                Ok(Compliance::new(
                    all_suppressions(c)?,
                    all_marketing_consents(c)?,
                    consent_required_accounts(c)?,
                ))
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.compliance.replace(fresh, changes))
    }
}

/// Keeps this node in the cluster until the task is aborted (then call
/// [`leave`]): its heartbeat, the sweep of dead nodes' claims and early
/// reports, the carriers' windows and the caches. Runs only on a shared
/// database. The first heartbeat is done before this returns, so the node
/// sends with its share of each window from the start.
pub async fn start(
    store: Store,
    caches: Caches,
    carriers: Arc<CarrierSet>,
    lease_ms: i64,
) -> Option<JoinHandle<()>> {
    if !store.is_shared() {
        return None;
    }
    beat(&store, &carriers, lease_ms).await;
    Some(tokio::spawn(async move {
        // The last day's figures, as all nodes counted them; then each
        // heartbeat reads the minutes that may have moved.
        let mut stats_since = crate::time::now_ms().div_euclid(60_000) - STATS_MINUTES;
        let heartbeat = Duration::from_millis(NODE_HEARTBEAT_MS);
        let mut ticks = tokio::time::interval(CACHE_POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = tokio::time::Instant::now();
        // Empty: every cache is read once more, so that a change made
        // between this node's start-up reads and its first poll is seen.
        let mut versions: HashMap<String, i64> = HashMap::new();
        loop {
            ticks.tick().await;
            if last_beat.elapsed() >= heartbeat {
                last_beat = tokio::time::Instant::now();
                beat(&store, &carriers, lease_ms).await;
                stats_since = share_carrier_stats(&store, &carriers, stats_since).await;
            }
            versions = follow_caches(&store, &caches, versions).await;
        }
    }))
}

/// Takes this node off the list, once it holds no claims (a clean stop).
pub async fn leave(store: &Store) {
    let node = store.node_id().to_owned();
    if let Err(error) = store.write(move |c| nodes::leave(c, &node)).await {
        tracing::warn!(%error, "leaving the node list failed; the others will find this node gone");
    }
}

/// Says this node is alive, requeues dead nodes' claims, applies the
/// delivery reports that raced another node's recording of their part,
/// drops shared pacing buckets that are full again and takes this node's
/// share of each carrier's window.
async fn beat(store: &Store, carriers: &CarrierSet, lease_ms: i64) {
    let node = store.node_id().to_owned();
    let now = crate::time::now_ms();
    let beat = store
        .write(move |c| {
            let known = nodes::heartbeat(c, &node, now)?;
            let requeued = nodes::requeue_dead_claims(c, now - lease_ms, now, false)?;
            let early = crate::store::reports::apply_matched_early_reports(c, now)?;
            crate::store::pacing::prune_shared_buckets(c, now)?;
            let live = nodes::live_nodes(c, now - lease_ms)?;
            let place = nodes::place_among_live(c, &node, now - lease_ms)?;
            Ok((known, requeued, early, live, place))
        })
        .await;
    match beat {
        Ok((known, requeued, early, live, place)) => {
            carriers.record_early_reports(&early);
            for carrier in carriers.all() {
                carrier.share_window(place as usize, live as usize);
            }
            if !known {
                tracing::warn!(
                    "this node was not seen for longer than store.node_lease_ms: \
                     other nodes may have queued again parts it was sending"
                );
            }
            if requeued > 0 {
                tracing::info!(
                    requeued,
                    "parts a stopped node was sending are queued again"
                );
            }
            metrics::gauge!("pigeon_cluster_nodes").set(live as f64);
        }
        Err(error) => tracing::warn!(%error, "node heartbeat failed"),
    }
}

/// Minutes of carrier statistics kept: the longest window routing reads.
const STATS_MINUTES: i64 = 24 * 60;

/// Adds what this node counted of each carrier to the store's minutes and
/// takes every node's minutes from `since` on as its figures. Returns the
/// minute to read from next time: the previous one (a node may still be
/// adding to it) unless this read failed.
async fn share_carrier_stats(store: &Store, carriers: &CarrierSet, since: i64) -> i64 {
    let counted: Vec<(String, Vec<CarrierMinute>)> = carriers
        .all()
        .iter()
        .map(|c| (c.name().to_owned(), c.stats.take_unsent()))
        .filter(|(_, minutes)| !minutes.is_empty())
        .collect();
    let now_minute = crate::time::now_ms().div_euclid(60_000);
    let sent = counted.clone();
    let written = store
        .write(move |c| {
            for (carrier, minutes) in &sent {
                carrier_stats::add_carrier_minutes(c, carrier, minutes)?;
            }
            carrier_stats::prune_carrier_minutes(c, now_minute - STATS_MINUTES)?;
            carrier_stats::carrier_minutes_since(c, since)
        })
        .await;
    let minutes = match written {
        Ok(minutes) => minutes,
        Err(error) => {
            tracing::warn!(%error, "sharing carrier statistics failed");
            for (name, minutes) in counted {
                if let Some(carrier) = carriers.get(&name) {
                    carrier.stats.put_back(minutes);
                }
            }
            return since;
        }
    };
    for carrier in carriers.all() {
        let mine: Vec<CarrierMinute> = minutes
            .iter()
            .filter(|(name, _)| name == carrier.name())
            .map(|(_, minute)| minute.clone())
            .collect();
        carrier.stats.replace_minutes(&mine);
    }
    now_minute - 1
}

/// Reloads each cache whose version moved since `seen` and returns the
/// versions now.
async fn follow_caches(
    store: &Store,
    caches: &Caches,
    seen: HashMap<String, i64>,
) -> HashMap<String, i64> {
    // Versions first, then the data: a change made in between is read now
    // and read again next time, never missed.
    let now: HashMap<String, i64> = match store.read(nodes::cache_versions).await {
        Ok(versions) => versions.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "reading cache versions failed");
            return seen;
        }
    };
    let mut kept = now.clone();
    for (name, version) in &now {
        if seen.get(name) == Some(version) {
            continue;
        }
        let reloaded = caches.reload(store, name).await.unwrap_or_else(|error| {
            tracing::warn!(cache = %name, %error, "reloading a cache another node changed failed");
            false
        });
        if !reloaded {
            // Tried again on the next poll.
            match seen.get(name) {
                Some(old) => kept.insert(name.clone(), *old),
                None => kept.remove(name),
            };
        }
    }
    kept
}
