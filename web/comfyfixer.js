// ComfyFixerSmart in the ComfyUI page: the "Fix missing models" button and command, the panel in
// the sidebar, the notice on workflow load, and the settings. The server does the work
// (/comfyfixer/* routes); this file wires ComfyUI's extension points to it.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { createClient } from "./lib/api.js";
import { dotted, h, morph, plural } from "./lib/dom.js";
import { clearNodeErrors, currentWorkflow, findNode, noteConfiguredGraph, noteLoadedGraph, openWorkflowByName, redrawOnErrorFlags, revealNode, setModelWidgets, workflowName } from "./lib/graph.js";
import { isRunActive, progressCounts, renderPanel } from "./lib/panel.js";
import { Throughput } from "./lib/throughput.js";
import { requestErrorWords } from "./lib/words.js";
import { frontendChecksModels, theirList, watchTheirList } from "./lib/theirs.js";

const EXTENSION = "ComfyFixerSmart";
const TAB_ID = "comfyfixer-models";
const CMD_FIX = "ComfyFixerSmart.FixMissingModels";
const CMD_PANEL = "ComfyFixerSmart.ShowPanel";
const CMD_PORTABLE = "ComfyFixerSmart.MakePortable";
const CMD_DEDUPE = "ComfyFixerSmart.LinkDuplicates";
const FIX_LABEL = "Fix missing models";
// The page's own settings (ComfyUI stores them per user). The server's settings are drawn from the
// schema GET /comfyfixer/settings serves (fixer/app/settings.py): their ids, limits and defaults live there.
const SETTING_REVIEW = "ComfyFixerSmart.Downloads.ReviewFirst";
const SETTING_CHECK_ON_LOAD = "ComfyFixerSmart.General.CheckOnLoad";
const COMPACT_KEY = "ComfyFixerSmart.compact";

const client = createClient(api);
const state = {
  workflowName: null,
  report: null,
  scanning: false,
  scanError: null,
  status: null,
  settings: null,
  busy: new Set(),
  notice: null,
  // The table view: the user's choice once made, else on for workflows with many files.
  compact: localStorage.getItem(COMPACT_KEY) === null ? null : localStorage.getItem(COMPACT_KEY) === "1",
  showDone: false,
  expanded: new Set(),
  refusedLinks: new Map(), // model name -> {workflow, error}: its "Use this file" refused (other bytes)
  pasting: null,
  theirList: false, // the frontend has its own missing-models list (1.27's dialog, 1.58's Issues panel)
  eta: null, // seconds left for the whole run, from bytes left and smoothed throughput (lib/throughput.js)
  speed: null,
};
const TABLE_FROM_ROWS = 12; // from this many files on, the table view is the default
const throughput = new Throughput();
let panelHost = null; // the sidebar's element while the tab is open
let renderQueued = false;
let syncingSettings = false;
const notified = new Set();
let lastToastId = null;

// --- rendering ---------------------------------------------------------------------------------
function rerender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (panelHost?.isConnected) drawPanel();
    updateLegacyButton();
  });
}

let drawnPhase = null;
/** How many file rows the panel would list (the default view depends on it). */
function rowCount() {
  const names = new Set((state.report?.models ?? []).filter((m) => m.state === "missing").map((m) => m.filename));
  for (const r of state.status?.data?.workflow === state.workflowName ? state.status?.data?.models ?? [] : []) names.add(r.name);
  return names.size;
}

function drawPanel() {
  const next = renderPanel({ ...state, compact: state.compact ?? rowCount() >= TABLE_FROM_ROWS }, actions);
  const live = panelHost.firstElementChild;
  if (live) morph(live, next);
  else panelHost.append(next);
  // The review is the question of the moment: bring it into view when it appears.
  const phase = state.status?.phase ?? null;
  if (phase === "review" && drawnPhase !== "review") panelHost.scrollTop = 0;
  drawnPhase = phase;
}

/** A notice belongs to the workflow open when it was said: another workflow's panel never shows it. */
function setNotice(kind, text, action = null, workflow = workflowName(app), details = null) {
  state.notice = text ? { kind, text, action, workflow, details } : null;
  state.expanded.delete("notice");
  rerender();
}

/** A refused or failed call in words (by its code), the server's own message behind the toggle. */
function setErrorNotice(e) {
  const said = requestErrorWords(e);
  setNotice("error", said?.words || e.message, null, workflowName(app), said?.details ?? null);
}

async function withBusy(key, fn) {
  if (state.busy.has(key)) return undefined;
  state.busy.add(key);
  // A new action replaces this workflow's notice; another workflow's stays its own.
  if (!state.notice || state.notice.workflow === workflowName(app)) setNotice(null, null);
  try {
    return await fn();
  } catch (e) {
    setErrorNotice(e);
    return undefined;
  } finally {
    state.busy.delete(key);
    rerender();
  }
}

