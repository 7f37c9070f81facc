use proptest::prelude::*;

use super::*;

const MIN: i64 = 60_000;

fn host(text: &str) -> IpNet {
    IpNet::from(text.parse::<IpAddr>().expect("address"))
}

fn tracker(maxretry: u32) -> Tracker {
    Tracker::new(Rules {
        maxretry,
        findtime: Duration::from_secs(600),
        ..Rules::default()
    })
}

#[test]
fn the_maxretry_th_failure_in_the_window_bans() {
    let mut t = tracker(3);
    let a = host("192.0.2.7");
    assert_eq!(t.record(a, 0, 0), Counted::Counted);
    assert_eq!(t.record(a, MIN, MIN), Counted::Counted);
    assert_eq!(
        t.record(a, 2 * MIN, 2 * MIN),
        Counted::Ban(Decision {
            target: a,
            failures: 3
        })
    );
    // Banned: its failures are forgotten, counting starts again.
    assert_eq!(t.record(a, 3 * MIN, 3 * MIN), Counted::Counted);
    assert_eq!(t.currently_failing(3 * MIN), 1);
}

#[test]
fn failures_older_than_findtime_slide_out() {
    let mut t = tracker(3);
    let a = host("2001:db8::7");
    t.record(a, 0, 0);
    t.record(a, 5 * MIN, 5 * MIN);
    // The first failure is 11 minutes old: only two remain in the 10-minute window.
    assert_eq!(t.record(a, 11 * MIN, 11 * MIN), Counted::Counted);
    assert!(matches!(t.record(a, 12 * MIN, 12 * MIN), Counted::Ban(_)));
}

#[test]
fn replaying_an_old_log_bans_no_one() {
    let mut t = tracker(2);
    let now = 1_000 * MIN;
    let a = host("192.0.2.7");
    for i in 0..100 {
        assert_eq!(t.record(a, i * 1000, now), Counted::Stale);
    }
    assert_eq!(t.total_failed(), 100);
    assert_eq!(t.currently_failing(now), 0);
}

#[test]
fn prefixes_aggregate_addresses() {
    let mut t = Tracker::new(Rules {
        maxretry: 2,
        prefix_v4: 24,
        prefix_v6: 64,
        ..Rules::default()
    });
    assert_eq!(t.record(host("198.51.100.1"), 0, 0), Counted::Counted);
    assert_eq!(
        t.record(host("198.51.100.200"), 1, 1),
        Counted::Ban(Decision {
            target: "198.51.100.0/24".parse().expect("CIDR"),
            failures: 2
        })
    );
    t.record(host("2001:db8:1:2::1"), 0, 0);
    assert!(matches!(
        t.record(host("2001:db8:1:2:ffff::9"), 1, 1),
        Counted::Ban(Decision { target, .. }) if target.to_string() == "2001:db8:1:2::/64"
    ));
}

#[test]
fn the_cap_evicts_the_least_recently_failed() {
    let mut t = Tracker::new(Rules {
        maxretry: 3,
        max_tracked: 2,
        ..Rules::default()
    });
    let (a, b, c) = (host("192.0.2.1"), host("192.0.2.2"), host("192.0.2.3"));
    t.record(a, 0, 0);
    t.record(b, 1, 1);
    t.record(b, 2, 2); // b failed more recently than a
    t.record(c, 3, 3); // the cap is reached: a, the least recently failed, goes
    assert_eq!((t.tracked(), t.evicted()), (2, 1));
    // b kept its two failures: a third bans it.
    assert!(matches!(t.record(b, 4, 4), Counted::Ban(_)));
    // a starts from nothing: two more failures are not yet three.
    t.record(a, 5, 5);
    assert_eq!(t.record(a, 6, 6), Counted::Counted);
}

#[test]
fn bantime_increment_follows_fail2ban() {
    let base = BanTime::For(Duration::from_secs(600));
    let inc = Increment {
        factor: 1.0,
        maxtime: Duration::from_secs(86_400),
        overall_jails: false,
    };
    assert_eq!(
        base.after(0, Some(&inc)),
        BanTime::For(Duration::from_secs(600))
    );
    assert_eq!(
        base.after(3, Some(&inc)),
        BanTime::For(Duration::from_secs(4800))
    );
    assert_eq!(
        base.after(30, Some(&inc)),
        BanTime::For(Duration::from_secs(86_400))
    );
    assert_eq!(base.after(3, None), base);
    assert_eq!(BanTime::Permanent.after(5, Some(&inc)), BanTime::Permanent);
}

