"""ComfyUI entry point of ComfyFixerSmart: the utility nodes, the web extension, the HTTP routes.

The engine (`fixer/`) has one name in every process: `fixer`, as the CLI, the scan worker and the tests
import it. ComfyUI imports this pack by its file path, which would make the engine `<pack>.fixer`, so
the engine is loaded here from this folder under its own name first (`_load_engine`), and the adapters
import `fixer` like everyone else. Its modules then exist once per process, even when ComfyUI imports
the pack a second time as `custom_nodes.<folder>`.

ComfyUI imports this file while its server object exists but before it builds its route table, so the
routes are registered here, at import time, and only once per server (fixer.comfy.runtime.claim_routes).
Outside ComfyUI (tests, the pip-installed CLI) there is no `server` module and importing this file does
nothing but define the mappings. Heavy modules (the engine's service, HTTP clients, huggingface_hub) load
on first use.
"""

import importlib.util
import logging
import sys
from pathlib import Path

WEB_DIRECTORY = "./web"
ENGINE = "fixer"
_ENGINE_INIT = Path(__file__).resolve().parent / ENGINE / "__init__.py"


def _load_engine() -> None:
    """Make `import fixer` mean this pack's engine folder, unless it already does."""
    loaded = sys.modules.get(ENGINE)
    if loaded is not None:
        where = Path(getattr(loaded, "__file__", "") or "").resolve()
        if where != _ENGINE_INIT:
            raise ImportError(f"ComfyFixerSmart: another module named '{ENGINE}' is already loaded ({where}); "
                              "uninstall the package that provides it from ComfyUI's Python, or remove the "
                              "other copy of ComfyFixerSmart")
        return
    spec = importlib.util.spec_from_file_location(ENGINE, _ENGINE_INIT,
                                                  submodule_search_locations=[str(_ENGINE_INIT.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[ENGINE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[ENGINE]
        raise


if __package__:  # how ComfyUI imports the pack
    _load_engine()
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # pytest imports this file alone, as a plain module, when the checkout's folder is no valid
    # package name (a GitHub zip unpacks to ComfyFixerSmart-main): there is nothing to register then.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def _register_routes() -> None:
    # Look the server up instead of importing it: outside ComfyUI an unrelated `server` module
    # could be importable, and importing it would be a side effect.
    prompt_server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if prompt_server is None:
        return
    log = logging.getLogger("fixer.comfyui")
    try:
        from . import server_routes

        runtime = server_routes.comfy_runtime
        runtime.attach(server_routes.comfy_links(prompt_server))
        # Claimed before adding: a half-registered table must not be completed twice by a second import,
        # since ComfyUI refuses to start on back-to-back duplicate routes.
        if not runtime.claim_routes(prompt_server):
            return
        server_routes.add_routes(prompt_server.routes, runtime.service)
        runtime.build_when_serving(prompt_server)  # settles a killed run's status.json once ComfyUI serves
    except Exception:  # keep the nodes loadable; the log says why the panel has no server side
        log.exception("ComfyFixerSmart: the /comfyfixer routes could not be registered; the panel will not work")
        return
    log.info("ComfyFixerSmart: routes registered under %s", server_routes.PREFIX)


_register_routes()
