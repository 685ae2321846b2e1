"""Real workflow graph shapes for tests: nodes joined by typed links, subgraphs with their boundary nodes."""

from __future__ import annotations

from typing import Any

# The core nodes' inputs and outputs the tests wire (name, type), in slot order.
INPUTS = {
    "LoraLoader": [("model", "MODEL"), ("clip", "CLIP")], "LoraLoaderModelOnly": [("model", "MODEL")],
    "CLIPTextEncode": [("clip", "CLIP")], "KSampler": [("model", "MODEL"), ("positive", "CONDITIONING"),
                                                       ("negative", "CONDITIONING"), ("latent_image", "LATENT")],
    "ControlNetApplyAdvanced": [("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                ("control_net", "CONTROL_NET"), ("image", "IMAGE")],
    "VAEDecode": [("samples", "LATENT"), ("vae", "VAE")], "Reroute": [("", "*")], "SetNode": [("MODEL", "MODEL")],
    "GetNode": [], "SaveImage": [("images", "IMAGE")],
}


class Graph:
    """A UI-format workflow (or a subgraph definition) built node by node."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.subgraphs: list[dict[str, Any]] = []
        self._next_link = 1

    def add(self, nid: int, ntype: str, widgets: list[Any] | None = None,
            inputs: list[tuple[str, str]] | None = None) -> int:
        spec = INPUTS.get(ntype, []) if inputs is None else inputs
        self.nodes.append({"id": nid, "type": ntype, "mode": 0, "properties": {}, "outputs": [],
                           "inputs": [{"name": n, "type": t, "link": None} for n, t in spec],
                           "widgets_values": widgets or []})
        return nid

    def link(self, src: int, slot: int, dst: int, input_name: str, typ: str = "*") -> None:
        node = next(n for n in self.nodes if n["id"] == dst)
        index = next(i for i, inp in enumerate(node["inputs"]) if inp["name"] == input_name)
        node["inputs"][index]["link"] = self._next_link
        self.links.append([self._next_link, src, slot, dst, index, typ])
        self._next_link += 1

    def boundary_link(self, src: int, slot: int, dst: int, dst_slot: int, typ: str) -> None:
        """A link from the subgraph input node (-10) or to its output node (-20)."""
        self.links.append([self._next_link, src, slot, dst, dst_slot, typ])
        self._next_link += 1

    def subgraph(self, sid: str, name: str, inner: Graph, inputs: list[tuple[str, str]],
                 outputs: list[tuple[str, str]]) -> None:
        self.subgraphs.append({"id": sid, "name": name, "nodes": inner.nodes, "links": inner.links,
                               "inputs": [{"name": n, "type": t} for n, t in inputs],
                               "outputs": [{"name": n, "type": t} for n, t in outputs]})

    def workflow(self) -> dict[str, Any]:
        return {"id": "wf", "revision": 0, "last_node_id": max((n["id"] for n in self.nodes), default=0),
                "last_link_id": self._next_link - 1, "nodes": self.nodes, "links": self.links, "groups": [],
                "config": {}, "extra": {}, "version": 0.4,
                "definitions": {"subgraphs": self.subgraphs}}


def detailer_in_a_subgraph() -> Graph:
    """A checkpoint feeding a subgraph instance whose inside holds a LoRA and a sampler."""
    inner = Graph()
    inner.add(5, "LoraLoaderModelOnly", ["moss_glow.safetensors", 1])
    inner.add(6, "KSampler", [0, "fixed", 20, 7, "euler", "normal", 1])
    inner.boundary_link(-10, 0, 5, 0, "MODEL")
    inner.link(5, 0, 6, "model", "MODEL")
    g = Graph()
    g.add(1, "CheckpointLoaderSimple", ["moonlit_merge_q.safetensors"], inputs=[])
    g.add(2, "a1b2c3d4-0000-4000-8000-000000000001", inputs=[("model", "MODEL")])
    g.link(1, 0, 2, "model", "MODEL")
    g.subgraph("a1b2c3d4-0000-4000-8000-000000000001", "Detailer", inner, [("model", "MODEL")], [])
    return g
