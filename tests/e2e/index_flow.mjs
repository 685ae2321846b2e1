// The background hash index as the panel shows it (run by test_e2e_index.py): one quiet line while it reads
// the model files (how far, the read limit, paused while ComfyUI renders, where to turn it off), moving as
// it goes; gone when the setting turns it off; gone again when it is done.
//
//   node index_flow.mjs scenario.json
//   scenario: {url, artifacts, label, workflow, name}
import { PANEL_HEADERS, closeDialogs, itemTools, openComfy, startFlow } from "./browser.mjs";

const flow = await startFlow("index", "index-result.json");
const { scenario, result, page, panel, shot, step, run } = flow;
const { status, untilStatus } = itemTools(flow, "index", 60_000);
const line = panel.locator('[data-testid="cfx-index"]');
const SETTING = "ComfyFixerSmart.Hashing.Background";
const BUSY_PROMPT = {
  1: { class_type: "EmptyImage", inputs: { width: 2048, height: 2048, batch_size: 1, color: 8421504 } },
  2: { class_type: "ImageBlur", inputs: { image: ["1", 0], blur_radius: 31, sigma: 10.0 } },
  3: { class_type: "PreviewImage", inputs: { images: ["2", 0] } },
};

/** Until the server has the page's change of the setting (the page posts it when the dialog's value changes). */
async function untilSaved(on) {
  for (let i = 0; i < 50; i += 1) {
    const values = await page.evaluate(async (headers) => {
      const r = await window.comfyAPI.api.api.fetchApi("/comfyfixer/settings", { headers });
      return (await r.json()).values;
    }, PANEL_HEADERS);
    if (values.background_hashing === on) return;
    await page.waitForTimeout(200);
  }
  throw new Error(`the server never got background_hashing=${on}`);
}

await run(async () => {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await page.evaluate(({ wf, name }) => app.loadGraphData(wf, true, true, name), { wf: scenario.workflow, name: scenario.name });
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  step("panel open");
  // The index states the server pushed (no event per piece: one when an index starts).
  await page.evaluate(() => {
    window.cfxPushed = [];
    window.comfyAPI.api.api.addEventListener("comfyfixer.status", (e) => window.cfxPushed.push(e.detail?.index?.state));
  });

  // The scan starts the index; the page hears it and shows the line, then reads the status for it.
  await line.waitFor({ timeout: 60_000 });
  result.first = await line.innerText();
  result.firstIndex = (await status()).index;
  await untilStatus((s) => s.index.state === "hashing" && s.index.bytes_done > 0);
  await page.waitForTimeout(2500);
  result.hashing = await line.innerText();
  result.hashingTitle = await line.getAttribute("title");
  await shot("index-01-hashing");
  await page.waitForTimeout(4500);
  result.later = await line.innerText();
  result.laterIndex = (await status()).index;
  step("line moves", { first: result.hashing, later: result.later });

  // ComfyUI renders (a slow blur of a large empty image, no model needed): the index reads nothing meanwhile
  // and its line says so; when the prompt is done it goes on by itself.
  const queued = await page.evaluate(async (prompt) => {
    const r = await window.comfyAPI.api.api.fetchApi("/prompt", { method: "POST", body: JSON.stringify({ prompt }) });
    return r.status;
  }, BUSY_PROMPT);
  const paused = await untilStatus((s) => s.index.state === "paused", 30_000);
  await page.waitForTimeout(2500);
  result.paused = await line.innerText();
  result.pausedState = await line.getAttribute("data-state");
  await shot("index-01b-paused");
  const resumed = await untilStatus((s) => s.index.state === "hashing" && s.index.bytes_done > paused.index.bytes_done, 180_000);
  step("paused while ComfyUI renders", { queued, pausedAt: paused.index.bytes_done, resumedAt: resumed.index.bytes_done });

  // "Settings" opens ComfyUI's settings on ours; the setting turns it off and the line goes.
  await line.locator('[data-testid="cfx-index-settings"]').click();
  await page.waitForTimeout(1500);
  await shot("index-02-settings");
  result.settingsDialog = await page.locator('[role="dialog"]').first().innerText().catch(() => "");
  await page.keyboard.press("Escape");
  await page.waitForTimeout(500);
  await closeDialogs(page);
  await page.evaluate((id) => app.extensionManager.setting.set(id, false), SETTING);
  await untilStatus((s) => s.index.state === "off", 10_000);
  await line.waitFor({ state: "detached", timeout: 10_000 });
  result.offIndex = (await status()).index;
  await shot("index-03-off");
  step("off");

  // On again: the next scan goes on where it stopped, and when it is done the line is gone.
  await page.evaluate((id) => app.extensionManager.setting.set(id, true), SETTING);
  await untilSaved(true);
  await panel.locator('[data-testid="cfx-scan"]').click();
  step("scanned again");
  await line.waitFor({ timeout: 30_000 });
  result.again = await line.innerText();
  await untilStatus((s) => s.index.state === "done", 120_000);
  await line.waitFor({ state: "detached", timeout: 10_000 });
  result.doneIndex = (await status()).index;
  result.pushed = await page.evaluate(() => window.cfxPushed);
  result.panelDone = await panel.innerText();
  await shot("index-04-done");
  step("done");
});
