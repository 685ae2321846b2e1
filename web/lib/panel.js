// Renders the ComfyFixerSmart panel from plain state. No network, no graph access: every button
// calls one of the `actions` the extension hands in. Side-effect free module.
import { dotted, fmtBytes, fmtEta, fmtPercent, fmtSpeed, h, plural, signature } from "./dom.js";
import { errorWords, failedPackWords, indexWords, loginNeeded, requestErrorWords } from "./words.js";

export const ACTIVE_PHASES = new Set(["scanning", "resolving", "review", "downloading", "verifying"]);
const ACTIVE_ROW_STATES = new Set(["queued", "resolving", "resolved", "review", "downloading", "verifying"]);
const PROBLEM_STATES = new Set(["failed", "cancelled", "not_found", "needs_choice"]);
const FINISHED_OK = new Set(["done", "skipped"]);
const MOVING_STATES = new Set(["downloading", "verifying"]);

const SOURCE_LABELS = {
  civitai: "Civitai",
  huggingface: "Hugging Face",
  embedded: "Link in the workflow",
  local: "Already on this disk",
  catalog: "Model catalog",
  fuzzy: "Similar name",
  user: "The link you gave",
};

const ROW_STATES = {
  missing: ["pi pi-circle", "Missing"],
  queued: ["pi pi-clock", "Waiting"],
  resolving: ["pi pi-spin pi-spinner", "Looking for a source…"],
  resolved: ["pi pi-clock", "Waiting for a download slot"],
  review: ["pi pi-check-square", "Ready to download"],
  downloading: ["pi pi-spin pi-spinner", "Downloading"],
  verifying: ["pi pi-spin pi-spinner", "Checking sha256…"],
  done: ["pi pi-check-circle", "Downloaded and verified"],
  failed: ["pi pi-times-circle", "Failed"],
  cancelled: ["pi pi-ban", "Cancelled"],
  not_found: ["pi pi-question-circle", "No source found"],
  needs_choice: ["pi pi-exclamation-triangle", "Pick a source"],
  skipped: ["pi pi-minus-circle", "Skipped"],
};

// A scan model is a missing_models.json entry: `filename` and `expected_type` (the folder key), as the file contract names them.
let settingsOf = null; // the server's settings of the render in progress (which tokens are saved)

/** "…/models/unet/flux.safetensors" from an absolute path: the part a ComfyUI user recognises. */
export function shortPath(path) {
  if (!path) return "";
  const p = String(path).replaceAll("\\", "/");
  const at = p.lastIndexOf("/models/");
  return at >= 0 ? p.slice(at + 1) : p;
}

/** "goes to models/unet/x.safetensors" with the folder key as a badge: where the file lands. */
function destLine(folder, path, verb = "goes to") {
  if (!folder && !path) return null;
  return h("div.cfx-dest", { title: path ?? "" },
    folder ? h("span.cfx-badge", { title: "ComfyUI model folder (the key loaders ask for)" }, folder) : null,
    path ? [` ${verb} `, nameEl(shortPath(path), "code.cfx-path")] : null);
}

/** An error ({code, message, ...}) in words, with the raw message behind a toggle. */
function errorBlock(error, key, state, actions) {
  return saidBlock(errorWords(error), key, state, actions);
}

/** {words, details} as a line, the details (the server's own message) behind a toggle. */
function saidBlock(said, key, state, actions, tag = "div.cfx-error", testid = "cfx-error") {
  if (!said) return null;
  const open = state.expanded?.has(key);
  return h(tag, { "data-testid": testid },
    h("span", said.words),
    said.details ? [" ", h("a.cfx-toggle", { href: "#", onclick: (e) => { e.preventDefault(); actions.toggle(key); } },
      open ? "Hide details" : "Details")] : null,
    open && said.details ? h("pre.cfx-details", said.details) : null);
}

/** One message per model that needs a login, with the two things to do about it. */
function loginBlock(login, actions) {
  return h("div.cfx-login", { "data-testid": "cfx-login" },
    h("i.pi.pi-lock"),
    h("span", login.text),
    h("span.cfx-spacer"),
    login.licenseUrl ? h("a.cfx-btn", { href: login.licenseUrl, target: "_blank", rel: "noopener noreferrer",
      title: "Open the model's page to accept its license" }, h("i.pi.pi-external-link"), h("span", "Accept license")) : null,
    button(login.service === "civitai" ? "Add key" : "Add token", actions.openSettings, {
      icon: "pi pi-key", title: "Settings → ComfyFixerSmart → Tokens (stored on the server only)", testid: "cfx-add-token",
    }));
}

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

