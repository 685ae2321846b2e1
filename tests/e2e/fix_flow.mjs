// Drives the whole "fix missing models" flow in a real ComfyUI page, as a person would, and writes
// what it saw to <artifacts>/result.json plus screenshots. pytest (test_e2e_fix.py) starts ComfyUI
// and the fake upstream, runs this, then checks files on disk and the result.
//
//   node fix_flow.mjs scenario.json
//   scenario: {url, artifacts, workflow, lora, checkpoint, notice, relinkWrongFolder, relinkSameFolder, token}
import { join } from "node:path";
import { closeDialogs, dialogTexts, openComfy, queuePrompt, startFlow } from "./browser.mjs";

const { scenario, out, result, page, panel, shot, step, run } = await startFlow("fix_flow", "result.json");

const item = (name) => panel.locator(`.cfx-item[data-name="${name}"]`);

async function queue() {
  const answer = await queuePrompt(page);
  const nodeErrors = await page.evaluate(() => Object.keys(app.lastNodeErrors ?? {}));
  return { ...answer, nodeErrors };
}

// What the canvas last drew: a loader is outlined red when its error flag was set at its last draw.
// A flag cleared without a redraw still shows red, so the flow checks this, not only the flag.
async function watchDrawnOutlines() {
  await page.evaluate(() => {
    const canvas = app.canvas;
    const draw = canvas.drawNode;
    window.cfxDrawnRed = {};
    canvas.drawNode = function (node, ...rest) {
      window.cfxDrawnRed[node.id] = Boolean(node.has_errors);
      return draw.call(this, node, ...rest);
    };
  });
}

async function widgetState() {
  return page.evaluate(() => app.graph.nodes.map((n) => ({
    id: n.id, type: n.type, hasErrors: Boolean(n.has_errors),
    widgets: (n.widgets ?? []).filter((w) => typeof w.value === "string")
      .map((w) => ({ name: w.name, value: w.value, options: Array.isArray(w.options?.values) ? w.options.values : null })),
  })));
}

