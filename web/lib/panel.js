// Renders the ComfyFixerSmart panel from plain state. No network, no graph access: every button
// calls one of the `actions` the extension hands in. Side-effect free module.
import { dotted, fmtBytes, fmtEta, fmtPercent, fmtSpeed, h, plural, signature } from "./dom.js";

export const ACTIVE_PHASES = new Set(["scanning", "resolving", "downloading", "verifying"]);
const ACTIVE_ROW_STATES = new Set(["queued", "resolving", "resolved", "downloading", "verifying"]);

const SOURCE_LABELS = {
  civitai: "Civitai",
  huggingface: "Hugging Face",
  embedded: "Link in the workflow",
  local: "Already on this disk",
  catalog: "Model catalog",
  fuzzy: "Similar name",
};

const ROW_STATES = {
  missing: ["pi pi-circle", "Missing"],
  queued: ["pi pi-clock", "Waiting"],
  resolving: ["pi pi-spin pi-spinner", "Looking for a source…"],
  resolved: ["pi pi-clock", "Source found, starting"],
  downloading: ["pi pi-spin pi-spinner", "Downloading"],
  verifying: ["pi pi-spin pi-spinner", "Checking sha256…"],
  done: ["pi pi-check-circle", "Downloaded and verified"],
  failed: ["pi pi-times-circle", "Failed"],
  cancelled: ["pi pi-ban", "Cancelled"],
  not_found: ["pi pi-question-circle", "No source found"],
  needs_choice: ["pi pi-exclamation-triangle", "Pick a source"],
  skipped: ["pi pi-minus-circle", "Skipped"],
};

const modelName = (m) => m.name ?? m.filename;

/** A file name that wraps after "_", "-", "." and "/" in a narrow sidebar instead of mid-word. */
function nameEl(name, tag = "span.cfx-name") {
  return h(tag, { title: name }, String(name).split(/(?<=[_\-./])/).flatMap((part, i) => (i ? [h("wbr"), part] : [part])));
}
export const isRunActive = (status) => ACTIVE_PHASES.has(status?.phase);

function button(label, onClick, { icon, kind = "", title, busy = false, disabled = false, testid } = {}) {
  return h(`button.cfx-btn${kind ? `.cfx-btn-${kind}` : ""}`,
    { type: "button", title, disabled: disabled || busy, onclick: onClick, "data-testid": testid },
    icon ? h(`i.${(busy ? "pi pi-spin pi-spinner" : icon).split(" ").join(".")}`) : null,
    label ? h("span", label) : null);
}