// --- scanning and runs ---------------------------------------------------------------------------
let scanSeq = 0;
async function scan() {
  const seq = ++scanSeq;
  state.scanning = true;
  state.workflowName = workflowName(app);
  rerender();
  try {
    const report = await client.scan(currentWorkflow(app), state.workflowName);
    if (seq === scanSeq) {
      state.report = report;
      state.scanError = null;
      theirs?.refresh();
    }
    return report;
  } catch (e) {
    if (seq === scanSeq) state.scanError = e; // worded by its code (lib/words.js requestErrorWords)
    return null;
  } finally {
    if (seq === scanSeq) state.scanning = false;
    rerender();
  }
}

function missingWithFolder(report) {
  return (report?.models ?? []).filter((m) => m.state === "missing" && m.expected_type).map((m) => m.filename);
}

const reviewFirst = () => app.extensionManager?.setting?.get(SETTING_REVIEW) !== false;

async function fix(items) {
  await withBusy("fix", async () => {
    onStatus(await client.fix(currentWorkflow(app), workflowName(app), items, reviewFirst()));
  });
}

/** The button, the command and the notice's action: open the panel, scan, find what is missing. */
async function fixMissingModels() {
  openPanel();
  const report = await scan();
  if (!report) return;
  // This workflow's own run is on show in the panel; another workflow's run queues this one (the server).
  if (isRunActive(state.status) && state.status?.data?.workflow === report.workflow) return;
  const items = missingWithFolder(report);
  if (items.length) await fix(items);
  else setNotice("ok", "Nothing to download: every model this workflow names with a known folder is here.");
}

let lastStatusAt = 0;
let theirs = null;
function onStatus(doc) {
  // A poll answer can arrive after a newer websocket event; keep the newest document.
  if (doc?.timestamp && state.status?.timestamp && doc.timestamp < state.status.timestamp) return;
  state.status = doc;
  lastStatusAt = Date.now();
  measureThroughput(doc);
  onFilesLanded(doc);
  theirs?.refresh();
  rerender();
}

/** The run's ETA from the bytes left and the throughput measured over the last seconds (smoothed), not
 *  from each file's momentary speed: the number moves steadily instead of jumping. */
function measureThroughput(doc) {
  const data = doc?.data;
  if (!isRunActive(doc) || !data?.overall) {
    throughput.reset();
    state.eta = state.speed = null;
    return;
  }
  const overall = data.overall;
  throughput.add(data.run_id, overall.bytes_done ?? 0, performance.now() / 1000);
  state.speed = throughput.rate();
  // Bytes left: every file still to come, those waiting for a slot by the size their source said.
  const open = (data.models ?? []).filter((r) => !r.carried && ["resolved", "downloading", "verifying"].includes(r.state));
  const unknown = open.some((r) => !(r.total ?? r.size));
  const left = open.reduce((n, r) => n + Math.max(0, (r.total ?? r.size ?? 0) - (r.bytes_done ?? 0)), 0);
  state.eta = unknown ? null : throughput.eta(left);
}

// Files seen landed, per run: each one's loaders are refreshed once, as soon as it lands.
const landedSeen = new Set();
let landRefresh = null;
// Fetching the node definitions again (so the combos list the new files) makes 1.27 show two toasts:
// files landing close together share one refresh, at most one per interval.
const REFRESH_INTERVAL_MS = 5000;
let lastListRefresh = 0;
let pendingLanded = [];
let landTimer = null;

/** A file that landed (its row turned "done") is usable at once: the combos learn it, a pasted file's
 *  loader is repointed to its real name, and the red outline of its loader goes, without waiting for
 *  the run's end. */
function onFilesLanded(doc) {
  const data = doc?.data;
  if (!data?.models || data.workflow !== workflowName(app)) return;
  const fresh = data.models.filter((r) => r.state === "done" && !r.carried && !landedSeen.has(`${data.run_id}|${r.name}`));
  if (!fresh.length) return;
  for (const r of fresh) landedSeen.add(`${data.run_id}|${r.name}`);
  const files = fresh.map((r) => ({ name: r.name, folder: r.folder, ...(r.saved_as ? { saved_as: r.saved_as } : {}) }));
  // The red outline goes at once: the file is there, whatever the combos list yet.
  clearModelErrors(new Set(files.map((f) => f.name)));
  pendingLanded.push(...files);
  if (landTimer) return;
  const wait = Math.max(0, lastListRefresh + REFRESH_INTERVAL_MS - Date.now());
  landTimer = setTimeout(() => {
    landTimer = null;
    const batch = pendingLanded;
    pendingLanded = [];
    lastListRefresh = Date.now();
    landRefresh = (landRefresh ?? Promise.resolve()).then(async () => {
      await refreshModelLists();
      repointRenamed(batch);
      clearModelErrors(new Set(batch.map((f) => f.name)));
    });
  }, wait);
}

