// What the panel needs from the LiteGraph graph: the workflow JSON, its name, and rewriting the
// model widgets of the nodes a scan reported. Side-effect free.

export function rootGraph(app) {
  return app.rootGraph ?? app.graph; // app.graph is deprecated on newer frontends
}

// Top-level keys of a loaded workflow that the graph does not serialize again (`models`, the links and
// hashes a template carries), by the graph's id (kept by the graph and by every tab switch). 1.58 keeps them
// in neither the workflow's activeState nor its initialState, so this is the one place they survive.
const heldTop = new Map();
const HELD_WORKFLOWS = 64;
let serializedKeys = null; // the keys `serialize()` writes (the same for every graph of a frontend)
let pendingTop = null; // the keys of the graph being configured, until it has its id

/** Keep the keys of `graphData` (about to be configured) that `serialize()` will not give back. */
export function noteLoadedGraph(app, graphData) {
  pendingTop = null;
  if (!graphData || typeof graphData !== "object") return;
  serializedKeys ??= new Set(Object.keys(rootGraph(app)?.serialize?.() ?? {}));
  pendingTop = Object.fromEntries(Object.entries(graphData).filter(([k, v]) => !serializedKeys.has(k) && v != null));
}

/**
 * File what `noteLoadedGraph` kept under the id the graph now has: a workflow saved without an `id` gets
 * one while it is configured. A tab switch reloads the graph's own serialization, which carries none of
 * these keys (or others, such as `extensions`): what its first load kept is added to, never replaced.
 */
export function noteConfiguredGraph(app) {
  const extra = pendingTop;
  pendingTop = null;
  const id = rootGraph(app)?.id;
  if (!extra || !Object.keys(extra).length || typeof id !== "string") return;
  const held = { ...heldTop.get(id), ...extra };
  heldTop.delete(id);
  heldTop.set(id, held);
  if (heldTop.size > HELD_WORKFLOWS) heldTop.delete(heldTop.keys().next().value);
}

/**
 * The open workflow as the frontend holds it: the graph's UI JSON (subgraph definitions included) plus
 * the top-level keys it does not serialize (`models` with their links and hashes): from the workflow's
 * own state (1.58 keeps them there), else from its load (1.27 drops them after the load).
 */
export function currentWorkflow(app) {
  const graph = rootGraph(app).serialize();
  const wf = app.extensionManager?.workflow?.activeWorkflow;
  for (const source of [wf?.activeState, wf?.initialState, heldTop.get(graph.id)]) {
    if (!source || typeof source !== "object") continue;
    for (const [key, value] of Object.entries(source)) {
      if (!(key in graph) && value != null) graph[key] = value;
    }
  }
  return graph;
}

export function workflowName(app) {
  const wf = app.extensionManager?.workflow?.activeWorkflow;
  return wf?.filename ?? wf?.path?.split("/").pop()?.replace(/\.json$/i, "") ?? "workflow";
}

/**
 * The LiteGraph node a scan's usage points at, or null. The scanner labels each subgraph level
 * "<name>#<instance node id>", so walk those instance nodes down to the inner graph.
 */
export function findNode(app, usage) {
  let graph = rootGraph(app);
  for (const label of usage.subgraph_path ?? []) {
    const hash = label.lastIndexOf("#");
    if (hash < 0) return null; // a group node or an unused definition: not a live node
    const holder = graph?.getNodeById?.(label.slice(hash + 1));
    graph = holder?.subgraph;
    if (!graph) return null;
  }
  return graph?.getNodeById?.(usage.node_id) ?? null;
}

/**
 * Point every node that uses `oldName` at `newValue` (a name the combo lists). Returns how many
 * widgets changed. Values are matched too, so a node whose widget order differs still works.
 */
export function setModelWidgets(app, usages, oldName, newValue) {
  let changed = 0;
  const same = (v) => typeof v === "string" && v.replaceAll("\\", "/") === oldName.replaceAll("\\", "/");
  for (const usage of usages) {
    const node = findNode(app, usage);
    if (!node?.widgets) continue;
    const widget = node.widgets.find((w) => w.name === usage.input_name && same(w.value))
      ?? node.widgets.find((w) => same(w.value));
    if (!widget || widget.value === newValue) continue; // already that file: nothing changed, nothing to save
    widget.value = newValue;
    widget.callback?.(newValue, app.canvas, node);
    node.onWidgetChanged?.(widget.name, newValue, oldName, widget);
    changed += 1;
  }
  if (changed) {
    rootGraph(app).setDirtyCanvas?.(true, true);
    app.canvas?.setDirty?.(true, true);
    // Mark the workflow modified so the user is offered to save the fix.
    app.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.();
  }
  return changed;
}

