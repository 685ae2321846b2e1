// The panel's screenshots for docs/screenshots: a 30-model workflow at 1280x720, dark and light,
// in each state a user meets (before, review, during + the files moving, after, after compact).
// Run by tests/e2e/screenshots.py.
//
//   node screenshots_flow.mjs scenario.json
//   scenario: {url, artifacts, workflow, name}
import { join } from "node:path";
import { closeDialogs, openBrowser, openComfy } from "./browser.mjs";
import { readFileSync, writeFileSync } from "node:fs";

const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = scenario.artifacts;
const result = { shots: [] };
const b = await openBrowser({ viewport: { width: 1280, height: 720 } });
const { page } = b;
const panel = page.locator('[data-testid="cfx-panel"]');

async function both(name) {
  for (const palette of ["dark", "light"]) {
    await page.evaluate((p) => app.extensionManager.setting.set("Comfy.ColorPalette", p), palette);
    await page.waitForTimeout(600);
    const file = `${name}-${palette}.png`;
    await page.screenshot({ path: join(out, file) });
    result.shots.push(file);
  }
  await page.evaluate(() => app.extensionManager.setting.set("Comfy.ColorPalette", "dark"));
}

try {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await page.evaluate(({ wf, name }) => app.loadGraphData(wf, true, true, name), { wf: scenario.workflow, name: scenario.name });
  await page.waitForTimeout(2500);
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await panel.locator(".cfx-item").first().waitFor({ timeout: 60_000 });
  await page.waitForTimeout(800);
  result.before = await panel.innerText();
  await both("01-before");

  await panel.locator('[data-testid="cfx-fix-all"]').click();
  await panel.locator('[data-testid="cfx-review"]').waitFor({ timeout: 120_000 });
  await page.waitForTimeout(800);
  result.review = await panel.innerText();
  await both("02-review");

  await panel.locator('[data-testid="cfx-approve"]').click();
  await panel.locator('.cfx-item[data-state="downloading"]').first().waitFor({ timeout: 60_000 });
  await page.waitForTimeout(2500);
  result.during = await panel.innerText();
  await both("03-during");
  // Problems come first, so the files moving are below the fold: show them too.
  await panel.locator('.cfx-item[data-state="downloading"]').first().evaluate((el) => el.scrollIntoView({ block: "start" }));
  await page.waitForTimeout(300);
  await both("03-during-files");

  await panel.locator('[data-testid="cfx-summary"]').waitFor({ timeout: 300_000 });
  await page.waitForTimeout(4000); // the rescan clears the red outlines of what landed
  await panel.locator(".cfx-head").scrollIntoViewIfNeeded();
  result.after = await panel.innerText();
  await both("04-after");
  // The row that asks for a pick, with its candidate.
  const pick = panel.locator('.cfx-item[data-state="needs_choice"]').first();
  if (await pick.count()) {
    await pick.evaluate((el) => el.scrollIntoView({ block: "start" }));
    await page.waitForTimeout(300);
    await both("04-after-pick-a-source");
    await panel.locator(".cfx-head").scrollIntoViewIfNeeded();
  }
  await panel.locator('[data-testid="cfx-compact"]').click();
  await page.waitForTimeout(500);
  await both("05-after-compact");
} catch (e) {
  result.failure = `${e.stack ?? e}`;
  await page.screenshot({ path: join(out, "99-failure.png") }).catch(() => {});
} finally {
  result.errors = b.errors;
  writeFileSync(join(out, "screenshots-result.json"), JSON.stringify(result, null, 2));
  await b.close();
}
process.exit(result.failure ? 1 : 0);
