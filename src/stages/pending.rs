//! Stages declared in the pipeline but not built yet. Their plan lists what the stage will
//! do from the config alone (nothing is probed), and their apply fails honestly.

use async_trait::async_trait;

use crate::config::Config;
use crate::engine::{Ctx, Probe, Stage};
use crate::error::{Error, Result};
use crate::event::Action;

/// A declared, unimplemented stage.
pub struct Pending {
    id: &'static str,
    title: &'static str,
    describe: fn(&Config) -> Vec<Action>,
}

impl Pending {
    /// Declares a stage whose intended actions `describe` lists.
    pub fn new(
        id: &'static str,
        title: &'static str,
        describe: fn(&Config) -> Vec<Action>,
    ) -> Self {
        Pending {
            id,
            title,
            describe,
        }
    }
}

#[async_trait]
impl Stage for Pending {
    fn id(&self) -> &'static str {
        self.id
    }

    fn title(&self) -> &'static str {
        self.title
    }

    async fn probe(&self, cx: &Ctx) -> Result<Probe> {
        let mut actions = (self.describe)(&cx.config);
        for a in &mut actions {
            a.what.push_str(" (not probed: stage not implemented yet)");
        }
        Ok(Probe::Todo(actions))
    }

    async fn apply(&self, _: &Ctx, _: &[Action]) -> Result<()> {
        Err(Error::NotImplemented { stage: self.id })
    }
}

/// ArgoCD.
pub fn argocd(c: &Config) -> Vec<Action> {
    let a = &c.cluster.spec.argocd;
    vec![Action::new(
        format!("namespace/{}", a.namespace),
        format!("apply ArgoCD {}", a.install.version),
    )]
}

/// Root application.
pub fn root_app(c: &Config) -> Vec<Action> {
    vec![Action::new(
        "root-app",
        format!("apply {}", c.cluster.spec.argocd.root_app.name),
    )]
}
