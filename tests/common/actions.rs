//! A small GitHub Actions job runner for tests: runs one job of a workflow file step by step,
//! as a hosted runner would: `${{ }}` expressions (the subset our workflows use), `if:`,
//! `env:` at job and step level, `run:` through `bash --noprofile --norc -eo pipefail`, and
//! `GITHUB_OUTPUT` / `GITHUB_ENV` / `GITHUB_STEP_SUMMARY` files. `uses:` steps are handed to
//! the caller, which does their local equivalent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What a dispatch hands the expressions.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `inputs.*`.
    pub inputs: BTreeMap<String, Value>,
    /// `vars.*`.
    pub vars: BTreeMap<String, String>,
    /// `secrets.*`.
    pub secrets: BTreeMap<String, String>,
    /// `github.*`.
    pub github: BTreeMap<String, String>,
    /// `needs.<job>.outputs.*`.
    pub needs: BTreeMap<String, BTreeMap<String, String>>,
    /// `env.*` (job env, then what steps added through GITHUB_ENV).
    pub env: BTreeMap<String, String>,
    /// `steps.<id>.outputs.*` and `steps.<id>.outcome`.
    pub steps: BTreeMap<String, (BTreeMap<String, String>, String)>,
    /// Whether a step failed so far.
    pub failed: bool,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Context {
    fn lookup(&self, path: &str) -> Value {
        let parts: Vec<&str> = path.split('.').collect();
        let s = |o: Option<&String>| o.map_or(Value::Null, |v| Value::String(v.clone()));
        match parts.as_slice() {
            ["inputs", k] => self.inputs.get(*k).cloned().unwrap_or(Value::Null),
            ["vars", k] => s(self.vars.get(*k)),
            ["secrets", k] => s(self.secrets.get(*k)),
            ["github", k] => s(self.github.get(*k)),
            ["env", k] => s(self.env.get(*k)),
            ["needs", job, "outputs", k] => s(self.needs.get(*job).and_then(|o| o.get(*k))),
            ["steps", id, "outputs", k] => s(self.steps.get(*id).and_then(|o| o.0.get(*k))),
            ["steps", id, "outcome"] => s(self.steps.get(*id).map(|o| &o.1)),
            _ => panic!("expression `{path}` is not modelled by the test runner"),
        }
    }

    /// Evaluates one expression (the inside of `${{ }}` or an `if:`).
    pub fn eval(&self, expr: &str) -> Value {
        let tokens = tokenize(expr);
        let mut p = Parser {
            t: &tokens,
            i: 0,
            cx: self,
        };
        let v = p.or();
        assert_eq!(p.i, tokens.len(), "unparsed rest of `{expr}`");
        v
    }

    /// `s` with every `${{ expr }}` replaced by its value.
    pub fn render(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("closed expression") + start;
            out.push_str(&text(&self.eval(&rest[start + 3..end])));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Whether a step with `if:` (or none) runs now.
    pub fn runs(&self, condition: Option<&Value>) -> bool {
        let Some(c) = condition else {
            return !self.failed;
        };
        let c = text(c);
        let c = c.trim().trim_start_matches("${{").trim_end_matches("}}");
        let always = c.contains("always()");
        (always || !self.failed) && truthy(&self.eval(c))
    }
}

fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            ' ' | '\n' => i += 1,
            '\'' => {
                let end = (i + 1..c.len())
                    .find(|&j| c[j] == '\'')
                    .expect("closed string");
                out.push(c[i..=end].iter().collect());
                i = end + 1;
            }
            '(' | ')' => {
                out.push(c[i].to_string());
                i += 1;
            }
            '|' | '&' | '=' | '!' => {
                let two: String = c[i..(i + 2).min(c.len())].iter().collect();
                assert!(
                    ["||", "&&", "==", "!="].contains(&two.as_str()),
                    "operator at `{s}`"
                );
                out.push(two);
                i += 2;
            }
            _ => {
                let end = (i..c.len())
                    .find(|&j| !(c[j].is_alphanumeric() || "._-".contains(c[j])))
                    .unwrap_or(c.len());
                out.push(c[i..end].iter().collect());
                i = end;
            }
        }
    }
    out
}

struct Parser<'a> {
    t: &'a [String],
    i: usize,
    cx: &'a Context,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.t.get(self.i).map(String::as_str)
    }
    fn or(&mut self) -> Value {
        let mut v = self.and();
        while self.peek() == Some("||") {
            self.i += 1;
            let r = self.and();
            if !truthy(&v) {
                v = r;
            }
        }
        v
    }
    fn and(&mut self) -> Value {
        let mut v = self.cmp();
        while self.peek() == Some("&&") {
            self.i += 1;
            let r = self.cmp();
            v = if truthy(&v) { r } else { v };
        }
        v
    }
    fn cmp(&mut self) -> Value {
        let l = self.atom();
        match self.peek() {
            Some(op @ ("==" | "!=")) => {
                let eq = op == "==";
                self.i += 1;
                let r = self.atom();
                Value::Bool((text(&l) == text(&r)) == eq)
            }
            _ => l,
        }
    }
    fn atom(&mut self) -> Value {
        let tok = self.t[self.i].clone();
        self.i += 1;
        if tok == "(" {
            let v = self.or();
            assert_eq!(self.peek(), Some(")"));
            self.i += 1;
            return v;
        }
        if let Some(lit) = tok.strip_prefix('\'') {
            return Value::String(lit.trim_end_matches('\'').to_string());
        }
        match tok.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "always" | "success" | "failure" => {
                assert_eq!(
                    self.t[self.i..self.i + 2],
                    ["(".to_string(), ")".to_string()]
                );
                self.i += 2;
                Value::Bool(match tok.as_str() {
                    "always" => true,
                    "success" => !self.cx.failed,
                    _ => self.cx.failed,
                })
            }
            path => self.cx.lookup(path),
        }
    }
}