/** What our run is fetching for the open workflow now (their browser downloads for these hide). */
function fetchingNames() {
  const data = state.status?.data;
  if (!isRunActive(state.status) || data?.workflow !== workflowName(app)) return new Set();
  return new Set((data.models ?? []).filter((r) => ["resolved", "downloading", "verifying", "review"].includes(r.state)).map((r) => r.name));
}

/** Our count for their list ("28 missing · 2 wait for a node pack · 1 on disk elsewhere"): one count. */
function ourCount() {
  const s = state.report?.workflow === workflowName(app) ? state.report.summary : null;
  if (!s) return "";
  return dotted(`${s.missing ?? 0} missing`, s.for_missing_packs ? `${s.for_missing_packs} wait for a node pack` : null,
    s.elsewhere ? `${s.elsewhere} on disk elsewhere` : null) + ":";
}

/** After a dropped socket or a ComfyUI restart the page may be stale: files may have landed. */
async function onReconnected(doc) {
  state.status = null; // a restarted server has no run: do not keep showing the old one
  onStatus(doc);
  await refreshModelLists();
  await scan();
}

// While a run is active, re-read the status when the socket has been quiet for a while: a
// throttled or missed event must not leave the panel showing a stale state. The background hash index
// sends no event per piece: while it reads, the status is read as often for its line.
const STATUS_POLL_MS = 2000;
const INDEX_READING = new Set(["walking", "hashing", "paused"]);
function pollWhileRunning() {
  setInterval(async () => {
    const polled = isRunActive(state.status) || INDEX_READING.has(state.status?.index?.state);
    if (!polled || Date.now() - lastStatusAt < STATUS_POLL_MS) return;
    try {
      onStatus(await client.status());
    } catch {
      // The server is restarting or gone; the next tick tries again.
    }
  }, STATUS_POLL_MS);
}

/** New files only show up in the loaders' combos after the node definitions are fetched again. */
async function refreshModelLists() {
  try {
    redrawOnErrorFlags(app);
    await app.refreshComboInNodes?.();
    // Newer frontends keep their own missing-model markers (red loaders, "issues found"): re-check.
    if (typeof app.refreshMissingModels === "function") await app.refreshMissingModels({ reloadDefs: false });
    app.canvas?.setDirty?.(true, true);
  } catch (e) {
    console.warn("[ComfyFixerSmart] refreshing the model lists failed", e);
  }
}

async function onDone(detail) {
  clearTimeout(landTimer);
  landTimer = null;
  const batch = pendingLanded;
  pendingLanded = [];
  await landRefresh;
  if (batch.length && (!detail?.workflow || detail.workflow === workflowName(app))) repointRenamed(batch);
  // Files of this run not seen landing (a missed event) are handled now, once.
  const files = (detail?.files ?? []).filter((f) => !landedSeen.has(`${detail.run_id}|${f.name}`));
  for (const f of files) landedSeen.add(`${detail.run_id}|${f.name}`);
  await refreshModelLists();
  if (!detail?.workflow || detail.workflow === workflowName(app)) {
    repointRenamed(files);
    clearModelErrors(new Set(files.map((f) => f.name)));
    await scan();
  }
}

/** A file from a pasted link keeps its real name: point the loaders that asked for the old one at it. */
function repointRenamed(files) {
  const changed = [];
  for (const f of files) {
    if (!f.saved_as || f.saved_as === f.name) continue;
    const model = (state.report?.models ?? []).find((m) => m.filename === f.name);
    if (model && setModelWidgets(app, model.nodes ?? [], f.name, comboValue(model, f.saved_as))) changed.push(f.saved_as);
  }
  if (changed.length) setNotice("ok", `The loaders now use ${changed.join(", ")}; save the workflow to keep it.`);
  if (typeof app.refreshMissingModels === "function" && changed.length) app.refreshMissingModels({ reloadDefs: false });
}

/** Loaders outlined red by the last queue attempt turn normal once their file has landed. */
function clearModelErrors(landedNames) {
  if (!landedNames.size || !state.report) return;
  const fixedIds = new Set();
  for (const m of state.report.models ?? []) {
    if (!landedNames.has(m.filename)) continue;
    for (const u of m.nodes ?? []) if (!u.subgraph_path?.length) fixedIds.add(String(u.node_id));
  }
  clearNodeErrors(app, fixedIds);
}

