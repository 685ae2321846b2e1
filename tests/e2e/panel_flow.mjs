// The panel in a real page: one notice beside the frontend's own list, runs that belong to their
// workflow, "Waiting for a download slot", partial files, problems first, compact mode, portable with
// present files, a rescan after the socket reconnects, and the Report node's text on the node.
// Writes panel-result.json and screenshots; pytest (test_e2e_panel.py) checks files on disk.
//
//   node panel_flow.mjs scenario.json
//   scenario: {url, artifacts, models, wfModal, wfA, wfB, wfC, wfReport, nowhere, checkpoint, lora, modalModel}
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { closeDialogs, dialogTexts, itemTools, openComfy, startFlow } from "./browser.mjs";

const flow = await startFlow("panel_flow", "panel-result.json");
const { scenario, out, result, page, panel, shot, step, run } = flow;
const { untilStatus } = itemTools(flow, "panel", 60_000);
const item = (name) => panel.locator(`.cfx-item[data-name="${name}"]`);
const activeName = () => page.evaluate(() => app.extensionManager.workflow.activeWorkflow?.filename ?? null);

async function load(wf, name) {
  // A named tab per workflow, as when the user opens saved files.
  await page.evaluate(({ wf, name }) => app.loadGraphData(wf, true, true, name), { wf, name });
  await page.waitForTimeout(1200);
}

async function untilSummary(timeout = 180_000) {
  await panel.locator('[data-testid="cfx-summary"]').waitFor({ timeout });
  await page.waitForTimeout(800); // the rescan after comfyfixer.done
}

