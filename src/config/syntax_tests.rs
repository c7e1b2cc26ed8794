//! Unit tests of the config grammar.

use super::*;

#[test]
fn taints_use_the_full_grammar() {
    assert!("domain=data:NoSchedule".parse::<Taint>().is_ok());
    assert!("dedicated:NoExecute".parse::<Taint>().is_ok());
    assert!("example.com/x=y:PreferNoSchedule".parse::<Taint>().is_ok());
    assert!("domain=data".parse::<Taint>().is_err());
    assert!("domain=data:Never".parse::<Taint>().is_err());
    assert!("=x:NoSchedule".parse::<Taint>().is_err());
    assert!(
        "a\nECOBOOT_EOF\ntouch /x/b=c:NoSchedule"
            .parse::<Taint>()
            .is_err()
    );
    assert!("Bad_Prefix/b=c:NoSchedule".parse::<Taint>().is_err());
    let t: Taint = "example.com/x=y:NoExecute".parse().unwrap();
    assert_eq!(t.to_string(), "example.com/x=y:NoExecute");
}

#[test]
fn hosts_users_regions_versions() {
    assert!(host_port("127.0.1.3:2222").is_ok());
    assert!(host_port("127.0.1.3:0").is_err());
    assert!(host_port("-V").is_err());
    assert!(host_port("a b").is_err());
    assert!(jump_host("ops@bastion.example.com:22").is_ok());
    assert!(jump_host("-oProxyCommand=x").is_err());
    assert!(posix_user("ubuntu").is_ok());
    assert!(posix_user("ubuntu\nx").is_err());
    assert!(region("ap-northeast-2").is_ok());
    assert!(region("us-gov-west-1").is_ok());
    assert!(region("ap-northeast-2;id").is_err());
    assert!(zone("ap-northeast-2a", "ap-northeast-2").is_ok());
    assert!(zone("us-west-2-lax-1a", "us-west-2").is_ok());
    assert!(zone("eu-west-1a", "ap-northeast-2").is_err());
    assert!(kubernetes_version("1.34").is_ok());
    assert!(kubernetes_version("v1.34.2").is_ok());
    assert!(kubernetes_version("vvv+1.+34").is_err());
    assert!(kubernetes_version("1.34.1-rc.0").is_err());
}

#[test]
fn tags_urls_paths() {
    assert!(aws_tag("Project", "SeSACTHON").is_ok());
    assert!(aws_tag("aws:cloudformation", "x").is_err());
    assert!(aws_tag("AWS:x", "x").is_err());
    assert!(aws_tag("Team", "a;b").is_err());
    assert!(git_url("https://github.com/SeSACTHON/backend").is_ok());
    assert!(git_url("https://x\"y").is_err());
    assert!(repo_path("argocd/components").is_ok());
    assert!(repo_path("../etc").is_err());
    assert!(repo_path("-rf").is_err());
    assert_eq!(clip("a\nb"), "a\\nb");
    assert!(clip(&"x".repeat(100)).ends_with("(100 characters)"));
}