// --- panel actions -----------------------------------------------------------------------------
const actions = {
  scan: () => scan(),
  fix: (items) => fix(items),
  cancel: (name) => withBusy(`cancel:${name ?? "*"}`, async () => {
    onStatus(await client.cancel(name ?? undefined));
  }),
  retry: (name, url) => withBusy(`retry:${name}`, async () => {
    onStatus(await client.retry(name, url, workflowName(app)));
  }),
  relink: (model, where) => withBusy(`relink:${model.filename}`, async () => {
    const name = model.filename;
    let value = where.relpath;
    state.refusedLinks.delete(name);
    if (where.folder !== model.expected_type) {
      // Another folder: the server links the file into the right one under the expected name, once it holds
      // the bytes the workflow states (when it states a sha256).
      try {
        value = (await client.relink(currentWorkflow(app), workflowName(app), name, model.expected_type, where.path))
          .relpath ?? name;
      } catch (e) {
        // Not the workflow's bytes, or unreadable: this copy cannot serve, the workflow's own file can.
        if (!["sha256_differs", "file_missing"].includes(e.code)) throw e;
        // The row says it, with a download instead; only in this workflow (another may state other bytes).
        state.refusedLinks.set(name, { workflow: workflowName(app), error: { code: e.code, message: e.message } });
        return;
      }
    }
    await refreshModelLists();
    // A file linked in under the expected name changes no widget: nothing to save, and it is not said.
    const target = comboValue(model, value);
    const changed = target === name ? 0 : setModelWidgets(app, model.nodes ?? [], name, target);
    if (typeof app.refreshMissingModels === "function") await app.refreshMissingModels({ reloadDefs: false });
    // Linked into the loader's own folder under the expected name: say that folder, not the source's.
    const shown = where.folder === model.expected_type ? `${where.folder}/${where.relpath}` : `${model.expected_type}/${value}`;
    setNotice("ok", `${name} now uses ${shown}` +
      (changed ? ` (${plural(changed, "node")} updated; save the workflow to keep it).` : "."));
    await scan();
  }),
  installPack: (pack) => withBusy(`pack:${pack.id}`, async () => {
    const answer = await client.installPack(pack.id);
    setNotice("ok", answer?.message ?? `Installing ${pack.title || pack.id}: restart ComfyUI when it is done.`);
  }),
  copy: async (text) => {
    try {
      await navigator.clipboard.writeText(text);
      setNotice("ok", "Copied the install commands.");
    } catch {
      setNotice("error", "The browser refused the clipboard; select the commands and copy them by hand.");
    }
  },
  approve: (names) => withBusy("approve", async () => {
    onStatus(await client.approve(names));
  }),
  discardPartial: (name) => withBusy(`discard:${name}`, async () => {
    onStatus(await client.discardPartial(name));
  }),
  startPaste: (name) => {
    state.pasting = name;
    if (name) state.expanded.add(`row:${name}`);
    rerender();
  },
  pasteLink: (name, link) => withBusy(`paste:${name}`, async () => {
    if (!link) return;
    const started = await client.pasteLink(currentWorkflow(app), workflowName(app), name, link);
    state.pasting = null;
    onStatus(started);
    setNotice("ok", `Checking ${link} for ${name}…`);
  }),
  unqueue: (workflow) => withBusy(`unqueue:${workflow}`, async () => {
    onStatus(await client.unqueue(workflow));
    setNotice("ok", `The fix for ${workflow} is off the queue: it will not start by itself.`, null, workflow);
  }),
  toggle: (key) => {
    if (!state.expanded.delete(key)) state.expanded.add(key);
    rerender();
  },
  toggleDone: () => {
    state.showDone = !state.showDone;
    rerender();
  },
  toggleCompact: () => {
    state.compact = !(state.compact ?? rowCount() >= TABLE_FROM_ROWS);
    localStorage.setItem(COMPACT_KEY, state.compact ? "1" : "0");
    rerender();
  },
  openWorkflow: async (name) => {
    if (!(await openWorkflowByName(app, name))) {
      setNotice("warn", `${name} is not open in a tab: open it from the workflow browser to see its rows.`);
    }
  },
  portable: () => withBusy("portable", makePortable),
  lockfile: () => withBusy("lockfile", saveLockfile),
  reveal: (usage) => {
    if (!revealNode(app, usage)) setNotice("error", `Node #${usage.node_id} is not on the canvas (inside a group node?).`);
  },
  openSettings,
};

/** ComfyUI's settings dialog, on our category when it can be found by its label. */
async function openSettings() {
  await app.extensionManager?.command?.execute?.("Comfy.ShowSettingsDialog");
  setTimeout(() => {
    const label = [...document.querySelectorAll("[role=dialog] *, .p-dialog *")]
      .find((el) => el.childElementCount === 0 && el.textContent.trim() === EXTENSION);
    label?.click();
  }, 300);
}

/** The combo entry matching `value` (the server's separators and case), or `value` itself. */
function comboValue(model, value) {
  const usage = (model.nodes ?? [])[0];
  const node = usage && findNode(app, usage);
  const widget = node?.widgets?.find((w) => w.name === usage.input_name);
  const options = widget?.options?.values;
  const norm = (s) => String(s).replaceAll("\\", "/").toLowerCase();
  return (Array.isArray(options) && options.find((o) => norm(o) === norm(value))) || value;
}