function sourceLine(row, model, state, actions) {
  if (row?.source) {
    const conf = typeof row.confidence === "number" ? `${Math.round(row.confidence * 100)}% sure` : null;
    return h("div.cfx-source",
      h("span.cfx-source-name", SOURCE_LABELS[row.source] ?? row.source),
      h("span.cfx-muted", ` ${dotted("", conf, fmtBytes(row.size ?? row.total))}`),
      row.reason ? h("div.cfx-reason", { title: row.reason }, row.reason) : null);
  }
  // A row waiting for a pick explains itself in its candidate list.
  if (row?.state === "needs_choice" && row.candidates?.length) return null;
  if (row && !ACTIVE_ROW_STATES.has(row.state) && row.reason) {
    const key = `why:${row.name}`;
    const open = state.expanded?.has(key);
    return h("div.cfx-reason", row.reason,
      row.tried?.length ? h("a.cfx-toggle", { href: "#", onclick: (e) => { e.preventDefault(); actions.toggle(key); } },
        open ? "Hide details" : "Details") : null,
      open && row.tried?.length ? h("pre.cfx-details", row.tried.join("\n")) : null);
  }
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
  const [icon, stateLabel] = ROW_STATES[rowState] ?? ROW_STATES.missing;
  const login = loginNeeded(row, settingsOf);
  const label = login ? "Needs a login" : stateLabel;
  const folder = row?.folder ?? model?.expected_type;
  const total = row?.total ?? row?.size ?? 0;
  const downloading = rowState === "downloading" || rowState === "verifying";
  // A login need is said once, by the login block; its raw warning and error are not repeated.
  const warnings = login ? [] : [...(row?.warnings ?? [])];
  if (!row && model?.pickle) warnings.push("pickle format (.ckpt/.pt/.pth/.bin) can run code when loaded; prefer .safetensors");
  if (!folder) warnings.push("ComfyUI folder unknown: the loader is not a core node");

  // A file that failed its check is deleted (its error says part_kept: false): nothing to resume.
  const kept = (rowState === "cancelled" || rowState === "failed") && row?.error?.part_kept !== false
    ? row?.bytes_done ?? 0 : 0;
  const stateText = downloading
    ? dotted(fmtPercent(row.bytes_done, total),
      total ? `${fmtBytes(row.bytes_done)} of ${fmtBytes(total)}` : fmtBytes(row.bytes_done),
      fmtSpeed(row.speed), fmtEta(row.eta))
    : rowState === "done" && row.sha256 ? `sha256 ${row.sha256.slice(0, 12)}…`
      : kept > 0 ? `${fmtBytes(kept)}${total ? ` of ${fmtBytes(total)}` : ""} kept for resuming`
        : !row && model?.partial ? partialText(model.partial)
          : "";

  const busy = state.busy;
  const runActive = isRunActive(state.status);
  const actionButtons = [];
  if (row && ACTIVE_ROW_STATES.has(rowState) && runActive) {
    actionButtons.push(button("Cancel", () => actions.cancel(name), { icon: "pi pi-times", busy: busy.has(`cancel:${name}`) }));
  }
  if (row && (["failed", "cancelled", "not_found"].includes(rowState) || (login && rowState === "skipped"))) {
    actionButtons.push(button(kept > 0 ? "Resume" : "Retry", () => actions.retry(name), { icon: "pi pi-refresh", busy: busy.has(`retry:${name}`) }));
  }
  if (kept > 0) {
    actionButtons.push(button("Discard partial", () => actions.discardPartial(name), {
      icon: "pi pi-trash", title: `Delete the ${fmtBytes(kept)} downloaded so far`, busy: busy.has(`discard:${name}`),
      testid: "cfx-discard",
    }));
  }
  if (!row && !runActive && folder) {
    actionButtons.push(button("Download", () => actions.fix([name]), { icon: "pi pi-download", busy: busy.has("fix") }));
  }
  const canPaste = actions.pasteLink && (["not_found", "needs_choice", "failed", "cancelled"].includes(rowState)
    || (rowState === "missing" && !runActive));
  const sig = signature([model, row, runActive, busy.has("fix"), busy.has(`cancel:${name}`), busy.has(`retry:${name}`),
    busy.has(`discard:${name}`), state.expanded?.has(`err:${name}`), state.expanded?.has(`why:${name}`), state.pasting === name,
    state.compact,
    Boolean(settingsOf?.hf_token_set), Boolean(settingsOf?.civitai_api_key_set)]);
  return h("li.cfx-item", { dataset: { state: login ? "login" : rowState, name, sig } },
    h("div.cfx-item-head",
      h(`i.cfx-state-icon.${(login ? "pi pi-lock" : icon).split(" ").join(".")}`, { title: label }),
      nameEl(name),
      total && !downloading && rowState !== "done" ? h("span.cfx-size", fmtBytes(total)) : null,
      state.compact ? button("", () => actions.toggle(`row:${name}`), { icon: "pi pi-chevron-up", title: "Back to one line" }) : null),
    destLine(folder, row?.path ?? row?.dest ?? model?.dest, rowState === "done" ? "in" : "goes to"),
    usageLine(model ?? { nodes: [] }, actions),
    login ? null : sourceLine(row, model, state, actions),
    warnings.map((w) => h("div.cfx-warning", h("i.pi.pi-exclamation-triangle"), h("span", w))),
    downloading ? progressBar(row.bytes_done, total, rowState) : null,
    login ? loginBlock(login, actions) : null,
    h("div.cfx-item-foot",
      h("span.cfx-state-label", label),
      stateText ? h("span.cfx-muted", stateText) : null,
      h("span.cfx-spacer"),
      canPaste ? button("Paste a link", () => actions.startPaste(name), { icon: "pi pi-link", title: "Give the address of the file yourself", testid: "cfx-paste" }) : null,
      actionButtons),
    login ? null : errorBlock(row?.error, `err:${name}`, state, actions),
    state.pasting === name ? pasteForm(name, state, actions) : null,
    candidatesList(row, actions, busy));
}

/** The name a table line shows: ".safetensors" goes without saying; other extensions (.pth, .ckpt) stay. */
const lineName = (name) => String(name).replace(/\.safetensors$/i, "");

