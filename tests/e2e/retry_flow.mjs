// A download that needs a login: it fails with a message saying what to do, the user saves the
// Civitai key in the settings, retries, cancels mid-way, retries again. Writes result.json and
// screenshots to <artifacts>; pytest (test_e2e_fix.py) checks the file on disk.
//
//   node retry_flow.mjs scenario.json
//   scenario: {url, artifacts, workflow, model, token}
import { closeDialogs, openComfy, startFlow, waitForLandedRow } from "./browser.mjs";

const { scenario, result, page, panel, shot, step, run } = await startFlow("retry_flow", "retry-result.json");

const row = panel.locator(`.cfx-item[data-name="${scenario.model}"]`);
const rowIn = (state, timeout = 60_000) => panel.locator(`.cfx-item[data-name="${scenario.model}"][data-state="${state}"]`)
  .waitFor({ timeout });

await run(async () => {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await page.evaluate((wf) => app.loadGraphData(wf), scenario.workflow);
  await page.waitForTimeout(1000);
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await row.waitFor({ timeout: 30_000 });
  step("panel open");

  // 1. No key: the row says, once, that the file needs a login and what to do; it is not a failure.
  await panel.locator('[data-testid="cfx-fix-all"]').click();
  const review = panel.locator('[data-testid="cfx-review"]');
  await Promise.race([review.waitFor({ timeout: 60_000 }), rowIn("login")]);
  if (await review.count()) {
    result.reviewText = await review.innerText();
    const approve = panel.locator('[data-testid="cfx-approve"]');
    // No button when nothing can be downloaded yet (the only file waits for a key).
    if ((await approve.count()) && (await approve.isEnabled())) await approve.click();
  }
  await rowIn("login");
  await page.waitForTimeout(500);
  result.failedText = await row.innerText();
  result.summaryWithoutKey = await panel.locator('[data-testid="cfx-summary"], [data-testid="cfx-review"]').first().innerText().catch(() => null);
  await shot("11-login-required");
  step("needs a login");

  // 2. The row's button opens the settings on our tokens; save the key there, then retry.
  await row.locator('[data-testid="cfx-add-token"]').click();
  const keyField = page.locator('[data-testid="cfx-civitai_api_key"]');
  await keyField.waitFor({ timeout: 10_000 });
  await keyField.fill(scenario.token);
  await keyField.locator("xpath=..").getByText("Save", { exact: true }).click();
  await keyField.locator("xpath=..").getByText("Saved on the server").waitFor({ timeout: 10_000 });
  await page.keyboard.press("Escape");
  const retry = row.getByText("Retry", { exact: true });
  if (await retry.count()) await retry.click();
  else await panel.locator('[data-testid="cfx-approve"]').click(); // still in review: the key lifted the block
  await rowIn("downloading");
  step("retrying with the key");

  // 3. Cancel the download from its row; it can be retried again.
  await row.getByText("Cancel", { exact: true }).click();
  await rowIn("cancelled", 30_000);
  // The engine's last progress event may still be in flight: read the row once it has settled.
  await page.waitForTimeout(1500);
  await rowIn("cancelled", 30_000);
  result.cancelledText = await row.innerText();
  await shot("12-cancelled");
  step("cancelled");

  await row.locator("button").filter({ hasText: /^\s*(Resume|Retry)\s*$/ }).first().click();
  await waitForLandedRow(page, panel, scenario.model);
  await panel.locator('[data-testid="cfx-summary"]').waitFor({ timeout: 30_000 });
  await page.waitForTimeout(800);
  result.doneText = await row.innerText();
  result.summary = await panel.locator('[data-testid="cfx-summary"]').innerText();
  await shot("13-retried");
  step("done after retry");
});