async function makePortable() {
  const answer = await client.portable(currentWorkflow(app));
  const name = `${workflowName(app)}.portable.json`;
  const blob = new Blob([JSON.stringify(answer.workflow, null, 2)], { type: "application/json" });
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  const models = answer.workflow?.models?.length ?? 0;
  const without = answer.without_link ?? [];
  setNotice(without.length ? "warn" : "ok", `Saved ${name}: it carries ${plural(models, "download link")}.` +
    (without.length ? ` Still without a link: ${without.join(", ")}.` : ""));
}

/** models.lock.json of this workflow: every model it uses pinned by sha256 (`comfy-fixer sync` rebuilds it). */
async function saveLockfile() {
  const lock = await client.lockfile(currentWorkflow(app));
  const name = `${workflowName(app)}.models.lock.json`;
  const blob = new Blob([JSON.stringify(lock, null, 2)], { type: "application/json" });
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  const missing = lock.unresolved ?? [];
  setNotice(missing.length ? "warn" : "ok", `Saved ${name}: ${plural(lock.models.length, "model")} pinned by sha256.` +
    (missing.length ? ` Not on disk, so not pinned: ${missing.join(", ")}.` : ""));
}

/** Identical model files: one copy kept, the others hard-linked to it (the space they took comes back). */
async function linkDuplicates() {
  const dupes = (await client.fixDuplicates()).report;
  if (!dupes) return setNotice("warn", "The model files are still being hashed; try again in a moment.");
  setNotice(dupes.skipped.length ? "warn" : "ok", `${plural(dupes.linked + dupes.symlinked, "duplicate")} linked, ` +
    `${(dupes.freed_bytes / 2 ** 30).toFixed(2)} GiB freed.` + (dupes.skipped.length ? ` Left: ${dupes.skipped.join("; ")}` : ""));
}

// --- the sidebar panel and the button ----------------------------------------------------------
function openPanel() {
  const tabs = app.extensionManager?.sidebarTab;
  if (tabs?.activeSidebarTabId === TAB_ID) return;
  if (typeof tabs?.toggleSidebarTab === "function") tabs.toggleSidebarTab(TAB_ID);
  else app.extensionManager?.command?.execute?.(`Workspace.ToggleSidebarTab.${TAB_ID}`);
}

function registerPanel() {
  const tab = {
    id: TAB_ID,
    icon: "pi pi-download",
    title: "Model fixer",
    tooltip: "Missing models and nodes (ComfyFixerSmart)",
    label: "Model fixer",
    type: "custom",
    render: (el) => {
      // One panel: a tab the frontend mounts again (a workflow switch) gets the same host moved into it,
      // never a second copy beside a stale one.
      panelHost ??= h("div.cfx-host");
      el.replaceChildren(panelHost);
      drawPanel();
      // After the frontend has laid the sidebar out: a table line needs more than its default width.
      requestAnimationFrame(() => { unwiden = widenSidebar(el); });
      if (!state.scanning && state.report?.workflow !== workflowName(app)) scan();
    },
    destroy: () => {
      // 1.27 re-mounts the tab on a workflow switch and may destroy the old one after rendering the new
      // one: only a host that left the page is dropped.
      if (panelHost && !panelHost.isConnected) panelHost = null;
      if (!panelHost) {
        unwiden?.();
        unwiden = null;
      }
    },
  };
  const em = app.extensionManager;
  if (em?.sidebarTab?.registerSidebarTab) em.sidebarTab.registerSidebarTab(tab);
  else em?.registerSidebarTab?.(tab);
}

const SIDEBAR_WIDTH = 400; // px: a table line (state, name, folder, size, action) without wrapping most names
const SIDEBAR_SHARE = 0.36; // never more than this share of the window
let unwiden = null;

/**
 * Give our sidebar tab the width a table line needs while it is open (1.27's splitter panel is ~204 px at
 * 1280 px, 1.58's ~312 px); returns how to undo it, or null when it is wide enough already. Dragging the
 * sidebar's edge still wins: the frontend sets its own size again.
 */
function widenSidebar(el) {
  const panel = el.closest(".side-bar-panel");
  const row = panel?.parentElement;
  if (!panel || !row) return null;
  const want = Math.round(Math.min(SIDEBAR_WIDTH, row.getBoundingClientRect().width * SIDEBAR_SHARE));
  if (panel.getBoundingClientRect().width >= want) return null;
  const saved = { flex: panel.style.flex, basis: panel.style.flexBasis };
  const splitter = panel.classList.contains("p-splitterpanel"); // 1.27: sizes as flex-basis percentages
  const others = splitter ? [...row.children].filter((c) => c !== panel && c.classList.contains("p-splitterpanel")) : [];
  const othersSaved = others.map((o) => o.style.flexBasis);
  if (splitter) {
    panel.style.flexBasis = `${want}px`;
    if (others.length === 1) others[0].style.flexBasis = `calc(100% - ${want}px - 8px)`;
  } else {
    panel.style.flex = `0 0 ${want}px`;
  }
  return () => {
    panel.style.flex = saved.flex;
    panel.style.flexBasis = saved.basis;
    others.forEach((o, i) => { o.style.flexBasis = othersSaved[i]; });
  };
}