/** The one action a table line offers for its state (the rest are in its details). */
function lineAction(name, row, folder, login, state, actions) {
  const rowState = row?.state ?? "missing";
  const busy = state.busy;
  const runActive = isRunActive(state.status);
  const icon = (label, onClick, iconName, opts = {}) => button("", onClick, { icon: iconName, title: label, ...opts });
  if (login) return icon(login.text, actions.openSettings, "pi pi-key", { testid: "cfx-add-token" });
  if (row && ACTIVE_ROW_STATES.has(rowState) && runActive) {
    return icon(`Cancel ${name}`, () => actions.cancel(name), "pi pi-times", { busy: busy.has(`cancel:${name}`) });
  }
  if (rowState === "needs_choice") return icon("Pick a source", () => actions.toggle(`row:${name}`), "pi pi-list");
  if (rowState === "not_found") return icon("Paste a link", () => actions.startPaste(name), "pi pi-link", { testid: "cfx-paste" });
  if (["failed", "cancelled"].includes(rowState)) {
    return icon(`Retry ${name}`, () => actions.retry(name), "pi pi-refresh", { busy: busy.has(`retry:${name}`) });
  }
  if (!row && !runActive && folder) {
    return icon(`Download ${name}`, () => actions.fix([name]), "pi pi-download", { busy: busy.has("fix") });
  }
  return null;
}

/** One line of the dense table: state, name, folder, size, one action; the whole row on demand. */
function modelLine(name, model, row, state, actions) {
  const rowState = row?.state ?? "missing";
  const [icon, stateLabel] = ROW_STATES[rowState] ?? ROW_STATES.missing;
  const login = loginNeeded(row, settingsOf);
  const label = login ? "Needs a login" : stateLabel;
  const folder = row?.folder ?? model?.expected_type ?? "";
  const total = row?.total ?? row?.size ?? model?.partial?.total ?? 0;
  const moving = MOVING_STATES.has(rowState);
  const size = moving && total ? fmtPercent(row.bytes_done, total) : total ? fmtBytes(total) : "";
  const key = `row:${name}`;
  const sig = signature([model, row, isRunActive(state.status), state.busy.has(`cancel:${name}`),
    state.busy.has(`retry:${name}`), Boolean(settingsOf?.hf_token_set), Boolean(settingsOf?.civitai_api_key_set)]);
  return h("li.cfx-line", { dataset: { state: login ? "login" : rowState, name, sig } },
    h(`i.cfx-state-icon.${(login ? "pi pi-lock" : icon).split(" ").join(".")}`, { title: label }),
    h("a.cfx-line-name", { href: "#", title: `${name}: ${label}. Click for details.`,
      onclick: (e) => { e.preventDefault(); actions.toggle(key); } }, nameEl(lineName(name), "span.cfx-name")),
    h("span.cfx-line-folder", { title: folder ? `goes to models/${folder}/` : "ComfyUI folder unknown" }, folder || "?"),
    h("span.cfx-line-size", size),
    h("span.cfx-line-action", lineAction(name, row, folder, login, state, actions)));
}

/** "12.0 MB of 29.8 MB already here (a stopped download); the rest resumes": said before any run. */
function partialText(partial) {
  const of = partial.total ? ` of ${fmtBytes(partial.total)}` : "";
  return `${fmtBytes(partial.bytes)}${of} already here from a stopped download; the rest resumes`;
}

/** A link the user found: a Hugging Face file or repo, a Civitai page or download, hf:…, civitai:<id>. */
function pasteForm(name, state, actions) {
  const input = h("input.cfx-paste-input", {
    type: "url", placeholder: "https://huggingface.co/… or https://civitai.com/models/… or hf:org/repo/file",
    "aria-label": `Download address for ${name}`, "data-testid": "cfx-paste-input",
    onkeydown: (e) => { if (e.key === "Enter") actions.pasteLink(name, e.target.value.trim()); },
  });
  return h("div.cfx-paste",
    input,
    button("Check and download", (e) => {
      const value = e.currentTarget.parentElement.querySelector("input").value.trim();
      if (value) actions.pasteLink(name, value);
    }, { icon: "pi pi-check", kind: "primary", busy: state.busy.has(`paste:${name}`), testid: "cfx-paste-go" }),
    button("", () => actions.startPaste(null), { icon: "pi pi-times", title: "Close" }));
}

