// The frontend's own missing-models list (1.27's "Missing Models" dialog, 1.58's Issues panel) and
// ours: one list, not two. We add one line and a button to theirs, and while our run fetches files
// their browser-download buttons for those files are hidden (a browser download lands in the
// Downloads folder, not in models/). Side-effect free until `watchTheirList` is called.
import { h } from "./dom.js";

const DIALOG_127 = '.p-dialog[aria-labelledby="global-missing-models-warning"]';
const PANEL_158 = '[data-testid="error-group-missing-model"]'; // Workflow Overview → Issues → Missing Models
const THEIR_DOWNLOADS = '[data-testid="missing-model-download"], [data-testid="missing-model-download-all"]';
const THEIR_COUNT = '[data-testid="error-section-count-badge"]'; // 1.58: the Missing Models group's own count

/** Their list's element in the page, or null. */
export function theirList() {
  return document.querySelector(DIALOG_127) ?? document.querySelector(PANEL_158) ?? null;
}

/** True on frontends that check for missing models themselves on every load (1.58's Issues panel). */
export function frontendChecksModels(app) {
  return typeof app.refreshMissingModels === "function";
}

function complement(label, onFix) {
  return h("div.cfx-complement", { "data-testid": "cfx-complement" },
    h("i.pi.pi-download"),
    h("span", h("b.cfx-complement-count", { "data-testid": "cfx-complement-count" }), " ",
      "ComfyFixerSmart downloads these straight into the right models/ folder, checks them, "
      + "and also finds the ones without a link."),
    h("button.cfx-btn.cfx-btn-primary", { type: "button", onclick: onFix }, label));
}

/** One count: their group's badge gives way to ours (the files we would fetch, and what else there is). */
function foldCount(root, text) {
  const ours = root.querySelector(".cfx-complement-count");
  if (ours && ours.textContent !== text) ours.textContent = text;
  const badge = root.matches?.(PANEL_158) ? root.querySelector(THEIR_COUNT) : null;
  if (badge && text && badge.dataset.cfxHidden === undefined) {
    badge.style.display = "none";
    badge.dataset.cfxHidden = "count";
  }
}

/** Buttons in their list that would download `names` through the browser. */
function theirDownloadButtons(root, names) {
  const buttons = [...root.querySelectorAll(THEIR_DOWNLOADS)];
  // 1.27's dialog has no test ids: its row buttons read "Download (<size>)".
  if (root.matches?.(DIALOG_127)) buttons.push(...[...root.querySelectorAll("button")].filter((b) => /^Download \(/.test(b.textContent.trim())));
  return buttons.filter((b) => {
    if (b.dataset.testid === "missing-model-download-all") return true;
    const row = b.closest("li, [role=option], .p-listbox-option, [data-testid^=missing-model-row]") ?? b.parentElement;
    return [...names].some((n) => row?.textContent?.includes(n));
  });
}

/**
 * Keep their list in step with ours: `fetching()` gives the names our run is downloading now.
 * Returns a function that stops watching.
 */
export function watchTheirList({ label, onFix, fetching, onSeen, count = () => "" }) {
  let timer = null;
  const apply = () => {
    timer = null;
    const root = theirList();
    if (!root) return;
    onSeen?.();
    if (!root.querySelector(".cfx-complement")) {
      const fix = () => {
        root.querySelector(".p-dialog-close-button")?.click(); // 1.27's modal would cover our panel
        onFix();
      };
      const spot = root.querySelector(".p-dialog-content") ?? root;
      spot.append(complement(label, fix));
    }
    foldCount(root, count());
    const names = fetching();
    for (const b of root.querySelectorAll('[data-cfx-hidden="1"]')) {
      b.style.display = "";
      delete b.dataset.cfxHidden;
    }
    if (!names.size) return;
    for (const b of theirDownloadButtons(root, names)) {
      b.style.display = "none";
      b.dataset.cfxHidden = "1";
    }
  };
  const observer = new MutationObserver(() => {
    if (!timer) timer = setTimeout(apply, 150);
  });
  observer.observe(document.body, { childList: true, subtree: true });
  return {
    refresh: () => {
      if (!timer) timer = setTimeout(apply, 0);
    },
    stop: () => observer.disconnect(),
  };
}
