// Headless Debian Chromium through playwright-core, the way the e2e runbook found to work:
// a fresh profile, no browser download, and every request that is not to loopback aborted.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const LOOPBACK = /^(https?|wss?):\/\/(127\.0\.0\.1|localhost)(:\d+)?\//;

export async function openBrowser({ viewport = { width: 1400, height: 900 }, colorScheme = "dark" } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "cfx-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport,
    colorScheme,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const blocked = [];
  await context.route((u) => !LOOPBACK.test(u.href) && !/^(data|blob):/.test(u.href), (route) => {
    blocked.push(route.request().url());
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.text().includes("ComfyFixerSmart")) errors.push(`console.${m.type()}: ${m.text()}`);
  });
  return {
    context, page, errors, blocked,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Open ComfyUI and wait until the app, its workspace and the named extension are ready. */
export async function openComfy(page, url, extension) {
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction((name) => window.app?.graph && window.app?.extensionManager
    && window.app.extensions?.some((e) => e.name === name), extension, { timeout: 60_000 });
}

/** Close whatever dialog the frontend opened (missing nodes, errors) so the canvas is usable. */
export async function closeDialogs(page) {
  for (let i = 0; i < 4; i += 1) {
    const open = await page.locator(".p-dialog").count();
    if (!open) return;
    await page.keyboard.press("Escape");
    await page.waitForTimeout(200);
  }
}

export async function dialogTexts(page) {
  return page.$$eval(".p-dialog", (els) => els.map((e) => ({
    id: e.getAttribute("aria-labelledby"),
    text: e.innerText.replace(/\s+/g, " ").trim().slice(0, 400),
  })));
}

// The frame every flow script shares: the scenario pytest wrote (argv[2]), the artifacts folder, a
// result record with named steps, the browser and the panel. `run(body)` runs the flow; on failure it
// keeps a screenshot and the panel's text; it always writes <resultFile> and exits 0 or 1.
export async function startFlow(tag, resultFile) {
  const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const out = scenario.artifacts;
  mkdirSync(out, { recursive: true });
  const result = { steps: [] };
  const b = await openBrowser();
  const { page } = b;
  const panel = page.locator('[data-testid="cfx-panel"]');
  const shot = (name) => page.screenshot({ path: join(out, `${name}.png`) });
  const step = (name, data = {}) => {
    result.steps.push({ name, t: Date.now(), ...data });
    console.log(`[${tag}] ${name}`);
  };
  async function run(body) {
    try {
      await body();
    } catch (e) {
      result.failure = `${e.stack ?? e}`;
      await shot(`99-${tag}-failure`).catch(() => {});
      result.panelAtFailure = await panel.innerText().catch(() => null);
    } finally {
      result.errors = b.errors;
      result.blocked = b.blocked;
      writeFileSync(join(out, resultFile), JSON.stringify(result, null, 2));
      await b.close();
    }
    process.exit(result.failure ? 1 : 0);
  }
  return { scenario, out, result, page, panel, shot, step, run };
}

// For flows that record each part apart (round3, leftovers): `item(name, fn)` runs one part and, when it
// breaks, records why under result.errors_by_item and goes on; `status()` / `untilStatus()` read the service's
// status document as the page does (with the panel's client header).
export const PANEL_HEADERS = { "X-ComfyFixer-Client": "panel" };

export function itemTools({ result, page, shot, step }, shotPrefix, statusTimeout) {
  result.errors_by_item = {};
  async function item(name, fn) {
    try {
      await fn();
    } catch (e) {
      // The first break of an item is the one that says why; later parts of it only follow from it.
      result.errors_by_item[name] ??= `${e.stack ?? e}`;
      await shot(`99-${shotPrefix}-${name}`).catch(() => {});
      step(`${name} broke`, { error: `${e.message ?? e}`.slice(0, 300) });
    }
  }
  const status = () => page.evaluate(async (headers) => {
    const r = await window.comfyAPI.api.api.fetchApi("/comfyfixer/status", { headers });
    return r.json();
  }, PANEL_HEADERS);
  async function untilStatus(check, timeout = statusTimeout) {
    const end = Date.now() + timeout;
    while (Date.now() < end) {
      const doc = await status();
      if (check(doc)) return doc;
      await page.waitForTimeout(500);
    }
    throw new Error(`status never matched: ${JSON.stringify(await status()).slice(0, 800)}`);
  }
  return { item, status, untilStatus };
}

/** Queue the workflow on screen as the Run button does; the server's answer to POST /api/prompt. */
export async function queuePrompt(page) {
  const answer = page.waitForResponse((r) => r.url().endsWith("/api/prompt") && r.request().method() === "POST");
  await page.evaluate(() => app.queuePrompt(0, 1));
  const response = await answer;
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  await page.waitForTimeout(300);
  return { status: response.status(), body };
}

// Wait until a model's row is done, opening the folded "finished" line when the row is hidden in it. The line
// may already exist for files of an earlier run, so its presence alone says nothing about this file.
export async function waitForLandedRow(page, panel, name, timeout = 120_000) {
  const row = panel.locator(`.cfx-item[data-name="${name}"]`);
  const landed = panel.locator(`.cfx-item[data-name="${name}"][data-state="done"]`);
  const doneLine = panel.locator('[data-testid="cfx-done-line"]');
  for (let waited = 0; !(await landed.count()); waited += 500) {
    if (waited > timeout) throw new Error(`${name} did not land within ${timeout / 1000} s`);
    if ((await doneLine.count()) && !(await row.count())) await doneLine.locator(".cfx-toggle").click();
    await page.waitForTimeout(500);
  }
}

/** The page's scan requests from now on, in order: the workflow's name, its node count and the names in its
 *  models[] (what a rescan sends is the point of several flows). */
export function recordScanBodies(page) {
  const bodies = [];
  page.on("request", (req) => {
    if (req.url().endsWith("/comfyfixer/scan") && req.method() === "POST") {
      try {
        const body = JSON.parse(req.postData() ?? "{}");
        bodies.push({ name: body.name, nodes: body.workflow?.nodes?.length ?? 0,
          models: (body.workflow?.models ?? []).map((m) => m.name) });
      } catch { bodies.push({ name: null, nodes: 0, models: [] }); }
    }
  });
  return bodies;
}
