// What a row's state means for the person looking at it: errors in words (the raw message stays behind
// a toggle), and the login a download needs, known before any byte is fetched. Pure functions.
// An error arrives as data, {code, message, retry_after, needs_token, license_url, part_kept, folder, ...}
// (fixer/errors.py ErrorInfo): the words come from its code and typed fields, never from reading the
// message; tests/test_error_codes.py fails when a code of the engine has no entry here.

import { fmtBytes } from "./dom.js";

const SERVICE_NAMES = { huggingface: "Hugging Face", civitai: "Civitai" };
const TOKEN_SERVICES = { HF_TOKEN: "huggingface", CIVITAI_API_KEY: "civitai" };

/** "45 s", "10 min", "2 h": how long a service asked us to wait. */
export function fmtWait(seconds) {
  const s = Math.max(0, Number(seconds) || 0);
  if (s < 90) return `${Math.ceil(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

const serviceName = (e) => SERVICE_NAMES[e.service] ?? e.service ?? "the service";
const tokenHint = (e) => (e.token_helps
  ? `; a ${SERVICE_NAMES[TOKEN_SERVICES[e.token_helps]]} token raises the limit` : "");
const waitWords = (e, what) => (e.retry_after != null
  ? `${what}; it asks to wait ${fmtWait(e.retry_after)}, try again then${tokenHint(e)}`
  : `${what}; try again later${tokenHint(e)}`);

/** Words for each error code; a function of the error's typed fields where they change the words. */
export const ERROR_WORDS = {
  error: () => null, // no more specific code: the message itself is the words
  unexpected: () => "something went wrong inside ComfyFixerSmart (a bug); the details say what",
  config_invalid: () => null, // the message names the setting and what it must be
  request_invalid: () => null, // the message says what to do (scan again, run a fix first)
  workflow_unreadable: () => "the workflow could not be read",
  unsafe_name: () => "refused: the name would point outside the model folders; fix it in the workflow",
  unsafe_folder: () => "refused: that place is not one of ComfyUI's model folders",
  folder_unknown: () => "ComfyUI has no folder for this file here (is its node pack installed?)",
  search_failed: () => "searching for a source failed",
  upstream_failed: (e) => `${serviceName(e)} gave an answer that cannot be used; try again later`,
  unreachable: () => "the server could not be reached (no network, or the address is blocked)",
  server_error: () => "the source's server failed; try again later",
  interrupted: () => "the download kept breaking off; run again to resume",
  rate_limited: (e) => waitWords(e, `${serviceName(e)} is rate-limiting us`),
  service_busy: (e) => waitWords(e, `${serviceName(e)} is busy`),
  login_required: (e) => `${serviceName(e)} needs a login for this file`,
  license_required: () => "a gated repo: accept its license, then add a token of that account",
  token_rejected: (e) => `the ${e.needs_token ?? "token"} you set was refused; create a new one`,
  no_access: () => "your account has no access to this file",
  early_access: () => "the file is in Civitai's Early Access: buy access on its page or wait",
  private_or_missing: () => "the repository is private or does not exist",
  not_found_upstream: () => "the source no longer has this file",
  archived: () => "Civitai archived this version; choose another one",
  http_error: (e) => `the source refused the download${e.status ? ` (HTTP ${e.status})` : ""}`,
  download_failed: () => null,
  already_exists: () => "a file of this name is already there; it was not overwritten",
  lockfile_invalid: () => "the lockfile cannot be used as it is (an entry is refused or the file is unreadable)",
  file_differs: () => "a different file is already there under this name; it was not overwritten",
  cache_busy: () => "another machine kept the shared cache busy with this file; run sync again",
  file_changed: () => "the file kept changing on the server while it downloaded; try again later",
  link_broken: () => "the download link is broken; try again later",
  hf_offline: () => "HF_HUB_OFFLINE is set, so nothing is downloaded from Hugging Face",
  pickle_refused: () => "the file is a pickle format, which is turned off in the settings",
  host_not_allowed: () => "refused: downloads are only fetched from public web addresses",
  sha256_mismatch: () => "the downloaded bytes are not the expected file (sha256 differs)",
  size_mismatch: () => "the file's size differs from what the source announced",
  not_safetensors: () => "the downloaded file is not a valid safetensors file",
  file_missing: () => "the file is not there or cannot be read",
  disk_full: () => "not enough free disk space",
  target_busy: () => "another ComfyFixerSmart is downloading this file right now",
  bytes_missing: () => "part of the file never arrived; run again to resume",
  run_locked: () => "another ComfyFixerSmart run is working in this folder",
  run_busy: () => "a fix is already running",
  unsafe_file_type: () => "refused: that file type does not belong in a model folder; pick a link to the model file",
  download_too_large: () => "the server sent more than the file can be; stopped and the partial file removed",
  pack_not_offered: () => "that pack was not offered by the last scan; scan the workflow again",
  model_not_found: () => "no source was found for this file",
  needs_choice: () => "several possible sources, none sure enough: pick one",
  run_interrupted: () => "the run was stopped before its end; run it again to continue",
  // Refusals of the routes themselves (fixer/comfy/web_guard.py): what the person at the page can do.
  not_queued: () => "that fix is no longer waiting: it has started or ended (cancel it if it runs)",
  client_header_missing: () => "ComfyUI refused the panel's request: this page runs an older copy of the panel, or a "
    + "proxy in between drops its X-ComfyFixer-Client header. Reload the page (Ctrl+Shift+R); behind a proxy, let "
    + "that header through",
  cross_site: () => "ComfyUI refused the request as coming from another site's page: open ComfyUI at its own "
    + "address, not inside another site",
  host_untrusted: () => "ComfyUI refused the request because it was opened under a host name it does not trust: "
    + "open it by IP address or localhost, or start ComfyUI with COMFYFIXER_ALLOWED_HOSTS=<that name>",
  body_invalid: () => "the server could not use what the panel sent (a bug, or the page and the server are of "
    + "different versions: reload the page)",
  body_too_large: () => "the workflow is too large to send to the server",
  body_timeout: () => "the workflow took too long to reach the server; try again",
  sha256_differs: () => "that file has the same name but other bytes than the workflow states (sha256), so it "
    + "was not linked: press Download to fetch the workflow's own file",
  manager_missing: () => "ComfyUI-Manager is not running in this ComfyUI: start ComfyUI with --enable-manager, or "
    + "install the pack by hand",
};

/** The message's first clause, short enough for a row (the whole message goes behind the toggle). */
function firstClause(text) {
  const first = text.split(/[;\n]/)[0].trim();
  return first.length > 140 ? `${first.slice(0, 137)}…` : first;
}

/** {words, details}: a short sentence for the row, the raw message for the toggle (null if same). */
export function errorWords(error) {
  if (!error) return null;
  const message = String(error.message ?? "");
  const words = ERROR_WORDS[error.code]?.(error) ?? firstClause(message);
  if (!words) return null;
  return { words, details: message && message !== words ? message : null };
}

/**
 * {words, details} for a route's refusal (api.js FixerRequestError: {code, message, status}): the words of
 * its code, the server's message behind the toggle. Without a code (no answer, a 404 of an older pack) the
 * client's own message is the words.
 */
export function requestErrorWords(error) {
  if (!error) return null;
  if (!error.code) return { words: String(error.message ?? ""), details: null };
  return errorWords({ code: error.code, message: error.message });
}

/**
 * The login a row needs before it can download, or null: {service: "huggingface"|"civitai", text,
 * licenseUrl}. Known from the source's answer at resolve time (row.needs_token, row.license_url) or
 * from its refusal (the error's needs_token, license_url).
 */
export function loginNeeded(row, settings = null) {
  if (!row || ["done", "downloading", "verifying"].includes(row.state)) return null;
  const token = row.error?.needs_token ?? row.needs_token;
  const service = TOKEN_SERVICES[token];
  if (!service) return null;
  // Known before downloading (no refusal yet) and the token has been saved since: go ahead.
  const saved = service === "huggingface" ? settings?.hf_token_set : settings?.civitai_api_key_set;
  if (saved && !row.error) return null;
  if (service === "huggingface") {
    const licenseUrl = row.error ? row.error.license_url ?? null : row.license_url ?? null;
    const gated = row.error ? row.error.code === "license_required" : Boolean(row.license_url);
    return {
      service,
      text: gated ? "Needs a Hugging Face token and the license accepted" : "Needs a Hugging Face token",
      licenseUrl: gated ? licenseUrl : null,
    };
  }
  return { service, text: "Needs a Civitai API key (the file requires a login)", licenseUrl: null };
}

const PACK_REASON_CHARS = 120;

/**
 * A pack ComfyUI could not import (the scan's failed_packs: {name, reason, node_types}) in words:
 * {title, reason (ComfyUI's own, shortened: no file path, one line), details (the whole reason, or null),
 *  todo (what the user can do), fromSource (why its files are still listed)}.
 */
export function failedPackWords(failed) {
  if (!failed?.name) return null;
  const full = String(failed.reason ?? "").trim();
  // ComfyUI's reason ends with the module's file, "(/…/site-packages/x/y.py)": the path says nothing to a user.
  let reason = full.split("\n")[0].replace(/\s*\((?:[A-Za-z]:)?[\\/][^()]*\)\s*$/, "").trim();
  if (reason.length > PACK_REASON_CHARS) reason = `${reason.slice(0, PACK_REASON_CHARS - 1)}…`;
  const types = failed.node_types ?? [];
  return {
    title: `${failed.name} is installed but ComfyUI could not load it`,
    reason: reason ? `ComfyUI says: ${reason}` : "ComfyUI's log says why (look for IMPORT FAILED at start-up)",
    details: full && full !== reason ? full : null,
    todo: `To fix: install its requirements into ComfyUI's Python (pip install -r custom_nodes/${failed.name}/`
      + "requirements.txt) or update the pack, then restart ComfyUI; ComfyUI's log has the whole error. "
      + "Installing it again does not help.",
    fromSource: types.length
      ? `Its nodes (${types.join(", ")}) are missing until then; the folders of their models were read from `
        + "the pack's source, so those files are listed and can be downloaded now."
      : "The folders of its models were read from the pack's source.",
  };
}

