// What a row's state means for the person looking at it: errors in words (the raw text stays behind
// a toggle), and the login a download needs, known before any byte is fetched. Pure functions.

const ERROR_WORDS = [
  [/sha256 mismatch|sha256.*(differ|expected)/i, "the downloaded bytes are not the expected file (sha256 differs)"],
  [/size mismatch/i, "the file's size differs from what the source announced"],
  [/safetensors header|not a valid safetensors|header length/i, "the downloaded file is not a valid safetensors file"],
  [/pickle/i, "the file is a pickle format, which is turned off in the settings"],
  [/no space|not enough (free )?space|disk (is )?full/i, "not enough free disk space"],
  [/early access/i, "the file is in Civitai's Early Access: buy access on its page or wait"],
  [/private or does not exist|\b404\b|not found upstream|was not found at|does not exist/i, "the source no longer has this file"],
  [/timed? ?out|cannot (be )?reach|could not connect|cannot connect|name or service not known|connection (refused|reset)|unreachable/i,
    "the server could not be reached (no network, or the address is blocked)"],
  [/\b429\b|rate.?limit|too many requests/i, "the service is rate-limiting us; try again in a minute"],
  [/\bHTTP 5\d\d\b|\b50[0234]\b|server error|bad gateway|service unavailable/i, "the source's server failed; try again later"],
  [/folder .*unknown|choose the folder|no model folder/i, "ComfyUI has no folder for this file here (is its node pack installed?)"],
  [/search failed/i, "searching for a source failed"],
];

/** {words, details}: a short sentence for the row, the raw message for the toggle (null if same). */
export function errorWords(raw) {
  if (!raw) return null;
  const text = String(raw);
  const hit = ERROR_WORDS.find(([re]) => re.test(text));
  if (hit) return { words: hit[1], details: text };
  const first = text.split(/[;\n]/)[0].trim();
  return first.length < text.length || first.length > 140
    ? { words: first.length > 140 ? `${first.slice(0, 137)}…` : first, details: text }
    : { words: text, details: null };
}

/** The repository page of a Hugging Face file URL (where the license is accepted), or null. */
export function hfRepoPage(url) {
  if (!url) return null;
  const m = String(url).match(/^(https?:\/\/[^/]+)\/((?:datasets\/|spaces\/)?[^/]+\/[^/]+)\/(?:resolve|blob)\//);
  return m ? `${m[1]}/${m[2]}` : null;
}

/**
 * The login a row needs before it can download, or null: {service: "huggingface"|"civitai", text,
 * licenseUrl}. Known from the source's answer at resolve time (warnings) or from its refusal.
 */
export function loginNeeded(row, settings = null) {
  if (!row || ["done", "downloading", "verifying"].includes(row.state)) return null;
  const said = `${(row.warnings ?? []).join(" ")} ${row.error ?? ""}`;
  const hf = /HF_TOKEN|Hugging Face refused|gated repo/i.test(said);
  const civitai = /CIVITAI_API_KEY|Civitai refused/i.test(said);
  if (!hf && !civitai) return null;
  // Known before downloading (a warning, no refusal yet) and the token has been saved since: go ahead.
  const saved = hf ? settings?.hf_token_set : settings?.civitai_api_key_set;
  if (saved && !row.error) return null;
  if (hf) {
    const gated = /licen[cs]e|gated/i.test(said);
    return {
      service: "huggingface",
      text: gated ? "Needs a Hugging Face token and the license accepted" : "Needs a Hugging Face token",
      licenseUrl: gated ? hfRepoPage(row.url) : null,
    };
  }
  return { service: "civitai", text: "Needs a Civitai API key (the file requires a login)", licenseUrl: null };
}
