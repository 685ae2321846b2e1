// The panel as a demanding user meets it, at 1280x720: a 34-reference workflow through scan, review, the
// run and after it, with a second workflow pressed meanwhile. Each numbered item of the issue is recorded
// under result.item<N>; a broken part is recorded in result.errors_by_item and the flow goes on, so each
// pytest test (test_e2e_round3.py) fails for its own item only. Screenshots: r3-01-before .. r3-04-after.
//
//   node round3_flow.mjs scenario.json
//   scenario: {url, artifacts, label, workflowA, workflowB, linked, packFile, pick, nowhere, pasteUrl,
//              realName, gated, partial, token, wrongBytes, bMissing}
import { closeDialogs, openComfy, queuePrompt, startFlow, itemTools, recordScanBodies } from "./browser.mjs";

const { scenario: s, result, page, panel, shot, step, run } = await startFlow("round3_flow", "round3-result.json");
const { item, status, untilStatus } = itemTools({ result, page, shot, step }, "r3", 240_000);
const row = (name) => panel.locator(`[data-name="${name}"]`).first();
const stateOf = (name) => row(name).getAttribute("data-state").catch(() => null);
const ACTIVE = new Set(["scanning", "resolving", "review", "downloading", "verifying"]);


/** Row states of the panel as the user sees them: name -> data-state. */
const panelStates = () => panel.evaluate((el) => Object.fromEntries(
  [...el.querySelectorAll("[data-name]")].filter((e) => e.matches(".cfx-line, .cfx-item"))
    .map((e) => [e.dataset.name, e.dataset.state])));

async function load(wf, name) {
  await page.evaluate(({ wf, name }) => app.loadGraphData(wf, true, true, name), { wf, name });
  await page.waitForTimeout(2500);
  await closeDialogs(page);
}

/** Open a table line's whole row (a click on its name). Right after a workflow switch the panel is
 *  rebuilt from a new scan: wait for the line first. */
async function expand(name) {
  const full = panel.locator(`.cfx-item[data-name="${name}"]`);
  if (await full.count()) return full;
  const line = panel.locator(`.cfx-line[data-name="${name}"] .cfx-line-name`).first();
  await line.waitFor({ timeout: 30_000 });
  await line.click();
  await full.waitFor({ timeout: 10_000 });
  return full;
}

async function collapse(name) {
  const back = panel.locator(`.cfx-item[data-name="${name}"] [title="Back to one line"]`);
  if (await back.count()) await back.click();
}

function loaderErrors() {
  return page.evaluate(() => {
    const ids = new Set(Object.keys(app.lastNodeErrors ?? {}));
    for (const n of (app.rootGraph ?? app.graph).nodes) if (n.has_errors) ids.add(String(n.id));
    return [...ids];
  });
}

function nodeIdOf(wf, name) {
  return String(wf.nodes.find((n) => (n.widgets_values ?? []).includes(name))?.id);
}