/// What a `run:` step did.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// Exit code.
    pub code: i32,
    /// stdout + stderr.
    pub output: String,
}

/// Runs `script` as GitHub does (`bash --noprofile --norc -eo pipefail`), in `workspace`, with
/// `env` and the runner files; reads back GITHUB_OUTPUT and GITHUB_ENV.
pub fn run_script(
    script: &str,
    workspace: &Path,
    env: &BTreeMap<String, String>,
    files: &Path,
) -> (StepRun, BTreeMap<String, String>, BTreeMap<String, String>) {
    let out_file = files.join("output");
    let env_file = files.join("env");
    for f in [&out_file, &env_file] {
        std::fs::write(f, "").unwrap();
    }
    let script_file: PathBuf = files.join("step.sh");
    std::fs::write(&script_file, script).unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script_file)
        .current_dir(workspace)
        .env_clear()
        .envs(env)
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_ENV", &env_file)
        .env("GITHUB_STEP_SUMMARY", files.join("summary.md"))
        .output()
        .unwrap();
    let kv = |p: &Path| -> BTreeMap<String, String> {
        (std::fs::read_to_string(p).unwrap().lines())
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let run = StepRun {
        code: out.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    (run, kv(&out_file), kv(&env_file))
}

/// A `uses:` step as the caller sees it: the action (without the pin) and its rendered `with:`.
#[derive(Debug, Clone)]
pub struct Uses {
    /// e.g. `actions/checkout`.
    pub action: String,
    /// The rendered `with:` inputs.
    pub with: BTreeMap<String, String>,
}

/// Environment entries.
pub type Env = BTreeMap<String, String>;

/// What does a `uses:` step's local equivalent: env entries to add, or why it failed.
pub type Action<'a> = dyn FnMut(&Uses, &Context) -> Result<Env, String> + 'a;

/// One step's record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its name (or the action).
    pub name: String,
    /// `skipped`, `success` or `failure`.
    pub outcome: String,
    /// What it printed (`run:` steps).
    pub output: String,
}

/// Runs job `job` of `workflow` with `cx`; `uses` does each action's local equivalent and
/// returns env entries to add (as GITHUB_ENV) or an error. `base` is the runner's own
/// environment (PATH, HOME, ...).
pub fn run_job(
    workflow: &Value,
    job: &str,
    cx: &mut Context,
    workspace: &Path,
    base: &BTreeMap<String, String>,
    uses: &mut Action<'_>,
) -> Vec<Record> {
    let job = &workflow["jobs"][job];
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("summary.md"), "").unwrap();
    let mut job_env = BTreeMap::new();
    for (k, v) in job["env"].as_object().cloned().unwrap_or_default() {
        job_env.insert(k.clone(), cx.render(&text(&v)));
    }
    cx.env.extend(job_env);
    let mut records = Vec::new();
    for step in job["steps"].as_array().unwrap() {
        let name = text(&step["name"]).to_string();
        let name = if name.is_empty() {
            text(&step["uses"])
        } else {
            cx.render(&name)
        };
        let id = text(&step["id"]);
        if !cx.runs(step.get("if")) {
            records.push(Record {
                name,
                outcome: "skipped".into(),
                output: String::new(),
            });
            continue;
        }
        let (outcome, output, outputs) = if let Some(u) = step["uses"].as_str() {
            let with = (step["with"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter())
            .map(|(k, v)| (k, cx.render(&text(&v))))
            .collect();
            let action = u.split('@').next().unwrap().to_string();
            match uses(&Uses { action, with }, cx) {
                Ok(env) => {
                    cx.env.extend(env);
                    ("success", String::new(), BTreeMap::new())
                }
                Err(e) => ("failure", e, BTreeMap::new()),
            }
        } else {
            let mut env = base.clone();
            env.extend(cx.env.clone());
            for (k, v) in step["env"].as_object().cloned().unwrap_or_default() {
                env.insert(k, cx.render(&text(&v)));
            }
            env.insert("GITHUB_ACTIONS".into(), "true".into());
            env.insert("GITHUB_WORKSPACE".into(), workspace.display().to_string());
            let script = cx.render(step["run"].as_str().expect("run or uses"));
            let (run, outputs, added) = run_script(&script, workspace, &env, files.path());
            cx.env.extend(added);
            let outcome = if run.code == 0 { "success" } else { "failure" };
            (outcome, run.output, outputs)
        };
        if outcome == "failure" {
            cx.failed = true;
        }
        if !id.is_empty() {
            cx.steps.insert(id, (outputs, outcome.to_string()));
        }
        records.push(Record {
            name,
            outcome: outcome.into(),
            output,
        });
    }
    let summary = std::fs::read_to_string(files.path().join("summary.md")).unwrap_or_default();
    records.push(Record {
        name: "(step summary)".into(),
        outcome: "summary".into(),
        output: summary,
    });
    records
}