proptest! {
    /// However many distinct addresses fail, the tracker follows at most its cap.
    #[test]
    fn memory_stays_under_the_cap(addrs in prop::collection::vec(any::<u128>(), 1..2000), cap in 1usize..64) {
        let mut t = Tracker::new(Rules { maxretry: 3, max_tracked: cap, ..Rules::default() });
        for (i, raw) in addrs.iter().enumerate() {
            let addr = IpNet::from(IpAddr::V6(std::net::Ipv6Addr::from(*raw)));
            t.record(addr, i as i64, i as i64);
            prop_assert!(t.tracked() <= cap);
        }
    }

    /// A ban happens exactly when maxretry failures fall inside one window.
    #[test]
    fn bans_exactly_at_maxretry(gaps in prop::collection::vec(0i64..400_000, 1..30), maxretry in 1u32..6) {
        let mut t = tracker(maxretry);
        let a = host("192.0.2.7");
        let mut now = 0;
        let mut window: Vec<i64> = Vec::new();
        for gap in gaps {
            now += gap;
            window.push(now);
            window.retain(|&x| x > now - 600_000);
            let banned = matches!(t.record(a, now, now), Counted::Ban(_));
            prop_assert_eq!(banned, window.len() >= maxretry as usize);
            if banned {
                window.clear();
            }
        }
    }
}

#[test]
fn new_rules_keep_failures_unless_the_prefixes_change() {
    let addr: IpNet = "192.0.2.7/32".parse().expect("net");
    let mut tracker = Tracker::new(Rules::default());
    for t in 0..2 {
        assert_eq!(tracker.record(addr, t, 10), Counted::Counted);
    }
    assert!(tracker.set_rules(Rules {
        maxretry: 3,
        ..Rules::default()
    }));
    assert!(matches!(tracker.record(addr, 2, 10), Counted::Ban(_)));
    assert_eq!(tracker.record(addr, 3, 10), Counted::Counted);
    assert!(!tracker.set_rules(Rules {
        prefix_v4: 24,
        ..Rules::default()
    }));
    assert_eq!(tracker.tracked(), 0);
}

// The sanity cap: without the `recent.len() < per_minute` check in `BanRate::admit`, every
// ban is admitted and the first assertion below fails.
#[test]
fn bans_past_the_cap_in_any_minute_are_held_back_with_one_alert_a_minute() {
    let mut rate = BanRate::new(3);
    let admitted: Vec<Admit> = [0, 0, 0, 1000, 2000]
        .into_iter()
        .map(|at| rate.admit(at))
        .collect();
    assert_eq!(
        admitted,
        [
            Admit::Yes,
            Admit::Yes,
            Admit::Yes,
            Admit::HeldBack { alert: true },
            Admit::HeldBack { alert: false },
        ]
    );
    assert_eq!(rate.held_back(), 2);
    // A minute after the first bans, their slots are free again.
    assert_eq!(
        [MIN, MIN + 1, MIN + 2, MIN + 3].map(|at| rate.admit(at)),
        [
            Admit::Yes,
            Admit::Yes,
            Admit::Yes,
            Admit::HeldBack { alert: false }
        ]
    );
    // The next alert comes a minute after the last one.
    assert_eq!(rate.admit(MIN + 1000), Admit::HeldBack { alert: true });
    let mut none = BanRate::new(0);
    assert!(
        (0..10_000).all(|at| none.admit(at) == Admit::Yes),
        "0: no cap"
    );
}

