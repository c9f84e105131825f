// The logwarden dashboard: plain JavaScript, no external code (the service has no internet).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { since: 0, rows: new Map(), version: null };
const REASONS = {
  unseen_key: "a log key never seen in normal runs",
  early_end: "the session ended where the model expected it to go on",
  ranked_out: "the observed key was not among the keys the model expected next",
  unseen_transition: "a key that never followed these keys in normal runs",
  count_exceeded: "a key repeated more times than in any normal run",
  performance: "a step took far longer than in normal runs",
  parameter: "a parameter value far from what normal runs produce",
};

$("token").value = localStorage.getItem("logwarden-token") || "";
$("token").addEventListener("change", () => localStorage.setItem("logwarden-token", $("token").value));

async function api(path, options = {}) {
  const headers = options.headers || {};
  const token = $("token").value.trim();
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, { ...options, headers });
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.detail) || r.statusText);
  return body;
}

// What became of a feedback (its "state" in the API).
function feedbackState(f) {
  switch (f.state) {
    case "learnt": return `learnt by model v${f.used_by}`;
    case "waiting": return "its session is still open: the model learns it once the session has closed";
    case "scheduled": return "model update scheduled";
    case "unusable": return "not learnt: its session's lines could not be read back";
    default: return "this logwarden has no online update";
  }
}

function feedbackText(f) {
  return `feedback ${f.feedback ?? f.id} stored (${f.label}); ${feedbackState(f)}`;
}

function text(el, value) { el.textContent = value == null ? "" : String(value); return el; }
function cell(tr, value) { tr.appendChild(text(document.createElement("td"), value)); }

function describe(v) {
  const where = v.reason === "early_end" ? "at its end" : `at entry ${v.position + 1}`;  // from 1, as detect's text
  const out = [`${v.session}: ANOMALY ${where} (${v.length} keys): ${REASONS[v.reason] || v.reason}`];
  const obs = v.observed_template || v.observed;
  if (v.reason === "unseen_key") out.push(`  observed: ${obs} (never seen in training)`);
  else if (["ranked_out", "unseen_transition", "count_exceeded"].includes(v.reason)) out.push(`  observed: ${obs} (p=${Number(v.probability).toPrecision(2)}, rank ${v.rank})`);
  if (v.count != null) out.push(`  count: occurrence ${v.count} of ${v.observed} in this session; at most ${v.max_count} in any normal training session`);
  else if (v.deviation) {
    const d = v.deviation;
    out.push(`  entry: ${obs}`);
    const what = d.dimension === "elapsed" ? `time since the previous entry (${d.after})` : `parameter ${d.parameter}${d.name ? " (" + d.name + ")" : ""}`;
    const span = d.range && !d.constant ? `, ${d.observed > d.range[1] ? "above" : "below"} the training range [${d.range[0]}, ${d.range[1]}] and its margin (${d.limit})` : "";
    out.push(`  ${what}: ${d.text || d.observed}${span}; expected about ${Number(d.expected).toPrecision(3)}, ${d.sigmas > 0 ? "+" : ""}${d.sigmas} sigma (${d.model} model of ${d.unit})`);
  }
  if (v.window && v.window.length) out.push(`  after: ${v.window.join(" ")}`);
  // As the CLI's text: what the model gave no chance (shown as 0.00) is left out, the first kept.
  const likely = (v.expected || []).filter((e, i) => i === 0 || e.probability >= 0.005);
  if (likely.length) out.push("  expected: " + likely.map((e) => `${e.template || e.key} (${e.probability.toFixed(2)})`).join("; "));
  return out.join("\n");
}

function diagnosisText(d) {
  if (!d.workflow) return "no known workflow covers this session";
  const name = (k, t) => (t ? `${k} (${t})` : k);
  const out = [`workflow ${d.workflow}: after ${name(d.state, d.state_template)}`];
  out.push(`  observed: ${name(d.observed, d.observed_template)}${d.diverged ? "  <- not allowed here" : "  (allowed)"}`);
  const steps = d.expected_steps || [];
  const rarer = steps.length > 5 ? `; and ${steps.length - 5} rarer` : "";
  if (steps.length) out.push("  allowed next: " + steps.slice(0, 5).map((e) => `${name(e.key, e.template)} ${(e.probability ?? 0).toFixed(2)}`).join("; ") + rarer);
  if (d.why) out.push("  why: " + d.why);
  if (d.missing && d.missing.length) out.push("  still missing: " + d.missing.map((m) => name(m.key, m.template)).join("; "));
  if (d.step) out.push("  workflow step: " + name(d.step.key, d.step.template));
  return out.join("\n");
}

function addRow(v, fresh) {
  const tr = document.createElement("tr");
  tr.dataset.id = v.id;
  tr.className = "anomaly" + (fresh ? " new" : "");
  [v.id, v.session, v.reason, v.detector, v.position, v.length, v.model_version, v.feedback_label].forEach((x) => cell(tr, x));
  tr.addEventListener("click", () => { location.hash = "#/anomaly/" + v.id; });
  const tbody = $("anomalies").querySelector("tbody");
  tbody.insertBefore(tr, tbody.firstChild);
  state.rows.set(v.id, tr);
}

async function pollAnomalies() {
  try {
    const got = await api(`/api/v1/anomalies?since=${state.since}&limit=500`);
    for (const v of got) { addRow(v, state.since > 0); state.since = Math.max(state.since, v.id); }
    $("empty").hidden = state.rows.size > 0;
    text($("count"), `(${state.rows.size})`);
  } catch (e) { text($("status"), "error: " + e.message); }
}

