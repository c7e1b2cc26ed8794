//! Unit tests of the network stage's plan and output.

use super::*;

#[test]
fn fresh_account_plans_everything_and_complete_network_plans_nothing() {
    let config = crate::config::tests_support::config();
    let empty = Existing::default();
    let actions = plan(&config, &empty);
    assert_eq!(actions.len(), 1 + 3 + 1 + 1 + 1, "{actions:?}");
    let sg = "sg-1".to_string();
    let subnets = config
        .cluster
        .spec
        .aws
        .subnets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.name.value.clone(),
                (format!("subnet-{i}"), s.az.value.clone(), true),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let associated = subnets.values().map(|(id, _, _)| id.clone()).collect();
    let full = Existing {
        vpc: Some("vpc-1".into()),
        dns_hostnames: true,
        dns_support: true,
        subnets,
        igw: Some(("igw-1".into(), Some("vpc-1".into()))),
        route_table: Some(("rtb-1".into(), true, associated)),
        sg: Some((sg.clone(), wanted_rules(&config, &sg))),
        ..Existing::default()
    };
    assert!(plan(&config, &full).is_empty());
    let orphaned = Existing {
        orphan_vpcs: vec!["vpc-2".into()],
        ..full.clone()
    };
    assert_eq!(
        plan(&config, &orphaned)[0].what,
        "delete: an empty VPC left by an interrupted run"
    );
    assert_eq!(output(&config, &full).unwrap().subnets.len(), 3);
    let mut one_rule_short = full.clone();
    let mut rules = wanted_rules(&config, &sg);
    let first = rules.iter().next().unwrap().clone();
    rules.remove(&first);
    one_rule_short.sg = Some((sg, rules));
    assert_eq!(
        plan(&config, &one_rule_short)[0].what,
        "add 1 ingress rule(s)"
    );
    let mut one_rule_extra = full.clone();
    let mut rules = wanted_rules(&config, "sg-1");
    rules.insert(Rule {
        protocol: "tcp".into(),
        from: 22,
        to: 22,
        source: "0.0.0.0/0".into(),
    });
    one_rule_extra.sg = Some(("sg-1".into(), rules));
    assert_eq!(
        plan(&config, &one_rule_extra)[0].what,
        "revoke ingress tcp 22-22 from 0.0.0.0/0"
    );
}