// Floods: a million distinct attackers, IPv4 and IPv6 across /64s, cannot make the tracker
// follow more than `max_tracked` addresses (the memory cap); without the LRU eviction in
// `Tracker::record`, `tracked()` reaches a million.
#[test]
fn a_million_distinct_addresses_stay_within_the_memory_cap() {
    const CAP: usize = 10_000;
    const FLOOD: u32 = 1_000_000;
    let rules = Rules {
        maxretry: 5,
        max_tracked: CAP,
        prefix_v6: 64,
        ..Rules::default()
    };
    let v4 = (0..FLOOD).map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
    // Every address in a /64 of its own: 2001:db8:XXXX:XXXX::1.
    let v6 = (0..FLOOD).map(|i| {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        bytes[4..8].copy_from_slice(&i.to_be_bytes());
        bytes[15] = 1;
        IpAddr::from(bytes)
    });
    for (family, flood) in [
        ("IPv4", Box::new(v4) as Box<dyn Iterator<Item = IpAddr>>),
        ("IPv6 across /64s", Box::new(v6)),
    ] {
        let mut t = Tracker::new(rules.clone());
        for (i, addr) in flood.enumerate() {
            let at = i as i64 / 1000;
            assert_eq!(t.record(IpNet::from(addr), at, at), Counted::Counted);
        }
        assert_eq!(t.tracked(), CAP, "{family}");
        assert_eq!(t.evicted(), u64::from(FLOOD) - CAP as u64, "{family}");
    }
}

// Floods: rotating addresses within one /64 does not escape a ban with ban_prefix_v6 = 64:
// the failures of the whole /64 add up. Without `aggregate` in `Tracker::record`, each
// address counts alone and none reaches maxretry.
#[test]
fn rotation_within_a_64_is_counted_and_banned_as_the_64() {
    let mut t = Tracker::new(Rules {
        maxretry: 5,
        prefix_v6: 64,
        ..Rules::default()
    });
    let decisions: Vec<Counted> = (1..=5u16)
        .map(|i| {
            let addr = IpAddr::from([0x2001, 0xdb8, 7, 7, i, i, i, i]);
            t.record(IpNet::from(addr), 0, 0)
        })
        .collect();
    assert_eq!(
        decisions.last(),
        Some(&Counted::Ban(Decision {
            target: "2001:db8:7:7::/64".parse().expect("net"),
            failures: 5
        }))
    );
    assert_eq!(t.tracked(), 0, "the banned /64 is forgotten");
}

// A huge maxretry (the configuration allows up to 2^32 - 1) does not reserve room for that
// many failures per address: without the `min(8)` in `Tracker::record`, this aborts on
// a 32 GiB allocation.
#[test]
fn a_huge_maxretry_reserves_no_huge_memory() {
    let mut t = Tracker::new(Rules {
        maxretry: u32::MAX,
        ..Rules::default()
    });
    for i in 0..1000u32 {
        let addr = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        assert_eq!(t.record(IpNet::from(addr), 0, 0), Counted::Counted);
    }
    assert_eq!(t.tracked(), 1000);
}

/// What `changes` gives is what the state must hold after applying it in order (a later
/// entry for a target replaces an earlier one), and saving clears it.
#[test]
fn changes_say_what_to_save_and_saving_clears_them() {
    fn last_word(t: &Tracker) -> std::collections::BTreeMap<IpNet, Vec<UnixMs>> {
        t.changes().collect()
    }
    let mut t = Tracker::new(Rules {
        maxretry: 3,
        findtime: Duration::from_secs(600),
        max_tracked: 2,
        ..Rules::default()
    });
    let (a, b, c) = (host("192.0.2.1"), host("192.0.2.2"), host("192.0.2.3"));
    t.record(a, 0, 0);
    t.record(b, 1, 1);
    assert_eq!(last_word(&t), [(a, vec![0]), (b, vec![1])].into());
    t.saved();
    assert!(!t.has_changes());
    assert!(last_word(&t).is_empty());
    // A second failure changes a; c pushes b out (the cap is 2): b is forgotten.
    t.record(a, 2, 2);
    t.record(c, 3, 3);
    assert_eq!(
        last_word(&t),
        [(a, vec![0, 2]), (b, vec![]), (c, vec![3])].into()
    );
    t.saved();
    // Forgotten, then failing again: the failure is the last word.
    t.forget(&c);
    t.record(c, 4, 4);
    assert_eq!(last_word(&t), [(c, vec![4])].into());
    // A ban forgets its target too.
    t.saved();
    t.record(c, 5, 5);
    t.record(c, 6, 6);
    assert_eq!(last_word(&t), [(c, vec![])].into());
    // Restored windows are what the state holds already: no change.
    t.saved();
    t.restore(b, &[7], 7);
    assert!(!t.has_changes(), "{:?}", last_word(&t));
}
