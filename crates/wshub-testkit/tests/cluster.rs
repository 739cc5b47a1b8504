//! `RedisCluster` against real `redis-server` nodes.

use wshub_testkit::{RedisCluster, Reply};

/// The node whose slot range holds `key`'s slot, by `CLUSTER SLOTS`.
fn owner_of(cluster: &RedisCluster, key: &str) -> usize {
    let first = &cluster.nodes()[0];
    let slot = first
        .command(&["CLUSTER", "KEYSLOT", key])
        .as_integer()
        .unwrap();
    let slots = first.command(&["CLUSTER", "SLOTS"]);
    let port = slots
        .as_array()
        .unwrap()
        .iter()
        .find_map(|range| {
            let range = range.as_array()?;
            let (start, end) = (range[0].as_integer()?, range[1].as_integer()?);
            let master = range[2].as_array()?;
            (start..=end)
                .contains(&slot)
                .then(|| master[1].as_integer())?
        })
        .unwrap_or_else(|| panic!("no range holds slot {slot}: {slots:?}"));
    cluster
        .nodes()
        .iter()
        .position(|node| i64::from(node.port()) == port)
        .unwrap()
}

fn assert_all_slots_ok(cluster: &RedisCluster) {
    for node in cluster.nodes() {
        let info = node.command(&["CLUSTER", "INFO"]);
        let info = info.as_str().unwrap();
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(
            info.contains(&format!("cluster_known_nodes:{}", cluster.nodes().len())),
            "{info}"
        );
    }
}

#[test]
fn three_masters_serve_every_slot_and_a_key_on_its_owner() {
    let cluster = RedisCluster::start(3);
    assert_eq!(cluster.urls().len(), 3);
    for (url, node) in cluster.urls().iter().zip(cluster.nodes()) {
        assert_eq!(url, &format!("redis://127.0.0.1:{}", node.port()));
    }
    assert_all_slots_ok(&cluster);

    let owner = owner_of(&cluster, "{a}x");
    let node = &cluster.nodes()[owner];
    assert_eq!(
        node.command(&["SET", "{a}x", "1"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        node.command(&["GET", "{a}x"]),
        Reply::Bulk(Some(b"1".to_vec()))
    );
    let other = &cluster.nodes()[(owner + 1) % 3];
    let moved = other.command(&["GET", "{a}x"]);
    assert!(
        matches!(&moved, Reply::Error(e) if e.starts_with("MOVED")),
        "{moved:?}"
    );
}

#[test]
fn a_single_master_cluster_owns_every_slot() {
    let cluster = RedisCluster::start(1);
    assert_all_slots_ok(&cluster);
    let node = &cluster.nodes()[0];
    assert_eq!(
        node.command(&["SET", "{a}x", "1"]),
        Reply::Simple("OK".into())
    );
}
