// A low-confidence match: the run stops at "Pick a source", lists the candidates with why each was
// found, and downloads the one the user picks. Writes choice-result.json and screenshots.
//
//   node choice_flow.mjs scenario.json
//   scenario: {url, artifacts, workflow, model}
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { closeDialogs, openBrowser, openComfy } from "./browser.mjs";

const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = scenario.artifacts;
mkdirSync(out, { recursive: true });
const result = {};
const b = await openBrowser();
const { page } = b;
const panel = page.locator('[data-testid="cfx-panel"]');
const row = panel.locator(`.cfx-item[data-name="${scenario.model}"]`);

try {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await page.evaluate((wf) => app.loadGraphData(wf), scenario.workflow);
  await page.waitForTimeout(1000);
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await row.waitFor({ timeout: 30_000 });
  await panel.locator('[data-testid="cfx-fix-all"]').click();
  await panel.locator(`.cfx-item[data-name="${scenario.model}"][data-state="needs_choice"]`).waitFor({ timeout: 60_000 });
  result.choiceText = await row.innerText();
  await page.screenshot({ path: join(out, "21-pick-a-source.png") });
  await row.locator(".cfx-candidate").first().getByText("Use this one", { exact: true }).click();
  await panel.locator(`.cfx-item[data-name="${scenario.model}"][data-state="done"]`).waitFor({ timeout: 120_000 });
  await page.waitForTimeout(800);
  result.doneText = await row.innerText();
  await page.screenshot({ path: join(out, "22-picked.png") });
} catch (e) {
  result.failure = `${e.stack ?? e}`;
  await page.screenshot({ path: join(out, "99-choice-failure.png") }).catch(() => {});
  result.panelAtFailure = await panel.innerText().catch(() => null);
} finally {
  result.errors = b.errors;
  writeFileSync(join(out, "choice-result.json"), JSON.stringify(result, null, 2));
  await b.close();
}
process.exit(result.failure ? 1 : 0);
