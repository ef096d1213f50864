//! The run's stages before its load: the gateway's health and the backends' model lists, each
//! judged as a [`Stage`] (`preflight.json`, and a case in every report).

use crate::drive;
use crate::plan::Plan;
use crate::report::{Stage, StageStatus};

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

/// One endpoint the replay will call, with what is asked of it and by whom.
#[derive(Default)]
struct Asked {
    models: std::collections::BTreeSet<String>,
    features: std::collections::BTreeSet<String>,
    api_key: Option<String>,
    /// The target itself (an OpenAI route of it), not a backend the gateway calls.
    direct: bool,
}

/// Every distinct model endpoint the replay will make the gateway call (or, on a direct target,
/// call itself), after the scenario's settings and the remap: the backend behind a tap, so the
/// question is no call of the run's.
fn endpoints_asked(setup: &super::Setup) -> std::collections::BTreeMap<String, Asked> {
    let direct_key = setup.auth.headers().iter().find_map(|(k, v)| {
        let bearer = v.strip_prefix("Bearer ");
        k.eq_ignore_ascii_case("authorization")
            .then_some(bearer)
            .flatten()
            .map(str::to_owned)
    });
    let mut out: std::collections::BTreeMap<String, Asked> = Default::default();
    for p in &setup.prepared {
        let Some(call) = p.model_call(&setup.base_url) else {
            continue;
        };
        let endpoint = match &setup.taps {
            Some(t) => t.unroute(&call.endpoint),
            None => call.endpoint,
        };
        let asked = out.entry(endpoint).or_default();
        asked.models.extend(call.model);
        asked.features.insert(p.interaction.feature.clone());
        let key = if call.direct {
            direct_key.clone()
        } else {
            call.api_key
        };
        asked.api_key = asked.api_key.take().or(key);
        asked.direct |= call.direct;
    }
    out
}

/// Why an endpoint cannot serve what it will be asked, if it cannot: the backend does not
/// answer `GET <endpoint>/models`, or does not list a model it will be asked for.
async fn endpoint_fault(client: &reqwest::Client, endpoint: &str, asked: &Asked) -> Option<String> {
    let listed = drive::list_models(client, endpoint, asked.api_key.as_deref()).await;
    let missing: Vec<&str> = match &listed {
        Ok(ids) => asked
            .models
            .iter()
            .filter(|m| !ids.contains(m))
            .map(String::as_str)
            .collect(),
        Err(_) => Vec::new(),
    };
    let why = match listed {
        // A direct target that cannot list its models is no proof of a wrong one: the answers'
        // own `model` still is (a routing finding). A gateway's backend must list them.
        Err(_) if asked.direct => return None,
        Err(e) => e.to_string(),
        Ok(_) if missing.is_empty() => return None,
        Ok(ids) => format!(
            "GET {endpoint}/models lists [{}], not {}",
            ids.join(", "),
            missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let features: Vec<&str> = asked.features.iter().map(String::as_str).collect();
    let hint = match reqwest::Url::parse(endpoint) {
        Ok(u) if !u.path().trim_end_matches('/').ends_with("/v1") => {
            " (hint: an OpenAI-compatible endpoint usually ends in /v1, as the stack's \
             `openai_base` does)"
        }
        _ => "",
    };
    Some(format!(
        "model endpoint {endpoint} (used by {}): {why}{hint}",
        features.join(", ")
    ))
}

/// Each model endpoint the replay will call lists every model it will be asked for
/// (`GET <endpoint>/models`). `None`: the replay names no endpoint (the gateway's defaults).
pub(super) async fn models_stage(client: &reqwest::Client, setup: &super::Setup) -> Option<Stage> {
    let asked = endpoints_asked(setup);
    if asked.is_empty() {
        return None;
    }
    let (mut faults, mut seen) = (Vec::new(), Vec::new());
    for (endpoint, a) in &asked {
        match endpoint_fault(client, endpoint, a).await {
            Some(f) => faults.push(f),
            None => seen.push(format!(
                "{endpoint}: [{}] for {}",
                a.models.iter().cloned().collect::<Vec<_>>().join(", "),
                a.features.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
    // A backend that cannot say what it serves (refused, timed out, answered an error) serves
    // nothing the run can vouch for: that fails the stage as surely as a missing model.
    let status = match faults.is_empty() {
        false => StageStatus::Failed(faults.join("; ")),
        true => StageStatus::Passed,
    };
    Some(Stage {
        name: crate::verdict::MODELS_STAGE.into(),
        status,
        detail: seen.join("\n"),
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
        let models = models_stage(&setup.client, setup);
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