// Newer frontends show `actionBarButtons` next to Run; older ones have the legacy menu groups.
let legacyButton = null;
async function addLegacyButton() {
  await new Promise((r) => setTimeout(r, 500));
  const bar = document.querySelector('[data-testid="action-bar-buttons"]');
  if (bar || !app.menu?.settingsGroup?.element?.isConnected) return;
  try {
    const { ComfyButton } = await import("../../scripts/ui/components/button.js");
    const { ComfyButtonGroup } = await import("../../scripts/ui/components/buttonGroup.js");
    legacyButton = new ComfyButton({
      icon: "download-circle-outline",
      action: () => app.extensionManager.command.execute(CMD_FIX),
      tooltip: "Find, download and verify the models this workflow is missing (Alt+Shift+F)",
      content: FIX_LABEL,
      classList: "comfyui-button comfyui-menu-mobile-collapse cfx-menu-button",
    });
    legacyButton.element.dataset.testid = "cfx-menu-button";
    app.menu.settingsGroup.element.before(new ComfyButtonGroup(legacyButton.element).element);
  } catch (e) {
    console.warn("[ComfyFixerSmart] no menu button (the command and the sidebar tab still work)", e);
  }
  updateLegacyButton();
}

/** "42%": the run's progress for the action bar, or "" when no run is active or its size is unknown yet. */
function runPercent() {
  const overall = state.status?.data?.overall;
  return isRunActive(state.status) && overall?.total ? `${Math.floor((100 * overall.bytes_done) / overall.total)}%` : "";
}

/** The run's progress on our button beside Run: the legacy menu's label on 1.27, the action bar's button
 *  on newer frontends (an attribute the stylesheet shows; the button itself stays the frontend's). */
function updateLegacyButton() {
  const percent = runPercent();
  const counts = isRunActive(state.status) ? progressCounts(state.status?.data?.models ?? []).text : "";
  const el = legacyButton?.element;
  if (el) {
    const label = isRunActive(state.status) ? `Fixing… ${percent}`.trim() : FIX_LABEL;
    const span = el.querySelector("span:not([class*=mdi])") ?? el;
    if (span.textContent !== label) span.textContent = label;
    el.title = counts || "Find, download and verify the models this workflow is missing (Alt+Shift+F)";
  }
  const ours = actionBarButton();
  if (!ours) return;
  if (isRunActive(state.status)) {
    ours.dataset.cfxProgress = percent || "…";
    ours.style.setProperty("--cfx-progress", percent || "0%");
    ours.title = `ComfyFixerSmart: ${dotted(percent, counts)}`;
  } else if (ours.dataset.cfxProgress !== undefined) {
    delete ours.dataset.cfxProgress;
    ours.style.removeProperty("--cfx-progress");
    ours.title = FIX_LABEL;
  }
}

/** Our button in the newer frontends' action bar (next to Run), found by its label. */
function actionBarButton() {
  const bar = document.querySelector('[data-testid="action-bar-buttons"]');
  if (!bar) return null;
  return [...bar.querySelectorAll("button")].find((b) => b.dataset.cfxAction !== undefined
    || b.textContent.includes(FIX_LABEL) || b.getAttribute("aria-label") === FIX_LABEL) ?? null;
}

// --- the notice on workflow load ---------------------------------------------------------------
function problemCounts(report) {
  const s = report?.summary ?? {};
  return { missing: s.missing ?? 0, elsewhere: s.elsewhere ?? 0, nodes: s.missing_nodes ?? 0 };
}

function notifyProblems(report) {
  const c = problemCounts(report);
  if (!c.missing && !c.elsewhere && !c.nodes) return;
  // Frontends that check models themselves show their own notice and Issues list: ours goes into
  // that list (lib/theirs.js), never a second toast with another count.
  if (frontendChecksModels(app)) return;
  const key = `${report.workflow}|${c.missing}|${c.elsewhere}|${c.nodes}`;
  if (notified.has(key)) return;
  notified.add(key);
  const title = [
    c.missing ? `${plural(c.missing, "model")} missing` : null,
    c.elsewhere ? `${plural(c.elsewhere, "model")} on disk elsewhere` : null,
    c.nodes ? `${plural(c.nodes, "node type")} missing` : null,
  ].filter(Boolean).join(", ");
  // The notice names its workflow: by the time it is read another tab may be open.
  const detail = `In ${report.workflow}: ` + (c.missing
    ? "ComfyFixerSmart can find, download and verify them."
    : c.elsewhere ? "ComfyFixerSmart can point the loaders at your copies." : "ComfyFixerSmart knows which packs provide them.");
  const toast = app.extensionManager?.toast;
  if (typeof toast?.info === "function") {
    // Newer frontends: their own toast takes an action button. One of ours at a time, beside theirs.
    if (lastToastId !== null) toast.dismiss?.(lastToastId);
    lastToastId = toast.info(title, {
      description: detail, duration: 10_000, action: { label: FIX_LABEL, onClick: fixMissingModels },
    }) ?? null;
    return;
  }
  showNotice(title, detail);
}