function progressBar(done, total, state) {
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  return h("div.cfx-bar", { role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": Math.round(pct) },
    h("div.cfx-bar-fill", { style: { width: `${pct}%` }, dataset: { state: state ?? "" } }));
}

function usageLine(model, actions, folder) {
  const nodes = model.nodes ?? [];
  const badge = folder ? h("span.cfx-badge", { title: "ComfyUI model folder" }, folder) : null;
  if (!nodes.length) return badge ? h("div.cfx-meta", badge) : null;
  const shown = nodes.slice(0, 3).map((u) => h("a.cfx-node", {
    href: "#", title: "Show this node on the canvas",
    onclick: (e) => { e.preventDefault(); actions.reveal(u); },
  }, `${u.node_type} #${u.node_id}${u.subgraph_path?.length ? ` in ${u.subgraph_path.join(" › ")}` : ""}`));
  const more = nodes.length > 3 ? ` and ${nodes.length - 3} more` : "";
  return h("div.cfx-meta", badge, badge ? " " : null, "used by ", shown.flatMap((el, i) => (i ? [", ", el] : [el])), more);
}

function sourceLine(row, model) {
  if (row?.source) {
    const conf = typeof row.confidence === "number" ? `${Math.round(row.confidence * 100)}% sure` : null;
    return h("div.cfx-source",
      h("span.cfx-source-name", SOURCE_LABELS[row.source] ?? row.source),
      h("span.cfx-muted", ` ${dotted("", conf, fmtBytes(row.size ?? row.total))}`),
      row.reason ? h("div.cfx-reason", { title: row.reason }, row.reason) : null);
  }
  // A row waiting for a pick explains itself in its candidate list.
  if (row?.state === "needs_choice" && row.candidates?.length) return null;
  if (row && !ACTIVE_ROW_STATES.has(row.state) && row.reason) return h("div.cfx-reason", row.reason);
  const url = model?.hints?.url;
  if (url) {
    let host = url;
    try { host = new URL(url).host; } catch { /* keep the raw text */ }
    return h("div.cfx-source", h("span.cfx-source-name", "Link in the workflow"), h("span.cfx-muted", ` · ${host}`));
  }
  if (!row) return h("div.cfx-reason", "Civitai and Hugging Face are searched when you download.");
  return null;
}

function candidatesList(row, actions, busy) {
  if (row?.state !== "needs_choice" || !row.candidates?.length) return null;
  return h("div.cfx-candidates",
    h("div.cfx-candidates-title", "Not sure which file this is. Pick one:"),
    row.candidates.map((c) => h("div.cfx-candidate",
      h("div.cfx-candidate-text",
        h("div", h("span.cfx-source-name", SOURCE_LABELS[c.source] ?? c.source), h("span.cfx-muted", ` ${dotted("",
          typeof c.confidence === "number" ? `${Math.round(c.confidence * 100)}% sure` : null, fmtBytes(c.size))}`)),
        c.reason ? h("div.cfx-reason", { title: c.reason }, c.reason) : null),
      button("Use this one", () => actions.retry(row.name, c.url ?? c.local_path), {
        icon: "pi pi-download", title: `Download ${c.filename ?? "this file"} as ${row.name}`,
        busy: busy.has(`retry:${row.name}`),
      }))));
}

function modelItem(name, model, row, state, actions) {
  const rowState = row?.state ?? "missing";
  const [icon, label] = ROW_STATES[rowState] ?? ROW_STATES.missing;
  const folder = row?.folder ?? model?.folder;
  const total = row?.total ?? row?.size ?? 0;
  const downloading = rowState === "downloading" || rowState === "verifying";
  const warnings = [...(row?.warnings ?? [])];
  if (!row && model?.pickle) warnings.push("pickle format (.ckpt/.pt/.pth/.bin) can run code when loaded; prefer .safetensors");
  if (!folder) warnings.push("ComfyUI folder unknown: the loader is not a core node");

  const stateText = downloading
    ? dotted(fmtPercent(row.bytes_done, total),
      total ? `${fmtBytes(row.bytes_done)} of ${fmtBytes(total)}` : fmtBytes(row.bytes_done),
      fmtSpeed(row.speed), fmtEta(row.eta))
    : rowState === "done" && row.sha256 ? `sha256 ${row.sha256.slice(0, 12)}…` : "";

  const busy = state.busy;
  const runActive = isRunActive(state.status);
  const actionButtons = [];
  if (row && ACTIVE_ROW_STATES.has(rowState) && runActive) {
    actionButtons.push(button("Cancel", () => actions.cancel(name), { icon: "pi pi-times", busy: busy.has(`cancel:${name}`) }));
  }
  if (row && ["failed", "cancelled", "not_found"].includes(rowState)) {
    actionButtons.push(button("Retry", () => actions.retry(name), { icon: "pi pi-refresh", busy: busy.has(`retry:${name}`) }));
  }
  const needsToken = /CIVITAI_API_KEY|HF_TOKEN/.test(`${row?.error ?? ""} ${warnings.join(" ")}`);
  if (needsToken && !ACTIVE_ROW_STATES.has(rowState)) {
    actionButtons.unshift(button("Add key in settings", actions.openSettings, {
      icon: "pi pi-key", title: "Settings → ComfyFixerSmart → Tokens (stored on the server only)",
    }));
  }
  if (!row && !runActive && folder) {
    actionButtons.push(button("Download", () => actions.fix([name]), { icon: "pi pi-download", busy: busy.has("fix") }));
  }

  const sig = signature([model, row, runActive, busy.has("fix"), busy.has(`cancel:${name}`), busy.has(`retry:${name}`)]);
  return h("li.cfx-item", { dataset: { state: rowState, name, sig } },
    h("div.cfx-item-head",
      h(`i.cfx-state-icon.${icon.split(" ").join(".")}`, { title: label }),
      nameEl(name)),
    usageLine(model ?? { nodes: [] }, actions, folder),
    sourceLine(row, model),
    warnings.map((w) => h("div.cfx-warning", h("i.pi.pi-exclamation-triangle"), h("span", w))),
    downloading ? progressBar(row.bytes_done, total, rowState) : null,
    h("div.cfx-item-foot",
      h("span.cfx-state-label", label),
      stateText ? h("span.cfx-muted", stateText) : null,
      h("span.cfx-spacer"),
      actionButtons),
    row?.error ? h("div.cfx-error", row.error) : null,
    candidatesList(row, actions, busy));
}

function elsewhereItem(model, actions, busy) {
  const name = modelName(model);
  return h("li.cfx-item", { dataset: { state: "elsewhere", name, sig: signature([model, busy.has(`relink:${name}`)]) } },
    h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-link"), nameEl(name)),
    usageLine(model, actions, model.folder),
    (model.elsewhere ?? []).slice(0, 3).map((where) => {
      const sameFolder = where.folder === model.folder;
      return h("div.cfx-candidate",
        h("div.cfx-candidate-text",
          h("div", "You have it as ", h("code", `${where.folder}/${where.relpath}`)),
          h("div.cfx-muted", dotted(fmtBytes(where.size),
            sameFolder ? "points the loader at this file" : `links it into ${model.folder}/ without copying`))),
        button("Use this file", () => actions.relink(model, where), {
          icon: "pi pi-link", kind: "primary", busy: busy.has(`relink:${name}`), testid: "cfx-relink",
        }));
    }));
}

function packItem(pack, actions, busy) {
  const commands = (pack.install ?? []).join("\n");
  return h("li.cfx-item", { dataset: { state: "pack", name: pack.id, sig: signature([pack, busy.has(`pack:${pack.id}`)]) } },
    h("div.cfx-item-head",
      h("i.cfx-state-icon.pi.pi-box"),
      h("span.cfx-name", pack.title || pack.id),
      pack.matched_by && pack.matched_by !== "exact" ? h("span.cfx-badge", { title: "How the pack was identified" }, pack.matched_by) : null),
    h("div.cfx-meta", `Provides ${(pack.node_types ?? []).join(", ")}`),
    pack.repository ? h("div.cfx-meta", h("a", { href: pack.repository, target: "_blank", rel: "noopener noreferrer" }, pack.repository)) : null,
    pack.manager_available
      ? h("div.cfx-item-foot", h("span.cfx-spacer"),
        button("Install with Manager", () => actions.installPack(pack), {
          icon: "pi pi-download", kind: "primary", busy: busy.has(`pack:${pack.id}`),
        }))
      : commands
        ? h("div.cfx-commands",
          h("pre.cfx-code", commands),
          button("Copy", () => actions.copy(commands), { icon: "pi pi-copy", title: "Copy the install commands" }))
        : null);
}

function unknownNodeItem(node) {
  return h("li.cfx-item", { dataset: { state: "node" } },
    h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-question-circle"), h("span.cfx-name", node.node_type)),
    h("div.cfx-reason", "No known node pack provides this type. Search the ComfyUI registry or Manager for it."));
}

function section(title, count, items, hint) {
  if (!items.length) return null;
  return h("section.cfx-section",
    h("h3.cfx-section-title", title, h("span.cfx-count", String(count))),
    hint ? h("div.cfx-section-hint", hint) : null,
    h("ul.cfx-list", items));
}

function summaryLine(report) {
  const s = report?.summary;
  if (!s) return null;
  const parts = [
    s.missing ? h("span.cfx-chip.cfx-chip-missing", `${s.missing} missing`) : null,
    s.elsewhere ? h("span.cfx-chip.cfx-chip-elsewhere", `${s.elsewhere} on disk elsewhere`) : null,
    s.missing_nodes ? h("span.cfx-chip.cfx-chip-missing", plural(s.missing_nodes, "node type") + " missing") : null,
    s.unsafe ? h("span.cfx-chip.cfx-chip-missing", `${s.unsafe} refused`) : null,
    s.present ? h("span.cfx-chip", `${s.present} present`) : null,
  ];
  return h("div.cfx-summary", parts);
}

function runBlock(status, state, actions) {
  const data = status?.data;
  if (!data?.models?.length && !isRunActive(status)) return null;
  const active = isRunActive(status);
  const overall = data?.overall ?? {};
  const rows = data?.models ?? [];
  const finished = rows.filter((r) => !ACTIVE_ROW_STATES.has(r.state)).length;
  if (!active) {
    const s = data?.summary;
    if (!s) return null;
    const ok = (s.failed ?? 0) + (s.not_found ?? 0) + (s.needs_choice ?? 0) + (s.cancelled ?? 0) === 0;
    const text = dotted(
      s.done ? `${s.done} downloaded and verified` : null,
      s.failed ? `${s.failed} failed` : null,
      s.not_found ? `${s.not_found} not found` : null,
      s.needs_choice ? `${s.needs_choice} to pick` : null,
      s.cancelled ? `${s.cancelled} cancelled` : null,
      s.skipped ? `${s.skipped} skipped` : null) || "Nothing was downloaded";
    return h(`div.cfx-banner.cfx-banner-${ok ? "ok" : "warn"}`, { "data-testid": "cfx-summary" },
      h(`i.pi.${ok ? "pi-check-circle" : "pi-exclamation-triangle"}`),
      h("div", h("div.cfx-banner-title", ok ? "All done" : "Finished with problems"), h("div", text)));
  }
  const phase = { scanning: "Scanning", resolving: "Finding sources", downloading: "Downloading", verifying: "Verifying" }[status.phase];
  return h("div.cfx-run", { "data-testid": "cfx-run" },
    h("div.cfx-run-title", `${phase}: ${finished} of ${plural(rows.length, "model")} finished`),
    progressBar(overall.bytes_done ?? 0, overall.total ?? 0, "downloading"),
    h("div.cfx-run-foot",
      h("span.cfx-muted", dotted(
        overall.total ? `${fmtBytes(overall.bytes_done)} of ${fmtBytes(overall.total)}` : null,
        fmtSpeed(overall.speed), fmtEta(overall.eta)) || "Preparing…"),
      h("span.cfx-spacer"),
      button("Cancel all", () => actions.cancel(null), { icon: "pi pi-stop-circle", kind: "danger", busy: state.busy.has("cancel:*") })));
}

/**
 * Build the panel's DOM for `state`:
 * {workflowName, report, scanning, scanError, status, busy: Set<string>, notice: {kind, text}|null}
 * The extension morphs the live panel into this tree (dom.js `morph`), so rebuilding on every
 * status event touches only what changed.
 */
export function renderPanel(state, actions) {
  const { report, status } = state;
  const runActive = isRunActive(status);
  const runRows = new Map((status?.data?.models ?? []).map((r) => [r.name, r]));
  const reportModels = report?.models ?? [];
  const byName = new Map(reportModels.map((m) => [modelName(m), m]));
  // The run shows the rows it works on; a reload mid-run shows them even before a scan answers.
  const sameWorkflow = !report || status?.data?.workflow === report.workflow;
  const missingNames = reportModels.filter((m) => m.state === "missing").map(modelName);
  const names = [...new Set([...(sameWorkflow ? runRows.keys() : []), ...missingNames])];
  const rowFor = (n) => (sameWorkflow ? runRows.get(n) : undefined);
  const stillMissing = missingNames.filter((n) => !rowFor(n) || ["failed", "cancelled", "not_found"].includes(rowFor(n).state));

  const elsewhere = reportModels.filter((m) => m.state === "elsewhere");
  const unsafe = reportModels.filter((m) => m.state === "unsafe");
  const packs = report?.packs ?? [];
  const packed = new Set(packs.flatMap((p) => p.node_types ?? []));
  const unknownNodes = (report?.missing_nodes ?? []).filter((n) => !packed.has(n.node_type));
  const nothingWrong = report && !names.length && !elsewhere.length && !unsafe.length && !(report.missing_nodes ?? []).length;

  return h("div.cfx-panel", { "data-testid": "cfx-panel" },
    h("header.cfx-head",
      h("div.cfx-head-text",
        h("div.cfx-title", "Missing models"),
        h("div.cfx-muted", { title: "The workflow open on the canvas" }, state.workflowName ?? "")),
      button("", actions.scan, { icon: "pi pi-refresh", title: "Scan the open workflow again", busy: state.scanning, testid: "cfx-scan" })),
    summaryLine(report),
    state.scanError ? h("div.cfx-error", state.scanError) : null,
    state.notice ? h(`div.cfx-notice.cfx-notice-${state.notice.kind}`, state.notice.text) : null,
    runBlock(status, state, actions),
    !runActive && stillMissing.length
      ? h("div.cfx-cta", button(`Download ${plural(stillMissing.length, "missing model")}`, () => actions.fix(stillMissing), {
        icon: "pi pi-download", kind: "primary", busy: state.busy.has("fix"), testid: "cfx-fix-all",
      }))
      : null,
    nothingWrong ? h("div.cfx-empty", h("i.pi.pi-check-circle"), h("span", "Every model and node this workflow uses is here.")) : null,
    !report && !status?.data?.models?.length && state.scanning ? h("div.cfx-empty", "Scanning the workflow…") : null,
    section("Models", names.length, names.map((n) => modelItem(n, byName.get(n), rowFor(n), state, actions))),
    section("On disk in another place", elsewhere.length, elsewhere.map((m) => elsewhereItem(m, actions, state.busy)),
      "The file is already on this computer under another folder or name."),
    section("Missing node packs", packs.length + unknownNodes.length,
      [...packs.map((p) => packItem(p, actions, state.busy)), ...unknownNodes.map(unknownNodeItem)],
      packs.some((p) => p.manager_available) ? null : "Restart ComfyUI after installing."),
    section("Refused names", unsafe.length, unsafe.map((m) => h("li.cfx-item", { dataset: { state: "unsafe" } },
      h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-ban"), nameEl(modelName(m))),
      h("div.cfx-error", m.unsafe_reason ?? "unsafe file name")))),
    h("footer.cfx-foot",
      button("Make this workflow portable", actions.portable, {
        icon: "pi pi-file-export", title: "Save a copy that carries a download link for every model it uses",
        busy: state.busy.has("portable"), testid: "cfx-portable",
      }),
      button("", actions.openSettings, { icon: "pi pi-cog", title: "ComfyFixerSmart settings (tokens, downloads)" })));
}