const INDEX_WHAT = "Indexing your model files for duplicates";

/**
 * The background hash index (the status's `index`: {state, files_done, files_total, bytes_done, bytes_total,
 * read_limit, error}) in words while it reads the disk, so a busy disk has a reason the user can see and turn
 * off: {text, title, paused, details}; null when it reads nothing (idle, done, stopped, off).
 */
export function indexWords(index) {
  const state = index?.state;
  if (!["walking", "hashing", "paused", "failed"].includes(state)) return null;
  const title = "The sha256 of each model file, read once (for duplicates, lockfiles and finding renamed copies). "
    + "Settings → ComfyFixerSmart → Hashing turns it off or changes the read limit.";
  if (state === "failed") {
    return { text: `${INDEX_WHAT} stopped on an error (ComfyUI's log says more)`, title, paused: false,
      details: index.error ?? null };
  }
  if (state === "walking" || !index.bytes_total) {
    return { text: `${INDEX_WHAT}: listing them…`, title, paused: false, details: null };
  }
  const done = `${fmtBytes(index.bytes_done ?? 0)} of ${fmtBytes(index.bytes_total)}`;
  const files = `${index.files_done ?? 0} of ${index.files_total ?? 0} files`;
  if (state === "paused") {
    return { text: `${INDEX_WHAT}: paused while ComfyUI renders (${done} done)`, title: `${files}. ${title}`,
      paused: true, details: null };
  }
  // In the setting's own unit (whole MB a second), as the settings show it.
  const limit = index.read_limit > 0 ? `at most ${Math.round(index.read_limit / 1e6)} MB/s` : "no read limit";
  return { text: `${INDEX_WHAT}: ${done} (${limit}; paused while ComfyUI renders)`, title: `${files}. ${title}`,
    paused: false, details: null };
}
