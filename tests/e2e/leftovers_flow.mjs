// The panel's leftovers at 1280x720, as a user meets them: a node pack that failed to import (worded with
// ComfyUI's reason and what to do), rescans after tab switches that still carry the workflow's top-level
// models[], a fix queued behind another and taken off the queue, and a route's 403 in words.
// Each part goes under result.<part>; a broken part is recorded in result.errors_by_item and the flow goes on.
//
//   node leftovers_flow.mjs scenario.json
//   scenario: {url, artifacts, label, workflowA, workflowB, nameA, nameB, linked, brokenPack}
import { closeDialogs, openComfy, startFlow, itemTools, recordScanBodies, PANEL_HEADERS } from "./browser.mjs";

const { scenario: s, result, page, panel, shot, step, run } = await startFlow("leftovers_flow", "leftovers-result.json");
const { item, status, untilStatus } = itemTools({ result, page, shot, step }, "leftovers", 120_000);

async function load(wf, name) {
  await page.evaluate(({ wf, name }) => app.loadGraphData(wf, true, true, name), { wf, name });
  await page.waitForTimeout(2500);
  await closeDialogs(page);
  await page.locator('[data-testid="cfx-toast"] .cfx-toast-close').click().catch(() => {});
}

/** Switch tabs with the frontend's own command, as a click on the tab does. */
async function switchTo(name) {
  const ok = await page.evaluate(async (n) => {
    const { openWorkflowByName } = await import("/extensions/ComfyFixerSmart/lib/graph.js");
    return openWorkflowByName(app, n);
  }, name);
  if (!ok) throw new Error(`no open tab ${name}`);
  await page.waitForTimeout(2000);
  await closeDialogs(page);
}

async function rescan() {
  const answered = page.waitForResponse((r) => r.url().endsWith("/comfyfixer/scan"), { timeout: 60_000 });
  await panel.locator('[data-testid="cfx-scan"]').click();
  const response = await answered;
  await page.waitForTimeout(800);
  return response.status();
}

await run(async () => {
  const scanBodies = recordScanBodies(page);
  await page.setViewportSize({ width: 1280, height: 720 });
  await openComfy(page, s.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await load(s.workflowA, s.nameA);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  step("loaded");

  // 1. The pack that failed to import: which one, ComfyUI's reason, what to do; its file still listed.
  await item("failedPack", async () => {
    const pack = panel.locator('[data-testid="cfx-failed-pack"]');
    await pack.waitFor({ timeout: 60_000 });
    await page.waitForTimeout(800);
    await shot("leftovers-01-failed-pack");
    const details = pack.locator(".cfx-toggle");
    const hasDetails = (await details.count()) > 0;
    if (hasDetails) await details.first().click();
    result.failedPack = {
      text: await pack.innerText(),
      details: hasDetails ? await pack.locator(".cfx-details").innerText() : null,
      installOffered: await panel.locator(`.cfx-item[data-state="pack"]`).allInnerTexts(),
      rows: await panel.evaluate((el) => [...el.querySelectorAll("[data-name]")].map((e) => e.dataset.name)),
    };
    if (hasDetails) await details.first().click();
  });

  // 4. Rescans after switching tabs carry A's top-level models[] (the first scans and the fix do).
  await item("rescan", async () => {
    scanBodies.push({ name: "--switch--", models: [] });
    await load(s.workflowB, s.nameB);
    await switchTo(s.nameA);
    const first = await rescan();
    await switchTo(s.nameB);
    await switchTo(s.nameA);
    const second = await rescan();
    result.rescan = { statuses: [first, second], scanBodies };
  });

  // 3. Fix on B while A waits for review: B is queued; the notice's button takes it off the queue.
  await item("unqueue", async () => {
    await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
    await untilStatus((d) => d.phase === "review" && d.data?.workflow === s.nameA);
    await switchTo(s.nameB);
    await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
    const queued = panel.locator('[data-testid="cfx-queued"]');
    await queued.waitFor({ timeout: 30_000 });
    await page.waitForTimeout(800);
    await shot("leftovers-02-queued");
    result.unqueue = { queuedText: await queued.innerText(), queuedBefore: (await status()).queued };
    await queued.locator('[data-testid="cfx-unqueue"]').click();
    await queued.waitFor({ state: "detached", timeout: 20_000 });
    await page.waitForTimeout(800);
    await shot("leftovers-03-unqueued");
    const doc = await status();
    Object.assign(result.unqueue, {
      queuedAfter: doc.queued, runWorkflow: doc.data?.workflow, phase: doc.phase,
      notice: await panel.locator('[data-testid="cfx-notice"]').innerText().catch(() => null),
    });
  });

  // 2. A route's 403 in words: the panel's request loses its header on the way (an old cached panel or a
  // proxy does this), so ComfyUI refuses it; the panel says what to do, the server's words behind Details.
  await item("refused", async () => {
    await page.route("**/comfyfixer/scan", (route) => {
      const headers = { ...route.request().headers() };
      delete headers["x-comfyfixer-client"];
      return route.continue({ headers });
    });
    const code = await rescan();
    const error = panel.locator('[data-testid="cfx-scan-error"]');
    await error.waitFor({ timeout: 20_000 });
    await shot("leftovers-04-refused");
    const words = await error.innerText();
    await error.locator(".cfx-toggle").click();
    result.refused = { status: code, words, details: await error.locator(".cfx-details").innerText() };
    await page.unroute("**/comfyfixer/scan");
    await rescan();
    result.refused.afterHeaderBack = await error.count();
  });

  // The run of A waits for review: cancel it, as the user would.
  await page.evaluate(async (headers) => {
    await window.comfyAPI.api.api.fetchApi("/comfyfixer/cancel", {
      method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: "{}" });
  }, PANEL_HEADERS);
  step("done");
});
