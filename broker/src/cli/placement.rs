//! Where replicas should go: the plans behind `topics alter --replication-factor`,
//! `cluster decommission` and `cluster balance`. Pure functions of a [`Layout`] (live
//! brokers with their racks, every partition's replicas and size), so each rule is
//! unit-tested:
//!
//! - a new replica goes to the broker holding the fewest replicas among those whose rack
//!   the partition does not use yet (any broker if every rack is used), ties broken by the
//!   lowest id;
//! - a move keeps the replica's position in the list, so a broker that replaces the
//!   preferred leader becomes the preferred leader;
//! - balancing first moves replicas off brokers that are not live, then moves the
//!   smallest partitions from the fullest broker to the emptiest until the replica counts
//!   differ by at most one, then reorders replica lists (which copies nothing) until the
//!   preferred-leader counts differ by at most one. A move never makes a partition span
//!   fewer racks.

use std::collections::{BTreeMap, BTreeSet};

/// A partition: (topic, partition).
pub type Tp = (String, i32);

/// What the planners see of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Live brokers and their racks.
    pub brokers: BTreeMap<i32, Option<String>>,
    /// Every partition's replicas (the target of a reassignment in progress).
    pub partitions: BTreeMap<Tp, Vec<i32>>,
    /// Bytes of each partition's largest replica (0 when unknown).
    pub sizes: BTreeMap<Tp, i64>,
}

impl Layout {
    fn rack(&self, broker: i32) -> Option<&str> {
        self.brokers.get(&broker).and_then(|r| r.as_deref())
    }