/** A one-line notice with the fix button, for frontends whose toasts cannot carry a button. */
function showNotice(title, detail) {
  document.querySelector(".cfx-toast")?.remove();
  if (theirList()) return; // their list is open and carries our line and button: one notice
  const close = () => el.remove();
  const el = h("div.cfx-toast", { role: "status", "data-testid": "cfx-toast" },
    h("i.pi.pi-info-circle"),
    h("div.cfx-toast-text", h("div.cfx-toast-title", title), h("div.cfx-muted", detail)),
    h("button.cfx-btn.cfx-btn-primary", { type: "button", onclick: () => { close(); fixMissingModels(); } }, FIX_LABEL),
    h("button.cfx-btn.cfx-toast-close", { type: "button", title: "Dismiss", "aria-label": "Dismiss", onclick: close }, h("i.pi.pi-times")));
  document.body.append(el);
  setTimeout(close, 12_000);
}

let reopenPanel = false;
function reopenPanelOnce() {
  if (!reopenPanel) return;
  reopenPanel = false;
  openPanel();
}

let loadTimer = null;
function onWorkflowLoaded() {
  if (reopenPanel) setTimeout(reopenPanelOnce, 0);
  clearTimeout(loadTimer);
  // Loading fires this once per graph; wait for the canvas to settle, then scan once.
  loadTimer = setTimeout(async () => {
    if (app.extensionManager?.setting?.get(SETTING_CHECK_ON_LOAD) === false) {
      if (panelHost) scan();
      return;
    }
    const report = await scan();
    if (report) notifyProblems(report);
  }, 300);
}

// --- settings ----------------------------------------------------------------------------------
let settingsSchema = []; // the server's schema, from GET /comfyfixer/settings

function serverSetting(key) {
  return async (value, old) => {
    if (old === undefined || syncingSettings || value === old) return; // registration or our own sync
    try {
      state.settings = (await client.saveSettings({ [key]: value })).values;
    } catch (e) {
      app.extensionManager?.toast?.add?.({ severity: "error", summary: "ComfyFixerSmart setting not saved", detail: requestErrorWords(e)?.words || e.message, life: 6000 });
    }
  };
}

/** Copy the server's settings into ComfyUI's dialog without posting them back. */
async function syncSettings() {
  try {
    state.settings = (await client.settings()).values;
  } catch (e) {
    console.warn("[ComfyFixerSmart] settings not loaded", e);
    return;
  }
  const store = app.extensionManager?.setting;
  if (!store) return;
  syncingSettings = true;
  try {
    for (const { id, key } of settingsSchema) {
      if (key in state.settings && store.get(id) !== state.settings[key]) await store.set(id, state.settings[key]);
    }
  } finally {
    syncingSettings = false;
  }
}

/** A write-only token field: the value goes to the server and is never kept in the page. */
function secretField(key, what) {
  return () => {
    const input = h("input.cfx-secret-input", {
      type: "password", autocomplete: "off", spellcheck: "false", placeholder: `Paste the ${what}`, "data-testid": `cfx-${key}`,
    });
    const status = h("span.cfx-muted");
    const show = () => {
      status.textContent = state.settings?.[`${key}_set`] ? "Saved on the server" : "Not set";
    };
    const save = async (value) => {
      try {
        state.settings = (await client.saveSettings({ [key]: value })).values;
        input.value = "";
        show();
        rerender(); // rows waiting for this token can go now
      } catch (e) {
        status.textContent = requestErrorWords(e)?.words || e.message;
      }
    };
    show();
    client.settings().then((answer) => { state.settings = answer.values; show(); }, () => {});
    return h("div.cfx-secret",
      input,
      h("button.cfx-btn", { type: "button", onclick: () => input.value.trim() && save(input.value.trim()) }, "Save"),
      h("button.cfx-btn", { type: "button", title: "Forget the stored value", onclick: () => save("") }, "Clear"),
      status);
  };
}

/** ComfyUI's control for one entry of the server's schema. */
function controlFor(entry) {
  const base = { id: entry.id, category: [EXTENSION, entry.group, entry.label], name: entry.label, tooltip: entry.help || undefined };
  if (entry.kind === "token") return { ...base, type: secretField(entry.key, entry.label), defaultValue: "" };
  if (entry.kind === "integer") {
    return { ...base, type: "number", attrs: { min: entry.minimum, max: entry.maximum, step: 1 }, defaultValue: entry.default, onChange: serverSetting(entry.key) };
  }
  return { ...base, type: "boolean", defaultValue: entry.default, onChange: serverSetting(entry.key) };
}

