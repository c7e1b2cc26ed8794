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
                FoundSubnet {
                    id: format!("subnet-{i}"),
                    az: s.az.value.clone(),
                    public_ip_on_launch: true,
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let associated = subnets.values().map(|s| s.id.clone()).collect();
    let full = Existing {
        vpc: Some("vpc-1".into()),
        dns_hostnames: true,
        dns_support: true,
        subnets,
        igw: Some(FoundGateway {
            id: "igw-1".into(),
            attached_vpc: Some("vpc-1".into()),
        }),
        route_table: Some(FoundRouteTable {
            id: "rtb-1".into(),
            default_route: true,
            associated,
        }),
        sg: Some(FoundGroup {
            id: sg.clone(),
            rules: wanted_rules(&config, &sg),
        }),
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
    one_rule_short.sg = Some(FoundGroup { id: sg, rules });
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
    one_rule_extra.sg = Some(FoundGroup {
        id: "sg-1".into(),
        rules,
    });
    assert_eq!(
        plan(&config, &one_rule_extra)[0].what,
        "revoke ingress tcp 22-22 from 0.0.0.0/0"
    );
}

#[test]
fn a_resource_missing_kubernetes_tags_plans_one_tagging() {
    let config = crate::config::tests_support::config();
    let f = Existing {
        vpc: Some("vpc-1".into()),
        untagged: vec![Untagged {
            id: "subnet-1".into(),
            missing: vec![("kubernetes.io/role/elb".into(), "1".into())],
        }],
        ..Existing::default()
    };
    let actions = plan(&config, &f);
    let tagging: Vec<_> = actions.iter().filter(|a| a.target == "subnet-1").collect();
    assert_eq!(tagging.len(), 1, "{actions:?}");
    assert_eq!(tagging[0].what, "add tags kubernetes.io/role/elb=1");
}

#[test]
fn kubernetes_tags_by_kind() {
    use aws_sdk_ec2::types::{ResourceType, Tag};
    let tags = crate::aws::Tags::for_cluster(&crate::config::tests_support::config());
    let owned = (
        "kubernetes.io/cluster/sesacthon".to_string(),
        "owned".to_string(),
    );
    assert_eq!(tags.kubernetes(&ResourceType::Vpc), vec![owned.clone()]);
    assert_eq!(
        tags.kubernetes(&ResourceType::Subnet),
        vec![owned.clone(), ("kubernetes.io/role/elb".into(), "1".into())]
    );
    assert!(tags.kubernetes(&ResourceType::RouteTable).is_empty());
    let have = [Tag::builder().key(&owned.0).value("shared").build()];
    assert_eq!(
        tags.kubernetes_missing(&ResourceType::SecurityGroup, &have),
        vec![owned],
        "another value is not the right tag"
    );
}