await run(async () => {
  const scanBodies = recordScanBodies(page);
  await page.setViewportSize({ width: 1280, height: 720 });
  await openComfy(page, s.url, "ComfyFixerSmart");
  await page.waitForTimeout(1500);
  await closeDialogs(page);
  await load(s.workflowA, "community_34_refs");
  await page.locator('[data-testid="cfx-toast"] .cfx-toast-close').click().catch(() => {});
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel"));
  await panel.locator(".cfx-line").first().waitFor({ timeout: 60_000 });
  await page.waitForTimeout(1500);
  await shot("r3-01-before");
  step("loaded");

  // 7. The table: 30+ lines inside one screen, no line taller than one text line, names never cut mid-word.
  await item("item7", async () => {
    result.item7 = await panel.evaluate((el) => {
      const lines = [...el.querySelectorAll(".cfx-line")];
      let scroller = el.parentElement;
      while (scroller && !(scroller.scrollHeight > scroller.clientHeight + 2 && getComputedStyle(scroller).overflowY !== "visible")) scroller = scroller.parentElement;
      const first = lines[0].getBoundingClientRect();
      const last = lines.at(-1).getBoundingClientRect();
      // A name that wraps must wrap where a <wbr> is (after _ - . /): each text run stays whole.
      const midWord = lines.filter((l) => {
        const name = l.querySelector(".cfx-name");
        const rects = [...name.childNodes].filter((n) => n.nodeType === 3).map((t) => {
          const r = document.createRange();
          r.selectNodeContents(t);
          return r.getClientRects().length;
        });
        return rects.some((n) => n > 1);
      }).map((l) => l.dataset.name);
      return { lines: lines.length, span: Math.round(last.bottom - first.top),
        viewport: (scroller ?? document.documentElement).clientHeight, width: Math.round(el.getBoundingClientRect().width),
        tall: lines.filter((l) => l.getBoundingClientRect().height > 19).map((l) => l.dataset.name), midWord };
    });
  });

  // 1. What the page sent carries the workflow's own models[] (links and hashes).
  result.item1 = { scanBodies };

  // 6. The file only an uninstalled pack can load waits under the pack, not in the download count.
  await item("item6", async () => {
    const packText = await panel.locator('[data-testid="cfx-pack-files"]').first().innerText({ timeout: 20_000 });
    const fixAll = await panel.locator('[data-testid="cfx-fix-all"]').innerText();
    const missing = await panel.locator('[data-testid="cfx-missing-count"]').innerText();
    result.item6 = { packText, packFileRow: await panel.locator(`.cfx-line[data-name="${s.packFile}"], .cfx-item[data-name="${s.packFile}"][data-state="missing"]`).count(),
      fixAllCount: Number(fixAll.match(/\d+/)?.[0]), missingCount: Number(missing.match(/\d+/)?.[0]), approved: [] };
  });

  // 10 (partial). A stopped download's bytes are said before anything runs.
  result.item10 = { counts: [], etas: [], partialText: "" };
  result.item9 = { widgetValue: null, runActiveWhenRepointed: false, failedHasPaste: false };
  await item("item10", async () => {
    const full = await expand(s.partial);
    result.item10.partialText = await full.innerText();
    await collapse(s.partial);
  });

  // 8 (before). The prompt is queued once: the loaders of the missing files are outlined red.
  await queuePrompt(page);
  await closeDialogs(page);
  const redBefore = await loaderErrors();
  result.redBefore = redBefore;
  step("queued once", { red: redBefore.length });

  // 4. The review: exact totals, every folder with its count, size and destination.
  await panel.locator('[data-testid="cfx-fix-all"]').click();
  await panel.locator('[data-testid="cfx-approve"]').waitFor({ timeout: 180_000 });
  await untilStatus((d) => d.phase === "review" && !(d.data?.plan?.sizing), 60_000);
  await page.waitForTimeout(1200);
  await shot("r3-02-review");
  await item("item4", async () => {
    const doc = await status();
    const blocked = new Set((await panel.evaluate((el) => [...el.querySelectorAll('[data-state="login"]')].map((e) => e.dataset.name))));
    const go = doc.data.models.filter((r) => r.state === "review" && !r.carried && !blocked.has(r.name));
    const fmt = (n) => { // dom.js fmtBytes
      const U = ["B", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1000 && i < U.length - 1) { n /= 1000; i += 1; }
      return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${U[i]}`;
    };
    const words = (list) => {
      const unknown = list.filter((r) => r.size == null).length;
      const bytes = list.reduce((n, r) => n + (r.size ?? 0), 0);
      const size = unknown === 0 ? fmt(bytes) : unknown === list.length ? `${unknown} of unknown size` : `${fmt(bytes)} + ${unknown} of unknown size`;
      return `${list.length} ${list.length === 1 ? "model" : "models"} · ${size}`;
    };
    const byFolder = new Map();
    for (const r of go) byFolder.set(r.folder, [...(byFolder.get(r.folder) ?? []), r]);
    const into = new Map((doc.data.plan.folders ?? []).map((f) => [f.folder, f.into]));
    result.item4 = {
      buttonText: (await panel.locator('[data-testid="cfx-approve"]').innerText()).trim(),
      expected: words(go),
      folderLines: (await panel.locator('[data-testid="cfx-review-folders"] li').allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim()),
      expectedFolders: [...byFolder].map(([f, list]) => `${into.get(f)} ${words(list)}`),
    };
    result.item6.approved = go.map((r) => r.name);
  });

  // 3. A token saved while the review is open is used by the download approved after it.
  await item("item3", async () => {
    result.item3 = { gatedBlockedBefore: (await stateOf(s.gated)) === "login" };
    await page.evaluate(() => app.extensionManager.command.execute("Comfy.ShowSettingsDialog"));
    await page.getByText("ComfyFixerSmart", { exact: true }).first().click();
    const field = page.locator('[data-testid="cfx-hf_token"]');
    await field.fill(s.token);
    await field.locator("xpath=..").getByText("Save", { exact: true }).click();
    await field.locator("xpath=..").getByText("Saved on the server").waitFor({ timeout: 10_000 });
    await page.keyboard.press("Escape");
    await page.waitForTimeout(800);
    await closeDialogs(page);
    result.item3.gatedAfterToken = await stateOf(s.gated);
  });

  await panel.locator('[data-testid="cfx-approve"]').click();
  await panel.locator('[data-state="downloading"]').first().waitFor({ timeout: 60_000 });
  step("approved");

  // 8. Progress in the action bar (1.58) or the menu button (1.27) while the run goes.
  await item("item8", async () => {
    await page.waitForTimeout(1500);
    const actionBar = await page.evaluate(() => {
      const ours = document.querySelector("[data-cfx-progress]");
      if (ours) return ours.dataset.cfxProgress;
      return document.querySelector('[data-testid="cfx-menu-button"]')?.textContent?.trim() ?? null;
    });
    result.item8 = { actionBar };
  });

  // 5. Workflow B while A runs: Fix is queued and says so; A's notice is not B's.
  await item("item5", async () => {
    // A notice of A's own first (a relink of the file already on disk elsewhere), then B opens.
    const relink = panel.locator('[data-testid="cfx-relink"]').first();
    if (await relink.count()) await relink.click();
    await panel.locator('[data-testid="cfx-notice"]').waitFor({ timeout: 20_000 });
    result.item5 = { noticeInA: await panel.locator('[data-testid="cfx-notice"]').count() > 0 };
    scanBodies.push({ name: "--switch--", nodes: 0, models: [] }); // scans after this follow tab switches
    await load(s.workflowB, "workflow_B");
    await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.FixMissingModels"));
    await panel.locator('[data-testid="cfx-queued"]').waitFor({ timeout: 30_000 });
    result.item5.queuedText = await panel.locator('[data-testid="cfx-queued"]').innerText();
    result.item5.noticeInB = await panel.locator('[data-testid="cfx-notice"]').count() > 0;
    await panel.locator('[data-testid="cfx-open-run"]').click();
    await page.waitForFunction(() => app.extensionManager.workflow.activeWorkflow?.filename === "community_34_refs", null, { timeout: 20_000 });
  });

  // 9. A link pasted on a not-found row while the run goes: its loader names the real file as soon as it lands.
  await item("item9", async () => {
    result.item9.panels = await page.locator('[data-testid="cfx-panel"]').count();
    const full = await expand(s.nowhere);
    await full.locator('[data-testid="cfx-paste"]').click();
    const input = full.locator('[data-testid="cfx-paste-input"]');
    await input.fill(s.pasteUrl);
    await full.locator('[data-testid="cfx-paste-go"]').click();
    const nodeId = nodeIdOf(s.workflowA, s.nowhere);
    const end = Date.now() + 300_000;
    let value = null;
    let active = false;
    while (Date.now() < end) {
      value = await page.evaluate((id) => (app.rootGraph ?? app.graph).getNodeById(Number(id))?.widgets?.[0]?.value, nodeId);
      if (value === s.realName) {
        active = ACTIVE.has((await status()).phase);
        break;
      }
      await page.waitForTimeout(300);
    }
    Object.assign(result.item9, { widgetValue: value, runActiveWhenRepointed: active });
  });

  // 10. During the run: finished and failed counted apart; the ETA read each second.
  await shot("r3-03-during");
  await item("item10", async () => {
    for (let i = 0; i < 12; i += 1) {
      const counts = await panel.locator('[data-testid="cfx-run-counts"]').innerText().catch(() => null);
      if (counts) result.item10.counts.push(counts);
      const numbers = await panel.locator('[data-testid="cfx-run-numbers"]').innerText().catch(() => "");
      const m = numbers.match(/(?:(\d+) h )?(\d+) (s|min) left/);
      result.item10.etas.push(m ? (Number(m[1] ?? 0) * 3600 + Number(m[2]) * (m[3] === "min" ? 60 : 1)) : null);
      await page.waitForTimeout(1000);
    }
  });

  // 8. A loader whose files have all landed loses its red outline while the others still wait.
  const nodeOf = (name) => s.workflowA.nodes.find((n) => (n.widgets_values ?? []).includes(name));
  const allLanded = (d, name) => (nodeOf(name)?.widgets_values ?? []).every((v) => {
    const r = (d.data?.models ?? []).find((x) => x.name === v);
    return !r || (r.state === "done" && !r.carried);
  });
  await item("item8", async () => {
    // 1.27 outlines loaders only after a queued prompt's validation; a workflow of loaders without an output
    // node gives none (only the unknown node's own flag): nothing to clear there.
    if (!redBefore.some((id) => id !== nodeIdOf(s.workflowA, s.packFile))) return;
    const doc = await untilStatus((d) => (d.data?.models ?? []).some((r) => r.state === "done" && !r.carried
      && redBefore.includes(nodeIdOf(s.workflowA, r.name)) && allLanded(d, r.name)), 120_000);
    const landed = doc.data.models.filter((r) => r.state === "done" && !r.carried
      && redBefore.includes(nodeIdOf(s.workflowA, r.name)) && allLanded(doc, r.name));
    const pending = doc.data.models.filter((r) => ["not_found", "needs_choice"].includes(r.state)).map((r) => nodeIdOf(s.workflowA, r.name));
    await page.waitForTimeout(6000); // landed files share one model-list refresh every 5 s
    const red = await loaderErrors();
    result.item8.landedCleared = landed.every((r) => !red.includes(nodeIdOf(s.workflowA, r.name)));
    result.item8.pendingStillRed = pending.some((id) => red.includes(id));
    result.item8.red = red;
    result.item8.landed = landed.map((r) => r.name);
  });

  // After A's run: B's queued fix starts by itself; A's failures say what happened.
  await untilStatus((d) => !ACTIVE.has(d.phase) && !(d.queued ?? []).length, 400_000).catch(() => {});
  await item("item5", async () => {
    const doc = await untilStatus((d) => d.data?.workflow === "workflow_B" && !ACTIVE.has(d.phase), 60_000);
    result.item5.bStarted = (doc.data.models ?? []).some((r) => r.name === s.bMissing);
  });
  await page.evaluate(() => app.extensionManager.command.execute("ComfyFixerSmart.ShowPanel")).catch(() => {});
  await page.waitForTimeout(1500);
  await item("item1", async () => {
    const full = await expand(s.linked);
    result.item1.linkedState = await full.getAttribute("data-state");
    // The raw message (both hashes) is behind "Details": open it and wait for it.
    const shown = full.locator("pre.cfx-details");
    for (let i = 0; i < 3 && !(await shown.count()); i += 1) {
      await full.locator(".cfx-toggle", { hasText: "Details" }).first().click().catch(() => {});
      await shown.first().waitFor({ timeout: 3000 }).catch(() => {});
    }
    result.item1.linkedText = await full.innerText();
    await collapse(s.linked);
  });
  await item("item9", async () => {
    const full = await expand(s.wrongBytes);
    result.item9.failedState = await full.getAttribute("data-state");
    result.item9.failedHasPaste = await full.locator('[data-testid="cfx-paste"]').count() > 0;
    await collapse(s.wrongBytes);
  });
  await item("item3", async () => {
    result.item3.gatedState = (await status()).data.models.find((r) => r.name === s.gated)?.state ?? null;
  });
  await panel.locator(".cfx-head").scrollIntoViewIfNeeded();
  await shot("r3-04-after");

  // 2. A pick changes only its row: every other row says what it said before.
  await item("item2", async () => {
    const before = await panelStates();
    const full = await expand(s.pick);
    await full.getByRole("button", { name: "Use this one" }).first().click();
    await untilStatus((d) => (d.data?.models ?? []).some((r) => r.name === s.pick && !r.carried
      && ["done", "failed"].includes(r.state)) && !ACTIVE.has(d.phase), 120_000);
    await page.waitForTimeout(2500);
    const after = await panelStates();
    result.item2 = { before, after, pickedState: (await status()).data.models.find((r) => r.name === s.pick)?.state,
      bannerAfter: (await panel.locator('[data-testid="cfx-summary"]').innerText().catch(() => "")).replace(/\s+/g, " ").trim() };
  });
  step("done");
});
