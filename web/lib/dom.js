// Tiny DOM and formatting helpers for the ComfyFixerSmart panel. Side-effect free: the frontend
// imports every .js under web/ as an extension, so helpers only define things; comfyfixer.js runs.

/** h("div.a.b", {title, onclick, style: {...}, dataset: {...}}, child, [children], "text") */
export function h(spec, props, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (props && (typeof props !== "object" || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = null;
  }
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    // Handlers as properties (not listeners) so `morph` can carry them over to a live element.
    if (key.startsWith("on") && typeof value === "function") {
      el[key.toLowerCase()] = value;
      el.cfxHandlers = true;
    }
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "class") el.className += (el.className ? " " : "") + value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

const HANDLERS = ["onclick", "oninput", "onchange", "onkeydown"];

/**
 * Make the live element `live` look like the freshly built `next`, changing only what differs:
 * attributes, text, handler properties, children (by position). Unchanged nodes are left alone,
 * so a button under the mouse survives a re-render and only changed rows get restyled. Elements
 * with equal `data-sig` attributes (a signature of everything they show) are skipped whole.
 * Returns the node now in the document.
 */
export function morph(live, next) {
  if (live.nodeType !== next.nodeType || live.nodeName !== next.nodeName
    || (live.nodeType !== Node.ELEMENT_NODE && live.nodeType !== Node.TEXT_NODE)) {
    live.replaceWith(next);
    return next;
  }
  if (live.nodeType === Node.TEXT_NODE) {
    if (live.data !== next.data) live.data = next.data;
    return live;
  }
  const sig = next.getAttribute("data-sig");
  if (sig !== null && live.getAttribute("data-sig") === sig) return live;
  syncAttributes(live, next);
  if (live.cfxHandlers || next.cfxHandlers) {
    for (const key of HANDLERS) if (live[key] !== next[key]) live[key] = next[key];
    live.cfxHandlers = next.cfxHandlers;
  }
  let child = live.firstChild;
  let nextChild = next.firstChild;
  while (nextChild) {
    const following = nextChild.nextSibling; // read first: morph or append may move nextChild
    if (child) {
      const after = child.nextSibling;
      morph(child, nextChild);
      child = after;
    } else {
      live.appendChild(nextChild);
    }
    nextChild = following;
  }
  while (child) {
    const after = child.nextSibling;
    child.remove();
    child = after;
  }
  return live;
}

/** A short signature of JSON-able data for `data-sig` (cyrb53: 53-bit, fast, well mixed). */
export function signature(data) {
  const text = JSON.stringify(data) ?? "";
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

function syncAttributes(live, next) {
  const have = live.attributes;
  for (let i = have.length - 1; i >= 0; i -= 1) if (!next.hasAttribute(have[i].name)) live.removeAttribute(have[i].name);
  const want = next.attributes;
  for (let i = 0; i < want.length; i += 1) {
    if (live.getAttribute(want[i].name) !== want[i].value) live.setAttribute(want[i].name, want[i].value);
  }
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1234567 -> "1.2 MB" (decimal units, as the model sites show sizes). */
export function fmtBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n) || n < 0) return "";
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${UNITS[i]}`;
}

export function fmtSpeed(bytesPerSecond) {
  return bytesPerSecond > 0 ? `${fmtBytes(bytesPerSecond)}/s` : "";
}

/** Seconds left -> "8 s left", "3 min left", "1 h 5 min left"; "" when unknown. */
export function fmtEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min left`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

export function fmtPercent(done, total) {
  if (!total || total <= 0) return "";
  return `${Math.min(100, Math.floor((100 * done) / total))}%`;
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Join the truthy parts with a middle dot, the way ComfyUI's own lists read. */
export function dotted(...parts) {
  return parts.filter((p) => p !== undefined && p !== null && p !== "").join(" · ");
}