function elsewhereItem(model, state, actions, fetched) {
  const name = model.filename;
  const busy = state.busy;
  const shown = (model.elsewhere ?? []).slice(0, 3);
  // "Use this file" links a copy of another folder in at the model's destination (said like a missing row's);
  // a copy in the loader's own folder is pointed at where it is.
  const links = shown.some((where) => where.folder !== model.expected_type);
  // A copy refused for other bytes than the workflow states: said on the row, with the download instead.
  const said = state.refusedLinks?.get(name);
  const refused = said && said.workflow === (state.report?.workflow ?? state.workflowName) ? said.error : null;
  const sig = signature([model, busy.has(`relink:${name}`), refused, busy.has("fix"), state.expanded?.has(`refused:${name}`),
    isRunActive(state.status), fetched]);
  return h("li.cfx-item", { dataset: { state: "elsewhere", name, sig } },
    h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-link"), nameEl(name)),
    destLine(model.expected_type, links ? model.dest : null),
    usageLine(model, actions),
    shown.map((where) => {
      const sameFolder = where.folder === model.expected_type;
      return h("div.cfx-candidate",
        h("div.cfx-candidate-text",
          h("div", "You have it as ", h("code", `${where.folder}/${where.relpath}`)),
          h("div.cfx-muted", dotted(fmtBytes(where.size),
            sameFolder ? "points the loader at this file"
              : model.expected_type ? `links it into ${model.expected_type}/ without copying` : "the loader's folder is unknown"))),
        button("Use this file", () => actions.relink(model, where), {
          icon: "pi pi-link", kind: "primary", busy: busy.has(`relink:${name}`), testid: "cfx-relink",
        }));
    }),
    errorBlock(refused, `refused:${name}`, state, actions),
    // Once pressed, the run's own row says what became of the download (and offers a retry or a link).
    refused && model.expected_type && !fetched && !isRunActive(state.status) ? h("div.cfx-item-foot", h("span.cfx-spacer"),
      button("Download", () => actions.fix([name]), {
        icon: "pi pi-download", busy: busy.has("fix"), testid: "cfx-download-instead",
        title: "Download the file the workflow names, checked against the sha256 it states",
      })) : null);
}

/** "Install X, then these 2 files": files only the pack's nodes can load wait under it, not as downloads. */
function packFiles(files, actions) {
  if (!files.length) return null;
  return h("div.cfx-pack-files", { "data-testid": "cfx-pack-files" },
    h("div.cfx-muted", `Then ${files.length === 1 ? "this file" : `these ${files.length} files`} (ComfyUI has no folder for ${files.length === 1 ? "it" : "them"} until the pack is installed):`),
    h("ul.cfx-pack-file-list", files.map((m) => h("li", { dataset: { name: m.filename } }, nameEl(m.filename),
      usageLine({ nodes: (m.nodes ?? []).slice(0, 1) }, actions)))));
}

function packItem(pack, files, actions, busy) {
  const commands = (pack.install ?? []).join("\n");
  const manager = pack.manager_installable;
  return h("li.cfx-item", { dataset: { state: "pack", name: pack.id, sig: signature([pack, files, busy.has(`pack:${pack.id}`)]) } },
    h("div.cfx-item-head",
      h("i.cfx-state-icon.pi.pi-box"),
      h("span.cfx-name", `Install ${pack.title || pack.id}`),
      pack.matched_by && pack.matched_by !== "exact" ? h("span.cfx-badge", { title: "How the pack was identified" }, pack.matched_by) : null),
    h("div.cfx-meta", `Provides ${(pack.node_types ?? []).join(", ")}`),
    pack.workflow_says
      ? h("div.cfx-muted", { title: "ComfyUI-Manager's map does not list it for these node types: not installed from here" },
        `The workflow says: ${pack.workflow_says}`)
      : null,
    pack.repository ? h("div.cfx-meta", h("a", { href: pack.repository, target: "_blank", rel: "noopener noreferrer" }, pack.repository)) : null,
    packFiles(files, actions),
    manager
      ? h("div.cfx-item-foot", h("span.cfx-spacer"),
        button("Install with Manager", () => actions.installPack(pack), {
          icon: "pi pi-download", kind: "primary", busy: busy.has(`pack:${pack.id}`),
        }))
      : null,
    commands
      ? h("div.cfx-commands",
        h("div.cfx-muted", manager ? "Or by hand, in ComfyUI's folder:" : "Install by hand, in ComfyUI's folder:"),
        h("pre.cfx-code", commands),
        button("Copy", () => actions.copy(commands), { icon: "pi pi-copy", title: "Copy the install commands" }))
      : null);
}

/** A pack installed but not loaded (ComfyUI's IMPORT FAILED): which one, its reason, what to do. */
function failedPackItem(failed, state, actions) {
  const said = failedPackWords(failed);
  if (!said) return null;
  const key = `failed:${failed.name}`;
  return h("li.cfx-item", { dataset: { state: "failed-pack", name: failed.name }, "data-testid": "cfx-failed-pack" },
    h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-exclamation-triangle"), h("span.cfx-name", said.title)),
    saidBlock({ words: said.reason, details: said.details }, key, state, actions, "div.cfx-error", "cfx-failed-reason"),
    h("div.cfx-reason", said.todo),
    h("div.cfx-meta", said.fromSource));
}

function unknownNodeItem(node, files, actions) {
  return h("li.cfx-item", { dataset: { state: "node" } },
    h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-question-circle"), h("span.cfx-name", node.node_type)),
    h("div.cfx-reason", "No known node pack provides this type. Search the ComfyUI registry or Manager for it."),
    packFiles(files, actions));
}

function section(title, count, items, hint, list = "ul.cfx-list") {
  if (!items.length) return null;
  return h("section.cfx-section",
    h("h3.cfx-section-title", title, h("span.cfx-count", String(count))),
    hint ? h("div.cfx-section-hint", hint) : null,
    h(list, items));
}