/** Select and center the canvas on a node so the user sees which loader a row is about. */
export function revealNode(app, usage) {
  const node = findNode(app, usage);
  if (!node) return false;
  const canvas = app.canvas;
  if (node.graph && canvas?.graph !== node.graph && canvas?.setGraph) canvas.setGraph(node.graph);
  canvas?.selectNode?.(node, false);
  canvas?.centerOnNode?.(node);
  canvas?.setDirty?.(true, true);
  return true;
}

/** The frontend's Pinia store `id` (1.27 keeps the queue's node errors there), or null. */
function piniaStore(id) {
  const pinia = document.querySelector("#vue-app")?.__vue_app__?.config?.globalProperties?.$pinia;
  return pinia?._s?.get?.(id) ?? null;
}

/**
 * Drop the "value not in list" errors the last queue attempt left on `nodeIds` (their file has
 * landed), so their red outlines go. 1.27.10: `app.lastNodeErrors` is a read-only getter onto the
 * execution store, whose change the canvas watches and redraws; newer frontends re-check
 * themselves (`refreshMissingModels`). Returns how many nodes were cleared.
 */
export function clearNodeErrors(app, nodeIds) {
  const errors = app.lastNodeErrors ?? {};
  if (!nodeIds.size) return 0;
  const kept = Object.entries(errors).filter(([id, e]) => !(
    nodeIds.has(String(id)) && (e.errors ?? []).every((x) => x.type === "value_not_in_list")));
  const next = kept.length ? Object.fromEntries(kept) : null;
  // 1.58 flags the loader itself (has_errors) from its own missing-model check; the file is there now.
  let flags = 0;
  for (const id of nodeIds) {
    const node = rootGraph(app).getNodeById?.(id);
    if (node?.has_errors && !(next && id in next)) {
      node.has_errors = false;
      flags += 1;
    }
  }
  if (flags) app.canvas?.setDirty?.(true, true);
  const cleared = Object.keys(errors).length - kept.length;
  if (!cleared) return flags;
  const store = piniaStore("execution");
  try {
    if (store && "lastNodeErrors" in store) store.lastNodeErrors = next;
    else app.lastNodeErrors = next;
  } catch {
    return 0; // a computed value on newer frontends: their own refresh clears it
  }
  rootGraph(app).setDirtyCanvas?.(true, true);
  return cleared;
}

const redrawnGraphs = new WeakSet();

/**
 * Redraw the canvas whenever the frontend flips a node's error flag. 1.58 re-flags the loaders
 * after its own model check, which finishes after `refreshMissingModels` returns (folder paths
 * are fetched on the side) and redraws nothing, so red outlines stayed until the mouse moved.
 * Subgraphs have their own event targets; call again after a refresh to cover new ones.
 * 1.27.10 redraws on its own error-store change and has no such event: a no-op there.
 */
export function redrawOnErrorFlags(app) {
  const root = rootGraph(app);
  for (const graph of [root, ...(root?.subgraphs?.values?.() ?? [])]) {
    if (!graph?.events?.addEventListener || redrawnGraphs.has(graph)) continue;
    redrawnGraphs.add(graph);
    graph.events.addEventListener("node:property:changed", (e) => {
      if (e.detail?.property === "has_errors") app.canvas?.setDirty?.(true, true);
    });
  }
}

/** Switch to the open tab of workflow `name` with the frontend's own command; false if not open. */
export async function openWorkflowByName(app, name) {
  const store = app.extensionManager?.workflow;
  const open = store?.openWorkflows ?? [];
  if (!open.some((w) => w.filename === name)) return false;
  for (let i = 0; i < open.length && store.activeWorkflow?.filename !== name; i += 1) {
    await app.extensionManager.command.execute("Workspace.NextOpenedWorkflow");
  }
  return store.activeWorkflow?.filename === name;
}
