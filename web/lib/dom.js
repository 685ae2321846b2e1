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
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
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