const pageSettings = [
  {
    id: SETTING_REVIEW,
    category: [EXTENSION, "Downloads", "Review before download"],
    name: "Show what will be downloaded (count, size, folders) and wait for a click",
    tooltip: "Off: Fix downloads right away, as the CLI's --yes does.",
    type: "boolean",
    defaultValue: true,
  },
  {
    id: SETTING_CHECK_ON_LOAD,
    category: [EXTENSION, "General", "Check on load"],
    name: "Check each workflow for missing models when it opens",
    tooltip: "Shows a short notice with a fix button when something is missing.",
    type: "boolean",
    defaultValue: true,
  },
];

// --- the Report node: its text on the node itself ----------------------------------------------
const REPORT_NODE = "ComfyFixerReport";

function showReportText(node, text) {
  if (!node.cfxReportEl) {
    const el = h("textarea.cfx-report-text", { readonly: true, spellcheck: "false", "data-testid": "cfx-report-text" });
    // Not serialized: the text is an output, not a setting of the node.
    node.addDOMWidget?.("report_text", "cfx_report", el, { serialize: false, getValue: () => el.value, setValue: () => {} });
    node.cfxReportEl = el;
    node.setSize?.([Math.max(node.size?.[0] ?? 0, 440), Math.max(node.size?.[1] ?? 0, 280)]);
  }
  node.cfxReportEl.value = text;
  app.canvas?.setDirty?.(true, true);
}

// --- registration ------------------------------------------------------------------------------
// Our websocket events need a listener before the first one arrives (else the frontend logs
// "Unknown message type"): register at import, before the app's setup, not in our setup().
client.listen(onStatus, onDone, onReconnected);

// The server's settings are registered from its schema, so it is asked before the extension registers
// (a server without our routes leaves only the page's own settings).
try {
  const answer = await client.settings();
  settingsSchema = answer.schema;
  state.settings = answer.values;
} catch (e) {
  console.warn("[ComfyFixerSmart] settings not loaded; only the page's own are shown", e);
}
const settings = [...settingsSchema.map(controlFor), ...pageSettings];

app.registerExtension({
  name: EXTENSION,
  settings,
  commands: [
    { id: CMD_FIX, label: FIX_LABEL, icon: "pi pi-download", tooltip: "Find, download and verify the models this workflow is missing", function: fixMissingModels },
    { id: CMD_PANEL, label: "Show missing models panel", icon: "pi pi-list", function: () => { openPanel(); scan(); } },
    { id: CMD_PORTABLE, label: "Make this workflow portable", icon: "pi pi-file-export", function: () => withBusy("portable", makePortable) },
    { id: CMD_DEDUPE, label: "Link duplicate model files", icon: "pi pi-clone", function: () => withBusy("dedupe", linkDuplicates) },
  ],
  keybindings: [{ combo: { key: "f", alt: true, shift: true }, commandId: CMD_FIX }], // Alt+Shift+M is the minimap on newer frontends
  menuCommands: [{ path: ["Extensions", "ComfyFixerSmart"], commands: [CMD_FIX, CMD_PANEL, CMD_PORTABLE, CMD_DEDUPE] }],
  actionBarButtons: [{
    icon: "pi pi-download",
    label: FIX_LABEL,
    tooltip: "Find, download and verify the models this workflow is missing (Alt+Shift+F)",
    onClick: () => app.extensionManager.command.execute(CMD_FIX),
  }],

  async setup() {
    document.head.append(h("link", { rel: "stylesheet", href: new URL("./comfyfixer.css", import.meta.url).href }));
    theirs = watchTheirList({
      label: FIX_LABEL,
      onFix: fixMissingModels,
      fetching: fetchingNames,
      count: ourCount,
      onSeen: () => {
        document.querySelector(".cfx-toast")?.remove(); // our line is in their list now: one notice
        if (!state.theirList) {
          state.theirList = true;
          rerender();
        }
      },
    });
    pollWhileRunning();
    registerPanel();
    addLegacyButton();
    syncSettings();
    try {
      onStatus(await client.status());
    } catch (e) {
      state.scanError = e;
    }
    // A reload in the middle of a run shows that run again, once the restored workflow is on the
    // canvas (opening the sidebar during setup is undone by the workspace's own restore).
    reopenPanel = isRunActive(state.status);
    if (reopenPanel) setTimeout(reopenPanelOnce, 3000);
    rerender();
  },

  beforeConfigureGraph(graphData) {
    noteLoadedGraph(app, graphData); // its top-level `models` (links, hashes) go with every scan and fix
  },

  afterConfigureGraph() {
    noteConfiguredGraph(app); // under the id the graph got (a workflow saved without one gets it now)
    onWorkflowLoaded();
  },

  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== REPORT_NODE) return;
    const executed = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function onReportExecuted(message) {
      executed?.apply(this, arguments);
      showReportText(this, (message?.text ?? []).join("\n"));
    };
  },
});
