// The panel's "Present elsewhere" rows at 1280x720, as a user meets them: each row says where "Use this file"
// puts the link; a same-named file with other bytes than the workflow states is refused on its row (words,
// the server's message behind Details, a Download button instead); the file with the stated bytes is linked.
//
//   node relink_flow.mjs scenario.json
//   scenario: {url, artifacts, workflow, wrong, right}
import { closeDialogs, openComfy, startFlow } from "./browser.mjs";

const { scenario: s, result, page, panel, shot, step, run } = await startFlow("relink_flow", "relink-result.json");
const row = (name) => panel.locator(`.cfx-item[data-state="elsewhere"][data-name="${name}"]`);

await run(async () => {
  await page.setViewportSize({ width: 1280, height: 720 });
  await openComfy(page, s.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await page.evaluate((wf) => app.loadGraphData(wf, true, true, "relink_zz"), s.workflow);
  await page.waitForTimeout(2500);
  await closeDialogs(page);
  await page.locator('[data-testid="cfx-toast"] .cfx-toast-close').click().catch(() => {});
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await row(s.wrong).waitFor({ timeout: 60_000 });
  await row(s.right).waitFor({ timeout: 10_000 });
  result.rowsBefore = { wrong: await row(s.wrong).innerText(), right: await row(s.right).innerText() };
  step("rows shown");

  const relinked = page.waitForResponse((r) => r.url().endsWith("/comfyfixer/relink"), { timeout: 60_000 });
  await row(s.wrong).locator('[data-testid="cfx-relink"]').first().click();
  result.refusedStatus = (await relinked).status();
  await row(s.wrong).locator('[data-testid="cfx-download-instead"]').waitFor({ timeout: 20_000 });
  await row(s.wrong).scrollIntoViewIfNeeded();
  await page.waitForTimeout(500);
  await shot("relink-01-refused");
  result.refusedRow = await row(s.wrong).innerText();
  await row(s.wrong).locator(".cfx-toggle").first().click();
  result.refusedDetails = await row(s.wrong).locator(".cfx-details").innerText();
  await shot("relink-02-refused-details");
  result.noticeAfterRefusal = await panel.locator('[data-testid="cfx-notice"]').allInnerTexts();
  step("refused");

  await row(s.right).locator('[data-testid="cfx-relink"]').first().click();
  await row(s.right).waitFor({ state: "detached", timeout: 30_000 });
  await page.waitForTimeout(800);
  result.noticeAfterLink = await panel.locator('[data-testid="cfx-notice"]').allInnerTexts();
  result.wrongStillListed = await row(s.wrong).count();
  await shot("relink-03-linked");
  step("linked");

  // The refused row's Download: a fix of that model, which refuses the local copy too and looks for the
  // workflow's own file (the workflow's link is to a repo the fake Hub does not have: not found).
  await row(s.wrong).locator('[data-testid="cfx-download-instead"]').click();
  const runRow = panel.locator(`.cfx-item[data-name="${s.wrong}"]:not([data-state="elsewhere"])`);
  await runRow.waitFor({ timeout: 60_000 });
  await page.waitForFunction(() => fetch("/api/comfyfixer/status", { headers: { "X-ComfyFixer-Client": "e2e" } })
    .then((r) => r.json()).then((d) => !["scanning", "resolving", "downloading", "verifying"].includes(d.phase)),
  null, { timeout: 60_000, polling: 500 });
  await page.waitForTimeout(1500);
  result.downloadRun = await page.evaluate(() => fetch("/api/comfyfixer/status", { headers: { "X-ComfyFixer-Client": "e2e" } })
    .then((r) => r.json()).then((d) => ({ phase: d.phase, rows: (d.data?.models ?? []).map((m) => ({ name: m.name, state: m.state, source: m.source, url: m.url, tried: m.tried })) })));
  result.downloadOfferedAfterRun = await row(s.wrong).locator('[data-testid="cfx-download-instead"]').count();
  await shot("relink-04-download-instead");
  step("download instead");
});