async function pollStatus() {
  try {
    const s = await api("/api/v1/status");
    const st = s.stats || {};
    text($("status"), `model v${s.model_version ?? "?"} · ${(st.lines || 0).toLocaleString()} lines · ${s.open_sessions ?? 0} open sessions · lag ${s.lag_lines ?? 0} · detector ${s.detector_process}`);
    $("status").dataset.version = s.model_version;
    showWarnings(s.input_warnings || []);
  } catch (e) { text($("status"), "unreachable: " + e.message); }
}

// What batch commands warn about (lines without a session id, log time going back, ...),
// over the recent lines: one line each in the banner under the header, hidden when none.
function showWarnings(warnings) {
  const el = $("warnings");
  el.replaceChildren(...warnings.map((w) => text(document.createElement("p"), "warning: " + w.message)));
  el.hidden = warnings.length === 0;
}

async function pollModels() {
  try {
    const m = await api("/api/v1/models");
    const ul = $("models");
    ul.replaceChildren();
    for (const v of m.versions.slice().reverse()) {
      const li = document.createElement("li");
      text(li, `v${v.version}${v.version === m.current ? " (in use)" : ""}: ${v.status}${v.parent ? ", from v" + v.parent : ""}${v.note ? " — " + v.note : ""}`);
      li.className = "model";
      ul.appendChild(li);
    }
    ul.dataset.current = m.current;
    text($("online"), m.online_update ? "feedback updates the model online" : "feedback is stored; this logwarden has no online update");
  } catch (e) { /* shown by the status line */ }
}

function driftSummary(d) {
  const out = [];
  const warnings = d.warnings || [];
  const total = d.n_warnings ?? warnings.length;
  out.push(`${total} drift warning${total === 1 ? "" : "s"}`);
  for (const w of warnings.slice(-5)) {
    const causes = (w.causes || []).map((c) => c.template || c.key).slice(0, 3).join("; ");
    out.push(`  bucket ${w.bucket}: ${w.reasons.join(", ")}; flagged ${(100 * w.flagged_share).toFixed(1)}%` + (causes ? ` (${causes})` : ""));
  }
  const buckets = (d.buckets || []).slice(-5);
  if (buckets.length) out.push("recent buckets (entries, unseen, flagged):");
  for (const b of buckets) {
    out.push(`  ${b.bucket}: ${b.entries} · ${(100 * (b.unseen_share || 0)).toFixed(2)}% · ${(100 * (b.flagged_share || 0)).toFixed(1)}%${b.drift ? " DRIFT" : ""}`);
  }
  const templates = d.drift_templates || [];
  if (templates.length) out.push("new templates behind drift: " + templates.map((t) => t.template || t.key).join("; "));
  if (d.suggested && d.suggested.length) out.push("sessions to review: " + d.suggested.slice(0, 5).join(", "));
  return out.join("\n");
}

async function pollDrift() {
  try {
    const d = await api("/api/v1/drift");
    if (d.available && d.drift) {
      const el = $("drift");
      text(el, driftSummary(d.drift));
      el.classList.remove("muted");
      el.classList.add("drift");
    }
  } catch (e) { /* optional */ }
}

async function showSession(id) {
  $("list-view").hidden = true;
  $("session-view").hidden = false;
  text($("fb-result"), "");
  const v = await api("/api/v1/anomalies/" + id);
  text($("s-title"), `Anomaly ${v.id}: session ${v.session}`);
  text($("s-explain"), describe(v));
  $("s-diagnosis").hidden = !v.diagnosis;
  if (v.diagnosis) {
    text($("s-diagnosis-summary"), diagnosisText(v.diagnosis));
    text($("s-diagnosis-text"), JSON.stringify(v.diagnosis, null, 2));
  }
  $("s-workflow").hidden = !v.workflow_svg;
  if (v.workflow_svg) $("s-workflow-img").src = v.workflow_svg;
  const lines = v.session_lines || v.lines || [];
  const hitAt = v.session_lines ? v.position : Math.min(3, v.position);
  const ol = $("s-lines");
  ol.replaceChildren();
  lines.forEach((ln, i) => { const li = text(document.createElement("li"), ln); if (i === hitAt) li.className = "hit"; ol.appendChild(li); });
  const given = v.feedback || [];
  if (given.length) text($("fb-result"), feedbackText(given[given.length - 1]));
  for (const b of [$("btn-normal"), $("btn-confirmed")]) {
    b.onclick = async () => {
      try {
        const r = await api("/api/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id: v.id, label: b.dataset.label }) });
        text($("fb-result"), feedbackText(r));
        const tr = state.rows.get(v.id); if (tr) text(tr.lastChild, r.label);
      } catch (e) { text($("fb-result"), "error: " + e.message); }
    };
  }
}

function route() {
  const m = location.hash.match(/^#\/anomaly\/(\d+)/);
  if (m) showSession(Number(m[1])).catch((e) => text($("s-title"), "error: " + e.message));
  else { $("list-view").hidden = false; $("session-view").hidden = true; }
}

window.addEventListener("hashchange", route);
route();
const tick = () => { pollAnomalies(); pollStatus(); pollModels(); pollDrift(); };
tick();
setInterval(tick, 1000);