function summaryLine(report) {
  const s = report?.summary;
  if (!s) return null;
  const parts = [
    s.missing ? h("span.cfx-chip.cfx-chip-missing", { "data-testid": "cfx-missing-count" }, `${s.missing} missing`) : null,
    s.elsewhere ? h("span.cfx-chip.cfx-chip-elsewhere", `${s.elsewhere} on disk elsewhere`) : null,
    s.missing_nodes ? h("span.cfx-chip.cfx-chip-missing", plural(s.missing_nodes, "node type") + " missing") : null,
    s.for_missing_packs ? h("span.cfx-chip", { title: "Only a node pack that is not installed can load these" },
      `${s.for_missing_packs} wait for a pack`) : null,
    s.unsafe ? h("span.cfx-chip.cfx-chip-missing", `${s.unsafe} refused`) : null,
    s.present ? h("span.cfx-chip", `${s.present} present`) : null,
  ];
  return h("div.cfx-summary", parts);
}

/** Counts a person reads: a row that needs a login is not a failure, it waits for the user. */
function rowCounts(rows) {
  const c = { done: 0, failed: 0, login: 0, not_found: 0, needs_choice: 0, cancelled: 0, skipped: 0 };
  for (const r of rows) {
    // A file left out of the review for a login still needs one: not "skipped", not "All done".
    if (loginNeeded(r, settingsOf) && (PROBLEM_STATES.has(r.state) || r.state === "skipped")) c.login += 1;
    else if (r.state in c) c[r.state] += 1;
  }
  return c;
}

function countsText(c) {
  return dotted(
    c.done ? `${c.done} downloaded and verified` : null,
    c.failed ? `${c.failed} failed` : null,
    c.login ? `${c.login} need${c.login === 1 ? "s" : ""} a login` : null,
    c.not_found ? `${c.not_found} not found` : null,
    c.needs_choice ? `${c.needs_choice} to pick` : null,
    c.cancelled ? `${c.cancelled} cancelled` : null,
    c.skipped ? `${c.skipped} skipped` : null);
}

/**
 * "3 done · 1 failed · 12 left": the files this run is taking, finished and failed counted apart
 * (a failure is not "finished"); rows left to the user (not found, to pick, a login) are not in it.
 */
export function progressCounts(rows) {
  const taking = rows.filter((r) => !r.carried && !(["not_found", "needs_choice"].includes(r.state)
    || (r.state === "skipped" && loginNeeded(r, settingsOf))));
  const done = taking.filter((r) => FINISHED_OK.has(r.state)).length;
  const failed = taking.filter((r) => r.state === "failed" || r.state === "cancelled").length;
  const left = taking.length - done - failed;
  return { done, failed, left, text: dotted(`${done} done`, failed ? `${failed} failed` : null, `${left} left`) };
}

/** The overall time left (smoothed by the extension), only when every open file's size is known (else it
 *  would promise too soon); files waiting for a slot count once their size is known. */
function overallEta(rows, eta) {
  const open = rows.filter((r) => !r.carried && ACTIVE_ROW_STATES.has(r.state));
  if (!open.length || open.some((r) => !(r.total ?? r.size) || r.state === "resolving")) return "";
  return fmtEta(eta);
}

/** A run for another workflow: said, with a way to it, never mixed into this workflow's rows. */
function otherRunBanner(status, state, actions) {
  const data = status.data;
  const rows = data.models ?? [];
  const verb = status.phase === "review" ? "Waiting for your review" : "Downloading";
  const queued = (status.queued ?? []).includes(state.workflowName);
  return h("div.cfx-run.cfx-run-other", { "data-testid": "cfx-other-run" },
    h("div.cfx-run-title", `${verb} for ${data.workflow}`),
    queued ? h("div.cfx-queued", { "data-testid": "cfx-queued" }, h("i.pi.pi-clock"),
      h("span", `The fix for ${state.workflowName} is queued: it starts by itself when this one ends.`),
      button("Take off the queue", () => actions.unqueue(state.workflowName), {
        icon: "pi pi-times", busy: state.busy.has(`unqueue:${state.workflowName}`), testid: "cfx-unqueue",
        title: `Do not start the fix for ${state.workflowName} when this one ends`,
      })) : null,
    h("div.cfx-run-foot",
      h("span.cfx-muted", progressCounts(rows).text),
      h("span.cfx-spacer"),
      button(`Open ${data.workflow}`, () => actions.openWorkflow(data.workflow), { icon: "pi pi-arrow-right", testid: "cfx-open-run" }),
      button("Cancel it", () => actions.cancel(null), { icon: "pi pi-stop-circle", kind: "danger", busy: state.busy.has("cancel:*") })));
}

/** "4 models · 12.3 MB + 1 of unknown size": exact, unknown sizes said, never silently left out. */
function sizeWords(count, bytes, unknown) {
  const known = count - unknown;
  const size = unknown === 0 ? fmtBytes(bytes) : known === 0 ? `${unknown} of unknown size`
    : `${fmtBytes(bytes)} + ${unknown} of unknown size`;
  return dotted(plural(count, "model"), size);
}

/** "Download 6 models · 41.2 GB" and, per folder, how many files, how many bytes, and where: nothing moves
 *  before this click. Files that need a login first are left out of the totals and the button. */
