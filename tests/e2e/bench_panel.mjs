// How long the panel takes to rebuild for big runs, in headless Chromium (no ComfyUI needed).
// The panel is rebuilt from state on every status event (the service sends up to ~4 a second),
// so one rebuild must stay well under 250 ms even for a folder of workflows with hundreds of models.
//
//   node bench_panel.mjs   prints per size: ms for a first build, ms for a redraw during a run (the live
//                          panel morphed into the new tree; 4 rows changed per event), DOM nodes; medians of 20
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { openBrowser } from "./browser.mjs";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "web");
const ORIGIN = "http://127.0.0.1:9/"; // never contacted: every request is answered below

const b = await openBrowser();
const { page, context } = b;
await context.route(`${ORIGIN}**`, (route) => {
  const path = new URL(route.request().url()).pathname;
  if (path === "/") return route.fulfill({ contentType: "text/html", body: "<!doctype html><div id=host></div>" });
  return route.fulfill({ contentType: "text/javascript", body: readFileSync(join(WEB, path)) });
});
await page.goto(ORIGIN);

const rows = [];
for (const n of [10, 100, 500, 2000]) {
  rows.push(await page.evaluate(async (count) => {
    const { renderPanel } = await import("/lib/panel.js");
    const { morph } = await import("/lib/dom.js");
    const states = ["queued", "downloading", "verifying", "done", "failed", "needs_choice"];
    const models = Array.from({ length: count }, (_, i) => ({
      filename: `sdxl/lora_number_${i}_v${i % 7}.safetensors`, expected_type: "loras", state: "missing",
      nodes: [{ node_id: String(i), node_type: "LoraLoader", input_name: "lora_name", subgraph_path: [] }],
      hints: {}, elsewhere: [], pickle: false,
    }));
    const runRows = models.map((m, i) => ({
      name: m.filename, folder: "loras", state: states[i % states.length], source: "civitai", confidence: 0.9,
      reason: "exact file name in a Civitai model", size: 1e9, total: 1e9, bytes_done: 4e8, speed: 2e7, eta: 30,
      warnings: [], sha256: "a".repeat(64), error: i % 6 === 4
        ? { code: "interrupted", message: "the server closed the connection", part_kept: true } : null,
      candidates: i % 6 === 5 ? [{ source: "fuzzy", url: "http://x/y", confidence: 0.5, reason: "similar", size: 1e9 }] : [],
    }));
    const state = {
      workflowName: "bench", scanning: false, scanError: null, notice: null, busy: new Set(),
      report: { workflow: "bench", summary: { missing: count, present: 0, elsewhere: 0, missing_nodes: 0 }, models, packs: [], missing_nodes: [] },
      status: { phase: "downloading", timestamp: "t", data: { workflow: "bench", models: runRows, overall: { bytes_done: 1, total: 2, speed: 1, eta: 1 }, summary: null } },
    };
    const actions = new Proxy({}, { get: () => () => {} });
    const host = document.getElementById("host");
    const median = (times) => Math.round(times.sort((a, z) => a - z)[times.length >> 1] * 10) / 10;
    const timed = (draw) => {
      const t0 = performance.now();
      draw(renderPanel(state, actions));
      host.getBoundingClientRect(); // include style and layout, as the browser does before painting
      return performance.now() - t0;
    };
    const full = Array.from({ length: 20 }, () => timed((next) => host.replaceChildren(next)));
    const during = [];
    for (let i = 0; i < 20; i += 1) {
      // One status event: a new document whose downloading rows moved on.
      const rows = state.status.data.models.map((r) => (r.state === "downloading" && (r.name.length + i) % 25 < 1
        ? { ...r, bytes_done: r.bytes_done + 1e6 * (i + 1) } : r));
      for (let k = 0; k < 4; k += 1) rows[(i * 4 + k) * 6 % rows.length] = { ...rows[(i * 4 + k) * 6 % rows.length], bytes_done: i };
      state.status = { ...state.status, data: { ...state.status.data, models: rows } };
      during.push(timed((next) => morph(host.firstElementChild, next)));
    }
    return { models: count, full: median(full), during: median(during), domNodes: host.querySelectorAll("*").length };
  }, n));
}
console.log("models  first build ms  redraw during a run ms  DOM nodes");
for (const r of rows) {
  console.log(`${String(r.models).padStart(6)}  ${String(r.full).padStart(14)}  ${String(r.during).padStart(23)}  ${String(r.domNodes).padStart(9)}`);
}
await b.close();
