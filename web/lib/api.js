// The one module that talks to the ComfyFixerSmart server routes and websocket events.
// Side-effect free: createClient(api) is called by the extension with ComfyUI's `api` object.

export const EVENT_STATUS = "comfyfixer.status";
export const EVENT_DONE = "comfyfixer.done";
export const CLIENT_HEADER = "X-ComfyFixer-Client"; // fixer/constants.py CLIENT_HEADER

/** A refused or failed call; `message` is the server's person-readable {error}, `code` its stable code
 *  (fixer/errors.py; null when the server said none): decide by the code, show the message. */
export class FixerRequestError extends Error {
  constructor(route, status, message, code = null) {
    super(message);
    this.name = "FixerRequestError";
    this.route = route;
    this.status = status;
    this.code = code;
  }
}

export function createClient(api) {
  async function call(route, body) {
    // The server refuses calls without this header: a page of another site cannot add it.
    const init = body === undefined
      ? { method: "GET", headers: { [CLIENT_HEADER]: "panel" } }
      : { method: "POST", headers: { [CLIENT_HEADER]: "panel", "Content-Type": "application/json" }, body: JSON.stringify(body) };
    let response;
    try {
      response = await api.fetchApi(`/comfyfixer${route}`, init);
    } catch (e) {
      throw new FixerRequestError(route, 0, `ComfyUI did not answer (${e.message}). Is the server still running?`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      // Not JSON: a 404 from an older pack or a proxy error page; reported below by status.
    }
    if (!response.ok) {
      const message = data?.error
        ?? (response.status === 404
          ? "ComfyFixerSmart's server part is not loaded; check the ComfyUI log for an import error and restart."
          : `The server answered ${response.status} ${response.statusText}.`);
      throw new FixerRequestError(route, response.status, message, data?.code ?? null);
    }
    return data;
  }

  return {
    scan: (workflow, name) => call("/scan", { workflow, name }),
    fix: (workflow, name, items, review = false) => call("/fix", { workflow, name, ...(items ? { items } : {}), review }),
    approve: (names) => call("/approve", names ? { items: names } : {}),
    discardPartial: (name) => call("/discard_partial", { name }),
    pasteLink: (workflow, workflowName, name, link) => call("/paste_link", { workflow, workflow_name: workflowName, name, link }),
    status: () => call("/status"),
    cancel: (name) => call("/cancel", name ? { name } : {}),
    unqueue: (workflow) => call("/unqueue", { workflow }),
    retry: (name, url, workflow) => call("/retry", { name, ...(url ? { url } : {}), ...(workflow ? { workflow } : {}) }),
    relink: (workflow, workflowName, name, folder, path) => call("/relink", { workflow, workflow_name: workflowName, name, folder, path }),
    settings: () => call("/settings"),
    saveSettings: (patch) => call("/settings", patch),
    portable: (workflow) => call("/portable", { workflow }),
    lockfile: (workflow) => call("/lockfile", { workflow }),
    fixDuplicates: () => call("/duplicates/fix", {}),
    installPack: (packId) => call("/install_pack", { pack_id: packId }),
    /** Listen to the run's websocket events; register in setup(), before any run can start. */
    listen(onStatus, onDone, onReconnected = onStatus) {
      api.addEventListener(EVENT_STATUS, (e) => onStatus(e.detail));
      api.addEventListener(EVENT_DONE, (e) => onDone(e.detail));
      // A dropped socket (or a restarted ComfyUI) misses events: the status route has the whole
      // state, so re-read it; the caller also scans again.
      api.addEventListener("reconnected", () => call("/status").then(onReconnected, () => {}));
    },
  };
}