function reviewBlock(data, state, actions) {
  const plan = data.plan ?? {};
  const held = (data.models ?? []).filter((r) => r.state === "review" && !r.carried);
  const blocked = held.filter((r) => loginNeeded(r, settingsOf));
  const go = held.filter((r) => !loginNeeded(r, settingsOf));
  const folders = new Map();
  for (const r of go) {
    const planned = (plan.folders ?? []).find((f) => f.folder === r.folder);
    const g = folders.get(r.folder) ?? { folder: r.folder, into: planned?.into ?? `${r.folder}/`, count: 0, bytes: 0, unknown: 0 };
    g.count += 1;
    if (r.size == null) g.unknown += 1;
    else g.bytes += r.size;
    folders.set(r.folder, g);
  }
  const bytes = go.reduce((n, r) => n + (r.size ?? 0), 0);
  const unknown = go.filter((r) => r.size == null).length;
  const total = sizeWords(go.length, bytes, unknown);
  return h("div.cfx-review", { "data-testid": "cfx-review" },
    h("div.cfx-run-title", go.length ? "Found a source for each file below. Nothing is downloaded yet."
      : "Nothing here can be downloaded yet."),
    plan.fits === false ? h("div.cfx-warning", h("i.pi.pi-exclamation-triangle"),
      h("span", `Not enough free space: ${fmtBytes(plan.total_bytes)} to download, ${fmtBytes(plan.free_bytes)} free.`)) : null,
    blocked.length ? h("div.cfx-muted", `${plural(blocked.length, "file")} need${blocked.length === 1 ? "s" : ""} a login first and ${blocked.length === 1 ? "is" : "are"} left out.`) : null,
    plan.sizing ? h("div.cfx-muted", { "data-testid": "cfx-sizing" }, h("i.pi.pi-spin.pi-spinner"), ` Asking the sources the size of ${plural(plan.sizing, "file")}…`) : null,
    go.length ? h("ul.cfx-review-folders", { "data-testid": "cfx-review-folders" }, [...folders.values()].map((g) => h("li",
      h("code.cfx-path", g.into), h("span.cfx-muted", ` ${sizeWords(g.count, g.bytes, g.unknown)}`)))) : null,
    go.length && plan.free_bytes != null ? h("div.cfx-muted", `Free: ${fmtBytes(plan.free_bytes)}`) : null,
    h("div.cfx-review-actions",
      go.length ? button(`Download ${total}`, () => actions.approve(go.map((r) => r.name)), {
        icon: "pi pi-download", kind: "primary", busy: state.busy.has("approve"), testid: "cfx-approve",
        title: `Download ${total} into the folders listed`,
      }) : null,
      button("Cancel", () => actions.cancel(null), { icon: "pi pi-times", busy: state.busy.has("cancel:*") })));
}

/** How a workflow's run ended, counted from its rows. */
function endedBanner(workflow, rows) {
  const c = rowCounts(rows);
  const ok = c.failed + c.not_found + c.needs_choice + c.cancelled + c.login === 0;
  const text = countsText(c) || "Nothing was downloaded";
  return h(`div.cfx-banner.cfx-banner-${ok ? "ok" : "warn"}`, { "data-testid": "cfx-summary" },
    h(`i.pi.${ok ? "pi-check-circle" : "pi-exclamation-triangle"}`),
    h("div", h("div.cfx-banner-title", `${ok ? "All done" : "Finished with problems"} for ${workflow}`), h("div", text)));
}

function runBlock(status, state, actions) {
  const data = status?.data;
  if (!data?.models?.length && !isRunActive(status)) return null;
  const active = isRunActive(status);
  const rows = data?.models ?? [];
  if (status.phase === "review") return reviewBlock(data, state, actions);
  if (!active) return data?.summary ? endedBanner(data.workflow, rows) : null;
  const overall = data?.overall ?? {};
  const phase = { scanning: "Scanning", resolving: "Finding sources", downloading: "Downloading", verifying: "Verifying" }[status.phase];
  return h("div.cfx-run", { "data-testid": "cfx-run" },
    h("div.cfx-run-title", `${phase} for ${data.workflow}: `, h("span", { "data-testid": "cfx-run-counts" }, progressCounts(rows).text)),
    progressBar(overall.bytes_done ?? 0, overall.total ?? 0, "downloading"),
    h("div.cfx-run-foot",
      h("span.cfx-muted", { "data-testid": "cfx-run-numbers" }, dotted(
        overall.total ? `${fmtBytes(overall.bytes_done)} of ${fmtBytes(overall.total)}` : null,
        fmtSpeed(state.speed ?? overall.speed), overallEta(rows, state.eta)) || "Preparing…"),
      h("span.cfx-spacer"),
      button("Cancel all", () => actions.cancel(null), { icon: "pi pi-stop-circle", kind: "danger", busy: state.busy.has("cancel:*") })));
}

// Problems first: what needs the user, then what is moving, then what has not started; finished
// rows fold into one line.
function rowGroup(row) {
  if (!row) return "missing";
  if (PROBLEM_STATES.has(row.state) || loginNeeded(row, settingsOf)) return "attention";
  if (FINISHED_OK.has(row.state)) return "finished";
  return "active";
}

/** One quiet line while the background hash index reads the disk (the status's `index`): how far, how fast at
 *  most, and where to turn it off; nothing when it is idle, done or off. */
function indexLine(index, state, actions) {
  const said = indexWords(index);
  if (!said) return null;
  const open = state.expanded?.has("index");
  return h("div.cfx-index", { "data-testid": "cfx-index", title: said.title, dataset: { state: index.state } },
    h(`i.pi.${said.paused ? "pi-pause" : index.state === "failed" ? "pi-exclamation-triangle" : "pi-database"}`),
    said.text, " · ",
    h("a", { href: "#", onclick: (e) => { e.preventDefault(); actions.openSettings(); }, "data-testid": "cfx-index-settings" },
      "Settings"),
    " to turn off",
    said.details ? [" · ", h("a.cfx-toggle", { href: "#", onclick: (e) => { e.preventDefault(); actions.toggle("index"); } },
      open ? "Hide details" : "Details")] : null,
    open && said.details ? h("pre.cfx-details", said.details) : null);
}

