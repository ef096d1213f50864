//! The run's stages before its load: the gateway's health and the backends' model lists, each
//! judged as a [`Stage`] (`preflight.json`, and a case in every report).

use crate::drive::{self, ResolvedModel};
use crate::plan::Plan;
use crate::report::{Stage, StageStatus};
use crate::twin::StackUrls;

/// The gateway's health check as a stage: 2xx passes, 5xx fails, anything else (a target that
/// is not an AIGW, such as a bare backend) is noted and skipped.
fn health_stage(base_url: &str, status: u16) -> Stage {
    let detail = format!("GET {base_url}/monitoring/healthz answered {status}");
    let status = match status {
        200..=299 => StageStatus::Passed,
        500..=599 => StageStatus::Failed(detail.clone()),
        _ => StageStatus::Skipped(format!("{detail}: not an AI Gateway health endpoint")),
    };
    Stage {
        name: "health".into(),
        status,
        detail,
    }
}

/// The Duo Workflow Service the sessions go to: its health must be `SERVING`; what
/// `ListTools`, `ListFlows` and `GenerateToken` answered is noted.
pub(super) async fn dws_stage(dws: Option<&drive::session::DwsTarget>) -> Option<Stage> {
    let dws = dws?;
    let p = drive::dws_probe::probe(dws).await;
    let shown = |r: &Result<String, String>| match r {
        Ok(v) => v.clone(),
        Err(e) => format!("error {e}"),
    };
    let flows = p
        .flows
        .as_ref()
        .map(|f| format!("{} flows ({})", f.len(), f.join(", ")))
        .map_err(Clone::clone);
    let detail = format!(
        "{}: health {}; ListTools {}; ListFlows {}; GenerateToken {}",
        dws.url,
        shown(&p.health),
        shown(
            &p.tools
                .as_ref()
                .map(|n| format!("{n} tools"))
                .map_err(Clone::clone)
        ),
        shown(&flows),
        shown(
            &p.token
                .as_ref()
                .map(|e| format!("a token until {e}"))
                .map_err(Clone::clone)
        ),
    );
    let status = match &p.health {
        Ok(s) if s == "SERVING" => StageStatus::Passed,
        Ok(s) => StageStatus::Failed(format!("{}: health {s}", dws.url)),
        Err(e) => StageStatus::Failed(format!("{}: health check: {e}", dws.url)),
    };
    Some(Stage {
        name: "dws".into(),
        status,
        detail,
    })
}

/// Each backend the model settings name lists the model they name (`GET <endpoint>/models`).
/// Asked of the backend itself, never through a tap (the call is no request of the run's).
pub(super) async fn models_stage(
    client: &reqwest::Client,
    plan: &Plan,
    urls: Option<&StackUrls>,
    models: &[(String, ResolvedModel)],
) -> Option<Stage> {
    if models.is_empty() {
        return None;
    }
    let (mut missing, mut unlisted, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    let mut lists: std::collections::BTreeMap<String, Result<Vec<String>, drive::DriveError>> =
        Default::default();
    for (feature, m) in models.iter().filter(|(f, _)| plan.models.contains_key(f)) {
        let base = match m.setting.endpoint.strip_prefix("twin:") {
            Some(name) => match urls.and_then(|u| u.backends.get(name)) {
                Some(b) => b.openai_base.clone(),
                None => continue,
            },
            None => m.setting.endpoint.clone(),
        };
        if !lists.contains_key(&base) {
            let listed = drive::list_models(client, &base, m.api_key.as_deref()).await;
            lists.insert(base.clone(), listed);
        }
        let id = m
            .setting
            .identifier
            .split_once('/')
            .map_or(m.setting.identifier.as_str(), |(_, id)| id);
        match &lists[&base] {
            Ok(ids) if ids.iter().any(|i| i == id) => {
                seen.push(format!("{feature}: {id} at {base}"))
            }
            Ok(ids) => missing.push(format!(
                "{feature}: {base}/models lists [{}], not '{id}' (models.{feature}.identifier)",
                ids.join(", ")
            )),
            Err(e) => unlisted.push(format!("{feature}: {e}")),
        }
    }
    let detail = seen.join("\n");
    // A backend that cannot say what it serves (refused, timed out, answered an error) serves
    // nothing the run can vouch for: that fails the stage as surely as a missing identifier.
    let failed: Vec<String> = missing.into_iter().chain(unlisted).collect();
    let status = match failed.is_empty() {
        false => StageStatus::Failed(failed.join("; ")),
        true => StageStatus::Passed,
    };
    Some(Stage {
        name: "models".into(),
        status,
        detail,
    })
}

/// The baseline the gate will judge against, asked before the load: it must be there (a
/// missing baseline is never a pass, unless this run is the first and will become it) and be
/// comparable with this run (same corpus content, features, arrival process and rate), so a
/// refusal costs seconds, not the whole load. `None`: no gate, or a first or calibration run.
pub(super) fn baseline_stage(plan: &Plan) -> Option<Stage> {
    let baseline = plan.gate.baseline.as_ref()?;
    if plan.overrides.first_run || plan.overrides.calibrate {
        return None;
    }
    let at = baseline.display();
    let stage = |status, detail: String| Stage {
        name: "baseline".into(),
        status,
        detail,
    };
    if !crate::compare::baseline::holds(baseline) {
        let why = format!(
            "no baseline run at {at}: a missing baseline is not a pass. On the first run against \
             this stack say so (`run --first-run` stores a passing run there), or store one with \
             `duo-harness baseline save RUN_DIR --to {at}`"
        );
        return Some(stage(StageStatus::Failed(why), String::new()));
    }
    let folder = match crate::results::RunFolder::open(baseline) {
        Ok(f) => f,
        Err(e) => {
            return Some(stage(
                StageStatus::Failed(format!("{at}: {e}")),
                String::new(),
            ))
        }
    };
    let detail = format!("run {} at {at}", folder.plan.run_id);
    Some(match crate::compare::plan_refusal(&folder.plan, plan) {
        Some(why) => stage(
            StageStatus::Failed(format!(
                "cannot be compared with the baseline at {at}: {why}"
            )),
            detail,
        ),
        None => stage(StageStatus::Passed, detail),
    })
}

/// The preflight stages (health, models, DWS, baseline), unless a stop signal comes first:
/// then the stages done so far and `true`. The run then sends no load, and is judged
/// (interrupted) and reported like any other. A gateway that does not answer its health check
/// ends the run (exit 3).
pub(super) async fn preflight_or_a_stop(
    plan: &Plan,
    setup: &super::Setup,
) -> Result<(Vec<Stage>, bool), super::RunError> {
    let mut signals = crate::signals::stop_signals();
    let health = tokio::select! {
        h = drive::preflight(&setup.client, &setup.base_url) => h,
        () = signals.recv() => return Ok((Vec::new(), true)),
    };
    let health = health.map_err(|e| super::RunError::Unreachable {
        url: setup.base_url.clone(),
        reason: match e {
            drive::DriveError::Unanswered { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    let mut stages = vec![health_stage(&setup.base_url, health)];
    let rest = async {
        let models = models_stage(&setup.client, plan, setup.urls.as_ref(), &setup.models);
        let mut more: Vec<Stage> = models.await.into_iter().collect();
        more.extend(dws_stage(setup.dws.as_ref()).await);
        more.extend(baseline_stage(plan));
        more
    };
    tokio::select! {
        more = rest => {
            stages.extend(more);
            Ok((stages, false))
        }
        () = signals.recv() => Ok((stages, true)),
    }
}
