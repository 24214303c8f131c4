// The CloudViz dashboard: fetches /dashboard/data every few seconds and draws each panel with plotly.js.
// Every panel ends in one of three states, kept in its data-state attribute: "data" (drawn), "empty" (an
// explanation of why there is nothing yet, and what to do) or "error" (its source could not be read).
"use strict";

(() => {
  const PALETTE = ["#3b82f6", "#f97316", "#10b981", "#a855f7", "#ef4444", "#eab308", "#06b6d4", "#64748b"];
  const STEP_COLOURS = ["#1e40af", "#3b82f6", "#0ea5e9", "#14b8a6", "#a855f7", "#f59e0b", "#64748b", "#ec4899"];
  const GRID = "#eef2f7";
  const CONFIG = { displayModeBar: false, responsive: true };
  let refreshMs = 5000;
  let paused = false;
  let timer = null;
  let lastUpdate = null;

  // -- small helpers ------------------------------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const card = (name) => document.querySelector(`[data-panel="${name}"]`);
  const part = (name, selector) => card(name).querySelector(selector);
  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const fixed = (value, digits) => (isNumber(value) ? value.toFixed(digits) : "–");
  const percent = (share, digits = 1) => (isNumber(share) ? `${(100 * share).toFixed(digits)}%` : "–");
  const clockTime = (time) => (time ? time.slice(11, 19) : "–");
  const shortTime = (time) => (time ? time.slice(0, 16) : "–");
  const colourOf = (classes, label) => PALETTE[(classes.indexOf(label) + PALETTE.length) % PALETTE.length];

  function merge(base, extra) {
    const out = { ...base };
    for (const [key, value] of Object.entries(extra || {})) {
      const plain = value && typeof value === "object" && !Array.isArray(value);
      out[key] = plain && base[key] && typeof base[key] === "object" ? merge(base[key], value) : value;
    }
    return out;
  }

  function layout(extra) {
    return merge({
      height: 240,
      margin: { l: 56, r: 16, t: 6, b: 38 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", size: 12, color: "#334155" },
      xaxis: { gridcolor: GRID, zeroline: false, automargin: true },
      yaxis: { gridcolor: GRID, zeroline: false, rangemode: "tozero", automargin: true },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      hoverlabel: { font: { size: 12 } },
      uirevision: "keep",
    }, extra);
  }

  const timeAxis = { type: "date", title: { text: "time (UTC)", font: { size: 11 } } };
  const yTitle = (text) => ({ title: { text, font: { size: 11 } } });

  function draw(name, traces, layoutExtra, selector = ".chart") {
    setState(name, "data");
    return Plotly.react(part(name, selector), traces, layout(layoutExtra), CONFIG);
  }

  // Show why a panel has nothing: lines of text, and an optional command to copy.
  function setState(name, state, lines, command) {
    const panel = card(name);
    panel.dataset.state = state;
    const box = panel.querySelector(".empty");
    if (state === "data") {
      box.replaceChildren();
      return;
    }
    box.replaceChildren(...(lines || []).map((line) => el("p", {}, line)), ...(command ? [el("pre", {}, command)] : []));
  }

  function failed(name, section) {
    if (section && section.error) {
      setState(name, "error", ["This panel's source could not be read:", section.error]);
      return true;
    }
    return false;
  }

  function unavailable(name, section) {
    if (section && section.available === false) {
      setState(name, "empty", [`Not available: ${section.why}.`]);
      return true;
    }
    return false;
  }

  function badge(text, kind) {
    return el("span", { class: `badge ${kind || text}` }, text);
  }

  function table(headers, rows) {
    const head = el("tr", {}, headers.map(([text, kind]) => el("th", { class: kind }, text)));
    return el("table", { class: "data" }, el("thead", {}, head), el("tbody", {}, rows));
  }

  function tile(id, value, note, level) {
    const node = document.getElementById(id);
    node.querySelector(".value").textContent = value;
    node.querySelector(".note").textContent = note;
    if (level) node.dataset.level = level;
    else delete node.dataset.level;
  }

  // -- summary tiles ------------------------------------------------------------------------------

  function drawSummary(data) {
    const traffic = data.traffic || {};
    const summary = traffic.summary;
    if (summary) {
      const span = `last ${Math.round(summary.seconds)} s, ${summary.requests} requests`;
      tile("tile-rate", fixed(summary.requests_per_second, 2), span, "info");
      const errors = summary.error_5xx_percent;
      tile("tile-errors", isNumber(errors) ? `${errors.toFixed(1)}%` : "–",
        isNumber(errors) ? "of API requests, last minute" : "no requests in the last minute",
        isNumber(errors) ? (errors > 0 ? "alarm" : "ok") : null);
      tile("tile-latency", isNumber(summary.latency_p99_ms) ? `${summary.latency_p99_ms.toFixed(1)} ms` : "–",
        "API p99, last minute", isNumber(summary.latency_p99_ms) ? "info" : null);
    } else {
      const why = traffic.available === false ? "no metric sampler" : "waiting for the first period";
      for (const id of ["tile-rate", "tile-errors", "tile-latency"]) tile(id, "–", why, null);
    }
    const predictions = data.predictions || {};
    tile("tile-predictions", isNumber(predictions.rows) ? `${predictions.rows}${predictions.truncated ? "+" : ""}` : "–",
      predictions.newest ? `last hour, newest ${clockTime(predictions.newest)} UTC` : "none in the last hour", "info");
    const model = data.model || {};
    if (model.live) {
      const [first] = model.evaluation ? Object.entries(model.evaluation.metrics) : [];
      const quality = first ? `${metricLabel(first[0])} ${metricValue(...first)}` : "no evaluation";
      tile("tile-model", `v${model.version}`, `${quality} · ${model.approval_status}`, "info");
    } else {
      tile("tile-model", "none", "no version is deployed", "warn");
    }
    const alarms = data.alarms || {};
    if (alarms.available && alarms.states) {
      const total = alarms.states.length;
      const insufficient = alarms.states.filter((a) => a.state === "INSUFFICIENT_DATA").length;
      const note = alarms.in_alarm ? alarms.states.filter((a) => a.state === "ALARM").map((a) => a.name).join(", ")
        : `${total - insufficient} OK${insufficient ? `, ${insufficient} insufficient data` : ""}`;
      tile("tile-alarms", `${alarms.in_alarm} / ${total}`, `in ALARM · ${note}`, alarms.in_alarm ? "alarm" : "ok");
    } else {
      tile("tile-alarms", "–", alarms.why || "no alarm evaluator", null);
    }
    card("summary").dataset.state = "data";
  }

  // -- service health -----------------------------------------------------------------------------

  function drawAlarms(section) {
    if (failed("alarms", section) || unavailable("alarms", section)) return;
    if (!section.states.length) {
      setState("alarms", "empty", ["No alarm rules are configured."]);
      return;
    }
    const kinds = { OK: "ok", ALARM: "alarm", INSUFFICIENT_DATA: "grey" };
    const rows = section.states.map((alarm) => el("tr", {},
      el("td", {}, badge(alarm.state.replace("_", " "), kinds[alarm.state])),
      el("td", {}, el("strong", {}, alarm.name), el("div", { class: "detail" }, alarm.description)),
      el("td", {}, el("code", {}, alarm.condition)),
      el("td", { class: "n" }, isNumber(alarm.value) ? alarm.value.toPrecision(3) : "–"),
      el("td", { class: "time" }, alarm.since ? `${alarm.since.slice(0, 19)}` : "–"),
      el("td", { class: "detail" }, alarm.reason)));
    setState("alarms", "data");
    part("alarms", ".content").replaceChildren(table(
      [["State"], ["Alarm"], ["Alarm when"], ["Latest value", "n"], ["Since (UTC)"], ["Reason"]], rows));
  }

  function noSamples(name, traffic) {
    if (failed(name, traffic) || unavailable(name, traffic)) return true;
    if (!traffic.time.length) {
      setState(name, "empty", [`No samples yet: the sampler closes a period every ${traffic.period_seconds} s,`
        + " and the first one appears here then."]);
      return true;
    }
    return false;
  }

  function drawTraffic(traffic) {
    if (!noSamples("requests", traffic)) {
      draw("requests", [{
        type: "bar", x: traffic.time, y: traffic.requests_per_second, customdata: traffic.requests,
        marker: { color: "#3b82f6" }, name: "requests / s",
        hovertemplate: "%{y:.2f} requests/s (%{customdata} in the period)<extra></extra>",
      }], { xaxis: timeAxis, yaxis: yTitle("requests / s"), showlegend: false, bargap: 0.15 });
    }
    if (!noSamples("errors", traffic)) {
      const rates = [...traffic.error_5xx_percent, ...traffic.error_4xx_percent].filter(isNumber);
      draw("errors", [
        { type: "scatter", mode: "lines+markers", x: traffic.time, y: traffic.error_5xx_percent, name: "5xx",
          line: { color: "#ef4444", width: 2 }, marker: { size: 4 }, hovertemplate: "5xx %{y:.1f}%<extra></extra>" },
        { type: "scatter", mode: "lines+markers", x: traffic.time, y: traffic.error_4xx_percent, name: "4xx",
          line: { color: "#f59e0b", width: 2 }, marker: { size: 4 }, hovertemplate: "4xx %{y:.1f}%<extra></extra>" },
      ], {
        xaxis: timeAxis, hovermode: "x unified",
        // A fixed floor of 5% keeps a quiet service's 0% at the bottom, not in the middle of an empty axis.
        yaxis: merge(yTitle("% of requests"), { range: [0, Math.max(5, ...rates.map((rate) => rate * 1.15))] }),
      });
    }
    if (!noSamples("latency", traffic)) {
      const line = (key, name, colour, dash) => ({
        type: "scatter", mode: "lines+markers", x: traffic.time, y: traffic[key], name, marker: { size: 3 },
        line: { color: colour, width: 2, dash }, hovertemplate: `${name} %{y:.2f} ms<extra></extra>`,
      });
      // Log scale: a p99 ten times the median, or one slow first request, leaves the median readable.
      draw("latency", [
        line("latency_p50_ms", "p50", "#93c5fd"), line("latency_p90_ms", "p90", "#3b82f6"),
        line("latency_p99_ms", "p99", "#1e3a8a"), line("model_latency_p99_ms", "model p99", "#10b981", "dot"),
      ], {
        xaxis: timeAxis, hovermode: "x unified",
        yaxis: merge(yTitle("milliseconds (log scale)"), { type: "log", rangemode: "normal" }),
      });
    }
  }

  // -- predictions and drift ----------------------------------------------------------------------

  function noPredictions(name, section) {
    if (failed(name, section)) return true;
    if (!section.rows) {
      setState(name, "empty", [
        `No predictions in the last ${section.window_minutes} minutes. Make one (the key is the API key`
        + " `cloudviz serve` printed):"], section.hint);
      return true;
    }
    return false;
  }

  function drawPredictions(section, classes) {
    if (!noPredictions("predictions", section)) {
      const labels = [...classes, ...Object.keys(section.by_class).filter((label) => !classes.includes(label))];
      const traces = labels.filter((label) => section.by_class[label]).map((label) => ({
        type: "bar", x: section.time, y: section.by_class[label], name: label,
        marker: { color: colourOf(labels, label) },
        hovertemplate: `${label}: %{y}<extra></extra>`,
      }));
      const size = section.bucket_seconds;
      const width = size >= 60 ? `${size / 60} min` : `${size} s`;
      const versions = Object.entries(section.model_versions);
      const byVersion = versions.length > 1
        ? `; by model version: ${versions.map(([version, count]) => `v${version} ${count}`).join(", ")}` : "";
      document.getElementById("predictions-sub").textContent =
        `Stored predictions of the last hour, counted per ${width}; ${section.rows}${section.truncated ? "+" : ""}`
        + ` in all${section.truncated ? " (the newest rows only)" : ""}${byVersion}`;
      draw("predictions", traces, {
        barmode: "stack", bargap: 0.1, xaxis: timeAxis, yaxis: yTitle(`predictions per ${width}`),
        hovermode: "x unified", legend: { traceorder: "normal" },
      });
    }
    if (!noPredictions("classes", section)) {
      const labels = [...classes, ...Object.keys(section.class_counts).filter((label) => !classes.includes(label))];
      const live = labels.map((label) => (section.class_counts[label] || 0) / section.rows);
      const traces = [{
        type: "bar", x: labels, y: live, name: "predictions, last hour",
        marker: { color: labels.map((label) => colourOf(labels, label)) },
        customdata: labels.map((label) => section.class_counts[label] || 0),
        text: live.map((share) => percent(share, 0)), textposition: "outside", cliponaxis: false,
        hovertemplate: "%{x}: %{y:.1%} (%{customdata} predictions)<extra></extra>",
      }];
      if (section.training_share) {
        traces.push({
          type: "bar", x: labels, y: labels.map((label) => section.training_share[label] || 0),
          name: "training split", marker: { color: "rgba(100,116,139,.35)", line: { color: "#64748b", width: 1 } },
          hovertemplate: "%{x}: %{y:.1%} of training rows<extra></extra>",
        });
      }
      draw("classes", traces, {
        barmode: "group", bargap: 0.25, yaxis: merge(yTitle("share"), { tickformat: ".0%", range: [0, 1.05] }),
        xaxis: { title: { text: "predicted class", font: { size: 11 } } },
      });
    }
  }

  const psiColour = (value, drift) => (value >= drift.significant ? "#ef4444"
    : value >= drift.moderate ? "#f59e0b" : "#10b981");

  function thresholdLines(drift) {
    const line = (y, colour, text) => ({
      shape: { type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color: colour, width: 1, dash: "dash" } },
      annotation: { xref: "paper", x: 1, y, xanchor: "left", yanchor: "middle", text, showarrow: false,
        font: { size: 10, color: colour } },
    });
    const lines = [line(drift.moderate, "#f59e0b", ` ${drift.moderate} moderate`),
      line(drift.significant, "#ef4444", ` ${drift.significant} significant`)];
    // The labels sit right of the plot, in its margin, clear of the bars and lines.
    return { shapes: lines.map((l) => l.shape), annotations: lines.map((l) => l.annotation), margin: { r: 90 } };
  }

  function noDrift(name, drift) {
    if (failed(name, drift) || unavailable(name, drift)) return true;
    if (!Object.keys(drift.features).length) {
      const lines = [`Drift is measured once at least ${drift.min_rows} predictions are stored`
        + ` (${isNumber(drift.stored_rows) ? drift.stored_rows : "fewer"} so far): PSI over fewer rows is mostly noise.`,
      `It then compares the newest ${drift.window} predictions with the training data of version`
        + ` ${drift.baseline_version ?? "–"}, at every sampling period.`];
      if (drift.why) lines.unshift(`${drift.why}.`);
      setState(name, "empty", lines);
      return true;
    }
    return false;
  }

  function drawDrift(drift) {
    if (!noDrift("drift", drift)) {
      const names = Object.keys(drift.features);
      const values = names.map((name) => drift.features[name]);
      // The predictions' own bar: the predicted classes, or a regression's predicted values.
      const measured = isNumber(drift.prediction_drift);
      const x = [...names, ...(measured ? [drift.prediction_label] : [])];
      const y = [...values, ...(measured ? [drift.prediction_drift] : [])];
      const top = Math.max(drift.significant * 1.4, ...y.map((v) => v * 1.15));
      document.getElementById("drift-sub").textContent = "Population stability index of the newest "
        + `${drift.window} predictions against version ${drift.baseline_version}'s training data`
        + ` (measured ${clockTime(drift.measured_at)} UTC)${drift.prediction_why ? `; ${drift.prediction_why}` : ""}`;
      draw("drift", [{
        type: "bar", x, y, marker: { color: y.map((v) => psiColour(v, drift)) },
        text: y.map((v) => v.toFixed(3)), textposition: "outside", cliponaxis: false,
        hovertemplate: "%{x}: PSI %{y:.3f}<extra></extra>",
      }], merge(thresholdLines(drift), { yaxis: merge(yTitle("PSI"), { range: [0, top] }), showlegend: false }));
    }
    if (!noDrift("drift-history", drift)) {
      const history = drift.history;
      const traces = Object.entries(history.features).map(([name, values], i) => ({
        type: "scatter", mode: "lines", x: history.time, y: values, name,
        line: { color: PALETTE[i % PALETTE.length], width: 2 }, hovertemplate: `${name} %{y:.3f}<extra></extra>`,
      }));
      const label = drift.prediction_label;
      if (history.prediction_drift.some(isNumber)) {
        traces.push({
          type: "scatter", mode: "lines", x: history.time, y: history.prediction_drift, name: label,
          line: { color: "#0f1b2d", width: 2, dash: "dot" }, hovertemplate: `${label} %{y:.3f}<extra></extra>`,
        });
      }
      part("drift-history", ".sub").textContent = `PSI per feature and of the ${label}s at each sampling period`;
      draw("drift-history", traces, merge(thresholdLines(drift), {
        xaxis: timeAxis, yaxis: yTitle("PSI"), hovermode: "x unified",
      }));
    }
  }

  // -- live accuracy ------------------------------------------------------------------------------

  function drawLiveAccuracy(live) {
    const name = "live-accuracy";
    if (failed(name, live) || unavailable(name, live)) return;
    if (!live.history.time.length) {
      setState(name, "empty", ["Nothing sampled yet: the first sampling period is not over."]);
      return;
    }
    const recall = Object.entries(live.recall).map(([label, value]) => `${label} ${percent(value)}`).join(", ");
    part(name, ".sub").textContent = isNumber(live.accuracy)
      ? `${percent(live.accuracy)} right of the newest ${live.labelled} labelled predictions; recall per true`
        + ` class: ${recall}`
      : `${live.labelled} labelled predictions: accuracy is measured from ${live.min_labelled} (record true labels`
        + ` with POST /predictions/{id}/feedback), over the newest ${live.window}`;
    const alarmLine = { type: "line", xref: "paper", x0: 0, x1: 1, y0: live.threshold, y1: live.threshold,
      line: { color: "#ef4444", width: 1, dash: "dash" } };
    draw(name, [{
      type: "scatter", mode: "lines", x: live.history.time, y: live.history.accuracy, name: "live accuracy",
      line: { color: PALETTE[0], width: 2 }, hovertemplate: "accuracy %{y:.1%}<extra></extra>",
    }, {
      type: "scatter", mode: "lines", x: live.history.time, y: live.history.labelled, name: "labelled", yaxis: "y2",
      line: { color: "#94a3b8", width: 1, dash: "dot" }, hovertemplate: "labelled %{y}<extra></extra>",
    }], { xaxis: timeAxis, yaxis: merge(yTitle("accuracy"), { range: [0, 1.02], tickformat: ".0%" }),
      yaxis2: merge(yTitle("labelled predictions"), { overlaying: "y", side: "right", rangemode: "tozero",
        showgrid: false }),
      shapes: [alarmLine], hovermode: "x unified" });
  }

  // -- the live model -----------------------------------------------------------------------------

  const METRIC_LABELS = { accuracy: "Accuracy", macro_f1: "Macro F1", weighted_f1: "Weighted F1", f1: "F1",
    auc: "AUC", rmse: "RMSE", mae: "MAE", r2: "R²" };
  const metricLabel = (name) => METRIC_LABELS[name] || name;
  const metricValue = (name, value) => (name === "accuracy" ? percent(value)
    : isNumber(value) ? value.toLocaleString("en", { maximumSignificantDigits: 4 }) : "–");

  function noEvaluation(name, model) {
    if (failed(name, model)) return true;
    if (!model.live) {
      setState(name, "empty", ["No model version is live: deploy one with", "cloudviz deploy local"]);
      return true;
    }
    if (!model.evaluation) {
      setState(name, "empty", [`Version ${model.version} is live, but the registry holds no evaluation for it.`]);
      return true;
    }
    return false;
  }

  function drawModel(model) {
    if (model && model.live) {
      document.getElementById("model-heading").textContent = `version ${model.version}`
        + ` (${model.approval_status}), deployed ${shortTime(model.deployed_at)} UTC: ${model.deployed_because}`;
    }
    if (!noEvaluation("evaluation", model)) {
      const evaluation = model.evaluation;
      const kpi = (label, value) => el("div", { class: "kpi" }, el("div", { class: "label" }, label),
        el("div", { class: "value" }, value));
      part("evaluation", ".kpis").replaceChildren(
        ...Object.entries(evaluation.metrics).slice(0, 3).map(([name, value]) => kpi(metricLabel(name),
          metricValue(name, value))),
        kpi("Test rows", String(evaluation.test_rows ?? "–")));
      const classes = evaluation.classes;
      document.getElementById("evaluation-sub").textContent = `Version ${model.version} on the held-out test split`
        + ` (run ${model.run_id || "unknown"})` + (classes.length ? ": precision, recall and F1 per class"
          : ": a regression, so no per-class scores");
      const metric = (key, name, colour) => ({
        type: "bar", x: classes, y: classes.map((c) => evaluation.per_class[c] ? evaluation.per_class[c][key] : null),
        name, marker: { color: colour }, hovertemplate: `%{x} ${name} %{y:.3f}<extra></extra>`,
      });
      if (!classes.length) {
        setState("evaluation", "data");  // the KPIs are all a regression's evaluation shows
      } else {
        draw("evaluation", [metric("precision", "precision", "#93c5fd"), metric("recall", "recall", "#3b82f6"),
          metric("f1", "F1", "#1e3a8a")], {
          height: 190, barmode: "group", yaxis: merge(yTitle("score"), { range: [0, 1.05] }),
        });
      }
    }
    if (!noEvaluation("confusion", model) && !model.evaluation.confusion_matrix.length) {
      setState("confusion", "empty", ["A regression model has no confusion matrix."]);
    } else if (!noEvaluation("confusion", model)) {
      const { classes, confusion_matrix: matrix } = model.evaluation;
      draw("confusion", [{
        type: "heatmap", x: classes, y: classes, z: matrix, colorscale: [[0, "#f1f5fb"], [1, "#1e40af"]], showscale: false,
        texttemplate: "%{z}", textfont: { size: 15 }, xgap: 2, ygap: 2,
        hovertemplate: "actual %{y}, predicted %{x}: %{z} rows<extra></extra>",
      }], {
        height: 260, xaxis: { title: { text: "predicted class", font: { size: 11 } }, side: "bottom", gridcolor: GRID },
        yaxis: { title: { text: "actual class", font: { size: 11 } }, autorange: "reversed", rangemode: "normal" },
      });
    }
    if (!noEvaluation("importance", model)) {
      const importance = model.evaluation.feature_importance;
      const names = Object.keys(importance);
      if (!names.length) {
        setState("importance", "empty", [`Version ${model.version}'s evaluation has no feature importance.`]);
        return;
      }
      draw("importance", [{
        type: "bar", orientation: "h", y: names, x: names.map((n) => importance[n]), marker: { color: "#3b82f6" },
        text: names.map((n) => importance[n].toFixed(1)), textposition: "auto",
        hovertemplate: "%{y}: total gain %{x:.2f}<extra></extra>",
      }], {
        height: 260, yaxis: { autorange: "reversed", rangemode: "normal" },
        xaxis: { title: { text: "total gain", font: { size: 11 } }, gridcolor: GRID },
        margin: { l: 90 }, showlegend: false,
      });
    }
  }

  // -- pipeline runs and the registry ---------------------------------------------------------------

  function drawRuns(section) {
    if (failed("runs", section)) return;
    if (!section.runs.length) {
      setState("runs", "empty", ["No pipeline runs yet. Train, evaluate and register a model with:"],
        "cloudviz pipeline run");
      return;
    }
    const runs = [...section.runs].reverse(); // oldest at the bottom, newest on top
    const labels = runs.map((run) => `${run.run_id.slice(0, 15)} ${run.run_id.slice(-6)}`);
    const steps = [];
    for (const run of runs) {
      for (const step of run.steps) {
        // A step no run executed (a branch not taken) would only add a legend entry.
        if (isNumber(step.seconds) && !steps.includes(step.name)) steps.push(step.name);
      }
    }
    const traces = steps.map((name, i) => {
      const of = runs.map((run) => run.steps.find((step) => step.name === name));
      return {
        type: "bar", orientation: "h", y: labels, x: of.map((step) => (step && isNumber(step.seconds) ? step.seconds : 0)),
        name, marker: { color: STEP_COLOURS[i % STEP_COLOURS.length],
          pattern: { shape: of.map((step) => (step && step.cached ? "/" : "")), fgcolor: "#ffffff", size: 6 } },
        customdata: of.map((step) => (step ? `${step.status}${step.cached ? ", cached" : ""}` : "not run")),
        hovertemplate: `${name}: %{x:.2f} s (%{customdata})<extra></extra>`,
      };
    });
    draw("runs", traces, {
      height: Math.max(170, 44 + 26 * runs.length), barmode: "stack", bargap: 0.3, legend: { traceorder: "normal" },
      xaxis: { title: { text: "seconds", font: { size: 11 } }, gridcolor: GRID },
      yaxis: { rangemode: "normal", tickfont: { family: "ui-monospace, Menlo, Consolas, monospace", size: 11 } },
      margin: { l: 150, b: 38 },
    });
    const rows = section.runs.slice(0, 5).map((run) => el("tr", {},
      el("td", {}, el("code", {}, run.run_id)),
      el("td", {}, badge(run.status)),
      el("td", { class: "time" }, shortTime(run.created_at)),
      el("td", { class: "n" }, isNumber(run.seconds) ? `${run.seconds.toFixed(2)} s` : "–"),
      el("td", { class: "n" }, percent(run.accuracy)),
      el("td", {}, run.registered_version ? `v${run.registered_version}` : (run.failure_reason || "–"))));
    part("runs", ".content").replaceChildren(table(
      [["Run"], ["Status"], ["Started (UTC)"], ["Step time", "n"], ["Accuracy", "n"], ["Registered"]], rows));
  }

  function drawRegistry(section) {
    if (failed("registry", section)) return;
    if (!section.versions.length) {
      setState("registry", "empty", ["No model versions are registered yet: a pipeline run that passes its"
        + " accuracy gate registers one.", "Then approve it for deployment with"],
      "cloudviz models approve GROUP VERSION");
      return;
    }
    const rows = section.versions.map((v) => el("tr", { class: v.live ? "live" : null },
      el("td", {}, el("strong", {}, `v${v.version}`), v.live ? badge("LIVE", "live") : null),
      el("td", {}, badge(v.approval_status === "PendingManualApproval" ? "Pending" : v.approval_status,
        v.approval_status), v.status_reason ? el("div", { class: "detail" }, v.status_reason) : null),
      el("td", { class: "n" }, percent(v.accuracy)),
      el("td", { class: "n" }, fixed(v.macro_f1, 3)),
      el("td", { class: "time" }, shortTime(v.created_at))));
    setState("registry", "data");
    part("registry", ".content").replaceChildren(table(
      [["Version"], ["Approval"], ["Accuracy", "n"], ["Macro F1", "n"], ["Registered (UTC)"]], rows));
  }

  const NOT_COMPARED = { none: ["no champion", "grey"], not_comparable: ["not comparable", "warn"],
    unrecorded: ["not recorded", "grey"] };

  function championCells(v) {
    if (v.status !== "compared") {
      const [label] = NOT_COMPARED[v.status] || [v.status];
      const reason = v.reason && v.reason.startsWith(label) ? v.reason : `${label}: ${v.reason}`;
      return [el("td", { colspan: 4, class: "detail" }, reason)];
    }
    const who = v.champion_version === null ? "the model given" : `v${v.champion_version}`;
    const difference = v.value - v.champion_value;
    return [
      el("td", {}, el("strong", {}, who), v.champion_stage ? el("div", { class: "detail" }, `live on ${v.champion_stage}`)
        : null),
      el("td", { class: "n" }, metricValue(v.metric, v.champion_value)),
      el("td", { class: "n" }, isNumber(difference) ? `${difference >= 0 ? "+" : ""}${difference.toFixed(4)}` : "–"),
      el("td", { class: "n" }, isNumber(v.max_regression) ? String(v.max_regression) : "–"),
    ];
  }

  function drawChampion(section) {
    if (failed("champion", section)) return;
    if (!section.versions.length) {
      setState("champion", "empty", ["No model versions are registered yet: a run's Evaluate compares its model"
        + " with the group's live one, and the version it registers shows both here."]);
      return;
    }
    const rows = section.versions.map((v) => {
      const [label, kind] = v.status === "compared" ? (v.passed ? ["passed", "ok"] : ["failed", "alarm"])
        : NOT_COMPARED[v.status] || [v.status, "grey"];
      return el("tr", { class: v.live ? "live" : null, "data-version": v.version, "data-status": v.status },
        el("td", {}, el("strong", {}, `v${v.version}`), v.live ? badge("LIVE", "live") : null,
          v.newest ? badge("NEWEST", "live") : null),
        el("td", {}, metricLabel(v.metric)),
        el("td", { class: "n" }, metricValue(v.metric, v.value)),
        ...championCells(v),
        el("td", {}, badge(label, kind)));
    });
    setState("champion", "data");
    part("champion", ".content").replaceChildren(table([["Version"], ["Gate metric"], ["This version", "n"],
      ["Champion"], ["Champion's value", "n"], ["Difference", "n"], ["MaxRegression", "n"], ["Comparison"]], rows));
  }

  // -- refresh loop -------------------------------------------------------------------------------

  function setStatus(state, text) {
    const status = document.getElementById("status");
    status.dataset.state = state;
    document.getElementById("status-text").textContent = text;
  }

  function render(data) {
    document.getElementById("context").textContent = `${data.group} · endpoint ${data.endpoint}`;
    const classes = data.classes || [];
    const steps = [
      () => drawSummary(data), () => drawAlarms(data.alarms), () => drawTraffic(data.traffic),
      () => drawPredictions(data.predictions, classes), () => drawDrift(data.drift),
      () => drawLiveAccuracy(data.live_accuracy), () => drawModel(data.model),
      () => drawRuns(data.runs), () => drawRegistry(data.registry), () => drawChampion(data.champion),
    ];
    for (const step of steps) {
      try {
        step();
      } catch (error) {
        console.error("dashboard: a panel failed to draw", error);
      }
    }
  }

  async function refresh() {
    clearTimeout(timer);
    if (paused || document.hidden) return;
    try {
      const response = await fetch("/dashboard/data", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      refreshMs = (data.refresh_seconds || 5) * 1000;
      render(data);
      lastUpdate = data.generated_at;
      setStatus("live", `Live · updated ${clockTime(lastUpdate)} UTC · every ${refreshMs / 1000} s`);
    } catch (error) {
      const since = lastUpdate ? `last update ${clockTime(lastUpdate)} UTC` : "no data yet";
      setStatus("stale", `Cannot reach the API server (${error.message}) · ${since} · retrying`);
    } finally {
      if (!paused) timer = setTimeout(refresh, refreshMs);
    }
  }

  document.getElementById("pause").addEventListener("click", (event) => {
    paused = !paused;
    event.target.textContent = paused ? "Resume" : "Pause";
    event.target.setAttribute("aria-pressed", String(paused));
    if (paused) {
      clearTimeout(timer);
      setStatus("paused", `Paused · showing ${clockTime(lastUpdate)} UTC`);
    } else {
      refresh();
    }
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
