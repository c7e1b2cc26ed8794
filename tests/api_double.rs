//! The Kubernetes API double's own fidelity checks (tests/support/test_kube_api_double.py):
//! discovery shapes, server-side apply semantics, limits and Status errors as a real
//! kube-apiserver has them (../shared/reference/kube-api-facts.md).

mod common;

#[test]
fn the_api_double_behaves_like_a_real_api_server() {
    let out = std::process::Command::new(common::aws::venv_python())
        .args([
            "-m",
            "unittest",
            "-v",
            "tests/support/test_kube_api_double.py",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Ran 7 tests"), "{log}");
}
