// A low-confidence match: the run (started with the keybinding) stops at "Pick a source", lists the
// candidates with why each was found, and downloads the one the user picks. Also: with "check on
// load" off no notice appears. Writes choice-result.json and screenshots.
//
//   node choice_flow.mjs scenario.json
//   scenario: {url, artifacts, workflow, model}
import { closeDialogs, openComfy, startFlow, waitForLandedRow } from "./browser.mjs";

const { scenario, result, page, panel, shot, run } = await startFlow("choice_flow", "choice-result.json");
const row = panel.locator(`.cfx-item[data-name="${scenario.model}"]`);

await run(async () => {
  await openComfy(page, scenario.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500); // the restored workflow's own check
  // With "check on load" off, loading a workflow with a missing model shows no new notice.
  await page.evaluate(() => app.extensionManager.setting.set("ComfyFixerSmart.General.CheckOnLoad", false));
  const notices = () => page.getByText("ComfyFixerSmart can find, download and verify them.").count();
  const before = await notices();
  await page.evaluate((wf) => app.loadGraphData(wf), scenario.workflow);
  await page.waitForTimeout(2000);
  result.newNoticesWithCheckOff = (await notices()) - before;
  // A page setting: ComfyUI keeps it in the user's comfy.settings.json (our server has no copy).
  result.storedCheckOnLoad = await page.evaluate(() => fetch("/api/settings/ComfyFixerSmart.General.CheckOnLoad")
    .then((r) => r.json()));
  await page.evaluate(() => app.extensionManager.setting.set("ComfyFixerSmart.General.CheckOnLoad", true));
  await closeDialogs(page);

  // The keybinding runs "Fix missing models": it opens the panel and starts the run.
  await page.mouse.click(900, 750); // focus the canvas, away from any node
  await page.keyboard.press("Alt+Shift+F");
  await row.waitFor({ timeout: 30_000 });
  await panel.locator(`.cfx-item[data-name="${scenario.model}"][data-state="needs_choice"]`).waitFor({ timeout: 60_000 });
  result.choiceText = await row.innerText();
  await shot("21-pick-a-source");
  await row.locator(".cfx-candidate").first().getByText("Use this one", { exact: true }).click();
  await waitForLandedRow(page, panel, scenario.model);
  await page.waitForTimeout(800);
  result.doneText = await row.innerText();
  await shot("22-picked");
});