/** The errors of this workflow's queued fix that could not start (the server says which workflow). */
function queuedErrors(status, workflow) {
  return (status?.errors ?? []).filter((e) => e.details === `queued:${workflow}`).slice(-1);
}

/**
 * Build the panel's DOM for `state`:
 * {workflowName, report, scanning, scanError: {code, message}|null, status, busy: Set<string>,
 *  notice: {kind, text, details, workflow}|null,
 *  compact, showDone, expanded: Set<string>, pasting, theirList, eta, speed}
 * The extension morphs the live panel into this tree (dom.js `morph`), so rebuilding on every
 * status event touches only what changed.
 */
export function renderPanel(state, actions) {
  const { report, status } = state;
  settingsOf = state.settings;
  const current = report?.workflow ?? state.workflowName;
  const runWorkflow = status?.data?.workflow;
  // A run belongs to the workflow it was started for: another workflow's run is only a banner.
  const sameWorkflow = !runWorkflow || runWorkflow === current;
  const runActive = isRunActive(status);
  const reportModels = report?.models ?? [];
  const byName = new Map(reportModels.map((m) => [m.filename, m]));
  const waitingForPack = reportModels.filter((m) => m.needs_pack);
  const missingNames = reportModels.filter((m) => m.state === "missing" && !m.needs_pack).map((m) => m.filename);
  const missingSet = new Set(missingNames);
  // This workflow's rows: its run's, or while another workflow's run is on, what its own runs left.
  // Rows an earlier run left stay as they were, unless the file has turned up since (a rescan says so).
  const ownRows = sameWorkflow && status?.data?.models?.length ? status.data.models : report?.rows ?? [];
  const runRows = new Map(ownRows
    .filter((r) => !r.carried || r.state === "done" || !report || missingSet.has(r.name))
    .filter((r) => !byName.get(r.name)?.needs_pack)
    .map((r) => [r.name, r]));
  const names = [...new Set([...runRows.keys(), ...missingNames])];
  const rowFor = (n) => runRows.get(n);
  const stillMissing = missingNames.filter((n) => !rowFor(n) || ["failed", "cancelled", "not_found"].includes(rowFor(n).state));
  // The button promises downloads: a file the last run found no source for is not one (its row
  // says why and takes a link); one not tried yet gets its source looked up by the click.
  const downloadable = stillMissing.filter((n) => (!rowFor(n) || rowFor(n).source) && (rowFor(n)?.folder ?? byName.get(n)?.expected_type));
  const groups = { attention: [], active: [], missing: [], finished: [] };
  for (const n of names) groups[rowGroup(rowFor(n))].push(n);
  // Files moving now lead their group; those waiting for a slot follow, so the bars are in view.
  groups.active.sort((a, b) => MOVING_STATES.has(rowFor(b)?.state) - MOVING_STATES.has(rowFor(a)?.state));
  const item = (n) => (state.compact && !state.expanded?.has(`row:${n}`) && state.pasting !== n
    ? modelLine(n, byName.get(n), rowFor(n), state, actions)
    : modelItem(n, byName.get(n), rowFor(n), state, actions));

  const elsewhere = reportModels.filter((m) => m.state === "elsewhere");
  const unsafe = reportModels.filter((m) => m.state === "unsafe");
  // Packs installed but not loaded: installing them again is no fix, so their node types are not offered below.
  const failedPacks = report?.failed_packs ?? [];
  const failedTypes = new Set(failedPacks.flatMap((p) => p.node_types ?? []));
  const packs = (report?.packs ?? []).filter((p) => !(p.node_types ?? []).every((t) => failedTypes.has(t)));
  const packed = new Set(packs.flatMap((p) => p.node_types ?? []));
  const unknownNodes = (report?.missing_nodes ?? []).filter((n) => !packed.has(n.node_type) && !failedTypes.has(n.node_type));
  const filesOf = (id, types) => waitingForPack.filter((m) => m.needs_pack === id || types.includes(m.needs_pack));
  const nothingWrong = report && !names.length && !elsewhere.length && !unsafe.length && !(report.missing_nodes ?? []).length;
  const busyElsewhere = runActive && !sameWorkflow;
  const finishedRows = groups.finished.map(rowFor);
  const queuedHere = (status?.queued ?? []).includes(current);
  // This workflow's last run ended and another workflow's run (a queued fix starts at once) holds the
  // status: the panel still says how this one went, from what the server kept of it.
  const ownEnded = !sameWorkflow && !queuedHere && report?.last_run ? endedBanner(current, [...runRows.values()]) : null;
  const bannerShown = Boolean(ownEnded) || (sameWorkflow && !runActive && Boolean(status?.data?.summary));
  const notice = state.notice && (!state.notice.workflow || state.notice.workflow === current) ? state.notice : null;
  const list = state.compact ? "ul.cfx-table" : "ul.cfx-list";

  return h(`div.cfx-panel${state.compact ? ".cfx-compact" : ""}`, { "data-testid": "cfx-panel" },
    h("header.cfx-head",
      h("div.cfx-head-text",
        h("div.cfx-title", "Missing models"),
        h("div.cfx-muted", { title: "The workflow open on the canvas" }, state.workflowName ?? "")),
      button("", actions.toggleCompact, {
        icon: state.compact ? "pi pi-window-maximize" : "pi pi-list", testid: "cfx-compact",
        title: state.compact ? "Show every detail" : "Table: one line per file",
      }),
      button("", actions.scan, { icon: "pi pi-refresh", title: "Scan the open workflow again", busy: state.scanning, testid: "cfx-scan" })),
    summaryLine(report),
    saidBlock(requestErrorWords(state.scanError), "scan-error", state, actions, "div.cfx-error", "cfx-scan-error"),
    notice ? h(`div.cfx-notice.cfx-notice-${notice.kind}`, { "data-testid": "cfx-notice" }, notice.text,
      notice.details ? [" ", h("a.cfx-toggle", { href: "#", onclick: (e) => { e.preventDefault(); actions.toggle("notice"); } },
        state.expanded?.has("notice") ? "Hide details" : "Details")] : null,
      notice.details && state.expanded?.has("notice") ? h("pre.cfx-details", notice.details) : null,
      notice.action ? [" ", h("a", { href: "#", onclick: (e) => { e.preventDefault(); notice.action.run(); } }, notice.action.label)] : null) : null,
    queuedErrors(status, current).map((e) => h("div.cfx-notice.cfx-notice-error", { "data-testid": "cfx-queued-error" }, e.error)),
    ownEnded,
    busyElsewhere || (!sameWorkflow && status?.phase === "review") ? otherRunBanner(status, state, actions) : sameWorkflow ? runBlock(status, state, actions) : null,
    !runActive && !queuedHere && downloadable.length
      ? h("div.cfx-cta", button(`Download ${plural(downloadable.length, "missing model")}`, () => actions.fix(downloadable), {
        icon: "pi pi-download", kind: "primary", busy: state.busy.has("fix"), testid: "cfx-fix-all",
        title: "Finds a source for each file and shows what will be downloaded where",
      }))
      : null,
    state.theirList && stillMissing.length ? h("div.cfx-section-hint", { "data-testid": "cfx-their-list-note" },
      "ComfyUI's own Download buttons save to your browser's Downloads folder; this panel puts each file into the right models/ folder and checks it.") : null,
    nothingWrong ? h("div.cfx-empty", h("i.pi.pi-check-circle"), h("span", "Every model and node this workflow uses is here.")) : null,
    !report && !status?.data?.models?.length && state.scanning ? h("div.cfx-empty", "Scanning the workflow…") : null,
    section("Node packs that failed to load", failedPacks.length, failedPacks.map((p) => failedPackItem(p, state, actions)),
      null),
    section("Needs you", groups.attention.length, groups.attention.map(item), null, list),
    section(status?.phase === "review" ? "Ready to download" : "In progress", groups.active.length, groups.active.map(item), null, list),
    section("Missing", groups.missing.length, groups.missing.map(item), null, list),
    finishedRows.length ? h("section.cfx-section",
      h("div.cfx-done-line", { "data-testid": "cfx-done-line" },
        h("i.pi.pi-check-circle"),
        // Under the run's own banner the counts are already said: only offer the list.
        h("span", bannerShown ? `${plural(finishedRows.length, "finished file")}` : countsText(rowCounts(finishedRows))),
        h("span.cfx-spacer"),
        h("a.cfx-toggle", { href: "#", onclick: (e) => { e.preventDefault(); actions.toggleDone(); } }, state.showDone ? "Hide" : "Show")),
      state.showDone ? h(list, groups.finished.map(item)) : null) : null,
    section("On disk in another place", elsewhere.length, elsewhere.map((m) => elsewhereItem(m, state, actions, runRows.has(m.filename))),
      "The file is already on this computer under another folder or name."),
    section("Missing node packs", packs.length + unknownNodes.length,
      [...packs.map((p) => packItem(p, filesOf(p.id, p.node_types ?? []), actions, state.busy)),
        ...unknownNodes.map((n) => unknownNodeItem(n, filesOf(n.node_type, [n.node_type]), actions))],
      packs.some((p) => p.manager_installable) ? null : "Restart ComfyUI after installing."),
    section("Refused names", unsafe.length, unsafe.map((m) => h("li.cfx-item", { dataset: { state: "unsafe" } },
      h("div.cfx-item-head", h("i.cfx-state-icon.pi.pi-ban"), nameEl(m.filename)),
      h("div.cfx-error", m.unsafe_reason ?? "unsafe file name")))),
    indexLine(status?.index, state, actions),
    h("footer.cfx-foot",
      button("Make this workflow portable", actions.portable, {
        icon: "pi pi-file-export", title: "Save a copy that carries a download link for every model it uses",
        busy: state.busy.has("portable"), testid: "cfx-portable",
      }),
      button("Save lockfile", actions.lockfile, {
        icon: "pi pi-lock", title: "Save models.lock.json: every model this workflow uses, pinned by sha256",
        busy: state.busy.has("lockfile"), testid: "cfx-lockfile",
      }),
      button("", actions.openSettings, { icon: "pi pi-cog", title: "ComfyFixerSmart settings (tokens, downloads)" })));
}
