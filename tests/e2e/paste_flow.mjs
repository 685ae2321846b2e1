// The user helps where the pack cannot, at 1280x720 as in docs/screenshots:
//   case "paste": a model found nowhere; the user pastes a link on its not-found row, the file lands
//     under its real name, the loader is repointed, and the prompt queues. Writes paste-result.json.
//   case "gated": a gated Hugging Face file says once what it needs, with "Accept license" and
//     "Add token", and the rest of the run goes on. Writes gated-result.json.
//
//   node paste_flow.mjs scenario.json
//   scenario: {case, url, artifacts, workflow, model, link?, realName?, other?}
import { readFileSync } from "node:fs";
import { closeDialogs, openComfy, queuePrompt, startFlow } from "./browser.mjs";

const which = JSON.parse(readFileSync(process.argv[2], "utf8")).case; // names the result file
const { scenario, result, page, panel, shot, step, run } = await startFlow(`${which}_flow`, `${which}-result.json`);
const row = panel.locator(`.cfx-item[data-name="${scenario.model}"]`);
const rowIn = (state, timeout = 90_000) => panel.locator(`.cfx-item[data-name="${scenario.model}"][data-state="${state}"]`)
  .waitFor({ timeout });

const queue = () => queuePrompt(page);

async function openWorkflow(name) {
  await page.setViewportSize({ width: 1280, height: 720 });
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await page.evaluate(({ wf, name }) => app.loadGraphData(wf, true, true, name), { wf: scenario.workflow, name });
  await page.waitForTimeout(2500);
  await closeDialogs(page);
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await row.waitFor({ timeout: 30_000 });
}

/** Start the fix from the panel's own button ("Download 1 missing model"). */
const fixAll = () => panel.locator('[data-testid="cfx-fix-all"]').click();

async function pasteCase() {
  await openWorkflow("paste_case");
  result.queueBefore = await queue();
  await closeDialogs(page);
  step("loaded", { queueBefore: result.queueBefore.status });

  // 1. The pack looks everywhere and finds nothing: the row says so and offers "Paste a link".
  await fixAll();
  await rowIn("not_found", 120_000);
  await page.waitForTimeout(500);
  result.notFoundText = await row.innerText();
  step("not found");

  // 2. The user pastes the address they found, as they would: click, type, press the button.
  await row.locator('[data-testid="cfx-paste"]').click();
  const input = row.locator('[data-testid="cfx-paste-input"]');
  await input.waitFor({ timeout: 10_000 });
  await input.click();
  await input.pressSequentially(scenario.link, { delay: 5 });
  await page.waitForTimeout(300);
  await shot("41-paste-link");
  await row.locator('[data-testid="cfx-paste-go"]').click();
  step("link pasted");

  // 3. Checked, then downloaded like any other source (through the review when it is on).
  const approve = panel.locator('[data-testid="cfx-approve"]');
  const summary = panel.locator('[data-testid="cfx-summary"]');
  await Promise.race([approve.waitFor({ timeout: 60_000 }), summary.waitFor({ timeout: 60_000 })]);
  if (await approve.count()) {
    result.reviewText = await panel.locator('[data-testid="cfx-review"]').innerText();
    await approve.click();
  }
  // The loader is repointed to the file's real name once it lands (comfyfixer.done).
  await page.waitForFunction((name) => app.graph.getNodeById(1)?.widgets?.[0]?.value === name, scenario.realName,
    { timeout: 120_000 });
  await summary.waitFor({ timeout: 60_000 });
  await page.waitForTimeout(1000); // the rescan after comfyfixer.done
  result.widgetAfter = await page.evaluate(() => app.graph.getNodeById(1).widgets[0].value);
  result.summary = await summary.innerText();
  result.noticeAfter = await panel.locator('[data-testid="cfx-notice"]').innerText().catch(() => null);
  const doneLine = panel.locator('[data-testid="cfx-done-line"]');
  if (await doneLine.count()) await doneLine.locator(".cfx-toggle").click();
  await rowIn("done", 10_000);
  await page.waitForTimeout(500);
  result.doneText = await row.innerText();
  await shot("42-pasted-landed");
  step("landed", { widget: result.widgetAfter });

  // 4. ComfyUI now accepts the prompt.
  result.queueAfter = await queue();
  await page.evaluate(() => fetch("/api/interrupt", { method: "POST" })); // the fixture weights are not a real model
  await page.waitForTimeout(500);
  step("queued", { status: result.queueAfter.status });
}

async function gatedCase() {
  await openWorkflow("gated_case");
  // 1. The fix stops for review; the gated file is known before any byte moves.
  await fixAll();
  await panel.locator('[data-testid="cfx-review"]').waitFor({ timeout: 120_000 });
  await rowIn("login", 30_000);
  await page.waitForTimeout(500);
  result.reviewText = await panel.locator('[data-testid="cfx-review"]').innerText();
  result.reviewRowText = await row.innerText();
  result.panelText = await panel.innerText();
  const license = row.getByRole("link", { name: "Accept license" });
  result.licenseHref = await license.getAttribute("href");
  result.licenseTarget = await license.getAttribute("target");
  await shot("43-gated-review");
  step("gated in review");

  // 2. The rest downloads; the gated row stays a login to give, not a failure.
  await panel.locator('[data-testid="cfx-approve"]').click();
  await panel.locator('[data-testid="cfx-summary"]').waitFor({ timeout: 120_000 });
  await page.waitForTimeout(1000);
  result.summary = await panel.locator('[data-testid="cfx-summary"]').innerText();
  result.afterRowText = await row.innerText();
  result.afterRowState = await row.getAttribute("data-state");
  await shot("44-gated-after");
  step("run finished", { summary: result.summary });

  // 3. "Add token" opens the settings on the Hugging Face token field.
  await row.locator('[data-testid="cfx-add-token"]').click();
  result.tokenFieldShown = await page.locator('[data-testid="cfx-hf_token"]').waitFor({ timeout: 10_000 })
    .then(() => true, () => false);
  await page.keyboard.press("Escape");
  step("add token", { shown: result.tokenFieldShown });
}

await run(() => (scenario.case === "gated" ? gatedCase() : pasteCase()));