await run(async () => {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await watchDrawnOutlines();
  result.frontend = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
  result.registration = await page.evaluate(() => {
    const em = app.extensionManager;
    const ids = em.command.commands.map((c) => c.id);
    return {
      commands: ids.filter((id) => id.startsWith("ComfyFixerSmart.")),
      sidebarTab: ids.includes("Workspace.ToggleSidebarTab.comfyfixer-models"),
      settings: Object.keys(em.setting.settings ?? {}).filter((id) => id.startsWith("ComfyFixerSmart.")),
    };
  });
  await page.waitForTimeout(1000); // the menu button is added after the menus settle
  const fixButton = page.locator('[data-testid="cfx-menu-button"], [data-testid="action-bar-buttons"] button')
    .filter({ hasText: "Fix missing models" }).first();
  result.buttonVisible = await fixButton.isVisible();
  step("app ready", { frontend: result.frontend });

  // 1. Load a workflow with missing models and a missing node type: one notice appears. Frontends
  // that check models themselves (1.58) show theirs; ours then sits in their Issues list, no toast.
  result.theirCheck = await page.evaluate(() => typeof app.refreshMissingModels === "function");
  await page.evaluate((wf) => app.loadGraphData(wf), scenario.workflow);
  if (result.theirCheck) {
    await page.waitForTimeout(3000);
    result.ourToasts = await page.getByText("ComfyFixerSmart can find, download and verify them.").count();
    const details = page.getByText("View details").first();
    if (await details.count()) await details.click().catch(() => {});
    result.complementShown = await page.locator('[data-testid="cfx-complement"]').first().waitFor({ timeout: 15_000 })
      .then(() => true, () => false);
    result.complementText = result.complementShown ? await page.locator('[data-testid="cfx-complement"]').first().innerText() : null;
  } else {
    // Match this workflow's counts: the default graph restored at startup may have had its own notice.
    await page.getByText(scenario.notice).first().waitFor({ timeout: 30_000 });
  }
  await page.waitForTimeout(500);
  result.dialogsOnLoad = await dialogTexts(page);
  result.noticeText = await page.evaluate(() => document.body.innerText.match(/\d+ models? missing[^\n]*/)?.[0] ?? null);
  await shot("01-workflow-loaded");
  step("notice shown", { notice: result.noticeText, complement: result.complementShown });
  await closeDialogs(page);

  // 2. Before the fix, ComfyUI refuses the prompt: the loaders' values are not in their lists.
  result.queueBefore = await queue();
  await closeDialogs(page);
  step("queued before fix", { status: result.queueBefore.status });

  // 3. The panel lists what is missing, where it goes, who uses it; relink what is elsewhere.
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await item(scenario.lora).waitFor({ timeout: 30_000 });
  await item(scenario.relinkWrongFolder).waitFor();
  await page.waitForTimeout(300);
  result.panelBefore = await panel.innerText();
  await shot("02-panel-before");
  step("panel before");

  for (const name of [scenario.relinkWrongFolder, scenario.relinkSameFolder]) {
    await item(name).locator('[data-testid="cfx-relink"]').first().click();
    await item(name).waitFor({ state: "detached", timeout: 20_000 });
  }
  result.widgetsAfterRelink = await widgetState();
  result.noticeAfterRelink = await panel.locator(".cfx-notice").allInnerTexts();
  step("relinked");

  // 4. The button: downloads start, the panel shows per-file progress and the overall bar.
  await page.evaluate(() => {
    const t0 = performance.now();
    window.__cfxTimeline = [];
    window.comfyAPI.api.api.addEventListener("comfyfixer.status", (e) => window.__cfxTimeline.push([
      Math.round(performance.now() - t0), e.detail.phase,
      ...(e.detail.data?.models ?? []).map((m) => `${m.state}:${m.bytes_done}`)]));
  });
  await fixButton.click();
  // Review before download: nothing moves before the click on "Download 2 models, …".
  await panel.locator('[data-testid="cfx-review"]').waitFor({ timeout: 60_000 });
  await page.waitForTimeout(300);
  result.reviewText = await panel.locator('[data-testid="cfx-review"]').innerText();
  result.panelReview = await panel.innerText();
  result.filesDuringReview = await page.evaluate(() => fetch("/api/comfyfixer/status", { headers: { "X-ComfyFixer-Client": "e2e" } }).then((r) => r.json())
    .then((s) => (s.data?.models ?? []).map((m) => [m.name, m.state, m.bytes_done])));
  await shot("03a-review");
  await panel.locator('[data-testid="cfx-approve"]').click();
  await panel.locator('[data-testid="cfx-run"]').waitFor({ timeout: 30_000 });
  await panel.locator('.cfx-item[data-state="downloading"]').first().waitFor({ timeout: 60_000 });
  result.timelineBeforeReload = await page.evaluate(() => window.__cfxTimeline);
  step("downloads started");

  // 5. A reload in the middle of the run shows the run again, without a click.
  await page.reload({ waitUntil: "load" });
  await page.waitForFunction(() => window.app?.canvas, null, { timeout: 60_000 });
  await watchDrawnOutlines();
  await page.waitForFunction(() => window.app?.graph && window.app?.extensionManager
    && window.app.extensions?.some((e) => e.name === "ComfyFixerSmart"), null, { timeout: 60_000 });
  result.statusAfterReload = await page.evaluate(() => fetch("/api/comfyfixer/status", { headers: { "X-ComfyFixer-Client": "e2e" } }).then((r) => r.json()));
  await closeDialogs(page);
  result.runVisibleAfterReload = await panel.locator('[data-testid="cfx-run"]').waitFor({ timeout: 15_000 })
    .then(() => true, () => false);
  step("reloaded", { runVisible: result.runVisibleAfterReload });
  if (!result.runVisibleAfterReload) await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  // The reload dropped the red outlines of the first queue: press Run again while the files are
  // still on their way, so the outlines cleared at the end are the ones this page drew.
  result.queueDuring = await queue();
  await closeDialogs(page);

  // 6. Per-file progress with speed and ETA (the pack reports progress per 512 KB written).
  await page.waitForFunction(() => [...document.querySelectorAll('.cfx-item[data-state="downloading"] .cfx-bar-fill')]
    .some((el) => parseFloat(el.style.width) > 0), null, { timeout: 60_000 }).catch(() => {});
  await page.waitForTimeout(400); // the bars animate to their new width
  result.panelDuring = await panel.innerText();
  await shot("03-panel-during");
  step("progress shown");

  // 7. The run ends with a summary; the loaders' lists now hold the new files.
  const statesSeen = new Set();
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    for (const s of await panel.locator(".cfx-item").evaluateAll((els) => els.map((e) => e.dataset.state))) statesSeen.add(s);
    if (await panel.locator('[data-testid="cfx-summary"]').count()) break;
    await page.waitForTimeout(250);
  }
  result.statesSeen = [...statesSeen];
  await page.waitForFunction((name) => app.graph.nodes.some((n) => n.widgets?.some(
    (w) => Array.isArray(w.options?.values) && w.options.values.includes(name))), scenario.lora, { timeout: 30_000 })
    .catch(() => {});
  await page.waitForTimeout(800); // the rescan after comfyfixer.done
  result.summary = await panel.locator('[data-testid="cfx-summary"]').innerText().catch(() => null);
  result.panelAfter = await panel.innerText();
  result.widgetsAfterFix = await widgetState();
  result.nodeErrorsAfterFix = await page.evaluate(() => Object.keys(app.lastNodeErrors ?? {}));
  result.drawnRedAfterFix = await page.evaluate(() => Object.keys(window.cfxDrawnRed).filter((id) => window.cfxDrawnRed[id]));
  await closeDialogs(page);
  await shot("05-panel-after");
  step("run finished", { summary: result.summary });

  // The same panel in the light theme, to check the colours hold up (before the queue marks nodes).
  await page.evaluate(() => app.extensionManager.setting.set("Comfy.ColorPalette", "light"));
  await page.waitForTimeout(800);
  await shot("07-panel-after-light");
  await page.evaluate(() => app.extensionManager.setting.set("Comfy.ColorPalette", "dark"));

  // 8. The workflow now queues: no validation error.
  result.queueAfter = await queue();
  await page.evaluate(() => fetch("/api/interrupt", { method: "POST" })); // the fixture weights are not a real model
  await page.waitForTimeout(500);
  await closeDialogs(page);
  await shot("06-queued");
  step("queued after fix", { status: result.queueAfter.status });

  // 9. "Make this workflow portable" saves a copy carrying the download links.
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: 30_000 }),
    panel.locator('[data-testid="cfx-portable"]').click(),
  ]);
  await download.saveAs(join(out, "portable.json"));
  step("portable saved");

  // 10. Tokens: typed in ComfyUI's settings dialog, sent to the server, never kept in the page.
  await page.evaluate(() => app.extensionManager.command.execute("Comfy.ShowSettingsDialog"));
  await page.getByText("ComfyFixerSmart", { exact: true }).first().click();
  const tokenField = page.locator('[data-testid="cfx-hf_token"]');
  await tokenField.fill(scenario.token);
  await tokenField.locator("xpath=..").getByText("Save", { exact: true }).click();
  await tokenField.locator("xpath=..").getByText("Saved on the server").waitFor({ timeout: 10_000 });
  result.tokenFieldAfterSave = await tokenField.inputValue();
  await shot("08-settings");
  await page.keyboard.press("Escape");
  step("token saved");

});
