"""ComfyUI entry point of ComfyFixerSmart: the utility nodes, the web extension, the HTTP routes.

ComfyUI imports this file while its server object exists but before it builds its route table,
so the routes are registered here, at import time, and only once: the pack can be imported
under two module names (ComfyUI's path-based name and `custom_nodes.<folder>`), so the guard
lives on the one PromptServer both imports share. Outside ComfyUI (tests, the pip-installed
CLI) there is no `server` module and importing this file does nothing but define the mappings.
Heavy modules (the engine's service, HTTP clients, huggingface_hub) load on first use.
"""

import logging
import sys

if __package__:  # how ComfyUI imports the pack
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # pytest imports this file alone, as a plain module, when the checkout's folder is no valid
    # package name (a GitHub zip unpacks to ComfyFixerSmart-main): there is nothing to register then.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

_REGISTERED_FLAG = "_comfyfixer_routes_registered"


def _register_routes() -> None:
    # Look the server up instead of importing it: outside ComfyUI an unrelated `server` module
    # could be importable, and importing it would be a side effect.
    prompt_server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
    if prompt_server is None:
        return
    log = logging.getLogger("fixer.comfyui")
    try:
        from . import server_routes

        # Every copy of the pack is handed ComfyUI's objects: its nodes reach the one shared service.
        server_routes.comfy_runtime.attach(server_routes.comfy_links(prompt_server))
        if getattr(prompt_server, _REGISTERED_FLAG, False):
            return
        # Set first: a half-registered table must not be completed twice by a second import, since
        # ComfyUI refuses to start on back-to-back duplicate routes.
        setattr(prompt_server, _REGISTERED_FLAG, True)
        server_routes.add_routes(prompt_server.routes, server_routes.comfy_runtime.service)
    except Exception:  # keep the nodes loadable; the log says why the panel has no server side
        log.exception("ComfyFixerSmart: the /comfyfixer routes could not be registered; the panel will not work")
        return
    log.info("ComfyFixerSmart: routes registered under %s", server_routes.PREFIX)


_register_routes()