    /// Replicas held per live broker under `assignment`.
    fn load(
        assignment: &BTreeMap<Tp, Vec<i32>>,
        brokers: &BTreeMap<i32, Option<String>>,
    ) -> BTreeMap<i32, usize> {
        let mut load: BTreeMap<i32, usize> = brokers.keys().map(|b| (*b, 0)).collect();
        for replicas in assignment.values() {
            for r in replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
        load
    }

    /// The best broker to hold a new replica of a partition that has `replicas`, never
    /// one of `excluded`: the least loaded among those on an unused rack.
    fn pick(&self, replicas: &[i32], excluded: &[i32], load: &BTreeMap<i32, usize>) -> Option<i32> {
        let used: BTreeSet<&str> = replicas.iter().filter_map(|r| self.rack(*r)).collect();
        let candidates = || {
            self.brokers
                .keys()
                .copied()
                .filter(|b| !replicas.contains(b) && !excluded.contains(b))
        };
        let least = |it: &mut dyn Iterator<Item = i32>| {
            it.min_by_key(|b| (load.get(b).copied().unwrap_or(0), *b))
        };
        least(&mut candidates().filter(|b| self.rack(*b).is_none_or(|r| !used.contains(r))))
            .or_else(|| least(&mut candidates()))
    }

    /// Whether replacing `from` by `to` in `replicas` keeps as many racks.
    fn keeps_racks(&self, replicas: &[i32], from: i32, to: i32) -> bool {
        let racks = |list: &mut dyn Iterator<Item = i32>| -> usize {
            list.filter_map(|r| self.rack(r).map(str::to_owned))
                .collect::<BTreeSet<_>>()
                .len()
        };
        let before = racks(&mut replicas.iter().copied());
        let after = racks(&mut replicas.iter().map(|r| if *r == from { to } else { *r }));
        after >= before
    }
}

/// The changes between `layout` and `assignment`: only the partitions whose replicas differ.
fn changed(layout: &Layout, assignment: BTreeMap<Tp, Vec<i32>>) -> BTreeMap<Tp, Vec<i32>> {
    assignment
        .into_iter()
        .filter(|(tp, r)| layout.partitions.get(tp) != Some(r))
        .collect()
}

/// Gives every partition of `topic` `rf` replicas: new ones are placed as in the module
/// docs; when shrinking, the last replicas go, never the `leaders`' current ones.
pub fn replication_factor(
    layout: &Layout,
    topic: &str,
    rf: usize,
    leaders: &BTreeMap<Tp, i32>,
) -> Result<BTreeMap<Tp, Vec<i32>>, String> {
    if rf == 0 {
        return Err("the replication factor must be at least 1".to_owned());
    }
    if rf > layout.brokers.len() {
        return Err(format!(
            "a replication factor of {rf} needs {rf} live brokers; {} are live",
            layout.brokers.len()
        ));
    }
    let mut assignment = layout.partitions.clone();
    let mut load = Layout::load(&assignment, &layout.brokers);
    let mine: Vec<Tp> = assignment
        .keys()
        .filter(|(t, _)| t == topic)
        .cloned()
        .collect();
    if mine.is_empty() {
        return Err(format!("no topic {topic}"));
    }
    for tp in mine {
        let replicas = assignment
            .get_mut(&tp)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut replicas = replicas;
        while replicas.len() > rf {
            let leader = leaders.get(&tp).copied();
            let Some(pos) = replicas.iter().rposition(|r| Some(*r) != leader) else {
                break;
            };
            let gone = replicas.remove(pos);
            if let Some(n) = load.get_mut(&gone) {
                *n = n.saturating_sub(1);
            }
        }
        while replicas.len() < rf {
            let Some(b) = layout.pick(&replicas, &[], &load) else {
                return Err(format!(
                    "no broker left for a new replica of {}-{}",
                    tp.0, tp.1
                ));
            };
            replicas.push(b);
            *load.entry(b).or_default() += 1;
        }
        assignment.insert(tp, replicas);
    }
    Ok(changed(layout, assignment))
}

/// Moves every replica off `broker`, each to the best other broker (see the module docs).
pub fn decommission(layout: &Layout, broker: i32) -> Result<BTreeMap<Tp, Vec<i32>>, String> {
    let mut assignment = layout.partitions.clone();
    let mut brokers = layout.brokers.clone();
    brokers.remove(&broker);
    let mut load = Layout::load(&assignment, &brokers);
    let others = Layout {
        brokers,
        ..layout.clone()
    };
    for (tp, replicas) in assignment.iter_mut() {
        let Some(pos) = replicas.iter().position(|r| *r == broker) else {
            continue;
        };
        let rest: Vec<i32> = replicas.iter().copied().filter(|r| *r != broker).collect();
        let Some(to) = others.pick(&rest, &[broker], &load) else {
            return Err(format!(
                "{}-{} has {} replicas; without broker {broker} there are not enough live brokers",
                tp.0,
                tp.1,
                replicas.len()
            ));
        };
        replicas[pos] = to;
        *load.entry(to).or_default() += 1;
    }
    Ok(changed(layout, assignment))
}

/// The broker with the most and the one with the fewest (ties: lowest ids), if their
/// counts differ by more than one.
fn uneven(counts: &BTreeMap<i32, usize>) -> Option<(i32, i32)> {
    let (&most_b, &most) = counts.iter().max_by_key(|(b, n)| (**n, -**b))?;
    let (&least_b, &least) = counts.iter().min_by_key(|(b, n)| (**n, **b))?;
    (most > least + 1).then_some((most_b, least_b))
}

/// A plan that spreads replicas, then preferred leaders, evenly over the live brokers,
/// moving the fewest bytes it can (see the module docs).
pub fn balance(layout: &Layout) -> BTreeMap<Tp, Vec<i32>> {
    let mut assignment = layout.partitions.clone();
    let mut load = Layout::load(&assignment, &layout.brokers);
    // Replicas on brokers that are gone.
    for replicas in assignment.values_mut() {
        for i in 0..replicas.len() {
            if layout.brokers.contains_key(&replicas[i]) {
                continue;
            }
            let rest: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|r| *r != replicas[i])
                .collect();
            if let Some(to) = layout.pick(&rest, &[], &load) {
                replicas[i] = to;
                *load.entry(to).or_default() += 1;
            }
        }
    }
    // Replica counts: smallest partitions first from the fullest broker to the emptiest.
    // Bounded: each move lowers the spread's sum of squares, and there are at most as many
    // moves as replicas.
    let total: usize = assignment.values().map(Vec::len).sum();
    for _ in 0..=total {
        let Some((full, empty)) = uneven(&load) else {
            break;
        };
        let candidate = assignment
            .iter()
            .filter(|(_, r)| r.contains(&full) && !r.contains(&empty))
            .filter(|(_, r)| layout.keeps_racks(r, full, empty))
            .min_by_key(|(tp, _)| (layout.sizes.get(*tp).copied().unwrap_or(0), (*tp).clone()))
            .map(|(tp, _)| tp.clone());
        let Some(tp) = candidate else {
            break;
        };
        if let Some(r) = assignment.get_mut(&tp) {
            for x in r.iter_mut() {
                if *x == full {
                    *x = empty;
                }
            }
        }
        *load.entry(full).or_default() -= 1;
        *load.entry(empty).or_default() += 1;
    }
    // Preferred leaders: reorder lists, which moves no data.
    let mut leads: BTreeMap<i32, usize> = layout.brokers.keys().map(|b| (*b, 0)).collect();
    for r in assignment.values() {
        if let Some(first) = r.first() {
            *leads.entry(*first).or_default() += 1;
        }
    }
    for _ in 0..=assignment.len() {
        let Some((most_b, least_b)) = uneven(&leads) else {
            break;
        };
        let candidate = assignment
            .iter()
            .find(|(_, r)| r.first() == Some(&most_b) && r.contains(&least_b))
            .map(|(tp, _)| tp.clone());
        let Some(tp) = candidate else {
            break;
        };
        if let Some(r) = assignment.get_mut(&tp) {
            if let Some(pos) = r.iter().position(|x| *x == least_b) {
                r.swap(0, pos);
            }
        }
        *leads.entry(most_b).or_default() -= 1;
        *leads.entry(least_b).or_default() += 1;
    }
    changed(layout, assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(brokers: &[(i32, Option<&str>)], partitions: &[(&str, i32, &[i32])]) -> Layout {
        Layout {
            brokers: brokers
                .iter()
                .map(|(b, r)| (*b, r.map(str::to_owned)))
                .collect(),
            partitions: partitions
                .iter()
                .map(|(t, p, r)| (((*t).to_owned(), *p), r.to_vec()))
                .collect(),
            sizes: BTreeMap::new(),
        }
    }

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_owned(), p)
    }

    fn counts(
        l: &Layout,
        plan: &BTreeMap<Tp, Vec<i32>>,
    ) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
        let mut all = l.partitions.clone();
        all.extend(plan.clone());
        let replicas = Layout::load(&all, &l.brokers);
        let mut leads: BTreeMap<i32, usize> = l.brokers.keys().map(|b| (*b, 0)).collect();
        for r in all.values() {
            *leads.entry(r[0]).or_default() += 1;
        }
        (replicas, leads)
    }

    #[test]
    fn raising_the_replication_factor_adds_the_least_loaded_brokers() {
        let l = layout(
            &[(1, None), (2, None), (3, None)],
            &[("t", 0, &[1]), ("t", 1, &[2]), ("u", 0, &[3, 1])],
        );
        let plan = replication_factor(&l, "t", 3, &BTreeMap::new()).unwrap();
        // Ties go to the lowest id; each new replica counts for the next choice.
        assert_eq!(
            plan[&tp("t", 0)],
            vec![1, 2, 3],
            "the preferred leader stays first"
        );
        assert_eq!(plan[&tp("t", 1)], vec![2, 1, 3]);
        assert!(
            !plan.contains_key(&tp("u", 0)),
            "other topics are untouched"
        );
        assert!(replication_factor(&l, "t", 4, &BTreeMap::new())
            .unwrap_err()
            .contains("3 are live"));
        assert!(replication_factor(&l, "nope", 2, &BTreeMap::new())
            .unwrap_err()
            .contains("no topic"));
    }

    #[test]
    fn lowering_the_replication_factor_keeps_the_current_leader() {
        let l = layout(&[(1, None), (2, None), (3, None)], &[("t", 0, &[1, 2, 3])]);
        let leaders: BTreeMap<Tp, i32> = [(tp("t", 0), 3)].into();
        let plan = replication_factor(&l, "t", 2, &leaders).unwrap();
        assert_eq!(plan[&tp("t", 0)], vec![1, 3]);
        let plan = replication_factor(&l, "t", 1, &leaders).unwrap();
        assert_eq!(plan[&tp("t", 0)], vec![3]);
        assert!(
            replication_factor(&l, "t", 3, &leaders).unwrap().is_empty(),
            "nothing to do"
        );
    }

    #[test]
    fn new_replicas_go_to_unused_racks_first() {
        let l = layout(
            &[
                (1, Some("a")),
                (2, Some("a")),
                (3, Some("b")),
                (4, Some("b")),
            ],
            &[("t", 0, &[1])],
        );
        let plan = replication_factor(&l, "t", 2, &BTreeMap::new()).unwrap();
        assert_eq!(plan[&tp("t", 0)], vec![1, 3], "rack b, lowest id");
    }

    #[test]
    fn decommissioning_moves_every_replica_and_keeps_positions() {
        let l = layout(
            &[(1, None), (2, None), (3, None), (4, None)],
            &[
                ("t", 0, &[1, 2, 3]),
                ("t", 1, &[2, 1, 3]),
                ("t", 2, &[2, 3, 4]),
            ],
        );
        let plan = decommission(&l, 1).unwrap();
        assert_eq!(plan[&tp("t", 0)], vec![4, 2, 3]);
        assert_eq!(plan[&tp("t", 1)], vec![2, 4, 3]);
        assert!(!plan.contains_key(&tp("t", 2)));
        assert!(plan.values().all(|r| !r.contains(&1)));
        let small = layout(&[(1, None), (2, None)], &[("t", 0, &[1, 2])]);
        assert!(decommission(&small, 1)
            .unwrap_err()
            .contains("not enough live brokers"));
    }

    #[test]
    fn balancing_evens_out_replicas_then_leaders_moving_small_partitions() {
        // Broker 4 is new and empty; every partition leads on 1.
        let mut l = layout(
            &[(1, None), (2, None), (3, None), (4, None)],
            &[
                ("t", 0, &[1, 2, 3]),
                ("t", 1, &[1, 2, 3]),
                ("t", 2, &[1, 2, 3]),
                ("t", 3, &[1, 2, 3]),
            ],
        );
        l.sizes = [
            (tp("t", 0), 500),
            (tp("t", 1), 10),
            (tp("t", 2), 20),
            (tp("t", 3), 900),
        ]
        .into();
        let plan = balance(&l);
        let (replicas, leads) = counts(&l, &plan);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
        assert_eq!(
            leads.values().copied().collect::<Vec<_>>(),
            vec![1, 1, 1, 1]
        );
        // The data that moves to 4 is that of the two smallest partitions, 1 and 2... and
        // possibly a third if needed: never the 900-byte one before the smaller ones.
        let moved: Vec<&Tp> = plan
            .iter()
            .filter(|(tp, r)| r.contains(&4) && !l.partitions[*tp].contains(&4))
            .map(|(tp, _)| tp)
            .collect();
        assert_eq!(moved.len(), 3);
        assert!(!moved.contains(&&tp("t", 3)), "{moved:?}");
        // Balanced already: nothing to do.
        let mut done = l.clone();
        done.partitions.extend(plan);
        assert!(balance(&done).is_empty());
    }

    #[test]
    fn balancing_moves_replicas_off_dead_brokers_and_keeps_racks() {
        let l = layout(
            &[(1, Some("a")), (2, Some("b")), (3, Some("a"))],
            &[("t", 0, &[1, 9]), ("t", 1, &[2, 1])],
        );
        let plan = balance(&l);
        assert!(plan.values().all(|r| !r.contains(&9)), "{plan:?}");
        let (replicas, _) = counts(&l, &plan);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![1, 2, 1]
        );
        // With racks a and b used by every partition, 2 (rack b) is never swapped for 3
        // (rack a) in a partition that also has rack a.
        let mut after = l.partitions.clone();
        after.extend(plan);
        for r in after.values() {
            let racks: BTreeSet<&str> = r.iter().filter_map(|b| l.rack(*b)).collect();
            assert!(racks.len() >= 2 || r.len() < 2, "{r:?}");
        }
    }
}