await run(async () => {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  result.theirCheck = await page.evaluate(() => typeof app.refreshMissingModels === "function");
  await page.waitForTimeout(1500);
  await closeDialogs(page);

  // 1. A workflow whose model carries a link: the frontend's own list shows it. One notice, and
  //    ours is never hidden behind their modal.
  await load(scenario.wfModal, "with_links");
  await page.waitForTimeout(2500);
  result.dialogsModal = await dialogTexts(page);
  if (result.theirCheck) {
    const details = page.getByText("View details").first();
    if (await details.count()) await details.click().catch(() => {});
  }
  result.complementShown = await page.locator('[data-testid="cfx-complement"]').first().waitFor({ timeout: 15_000 })
    .then(() => true, () => false);
  result.ourToasts = await page.locator('[data-testid="cfx-toast"]').count();
  result.toastOnTop = await page.evaluate(() => {
    const toast = document.querySelector('[data-testid="cfx-toast"]');
    if (!toast) return null;
    const r = toast.getBoundingClientRect();
    return toast.contains(document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2));
  });
  await shot("31-their-list-and-ours");
  step("their list", { complement: result.complementShown, toasts: result.ourToasts, onTop: result.toastOnTop });
  await closeDialogs(page);
  await page.locator('[data-testid="cfx-toast"] .cfx-toast-close').click().catch(() => {});

  // 2. Workflow A: review, then two downloads with one slot: one waits for it.
  await load(scenario.wfA, "workflow_A");
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
  await panel.locator('[data-testid="cfx-approve"]').waitFor({ timeout: 60_000 });
  await panel.locator('[data-testid="cfx-approve"]').click();
  await panel.locator('.cfx-item[data-state="downloading"]').first().waitFor({ timeout: 60_000 });
  await page.waitForTimeout(500);
  result.slotText = await panel.locator('.cfx-item[data-state="resolved"]').first().innerText().catch(() => null);
  result.runTitleA = await panel.locator('[data-testid="cfx-run"]').innerText();
  await shot("32-waiting-for-a-slot");
  step("A downloading");

  // 3. Workflow B while A runs: A's run is a banner with a way to it; Fix on B says why it waits.
  await load(scenario.wfB, "workflow_B");
  await closeDialogs(page);
  await panel.locator('[data-testid="cfx-other-run"]').waitFor({ timeout: 20_000 });
  result.otherRunText = await panel.locator('[data-testid="cfx-other-run"]').innerText();
  result.aRowsUnderB = await panel.locator(`.cfx-item[data-name="${scenario.checkpoint}"], .cfx-item[data-name="${scenario.lora}"]`).count();
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
  await panel.locator('[data-testid="cfx-queued"]').waitFor({ timeout: 20_000 });
  result.busyNotice = await panel.locator('[data-testid="cfx-queued"]').innerText();
  await shot("33-other-workflow-busy");
  await panel.locator('[data-testid="cfx-open-run"]').click();
  await page.waitForFunction(() => app.extensionManager.workflow.activeWorkflow?.filename === "workflow_A", null, { timeout: 20_000 })
    .catch(() => {});
  result.activeAfterOpen = await activeName();
  step("B while A runs", { active: result.activeAfterOpen });

  // 4. Cancel the file downloading now: its kept bytes are said, then discarded on request.
  await panel.locator('[data-testid="cfx-run"]').waitFor({ timeout: 20_000 });
  const downloading = panel.locator('.cfx-item[data-state="downloading"]').first();
  await downloading.waitFor({ timeout: 60_000 });
  result.cancelledName = await downloading.getAttribute("data-name");
  await page.waitForTimeout(1500);
  await downloading.getByRole("button", { name: "Cancel" }).click();
  const cancelled = item(result.cancelledName);
  await panel.locator(`.cfx-item[data-name="${result.cancelledName}"][data-state="cancelled"]`).waitFor({ timeout: 30_000 });
  await page.waitForTimeout(1200);
  result.cancelledText = await cancelled.innerText();
  await shot("34-cancelled-kept");
  await cancelled.locator('[data-testid="cfx-discard"]').click();
  await cancelled.locator('[data-testid="cfx-discard"]').waitFor({ state: "detached", timeout: 20_000 });
  result.discardedText = await cancelled.innerText();
  step("partial discarded", { name: result.cancelledName });
  await panel.getByRole("button", { name: "Cancel all" }).click().catch(() => {});
  await untilSummary(60_000);
  // B's queued fix starts as soon as A's run ends; once it has ended too, A's panel still says how A's went.
  await untilStatus((doc) => doc?.data?.workflow === "workflow_B" && Boolean(doc.data.summary));
  await page.waitForTimeout(800);
  result.summaryAAfterB = await panel.locator('[data-testid="cfx-summary"]').innerText().catch(() => null);
  await shot("34b-own-summary-after-queued-run");

  // 5. Workflow C: one file found, one not: the problem comes first, the finished row folds away.
  await load(scenario.wfC, "workflow_C");
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
  await panel.locator('[data-testid="cfx-approve"]').waitFor({ timeout: 60_000 });
  await panel.locator('[data-testid="cfx-approve"]').click();
  await untilSummary();
  result.firstItem = await panel.locator(".cfx-item").first().getAttribute("data-name");
  result.doneLine = await panel.locator('[data-testid="cfx-done-line"]').innerText().catch(() => null);
  result.doneRowsShown = await panel.locator('.cfx-item[data-state="done"]').count();
  result.summaryC = await panel.locator('[data-testid="cfx-summary"]').innerText();
  result.heightFull = await panel.evaluate((el) => el.scrollHeight);
  await shot("35-problems-first");
  await panel.locator('[data-testid="cfx-compact"]').click();
  await page.waitForTimeout(400);
  result.heightCompact = await panel.evaluate((el) => el.scrollHeight);
  await shot("36-compact");
  await panel.locator('[data-testid="cfx-compact"]').click();
  step("problems first", { first: result.firstItem });

  // 6. Another run (B), then C's portable copy still links the file C's run fetched.
  await load(scenario.wfB, "workflow_B");
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
  await untilSummary(60_000);
  await load(scenario.wfC, "workflow_C");
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: 30_000 }),
    panel.locator('[data-testid="cfx-portable"]').click(),
  ]);
  await download.saveAs(join(out, "portable-C.json"));
  await panel.locator('[data-testid="cfx-notice"]').waitFor({ timeout: 10_000 });
  result.portableNotice = await panel.locator('[data-testid="cfx-notice"]').innerText();
  step("portable");

  // 7. A file lands while the socket is down (a restart): the reconnect rescans.
  writeFileSync(join(scenario.models, "loras", scenario.nowhere), "placed by hand\n");
  await page.evaluate(() => window.comfyAPI.api.api.dispatchEvent(new CustomEvent("reconnected")));
  result.goneAfterReconnect = await item(scenario.nowhere).waitFor({ state: "detached", timeout: 20_000 })
    .then(() => true, () => false);
  step("rescanned on reconnect", { gone: result.goneAfterReconnect });

  // 8. The Report node shows its text on the node; the Download node's source is not a model.
  await load(scenario.wfReport, "report");
  await closeDialogs(page);
  await page.evaluate(() => app.queuePrompt(0, 1));
  const text = page.locator('[data-testid="cfx-report-text"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="cfx-report-text"]')?.value, null, { timeout: 60_000 });
  result.reportText = await text.inputValue();
  await shot("37-report-node");
  step("report node");
});
